#!/usr/bin/env bash
# Installs the Debian 12 packages GRETA CORE needs to build and test.
# Idempotent: packages already present are left alone.
#   deploy/install-deps.sh          build + test dependencies
#   deploy/install-deps.sh --hip    also the HIP compile-check toolchain (clang-19, HIP 5.2 headers)
set -euo pipefail

PKGS=(build-essential cmake ninja-build pkg-config git ca-certificates curl
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libcjson-dev
      libcmocka-dev libedit-dev libcurl4-openssl-dev python3 tmux systemd shellcheck)
HIP_PKGS=(clang-19 llvm-19 lld-19 clang-tools-19 libamdhip64-dev hipcc rocm-device-libs)

want_hip=0
for a in "$@"; do
  case "$a" in
    --hip) want_hip=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done
[ "$want_hip" = 1 ] && PKGS+=("${HIP_PKGS[@]}")

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: these Debian packages are missing: ${missing[*]}" >&2
  echo "install-deps: run as root (or: sudo $0 $*) to install them with apt-get" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
