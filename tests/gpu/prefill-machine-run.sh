#!/usr/bin/env bash
# Issue 8 (prefill) on the GPU machine, in one call of the device tool:
#
#   tests/gpu/prefill-machine-run.sh OUT_DIR [STAGE_DIR [STEPS]]
#
# STAGE_DIR (default .device-libs-prefill, git-ignored, carried) holds what
# was built here: bin/{greta,gemm-bench}, tests/test_*, libs/ (from
# ../shared/tools/device-libs), data/ (stories260K, the quant/ fixtures, the
# Llama vocabulary) and COMMIT. Steps, each with a time limit, logged to
# OUT_DIR/logs/NAME.log (a failed step is reported, the next ones run);
# STEPS (default "tests bench ttft chunk parity7b gemm") picks them:
#   tests      test_gpu_prefill, test_gemm_mma, test_flash_attn, test_gpu_ops,
#              test_gpu_e2e once per prefill path (GRETA_GPU_PREFILL=v1, mma,
#              cublas), test_parity_cli gpu, greta parity on stories260K with
#              a prompt per path
#   synth      the 7B Q4_K_M model into /tmp, in the background meanwhile
#   bench      greta bench -p 512 -n 16 -d 4096,0 -r 3 per path (cublas, mma,
#              v1) in one run on one card (d 4096 first: its untimed context
#              fill warms the prefill kernels before pp512 at d 0)
#   ttft       pp4096 (TTFT of a 4096-token prompt, default chunk) per path
#   chunk      pp4096 for GRETA_PREFILL_CHUNK = 256, 512, 1024, 2048, 4096
#              with the default path, -r 4 (the first repetition after load
#              includes lazy kernel loading: compare the later samples)
#   parity7b   greta parity on the 7B model: cublas, mma, v1 with the fp16 KV
#              cache, cublas and v1 with an fp32 one (the GEMM's own share)
#   gemm       gemm-bench --prefill (per-shape times of the path pieces)
# Everything gets PREFILL_BUDGET seconds (default 400); OUT_DIR/summary.txt
# and OUT_DIR/logs.tar.gz come back. Exit status 1 when a step failed.
set -uo pipefail

out=${1:?usage: prefill-machine-run.sh OUT_DIR [STAGE_DIR [STEPS]]}
stage=$(cd "${2:-.device-libs-prefill}" && pwd)
steps=${3:-tests bench ttft chunk parity7b gemm}
want() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }
greta=$stage/bin/greta
model=/tmp/llama2-7b-q4km.gguf
logs=$out/logs
summary=$out/summary.txt
budget=${PREFILL_BUDGET:-400}
mkdir -p "$logs"
export LD_LIBRARY_PATH=$stage/libs:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GRETA_TESTDATA=$stage/data GRETA_REQUIRE_TESTDATA=1
export GRETA_COMMIT=$(cat "$stage/COMMIT" 2>/dev/null || echo unknown)
unset GRETA_GPU_PREFILL GRETA_PREFILL_CHUNK
failed=0

note() { echo "$*" | tee -a "$summary"; }
step() { # step NAME LIMIT_S CMD...
  local name=$1 limit=$2; shift 2
  local left=$((budget - SECONDS))
  if [ $left -lt 10 ]; then
    note "$(printf '%-26s SKIPPED (time budget spent)' "$name")"; failed=$((failed + 1)); return 1
  fi
  [ "$limit" -gt $left ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  note "$(printf '%-26s rc=%-3d %4d s' "$name" "$rc" $((SECONDS - t0)))"
  [ $rc -ne 0 ] && failed=$((failed + 1))
  return $rc
}

note "prefill-machine-run: commit $GRETA_COMMIT, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | tee -a "$summary"

(timeout 240 "$greta" synth --preset llama2-7b --type Q4_K_M --vocab "$stage/data/ggml-vocab-llama-spm.gguf" \
   -o "$model" >"$logs/synth.log" 2>&1; echo $? >"$logs/synth.rc") &
synth=$!

t=$stage/tests
if want tests; then
  step test_gpu_prefill 90 "$t/test_gpu_prefill"
  step test_gemm_mma 90 "$t/test_gemm_mma"
  step test_flash_attn 60 "$t/test_flash_attn"
  step test_gpu_ops 60 "$t/test_gpu_ops"
  for p in v1 mma cublas; do
    step "test_gpu_e2e-$p" 60 env GRETA_GPU_PREFILL=$p "$t/test_gpu_e2e"
  done
  step test_parity_gpu 60 "$t/test_parity_cli" "$greta" gpu
  for p in v1 mma cublas; do
    step "parity-stories-$p" 30 env GRETA_GPU_PREFILL=$p "$greta" parity -m "$stage/data/stories260K.gguf" \
      -p "Once upon a time, there was a little girl who lived in a big house with her mom" -n 48 \
      --json "$logs/parity-stories-$p.json"
  done
  grep -h "path \|max |" "$logs"/test_gpu_prefill.log >>"$summary" 2>/dev/null
  grep -h "positions:" "$logs"/parity-stories-*.log >>"$summary" 2>/dev/null
fi

wait $synth
note "synth rc=$(cat "$logs/synth.rc" 2>/dev/null) ($(ls -l "$model" 2>&1 | awk '{print $5}') bytes)"
if [ -f "$model" ]; then
  if want bench; then
    for p in cublas mma v1; do
      step "bench-$p" 100 env GRETA_GPU_PREFILL=$p "$greta" bench -m "$model" --backend gpu -p 512 -n 16 \
        -d 4096,0 -r 3 --json "$logs/bench-$p.json"
      grep "^| llama" "$logs/bench-$p.log" | sed "s/^/$p /" >>"$summary"
    done
  fi
  if want ttft; then
    for p in cublas mma v1; do
      step "ttft4096-$p" 60 env GRETA_GPU_PREFILL=$p "$greta" bench -m "$model" --backend gpu -p 4096 -n 0 -d 0 \
        -r 3 --json "$logs/ttft4096-$p.json"
      grep "pp4096" "$logs/ttft4096-$p.log" | sed "s/^/$p /" >>"$summary"
    done
  fi
  if want chunk; then
    for c in 256 512 1024 2048 4096; do
      step "chunk-$c" 40 env GRETA_PREFILL_CHUNK=$c "$greta" bench -m "$model" --backend gpu -p 4096 -n 0 -d 0 \
        -r 4 --json "$logs/chunk-$c.json"
      grep "pp4096" "$logs/chunk-$c.log" | sed "s/^/chunk $c /" >>"$summary"
    done
  fi
  if want parity7b; then
    p7="The capital of France is Paris, and the capital of Germany is"
    for pk in cublas:f16 mma:f16 v1:f16 cublas:f32 v1:f32; do
      p=${pk%:*} kv=${pk#*:}
      step "parity7b-$p-kv$kv" 90 env GRETA_GPU_PREFILL=$p "$greta" parity -m "$model" -p "$p7" -n 16 --gpu-kv $kv \
        --max-p99 1e-3 --max-kl 1e-4 --json "$logs/parity7b-$p-kv$kv.json"
      grep -h "positions:\|PASS\|FAIL" "$logs/parity7b-$p-kv$kv.log" | sed "s/^/$p kv $kv: /" >>"$summary"
    done
  fi
fi
if want gemm; then
  step gemm-bench 60 "$stage/bin/gemm-bench" --prefill
  grep -h "us\b" "$logs/gemm-bench.log" | head -80 >>"$summary" 2>/dev/null
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,pci.bus_id --format=csv,noheader \
  >"$logs/nvidia-smi.csv" 2>&1
note "prefill-machine-run: $failed step(s) failed, $SECONDS s"
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"
[ $failed -eq 0 ]
