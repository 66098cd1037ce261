#!/usr/bin/env bash
# Compile checks of the GPU builds, for CI (no GPU needed):
#
#   tests/gpu/build-check.sh [BUILD_ROOT]      (default: <repo>/build-gpu-check)
#
#   CUDA  configure + build + link of everything with GRETA_GPU=cuda
#         (nvcc from $CUDACXX, else /usr/local/cuda/bin/nvcc; architecture 90a),
#         warnings as errors.
#   HIP   the kernels (kernels/gpu/*.cu) compiled as HIP by clang-19 for gfx942
#         and gfx90a with Debian's ROCm headers and the gfx942 device-library
#         folder of deploy/prepare-hip-devlibs.sh, warnings as errors. Where
#         lld-19 and clang-tools-19 (clang-offload-bundler) are installed, this
#         is a CMake build that also links the GPU test programs (kernels,
#         engine and GPU backend) against libamdhip64; otherwise each kernel's device code is compiled
#         to gfx942/gfx90a assembly and its host code to an object, and the
#         link is reported as skipped.
# A missing toolchain prints "SKIPPED: <toolchain> not installed" and is not
# an error. Exit status: 0 when every check that ran passed, 1 otherwise.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
root=${1:-$repo/build-gpu-check}
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p "$root"
status=0
t_start=$(date +%s)

say() { printf 'build-check: %s\n' "$*"; }

# ---- CUDA ------------------------------------------------------------------
nvcc=${CUDACXX:-/usr/local/cuda/bin/nvcc}
if [ ! -x "$nvcc" ]; then
  say "SKIPPED: nvcc not installed ($nvcc)"
else
  t0=$(date +%s)
  log=$root/cuda.log
  if cmake -S "$repo" -B "$root/cuda" -G Ninja -DGRETA_GPU=cuda -DCMAKE_CUDA_COMPILER="$nvcc" \
       -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=Release -DGRETA_WERROR=ON \
       -DGRETA_BUILD_TESTS=ON >"$log" 2>&1 &&
     cmake --build "$root/cuda" -j "$jobs" >>"$log" 2>&1; then
    say "CUDA: configure, build and link OK ($("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_90a, $(( $(date +%s) - t0 )) s)"
  else
    say "CUDA: FAILED (log: $log)"
    grep -E 'error|warning' "$log" | head -40
    status=1
  fi
fi

# ---- HIP --------------------------------------------------------------------
clang=clang++-19
if ! command -v "$clang" >/dev/null 2>&1; then
  say "SKIPPED: clang-19 not installed (deploy/install-deps.sh --hip)"
elif [ ! -f /usr/include/hip/hip_runtime.h ]; then
  say "SKIPPED: HIP headers not installed (libamdhip64-dev; deploy/install-deps.sh --hip)"
else
  t0=$(date +%s)
  devlibs=$root/hip-devlibs
  if ! "$repo/deploy/prepare-hip-devlibs.sh" "$devlibs" >/dev/null; then
    say "HIP: FAILED to prepare the gfx942 device-library folder"
    status=1
  else
    hipflags=(-x hip -std=c++17 --rocm-path=/usr --rocm-device-lib-path="$devlibs" -O2
              -Wall -Wextra -Wno-unused-parameter -Werror -I"$repo")
    # Can this clang make complete HIP objects (needs lld-19 + clang-offload-bundler)?
    probe=$root/hip-probe
    mkdir -p "$probe"
    printf '#include <hip/hip_runtime.h>\n__global__ void k(int *p) { *p = 1; }\n' >"$probe/p.hip"
    if "$clang" "${hipflags[@]}" --offload-arch=gfx942 -c "$probe/p.hip" -o "$probe/p.o" >"$probe/log" 2>&1; then
      log=$root/hip.log
      if cmake -S "$repo" -B "$root/hip" -G Ninja -DGRETA_GPU=hip -DCMAKE_CXX_COMPILER="$clang" \
           "-DGRETA_HIP_ARCHITECTURES=gfx942;gfx90a" -DGRETA_HIP_DEVICE_LIB_PATH="$devlibs" \
           -DCMAKE_BUILD_TYPE=Release -DGRETA_WERROR=ON -DGRETA_BUILD_TESTS=ON >"$log" 2>&1 &&
         cmake --build "$root/hip" -j "$jobs" --target greta_kernels_gpu test_gpu_ops test_gpu_e2e >>"$log" 2>&1; then
        say "HIP: kernels for gfx942 + gfx90a compiled; the GPU test programs (kernels, engine, GPU backend) linked with libamdhip64 ($(( $(date +%s) - t0 )) s)"
      else
        say "HIP: FAILED (log: $log)"
        grep -E 'error|warning' "$log" | head -40
        status=1
      fi
    else
      # device code to assembly per architecture, host code to objects
      out=$root/hip-objs
      mkdir -p "$out"
      fail=0
      n=0
      for src in "$repo"/kernels/gpu/*.cu; do
        base=$(basename "$src" .cu)
        for arch in gfx942 gfx90a; do
          if ! "$clang" "${hipflags[@]}" --offload-arch=$arch --cuda-device-only -S "$src" -o "$out/$base.$arch.s" \
               >"$out/$base.$arch.log" 2>&1; then
            say "HIP: $base.cu FAILED for $arch"; cat "$out/$base.$arch.log" | head -30; fail=1
          fi
        done
        if ! "$clang" "${hipflags[@]}" --offload-arch=gfx942 --offload-arch=gfx90a --cuda-host-only -c "$src" \
             -o "$out/$base.host.o" >"$out/$base.host.log" 2>&1; then
          say "HIP: $base.cu host code FAILED"; cat "$out/$base.host.log" | head -30; fail=1
        fi
        n=$((n + 1))
      done
      if [ $fail = 0 ]; then
        say "HIP: $n kernel sources compiled for gfx942 + gfx90a (device assembly + host objects, $(( $(date +%s) - t0 )) s)"
        say "HIP: link SKIPPED: lld-19 and clang-tools-19 not installed ($(head -c 200 "$probe/log" | tr '\n' ' '))"
      else
        status=1
      fi
    fi
  fi
fi

say "done in $(( $(date +%s) - t_start )) s, status $status"
exit $status
