#!/usr/bin/env bash
# Shared helpers for hack/ scripts. Source it; do not run it.

# Debian packages the tests and the demo need at run time:
#  iproute2                    ip(8), used by the demo and to read results back
#  iputils-ping                ping, for the demo's pod-to-pod check
#  containernetworking-plugins host-local / static / dhcp IPAM binaries (/usr/lib/cni)
#  dnsmasq-base                the dnsmasq binary only, as the DHCP server the dhcp IPAM tests
#                              start in a wire namespace; unlike the dnsmasq package it ships no
#                              system service that could grab port 53 or the host's interfaces
SRIOV_APT_PACKAGES=(iproute2 iputils-ping containernetworking-plugins dnsmasq-base)

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
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "$1 needs root (network namespaces, veth links): run it with sudo"
    exit 1
  fi
}
