#!/usr/bin/env bash
# test_cmd_tokenize.sh GRETA_BINARY - runs `greta tokenize` on a few strings
# with the Llama-2 vocabulary and checks ids, pieces, JSON, --special,
# --no-bos, stdin, --decode, and the exit status of bad usage.
# Exit 77 (skip) when the test data is missing, unless GRETA_REQUIRE_TESTDATA=1.
set -u
greta="$1"
data="${GRETA_TESTDATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/testdata}"
vocab="$data/ggml-vocab-llama-spm.gguf"
stories="$data/stories260K.gguf"
if [ ! -r "$vocab" ] || [ ! -r "$stories" ]; then
  if [ "${GRETA_REQUIRE_TESTDATA:-0}" = 1 ]; then
    echo "FAIL: test data missing in $data (GRETA_REQUIRE_TESTDATA=1)"; exit 1
  fi
  echo "SKIP: test data missing in $data"; exit 77
fi
fails=0
check() { # name expected actual
  if [ "$2" == "$3" ]; then echo "ok   $1"; else
    echo "FAIL $1"; echo "  expected: $(printf %q "$2")"; echo "  actual:   $(printf %q "$3")"; fails=$((fails + 1)); fi
}
status() { # name expected-status command...
  local name="$1" want="$2"; shift 2
  "$@" >/dev/null 2>"$tmp/err"; local rc=$?
  check "$name (exit status)" "$want" "$rc"
}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

check "ids" "1 15043 3186" "$("$greta" tokenize -m "$vocab" --ids "Hello world")"
check "ids, leading space" "1 29871 15043 3186" "$("$greta" tokenize -m "$vocab" --ids " Hello world")"
check "no-bos" "15043 3186" "$("$greta" tokenize -m "$vocab" --ids --no-bos "Hello world")"
check "ids + pieces" $'1\t<s>\n15043\t\xe2\x96\x81Hello\n3186\t\xe2\x96\x81world' \
  "$("$greta" tokenize -m "$vocab" "Hello world")"
check "special off" "1 529 29879 29958 10994 829 29879 29958" \
  "$("$greta" tokenize -m "$vocab" --ids "<s>Hello</s>")"
check "special on" "15043 2" "$("$greta" tokenize -m "$vocab" --ids --no-bos --special "Hello</s>")"
check "json" '{"ids": [1, 15043, 29871, 13, 12], "pieces": ["<s>", "▁Hello", "▁", "<0x0A>", "<0x09>"]}' \
  "$("$greta" tokenize -m "$vocab" --json $'Hello \n\t')"
check "stdin" "1 15043 3186 13" "$(printf 'Hello world\n' | "$greta" tokenize -m "$vocab" --ids -)"
# ids llama.cpp gave for this prompt (testdata/quant/gqa-greedy.json)
check "stories260K" "1 403 407 261 378 383 286" "$("$greta" tokenize -m "$stories" --ids "Once upon a time there was")"
check "decode" "Hello world" "$("$greta" tokenize -m "$vocab" --decode 1 15043 3186)"
check "decode special" "<s> Hello world</s>" "$("$greta" tokenize -m "$vocab" --decode --special 1 15043 3186 2)"
check "decode json" '{"text": "Hello\n world"}' "$("$greta" tokenize -m "$vocab" --decode --json 15043 13 3186)"
check "decode emoji bytes" "🦙" "$("$greta" tokenize -m "$vocab" --decode 29871 243 162 169 156)"

status "decode bad id" 1 "$greta" tokenize -m "$vocab" --decode 15043 32000
check "decode bad id message" "greta tokenize: '32000' is not a token id (0..31999)" "$(cat "$tmp/err")"
status "no model" 2 "$greta" tokenize "Hello"
status "two texts" 2 "$greta" tokenize -m "$vocab" a b
status "unknown option" 2 "$greta" tokenize -m "$vocab" --frobnicate a
status "missing file" 1 "$greta" tokenize -m "$tmp/none.gguf" a
status "not a tokenizer file" 1 "$greta" tokenize -m "$0" a
status "help" 0 "$greta" tokenize --help
head -c $((16 * 1024 * 1024 + 1)) /dev/zero | tr '\0' a > "$tmp/big"
"$greta" tokenize -m "$stories" --ids - < "$tmp/big" >/dev/null 2>"$tmp/err"
check "input over the limit (exit status)" 1 "$?"
check "input over the limit message" "greta tokenize: stdin has more than 16777216 bytes, the tokenizer's input limit" "$(cat "$tmp/err")"

if [ "$fails" -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all checks passed"
