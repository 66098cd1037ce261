#!/usr/bin/env bash
# Runs the GPU test programs from a build tree copied to the GPU machine
# (CTest files hold the build machine's absolute paths, so ctest cannot).
#
#   tests/gpu/run-gpu-tests.sh [BUILD_DIR] [TESTDATA_DIR] [LOG_DIR]
#
# BUILD_DIR defaults to build-cuda, TESTDATA_DIR to .device-data (else
# ../shared/testdata); test data is required (GRETA_REQUIRE_TESTDATA=1). Each
# program's output goes to LOG_DIR/<name>.log when LOG_DIR is given (else to
# stdout). Prints one line per program: PASS, FAIL or SKIPPED (no GPU).
# Exit status: 0 when none failed.
set -uo pipefail

build=${1:-build-cuda}
data=${2:-}
logs=${3:-}
if [ -z "$data" ]; then
  if [ -d .device-data ]; then data=$PWD/.device-data; else data=$(cd "$(dirname "$0")/../.." && pwd)/../shared/testdata; fi
fi
[ -x "$build/bin/greta" ] || { echo "run-gpu-tests: $build/bin/greta not found (build the CUDA configuration first)" >&2; exit 2; }
export GRETA_TESTDATA=$data GRETA_REQUIRE_TESTDATA=1
[ -n "$logs" ] && mkdir -p "$logs"

failed=0
run() {
  local name=$1; shift
  local t0 rc out
  t0=$SECONDS
  if [ -n "$logs" ]; then
    "$@" >"$logs/$name.log" 2>&1; rc=$?
    out=$logs/$name.log
  else
    out=$(mktemp); "$@" 2>&1 | tee "$out"; rc=${PIPESTATUS[0]}
  fi
  local dt=$((SECONDS - t0))
  local verdict=PASS
  if [ $rc -ne 0 ]; then verdict=FAIL; failed=$((failed + 1));
  elif grep -q '\[  SKIPPED \]' "$out"; then verdict=SKIPPED; fi
  local n_ok n_skip n_fail
  n_ok=$(grep -c '^\[       OK \]' "$out")
  n_skip=$(grep '^\[  SKIPPED \] ' "$out" | grep -v 'test(s)' | sort -u | wc -l)
  n_fail=$(grep '^\[  FAILED  \] ' "$out" | grep -v 'test(s)' | sort -u | wc -l)
  printf 'run-gpu-tests: %-16s %-7s (%d ok, %d failed, %d skipped; %d s)\n' "$name" "$verdict" \
    "$n_ok" "$n_fail" "$n_skip" "$dt"
  [ -z "$logs" ] && rm -f "$out"
}

run test_gpu_ops "$build/tests/test_gpu_ops"
run test_gpu_e2e "$build/tests/test_gpu_e2e"
run test_gpu_decode "$build/tests/test_gpu_decode"
run test_gpu_prefill "$build/tests/test_gpu_prefill"
run test_gemm_mma "$build/tests/test_gemm_mma"
run test_flash_attn "$build/tests/test_flash_attn"
run test_parity_cli "$build/tests/test_parity_cli" "$build/bin/greta" cpu
run test_parity_gpu "$build/tests/test_parity_cli" "$build/bin/greta" gpu
run test_bench_gpu "$build/tests/test_engine_cli" "$build/bin/greta" gpu
run test_compare "$build/tests/test_compare"
run test_drift_gpu "$build/tests/test_drift_cli" "$build/bin/greta" gpu
run test_kernel_trace bash "$(dirname "$0")/test-kernel-trace.sh" "$build"
echo "run-gpu-tests: $failed failed"
[ $failed -eq 0 ]
