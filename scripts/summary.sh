#!/usr/bin/env bash
# The last lines of `make test` / `make verify`: one line per test binary that ran tests, from
# the saved output of `cargo test --workspace` (and scim2-tester's figures), then the
# robustness run's table again.
set -euo pipefail
log=${1:-target/test-output.log}
[ -f "$log" ] || { echo "summary: no $log" >&2; exit 1; }

echo
echo "make test: summary"
awk '
  function flush_name(s) { sub(/-[0-9a-f]+\)$/, "", s); sub(/^.*\//, "", s); return s }
  /^ *Running / { suite = flush_name($NF); part = 0; next }
  /^ *Doc-tests / { suite = "doc-tests " $2; part = 0; next }
  /^test result:/ {
    part++
    passed = $4; failed = $6; ignored = $8
    if (passed + failed + ignored == 0) next
    label = (part > 1) ? suite " (after-checks)" : suite
    printf "  %-36s %7d passed %5d failed %5d ignored\n", label, passed, failed, ignored
    tp += passed; tf += failed
    next
  }
  /^verify: [0-9]+ of [0-9]+ checks passed/ { printf "  %-36s %s\n", "verify (robustness run)", substr($0, 9) }
  /^scim2-tester: [0-9]+ passed/ { printf "  %-36s %s\n", "scim2-tester (RFC 7643/7644 checks)", substr($0, 15) }
  /^scim-sanity probe: / { printf "  %-36s %s\n", "scim-sanity probe (Users)", substr($0, 20) }
  END { printf "  %-36s %7d passed %5d failed\n", "all test binaries", tp, tf }
' "$log"
# The robustness table, as the run printed it.
echo
sed -n '/^verify: summary$/,/^verify: [0-9]* of [0-9]* checks passed/p' "$log"
