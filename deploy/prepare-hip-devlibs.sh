#!/usr/bin/env bash
# Prepares a ROCm device-library folder that lets Debian 12's clang-19 compile
# HIP code for gfx942 (MI300X) as well as gfx90a (MI200).
#
#   deploy/prepare-hip-devlibs.sh OUT_DIR
#
# Debian's rocm-device-libs (5.2) ships oclc_isa_version_<gfx>.bc for gfx940
# but not gfx942. The two differ only in the ISA version constant the library
# returns (9400 vs 9402), so the gfx942 file is made from the gfx940 one by
# rewriting that constant with llvm-dis-19 / llvm-as-19. Every other bitcode
# file is symlinked. Idempotent; prints the folder on success.
# Then: clang++-19 -x hip --offload-arch=gfx942 --rocm-path=/usr \
#         --rocm-device-lib-path=OUT_DIR ...
set -euo pipefail

out=${1:?usage: prepare-hip-devlibs.sh OUT_DIR}
src=${GRETA_ROCM_BITCODE:-/usr/lib/x86_64-linux-gnu/amdgcn/bitcode}
dis=${LLVM_DIS:-llvm-dis-19}
as=${LLVM_AS:-llvm-as-19}

for tool in "$dis" "$as"; do
  command -v "$tool" >/dev/null || { echo "prepare-hip-devlibs: $tool not installed (deploy/install-deps.sh --hip)" >&2; exit 1; }
done
[ -f "$src/oclc_isa_version_940.bc" ] || { echo "prepare-hip-devlibs: $src/oclc_isa_version_940.bc missing (rocm-device-libs)" >&2; exit 1; }

mkdir -p "$out"
for f in "$src"/*.bc; do
  ln -sf "$f" "$out/$(basename "$f")"
done
if [ ! -f "$out/oclc_isa_version_942.bc" ] || [ -L "$out/oclc_isa_version_942.bc" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$dis" "$src/oclc_isa_version_940.bc" -o "$tmp/940.ll"
  grep -q 'i32 9400' "$tmp/940.ll" || { echo "prepare-hip-devlibs: constant 9400 not found in oclc_isa_version_940.bc" >&2; exit 1; }
  sed 's/i32 9400/i32 9402/g' "$tmp/940.ll" >"$tmp/942.ll"
  rm -f "$out/oclc_isa_version_942.bc"
  "$as" "$tmp/942.ll" -o "$out/oclc_isa_version_942.bc"
fi
echo "$out"
