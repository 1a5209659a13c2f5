#!/usr/bin/env bash
# The whole test suite, as CI runs it: system prerequisites, formatting,
# lints, every test, then the demo. Run as root so the network-namespace tests run;
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
# The README's first command must keep working: run the demo end to end
# (root only; under CI=true we are root).
if [ "$(id -u)" -eq 0 ]; then
  log "hack/demo.sh"
  bash hack/demo.sh >"$LOG.demo" 2>&1 || { status=1; tail -n 40 "$LOG.demo"; log "the demo failed"; }
  rm -f "$LOG.demo"
fi
# One closing line over all test binaries (cargo prints one per binary, and
# the last one is usually the empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /SKIPPED/ { s++ }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
exit $status
