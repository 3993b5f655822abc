#!/usr/bin/env python3
"""`make smoke URL=… KEY=… [SCIM_KEY=…] [HOOKS_KEY=…]`: the README's tour against any
deployment, each answer checked. Python's standard library only.

It creates one member (a unique `smoke-…@example.com`, role `simple`), reads it, updates it
conditionally, tries a dry run, finds it in a list, deactivates and reactivates it, reads its
history, waits for its `member.created` event in the feed, and reads SCIM discovery (with
SCIM_KEY) and the webhooks (with HOOKS_KEY). It leaves the member deactivated. On the first
failure it prints one line saying which step failed and why, and exits 1; 0 when all pass.

KEY needs r_members and w_members (the demo's MEMBERS_API_KEY).
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class Failed(Exception):
    pass


# Pages of the event feed read to find its end (100 events each).
FEED_PAGES = 50


class Client:
    def __init__(self, base, key, timeout):
        self.base = base.rstrip("/")
        self.key = key
        self.timeout = timeout

    def call(self, method, path, body=None, headers=None, key=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {key or self.key}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as answer:
            return answer.code, dict(answer.headers), answer.read()
        except (urllib.error.URLError, OSError) as e:
            raise Failed(f"{method} {path}: no answer from {self.base} ({e})")


def expect(what, answer, status):
    """The answer's JSON body (None when empty) if its status is `status`, else Failed."""
    code, headers, body = answer
    if code != status:
        detail = body.decode(errors="replace")[:300]
        raise Failed(f"{what}: expected {status}, got {code}: {detail}")
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise Failed(f"{what}: the answer is not JSON: {body[:200]!r}")


def header(answer, name):
    for key, value in answer[1].items():
        if key.lower() == name.lower():
            return value
    return None


def smoke(api, scim_key, hooks_key, feed_wait):
    steps = []

    def step(line):
        steps.append(line)
        print(f"smoke: ok   {line}", flush=True)

    org = expect("GET /v1/organization", api.call("GET", "/v1/organization"), 200)
    step(f"the key reads its organisation {org.get('id')}")

    # The feed's end now, so that the new member's event is looked for after it only. Read
    # in pages of 100 member.created events, at most FEED_PAGES of them: a smoke test
    # belongs in an organisation of its own, not in one with years of history.
    after = None
    for _ in range(FEED_PAGES):
        query = "/v1/events?limit=100&types=member.created"
        if after:
            query += "&after=" + urllib.parse.quote(after)
        page = expect("GET /v1/events", api.call("GET", query), 200)
        after = page["nextCursor"]
        if not page["hasMore"]:
            break
    else:
        raise Failed(
            f"GET /v1/events: more than {FEED_PAGES * 100} member.created events before the end: "
            "run the smoke test with a key of an organisation kept for it"
        )
    step("the event feed reads to its end")

    email = f"smoke-{uuid.uuid4().hex[:12]}@example.com"
    create = api.call(
        "POST",
        "/v1/members",
        {"firstName": "Smoke", "lastName": "Test", "email": email, "role": "simple"},
        {"Idempotency-Key": f"smoke-{uuid.uuid4()}"},
    )
    member = expect("POST /v1/members", create, 201)
    mid = member["id"]
    if header(create, "ETag") != '"1"' or not header(create, "Location"):
        raise Failed(f"POST /v1/members: expected ETag \"1\" and a Location, got {create[1]}")
    step(f"created {mid} ({email})")
    try:
        run_member(api, mid, email, step)
        wait_for_event(api, after, mid, feed_wait)
        step(f"member.created of {mid} is in the feed")
    finally:
        # Clean up whatever happened: the member is left deactivated (a failure here must
        # not hide the step that failed).
        try:
            api.call("DELETE", f"/v1/members/{mid}")
        except Failed as e:
            print(f"smoke: could not deactivate {mid}: {e}", file=sys.stderr)
    if scim_key:
        for path in ("ServiceProviderConfig", "ResourceTypes", "Schemas"):
            got = expect(f"GET /scim/v2/{path}", api.call("GET", f"/scim/v2/{path}", key=scim_key), 200)
            if "schemas" not in got:
                raise Failed(f"GET /scim/v2/{path}: no `schemas` in {str(got)[:200]}")
        step("SCIM discovery answers (ServiceProviderConfig, ResourceTypes, Schemas)")
    if hooks_key:
        expect("GET /v1/webhooks", api.call("GET", "/v1/webhooks", key=hooks_key), 200)
        step("the webhooks key lists webhooks")
    return steps


def run_member(api, mid, email, step):
    path = f"/v1/members/{mid}"
    got = api.call("GET", path)
    expect(f"GET {path}", got, 200)
    if header(got, "ETag") != '"1"':
        raise Failed(f"GET {path}: expected ETag \"1\", got {header(got, 'ETag')}")
    expect(f"GET {path} If-None-Match", api.call("GET", path, headers={"If-None-Match": '"1"'}), 304)
    step("read it back; If-None-Match answers 304")

    changed = expect(
        f"PATCH {path} If-Match \"1\"",
        api.call("PATCH", path, {"headline": "smoke test"}, {"If-Match": '"1"'}),
        200,
    )
    if changed.get("version") != 2 or changed.get("headline") != "smoke test":
        raise Failed(f"PATCH {path}: expected version 2 with the headline, got {changed}")
    expect(
        f"PATCH {path} with a stale If-Match",
        api.call("PATCH", path, {"headline": "lost"}, {"If-Match": '"1"'}),
        412,
    )
    step("a conditional PATCH lands; a stale one is refused 412")

    expect(f"PATCH {path}?dryRun=true", api.call("PATCH", path + "?dryRun=true", {"jobTitle": "Dry"}), 200)
    after = expect(f"GET {path}", api.call("GET", path), 200)
    if after.get("version") != 2 or after.get("jobTitle") == "Dry":
        raise Failed(f"PATCH {path}?dryRun=true wrote: {after}")
    step("a dry run answers and writes nothing")

    listed = expect(
        "GET /v1/members?email=",
        api.call("GET", "/v1/members?email=" + urllib.parse.quote(email.upper())),
        200,
    )
    if [m.get("id") for m in listed.get("members", [])] != [mid]:
        raise Failed(f"GET /v1/members?email={email}: expected exactly {mid}, got {str(listed)[:300]}")
    step("the list finds it by email (case-insensitive)")

    gone = expect(f"DELETE {path}", api.call("DELETE", path), 200)
    if gone.get("isActive") is not False:
        raise Failed(f"DELETE {path}: expected isActive false, got {gone.get('isActive')}")
    back = expect(f"POST {path}/reactivate", api.call("POST", path + "/reactivate"), 200)
    if back.get("isActive") is not True:
        raise Failed(f"POST {path}/reactivate: expected isActive true, got {back.get('isActive')}")
    step("deactivated and reactivated")

    history = expect(f"GET {path}/audit-events", api.call("GET", path + "/audit-events?limit=10"), 200)
    kinds = [e.get("action") for e in history.get("events", [])]
    wanted = ["member.reactivated", "member.deactivated", "member.updated", "member.created"]
    if kinds != wanted:
        raise Failed(f"GET {path}/audit-events: expected {wanted} (newest first), got {kinds}")
    step("its history holds the four changes, newest first")


def wait_for_event(api, after, mid, wait):
    deadline = time.monotonic() + wait
    while True:
        query = "/v1/events?limit=100&types=member.created&after=" + urllib.parse.quote(after)
        page = expect("GET /v1/events", api.call("GET", query), 200)
        if any(e.get("subject") == mid for e in page["events"]):
            return
        after = page["nextCursor"]
        if page["hasMore"]:
            continue
        if time.monotonic() > deadline:
            raise Failed(f"GET /v1/events: no member.created for {mid} within {wait} s (is the event consumer running?)")
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the API's base URL (the stack's ApiUrl output)")
    parser.add_argument("--key", required=True, help="an API key with r_members and w_members")
    parser.add_argument("--scim-key", default="", help="a SCIM key: checks SCIM discovery")
    parser.add_argument("--hooks-key", default="", help="a key with r_webhooks: lists webhooks")
    parser.add_argument("--feed-wait", type=float, default=60, help="seconds to wait for the event (default 60)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per request (default 30)")
    args = parser.parse_args()
    api = Client(args.url, args.key, args.timeout)
    started = time.monotonic()
    try:
        steps = smoke(api, args.scim_key, args.hooks_key, args.feed_wait)
    except Failed as e:
        print(f"smoke: FAIL {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"smoke: {len(steps)} passed, 0 failed against {api.base} in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
