#!/usr/bin/env bash
# repro-kpis.sh - verifies every KPI of GRETA CORE in one run: a PASS/FAIL
# table on stdout and a JSON report.
#
#   deploy/repro-kpis.sh [--build DIR] [--data DIR] [--out DIR] [--json FILE]
#                        [--steps LIST] [--budget SECONDS] [--model7b PATH]
#
# From the repository root or anywhere (paths are taken from the script's
# location). On the GPU machine the tree is a copy with the binaries prebuilt
# (docs/GPU-MACHINE.md): a build folder (bin/ and tests/), .device-libs and
# .device-data (the test data, and COMMIT: the commit the binaries were built
# from; the GPU machine has no git). On a machine without a GPU the GPU KPIs
# are reported as NOT MEASURED (no GPU) and the rest still runs.
#
# For the GPU machine, here (the whole build-cuda folder is too big to travel
# beside the data, so only the programs go, in build-kpis-gpu/):
#   cmake -S . -B build-cuda -G Ninja -DGRETA_GPU=cuda -DCMAKE_BUILD_TYPE=Release \
#     -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCMAKE_CUDA_ARCHITECTURES=90a
#   cmake --build build-cuda -j2 --target greta greta-tokenizer greta-sampler \
#     greta-gpu-worker test_dequant test_gpu_ops test_parity_cli test_drift_cli \
#     test_pipeline journal_client
#   rm -rf build-kpis-gpu && mkdir -p build-kpis-gpu/tests &&
#     cp -r build-cuda/bin build-cuda/CMakeCache.txt build-kpis-gpu/
#   for t in test_dequant test_gpu_ops test_parity_cli test_drift_cli test_pipeline journal_client; do
#     cp build-cuda/tests/$t build-kpis-gpu/tests/; done
#   ../shared/tools/device-libs .device-libs build-kpis-gpu/bin/* build-kpis-gpu/tests/*
#   .device-data: stories260K.gguf, stories260K-greedy.json, llama-2-tiny-random.gguf,
#     ggml-vocab-llama-spm.gguf, quant/ (the fixtures, gqa-greedy.json, dequant-ref/),
#     COMMIT
# then there, carrying build-kpis-gpu, .device-libs and .device-data:
#   deploy/repro-kpis.sh --build build-kpis-gpu        (OUT is set by the device tool)
#
#   --build DIR    build tree (default: build-cuda when a GPU is present, else
#                  build-kpis-cpu). When DIR/bin/greta is missing and cmake is
#                  there, it is configured (CUDA when nvcc is found and a GPU
#                  is present, else GRETA_GPU=none; Release) and the targets
#                  below are built.
#   --data DIR     test data (default: .device-data, else $GRETA_TESTDATA, else
#                  ../shared/testdata)
#   --out DIR      logs and the JSON (default: $OUT when set, else kpi-out)
#   --json FILE    the JSON report (default: OUT_DIR/kpis.json)
#   --steps LIST   comma-separated subset of: dequant,speed,pipeline,parity,
#                  nan,restart (default: all; the 7B model is synthesized when
#                  a chosen step needs it)
#   --budget S     seconds for everything (default 540: the device tool stops
#                  a command after 600 s); steps that do not fit are reported
#                  as NOT MEASURED (time budget spent)
#   --model7b PATH the generated Llama-2-7B-shaped Q4_K_M model (default
#                  /tmp/llama2-7b-q4km.gguf; made with `greta synth` if absent)
#
# KPIs (targets from docs/BENCH.md and the issues):
#   nan_inf_*        0 NaN/Inf in the logits over long generations: `greta
#                    drift` (teacher-forced and free-running, 1000 tokens, past
#                    the context where a model's is shorter) on every test
#                    model, 128 tokens on the 7B model
#   dequant_*        dequantization bit-exact: test_dequant (every file of
#                    quant/dequant-ref), test_gpu_ops' embed test (the GPU
#                    decoders against greta_dequant_row, bit for bit)
#   parity_*         greedy parity CPU vs GPU (`greta parity`): top-1 100% and
#                    0 NaN/Inf on stories260K and every quant/ fixture; on the
#                    7B model p99 |d|/sd <= 1e-3 and mean KL <= 1e-4, with the
#                    defaults (parity_7b_*) and with the fp32 configuration
#                    (parity_7b_fp32_*: GRETA_GPU_PREFILL=v1,
#                    GRETA_GPU_KERNELS=v5, an fp32 KV cache on both sides:
#                    fp32 operands throughout, not the default)
#   pp512, tg128, pp512_d4096, tg128_d4096   `greta bench`, tokens/s against
#                    the card's targets (H100 400/320/12000/8000 for tg128,
#                    tg128@d4096, pp512, pp512@d4096; H200 420/340/12000/8000;
#                    MI300X: not yet measured)
#   pipeline_overhead  `greta bench --pipeline`: <= 3% per token, same tokens
#   restart_*        kill -9 of each stage (tokenizer, sampler, gpu-worker,
#                    supervisor) in the middle of a greedy and a seeded
#                    generation through `greta up` (GPU backend where there is
#                    one): the output is identical to an uninterrupted run; and
#                    the test_pipeline restart groups (CPU backend) where that
#                    program's compiled-in greta path exists
#
# Output: the table on stdout and in OUT_DIR/kpis.txt, OUT_DIR/kpis.json (and
# kpis.tsv, the rows it is made from), OUT_DIR/logs.tar.gz (logs/: one log per
# step and the tools' JSON and Markdown; packed because the device tool brings
# back at most 8 files). Exit status: 0 when no KPI failed (NOT MEASURED is
# not a failure), 1 when one did, 2 usage.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=""
data=""
out=${OUT:-}
json=""
steps="dequant,speed,pipeline,parity,nan,restart"
budget=540
model7b=/tmp/llama2-7b-q4km.gguf

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --build|--data|--out|--json|--steps|--budget|--model7b)
      [ $# -ge 2 ] && [ -n "$2" ] || { echo "repro-kpis: $1 needs a value" >&2; exit 2; } ;;
  esac
  case $1 in
    --build) build=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --model7b) model7b=$2; shift 2 ;;
    *) echo "repro-kpis: unknown argument: $1 (--help lists the options)" >&2; exit 2 ;;
  esac
done
case $budget in ''|*[!0-9]*) echo "repro-kpis: --budget must be a whole number of seconds (got '$budget')" >&2; exit 2 ;; esac
for s in ${steps//,/ }; do
  case $s in dequant|speed|pipeline|parity|nan|restart) ;;
    *) echo "repro-kpis: --steps: unknown step '$s' (dequant,speed,pipeline,parity,nan,restart)" >&2; exit 2 ;;
  esac
done
want() { case ",$steps," in *",$1,"*) return 0 ;; esac; return 1; }
command -v python3 >/dev/null || { echo "repro-kpis: python3 is needed (JSON)" >&2; exit 2; }

[ -n "$out" ] || out=$PWD/kpi-out
rm -rf "$out/logs" && mkdir -p "$out/logs" || exit 2
out=$(cd "$out" && pwd)
logs=$out/logs
[ -n "$json" ] || json=$out/kpis.json
tsv=$out/kpis.tsv
: >"$tsv"

if [ -z "$data" ]; then
  if [ -d "$repo/.device-data" ]; then data=$repo/.device-data
  elif [ -n "${GRETA_TESTDATA:-}" ]; then data=$GRETA_TESTDATA
  else data=$repo/../shared/testdata; fi
fi
data=$(cd "$data" 2>/dev/null && pwd) || { echo "repro-kpis: test data folder not found: $data" >&2; exit 2; }
export GRETA_TESTDATA=$data
[ -d /usr/local/cuda/lib64 ] && export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -d "$repo/.device-libs" ] && export LD_LIBRARY_PATH=$repo/.device-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
unset XDG_RUNTIME_DIR # short socket paths for the instances started here

# ---- the machine -----------------------------------------------------------------------

gpu_name="" gpu_driver="" gpu_mem="" card=none
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  IFS=, read -r gpu_name gpu_driver gpu_mem < <(nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader 2>/dev/null | head -1)
  gpu_name=$(echo "$gpu_name" | sed 's/^ *//; s/ *$//'); gpu_driver=${gpu_driver// /}; gpu_mem=$(echo "$gpu_mem" | sed 's/^ *//')
elif command -v rocm-smi >/dev/null && rocm-smi --showproductname 2>/dev/null | grep -qi 'MI300X'; then
  gpu_name=$(rocm-smi --showproductname 2>/dev/null | grep -m1 -i 'card series' | sed 's/.*: *//')
  gpu_driver=$(rocm-smi --showdriverversion 2>/dev/null | grep -m1 -i 'driver version' | sed 's/.*: *//')
fi
case $gpu_name in
  *H100*) card=h100 ;; *H200*) card=h200 ;; *MI300X*|*mi300x*) card=mi300x ;; "") card=none ;; *) card=other ;;
esac
commit=unknown
if [ -s "$data/COMMIT" ]; then commit=$(head -1 "$data/COMMIT")
elif [ -n "${GRETA_COMMIT:-}" ]; then commit=$GRETA_COMMIT
elif command -v git >/dev/null && git -C "$repo" rev-parse HEAD >/dev/null 2>&1; then
  commit=$(git -C "$repo" rev-parse HEAD)
  [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit+dirty"
fi
export GRETA_COMMIT=$commit
date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cpu_model=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')
echo "repro-kpis: $date_utc, commit $commit"
echo "repro-kpis: device: ${gpu_name:-no GPU}${gpu_driver:+, driver $gpu_driver}${gpu_mem:+, $gpu_mem}; host: $(nproc) CPUs, ${cpu_model:-unknown CPU}"
[ -n "$gpu_name" ] && nvidia-smi >"$logs/nvidia-smi.txt" 2>&1

# ---- recording ---------------------------------------------------------------------------

# kpi ID NAME TARGET VALUE STATUS DETAIL (one TSV row; no tabs in the fields)
kpi() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" | tr -d '\r' >>"$tsv"
  printf 'repro-kpis: %-22s %-14s %s\n' "$1" "$5" "$4" >&2
}
nm() { kpi "$1" "$2" "$3" "" "NOT MEASURED" "$4"; }

# step NAME LIMIT_S CMD... : runs with a time limit inside the budget, output
# in logs/NAME.log; returns the command's status, 124 on timeout, 125 when
# the budget is spent (nothing run).
step() {
  local name=$1 limit=$2; shift 2
  local left=$((budget - SECONDS))
  if [ $left -lt 10 ]; then echo "skipped: time budget spent" >"$logs/$name.log"; return 125; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  echo "repro-kpis: step $name: rc $rc, $((SECONDS - t0)) s" >&2
  return $rc
}
why() { # a NOT MEASURED / FAIL reason for a step's status
  case $1 in 124) echo "timed out (log: logs/$2.log)" ;; 125) echo "time budget spent" ;;
    *) echo "exit status $1 (log: logs/$2.log)" ;; esac
}
# jget FILE EXPR: a Python expression over the JSON document `d`
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

# ---- the build ---------------------------------------------------------------------------------

[ -n "$build" ] || { if [ -n "$gpu_name" ]; then build=$repo/build-cuda; else build=$repo/build-kpis-cpu; fi; }
case $build in /*) ;; *) build=$repo/$build ;; esac
greta=$build/bin/greta
targets="greta greta-tokenizer greta-sampler greta-gpu-worker test_dequant test_parity_cli test_drift_cli test_pipeline journal_client"
if [ ! -x "$greta" ]; then
  if command -v cmake >/dev/null; then
    nvcc=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
    gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
    if [ -n "$nvcc" ] && [ -n "$gpu_name" ]; then
      cfg=(-DGRETA_GPU=cuda "-DCMAKE_CUDA_COMPILER=$nvcc"); targets="$targets test_gpu_ops"
      case $card in h100|h200) cfg+=(-DCMAKE_CUDA_ARCHITECTURES=90a) ;; esac
    else cfg=(-DGRETA_GPU=none); fi
    echo "repro-kpis: building $build (${cfg[*]})" >&2
    if ! { cmake -S "$repo" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "${cfg[@]}" &&
           cmake --build "$build" -j "$(nproc)" --target $targets; } >"$logs/build.log" 2>&1; then
      kpi build "build" "builds" "failed" FAIL "cmake configure/build failed (log: logs/build.log)"
    fi
  else
    kpi build "build" "builds" "no build" FAIL "$greta is missing and cmake is not installed"
  fi
fi
if [ ! -x "$greta" ]; then
  echo "repro-kpis: no greta binary in $build/bin; nothing more can run" >&2
fi
gpu_build=0
if [ -f "$build/CMakeCache.txt" ]; then
  grep -Eq '^GRETA_GPU:STRING=(cuda|hip)' "$build/CMakeCache.txt" && gpu_build=1
elif [ -x "$greta" ] && ! grep -qa 'not built with GPU support' "$greta"; then
  gpu_build=1
fi
gpu=0; nogpu_reason="no GPU"
if [ -n "$gpu_name" ] && [ $gpu_build = 1 ] && [ -x "$greta" ]; then gpu=1
elif [ -n "$gpu_name" ]; then nogpu_reason="this build has no GPU support"; fi
[ -x "$greta" ] || nogpu_reason="no greta binary"
backend=cpu; [ $gpu = 1 ] && backend=gpu
echo "repro-kpis: build $build ($([ $gpu_build = 1 ] && echo GPU || echo CPU-only)), data $data, KPIs on the $backend backend" >&2

stories=$data/stories260K.gguf
test_models=()
for f in "$data/stories260K.gguf" "$data/llama-2-tiny-random.gguf" "$data"/quant/*.gguf; do
  [ -f "$f" ] && test_models+=("$f")
done

# the 7B benchmark model, generated once when a chosen step needs it
synth_tried=0
have7b() {
  [ -f "$model7b" ] && return 0
  [ $gpu = 1 ] && [ $synth_tried = 0 ] || return 1
  synth_tried=1
  step synth-7b 180 "$greta" synth --preset llama2-7b --type Q4_K_M --vocab "$data/ggml-vocab-llama-spm.gguf" \
    -o "$model7b" || { rm -f "$model7b"; return 1; }
  [ -f "$model7b" ]
}

# ---- dequantization --------------------------------------------------------------------------------

if want dequant; then
  t=$build/tests/test_dequant
  if [ ! -x "$t" ]; then
    nm dequant_ref "dequantization bit-exact vs quant/dequant-ref" "bit-exact" "test_dequant is not built ($t)"
  else
    step dequant-cpu 120 env GRETA_REQUIRE_TESTDATA=1 "$t"; rc=$?
    ok=$(grep -c '^\[       OK \]' "$logs/dequant-cpu.log")
    if [ $rc = 0 ]; then kpi dequant_ref "dequantization bit-exact vs quant/dequant-ref" "bit-exact" "$ok tests OK" PASS \
        "test_dequant: every file of quant/dequant-ref reproduced bit for bit"
    else kpi dequant_ref "dequantization bit-exact vs quant/dequant-ref" "bit-exact" "$ok tests OK" FAIL "$(why $rc dequant-cpu)"; fi
  fi
  t=$build/tests/test_gpu_ops
  if [ $gpu = 0 ]; then nm dequant_gpu "GPU weight decoding bit-exact" "bit-exact" "$nogpu_reason"
  elif [ ! -x "$t" ]; then nm dequant_gpu "GPU weight decoding bit-exact" "bit-exact" "test_gpu_ops is not built ($t)"
  else
    step gpu-ops 180 env GRETA_REQUIRE_TESTDATA=1 "$t"; rc=$?
    ok=$(grep -c '^\[       OK \]' "$logs/gpu-ops.log"); failed=$(grep -c '^\[  FAILED  \] test_' "$logs/gpu-ops.log")
    if grep -q '^\[       OK \] test_embed_all_types' "$logs/gpu-ops.log"; then
      kpi dequant_gpu "GPU weight decoding bit-exact" "bit-exact" "embed of every type = greta_dequant_row" PASS \
        "test_gpu_ops: $ok tests OK, $failed failed (rc $rc; log: logs/gpu-ops.log)"
    else kpi dequant_gpu "GPU weight decoding bit-exact" "bit-exact" "test_embed_all_types did not pass" FAIL "$(why $rc gpu-ops)"; fi
  fi
fi

# ---- speed (7B, card targets) --------------------------------------------------------------------------

target_of() { # target_of TEST -> tokens/s for $card, empty when none
  case $card:$1 in
    h100:tg128) echo 400 ;; h100:tg128_d4096) echo 320 ;; h100:pp512) echo 12000 ;; h100:pp512_d4096) echo 8000 ;;
    h200:tg128) echo 420 ;; h200:tg128_d4096) echo 340 ;; h200:pp512) echo 12000 ;; h200:pp512_d4096) echo 8000 ;;
  esac
}
no_target_reason() {
  case $card in mi300x) echo "MI300X figures not yet measured" ;; *) echo "no target for '$gpu_name'" ;; esac
}
if want speed; then
  names=(tg128 tg128_d4096 pp512 pp512_d4096)
  if [ $gpu = 0 ]; then for n in "${names[@]}"; do nm "$n" "$n tokens/s (7B Q4_K_M)" "card target" "$nogpu_reason"; done
  elif ! have7b; then for n in "${names[@]}"; do nm "$n" "$n tokens/s (7B Q4_K_M)" "card target" "no 7B model (log: logs/synth-7b.log)"; done
  else
    step bench-7b 200 "$greta" bench -m "$model7b" --backend gpu -p 512 -n 128 -d 0,4096 -r 3 --json "$logs/bench-7b.json"; rc=$?
    for n in "${names[@]}"; do
      t=${n%_d4096}; d=0; [ "$t" != "$n" ] && d=4096
      v=""; [ $rc = 0 ] && v=$(jget "$logs/bench-7b.json" \
        "[r for r in d['results'] if r['test']=='$t' and r['depth']==$d][0]['tokens_per_s_mean']")
      sd=""; [ -n "$v" ] && sd=$(jget "$logs/bench-7b.json" \
        "[r for r in d['results'] if r['test']=='$t' and r['depth']==$d][0]['tokens_per_s_std']")
      tg=$(target_of "$n")
      if [ -z "$v" ]; then kpi "$n" "$n tokens/s (7B Q4_K_M)" "${tg:->= target}" "" FAIL "$(why $rc bench-7b)"
      elif [ -z "$tg" ]; then kpi "$n" "$n tokens/s (7B Q4_K_M)" "not set" "$(printf '%.1f' "$v")" "NO TARGET" "$(no_target_reason)"
      else
        st=$(python3 -c "print('PASS' if $v >= $tg else 'FAIL')")
        kpi "$n" "$n tokens/s (7B Q4_K_M)" ">= $tg" "$(printf '%.1f' "$v")" "$st" "mean of 3 runs, sd $(printf '%.1f' "$sd"), $gpu_name"
      fi
    done
  fi
fi

# ---- pipeline overhead -------------------------------------------------------------------------------------

if want pipeline; then
  name="pipeline overhead per token (tg128, 7B)"
  if [ $gpu = 0 ]; then nm pipeline_overhead "$name" "<= 3%" "$nogpu_reason"
  elif ! "$greta" bench --help 2>&1 | grep -q -- '--pipeline'; then
    nm pipeline_overhead "$name" "<= 3%" "this greta bench has no --pipeline"
  elif ! have7b; then nm pipeline_overhead "$name" "<= 3%" "no 7B model (log: logs/synth-7b.log)"
  else
    step bench-pipeline 180 "$greta" bench --pipeline -m "$model7b" --backend gpu -n 128 -r 3 \
      --json "$logs/bench-pipeline.json"; rc=$?
    v=$(jget "$logs/bench-pipeline.json" "d['pipeline']['overhead_pct']")
    same=$(jget "$logs/bench-pipeline.json" "d['pipeline']['tokens_identical']")
    if [ -z "$v" ]; then kpi pipeline_overhead "$name" "<= 3%" "" FAIL "$(why $rc bench-pipeline)"
    else
      st=$(python3 -c "print('PASS' if $v <= 3.0 and '$same' == 'True' else 'FAIL')")
      kpi pipeline_overhead "$name" "<= 3%" "$(printf '%.2f%%' "$v")" "$st" "tokens identical: $same; log: logs/bench-pipeline.log"
    fi
  fi
fi

# ---- greedy parity ---------------------------------------------------------------------------------------------

if want parity; then
  pname="greedy parity CPU vs GPU, test models"
  if [ $gpu = 0 ]; then
    nm parity_fixtures "$pname" "top-1 100%, 0 NaN/Inf" "$nogpu_reason"
    nm parity_7b_p99 "7B parity p99 |d|/sd" "<= 1e-3" "$nogpu_reason"
    nm parity_7b_kl "7B parity mean KL" "<= 1e-4" "$nogpu_reason"
    nm parity_7b_fp32_p99 "7B parity, fp32 configuration (not the default): p99 |d|/sd" "<= 1e-3" "$nogpu_reason"
    nm parity_7b_fp32_kl "7B parity, fp32 configuration (not the default): mean KL" "<= 1e-4" "$nogpu_reason"
  else
    runs=0 passed=0 failed_list=""
    pr() { # pr NAME ARGS... : one parity run; counts it
      local n=$1; shift
      step "parity-$n" 60 "$greta" parity "$@" --json "$logs/parity-$n.json"; local rc=$?
      runs=$((runs + 1))
      if [ "$(jget "$logs/parity-$n.json" "d['summary']['pass']")" = True ]; then passed=$((passed + 1))
      else failed_list="$failed_list $n(rc $rc)"; fi
    }
    [ -f "$stories" ] && { pr stories260K-bos -m "$stories" -n 200
                           pr stories260K-prompt -m "$stories" -p "Once upon a time, there was a little girl" -n 64; }
    if [ -f "$data/quant/gqa-greedy.json" ]; then
      python3 - "$data/quant/gqa-greedy.json" >"$logs/quant-prompts.tsv" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
for name, prompts in g["models"].items():
    for i, p in enumerate(prompts):
        print(f"{name[:-5]}\t{i}\t{p['prompt']}")
print("gqa-F32\t0\tThe dog ran to the")
PY
      while IFS=$'\t' read -r b i prompt; do
        [ -f "$data/quant/$b.gguf" ] && pr "$b-p$i" -m "$data/quant/$b.gguf" -p "$prompt" -n 16
      done <"$logs/quant-prompts.tsv"
    fi
    if [ $runs = 0 ]; then nm parity_fixtures "$pname" "top-1 100%, 0 NaN/Inf" "no test models in $data"
    elif [ $passed = $runs ]; then kpi parity_fixtures "$pname" "top-1 100%, 0 NaN/Inf" "$passed/$runs runs pass" PASS \
        "stories260K (BOS, 200 tokens; a prompt, 64) and each quant/ fixture with the prompts of gqa-greedy.json (16 tokens)"
    else kpi parity_fixtures "$pname" "top-1 100%, 0 NaN/Inf" "$passed/$runs runs pass" FAIL "failed:$failed_list"; fi
    if ! have7b; then
      nm parity_7b_p99 "7B parity p99 |d|/sd" "<= 1e-3" "no 7B model"; nm parity_7b_kl "7B parity mean KL" "<= 1e-4" "no 7B model"
      nm parity_7b_fp32_p99 "7B parity, fp32 configuration (not the default): p99 |d|/sd" "<= 1e-3" "no 7B model"
      nm parity_7b_fp32_kl "7B parity, fp32 configuration (not the default): mean KL" "<= 1e-4" "no 7B model"
    else
      # p7b ID NAME DETAIL STEP [ENV=VALUE...] -- [PARITY ARGS...]: one greta parity run on the 7B model
      # (with those variables) -> the rows ID_p99 and ID_kl
      p7b() {
        local id=$1 name=$2 detail=$3 st=$4 vars=() rc p99 kl top1; shift 4
        while [ "$1" != -- ]; do vars+=("$1"); shift; done; shift
        step "$st" 240 env "${vars[@]}" "$greta" parity -m "$model7b" \
          -p "The capital of France is Paris, and the capital of Germany is" -n 16 "$@" --json "$logs/$st.json"; rc=$?
        p99=$(jget "$logs/$st.json" "d['summary']['p99_rel_diff']")
        kl=$(jget "$logs/$st.json" "d['summary']['mean_kl']")
        top1=$(jget "$logs/$st.json" "'%.2f%%, NaN/Inf %d, %d positions' % (100*d['summary']['top1_agreement'], d['summary']['nan_inf'], d['summary']['positions'])")
        if [ -z "$p99" ]; then
          kpi "${id}_p99" "$name p99 |d|/sd" "<= 1e-3" "" FAIL "$(why $rc "$st")"
          kpi "${id}_kl" "$name mean KL" "<= 1e-4" "" FAIL "$(why $rc "$st")"
        else
          kpi "${id}_p99" "$name p99 |d|/sd" "<= 1e-3" "$(printf '%.3e' "$p99")" \
            "$(python3 -c "print('PASS' if $p99 <= 1e-3 else 'FAIL')")" "top-1 $top1 ($detail)"
          kpi "${id}_kl" "$name mean KL" "<= 1e-4" "$(printf '%.3e' "$kl")" \
            "$(python3 -c "print('PASS' if $kl <= 1e-4 else 'FAIL')")" "top-1 $top1 ($detail)"
        fi
      }
      p7b parity_7b "7B parity" "fp16 KV cache" parity-7b --
      # the fp32 configuration: fp32 GEMM operands in prefill, fp32 decode inputs, fp32 cache on both sides
      p7b parity_7b_fp32 "7B parity, fp32 configuration (not the default):" \
        "GRETA_GPU_PREFILL=v1 GRETA_GPU_KERNELS=v5, fp32 KV cache" parity-7b-fp32 \
        GRETA_GPU_PREFILL=v1 GRETA_GPU_KERNELS=v5 -- --gpu-kv f32
    fi
  fi
fi

# ---- NaN/Inf over long generations ------------------------------------------------------------------------------

if want nan; then
  # sum_drift JSON -> "nan positions models min_positions exact" of a drift report
  # (models that could not be measured count as failed: "errors")
  sum_drift() { jget "$1" "(lambda ok: ' '.join(map(str, [sum(v['nan_inf'] for m in ok for v in m['variants']), sum(m['positions'] for m in ok), len(ok), min([m['positions'] for m in ok] or [0]), all(v['teacher_forced']['summary']['max_abs_diff'] == 0 and v['free_running']['first_divergence'] is None for m in ok for v in m['variants']), len(d['models']) - len(ok)])))([m for m in d['models'] if 'error' not in m])"; }
  if [ ${#test_models[@]} = 0 ]; then
    nm nan_inf_test_models "0 NaN/Inf in logits, long generations, test models" "0" "no test models in $data"
  elif [ $gpu = 1 ]; then
    step drift-test-models 240 "$greta" drift --all "${test_models[@]}" -n 1000 --past-context --variants default \
      --json "$logs/drift-test-models.json" --md "$logs/drift-test-models.md"; rc=$?
    read -r nan npos nmod minpos exact errors < <(sum_drift "$logs/drift-test-models.json")
    if [ -z "${nan:-}" ]; then kpi nan_inf_test_models "0 NaN/Inf in logits, long generations, test models" "0" "" FAIL "$(why $rc drift-test-models)"
    else kpi nan_inf_test_models "0 NaN/Inf in logits, long generations, test models" "0" "$nan" \
        "$([ "$nan" = 0 ] && [ "$errors" = 0 ] && echo PASS || echo FAIL)" \
        "greta drift on $nmod models, >= $minpos positions each, teacher-forced + free-running ($npos positions in all)$([ "$errors" = 0 ] || echo "; $errors models could not be measured (log: logs/drift-test-models.log)")"; fi
  else
    nm nan_inf_test_models "0 NaN/Inf in logits, long generations, test models" "0" "$nogpu_reason"
    # what this machine can check: the CPU backend and the drift tool itself (CPU vs CPU: exactly 0)
    if [ -x "$greta" ]; then
      step drift-test-models-cpu 240 "$greta" drift --test cpu --all "${test_models[@]}" -n 200 --past-context \
        --json "$logs/drift-test-models-cpu.json" --md "$logs/drift-test-models-cpu.md"; rc=$?
      read -r nan npos nmod minpos exact errors < <(sum_drift "$logs/drift-test-models-cpu.json")
      if [ -z "${nan:-}" ]; then kpi nan_inf_cpu "0 NaN/Inf, CPU backend (drift self-check)" "0, exact" "" FAIL "$(why $rc drift-test-models-cpu)"
      else kpi nan_inf_cpu "0 NaN/Inf, CPU backend (drift self-check)" "0, exact" "$nan" \
          "$([ "$nan" = 0 ] && [ "$exact" = True ] && [ "$errors" = 0 ] && echo PASS || echo FAIL)" \
          "greta drift --test cpu on $nmod models, >= $minpos positions each; all differences exactly 0: $exact$([ "$errors" = 0 ] || echo "; $errors models could not be measured")"; fi
    fi
  fi
fi

# ---- kill -9 restart --------------------------------------------------------------------------------------------------

# Through a running instance: a reference output, then the same request with
# one process killed (kill -9) in the middle; the output must be the same.
# The worker is stopped (SIGSTOP) once a quarter of the reference's text has
# arrived, so the kill lands while the request is surely in flight.
stage_field() { "$greta" status --instance "$1" 2>/dev/null | awk -v s="$2" -v f="$3" '$1 == s { print $f }'; }
sup_pid() { "$greta" status --instance "$1" 2>/dev/null | sed -n 's/.*supervisor pid \([0-9]*\).*/\1/p'; }
alive() { local s; s=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) && [ -n "$s" ] && [ "$s" != Z ]; }
fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }

restart_stage() { # restart_stage INSTANCE VICTIM MODE_ARGS... ; prints "ok DETAIL" or "fail DETAIL"
  local inst=$1 victim=$2; shift 2
  local ref=$rdir/ref-$2.txt outf=$rdir/$victim-$2.txt
  local reflen; reflen=$(fsize "$ref")
  local thresh=$((reflen / 4)) wpid rp at=0
  for attempt in 1 2 3 4 5; do
    "$greta" run --instance "$inst" -n "$rn" "$@" >"$outf" 2>"$outf.err" </dev/null &
    rp=$!
    local t_end=$((SECONDS + 60))
    while alive $rp && [ "$(fsize "$outf")" -lt $thresh ] && [ $SECONDS -lt $t_end ]; do sleep 0.005; done
    wpid=$(stage_field "$inst" gpu-worker 2)
    kill -STOP "$wpid" 2>/dev/null
    at=$(fsize "$outf")
    if alive $rp && [ "$at" -lt "$reflen" ]; then break; fi
    kill -CONT "$wpid" 2>/dev/null; wait $rp; at=0; thresh=$((thresh / 2))
  done
  if [ "$at" = 0 ]; then kill -CONT "$wpid" 2>/dev/null; echo "fail the request always finished before the kill"; return; fi
  local vpid restarts0
  if [ "$victim" = supervisor ]; then vpid=$(sup_pid "$inst"); else vpid=$(stage_field "$inst" "$victim" 2); fi
  restarts0=$(stage_field "$inst" "$victim" 4)
  kill -9 "$vpid"
  [ "$victim" != gpu-worker ] && kill -CONT "$wpid"
  wait $rp; local rc=$?
  local detail="kill -9 $victim (pid $vpid) after $at of $reflen bytes"
  if [ $rc != 0 ]; then echo "fail $detail: greta run exit $rc"; return; fi
  if ! cmp -s "$ref" "$outf"; then echo "fail $detail: output differs from the uninterrupted run ($outf)"; return; fi
  if [ "$victim" = supervisor ]; then
    "$greta" up -m "$rmodel" --instance "$inst" --backend "$backend" --slots 1 >>"$rdir/up.log" 2>&1 ||
      { echo "fail $detail: greta up did not adopt the stages"; return; }
    local np; np=$(sup_pid "$inst")
    [ -n "$np" ] && [ "$np" != "$vpid" ] || { echo "fail $detail: no new supervisor"; return; }
    detail="$detail; stages adopted by supervisor $np"
  else
    local t_end=$((SECONDS + 60)) np=""
    while [ $SECONDS -lt $t_end ]; do
      np=$(stage_field "$inst" "$victim" 2)
      [ -n "$np" ] && [ "$np" != "$vpid" ] && [ "$(stage_field "$inst" "$victim" 3)" = running ] && break
      sleep 0.1
    done
    [ "$np" != "$vpid" ] || { echo "fail $detail: $victim was not restarted"; return; }
    detail="$detail; restarted as pid $np (restarts $restarts0 -> $(stage_field "$inst" "$victim" 4))"
  fi
  echo "ok $detail"
}

restart_all() { # the whole sequence; writes $rdir/results.tsv: victim, mode, ok|fail, detail
  local inst=$rinst
  "$greta" up -m "$rmodel" --instance "$inst" --backend "$backend" --slots 1 >"$rdir/up.log" 2>&1 || {
    echo "greta up failed"; cat "$rdir/up.log"; return 1; }
  local rc=0
  "$greta" run --instance "$inst" -n "$rn" --temp 0 >"$rdir/ref-0.txt" 2>"$rdir/ref-0.err" </dev/null || rc=1
  "$greta" run --instance "$inst" -n "$rn" --temp 0.8 --seed 42 >"$rdir/ref-0.8.txt" 2>"$rdir/ref-0.8.err" </dev/null || rc=1
  if [ $rc = 0 ]; then
    for victim in tokenizer sampler gpu-worker supervisor; do
      for mode in "--temp 0" "--temp 0.8 --seed 42"; do
        local r; r=$(restart_stage "$inst" "$victim" $mode)
        printf '%s\t%s\t%s\t%s\n' "$victim" "${mode#--temp }" "${r%% *}" "${r#* }" | tee -a "$rdir/results.tsv"
      done
    done
  fi
  "$greta" status --instance "$inst"
  "$greta" down --instance "$inst"
  return $rc
}

if want restart; then
  if [ ! -x "$greta" ] || [ ! -f "$stories" ]; then
    for v in tokenizer sampler gpu-worker supervisor; do
      nm "restart_$v" "kill -9 $v mid-generation, same output" "identical" "needs $greta and $stories"; done
  else
    rdir=$logs/restart; mkdir -p "$rdir"; : >"$rdir/results.tsv"
    rmodel=$stories; rn=1000; [ $gpu = 0 ] && rn=300
    export -f restart_stage restart_all stage_field sup_pid alive fsize
    rinst=kpi$$-$backend
    export greta rdir rmodel rn backend rinst
    step restart-$backend 240 bash -c restart_all; rc=$?
    # after a timeout: wake a stopped worker and take the instance down
    w=$(stage_field "$rinst" gpu-worker 2); [ -n "$w" ] && kill -CONT "$w" 2>/dev/null
    "$greta" down --instance "$rinst" >/dev/null 2>&1
    for v in tokenizer sampler gpu-worker supervisor; do
      n=$(grep -c "^$v	" "$rdir/results.tsv"); okn=$(grep -c "^$v	[^	]*	ok	" "$rdir/results.tsv")
      d=$(grep "^$v	" "$rdir/results.tsv" | awk -F'\t' '{ printf "%s%s (temp %s): %s", (NR > 1 ? "; " : ""), $3, $2, $4 }')
      if [ "$n" = 0 ]; then kpi "restart_$v" "kill -9 $v mid-generation, same output" "identical" "" FAIL "$(why $rc restart-$backend)"
      else kpi "restart_$v" "kill -9 $v mid-generation, same output" "identical" "$okn/$n runs identical" \
          "$([ "$okn" = "$n" ] && echo PASS || echo FAIL)" "$backend backend, stories260K, $rn tokens, greedy + seeded: $d"; fi
    done
  fi
fi

# ---- last, what the budget may not leave room for ---------------------------------------------

if want nan; then
  if [ $gpu = 0 ]; then nm nan_inf_7b "0 NaN/Inf in logits, 7B model" "0" "$nogpu_reason"
  elif ! have7b; then nm nan_inf_7b "0 NaN/Inf in logits, 7B model" "0" "no 7B model"
  else
    step drift-7b 200 "$greta" drift -m "$model7b" -n 128 --variants default --json "$logs/drift-7b.json" \
      --md "$logs/drift-7b.md"; rc=$?
    read -r nan npos nmod minpos exact errors < <(sum_drift "$logs/drift-7b.json")
    if [ -z "${nan:-}" ]; then nm nan_inf_7b "0 NaN/Inf in logits, 7B model" "0" "$(why $rc drift-7b)"
    elif [ "$errors" != 0 ]; then kpi nan_inf_7b "0 NaN/Inf in logits, 7B model" "0" "" FAIL "$(why $rc drift-7b)"
    else kpi nan_inf_7b "0 NaN/Inf in logits, 7B model" "0" "$nan" "$([ "$nan" = 0 ] && echo PASS || echo FAIL)" \
        "greta drift, $npos positions (BOS + 128), teacher-forced + free-running"; fi
  fi
fi

if want restart; then
  # the pipeline test program's restart groups (CPU backend), with this
  # build's greta and journal_client named on its command line (its
  # compiled-in paths are the build machine's)
  tp=$build/tests/test_pipeline
  tb=$build/bin/greta jc=$build/tests/journal_client
  if [ ! -x "$tp" ]; then nm restart_test_pipeline "test_pipeline restart groups (cpu backend)" "all pass" "test_pipeline is not built"
  else
    if [ ! -x "$tb" ] || [ ! -x "$jc" ]; then
      nm restart_test_pipeline "test_pipeline restart groups (cpu backend)" "all pass" \
        "$tb or $jc is missing"
    else
      okg=0 ng=0 skipped=0 bad=""
      for g in restart-tokenizer restart-sampler restart-gpu-worker restart-supervisor; do
        step "test-pipeline-$g" 120 env GRETA_REQUIRE_TESTDATA=1 "$tp" "$g" "$(cd "$(dirname "$tb")" && pwd)/greta" \
          "$(cd "$(dirname "$jc")" && pwd)/journal_client"; rc=$?
        if [ $rc = 125 ]; then skipped=$((skipped + 1)); continue; fi
        ng=$((ng + 1)); if [ $rc = 0 ]; then okg=$((okg + 1)); else bad="$bad $g($(why $rc test-pipeline-$g))"; fi
      done
      if [ $skipped -gt 0 ] && [ $okg = $ng ]; then
        nm restart_test_pipeline "test_pipeline restart groups (cpu backend)" "all pass" \
          "time budget spent ($okg of 4 groups ran and passed)"
      else
        kpi restart_test_pipeline "test_pipeline restart groups (cpu backend)" "all pass" "$okg/$ng groups pass" \
          "$([ $okg = $ng ] && echo PASS || echo FAIL)" \
          "${bad:-greedy and seeded 200-token runs, kill -9 at a random token, same ids and text}"
      fi
    fi
  fi
fi

# ---- report ---------------------------------------------------------------------------------------------------------------

export RK_DATE=$date_utc RK_COMMIT=$commit RK_GPU=$gpu_name RK_DRIVER=$gpu_driver RK_MEM=$gpu_mem RK_CARD=$card \
  RK_CPU="$cpu_model" RK_NPROC=$(nproc) RK_BUILD=$build RK_DATA=$data RK_BACKEND=$backend RK_ELAPSED=$SECONDS \
  RK_STEPS=$steps RK_BUDGET=$budget
(python3 - "$tsv" "$json" <<'PY'
import json, os, sys
rows = []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 5:
        f += [""] * (6 - len(f))
        rows.append(dict(id=f[0], kpi=f[1], target=f[2], value=f[3], status=f[4], detail=f[5]))
e = os.environ
counts = {}
for r in rows:
    counts[r["status"]] = counts.get(r["status"], 0) + 1
report = {
    "tool": "deploy/repro-kpis.sh", "date": e["RK_DATE"], "commit": e["RK_COMMIT"],
    "device": {"name": e["RK_GPU"] or None, "driver": e["RK_DRIVER"] or None, "memory": e["RK_MEM"] or None,
               "card": e["RK_CARD"], "source": "nvidia-smi"},
    "host": {"cpu": e["RK_CPU"], "cpus": int(e["RK_NPROC"])},
    "build": e["RK_BUILD"], "data": e["RK_DATA"], "backend": e["RK_BACKEND"], "steps": e["RK_STEPS"].split(","),
    "budget_s": int(e["RK_BUDGET"]), "elapsed_s": int(e["RK_ELAPSED"]),
    "targets": {"h100": {"tg128": 400, "tg128_d4096": 320, "pp512": 12000, "pp512_d4096": 8000},
                "h200": {"tg128": 420, "tg128_d4096": 340, "pp512": 12000, "pp512_d4096": 8000},
                "mi300x": "not yet measured", "pipeline_overhead_pct": 3.0, "parity_7b_p99_rel": 1e-3,
                "parity_7b_mean_kl": 1e-4},
    "summary": {"pass": counts.get("PASS", 0), "fail": counts.get("FAIL", 0),
                "not_measured": counts.get("NOT MEASURED", 0), "no_target": counts.get("NO TARGET", 0)},
    "kpis": rows,
}
with open(sys.argv[2], "w") as f:
    json.dump(report, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"\nGRETA CORE KPIs - {e['RK_DATE']}, commit {e['RK_COMMIT']}")
print(f"device: {e['RK_GPU'] or 'no GPU'}" + (f", driver {e['RK_DRIVER']}" if e['RK_DRIVER'] else "") +
      f"; backend {e['RK_BACKEND']}; {e['RK_ELAPSED']} s\n")
shown = []
for r in rows:  # a short reason goes into the status column: NOT MEASURED (no GPU)
    st, det = r["status"], r["detail"]
    if st == "NOT MEASURED" and det and len(det) <= 40:
        st, det = f"NOT MEASURED ({det})", ""
    shown.append((r["id"], r["target"], r["value"] or "-", st, det))
w = [max([len(x[i]) for x in shown] + [len(h)]) for i, h in enumerate(("kpi", "target", "value", "status"))]
print(f"{'kpi':<{w[0]}}  {'target':<{w[1]}}  {'value':<{w[2]}}  {'status':<{w[3]}}  detail")
for x in shown:
    print(f"{x[0]:<{w[0]}}  {x[1]:<{w[1]}}  {x[2]:<{w[2]}}  {x[3]:<{w[3]}}  {x[4]}")
s = report["summary"]
print(f"\n{s['pass']} PASS, {s['fail']} FAIL, {s['not_measured']} NOT MEASURED, {s['no_target']} NO TARGET; JSON: {sys.argv[2]}")
PY
) | tee "$out/kpis.txt"
# the device tool brings back only a few files: the logs travel as one archive
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"
grep -q $'\tFAIL\t' "$tsv" && exit 1
exit 0
