#!/usr/bin/env bash
# Builds GRETA CORE and runs the whole test suite:
#   1. the CPU build (Release) and every ctest;
#   2. the GPU compile checks (CUDA build + link, HIP compile for gfx942/gfx90a)
#      where the toolchains are installed, otherwise a plain SKIPPED line;
#   3. with --sanitize, the test suite again under ASan + UBSan.
# Usage: tests/run-all.sh [--sanitize] [--jobs N]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
sanitize=0
jobs=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=1 ;;
    --jobs) jobs="$2"; shift ;;
    *) echo "run-all.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)

echo "== CPU build and tests"
cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGRETA_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

if [ -x tests/gpu/build-check.sh ]; then
  echo "== GPU compile checks"
  tests/gpu/build-check.sh
else
  echo "== GPU compile checks: SKIPPED (tests/gpu/build-check.sh not present)"
fi

if [ "$sanitize" = 1 ]; then
  echo "== ASan + UBSan build and tests"
  cmake -S . -B build-asan "${gen[@]}" -DCMAKE_BUILD_TYPE=Debug -DGRETA_SANITIZE=ON -DGRETA_WERROR=ON >/dev/null
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE slow
fi
echo "== all tests passed"
