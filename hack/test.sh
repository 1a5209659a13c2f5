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
cargo test --locked --all-targets --no-fail-fast
log "doc tests"
cargo test --locked --doc
