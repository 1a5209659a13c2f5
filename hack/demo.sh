#!/usr/bin/env bash
# The main job on the simulated SR-IOV node, end to end:
#   simulated node (fake sysfs + veth "VFs") -> the sriov CNI plugin gives two
#   pods a VF each with a host-local address -> ping over the PF's wire ->
#   CNI DEL puts the VFs back on the host -> node destroyed.
# Device discovery and the kubelet registration/Allocate steps join the demo
# as those components land (see README "Status").
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
  rm -rf "$WORK/ipam" "$WORK/cni-state"
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

SRIOV=$PWD/target/debug/sriov
export SRIOV_CNI_STATE_DIR=$WORK/cni-state
cni() { # cni COMMAND POD DEVICE: run the sriov plugin as a runtime would
  local conf
  conf=$(cat <<JSON
{"cniVersion":"1.0.0","name":"sriov-net","type":"sriov","deviceID":"$3",
 "ipam":{"type":"host-local","subnet":"10.56.217.0/24","dataDir":"$WORK/ipam"}}
JSON
)
  echo "$conf" | CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS=/run/netns/$2 CNI_IFNAME=net1 \
    CNI_PATH=/usr/lib/cni "$SRIOV"
}

log "3. CNI ADD: each pod gets a VF of PF ens1f0 as net1, with a host-local address"
for pair in "demo-pod-a 0000:3b:01.0" "demo-pod-b 0000:3b:01.1"; do
  set -- $pair
  ip netns add "$1"
  echo "  $1 <- $2: $(cni ADD "$1" "$2")"
  echo "  inside $1: $(ip -n "$1" -br addr show net1)"
done

log "4. pod A pings pod B over the PF's wire"
ip netns exec demo-pod-a ping -c 3 -W 2 10.56.217.3

log "5. CNI DEL: the VFs go back to the host with their own names and MACs"
for pair in "demo-pod-a 0000:3b:01.0 ens1f0v0" "demo-pod-b 0000:3b:01.1 ens1f0v1"; do
  set -- $pair
  cni DEL "$1" "$2"
  ip netns del "$1"
  echo "  $(ip -br link show "$3")"
done
echo "  addresses still held by host-local: $(ls "$WORK/ipam/sriov-net" | grep -c '^10\.' || true)"

log "6. destroy: every namespace, link and file goes away"
"$SRIOVCTL" sim destroy
ip -br link | grep -E 'ens(1|4)f0' && { log "links left behind!"; exit 1; }
[ -e "$SRIOV_SYSFS_ROOT" ] && { log "tree left behind!"; exit 1; }
log "demo finished: the host is as it was"
