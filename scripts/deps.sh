#!/bin/sh
# Installs the Debian packages a target needs, when they are missing and we
# are root.  Usage: scripts/deps.sh test|bench
set -e
what=${1:-test}
need=""
have() { command -v "$1" >/dev/null 2>&1; }
pkg_missing() { ! dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

for p in cmake make gcc g++ clang libclang-rt-14-dev clang-format clang-tidy cppcheck valgrind gcc-aarch64-linux-gnu \
         libc6-dev-arm64-cross qemu-user libcurl4-openssl-dev libssl-dev openssl libpq-dev nginx tinyproxy \
         python3 git curl redis-server redis-tools; do
  pkg_missing "$p" && need="$need $p"
done
if [ "$what" = bench ]; then
  for p in g++ libboost-context-dev libboost-dev golang-go python3-greenlet python3-gevent python3-uvloop libuv1-dev \
           libevent-dev nginx python3-aiohttp; do
    pkg_missing "$p" && need="$need $p"
  done
fi
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing Debian packages:$need (run as root, or install them)" >&2
  exit 1
fi
echo "deps: installing$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null
