#!/usr/bin/env bash
# Writes hack/sriov-device-plugin.order: the functions the daemon runs from
# start to its first full ListAndWatch list, which build.rs hands to the
# linker so that they are laid out together (the kernel maps code around
# every page start-up touches; spread over the text, start-up made nearly all
# of it resident). Measured with callgrind on the release build as shipped,
# a simulated 16 PF x 256 VF tree (no root needed) and the stand-in kubelet,
# twice: with PodResources, then without (every device-info file written
# before serving); the functions only the second start runs come last. Run
# it again after larger changes: names that left the binary are skipped by
# the linker, new start-up code is just not grouped.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
ensure_packages valgrind

ORDER=hack/sriov-device-plugin.order
TARGET=${CARGO_TARGET_DIR:-$PWD/target}/release
cargo build --locked --release --quiet --bin sriov-device-plugin --bin sriovctl

WORK=$(mktemp -d /tmp/sriov-startup-order.XXXXXX)
KUBELET_PID=
DAEMON_PID=
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null || true
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
# One start-up: MODE "pod-resources" (the stand-in kubelet answers
# PodResources, device-info files are written at Allocate) or "all-files"
# (no PodResources: every device-info file is written before serving).
# Writes the functions callgrind saw run to $WORK/ran.MODE.
profile_start() {
  local mode=$1 dir="$WORK/$1" sock=
  mkdir -p "$dir/device-plugins"
  mkfifo "$dir/kubelet.in"
  [ "$mode" = pod-resources ] && sock="$dir/pod-resources.sock"
  "$TARGET/sriovctl" --log-level warn kubelet-sim --dir "$dir/device-plugins" \
    ${sock:+--pod-resources-socket "$sock"} --timeout 120 <"$dir/kubelet.in" >"$dir/kubelet.out" &
  KUBELET_PID=$!
  exec 7>"$dir/kubelet.in"
  # the socket the stand-in binds last: PodResources when it serves it
  # (asked before it is there, the daemon would write every file)
  local ready=${sock:-$dir/device-plugins/kubelet.sock}
  for _ in $(seq 100); do [ -S "$ready" ] && break; sleep 0.1; done
  [ -S "$ready" ] || { log "$mode: the stand-in kubelet never served $ready"; exit 1; }

  log "$mode: the daemon under callgrind until the kubelet has its first full list"
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$dir/callgrind.out" \
    "$TARGET/sriov-device-plugin" --sysfs-root "$WORK/sys" --config-file "$WORK/config.json" \
    --device-plugin-path "$dir/device-plugins" --registration-mode kubelet-socket \
    --devinfo-dir "$dir/devinfo" --pod-resources-socket "$sock" \
    --log-level warn 2>"$dir/valgrind.log" &
  DAEMON_PID=$!
  echo "wait intel.com/all_vfs 4096" >&7
  for _ in $(seq 1200); do grep -q 'listed' "$dir/kubelet.out" && break; sleep 0.1; done
  grep -q 'listed' "$dir/kubelet.out" || { log "no first list:"; cat "$dir/kubelet.out" "$dir/valgrind.log" >&2; exit 1; }
  kill -TERM "$DAEMON_PID"
  wait "$DAEMON_PID" || true
  DAEMON_PID=
  echo quit >&7
  exec 7>&-
  wait "$KUBELET_PID" || true
  KUBELET_PID=
  # functions callgrind saw run, kept when they are text symbols of the binary
  grep -oE '^c?fn=\([0-9]+\) .+' "$dir/callgrind.out" | sed -E 's/^c?fn=\([0-9]+\) //' | sort -u \
    | comm -12 - "$WORK/text" > "$WORK/ran.$mode"
}

nm --defined-only "$TARGET/sriov-device-plugin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u > "$WORK/text"
profile_start pod-resources
profile_start all-files
# the start the daemon is built for first, then what only the other one runs
cp "$WORK/ran.pod-resources" "$ORDER"
comm -13 "$WORK/ran.pod-resources" "$WORK/ran.all-files" >> "$ORDER"
log "$ORDER: $(wc -l < "$ORDER") functions; cargo build --release links them together"
