"""schemathesis hooks for the local contract fuzzing (tests/src/fuzz.rs sets SCHEMATHESIS_HOOKS).

Two failures are dropped, and only these:
- `cargo lambda watch`, the local stand-in for API Gateway, cannot hand a function a request
  body that is not UTF-8; it answers with its own 500 (an http-api-problem page, neither one
  of our problems nor, on /scim/v2, one of our SCIM errors) before any function runs. Given
  such a body, the function answers 400 `malformed_json` (on /scim/v2, `invalidSyntax`; unit
  test "invalid utf-8" in shared/src/http.rs). tests/src/fuzz.rs counts these answers and
  reports them.
- A made-up `cursor` or feed `after` (any string is "schema-valid": a cursor is opaque, so no schema can say
  which strings the API issued) answered 400 `invalid_cursor`, as openapi.yaml documents.

No key is set here: tests/src/fuzz.rs passes the /v1 key as `--header`, and schemathesis.toml
gives the /scim/v2 operations the SCIM key (MEMBERS_SCIM_KEY) as their own header, which wins
over `--header`; a hook's header (`before_call`, `map_headers`) would not.
"""

import schemathesis

OUR_PROBLEMS = "members-api.dev/problems/"
# On /scim/v2 paths our errors are SCIM documents (RFC 7644 §3.12), not problem+json.
OUR_SCIM_ERRORS = "urn:ietf:params:scim:api:messages:2.0:Error"


def _is_utf8(body) -> bool:
    if body is None or isinstance(body, str):
        return True
    try:
        bytes(body).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _made_up_cursor_refused(case, response) -> bool:
    query = case.query or {}
    return (
        response.status_code == 400
        and ("cursor" in query or "after" in query)
        and '"code":"invalid_cursor"' in response.text_lossy()
    )


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    text = response.text_lossy()
    emulator_page = response.status_code == 500 and OUR_PROBLEMS not in text and OUR_SCIM_ERRORS not in text
    if emulator_page and not _is_utf8(response.request.body):
        return False
    return not _made_up_cursor_refused(case, response)
