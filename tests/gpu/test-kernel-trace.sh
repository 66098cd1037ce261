#!/usr/bin/env bash
# The kernel trace (tests/perf/kernel-trace.c, CUDA builds with CUPTI): a
# short greta bench on stories260K with the injection library records every
# kernel into GRETA_KERNEL_TRACE (a CSV with start < end on every row, as
# many rows as the table's first line counts, and the table's exclusive
# times add up to its span), GRETA_KERNEL_TRACE_SKIP=N
# leaves the first N kernels out of the table (not out of the CSV), and an
# empty GRETA_KERNEL_TRACE writes no file.
#
#   tests/gpu/test-kernel-trace.sh BUILD_DIR    (GRETA_TESTDATA: the test data)
set -uo pipefail
build=$(cd "$1" && pwd)
lib=$build/bin/libgreta-kernel-trace.so
model=${GRETA_TESTDATA:?}/stories260K.gguf
[ -f "$lib" ] || { echo "test-kernel-trace: $lib not built"; echo "[  SKIPPED ] kernel trace"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "[  FAILED  ] $*"; exit 1; }

bench() { # OUT_CSV SKIP -> stderr in $tmp/err
  env CUDA_INJECTION64_PATH="$lib" GRETA_KERNEL_TRACE="$1" \
    ${2:+GRETA_KERNEL_TRACE_SKIP=$2} "$build/bin/greta" bench --backend gpu -m "$model" -p 16 -n 8 -r 1 \
    >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "greta bench with the trace library"; }
}
counted() { sed -n 's/^kernel-trace: \([0-9]*\) kernels.*/\1/p' "$tmp/err"; }
excl_ok() { # the table's exclusive times add up to its span (each row rounded to 0.1 us)
  awk '/^kernel-trace: /{span = $5} /^kernel +count/{t = 1; next} t && NF >= 7 && $NF ~ /^[0-9]+\.[0-9]$/ {sum += $NF; n++}
       END {d = sum - span; if (d < 0) d = -d; exit !(n > 0 && d <= 0.05 * n + 0.1)}' "$tmp/err"
}

bench "$tmp/a.csv" ""
[ -s "$tmp/a.csv" ] || fail "no CSV at GRETA_KERNEL_TRACE"
rows=$(($(wc -l <"$tmp/a.csv") - 1))
[ "$(head -1 "$tmp/a.csv")" = "start_ns,end_ns,grid,block,name" ] || fail "CSV header"
[ "$rows" -gt 20 ] || fail "only $rows kernels recorded"
bad=$(awk -F, 'NR > 1 && !($1 + 0 < $2 + 0 && $3 > 0 && $4 > 0)' "$tmp/a.csv" | wc -l)
[ "$bad" -eq 0 ] || fail "$bad rows without start < end and a grid"
[ "$(counted)" = "$rows" ] || fail "table counts $(counted) kernels, the CSV has $rows"
grep -q "rmsnorm" "$tmp/a.csv" || fail "no RMSNorm kernel in the trace"
excl_ok || { cat "$tmp/err"; fail "the exclusive times do not add up to the span"; }
echo "[       OK ] trace: $rows kernels"

bench "$tmp/b.csv" 10
rows_b=$(($(wc -l <"$tmp/b.csv") - 1))
[ "$(counted)" = "$((rows_b - 10))" ] || fail "GRETA_KERNEL_TRACE_SKIP=10: table counts $(counted) of $rows_b"
echo "[       OK ] skip: $(counted) of $rows_b kernels in the table"

(cd "$tmp" && bench "" "")
[ -z "$(find "$tmp" -name '*.csv' ! -name a.csv ! -name b.csv)" ] || fail "a CSV without GRETA_KERNEL_TRACE"
grep -q "^kernel-trace: " "$tmp/err" || fail "no table without a CSV"
echo "[       OK ] no file without GRETA_KERNEL_TRACE"
