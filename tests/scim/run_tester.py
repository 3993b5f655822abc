"""Run the scim2-tester compliance checks against a running SCIM server.

    python tests/scim/run_tester.py --url http://127.0.0.1:PORT/scim/v2 --token KEY [--json PATH]

The token may also come from the SCIM_TOKEN environment variable. Needs
``pip install 'scim2-tester[httpx2]'`` (the versions are pinned where it is installed).

scim2-tester reads /ServiceProviderConfig, /ResourceTypes and /Schemas, builds the
resource models from what they publish, then runs its discovery, CRUD, attribute
filtering and PATCH add/replace/remove checks for every resource type announced.
PATCH checks are skipped when the server announces ``patch.supported: false``.

The tester fills string attributes with random UUIDs, or with one of their
``canonicalValues``. ``userName`` may be any string here, but a member needs an email
address: the work (else primary) value of ``emails``, else ``userName`` when it is one.
The tester's checks that remove ``emails`` would then leave a user with a UUID and no
address (400), so by default this script has the tester draw a fresh address for
``userName`` (``scim-tester-<hex>@example.com``); ``--raw-usernames`` turns that off.

``--include-tags``/``--exclude-tags`` select checks by tag: discovery,
service-provider-config, resource-types, schemas, misc, crud (crud:create,
crud:read, crud:read:attributes, crud:update, crud:delete), patch (patch:add,
patch:replace, patch:remove).

Prints one line per check and ``scim2-tester: N passed, M failed, K skipped``;
exits 1 if any check failed.

One failure is not ours, and is reported apart as a DEVIATION (not counted as failed) only
when it is exactly that: scim2-tester 0.5.2's PATCH add check adds [Y] to a multi-valued
attribute that an earlier add in the same check already gave [X], and expects [Y] back.
RFC 7644 §3.5.2.1 says an add to a multi-valued attribute appends: the server answers
[X, Y] (scim2_models' own PatchOp.patch does the same). The check is recognised by its
title and by the answer ending with exactly the values sent after values that were there.
"""

import argparse
import json
import os
import sys
import uuid
from collections.abc import Sequence

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status
from scim2_tester import check_server

FAILED = {Status.ERROR, Status.CRITICAL}


def appended_per_rfc(result):
    """Whether a failed check is the tester's add-replaces expectation (see the docstring)."""
    data = result.data if isinstance(result.data, dict) else {}
    sent = data.get("expected")
    got = data.get("modify_actual", data.get("actual"))
    dump = lambda v: [jsonable(x) for x in v] if isinstance(v, list) else None
    sent, got = dump(sent), dump(got)
    return (
        result.title == "check_add_attribute"
        and bool(sent)
        and got is not None
        and len(got) > len(sent)
        and got[-len(sent):] == sent
    )


class FreshEmails(Sequence):
    """Field examples that hand a new email address to every ``random.choice``."""

    def __len__(self):
        return 1

    def __getitem__(self, index):
        if index != 0:
            raise IndexError(index)
        return f"scim-tester-{uuid.uuid4().hex}@example.com"


def use_email_usernames(provider):
    """Make the tester generate email addresses for userName.

    The tester takes the value of an attribute from its field ``examples`` when it has some.
    """
    composed = [provider.model_for(rt) for rt in provider.resource_types]
    for model in [*provider.models, *composed]:
        for field in model.model_fields.values():
            if field.serialization_alias == "userName" and not field.examples:
                field.examples = FreshEmails()


def jsonable(obj):
    """Turn what a check result carries as debugging data into JSON values."""
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else str(obj)


def describe(result):
    """Return a JSON-serializable view of a check result."""
    data = None
    if result.status in FAILED and result.data is not None:
        data = json.loads(json.dumps(result.data, default=jsonable))
    return {
        "status": result.status.name,
        "title": result.title,
        "resource_type": result.resource_type,
        "tags": sorted(result.tags),
        "reason": result.reason,
        "description": result.description,
        "data": data,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="SCIM base URL, e.g. http://127.0.0.1:9000/scim/v2")
    parser.add_argument("--token", default=os.environ.get("SCIM_TOKEN"), help="bearer token (default: $SCIM_TOKEN)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--raw-usernames", action="store_true", help="let the tester send random UUIDs as userName")
    parser.add_argument("--include-tags", help="comma-separated tags to run only, e.g. discovery,crud")
    parser.add_argument("--exclude-tags", help="comma-separated tags to skip, e.g. patch:add")
    args = parser.parse_args()
    if not args.token:
        parser.error("--token or SCIM_TOKEN is required")

    http = Client(
        base_url=args.url,
        headers={"Authorization": f"Bearer {args.token}", "Accept": "application/scim+json"},
        timeout=30,
    )
    client = SyncSCIMClient(http)
    # Describing the server up front lets check_server use those models. It also keeps
    # the CRUD checks running under --exclude-tags: scim2-tester 0.5.2 then skips its
    # own discovery queries (tagged "*"), and would stop after them.
    try:
        client.discover()
        if not args.raw_usernames:
            use_email_usernames(client.provider)
    except Exception as exc:  # the discovery checks below report what is wrong
        print(f"warning: discovery failed: {exc}", file=sys.stderr)

    def tags(value):
        return set(value.split(",")) if value else None

    results = check_server(client, include_tags=tags(args.include_tags), exclude_tags=tags(args.exclude_tags))

    counts = {"passed": 0, "failed": 0, "skipped": 0, "deviations": 0}
    for result in results:
        deviation = result.status in FAILED and appended_per_rfc(result)
        if deviation:
            counts["deviations"] += 1
        elif result.status in FAILED:
            counts["failed"] += 1
        elif result.status == Status.SKIPPED:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
        title = f"{result.title} [{result.resource_type}]" if result.resource_type else result.title
        status = "DEVIATION" if deviation else result.status.name
        line = f"{status:<8} {title}"
        if deviation:
            line += ": the tester expects add to replace a multi-valued attribute; RFC 7644 §3.5.2.1 appends"
        elif result.status in FAILED or result.status == Status.SKIPPED:
            line += f": {result.reason}".replace("\n", " | ")
        print(line)

    print(
        f"scim2-tester: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped, "
        f"{counts['deviations']} tester deviation(s) from RFC 7644"
    )

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"url": args.url, **counts, "results": [describe(r) for r in results]}, f, indent=2)

    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
