#!/usr/bin/env bash
# Benchmarks of the release binaries against a baseline measured in the same
# run: the CNI plugin's start-up cost (VERSION, the cheapest full
# invocation) against Debian's Go `host-device` plugin, the closest upstream
# relative of `sriov` (it also moves a device into a pod netns), binary
# sizes, discovery, and the device plugin's start-up, memory and Allocate
# cost at 1024 and 4096 VFs (hack/bench_dp.py; BENCH_ONLY=dp runs only
# that part), and one /metrics scrape at 4096 VFs against /healthz and
# against reading the VF counter files with cat (hack/bench_metrics.py;
# BENCH_ONLY=metrics). Prints Markdown tables for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
ensure_packages
ensure_packages time   # GNU time, for peak RSS
RUNS=${RUNS:-300}
CNI_RUNS=${CNI_RUNS:-50}
BASE=/usr/lib/cni/host-device

DP_RUNS=${DP_RUNS:-10}
DP_ALLOCS=${DP_ALLOCS:-200}
METRICS_RUNS=${METRICS_RUNS:-100}

log "building release binaries"
cargo build --release --locked --quiet --bins

device_plugin_bench() {
  echo "### Device plugin: start-up to the first full ListAndWatch, peak RSS, Allocate; $DP_RUNS interleaved runs"
  echo
  local work
  work=$(mktemp -d /tmp/sriov-bench-dp.XXXXXX)
  python3 hack/bench_dp.py "$DP_RUNS" "$DP_ALLOCS" "$PWD/target/release" "$work" 64 256
  rm -rf "$work"
}

metrics_bench() {
  echo "### Device plugin: one /metrics scrape, 16 PFs x 256 VFs, $METRICS_RUNS interleaved runs"
  echo
  local work
  work=$(mktemp -d /tmp/sriov-bench-metrics.XXXXXX)
  python3 hack/bench_metrics.py "$METRICS_RUNS" "$PWD/target/release" "$work" 256
  rm -rf "$work"
}

if [ "${BENCH_ONLY:-}" = dp ]; then
  device_plugin_bench
  exit 0
fi
if [ "${BENCH_ONLY:-}" = metrics ]; then
  metrics_bench
  exit 0
fi

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

echo
echo "### Discovery: 8 PFs x 256 VFs (tree only), sriovctl inventory with a one-pool config, $RUNS runs"
echo
python3 - "$WORK/big.toml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for n in range(8):
        f.write(f'[[pf]]\npci_address = "0000:{0x10 * (n + 1):02x}:00.0"\nname = "ens{n + 1}f0"\ntotal_vfs = 256\nnum_vfs = 256\n\n')
PY
echo '{"resourceList":[{"resourceName":"all_vfs","selectors":{"devices":["1889"]}}]}' > "$WORK/big.json"
target/release/sriovctl sim create --tree-only --sysfs-root "$WORK/big" --layout "$WORK/big.toml" >/dev/null
pools=$(target/release/sriovctl inventory --sysfs-root "$WORK/big" --config-file "$WORK/big.json" --output json \
  | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["pools"][0]["devices"]))')
echo "(the pool holds $pools VFs)"
echo
python3 hack/bench.py "$RUNS" "harness floor (/bin/true)=/bin/true" \
  "inventory of 2048 VFs=target/release/sriovctl inventory --sysfs-root $WORK/big --config-file $WORK/big.json --output json"
target/release/sriovctl sim destroy --sysfs-root "$WORK/big" >/dev/null

echo
device_plugin_bench
echo
metrics_bench
echo

echo "### Discovery over the live simulated tree: 16 PFs x 256 VFs, against the same node as plain files"
echo
cargo bench --locked --quiet --bench live_tree 2>/dev/null | grep -v '^$' || cargo bench --locked --bench live_tree
