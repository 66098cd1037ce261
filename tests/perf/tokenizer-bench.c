/* tokenizer-bench - encoding and decoding speed of the Llama tokenizer.
 *
 * usage: greta-tokenizer-bench [-m VOCAB.gguf] [-f TEXT_FILE] [--mb N] [--runs N]
 *
 * Encodes about N MB (default 8) of English prose (TEXT_FILE, or the built-in
 * paragraphs below, repeated) in one call, on one thread, --runs times (default
 * 5) after a warm-up run, and prints MB/s (mean, min, max), then the same for
 * decoding the ids and for the streaming decoder. The default vocabulary is
 * ggml-vocab-llama-spm.gguf from the test data. Build in Release for numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/gguf.h"
#include "tokenizer.h"

static const char prose[] =
    "The old lighthouse keeper had kept a logbook for forty years, and every entry began the "
    "same way: the date, the direction of the wind, and a single sentence about the sea. Most "
    "of those sentences were plain. \"Calm, grey, a few gulls.\" \"Heavy swell from the west; "
    "the bell buoy rang all night.\" But now and then he wrote something longer, as if the "
    "water had told him a story and he wanted to keep it before it slipped away.\n\n"
    "When the harbour board finally replaced the lamp with an automatic beacon, they offered "
    "him a small pension and a cottage in the village. He accepted the pension, refused the "
    "cottage, and went on living in the tower. Nobody had the heart to argue. Children from "
    "the school walked out along the causeway on Fridays to hear him read from the logbooks, "
    "and their teacher said it was the best geography lesson she could give them.\n\n"
    "Researchers who study coastal erosion later asked to borrow the books. They discovered "
    "that his notes on the tides, the storms and the slow retreat of the cliffs were more "
    "detailed than any official record of the period. A paper published in 1998 cited him as "
    "a co-author, which amused him greatly. \"I only looked out of the window,\" he said, "
    "\"and wrote down what I saw. Isn't that what everyone is supposed to do?\"\n\n"
    "In the end the logbooks went to the county archive, forty-one volumes bound in cloth, "
    "each one a little more worn than the last. Visitors can still read them, although the "
    "handwriting becomes harder to follow in the final years. The last entry is short, like "
    "the first ones: the date, the wind from the south-east, and the words \"Clear today. "
    "You can see all the way to the islands.\"\n\n";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void report(const char *what, const double *mbs, int runs)
{
    double sum = 0, lo = mbs[0], hi = mbs[0];
    for (int i = 0; i < runs; i++) {
        sum += mbs[i];
        lo = mbs[i] < lo ? mbs[i] : lo;
        hi = mbs[i] > hi ? mbs[i] : hi;
    }
    printf("%-16s %8.2f MB/s  (min %.2f, max %.2f, %d runs)\n", what, sum / runs, lo, hi, runs);
}

int main(int argc, char **argv)
{
    const char *vocab = GRETA_SOURCE_DIR "/../shared/testdata/ggml-vocab-llama-spm.gguf";
    const char *file = NULL;
    double mb = 8;
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [-m VOCAB.gguf] [-f TEXT_FILE] [--mb N] [--runs N]\n", argv[0]);
            return 2;
        }
    }
    if (mb <= 0 || mb > 60 || runs < 1 || runs > 100) {
        fprintf(stderr, "tokenizer-bench: --mb must be in (0, 60], --runs in 1..100\n");
        return 2;
    }
    const char *src = prose;
    size_t src_n = sizeof prose - 1;
    char *filebuf = NULL;
    if (file) {
        FILE *fp = fopen(file, "rb");
        if (!fp) { perror(file); return 1; }
        fseek(fp, 0, SEEK_END);
        long n = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        filebuf = malloc((size_t)n + 1);
        if (!filebuf || n <= 0 || fread(filebuf, 1, (size_t)n, fp) != (size_t)n) {
            fprintf(stderr, "%s: cannot read\n", file);
            return 1;
        }
        fclose(fp);
        src = filebuf;
        src_n = (size_t)n;
    }
    size_t len = (size_t)(mb * 1e6);
    char *text = malloc(len);
    for (size_t i = 0; i < len; i += src_n)
        memcpy(text + i, src, len - i < src_n ? len - i : src_n);

    greta_error err = {0};
    gguf_file *f = NULL;
    greta_tokenizer *tok = NULL;
    if (gguf_open(vocab, &f, &err) || greta_tokenizer_create_from_gguf(f, &tok, &err)) {
        fprintf(stderr, "tokenizer-bench: %s\n", err.msg);
        return 1;
    }
    gguf_close(&f);
    size_t max = greta_tokenizer_max_tokens(len);
    int32_t *ids = malloc(max * sizeof *ids);
    char *dec = malloc(len + 1);
    size_t room = greta_detok_max_out(tok);
    char *piece = malloc(room);
    double *enc_mbs = calloc((size_t)runs, sizeof(double));
    double *dec_mbs = calloc((size_t)runs, sizeof(double));
    double *str_mbs = calloc((size_t)runs, sizeof(double));
    size_t n = 0;
    for (int r = -1; r < runs; r++) {
        double t0 = now();
        if (greta_tokenizer_encode(tok, text, len, 0, ids, max, &n, &err)) {
            fprintf(stderr, "encode: %s\n", err.msg);
            return 1;
        }
        double t1 = now();
        size_t dn;
        if (greta_tokenizer_decode(tok, ids, n, 0, dec, len + 1, &dn, &err) || dn != len ||
            memcmp(dec, text, len) != 0) {
            fprintf(stderr, "decode does not give the text back: %s\n", err.msg);
            return 1;
        }
        double t2 = now();
        greta_detok_state st;
        greta_detok_init(&st, 0);
        size_t total = 0, k;
        for (size_t i = 0; i < n; i++) {
            greta_detok_push(tok, &st, ids[i], piece, room, &k, &err);
            total += k;
        }
        greta_detok_flush(tok, &st, piece, room, &k, &err);
        total += k;
        double t3 = now();
        if (total != len) {
            fprintf(stderr, "streaming decode wrote %zu bytes, expected %zu\n", total, len);
            return 1;
        }
        if (r >= 0) {
            enc_mbs[r] = (double)len / 1e6 / (t1 - t0);
            dec_mbs[r] = (double)len / 1e6 / (t2 - t1);
            str_mbs[r] = (double)len / 1e6 / (t3 - t2);
        }
    }
    printf("tokenizer-bench: %.2f MB of %s, %zu tokens (%.2f bytes/token), vocab %s\n",
           (double)len / 1e6, file ? file : "built-in English prose", n, (double)len / (double)n,
           vocab);
    report("encode", enc_mbs, runs);
    report("decode", dec_mbs, runs);
    report("stream decode", str_mbs, runs);
    free(enc_mbs); free(dec_mbs); free(str_mbs);
    free(piece); free(dec); free(ids); free(text); free(filebuf);
    greta_tokenizer_destroy(&tok);
    return 0;
}
