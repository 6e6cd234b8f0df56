#!/usr/bin/env bash
# Installs the Debian 12 packages Concord needs to build, test and run its demos, skipping
# what is already there. Idempotent; needs root (or sudo). Nothing is downloaded at run time
# by Concord itself: the data sets also come from these packages.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libopenblas-dev zlib1g-dev libjansson-dev libsodium-dev
  libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libinih-dev libmicrohttpd-dev
  libcriterion-dev
  libfann-doc dataset-fashion-mnist
  python3 python3-numpy python3-torch
  gnuplot-nox valgrind docker-compose
  iproute2 nftables
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
