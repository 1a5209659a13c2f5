#!/usr/bin/env bash
# Soak of the `sriov` CNI plugin (not in CI: about half an hour): CYCLES
# (default 10000) ADD/DEL cycles on the simulated node with host-local and
# injected faults (IPAM failure, the pod netns destroyed, SIGKILL mid-ADD,
# two concurrent ADDs of one VF), then the VFs not home, addresses held,
# state files and pod namespaces left, all expected to be zero. Root.
# See hack/soak.py for the faults and what each cycle checks.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
require_root "hack/soak.sh"
ensure_packages
CYCLES=${CYCLES:-10000}
log "building release binaries"
cargo build --release --locked --quiet --bins
WORK=$(mktemp -d /tmp/sriov-soak.XXXXXX)
export SRIOV_SYSFS_ROOT=$WORK/sys
trap 'target/release/sriovctl sim destroy >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
target/release/sriovctl sim create --name soak >/dev/null
log "$CYCLES cycles"
python3 hack/soak.py "$CYCLES" "$PWD/target/release/sriov" "$WORK"
