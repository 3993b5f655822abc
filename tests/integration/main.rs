//! Integration tests: the API over HTTP through `cargo lambda watch`, against the official
//! DynamoDB Local, both started here on free ports and stopped at the end.
//! Every test makes its own organisation, so they run in parallel on one stack.

mod conflicts;
mod create_get;
mod delivery;
mod edges;
mod events;
mod faults;
mod layout;
mod operator;
mod races;
mod ratelimit;
mod repair;
mod rest;
mod roles;
mod rules;
mod scim;
mod scopes;
mod security;
mod smoke;
mod updates;
mod webhooks;
mod writes;

use libtest_mimic::{Arguments, Failed, Trial};
use members_tests::{Stack, TestResult};
use std::future::Future;
use std::sync::Arc;

pub struct Ctx {
    pub stack: Stack,
    pub rt: tokio::runtime::Handle,
    /// The operator tests' own stack, started by the first of them: `membersctl recount`
    /// scans the whole table, as it does on AWS, so it gets a table holding only their
    /// data (its time and its reads do not grow with what the other tests wrote).
    operator: tokio::sync::OnceCell<Stack>,
}

impl Ctx {
    pub async fn operator_stack(&self) -> Result<&Stack, String> {
        self.operator
            .get_or_try_init(|| Stack::start("operator", false))
            .await
    }

    /// Every stack the tests used.
    fn stacks(&self) -> impl Iterator<Item = &Stack> {
        std::iter::once(&self.stack).chain(self.operator.get())
    }
}

type TestFn = fn(Arc<Ctx>) -> std::pin::Pin<Box<dyn Future<Output = TestResult> + Send>>;

macro_rules! tests {
    ($($module:ident :: $name:ident),+ $(,)?) => {
        vec![$((concat!(stringify!($module), "::", stringify!($name)), (|ctx| Box::pin($module::$name(ctx))) as TestFn)),+]
    };
}

fn main() {
    members_tests::local_aws_env();
    let args = Arguments::from_args();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let all = tests![
        conflicts::two_overlapping_transactions_give_exactly_one_conflict,
        create_get::create_then_get_round_trips,
        create_get::bad_input_gets_clear_problems,
        create_get::keys_scopes_and_tenants,
        create_get::idempotency_key_replays,
        create_get::primary_moves_on_create,
        create_get::hris_organisation_requires_hris_roles,
        races::concurrent_creates_with_one_email_admit_one,
        races::concurrent_admin_creates_keep_counters_exact,
        races::concurrent_retries_with_one_idempotency_key_create_one_member,
        races::concurrent_primary_claims_leave_one_primary,
        updates::admins_demoting_each_other_never_leave_zero,
        updates::hris_admins_demoting_each_other_never_leave_zero,
        updates::the_last_admin_and_hris_admin_pair_survives,
        updates::deactivating_the_last_admins_at_once_keeps_one,
        updates::thirty_two_clients_patch_one_member_through_watch,
        updates::thirty_two_tasks_patch_one_member_in_process,
        updates::email_races_never_duplicate_an_email,
        updates::primary_transfer_races_leave_exactly_one,
        writes::if_match_and_dry_run_over_http,
        writes::put_members_over_http,
        updates::transaction_conflicts_are_retried_then_refused_cleanly,
        rest::lists_page_filter_and_refuse_bad_queries,
        layout::items_of_the_older_layout_read_and_list_exactly_once,
        rest::deactivate_and_reactivate,
        rest::audit_history_pages_newest_first,
        rules::organization_settings_keep_the_hris_rules,
        roles::custom_roles_cannot_vanish_under_a_member,
        rest::other_methods_get_405_and_unknown_paths_404,
        security::every_route_refuses_bad_credentials_alike,
        security::mass_assignment_and_hostile_input_are_refused,
        security::the_local_stack_listens_where_the_readme_says,
        edges::instants_outside_years_1_to_9999_are_refused_not_stored,
        edges::a_history_over_one_megabyte_reads_back_to_its_first_event,
        edges::large_members_list_in_pages_under_lambdas_limit,
        edges::roles_come_in_pages,
        edges::field_errors_stay_small_whatever_the_body,
        edges::an_expired_idempotency_record_frees_its_key,
        edges::unsettled_transactions_are_settled_by_their_token,
        edges::deactivating_twice_answers_200_whatever_the_rules_now_say,
        edges::ids_that_are_not_ids_never_reach_a_log,
        edges::query_flags_are_honoured_or_refused,
        rules::hris_on_is_refused_while_a_member_has_no_hris_role,
        roles::look_alike_names_are_refused_and_role_changes_have_history,
        rules::the_old_primary_is_written_like_any_update,
        events::the_feed_never_skips_under_concurrent_writers_and_consumers,
        events::one_event_per_change_and_none_for_refused_dry_or_noop,
        events::a_consumer_killed_mid_batch_resumes_and_loses_nothing,
        events::a_cursor_is_bound_to_its_organisation_and_the_feeds_epoch,
        webhooks::every_event_arrives_signed_once_each_version_once,
        webhooks::a_failing_receiver_gets_every_event_later,
        webhooks::webhook_urls_secrets_and_scopes,
        scopes::a_key_learns_nothing_its_scopes_refuse,
        scopes::a_revoked_subscriber_stops_its_webhook,
        scim::okta_provisioning_sequence,
        scim::entra_provisioning_sequence,
        scim::scim_rules_errors_and_paging,
        scim::scim_deactivation_races_v1_demotion,
        scim::scim2_tester_passes,
        scim::scim_sanity_probe_passes,
        scim::okta_group_push_sequence,
        scim::entra_groups_decide_roles,
        scim::group_membership_races_v1_demotion,
        scim::a_thousand_member_patch,
        operator::recount_restores_missing_and_damaged_counters,
        operator::recount_never_writes_a_count_that_writers_moved_under,
        operator::a_switch_that_read_the_older_layout_is_refused_after_the_upgrade,
        operator::a_role_of_the_older_layout_keeps_counting_on_its_item,
        repair::an_incident_longer_than_the_retries_is_repaired_exactly_once,
        delivery::a_redelivery_sends_only_what_a_first_delivery_would,
        delivery::endpoints_are_judged_as_svix_and_stripe_do,
        delivery::one_hanging_endpoint_never_stalls_another_organisation,
        smoke::the_smoke_test_passes_here_and_fails_clearly,
        ratelimit::keys_and_organisations_are_held_to_their_limits,
    ];
    let selected: Vec<_> = all
        .iter()
        .filter(|(name, _)| args.filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    let needs_stack = !args.list && !selected.is_empty();

    let stack = if needs_stack {
        match rt.block_on(Stack::start("main", false)) {
            Ok(stack) => Some(stack),
            Err(e) => {
                eprintln!("could not start the local stack: {e}");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    let ctx = stack.map(|stack| {
        Arc::new(Ctx {
            stack,
            rt: rt.handle().clone(),
            operator: tokio::sync::OnceCell::new(),
        })
    });

    let mut trials: Vec<Trial> = all
        .into_iter()
        .map(|(name, test)| {
            let ctx = ctx.clone();
            Trial::test(name, move || {
                let ctx = ctx.ok_or_else(|| Failed::from("no stack"))?;
                let handle = ctx.rt.clone();
                let started = std::time::Instant::now();
                let result = handle.block_on(test(ctx)).map_err(Failed::from);
                eprintln!("[took] {name}: {:.1} s", started.elapsed().as_secs_f64());
                result
            })
        })
        .collect();
    // This one starts its own stack: it stops DynamoDB Local, which the others share.
    trials.push(Trial::test(
        "faults::dynamodb_stopped_gives_503_and_writes_nothing",
        {
            let handle = rt.handle().clone();
            move || {
                handle
                    .block_on(faults::dynamodb_stopped_gives_503_and_writes_nothing())
                    .map_err(Failed::from)
            }
        },
    ));
    let conclusion = libtest_mimic::run(&args, trials);
    for (name, st) in ctx
        .iter()
        .flat_map(|ctx| ["main", "operator"].into_iter().zip(ctx.stacks()))
    {
        let v = &st.stale.view;
        let load =
            |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "{name} stack, stale-read mode: {} consistent reads, {} eventually consistent reads, {} items left out as not yet replicated",
            load(&v.consistent_reads),
            load(&v.eventual_reads),
            load(&v.lagged_items)
        );
        println!("{name} stack, {}", st.stale.conflicts.summary());
    }
    let retried = members_tests::emulator_retries();
    if retried > 0 {
        println!("{retried} GETs asked again: cargo lambda watch lost their answer");
    }

    // Only after every request: nothing secret reached a log line, and every response the
    // tests received is what openapi.yaml documents.
    let scan = match &ctx {
        Some(ctx) if !conclusion.has_failed() => libtest_mimic::run(
            &args,
            vec![
                Trial::test("logs::no_secret_in_any_log_line", {
                    let logs: Vec<_> = ctx.stacks().map(|st| st.watch_log.clone()).collect();
                    move || {
                        logs.iter()
                            .try_for_each(|log| members_tests::no_secret_in(log))
                            .map_err(Failed::from)
                    }
                }),
                Trial::test("contract::every_response_matches_openapi", || {
                    let checked =
                        members_tests::contract::check_all(&members_tests::contract::recorded())?;
                    println!("{checked} responses checked against openapi.yaml");
                    Ok(())
                }),
            ],
        ),
        _ => libtest_mimic::Conclusion {
            num_filtered_out: 0,
            num_passed: 0,
            num_failed: 0,
            num_ignored: 0,
            num_measured: 0,
        },
    };
    for st in ctx.iter().flat_map(|ctx| ctx.stacks()) {
        if conclusion.has_failed() || scan.has_failed() {
            eprintln!("logs kept in {}", st.dir.display());
            st.stop();
        } else {
            st.clean_up();
        }
    }
    drop(rt);
    if conclusion.has_failed() || scan.has_failed() {
        std::process::exit(101);
    }
}
