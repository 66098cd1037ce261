/* embed.cu - embedding lookup: rows of the token table, any weight type,
 * dequantized to fp32 (bit-identical to greta_dequant_row). */
#include "dequant.cuh"
#include "gpu_ops.h"
#include "rope.cuh" /* gpu_rope_table_row */

/* greta_gpu_embed_rope's table (cs NULL: none) */
struct embed_rope {
    const int32_t *pos;
    int32_t rope_dim;
    float freq_base, freq_scale;
    float *cs;
};

/* grid (n tokens, + n with the rope table), block 256: thread i decodes
 * groups i, i+256, ... of token blockIdx.x; block n + t makes the rope
 * table row of token t (greta_gpu_rope_table's arithmetic) */
template <uint32_t TYPE>
__global__ void embed_kernel(const uint8_t *__restrict__ table, int64_t row_bytes, int64_t dim, int64_t n_vocab,
                             const int32_t *__restrict__ ids, int32_t n, float *__restrict__ out, int64_t ld_out,
                             const embed_rope rope)
{
    constexpr int G = gpu_deq<TYPE>::G;
    if ((int32_t)blockIdx.x >= n) {
        const int t = (int)blockIdx.x - n;
        gpu_rope_table_row(rope.pos[t], rope.rope_dim, rope.freq_base, rope.freq_scale,
                           rope.cs + (int64_t)t * rope.rope_dim, (int)threadIdx.x, (int)blockDim.x);
        return;
    }
    const int32_t id = ids[blockIdx.x];
    float *o = out + (int64_t)blockIdx.x * ld_out;
    if (id < 0 || id >= n_vocab) {
        for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
            o[i] = __int_as_float(0x7fc00000); /* NaN: the caller checks ids */
        return;
    }
    const uint8_t *row = table + (int64_t)id * row_bytes;
    for (int64_t g = threadIdx.x; g < dim / G; g += blockDim.x) {
        float w[G];
        gpu_deq<TYPE>::load(row, g * G, w);
#pragma unroll
        for (int j = 0; j < G; j++)
            o[g * G + j] = w[j];
    }
}

template <uint32_t TYPE>
static int embed_launch(gpu_stream_t st, const void *table, int64_t row_bytes, int64_t dim, int64_t n_vocab,
                        const int32_t *ids, int32_t n, float *out, int64_t ld_out, const embed_rope &rope,
                        greta_error *err)
{
    embed_kernel<TYPE><<<rope.cs ? 2 * n : n, 256, 0, st>>>((const uint8_t *)table, row_bytes, dim, n_vocab, ids, n,
                                                            out, ld_out, rope);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

static int embed_go(greta_gpu_stream *s, uint32_t type, const void *table, int64_t dim, int64_t n_vocab,
                    const int32_t *d_ids, int32_t n, float *out, int64_t ld_out, const embed_rope &rope,
                    greta_error *err)
{
    auto fn = GPU_LAUNCHER_FOR(type, embed_launch);
    if (!fn)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "embed: no GPU kernel for type %s", ggml_type_name(type));
    const uint64_t row_bytes = ggml_row_bytes(type, (uint64_t)dim);
    if (dim <= 0 || row_bytes == 0 || ld_out < dim || n < 0)
        return greta_error_set(err, GRETA_ERR_INVALID, "embed: bad shape (type %s, dim %lld, ld %lld)",
                               ggml_type_name(type), (long long)dim, (long long)ld_out);
    if (n == 0)
        return 0;
    return fn((gpu_stream_t)s, table, (int64_t)row_bytes, dim, n_vocab, d_ids, n, out, ld_out, rope, err);
}

extern "C" int greta_gpu_embed(greta_gpu_stream *s, uint32_t type, const void *table, int64_t dim, int64_t n_vocab,
                               const int32_t *d_ids, int32_t n, float *out, int64_t ld_out, greta_error *err)
{
    return embed_go(s, type, table, dim, n_vocab, d_ids, n, out, ld_out, embed_rope{}, err);
}

extern "C" int greta_gpu_embed_rope(greta_gpu_stream *s, uint32_t type, const void *table, int64_t dim,
                                    int64_t n_vocab, const int32_t *d_ids, int32_t n, float *out, int64_t ld_out,
                                    const int32_t *d_pos, int32_t rope_dim, float freq_base, float freq_scale,
                                    float *cs, greta_error *err)
{
    if (rope_dim <= 0 || rope_dim % 2 != 0 || !d_pos || !cs)
        return greta_error_set(err, GRETA_ERR_INVALID, "embed_rope: rope_dim %d must be even and positive, with "
                               "positions and a table", rope_dim);
    return embed_go(s, type, table, dim, n_vocab, d_ids, n, out, ld_out,
                    embed_rope{d_pos, rope_dim, freq_base, freq_scale, cs}, err);
}
