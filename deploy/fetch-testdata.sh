#!/usr/bin/env bash
# Downloads the public originals of GRETA CORE's test data and checks their
# sha256 against ../shared/testdata/PROVENANCE.md, for machines outside the
# development environment (which has them in ../shared/testdata already).
#
#   deploy/fetch-testdata.sh [DIR]    DIR defaults to $GRETA_TESTDATA, else ../shared/testdata
#
# The generated fixtures (quant/, llama2-corpus.*, llama2-extra.*, the JSON
# expectations) were made for this project and are not public downloads;
# tests that need them report a skip naming the missing file.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${GRETA_TESTDATA:-$here/../shared/testdata}}"
mkdir -p "$dir"

LLAMA_CPP_COMMIT=07e4351ce663a7802b31f92fd7bc0e555c2044b6
files=(
  "stories260K.gguf|https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf|270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"
  "ggml-vocab-llama-spm.gguf|https://raw.githubusercontent.com/ggml-org/llama.cpp/$LLAMA_CPP_COMMIT/models/ggml-vocab-llama-spm.gguf|16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69"
  "ggml-vocab-llama-spm.gguf.inp|https://raw.githubusercontent.com/ggml-org/llama.cpp/$LLAMA_CPP_COMMIT/models/ggml-vocab-llama-spm.gguf.inp|be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0"
  "ggml-vocab-llama-spm.gguf.out|https://raw.githubusercontent.com/ggml-org/llama.cpp/$LLAMA_CPP_COMMIT/models/ggml-vocab-llama-spm.gguf.out|ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29"
)

fail=0
for entry in "${files[@]}"; do
  IFS='|' read -r name url sum <<<"$entry"
  dest="$dir/$name"
  if [ -f "$dest" ] && echo "$sum  $dest" | sha256sum -c --status; then
    echo "ok       $name (already present)"
    continue
  fi
  if [ ! -w "$dir" ]; then
    echo "error    $name: $dir is not writable" >&2; fail=1; continue
  fi
  echo "fetching $name"
  if ! curl -fsSL --retry 3 -o "$dest.part" "$url"; then
    echo "error    $name: download from $url failed" >&2; rm -f "$dest.part"; fail=1; continue
  fi
  if echo "$sum  $dest.part" | sha256sum -c --status; then
    mv "$dest.part" "$dest"; echo "ok       $name"
  else
    echo "error    $name: sha256 mismatch (expected $sum)" >&2; rm -f "$dest.part"; fail=1
  fi
done
exit $fail
