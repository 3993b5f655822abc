//! The Members API domain crate. Every function in `functions/` is a thin `main.rs` over this.
//!
//! - [`model`]: the types (ids, vocabularies, Member, Organization, …)
//! - [`input`]: JSON bodies → typed patches, every field checked; [`text`]: what free text may hold
//! - [`rules`]: the SPEC's rules that one member and its organisation decide
//! - [`store`]: the storage port and its DynamoDB implementation (counters, guards, conditions)
//! - [`scim`]: SCIM 2.0 Users (the wire format; its handlers are in [`handlers`])
//! - [`events`]: change events (CloudEvents) built from the outbox the writes fill
//! - [`auth`], [`audit`], [`wire`], [`http`], [`error`]: keys, history, responses, Lambda glue
//! - [`paging`]: cursors and the byte budget of a page, below every list (handlers, SCIM, events)
//! - [`handlers`]: one function per endpoint (and the [`fallback`](handlers::fallback) for
//!   what no route serves), listed in [`routes`]; [`admin`]: what the operator CLI does

pub mod admin;
pub mod audit;
pub mod auth;
pub mod consumer;
pub mod error;
pub mod events;
pub mod handlers;
pub mod http;
pub mod input;
pub mod local;
pub mod metrics;
pub mod model;
pub mod paging;
pub mod ratelimit;
pub mod routes;
pub mod rules;
pub mod scim;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod webhooks;
pub mod wire;

pub use error::ApiError;
