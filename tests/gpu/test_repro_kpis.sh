#!/usr/bin/env bash
# test_repro_kpis.sh - deploy/repro-kpis.sh as the lead runs it, on the build
# under test: usage errors, then the dequant step alone; the JSON report has
# the device, commit and rows; on a machine without a GPU the GPU row says
# NOT MEASURED (no GPU); the logs are packed.
#
#   tests/gpu/test_repro_kpis.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: test_repro_kpis.sh BUILD_DIR}
script=$(cd "$(dirname "$0")/../.." && pwd)/deploy/repro-kpis.sh
tmp=$(mktemp -d /tmp/greta-repro-kpis-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for bad in "--steps frobnicate" "--budget x" "--nonsense" "--build"; do
  "$script" $bad >"$tmp/o" 2>"$tmp/e"; rc=$?
  [ $rc = 2 ] || fail "'$bad': exit $rc, want 2"
done
grep -q "unknown step 'frobnicate'" <("$script" --steps frobnicate 2>&1) || fail "no message for a bad step"
"$script" --help | grep -q 'NOT MEASURED' || fail "--help does not describe the report"

data=${GRETA_TESTDATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/testdata}
[ -f "$data/quant/dequant-ref/index.json" ] || { echo "[  SKIPPED ] test data missing: $data"; exit 0; }
GRETA_COMMIT=repro-test "$script" --build "$build" --data "$data" --out "$tmp/out" --steps dequant --budget 120 \
  >"$tmp/stdout" 2>"$tmp/stderr"; rc=$?
[ $rc = 0 ] || { cat "$tmp/stdout" "$tmp/stderr"; fail "dequant step: exit $rc"; }
grep -q '^dequant_ref .* PASS' "$tmp/stdout" || fail "no dequant_ref PASS row in the table"
[ -f "$tmp/out/logs.tar.gz" ] && [ ! -d "$tmp/out/logs" ] || fail "logs not packed"
tar tzf "$tmp/out/logs.tar.gz" | grep -q 'logs/dequant-cpu.log' || fail "the dequant log is not in the archive"
python3 - "$tmp/out/kpis.json" <<'PY' || fail "JSON report"
import json, sys, subprocess
d = json.load(open(sys.argv[1]))
assert d["commit"] == "repro-test", d["commit"]
assert d["steps"] == ["dequant"], d["steps"]
rows = {r["id"]: r for r in d["kpis"]}
assert set(rows) == {"dequant_ref", "dequant_gpu"}, rows.keys()
assert rows["dequant_ref"]["status"] == "PASS", rows["dequant_ref"]
gpu = subprocess.run(["sh", "-c", "nvidia-smi -L 2>/dev/null | grep -q ^GPU"]).returncode == 0
if not gpu:
    assert d["device"]["name"] is None and d["backend"] == "cpu", d["device"]
    assert rows["dequant_gpu"]["status"] == "NOT MEASURED" and rows["dequant_gpu"]["detail"] == "no GPU", rows["dequant_gpu"]
assert d["summary"]["pass"] >= 1 and d["summary"]["fail"] == 0, d["summary"]
PY
if ! nvidia-smi -L 2>/dev/null | grep -q ^GPU; then
  grep -q 'NOT MEASURED (no GPU)' "$tmp/stdout" || fail "the table does not say NOT MEASURED (no GPU)"
fi
grep -q 'commit repro-test' "$tmp/stdout" || fail "the commit is not printed"
echo "test_repro_kpis: PASS"
