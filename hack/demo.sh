#!/usr/bin/env bash
# The main job on the simulated SR-IOV node, end to end:
#   simulated node (fake sysfs + veth "VFs") -> two pods get a VF each ->
#   ping over the PF's wire -> VFs back on the host -> node destroyed.
# The pod plumbing below is plain `ip` for now; the discovery, kubelet and
# CNI steps replace it as those components land (see README "Status").
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
require_root "hack/demo.sh"
ensure_packages

log "building"
cargo build --locked --quiet --bins
SRIOVCTL=$PWD/target/debug/sriovctl

WORK=$(mktemp -d /tmp/sriov-demo.XXXXXX)
export SRIOV_SYSFS_ROOT=$WORK/sys
PODS=(demo-pod-a demo-pod-b)
cleanup() {
  for pod in "${PODS[@]}"; do ip netns del "$pod" 2>/dev/null || true; done
  "$SRIOVCTL" sim destroy >/dev/null 2>&1 || true
  rmdir "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

log "1. simulated node: two E810 ports, 4 VFs each (one on vfio-pci)"
"$SRIOVCTL" sim create --name demo

PF=$SRIOV_SYSFS_ROOT/bus/pci/devices/0000:3b:00.0
log "2. the sysfs tree, laid out like the kernel's"
echo "  $PF -> $(readlink "$PF")"
echo "  sriov_numvfs=$(cat "$PF/sriov_numvfs") sriov_totalvfs=$(cat "$PF/sriov_totalvfs")"
for n in 0 1; do echo "  virtfn$n -> $(readlink "$PF/virtfn$n")"; done
VF0=$SRIOV_SYSFS_ROOT/bus/pci/devices/0000:3b:01.0
echo "  0000:3b:01.0: driver -> $(readlink "$VF0/driver"), physfn -> $(readlink "$VF0/physfn"), netdev $(ls "$VF0/net")"
echo "  0000:86:01.3: driver -> $(readlink "$SRIOV_SYSFS_ROOT/bus/pci/devices/0000:86:01.3/driver") (no netdev)"

log "3. two pods each get a VF of PF ens1f0 as net1"
i=10
for pair in "demo-pod-a ens1f0v0" "demo-pod-b ens1f0v1"; do
  set -- $pair
  ip netns add "$1"
  ip link set "$2" netns "$1"
  ip -n "$1" link set "$2" name net1
  ip -n "$1" addr add "10.56.217.$i/24" dev net1
  ip -n "$1" link set net1 up
  echo "  $1: $(ip -n "$1" -br addr show net1)"
  i=$((i + 1))
done

log "4. pod A pings pod B over the PF's wire"
ip netns exec demo-pod-a ping -c 3 -W 2 10.56.217.11

log "5. VFs go back to the host under their own names"
for pair in "demo-pod-a ens1f0v0" "demo-pod-b ens1f0v1"; do
  set -- $pair
  ip -n "$1" link set net1 down
  ip -n "$1" link set net1 name "$2"
  ip -n "$1" link set "$2" netns 1
  ip netns del "$1"
  echo "  $(ip -br link show "$2")"
done

log "6. destroy: every namespace, link and file goes away"
"$SRIOVCTL" sim destroy
ip -br link | grep -E 'ens(1|4)f0' && { log "links left behind!"; exit 1; }
[ -e "$SRIOV_SYSFS_ROOT" ] && { log "tree left behind!"; exit 1; }
log "demo finished: the host is as it was"
