#!/usr/bin/env bash
# The whole test suite, as CI runs it: system prerequisites, formatting,
# lints, then every test. Run as root so the network-namespace tests run;
# under CI=true they refuse to skip.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh

if [ "${CI:-}" = "true" ] && [ "$(id -u)" -ne 0 ]; then
  log "CI=true requires root: the netns tests may not skip in CI"
  exit 1
fi
ensure_packages || log "continuing without some packages: tests that need them will say so"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
log "cargo test"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
status=0
cargo test --locked --no-fail-fast 2>&1 | tee "$LOG" || status=$?
# One closing line over all test binaries (cargo prints one per binary, and
# the last one is usually the empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /SKIPPED/ { s++ }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
exit $status
