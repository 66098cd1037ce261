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
#   parity7b  greta parity on the 7B model (p99 |d|/sd <= 1e-3, mean KL <= 1e-4),
#             with the fp16 KV cache and, to measure its cost, an fp32 one
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
  # each quant fixture with the prompts of quant/gqa-greedy.json and the 16
  # tokens over which that file guarantees a top-1/top-2 margin >= 0.1
  # (gqa-F32, not in the file, with the first prompt)
  python3 - "$data/quant/gqa-greedy.json" >"$logs/quant-prompts.tsv" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
for name, prompts in g["models"].items():
    for i, p in enumerate(prompts):
        print(f"{name[:-5]}\t{i}\t{p['prompt']}")
print("gqa-F32\t0\tThe dog ran to the")
PY
  while IFS=$'\t' read -r b i prompt; do
    step "parity-$b-p$i" 60 "$greta" parity -m "$data/quant/$b.gguf" -p "$prompt" -n 16 --json "$logs/parity-$b-p$i.json"
  done <"$logs/quant-prompts.tsv"
  grep -h "positions:" "$logs"/parity-*.log >>"$summary"
fi

if want synth; then
  step synth-7b 120 "$greta" synth --preset llama2-7b --type Q4_K_M --vocab "$data/ggml-vocab-llama-spm.gguf" \
    -o "$model7b"
  ls -l "$model7b" >>"$summary" 2>&1
fi

if want parity7b && [ -f "$model7b" ]; then
  p7="The capital of France is Paris, and the capital of Germany is"
  step parity-llama2-7b-q4km 180 "$greta" parity -m "$model7b" -p "$p7" \
    -n 16 --max-p99 1e-3 --max-kl 1e-4 --json "$out/parity-llama2-7b-q4km.json"
  grep -h "positions:\|PASS\|FAIL" "$logs/parity-llama2-7b-q4km.log" >>"$summary"
  # the same with an fp32 KV cache: what the fp16 cache costs
  step parity-llama2-7b-q4km-kvf32 180 "$greta" parity -m "$model7b" -p "$p7" \
    -n 16 --gpu-kv f32 --max-p99 1e-3 --max-kl 1e-4 --json "$out/parity-llama2-7b-q4km-kvf32.json"
  grep -h "positions:\|PASS\|FAIL" "$logs/parity-llama2-7b-q4km-kvf32.log" >>"$summary"
fi

if want bench && [ -f "$model7b" ]; then
  step bench-gpu-llama2-7b-q4km 300 "$greta" bench -m "$model7b" --backend gpu -p 512 -n 128 -d 0,4096 -r 5 \
    --json "$logs/bench-raw.json"
  cat "$logs/bench-gpu-llama2-7b-q4km.log" >>"$summary"
  # greta bench's JSON names the device ("gpu": name, versions, memory) and
  # takes the commit from $GRETA_COMMIT; add nvidia-smi's view (driver
  # release string, clocks) and the GPU memory line the backend printed at load
  python3 - "$logs/bench-raw.json" "$logs/bench-gpu-llama2-7b-q4km.log" "$out/bench-gpu-llama2-7b-q4km.json" <<'PY' >>"$summary" 2>&1
import json, os, re, subprocess, sys
raw, log, dst = sys.argv[1:4]
d = json.loads(open(raw, "rb").read().decode("utf-8", "replace"))
q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,pci.bus_id",
                    "--format=csv,noheader"], capture_output=True, text=True).stdout.strip().split(", ")
gpu = dict(zip(["name", "driver", "memory_total", "max_sm_clock", "pci_bus"], q))
gpu["source"] = "greta bench (device, arch, api, *_version, *_bytes); nvidia-smi (name, driver, memory_total, " \
                "max_sm_clock, pci_bus) and memory_at_load added by tests/gpu/gpu-machine-run.sh"
for line in open(log, errors="replace"):
    m = re.match(r"gpu: .*weights ([0-9.]+) MiB, KV cache ([0-9.]+) MiB \((\w+), n_ctx (\d+).*scratch ([0-9.]+) MiB, "
                 r"pinned host ([0-9.]+) MiB; ([0-9.]+) GiB of ([0-9.]+) GiB free after load", line)
    if m:
        gpu["memory_at_load"] = {"weights_mib": float(m[1]), "kv_cache_mib": float(m[2]), "kv_type": m[3],
                                 "n_ctx": int(m[4]), "scratch_mib": float(m[5]), "pinned_host_mib": float(m[6]),
                                 "free_after_load_gib": float(m[7]), "total_gib": float(m[8]),
                                 "line": line.strip()}
        break
d["gpu"] = {**d.get("gpu", {}), **gpu}
if d.get("commit") in (None, "", "HEAD", "unknown"):
    d["commit"] = os.environ.get("GRETA_COMMIT", "unknown")
    d["commit_source"] = ".device-data/COMMIT, written where the binaries were built"
json.dump(d, open(dst, "w"), indent=1, ensure_ascii=False)
print("bench JSON:", dst, "gpu:", gpu.get("name"), gpu.get("driver"))
PY
fi

note "gpu-machine-run: $failed step(s) failed"
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"
[ $failed -eq 0 ]
