#!/bin/sh
# synth-7b.sh - benchmark: writes the headline benchmark model (Llama-2-7B
# shapes, Q4_K_M mix, real Llama-2 vocabulary; docs/BENCH.md) with
# `greta synth` and prints the wall time and the file size. Not a ctest.
#
#   tests/perf/synth-7b.sh OUT.gguf [GRETA_BINARY [THREADS]]
#
# GRETA_BINARY defaults to build/bin/greta, THREADS to all cores. The
# vocabulary is ggml-vocab-llama-spm.gguf from $GRETA_TESTDATA (default
# ../shared/testdata beside the repository), as for the tests.
set -eu
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 OUT.gguf [GRETA_BINARY [THREADS]]" >&2
    exit 2
fi
out=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
greta=${2:-$root/build/bin/greta}
threads=${3:-$(nproc)}
vocab=${GRETA_TESTDATA:-$root/../shared/testdata}/ggml-vocab-llama-spm.gguf
[ -x "$greta" ] || { echo "$0: no greta binary at $greta" >&2; exit 1; }
[ -r "$vocab" ] || { echo "$0: vocab $vocab not found (set GRETA_TESTDATA)" >&2; exit 1; }

start=$(date +%s.%N)
"$greta" synth --preset llama2-7b --type Q4_K_M --vocab "$vocab" -o "$out" -t "$threads"
end=$(date +%s.%N)
size=$(stat -c %s "$out")
awk -v s="$start" -v e="$end" -v b="$size" -v t="$threads" 'BEGIN {
    secs = e - s
    printf "synth-7b: %.0f bytes (%.3f GiB) in %.2f s with %d threads: %.0f MB/s\n",
           b, b / 1073741824, secs, t, b / 1e6 / secs
}'
