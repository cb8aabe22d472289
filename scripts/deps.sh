#!/bin/sh
# Installs the Debian 12 packages landropic needs to build, test and demo.
# Idempotent and quiet when everything is present; runs `apt-get update` only
# when something is missing. Nothing comes from anywhere but Debian.
set -eu

PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev nettle-dev
libuv1-dev libsqlite3-dev libzstd-dev libxxhash-dev libjansson-dev libqrencode-dev libsodium-dev
libcmocka-dev python3 python3-pytest python3-pytest-xdist python3-pytest-rerunfailures gcovr iproute2 nftables openssl rsync bc
fuse3 libfuse3-dev e2fsprogs"

missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
