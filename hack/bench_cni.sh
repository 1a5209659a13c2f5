#!/usr/bin/env bash
# Only the CNI part of hack/bench.sh: ADD/DEL of the release `sriov` (or
# the binaries given as arguments, "label=path", compared in one
# interleaved run) against Debian's Go host-device, on a simulated node.
# Root (network namespaces). CNI_RUNS sets the number of runs (default 50).
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
require_root "hack/bench_cni.sh"
ensure_packages
CNI_RUNS=${CNI_RUNS:-50}
log "building release binaries"
cargo build --release --locked --quiet --bins
WORK=$(mktemp -d /tmp/sriov-bench.XXXXXX)
export SRIOV_SYSFS_ROOT=$WORK/sys
trap 'target/release/sriovctl sim destroy >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
target/release/sriovctl sim create --name bench >/dev/null
echo "### CNI ADD/DEL on the simulated node, $CNI_RUNS runs"
echo
if [ $# -eq 0 ]; then
  set -- "sriov=$PWD/target/release/sriov"
fi
python3 hack/bench_cni.py "$CNI_RUNS" "$@" "$WORK"
