#!/usr/bin/env bash
# Installs the Debian packages little-key-value needs to build, test and run.
# Idempotent and quiet when everything is already there.
set -euo pipefail

need=(gcc make pkg-config libmicrohttpd-dev libcriterion-dev python3-pytest)
case "${1:-}" in
  --with-fuzz) need+=(clang libclang-rt-14-dev) ;;
  --with-bench) need+=(wrk redis-server redis-tools etcd-server etcd-client curl) ;;
  --with-cluster) need+=(iproute2 iptables) ;;  # tests/cluster: ip netns, veth, bridge, iptables
  "") ;;
  *) echo "setup.sh: unknown argument $1" >&2; exit 2 ;;
esac

missing=()
for p in "${need[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
