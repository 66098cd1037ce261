#!/usr/bin/env bash
# Issue 7 (decode speed) on the GPU machine, in one call:
#
#   tests/gpu/decode-machine-run.sh OUT_DIR [BUILD_DIR] [LIBS_DIR]
#
# From the repository root of the copied tree (BUILD_DIR default build-cuda,
# LIBS_DIR default .device-libs, test data in .device-data as for
# gpu-machine-run.sh). Runs the GPU tests, synthesizes the 7B Q4_K_M model,
# benchmarks decode with the issue-5 path (GRETA_GPU_KERNELS=v1
# GRETA_GPU_GRAPH=0), v1 with the graph, v6, v7 (the previous default) and
# v8 (the default) in the same run, then runs the 7B parity (fp16 KV cache,
# the limits of gpu-machine-run.sh) with v1 and v8, and chain-bench (the
# cost of a decode step's stage boundaries, launched or persistent) where
# the build has it.
# GRETA_GPU_PREFILL set by the caller applies to every step. Writes OUT_DIR/summary.txt,
# the bench JSON files and OUT_DIR/logs.tar.gz.
set -uo pipefail
out=${1:?usage: decode-machine-run.sh OUT_DIR [BUILD_DIR] [LIBS_DIR]}
build=${2:-build-cuda}
libs=${3:-.device-libs}
repo=$(pwd)
data=$repo/.device-data
greta=$repo/$build/bin/greta
model7b=/tmp/llama2-7b-q4km.gguf
logs=$out/logs
mkdir -p "$logs"
export LD_LIBRARY_PATH=$repo/$libs:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GRETA_COMMIT=${GRETA_COMMIT:-$(cat "$data/COMMIT" 2>/dev/null || echo unknown)}
export GRETA_TESTDATA=$data
summary=$out/summary.txt
failed=0
budget=${DECODE_BUDGET:-450}
note() { echo "$*" | tee -a "$summary"; }
step() {
  local name=$1 limit=$2; shift 2
  local left=$((budget - SECONDS))
  if [ $left -lt 10 ]; then note "$(printf '%-30s SKIPPED (time budget spent)' "$name")"; failed=$((failed + 1)); return 1; fi
  [ $limit -gt $left ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  note "$(printf '%-30s rc=%-3d %5d s' "$name" "$rc" $((SECONDS - t0)))"
  [ $rc -ne 0 ] && failed=$((failed + 1))
  return $rc
}
note "decode-machine-run: commit $GRETA_COMMIT, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | tee -a "$summary"
# the 7B model is synthesized in the background while the tests run
( "$greta" synth --preset llama2-7b --type Q4_K_M --vocab "$data/ggml-vocab-llama-spm.gguf" -o "$model7b" \
    >"$logs/synth-7b.log" 2>&1; echo "synth rc=$?" >>"$logs/synth-7b.log" ) &
synth_pid=$!
step gpu-tests 200 tests/gpu/run-gpu-tests.sh "$build" "$data" "$logs/tests"
cat "$logs/gpu-tests.log" >>"$summary"
wait $synth_pid
tail -1 "$logs/synth-7b.log" >>"$summary"
bench() { # bench NAME KERNELS GRAPH
  step "bench-$1" 120 env GRETA_GPU_KERNELS=$2 GRETA_GPU_GRAPH=$3 "$greta" bench -m "$model7b" --backend gpu \
    -p 512 -n 128 -d 0,4096 -r 3 --json "$out/bench-$1.json"
  grep -E "^\| |gpu: decode" "$logs/bench-$1.log" >>"$summary"
}
if [ -f "$model7b" ]; then
  bench v1-nograph v1 0
  bench v1-graph v1 1
  bench v6-graph v6 1
  bench v7-graph v7 1
  bench v8-graph v8 1
  p7="The capital of France is Paris, and the capital of Germany is"
  for k in v1 v8; do
    step parity-7b-$k 90 env GRETA_GPU_KERNELS=$k "$greta" parity -m "$model7b" -p "$p7" -n 16 --max-p99 1e-3 \
      --max-kl 1e-4 --json "$out/parity-7b-$k.json"
    grep -h "positions:\|PASS\|FAIL" "$logs/parity-7b-$k.log" >>"$summary"
  done
fi
if [ -x "$repo/$build/bin/chain-bench" ]; then
  step chain-bench 60 "$repo/$build/bin/chain-bench" 20 32
  grep -E "^\||^chain-bench" "$logs/chain-bench.log" >>"$summary"
fi
note "decode-machine-run: $failed step(s) failed"
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"
[ $failed -eq 0 ]
