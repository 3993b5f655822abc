"""`make validate`: each function's role grants the DynamoDB actions its code calls, no more.

What a function needs is DERIVED from the Rust source, not listed by hand:
1. Sources: functions/<Binary>/src and the src of its workspace path dependencies (shared/),
   `#[cfg(test)]` modules left out; comments and literals blanked; every `fn` indexed with its
   module, visibility, and whether it is a method (in an `impl` or `trait` block).
2. From the function crate's fns, references are followed transitively by name: `.x(` reaches
   every method `x`, `path::x` every fn `x`, a bare `x(` the same file's fn or else every free
   fn `x`, a bare `x` passed as a value (the handler given to `serve`) the same file's fn or
   one named in a `use`; only fns visible from the caller (a private `DynamoStore::get` is not
   reached by a `map.get(`). So `store.member(` on `&impl Store` reaches `impl Store for
   DynamoStore`, then its helpers, transactions and item builders.
3. In the fns reached, in files using `aws_sdk_dynamodb` (or on a `client`): SDK calls such as
   `.get_item()` or `.query()` (on an index when `.index_name(` comes before its `.send()`),
   and TransactWriteItems' item builders `Put::`, `Update::`, `Delete::`,
   `ConditionCheck::builder`: IAM authorises those items as PutItem, UpdateItem, DeleteItem,
   ConditionCheckItem, and has no TransactWriteItems action:
   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html
Limits: name-based and path-insensitive, it over-approximates (a name shared by two fns reaches
both; a branch never taken counts: update-organization gets list-members' reads), which only
makes the check looser. It misses calls made by macros, through fn pointers kept in data, or
by a client under another name in a file not importing `aws_sdk_dynamodb`; DynamoDB Local
ignores IAM, so the integration tests would not notice either.

Grants are read from what SAM creates (samtranslator, offline, as check_routes.py). It fails
when a function
- is granted an action, or the index resource, that its code never calls; or a wildcard, a
  Deny, NotAction/NotResource, a managed policy beyond SAM's own logging and X-Ray ones;
- lacks an action its code calls (AccessDenied once deployed), or has GetItem only under a
  condition (every request reads its `APIKEY#<hash>` item);
- may write (Put/Update/Delete/ConditionCheck/BatchWrite) outside `ForAllValues:StringLike`
  `dynamodb:LeadingKeys` `ORG#...` with `Null` `false` (ForAllValues holds when the key is absent:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition_examples-multi-valued-context-keys.html):
  no function may write an `APIKEY#` item, only the operator's membersctl;
- has no `Policies` (`Policies: []` says "no AWS access" explicitly).
`--self-test` checks mutated copies of template.yaml and fails unless each is refused as expected.
"""

import copy
import logging
import os
import re
import sys
import tomllib
from collections import namedtuple
from pathlib import Path

from samtranslator.translator.transform import transform
from template import load as load_template

os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
logging.getLogger("samtranslator").setLevel(logging.ERROR)  # "unpublished metrics", per transform
os.chdir(Path(__file__).resolve().parent.parent)

SDK_OPS = {"get_item": "GetItem", "batch_get_item": "BatchGetItem", "query": "Query", "scan": "Scan",
           "put_item": "PutItem", "update_item": "UpdateItem", "delete_item": "DeleteItem",
           "batch_write_item": "BatchWriteItem", "describe_table": "DescribeTable", "create_table": "CreateTable",
           "update_table": "UpdateTable", "delete_table": "DeleteTable", "list_tables": "ListTables",
           "execute_statement": "PartiQL*", "batch_execute_statement": "PartiQL*", "execute_transaction": "PartiQL*"}
BUILDERS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem",
            "Get": "GetItem", "PutRequest": "BatchWriteItem", "DeleteRequest": "BatchWriteItem"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "ConditionCheckItem",
          "PartiQLInsert", "PartiQLUpdate", "PartiQLDelete"}
SAM_MANAGED = ("/AWSLambdaBasicExecutionRole", "/AWSXrayWriteOnlyAccess")
TABLE = "MembersTable"

# ------------------------------------------------------------------ the code: what it calls

LEXEMES = re.compile(r'//[^\n]*|/\*.*?\*/|(?<!\w)b?r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|\'(?:\\.|[^\\\'])\'', re.S)
HEAD = re.compile(r"\bfn\s+(\w+)|\bimpl\b|\btrait\s+\w+|\bmod\s+(\w+)\s*\{|\{")
TOKEN = re.compile(r"(\.|::)?\s*\b([A-Za-z_]\w*)(\s*::\s*<[^;{}]*?>\s*\(|\s*\()?")
VIS = re.compile(r"(pub(?:\s*\(\s*(\w+)[^)]*\))?\s+)?(?:(?:const|async|unsafe)\s+)*$")
Fn = namedtuple("Fn", "name path crate module vis method body")


def strip(src):
    """Comments out, string and char literals emptied: braces in them no longer count."""
    return LEXEMES.sub(lambda m: " " if m[0][0] == "/" else ("'_'" if m[0][0] == "'" else '""'), src)


def close(text, i):
    """Index of the brace closing the one at i."""
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return j
    return len(text) - 1


def included(binary):
    """Files another crate lends this function by `#[path = "…"] mod x;`: [(path, module name)]."""
    out = []
    for path in sorted(Path(f"functions/{binary}/src").rglob("*.rs")):
        for m in re.finditer(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', path.read_text()):
            out.append(((path.parent / m[1]).resolve().relative_to(Path.cwd()), m[2]))
    return out


def sources(binary):
    """{path: (crate root, module path, stripped text, uses the SDK)}, test modules left out."""
    workspace = tomllib.loads(Path("Cargo.toml").read_text())["workspace"].get("dependencies", {})
    roots = [Path(f"functions/{binary}/src")]
    for name, spec in tomllib.loads(Path(f"functions/{binary}/Cargo.toml").read_text()).get("dependencies", {}).items():
        spec = workspace.get(name, {}) if isinstance(spec, dict) and spec.get("workspace") else spec
        roots += [Path(spec["path"]) / "src"] if isinstance(spec, dict) and "path" in spec else []
    files, skipped = {}, set()
    for root in roots:
        for path in sorted(root.rglob("*.rs")):
            raw = path.read_text()
            text = strip(raw)
            for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])", text):
                if m[2] == "{":
                    end = close(text, m.end() - 1)
                    text = text[: m.start()] + " " * (end + 1 - m.start()) + text[end + 1 :]
                else:
                    base = path.parent if path.name in ("mod.rs", "lib.rs", "main.rs") else path.with_suffix("")
                    skipped |= {base / f"{m[1]}.rs", base / m[1] / "mod.rs"}
            parts = path.relative_to(root).with_suffix("").parts
            files[path] = (root, parts[:-1] if parts[-1] in ("mod", "lib", "main") else parts, text, "aws_sdk_dynamodb" in raw)
    for path, module in included(binary):
        raw = path.read_text()
        files[path] = (roots[0], (module,), strip(raw), "aws_sdk_dynamodb" in raw)
    return {path: f for path, f in files.items() if path not in skipped}


def index(files):
    """Every fn with a body or a declaration, walking items, impl and trait blocks."""
    fns = []

    def items(path, crate, module, text, i, end, owner):
        while (m := HEAD.search(text, i, end)) is not None:
            if m[0] == "{":  # another item's braces (struct, enum, const, macro)
                i = close(text, m.start()) + 1
            elif m[2]:  # an inline `mod x { }` (the test ones are blanked already)
                items(path, crate, module + (m[2],), text, m.end(), close(text, m.end() - 1), owner)
                i = close(text, m.end() - 1) + 1
            elif m[0].startswith(("impl", "trait")):
                body = text.index("{", m.end())
                is_trait = m[0][0] == "t" or re.search(r"\bfor\b", text[m.end(): body])
                items(path, crate, module, text, body + 1, close(text, body), "trait" if is_trait else "impl")
                i = close(text, body) + 1
            else:
                j, depth = m.end(), 0
                while text[j] not in "{;" or depth:  # the body, or `;`, after the signature
                    depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(text[j], 0)
                    j += 1
                vis = VIS.search(text[max(0, m.start() - 40): m.start()])
                vis = "pub" if owner == "trait" or (vis[1] and not vis[2]) else (vis[2] or "private")
                body = text[j: close(text, j) + 1] if text[j] == "{" else ""
                fns.append(Fn(m[1], path, crate, module, vis, owner is not None, body))
                i = j + len(body) + 1

    for path, (crate, module, text, _) in files.items():
        items(path, crate, module, text, 0, len(text), None)
    return fns


def visible(fn, caller):
    if fn.crate != caller.crate:
        return fn.vis == "pub"
    if fn.vis in ("private", "self", "super"):
        scope = fn.module[:-1] if fn.vis == "super" else fn.module
        return caller.module[: len(scope)] == scope
    return True


def derive(binary):
    """{(action, "table" | "index"): "file:fn" where the code calls it} for one function crate."""
    files = sources(binary)
    fns = index(files)
    imports = {p: set(re.findall(r"\w+", " ".join(re.findall(r"\buse\s+([^;]*);", f[2])))) for p, f in files.items()}
    by_name = {}
    for fn in fns:
        by_name.setdefault(fn.name, []).append(fn)
    todo = [fn for fn in fns if fn.path.is_relative_to(f"functions/{binary}")]
    seen = set(map(id, todo))
    while todo:
        caller = todo.pop()
        for m in TOKEN.finditer(caller.body):
            pre, name, call = m.groups()
            if name not in by_name or (not call and re.match(r"\s*(::|!)", caller.body[m.end():])):
                continue  # not a fn, a path's first segment, or a macro
            named = [f for f in by_name[name] if visible(f, caller)]
            if pre == ".":
                targets = [f for f in named if f.method] if call else []
            elif pre == "::":
                targets = named
            else:
                free = [f for f in named if not f.method]
                local = [f for f in free if f.path == caller.path]
                targets = local or (free if call or name in imports[caller.path] else [])
            todo += [f for f in targets if id(f) not in seen]
            seen |= set(map(id, targets))
    needed = {}
    for fn in (f for f in fns if id(f) in seen):
        where, uses_sdk = f"{fn.path.name}:{fn.name}", files[fn.path][3]
        for m in re.finditer(r"\.\s*(\w+)\s*\(\s*\)", fn.body):
            action = SDK_OPS.get(m[1])
            if action and (uses_sdk or re.search(r"client\s*(\(\s*\))?\s*$", fn.body[: m.start()])):
                send = re.compile(r"\.\s*send\s*\(").search(fn.body, m.end())
                chain = fn.body[m.end(): send.start() if send else None]
                on_index = action in ("Query", "Scan") and re.search(r"\.\s*index_name\s*\(", chain)
                # The rate limit counts' writes: only RATE# items (rates.rs).
                kind = "rate" if action in WRITES and fn.path.name == "rates.rs" else "index" if on_index else "table"
                needed.setdefault((action, kind), where)
        for m in re.finditer(r"\b(\w+)\s*::\s*builder\b", fn.body if uses_sdk else ""):
            if m[1] in BUILDERS:
                needed.setdefault((BUILDERS[m[1]], "table"), where)
    return needed


# ------------------------------------------------------------------ the template: what IAM grants


def listed(x):
    return x if isinstance(x, list) else [x]


def resource_kind(resource):
    """"table" or "index" of MembersTable; None for anything else ("*" included)."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        target = resource["Fn::GetAtt"]
        return "table" if (target.split(".") if isinstance(target, str) else target) == [TABLE, "Arn"] else None
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text, names = (resource["Fn::Sub"], {}) if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"]
        for name, value in names.items():
            text = text.replace("${%s}" % name, TABLE if value == {"Ref": TABLE} else "?")
        text = text.replace("${%s.Arn}" % TABLE, f"arn:aws:dynamodb:r:a:table/{TABLE}").replace("${%s}" % TABLE, TABLE)
        if m := re.fullmatch(rf"arn:[^*?]*:table/{TABLE}(/index/(\*|\w+))?", text):
            return "index" if m[1] else "table"
    return None


def tenant_only(condition):
    """Whether a statement's condition limits it to items whose partition key starts `ORG#`."""
    condition = condition or {}
    values = [v for op in ("ForAllValues:StringLike", "ForAllValues:StringEquals")
              for v in listed(condition.get(op, {}).get("dynamodb:LeadingKeys", []))]
    present = str(condition.get("Null", {}).get("dynamodb:LeadingKeys")).lower() == "false"
    return bool(values) and present and (all(isinstance(v, str) and v.startswith("ORG#") for v in values)
                                         or rate_only(condition))


def rate_only(condition):
    """Whether a statement's condition limits it to the rate limit counts (`RATE#` items)."""
    condition = condition or {}
    values = [v for op in ("ForAllValues:StringLike", "ForAllValues:StringEquals")
              for v in listed(condition.get(op, {}).get("dynamodb:LeadingKeys", []))]
    present = str(condition.get("Null", {}).get("dynamodb:LeadingKeys")).lower() == "false"
    return bool(values) and present and all(isinstance(v, str) and v.startswith("RATE#") for v in values)


def label(pairs):
    return ", ".join(sorted(a + ("(index)" if k == "index" else "") for a, k in pairs)) or "-"


# The grants beyond DynamoDB: each action only on this template's resource of its kind, and
# only for code that makes the call.
OTHER_SERVICES = {"events:PutEvents": ("AWS::Events::EventBus", ".put_events("),
                  "sqs:SendMessage": ("AWS::SQS::Queue", ".send_message("),
                  "sqs:ChangeMessageVisibility": ("AWS::SQS::Queue", ".change_message_visibility(")}
# SAM's own policy for a function's event source of this type.
EVENT_SOURCE_POLICIES = {"DynamoDB": "service-role/AWSLambdaDynamoDBExecutionRole",
                         "SQS": "service-role/AWSLambdaSQSQueueExecutionRole"}


def other_service(template, name, binary, s, streams):
    """A statement of non-DynamoDB actions: each in OTHER_SERVICES, on a resource of this
    template of the right kind, for code that calls it; or sqs:SendMessage on the function's
    own stream on-failure destination (SAM adds that one itself)."""
    problems = []
    own = list(Path(f"functions/{binary}/src").rglob("*.rs")) + [p for p, _ in included(binary)]
    code = "\n".join(p.read_text() for p in own)
    failure_queues = [e["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                      for e in streams]
    for action in listed(s["Action"]):
        for resource in listed(s.get("Resource", [])):
            target = resource.get("Fn::GetAtt") if isinstance(resource, dict) else None
            target = target.split(".") if isinstance(target, str) else target
            kind = template["Resources"].get(target[0], {}).get("Type") if target else None
            if action == "sqs:SendMessage" and resource in failure_queues:
                continue
            if action in OTHER_SERVICES and kind == OTHER_SERVICES[action][0] and target[1] == "Arn":
                if OTHER_SERVICES[action][1] not in code:
                    problems.append(f"{name}: grants {action}, which the code of {binary} never calls")
            else:
                problems.append(f"{name}: {action} on {resource}: name each action, and the table or its indexes")
    return problems


def check(template, derived):
    """(problems, rows of (function, granted, derived)); `derived` caches derive() by binary."""
    template, problems, rows, binaries = copy.deepcopy(template), [], [], {}
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            binaries[name] = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            resource["Properties"]["CodeUri"] = "s3://bucket/key"  # what `sam build` puts there
            if "Policies" not in resource["Properties"]:
                problems.append(f"{name}: no Policies; give it explicit statements (or `Policies: []` for none)")
    out = transform(template, {}, type("NoManagedPolicies", (), {"load": lambda self: {}})())["Resources"]
    for name, binary in sorted(binaries.items()):
        if binary not in derived:
            derived[binary] = derive(binary) if Path(f"functions/{binary}/Cargo.toml").is_file() else None
        needed, role = derived[binary], out[name]["Properties"].get("Role")
        role = out.get(role["Fn::GetAtt"][0]) if isinstance(role, dict) and "Fn::GetAtt" in role else None
        if needed is None or role is None:
            problems.append(f"{name}: no crate functions/{binary}, or a role not made by this template: cannot check it")
            continue
        sources = template["Resources"][name]["Properties"].get("Events", {}).values()
        streams = [e for e in sources if e.get("Type") == "DynamoDB"]
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            # SAM gives a function with a stream or queue event source the policy to read it.
            if isinstance(arn, str) and any(arn.endswith(EVENT_SOURCE_POLICIES.get(e.get("Type"), "-"))
                                            for e in sources):
                continue
            if not (isinstance(arn, str) and arn.endswith(SAM_MANAGED)):
                problems.append(f"{name}: managed policy {arn} cannot be checked; use explicit statements")
        granted, unconditional = set(), set()
        for s in (s for p in role["Properties"].get("Policies", []) for s in listed(p["PolicyDocument"]["Statement"])):
            if s.get("Effect") != "Allow" or "NotAction" in s or "NotResource" in s:
                problems.append(f"{name}: only Allow statements with Action and Resource are understood: {s}")
                continue
            if all(not a.startswith("dynamodb:") for a in listed(s["Action"])):
                problems += other_service(template, name, binary, s, streams)
                continue
            actions = [a.removeprefix("dynamodb:") for a in listed(s["Action"])]
            kinds = {resource_kind(r) for r in listed(s.get("Resource", []))}
            counts = rate_only(s.get("Condition"))
            for action in actions:
                if "*" in action or None in kinds:
                    problems.append(f"{name}: {action} on {s.get('Resource')}: name each action, and the table or its indexes")
                if counts and action in WRITES:
                    granted |= {(action, "rate") for kind in kinds - {None}}
                    continue
                granted |= {(action, kind) for kind in kinds - {None}}
                unconditional |= {(action, kind) for kind in kinds - {None} if not s.get("Condition")}
            if (writes := sorted(WRITES & set(actions))) and not tenant_only(s.get("Condition")):
                problems.append(f"{name}: {', '.join(writes)} not limited to ORG# items (Condition ForAllValues:StringLike "
                                'dynamodb:LeadingKeys ["ORG#*"] and Null dynamodb:LeadingKeys "false"): it could write APIKEY# items')
        for action, kind in sorted(granted - set(needed)):
            problems.append(f"{name}: grants dynamodb:{action} on the {kind}, which the code of {binary} never calls")
        for (action, kind), where in sorted(needed.items()):
            if (action, kind) not in granted:
                problems.append(f"{name}: calls dynamodb:{action} on the {kind} ({where}) but is not granted it: AccessDenied")
            elif action == "GetItem" and (action, kind) not in unconditional:
                problems.append(f"{name}: GetItem must be granted unconditioned: every request reads its APIKEY#<hash> item")
        rows.append((name, label(granted), label(needed)))
    return problems, rows


# ------------------------------------------------------------------ self-test and main


def statement(template, function, action):
    """The statement of a function's Policies that names `action` (for the mutations)."""
    policies = template["Resources"][function]["Properties"]["Policies"]
    return next(s for p in policies for s in p.get("Statement", []) if f"dynamodb:{action}" in listed(s["Action"]))


MUTATIONS = [  # (what, how, the refusal expected): each must make the check fail that way
    ("SendMessage for a function that never sends", lambda t: t["Resources"]["DeliverWebhooksFunction"]["Properties"][
        "Policies"][0]["Statement"][-1].update(Action=["sqs:SendMessage"]),
     "DeliverWebhooksFunction: grants sqs:SendMessage, which the code of deliver-webhooks never calls"),
    ("PutEvents on every bus", lambda t: next(st for st in t["Resources"]["PublishEventsFunction"]["Properties"]["Policies"][0][
        "Statement"] if st["Action"] == ["events:PutEvents"]).update(Resource="*"), "PublishEventsFunction: events:PutEvents on *"),
    ("PutEvents for a function that never publishes", lambda t: statement(t, "ListEventsFunction", "GetItem").update(
        Action=["events:PutEvents"], Resource={"Fn::GetAtt": ["EventBus", "Arn"]}) or t["Resources"]["ListEventsFunction"][
        "Properties"]["Policies"][0]["Statement"].append({"Sid": "R", "Effect": "Allow", "Action": ["dynamodb:GetItem",
        "dynamodb:BatchGetItem", "dynamodb:Query"], "Resource": {"Fn::GetAtt": ["MembersTable", "Arn"]}}),
     "ListEventsFunction: grants events:PutEvents, which the code of list-events never calls"),
    ("DynamoDBCrudPolicy back on create-member", lambda t: t["Resources"]["CreateMemberFunction"]["Properties"].update(
        Policies=[{"DynamoDBCrudPolicy": {"TableName": {"Ref": TABLE}}}]), "CreateMemberFunction: grants dynamodb:Scan"),
    ("create-role may write APIKEY#* items", lambda t: statement(t, "CreateRoleFunction", "PutItem")["Condition"][
        "ForAllValues:StringLike"]["dynamodb:LeadingKeys"].append("APIKEY#*"), "CreateRoleFunction: PutItem not limited to ORG#"),
    ("delete-role writes without LeadingKeys", lambda t: statement(t, "DeleteRoleFunction", "DeleteItem").pop("Condition"),
     "DeleteRoleFunction: DeleteItem, PutItem not limited"),
    ("Scan on list-members", lambda t: statement(t, "ListMembersFunction", "GetItem")["Action"].append("dynamodb:Scan"),
     "ListMembersFunction: grants dynamodb:Scan"),
    ("PutItem on read-only get-member", lambda t: statement(t, "GetMemberFunction", "GetItem")["Action"].append(
        "dynamodb:PutItem"), "GetMemberFunction: grants dynamodb:PutItem"),
    ("create-role without PutItem", lambda t: statement(t, "CreateRoleFunction", "PutItem").update(
        Action=["dynamodb:UpdateItem"]), "CreateRoleFunction: calls dynamodb:PutItem"),
    ("list-roles querying the table, not the index", lambda t: next(
        st for st in t["Resources"]["ListRolesFunction"]["Properties"]["Policies"][0]["Statement"]
        if st.get("Sid") == "QueryIndexes").update(Resource={"Fn::GetAtt": [TABLE, "Arn"]}),
     "ListRolesFunction: calls dynamodb:Query on the index"),
    ("get-organization without Policies", lambda t: t["Resources"]["GetOrganizationFunction"]["Properties"].pop(
        "Policies"), "GetOrganizationFunction: no Policies"),
    ("get-member counting requests on ORG# items", lambda t: next(
        st for st in t["Resources"]["GetMemberFunction"]["Properties"]["Policies"][0]["Statement"]
        if st.get("Sid") == "CountRequests")["Condition"]["ForAllValues:StringLike"].update({"dynamodb:LeadingKeys": ["ORG#*"]}),
     "GetMemberFunction: calls dynamodb:UpdateItem on the rate"),
    ("dynamodb:* on list-audit-events", lambda t: statement(t, "ListAuditEventsFunction", "Query").update(
        Action=["dynamodb:*"]), "ListAuditEventsFunction: * on"),
]


def main():
    template, derived = load_template(), {}
    problems, rows = check(template, derived)
    if "--self-test" in sys.argv:
        failed = ["template.yaml itself"] if problems else []
        for what, mutate, expected in MUTATIONS:
            mutated = copy.deepcopy(template)
            mutate(mutated)
            found = next((p for p in check(mutated, derived)[0] if expected in p), None)
            print(f"self-test: {what}: " + (f"refused ({found})" if found else f"NOT REFUSED with {expected!r}"))
            failed += [] if found else [what]
        print("self-test: " + (f"FAILED: {'; '.join(failed)}" if failed else f"all {len(MUTATIONS)} mutations refused"))
        return 1 if failed else 0
    width, granted_width = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'function':<{width}}  {'granted by template.yaml':<{granted_width}}  derived from the code")
    for name, granted, needed in rows:
        print(f"{name:<{width}}  {granted:<{granted_width}}  {'(same)' if needed == granted else needed}")
    for problem in problems:
        print(f"IAM: {problem}")
    if not problems:
        print(f"template.yaml: {len(rows)} roles grant exactly the DynamoDB actions their code calls; writes only to ORG# items (and RATE#, the rate limit counts)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
