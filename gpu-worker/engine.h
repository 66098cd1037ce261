/* engine.h - a model, a backend and the generation loop, in one handle.
 *
 * This is what `greta run --inproc`, `greta bench` and the tests share:
 *
 *   greta_engine_params ep;
 *   greta_engine_params_default(&ep);           // cpu, n_ctx from the model, ...
 *   greta_engine *e;
 *   greta_engine_open("model.gguf", &ep, &e, &err);   // plan, memory check, load
 *   greta_generate_params gp = {.prompt = ids, .n_prompt = n, .n_predict = 64,
 *                               .eos_token = 2, .on_token = print, ...};
 *   greta_gen_stats st;
 *   greta_engine_generate(e, &gp, &st, &err);
 *   greta_engine_destroy(&e);
 *
 * Memory: the whole plan (weights, KV cache, scratch, logits) is computed
 * before anything is allocated, checked against the memory available
 * (MemAvailable of /proc/meminfo unless params.mem_available says otherwise)
 * and kept for printing. Nothing is allocated per token.
 *
 * Logits: the engine owns one buffer of [n_batch][vocab] fp32 rows; the
 * pointers it hands out stay valid until the next forward call.
 */
#ifndef GRETA_ENGINE_H
#define GRETA_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "common/error.h"
#include "common/model.h"

#define GRETA_DEFAULT_MODEL "stories260K.gguf"
#define GRETA_DEFAULT_CTX_MAX 4096 /* default n_ctx = min(model context, this) */
#define GRETA_DEFAULT_BATCH 512
/* The GPU backend's default prefill chunk (n_batch), measured on an H100
 * (docs/GPU.md, issue 8): a 4096-token prompt takes 229 / 189 / 167 / 163 ms
 * in chunks of 512 / 1024 / 2048 / 4096, while a sequence decoding beside it
 * waits one chunk (29 / 47 / 83 / 163 ms); 1024 is within 16% of the best
 * time to first token at about half the stall of 2048. */
#define GRETA_GPU_PREFILL_CHUNK 1024

typedef struct greta_engine_params {
    const char *backend;    /* "cpu" (default) or "gpu" */
    int32_t n_ctx;          /* positions per sequence; 0: min(model context, 4096) */
    int32_t n_seq;          /* sequence slots; 0: 1 */
    int32_t n_batch;        /* most tokens per forward = the prefill chunk; 0: greta_engine_prefill_chunk capped
                               at n_ctx, and at least n_seq (one decode token of every sequence) */
    int32_t n_threads;      /* 0: the CPUs this process may run on */
    int32_t cpu_isa;        /* CPU kernels, greta_cpu_isa: 0 auto, 1 ref, 2 avx2 */
    uint64_t mem_available; /* bytes the plan may use; 0: read MemAvailable */
} greta_engine_params;

void greta_engine_params_default(greta_engine_params *p);

typedef struct greta_engine greta_engine;

/* Opens the model, resolves the params, computes the memory plan, checks
 * it against the available memory (GRETA_ERR_NOMEM with the plan in the
 * message when it does not fit) and creates the backend. */
int greta_engine_open(const char *model_path, const greta_engine_params *p, greta_engine **out,
                      greta_error *err);
/* The same over an opened model; on success the engine owns it. */
int greta_engine_from_model(greta_model *m, const greta_engine_params *p, greta_engine **out,
                            greta_error *err);
void greta_engine_destroy(greta_engine **e);

/* The plan greta_engine_open would make, without allocating anything
 * (params resolved as open resolves them; *resolved may be NULL). */
int greta_engine_plan_model(const greta_model *m, const greta_engine_params *p,
                            greta_backend_params *resolved, greta_mem_plan *plan, greta_error *err);
/* Fails with a clear message when plan->total_bytes exceeds available. */
int greta_engine_plan_check(const greta_mem_plan *plan, uint64_t available, greta_error *err);
/* Writes a multi-line description of the plan to buf (always terminated). */
void greta_engine_plan_format(const greta_mem_plan *plan, const greta_backend_params *bp, char *buf,
                              size_t size);
/* MemAvailable of /proc/meminfo in bytes, or 0 when unknown. */
uint64_t greta_engine_mem_available(void);

const greta_model *greta_engine_model(const greta_engine *e);
const greta_model_config *greta_engine_config(const greta_engine *e);
const greta_mem_plan *greta_engine_plan(const greta_engine *e);
const greta_backend_params *greta_engine_backend_params(const greta_engine *e);
const char *greta_engine_backend_name(const greta_engine *e);
const char *greta_engine_backend_detail(const greta_engine *e);
/* The GPU backend's greedy lookahead since create: steps taken ahead and
 * used (hits), and taken ahead and discarded (misses); 0 and 0 for other
 * backends (greta_gpu_backend_lookahead). */
void greta_engine_lookahead(const greta_engine *e, uint64_t *hits, uint64_t *misses);
/* The engine's backend (for backend-specific tools: greta bench --profile). */
greta_backend *greta_engine_backend(greta_engine *e);
/* Seconds greta_engine_open took (model open + backend create). */
double greta_engine_load_seconds(const greta_engine *e);

/* ---- one step at a time --------------------------------------------------- */

/* Runs a batch (backend.h rules); *logits points at the first of the
 * returned rows (vocab floats each, in batch order) inside the engine. */
int greta_engine_forward(greta_engine *e, const greta_batch *batch, const float **logits,
                         greta_error *err);
/* 1 when the backend reduces logits to the top-k on its own
 * (backend.h forward_topk), 0 when it has no such op. */
int greta_engine_has_forward_topk(const greta_engine *e);
/* Runs a batch like greta_engine_forward but returns per requested row the
 * k best tokens and the log-sum-exp of the row (backend.h forward_topk:
 * ids[rows*k], vals[rows*k], lse[rows]). GRETA_ERR_UNSUPPORTED (nothing
 * run) when the backend has no forward_topk. */
int greta_engine_forward_topk(greta_engine *e, const greta_batch *batch, int32_t k, int32_t *ids, float *vals,
                              float *lse, greta_error *err);
/* The default prefill chunk (n_batch when the params give 0) for a backend
 * name ("cpu", "gpu"; NULL = cpu): the environment variable
 * GRETA_PREFILL_CHUNK (1..65535 tokens) when set, else GRETA_GPU_PREFILL_CHUNK
 * for "gpu" and GRETA_DEFAULT_BATCH otherwise. A bad value:
 * GRETA_ERR_INVALID naming the variable. */
int greta_engine_prefill_chunk(const char *backend, int32_t *chunk, greta_error *err);
/* Feeds tokens[0..n) to sequence seq at its next positions, in chunks of
 * n_batch; *logits = the logits after the last token. */
int greta_engine_prefill(greta_engine *e, int32_t seq, const int32_t *tokens, int32_t n,
                         const float **logits, greta_error *err);
/* Forgets everything of sequence seq. */
int greta_engine_seq_clear(greta_engine *e, int32_t seq, greta_error *err);
/* Positions held by sequence seq. */
int32_t greta_engine_seq_len(const greta_engine *e, int32_t seq);

/* ---- the generation loop ---------------------------------------------------- */

/* Picks the next token from logits[n_vocab]; history[n_history] is the
 * sequence so far (prompt, then generated tokens). Returns 0 or a status. */
typedef int (*greta_sample_fn)(void *ctx, const float *logits, int32_t n_vocab,
                               const int32_t *history, int32_t n_history, int32_t *token,
                               greta_error *err);
/* Receives each generated token (streaming). Nonzero return stops generation. */
typedef int (*greta_token_fn)(void *ctx, int32_t token);

typedef struct greta_generate_params {
    int32_t seq;            /* sequence slot; cleared first */
    const int32_t *prompt;  /* [n_prompt] token ids (BOS included when wanted) */
    int32_t n_prompt;       /* >= 1 */
    int32_t n_predict;      /* tokens to generate, >= 0 */
    int32_t eos_token;      /* stop when sampled (not passed on); -1: never */
    greta_sample_fn sample; /* NULL: greedy (greta_cpu_argmax: lowest id wins ties) */
    void *sample_ctx;
    greta_token_fn on_token; /* may be NULL */
    void *token_ctx;
    double *step_seconds;   /* [n_predict] or NULL: seconds of each generated token
                               (index 0: prefill + sampling, then forward + sampling) */
    int32_t *tokens_out;    /* [n_predict] or NULL: the generated ids */
} greta_generate_params;

typedef enum greta_stop_reason {
    GRETA_STOP_LENGTH = 0,   /* n_predict tokens generated */
    GRETA_STOP_EOS = 1,      /* eos_token sampled */
    GRETA_STOP_CALLBACK = 2, /* on_token asked to stop */
    GRETA_STOP_CONTEXT = 3,  /* the sequence filled n_ctx */
} greta_stop_reason;

typedef struct greta_gen_stats {
    int32_t n_prompt;     /* prompt tokens fed */
    int32_t n_generated;  /* tokens sampled and passed on (eos excluded) */
    int32_t n_decode;     /* forward passes after the prefill */
    double prompt_s;      /* prefill, up to its logits */
    double ttft_s;        /* start to the first sampled token */
    double decode_s;      /* decode forward passes and their sampling */
    double total_s;
    greta_stop_reason stop;
} greta_gen_stats;

int greta_engine_generate(greta_engine *e, const greta_generate_params *gp, greta_gen_stats *st,
                          greta_error *err);

/* ---- default model ------------------------------------------------------------- */

/* Finds GRETA_DEFAULT_MODEL in $GRETA_MODEL_DIR (default ~/.cache/greta/models),
 * then in the test data folder ($GRETA_TESTDATA, else <repo>/../shared/testdata).
 * When it is nowhere, the error names both places and deploy/fetch-testdata.sh. */
int greta_engine_default_model(char *path, size_t size, greta_error *err);

/* Monotonic clock in seconds. */
double greta_now_s(void);

#endif
