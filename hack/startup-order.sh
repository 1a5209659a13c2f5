#!/usr/bin/env bash
# Writes hack/sriov-device-plugin.order: the functions the daemon runs from
# start to its first full ListAndWatch list, which build.rs hands to the
# linker so that they are laid out together (the kernel maps code around
# every page start-up touches; spread over the text, start-up made nearly all
# of it resident). Measured with callgrind on the release build as shipped,
# a simulated 16 PF x 256 VF tree (no root needed) and the stand-in kubelet
# with PodResources. Run it again after larger changes: names that left the
# binary are skipped by the linker, new start-up code is just not grouped.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
ensure_packages valgrind

ORDER=hack/sriov-device-plugin.order
TARGET=${CARGO_TARGET_DIR:-$PWD/target}/release
cargo build --locked --release --quiet --bin sriov-device-plugin --bin sriovctl

WORK=$(mktemp -d /tmp/sriov-startup-order.XXXXXX)
KUBELET_PID=
cleanup() {
  [ -n "$KUBELET_PID" ] && kill "$KUBELET_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for n in $(seq 16); do
  printf '[[pf]]\npci_address = "0000:%02x:00.0"\nname = "ens%df0"\ntotal_vfs = 256\nnum_vfs = 256\n\n' \
    $((n * 8)) "$n"
done > "$WORK/layout.toml"
echo '{"resourceList":[{"resourceName":"all_vfs","selectors":{"devices":["1889"]}}]}' > "$WORK/config.json"
"$TARGET/sriovctl" sim create --tree-only --sysfs-root "$WORK/sys" --layout "$WORK/layout.toml" >/dev/null
mkdir "$WORK/device-plugins"
mkfifo "$WORK/kubelet.in"
"$TARGET/sriovctl" --log-level warn kubelet-sim --dir "$WORK/device-plugins" \
  --pod-resources-socket "$WORK/pod-resources.sock" --timeout 120 <"$WORK/kubelet.in" >"$WORK/kubelet.out" &
KUBELET_PID=$!
exec 7>"$WORK/kubelet.in"
for _ in $(seq 100); do [ -S "$WORK/pod-resources.sock" ] && break; sleep 0.1; done

log "the daemon under callgrind until the kubelet has its first full list"
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/callgrind.out" \
  "$TARGET/sriov-device-plugin" --sysfs-root "$WORK/sys" --config-file "$WORK/config.json" \
  --device-plugin-path "$WORK/device-plugins" --registration-mode kubelet-socket \
  --devinfo-dir "$WORK/devinfo" --pod-resources-socket "$WORK/pod-resources.sock" \
  --log-level warn 2>"$WORK/valgrind.log" &
DAEMON_PID=$!
echo "wait intel.com/all_vfs 4096" >&7
for _ in $(seq 1200); do grep -q 'listed' "$WORK/kubelet.out" && break; sleep 0.1; done
grep -q 'listed' "$WORK/kubelet.out" || { log "no first list:"; cat "$WORK/kubelet.out" "$WORK/valgrind.log" >&2; exit 1; }
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || true
echo quit >&7
exec 7>&-
wait "$KUBELET_PID" || true
KUBELET_PID=

# functions callgrind saw run, kept when they are text symbols of the binary
nm --defined-only "$TARGET/sriov-device-plugin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u > "$WORK/text"
grep -oE '^c?fn=\([0-9]+\) .+' "$WORK/callgrind.out" | sed -E 's/^c?fn=\([0-9]+\) //' | sort -u \
  | comm -12 - "$WORK/text" > "$ORDER"
log "$ORDER: $(wc -l < "$ORDER") functions; cargo build --release links them together"
