#!/usr/bin/env bash
# Benchmarks of the release binaries against a baseline measured in the same
# run. Today: the CNI plugin's start-up cost (VERSION, the cheapest full
# invocation) against Debian's Go `host-device` plugin, the closest upstream
# relative of `sriov` (it also moves a device into a pod netns), and binary
# sizes. Prints Markdown tables for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
ensure_packages
ensure_packages time   # GNU time, for peak RSS
RUNS=${RUNS:-300}
CNI_RUNS=${CNI_RUNS:-50}
BASE=/usr/lib/cni/host-device

log "building release binaries"
cargo build --release --locked --quiet --bins

echo "### CNI start-up: CNI_COMMAND=VERSION, $RUNS interleaved runs"
echo
BENCH_STDIN='{"cniVersion":"1.0.0"}' CNI_COMMAND=VERSION \
  python3 hack/bench.py "$RUNS" "host-device (Go)=$BASE" "sriov=target/release/sriov" \
  "harness floor (/bin/true)=/bin/true"
echo
echo "### Binary sizes"
echo
echo "| binary | bytes | vs host-device (Go) |"
echo "|---|---|---|"
base_size=$(stat -c %s "$BASE")
for bin in sriov sriov-device-plugin sriovctl; do
  size=$(stat -c %s "target/release/$bin")
  echo "| $bin | $size | $(python3 -c "print(f'{$size / $base_size:.2f}x')") |"
done
echo "| host-device (Go) | $base_size | 1.00x |"

echo
echo "### CNI ADD/DEL on the simulated node, $CNI_RUNS runs"
echo
WORK=$(mktemp -d /tmp/sriov-bench.XXXXXX)
export SRIOV_SYSFS_ROOT=$WORK/sys
trap 'target/release/sriovctl sim destroy >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
target/release/sriovctl sim create --name bench >/dev/null
python3 hack/bench_cni.py "$CNI_RUNS" "$PWD/target/release/sriov" "$WORK"
