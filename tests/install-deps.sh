#!/bin/bash
# Installs what podproxy's build, tests and demo need from Debian 12, if missing. Idempotent; needs root.
set -euo pipefail
packages=(
  cmake make g++ git pkg-config
  libasio-dev catch2 libbenchmark-dev libcli11-dev libspdlog-dev libfmt-dev
  iproute2 iptables nftables ncat iperf3 procps curl jq python3 util-linux
  haproxy   # sidecar.test_proxy_protocol_haproxy: a third-party PROXY protocol sender and receiver
  clang libclang-rt-14-dev libbpf-dev bpftool   # the optional sockmap relay (podproxy::sockmap)
  podman buildah runc catatonit debootstrap python3-yaml   # k8s.podman: the Dockerfile and manifests under podman
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages (${missing[*]}) and not root: run as root, or install them" >&2
    exit 2
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
