#!/usr/bin/env bash
# Everything issue 5 runs on the GPU machine, in one call (docs: GPU-MACHINE.md):
#
#   tests/gpu/gpu-machine-run.sh OUT_DIR [STEPS]
#
# From the repository root of the copied tree, with build-cuda/bin,
# build-cuda/tests/test_{gpu_ops,gpu_e2e,parity_cli}, .device-libs (from
# ../shared/tools/device-libs) and .device-data (the test data, plus the
# file COMMIT holding the commit the binaries were built from).
# STEPS (default "tests parity synth parity7b bench") picks what runs:
#   tests     tests/gpu/run-gpu-tests.sh (op tests, end to end, parity CLI)
#   parity    greta parity on stories260K and on every quant/ fixture
#   synth     greta synth llama2-7b Q4_K_M into /tmp (needs nothing else)
#   parity7b  greta parity on the 7B model (p99 |d|/sd <= 1e-3, mean KL <= 1e-4)
#   bench     greta bench --backend gpu on the 7B model: pp512, tg128, d 0 and 4096
# Writes OUT_DIR/summary.txt, the 7B JSON files and OUT_DIR/logs.tar.gz (every
# log and JSON). Steps that fail are reported and the next ones still run;
# exit status 1 when any failed. All steps together get 540 s (the device
# tool allows 600 s a call).
set -uo pipefail

out=${1:?usage: gpu-machine-run.sh OUT_DIR [STEPS]}
steps=${2:-tests parity synth parity7b bench}
repo=$(pwd)
data=$repo/.device-data
greta=$repo/build-cuda/bin/greta
model7b=/tmp/llama2-7b-q4km.gguf
logs=$out/logs
mkdir -p "$logs"
export LD_LIBRARY_PATH=$repo/.device-libs:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GRETA_COMMIT=$(cat "$data/COMMIT" 2>/dev/null || echo unknown)
export GRETA_TESTDATA=$data
summary=$out/summary.txt
failed=0

note() { echo "$*" | tee -a "$summary"; }
# The device tool stops a command after 600 s; steps get what is left of
# $budget so the logs are always packed.
budget=540
step() { # step NAME TIMEOUT_S CMD... : runs with a time limit, logs to logs/NAME.log
  local name=$1 limit=$2; shift 2
  local left=$((budget - SECONDS))
  if [ $left -lt 15 ]; then
    note "$(printf '%-28s SKIPPED (time budget spent)' "$name")"; failed=$((failed + 1)); return 1
  fi
  [ $limit -gt $left ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  note "$(printf '%-28s rc=%-3d %5d s' "$name" "$rc" $((SECONDS - t0)))"
  [ $rc -ne 0 ] && failed=$((failed + 1))
  return $rc
}
want() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }

note "gpu-machine-run: commit $GRETA_COMMIT, $(date -u +%Y-%m-%dT%H:%M:%SZ), steps: $steps"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | tee -a "$summary"
nvidia-smi >"$logs/nvidia-smi.txt" 2>&1

if want tests; then
  step gpu-tests 240 tests/gpu/run-gpu-tests.sh build-cuda "$data" "$logs"
  cat "$logs/gpu-tests.log" >>"$summary"
fi

if want parity; then
  step parity-stories260K-bos 60 "$greta" parity -m "$data/stories260K.gguf" -n 200 \
    --json "$logs/parity-stories260K-bos.json"
  step parity-stories260K-prompt 60 "$greta" parity -m "$data/stories260K.gguf" -p "Once upon a time, there was a little girl" -n 64 \
    --json "$logs/parity-stories260K-prompt.json"
  for f in "$data"/quant/gqa-*.gguf; do
    b=$(basename "$f" .gguf)
    step "parity-$b" 60 "$greta" parity -m "$f" -p "The dog ran to the" -n 48 --json "$logs/parity-$b.json"
  done
  grep -h "positions:" "$logs"/parity-*.log >>"$summary"
fi

if want synth; then
  step synth-7b 120 "$greta" synth --preset llama2-7b --type Q4_K_M --vocab "$data/ggml-vocab-llama-spm.gguf" \
    -o "$model7b"
  ls -l "$model7b" >>"$summary" 2>&1
fi

if want parity7b && [ -f "$model7b" ]; then
  step parity-llama2-7b-q4km 180 "$greta" parity -m "$model7b" -p "The capital of France is Paris, and the capital of Germany is" \
    -n 16 --max-p99 1e-3 --max-kl 1e-4 --json "$out/parity-llama2-7b-q4km.json"
  grep -h "positions:\|PASS\|FAIL" "$logs/parity-llama2-7b-q4km.log" >>"$summary"
fi

if want bench && [ -f "$model7b" ]; then
  step bench-gpu-llama2-7b-q4km 300 "$greta" bench -m "$model7b" --backend gpu -p 512 -n 128 -d 0,4096 -r 5 \
    --json "$out/bench-gpu-llama2-7b-q4km.json"
  cat "$logs/bench-gpu-llama2-7b-q4km.log" >>"$summary"
fi

note "gpu-machine-run: $failed step(s) failed"
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"
[ $failed -eq 0 ]
