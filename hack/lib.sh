#!/usr/bin/env bash
# Shared helpers for hack/ scripts. Source it; do not run it.

# Debian packages the tests and the demo need at run time:
#  iproute2                    ip(8), used by the demo and to read results back
#  iputils-ping                ping, for the demo's pod-to-pod check
#  containernetworking-plugins host-local / static / dhcp IPAM binaries (/usr/lib/cni)
#  dnsmasq                     DHCP server inside a wire namespace for the dhcp IPAM tests
SRIOV_APT_PACKAGES=(iproute2 iputils-ping containernetworking-plugins dnsmasq)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Install the packages above (or the ones named) that are missing; apt-get
# update runs only if something is missing.
ensure_packages() {
  local wanted=("$@") missing=()
  [ ${#wanted[@]} -eq 0 ] && wanted=("${SRIOV_APT_PACKAGES[@]}")
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing packages ${missing[*]} and not root: install them yourself (apt-get install ${missing[*]})"
    return 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # dnsmasq's package starts a system-wide service on install; we only want the binary
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dnsmasq 2>/dev/null; then
    systemctl stop dnsmasq || true
  fi
}

require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "$1 needs root (network namespaces, veth links): run it with sudo"
    exit 1
  fi
}
