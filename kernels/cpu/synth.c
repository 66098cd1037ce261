/* synth.c - synthetic quantized Llama models (see synth.h). */
#include "synth.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/gguf.h"
#include "kernels/quant.h"
#include "quantize.h"
#include "threads.h"

/* Output bytes generated per step (split over the threads). */
#define CHUNK_BYTES (32u << 20)

static const greta_synth_preset presets[] = {
    /* name         dim   layers heads kv  ffn    ctx   rope     eps */
    {"llama2-7b", 4096, 32, 32, 32, 11008, 4096, 10000.0f, 1e-5f},
    {"llama2-13b", 5120, 40, 40, 40, 13824, 4096, 10000.0f, 1e-5f},
    {"llama2-70b", 8192, 80, 64, 8, 28672, 4096, 10000.0f, 1e-5f},
    {"tiny", 256, 2, 4, 2, 768, 512, 10000.0f, 1e-5f},
    {"small", 512, 4, 8, 2, 1536, 1024, 10000.0f, 1e-5f},
};

const greta_synth_preset *greta_synth_preset_find(const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, name) == 0)
            return &presets[i];
    return NULL;
}

const greta_synth_preset *greta_synth_preset_at(unsigned i)
{
    return i < sizeof presets / sizeof presets[0] ? &presets[i] : NULL;
}

/* ---- counter-based random bits ------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ull

uint64_t greta_synth_tensor_key(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

/* Word i of block b's stream: mix64(key_b + (i + 1) * GOLDEN), where
 * key_b = mix64(seed * GOLDEN ^ mix64(tensor_key ^ mix64(b * GOLDEN))). */
typedef struct rng {
    uint64_t key, ctr;
} rng;

static rng rng_block(uint64_t seed, uint64_t tensor_key, uint64_t block)
{
    rng r = {mix64((seed * GOLDEN) ^ mix64(tensor_key ^ mix64(block * GOLDEN))), 0};
    return r;
}

static uint64_t rng_next(rng *r)
{
    return mix64(r->key + ++r->ctr * GOLDEN);
}

/* n (a multiple of 32) codes a - b, a and b uniform k-bit integers, so
 * -(2^k - 1) .. 2^k - 1, triangular around 0. A group of 32 that came out
 * all zero gets +1 as its first code. */
static void gen_codes(rng *r, int k, int n, int16_t *c)
{
    const int mask = (1 << k) - 1;
    if (k <= 4) {
        for (int i = 0; i < n; i += 8) {
            uint64_t v = rng_next(r);
            for (int j = 0; j < 8; j++, v >>= 8)
                c[i + j] = (int16_t)((int)(v & (uint64_t)mask) - (int)((v >> 4) & (uint64_t)mask));
        }
    } else {
        for (int i = 0; i < n; i += 4) {
            uint64_t v = rng_next(r);
            for (int j = 0; j < 4; j++, v >>= 16)
                c[i + j] = (int16_t)((int)(v & (uint64_t)mask) - (int)((v >> 8) & (uint64_t)mask));
        }
    }
    for (int g = 0; g < n; g += 32) {
        int any = 0;
        for (int j = 0; j < 32; j++)
            any |= c[g + j];
        if (!any)
            c[g] = 1;
    }
}

/* ---- calibration ---------------------------------------------------------------- */

/* Variance of a - b for uniform k-bit a, b: 2 (4^k - 1) / 12. */
static double code_var(int k)
{
    return 2.0 * ((double)(1u << (2 * k)) - 1.0) / 12.0;
}

/* Jitter of the block scale: f = 0.75 + 0.5 u / 255 for a random byte u. */
static float jitter(uint8_t u)
{
    return 0.75f + 0.5f * (float)u / 255.0f;
}

static double jitter_ms(void)
{
    double s = 0.0;
    for (int u = 0; u < 256; u++)
        s += (double)jitter((uint8_t)u) * (double)jitter((uint8_t)u);
    return s / 256.0;
}

/* Mean square of an integer uniform on lo..hi. */
static double uniform_ms(int lo, int hi)
{
    double s = 0.0;
    for (int v = lo; v <= hi; v++)
        s += (double)v * v;
    return s / (double)(hi - lo + 1);
}

/* Base d so that std(d * f * sc * code) = GRETA_SYNTH_STD. */
static float base_scale(int k, double sc_ms)
{
    return (float)(GRETA_SYNTH_STD / sqrt(code_var(k) * jitter_ms() * sc_ms));
}

/* Sub-block scale ranges. */
#define KS_LO 32 /* Q4_K / Q5_K 6-bit scales 32..63 */
#define KS_HI 63
#define S6_LO 64 /* Q6_K int8 scales 64..127 */
#define S6_HI 127

typedef struct calib {
    float q8_0, q4_0, q4_K, q5_K, q6_K;
} calib;

static calib calibrate(void)
{
    calib c;
    c.q8_0 = base_scale(7, 1.0);
    c.q4_0 = base_scale(3, 1.0);
    c.q4_K = base_scale(3, uniform_ms(KS_LO, KS_HI));
    c.q5_K = base_scale(4, uniform_ms(KS_LO, KS_HI));
    c.q6_K = base_scale(5, uniform_ms(S6_LO, S6_HI));
    return c;
}

/* ---- block generators ------------------------------------------------------------ */

static void gen_k_scales(rng *r, uint8_t sc[8])
{
    uint64_t v = rng_next(r);
    for (int j = 0; j < 8; j++, v >>= 8)
        sc[j] = (uint8_t)(KS_LO + (int)(v % (KS_HI - KS_LO + 1)));
}

static void gen_block(uint32_t type, const calib *cal, rng *r, uint8_t *out)
{
    int16_t c[QK_K];
    uint8_t L[QK_K];
    const uint8_t u = (uint8_t)rng_next(r);
    switch (type) {
    case GGML_TYPE_Q8_0: {
        block_q8_0 *b = (block_q8_0 *)out;
        b->d = greta_f32_to_fp16(cal->q8_0 * jitter(u));
        gen_codes(r, 7, QK8_0, c);
        for (int j = 0; j < QK8_0; j++)
            b->qs[j] = (int8_t)c[j];
        break;
    }
    case GGML_TYPE_Q4_0: {
        block_q4_0 *b = (block_q4_0 *)out;
        b->d = greta_f32_to_fp16(cal->q4_0 * jitter(u));
        gen_codes(r, 3, QK4_0, c);
        for (int j = 0; j < QK4_0 / 2; j++)
            b->qs[j] = (uint8_t)((c[j] + 8) | ((c[j + QK4_0 / 2] + 8) << 4));
        break;
    }
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K: {
        /* value = d sc (code) - dmin m with dmin = centre * d and m = sc:
         * d sc (code - centre), centre the middle code (7 or 15). */
        const int q5 = type == GGML_TYPE_Q5_K;
        const int centre = q5 ? 15 : 7;
        const greta_fp16 d = greta_f32_to_fp16((q5 ? cal->q5_K : cal->q4_K) * jitter(u));
        const greta_fp16 dmin = greta_f32_to_fp16((float)centre * greta_fp16_to_f32(d));
        uint8_t sc[8];
        gen_k_scales(r, sc);
        gen_codes(r, q5 ? 4 : 3, QK_K, c);
        for (int j = 0; j < QK_K; j++)
            L[j] = (uint8_t)(c[j] + centre);
        if (q5) {
            block_q5_K *b = (block_q5_K *)out;
            b->d = d;
            b->dmin = dmin;
            greta_pack_k_scales(sc, sc, b->scales);
            greta_pack_q5_K_codes(L, b->qh, b->qs);
        } else {
            block_q4_K *b = (block_q4_K *)out;
            b->d = d;
            b->dmin = dmin;
            greta_pack_k_scales(sc, sc, b->scales);
            greta_pack_q4_K_codes(L, b->qs);
        }
        break;
    }
    case GGML_TYPE_Q6_K: {
        block_q6_K *b = (block_q6_K *)out;
        b->d = greta_f32_to_fp16(cal->q6_K * jitter(u));
        uint64_t v = rng_next(r);
        for (int j = 0; j < 16; j++) {
            if (j == 8)
                v = rng_next(r);
            b->scales[j] = (int8_t)(S6_LO + (int)((v & 0xff) % (S6_HI - S6_LO + 1)));
            v >>= 8;
        }
        gen_codes(r, 5, QK_K, c);
        for (int j = 0; j < QK_K; j++)
            L[j] = (uint8_t)(c[j] + 32);
        greta_pack_q6_K_codes(L, b->ql, b->qh);
        break;
    }
    default:
        break;
    }
}

static bool synth_type_ok(uint32_t type)
{
    return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_K ||
           type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q6_K;
}

int greta_synth_blocks(uint32_t type, uint64_t seed, uint64_t tensor_key, uint64_t first_block,
                       uint64_t n_blocks, void *out)
{
    if (!synth_type_ok(type))
        return GRETA_ERR_UNSUPPORTED;
    const calib cal = calibrate();
    const uint32_t bb = ggml_type_block_bytes(type);
    uint8_t *p = out;
    for (uint64_t i = 0; i < n_blocks; i++) {
        rng r = rng_block(seed, tensor_key, first_block + i);
        gen_block(type, &cal, &r, p + i * bb);
    }
    return 0;
}

/* ---- the model ------------------------------------------------------------------ */

typedef struct stensor {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];
    uint32_t type;
} stensor;

typedef struct sjob {
    uint32_t type;
    uint64_t seed, key, first;
    uint8_t *out;
} sjob;

static void synth_range(void *ctx, int64_t begin, int64_t end, int thread)
{
    const sjob *j = ctx;
    const uint32_t bb = ggml_type_block_bytes(j->type);
    greta_synth_blocks(j->type, j->seed, j->key, j->first + (uint64_t)begin, (uint64_t)(end - begin),
                       j->out + (uint64_t)begin * bb);
}

static void add(stensor *t, size_t *n, const char *name, uint64_t ne0, uint64_t ne1)
{
    stensor *s = &t[(*n)++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->n_dims = ne1 ? 2 : 1;
    s->ne[0] = ne0;
    s->ne[1] = ne1 ? ne1 : 1;
}

/* The tensor list in file order; returns the count (t has 9 n_layers + 4 slots). */
static size_t layout_tensors(const greta_synth_preset *p, uint32_t vocab, stensor *t)
{
    const uint64_t dim = p->dim, kv = (uint64_t)p->dim / p->n_heads * p->n_kv_heads, ffn = p->ffn_dim;
    size_t n = 0;
    char name[64];
    add(t, &n, "token_embd.weight", dim, vocab);
    for (uint32_t l = 0; l < p->n_layers; l++) {
#define LAYER(suffix, a, b)                                         \
    snprintf(name, sizeof name, "blk.%u." suffix ".weight", l);     \
    add(t, &n, name, a, b)
        LAYER("attn_norm", dim, 0);
        LAYER("attn_q", dim, dim);
        LAYER("attn_k", dim, kv);
        LAYER("attn_v", dim, kv);
        LAYER("attn_output", dim, dim);
        LAYER("ffn_norm", dim, 0);
        LAYER("ffn_gate", dim, ffn);
        LAYER("ffn_up", dim, ffn);
        LAYER("ffn_down", ffn, dim);
#undef LAYER
    }
    add(t, &n, "output_norm.weight", dim, 0);
    add(t, &n, "output.weight", dim, vocab);
    return n;
}

static int writer_fail(gguf_writer *w, greta_error *err)
{
    const greta_error *we = gguf_writer_error(w);
    return greta_error_set(err, we->code ? we->code : GRETA_ERR_INVALID, "synth: %s", we->msg);
}

static int set_metadata(gguf_writer *w, const greta_synth_opts *o, const gguf_file *voc,
                        uint32_t vocab, greta_error *err)
{
    const greta_synth_preset *p = o->preset;
    char name[96];
    snprintf(name, sizeof name, "greta-synth %s %s", p->name, o->ftype->name);
    int bad = 0;
    bad |= gguf_writer_set_str(w, "general.architecture", "llama");
    bad |= gguf_writer_set_str(w, "general.name", name);
    bad |= gguf_writer_set_u32(w, "general.file_type", o->ftype->file_type);
    bad |= gguf_writer_set_u32(w, "general.quantization_version", 2);
    bad |= gguf_writer_set_u64(w, "greta.synth.seed", o->seed);
    bad |= gguf_writer_set_u32(w, "llama.vocab_size", vocab);
    bad |= gguf_writer_set_u32(w, "llama.context_length", p->context);
    bad |= gguf_writer_set_u32(w, "llama.embedding_length", p->dim);
    bad |= gguf_writer_set_u32(w, "llama.block_count", p->n_layers);
    bad |= gguf_writer_set_u32(w, "llama.feed_forward_length", p->ffn_dim);
    bad |= gguf_writer_set_u32(w, "llama.attention.head_count", p->n_heads);
    bad |= gguf_writer_set_u32(w, "llama.attention.head_count_kv", p->n_kv_heads);
    bad |= gguf_writer_set_u32(w, "llama.rope.dimension_count", p->dim / p->n_heads);
    bad |= gguf_writer_set_f32(w, "llama.rope.freq_base", p->rope_base);
    bad |= gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", p->rms_eps);
    if (bad)
        return writer_fail(w, err);
    for (uint64_t i = 0; i < gguf_n_kv(voc); i++) {
        const gguf_kv *kv = gguf_kv_at(voc, i);
        if (strncmp(kv->key, "tokenizer.", 10) == 0 && gguf_writer_copy_kv(w, kv) != 0)
            return writer_fail(w, err);
    }
    return 0;
}

static int write_tensor(gguf_writer *w, greta_threadpool *pool, const stensor *t, uint64_t seed,
                        uint8_t *buf, greta_error *err)
{
    if (t->type == GGML_TYPE_F32) { /* norms: exactly 1.0 */
        float *v = (float *)buf;
        for (uint64_t i = 0; i < t->ne[0]; i++)
            v[i] = 1.0f;
        return gguf_writer_write_data(w, v, t->ne[0] * sizeof(float), err);
    }
    const uint32_t bb = ggml_type_block_bytes(t->type);
    const uint64_t nb = t->ne[0] * t->ne[1] / ggml_type_block_elems(t->type);
    const uint64_t chunk = CHUNK_BYTES / bb;
    sjob j = {.type = t->type, .seed = seed, .key = greta_synth_tensor_key(t->name), .out = buf};
    for (uint64_t b = 0; b < nb; b += chunk) {
        const uint64_t n = nb - b < chunk ? nb - b : chunk;
        j.first = b;
        greta_threadpool_run(pool, (int64_t)n, synth_range, &j);
        int rc = gguf_writer_write_data(w, buf, n * bb, err);
        if (rc)
            return rc;
    }
    return 0;
}

int greta_synth_model(const greta_synth_opts *o, greta_synth_result *res, greta_error *err)
{
    const greta_synth_preset *p = o->preset;
    gguf_file *voc = NULL;
    gguf_writer *w = NULL;
    greta_threadpool *pool = NULL;
    stensor *t = NULL;
    uint8_t *buf = NULL;
    greta_synth_result r = {0};
    int rc = gguf_open(o->vocab_path, &voc, err);
    if (rc)
        return rc;
    const gguf_value *tokens;
    rc = gguf_get_arr(voc, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens, err);
    if (rc) {
        greta_error_prefix(err, "vocab %s", o->vocab_path);
        goto out;
    }
    if (tokens->v.arr.count == 0 || tokens->v.arr.count > UINT32_MAX / 2) {
        rc = greta_error_set(err, GRETA_ERR_FORMAT, "vocab %s: tokenizer.ggml.tokens has %" PRIu64
                             " entries", o->vocab_path, tokens->v.arr.count);
        goto out;
    }
    r.vocab_size = (uint32_t)tokens->v.arr.count;
    w = gguf_writer_create(err);
    t = calloc(9 * (size_t)p->n_layers + 4, sizeof *t);
    if (!w || !t) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "synth: out of memory");
        goto out;
    }
    rc = set_metadata(w, o, voc, r.vocab_size, err);
    if (rc)
        goto out;
    r.n_tensors = layout_tensors(p, r.vocab_size, t);
    uint64_t by_type[GGML_TYPE_COUNT] = {0};
    for (size_t i = 0; i < r.n_tensors; i++) {
        t[i].type = greta_ftype_tensor_type(o->ftype, t[i].name, t[i].n_dims, t[i].ne, p->n_layers,
                                            NULL);
        if (t[i].type != GGML_TYPE_F32 && !synth_type_ok(t[i].type)) {
            rc = greta_error_set(err, GRETA_ERR_UNSUPPORTED, "synth: tensor '%s' would be %s, which "
                                 "synth cannot generate", t[i].name, ggml_type_name(t[i].type));
            goto out;
        }
        if (gguf_writer_add_tensor(w, t[i].name, t[i].n_dims, t[i].ne, t[i].type) != 0) {
            rc = writer_fail(w, err);
            goto out;
        }
        r.n_params += t[i].ne[0] * t[i].ne[1];
        by_type[t[i].type] += t[i].ne[0] * t[i].ne[1];
    }
    r.file_size = gguf_writer_file_size(w);
    if (o->log) {
        fprintf(o->log, "synth: preset %s (dim %u, %u layers, %u heads, %u kv heads, ffn %u, ctx %u), "
                        "vocab %u from %s\n", p->name, p->dim, p->n_layers, p->n_heads, p->n_kv_heads,
                p->ffn_dim, p->context, r.vocab_size, o->vocab_path);
        fprintf(o->log, "synth: type %s, seed %" PRIu64 ", %" PRIu64 " tensors, %" PRIu64 " parameters:",
                o->ftype->name, o->seed, r.n_tensors, r.n_params);
        for (uint32_t ty = 0; ty < GGML_TYPE_COUNT; ty++)
            if (by_type[ty])
                fprintf(o->log, " %s %" PRIu64, ggml_type_name(ty), by_type[ty]);
        fprintf(o->log, "\nsynth: file size %" PRIu64 " bytes (%.3f GiB, %.2f bits per weight)%s\n",
                r.file_size, (double)r.file_size / 1073741824.0,
                (double)r.file_size * 8.0 / (double)r.n_params, o->dry_run ? " [dry run]" : "");
    }
    if (o->dry_run)
        goto done;
    rc = greta_threadpool_create(o->n_threads, &pool, err);
    if (rc)
        goto out;
    buf = malloc(CHUNK_BYTES + ggml_type_block_bytes(GGML_TYPE_Q6_K));
    if (!buf) {
        rc = greta_error_set(err, GRETA_ERR_NOMEM, "synth: out of memory");
        goto out;
    }
    rc = gguf_writer_begin(w, o->out_path, err);
    for (size_t i = 0; !rc && i < r.n_tensors; i++)
        rc = write_tensor(w, pool, &t[i], o->seed, buf, err);
    if (!rc)
        rc = gguf_writer_finish(w, err);
    if (rc)
        goto out;
done:
    if (res)
        *res = r;
out:
    free(buf);
    free(t);
    greta_threadpool_destroy(&pool);
    gguf_writer_destroy(&w);
    gguf_close(&voc);
    return rc;
}
