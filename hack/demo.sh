#!/usr/bin/env bash
# The main job on the simulated SR-IOV node, end to end:
#   simulated node (fake sysfs + veth "VFs") -> discovery and pools from an
#   upstream-style config.json -> the device plugin registers one resource per
#   pool with a stand-in kubelet, which allocates a VF per pod (preferred
#   allocation, Allocate, device-info file) and restarts once -> the sriov CNI
#   plugin gives each pod its allocated VF with a host-local address -> ping
#   over the PF's wire -> CNI DEL puts the VFs back -> the device plugin stops
#   on SIGTERM and removes its sockets and files -> the node lives on (VFs
#   made through sriov_numvfs, a cable pulled) -> one daemon serving a pool
#   through the device plugin and one through DRA (stand-in API server and
#   kubelet): slices, a claim prepared, the CNI attaching its VF by the
#   slice's deviceID, DEL, Unprepare -> node destroyed.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
require_root "hack/demo.sh"
ensure_packages

log "building"
cargo build --locked --quiet --bins
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
SRIOVCTL=$TARGET/debug/sriovctl
DEVICE_PLUGIN=$TARGET/debug/sriov-device-plugin

WORK=$(mktemp -d /tmp/sriov-demo.XXXXXX)
export SRIOV_SYSFS_ROOT=$WORK/sys
PODS=(demo-pod-a demo-pod-b)
DP_PID=
cleanup() {
  [ -n "$DP_PID" ] && kill "$DP_PID" 2>/dev/null && wait "$DP_PID" 2>/dev/null || true
  for pod in "${PODS[@]}"; do ip netns del "$pod" 2>/dev/null || true; done
  "$SRIOVCTL" sim destroy >/dev/null 2>&1 || true
  for pid in ${KUBELET_PID:-} ${API_PID:-}; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK/ipam" "$WORK/cni-state" "$WORK/kubelet" "$WORK/devinfo" "$WORK/plugins" "$WORK/plugins_registry" "$WORK/cdi"
  rm -f "$WORK/config.json" "$WORK/device-plugin.log" "$WORK/kubelet-sim.out" "$WORK/kubeconfig" "$WORK/claim.yaml" \
    "$WORK/api.in" "$WORK/api.out" "$WORK/kubelet.in" "$WORK/kubelet.out" "$WORK/kubelet.err" "$WORK/api.err"
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

log "3. discovery and pools: the config.json sriov-network-device-plugin would read"
cat > "$WORK/config.json" <<'JSON'
{"resourceList": [
  {"resourceName": "sriov_netdevice", "selectors": {"pfNames": ["ens1f0"], "drivers": ["iavf"]}},
  {"resourceName": "sriov_dpdk", "selectors": {"drivers": ["vfio-pci"]}}
]}
JSON
"$SRIOVCTL" inventory --config-file "$WORK/config.json"

log "4. device plugin: one gRPC server per pool; a stand-in kubelet registers them, allocates, restarts"
mkdir -p "$WORK/kubelet"
"$DEVICE_PLUGIN" --config-file "$WORK/config.json" --device-plugin-path "$WORK/kubelet" \
  --registration-mode kubelet-socket --devinfo-dir "$WORK/devinfo" 2>"$WORK/device-plugin.log" &
DP_PID=$!
"$SRIOVCTL" --log-level warn kubelet-sim --dir "$WORK/kubelet" >"$WORK/kubelet-sim.out" <<'COMMANDS'
wait intel.com/sriov_netdevice 3
wait intel.com/sriov_dpdk 1
list
allocate intel.com/sriov_netdevice preferred:1
allocate intel.com/sriov_netdevice preferred:1
allocate intel.com/sriov_dpdk preferred:1
restart
quit
COMMANDS
sed 's/^/  /' "$WORK/kubelet-sim.out"
mapfile -t ALLOCATED < <(sed -n 's/^intel.com\/sriov_netdevice: allocated //p' "$WORK/kubelet-sim.out")
[ ${#ALLOCATED[@]} -eq 2 ] || { log "expected two allocations, got: ${ALLOCATED[*]}"; exit 1; }
echo "  device-info file for the CNI (via Multus): $(cat "$WORK/devinfo/intel.com-sriov_netdevice-${ALLOCATED[0]}-device.json")"

SRIOV=$TARGET/debug/sriov
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
host_name() { ls "$SRIOV_SYSFS_ROOT/bus/pci/devices/$1/net"; }
HOST_A=$(host_name "${ALLOCATED[0]}")
HOST_B=$(host_name "${ALLOCATED[1]}")

log "5. CNI ADD: each pod gets its allocated VF as net1 (deviceID as Multus passes it), with a host-local address"
for pair in "demo-pod-a ${ALLOCATED[0]}" "demo-pod-b ${ALLOCATED[1]}"; do
  set -- $pair
  ip netns add "$1"
  echo "  $1 <- $2: $(cni ADD "$1" "$2")"
  echo "  inside $1: $(ip -n "$1" -br addr show net1)"
done

echo "  the live tree follows the kernel: $HOST_A left the host's view with its VF"
echo "    ${ALLOCATED[0]}/net: [$(ls "$SRIOV_SYSFS_ROOT/bus/pci/devices/${ALLOCATED[0]}/net")]  class/net/$HOST_A: $([ -e "$SRIOV_SYSFS_ROOT/class/net/$HOST_A" ] && echo present || echo absent)"

log "6. pod A pings pod B over the PF's wire"
ip netns exec demo-pod-a ping -c 3 -W 2 10.56.217.3

log "7. CNI DEL: the VFs go back to the host with their own names and MACs"
for pair in "demo-pod-a ${ALLOCATED[0]} $HOST_A" "demo-pod-b ${ALLOCATED[1]} $HOST_B"; do
  set -- $pair
  cni DEL "$1" "$2"
  ip netns del "$1"
  echo "  $(ip -br link show "$3")"
done
echo "  back in the tree: ${ALLOCATED[0]}/net: [$(host_name "${ALLOCATED[0]}")]"
echo "  addresses still held by host-local: $(ls "$WORK/ipam/sriov-net" | grep -c '^10\.' || true)"

log "8. SIGTERM: the device plugin removes its sockets and device-info files and exits 0"
kill -TERM "$DP_PID"
wait "$DP_PID" && echo "  exit status 0"
DP_PID=
echo "  left in the kubelet dir: $(ls "$WORK/kubelet")  (the stand-in kubelet's socket is gone with it)"
echo "  device-info files left: $(ls "$WORK/devinfo" | wc -l)"
grep -E "registered with the kubelet|kubelet.sock|stopped" "$WORK/device-plugin.log" | sed 's/^/  log: /' | tail -n 8

log "9. the node lives: VFs made and destroyed through sriov_numvfs, a cable pulled"
PF4=$SRIOV_SYSFS_ROOT/bus/pci/devices/0000:86:00.0
echo 0 > "$PF4/sriov_numvfs"
echo 6 > "$PF4/sriov_numvfs"
echo "  ens4f0: sriov_numvfs=$(cat "$PF4/sriov_numvfs"), $(ls -d "$PF4"/virtfn* | wc -l) virtfn links, links: $(ip -br link | grep -c '^ens4f0v')"
echo 3 > "$PF4/sriov_numvfs" 2>/dev/null || echo "  3 while 6 exist: refused as the kernel refuses it (EBUSY)"
"$SRIOVCTL" sim carrier ens4f0 off >/dev/null
echo "  cable pulled: carrier=$(cat "$SRIOV_SYSFS_ROOT/class/net/ens4f0/carrier"), $(ip -br link show ens4f0 | awk '{print $2, $4}')"
"$SRIOVCTL" sim carrier ens4f0 on >/dev/null

log "10. DRA: one daemon, ens1f0's VFs through the device plugin, ens4f0's through ResourceSlices and claims"
# Stand-ins for the API server (v1, the Node) and the kubelet (kubelet.sock,
# the plugin watcher), fed commands through FIFOs; `echo` marks the end of
# each answer of the kubelet.
# until_line FILE PATTERN: wait (30 s at most) for a line matching PATTERN
until_line() {
  for _ in $(seq 600); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  log "no line matching '$2' in $1:"; cat "$1" "$WORK"/*.err "$WORK/device-plugin.log" >&2 2>/dev/null; return 1
}
mkfifo "$WORK/api.in" "$WORK/kubelet.in"
"$SRIOVCTL" --log-level warn apiserver-sim --kubeconfig-out "$WORK/kubeconfig" --node demo-node=demo-node-uid \
  <"$WORK/api.in" >"$WORK/api.out" 2>"$WORK/api.err" &
API_PID=$!
exec 4>"$WORK/api.in"
until_line "$WORK/api.out" '^ready'
"$SRIOVCTL" --log-level warn kubelet-sim --dir "$WORK/kubelet" --plugins-registry "$WORK/plugins_registry" \
  --kubeconfig "$WORK/kubeconfig" --node-name demo-node <"$WORK/kubelet.in" >"$WORK/kubelet.out" 2>"$WORK/kubelet.err" &
KUBELET_PID=$!
exec 5>"$WORK/kubelet.in"
until_line "$WORK/kubelet.out" '^wiped demo-node'
cat > "$WORK/config.json" <<'JSON'
{"resourceList": [
  {"resourceName": "sriov_netdevice", "selectors": {"pfNames": ["ens1f0"], "drivers": ["iavf"]}},
  {"resourceName": "sriov_dra", "allocationApi": "dra", "selectors": {"pfNames": ["ens4f0"], "drivers": ["iavf"]}}
]}
JSON
"$DEVICE_PLUGIN" --config-file "$WORK/config.json" --device-plugin-path "$WORK/kubelet" \
  --registration-mode kubelet-socket --devinfo-dir "$WORK/devinfo" \
  --plugins-registry-path "$WORK/plugins_registry" --dra-plugin-path "$WORK/plugins" --cdi-spec-dir "$WORK/cdi" \
  --kubeconfig "$WORK/kubeconfig" --node-name demo-node 2>"$WORK/device-plugin.log" &
DP_PID=$!
printf 'wait intel.com/sriov_netdevice 3\nwait-dra sriov-rs.invalid\necho registered\n' >&5
until_line "$WORK/kubelet.out" '^registered'
sed 's/^/  kubelet: /' "$WORK/kubelet.out" | grep -v '^  kubelet: registered$'
for _ in $(seq 100); do
  echo "devices demo-node" >&4; sleep 0.1
  grep -q 'deviceID=0000:86:01.5' "$WORK/api.out" && break
done
grep -q 'deviceID=0000:86:01.5' "$WORK/api.out" || { log "ens4f0's VFs were never published:"; cat "$WORK/device-plugin.log" >&2; exit 1; }
grep '^device ' "$WORK/api.out" | sort -u | sed 's/^/  published: /'
DRA_VF=$(grep -o 'demo-node/intel.com/sriov-dra 0000-86-01-0 deviceID=[^ ]*' "$WORK/api.out" | head -1 | sed 's/.*deviceID=//')
[ -n "$DRA_VF" ] || { log "device 0000-86-01-0 was never published"; exit 1; }
echo "  the scheduler allocates a claim to device 0000-86-01-0; the kubelet prepares it"
cat > "$WORK/claim.yaml" <<YAML
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: demo-net, namespace: default, uid: demo-claim-uid}
spec: {devices: {requests: [{name: vf, exactly: {deviceClassName: sriov-vf}}]}}
status: {allocation: {devices: {results: [{request: vf, driver: sriov-rs.invalid, pool: demo-node/intel.com/sriov-dra, device: 0000-86-01-0}]}}}
YAML
echo "claim $WORK/claim.yaml" >&4
until_line "$WORK/api.out" '^claim default/demo-net'
printf 'prepare default/demo-net/demo-claim-uid\necho prepared\n' >&5
until_line "$WORK/kubelet.out" '^prepared'
grep '^prepare ' "$WORK/kubelet.out" | sed 's/^/  kubelet: /'
grep -q '^prepare demo-claim-uid device' "$WORK/kubelet.out" || { log "prepare failed"; exit 1; }
echo "  CDI spec: $(ls "$WORK/cdi")  device-info: $(ls "$WORK/devinfo" | grep sriov_dra)"
echo "  Multus passes the slice's k8s.cni.cncf.io/deviceID ($DRA_VF) to sriov as deviceID:"
PODS+=(demo-pod-dra)
ip netns add demo-pod-dra
ADDED=$(cni ADD demo-pod-dra "$DRA_VF")
echo "  demo-pod-dra <- $DRA_VF: $ADDED"
echo "  inside demo-pod-dra: $(ip -n demo-pod-dra -br addr show net1)"
cni DEL demo-pod-dra "$DRA_VF"
ip netns del demo-pod-dra
printf 'unprepare default/demo-net/demo-claim-uid\necho unprepared\nquit\n' >&5
until_line "$WORK/kubelet.out" '^unprepared'
grep '^unprepare ' "$WORK/kubelet.out" | sed 's/^/  kubelet: /'
grep -q '^unprepare demo-claim-uid ok' "$WORK/kubelet.out" || { log "unprepare failed"; exit 1; }
[ -z "$(ls "$WORK/cdi")" ] || { log "CDI specs left: $(ls "$WORK/cdi")"; exit 1; }
echo "  after DEL and Unprepare: $(ip -br link show ens4f0v0 | awk '{print $1, $2}') on the host, no CDI spec left"
kill -TERM "$DP_PID"; wait "$DP_PID"; DP_PID=
wait "$KUBELET_PID"; KUBELET_PID=
echo quit >&4; wait "$API_PID"; API_PID=
exec 4>&- 5>&-

log "11. destroy: every namespace, link and file goes away"
"$SRIOVCTL" sim destroy
ip -br link | grep -E 'ens(1|4)f0' && { log "links left behind!"; exit 1; }
[ -e "$SRIOV_SYSFS_ROOT" ] && { log "tree left behind!"; exit 1; }
log "demo finished: the host is as it was"
