/* embed.cu - embedding lookup: rows of the token table, any weight type,
 * dequantized to fp32 (bit-identical to greta_dequant_row). */
#include "dequant.cuh"
#include "gpu_ops.h"

/* grid (n tokens), block 256: thread i decodes groups i, i+256, ... */
template <uint32_t TYPE>
__global__ void embed_kernel(const uint8_t *__restrict__ table, int64_t row_bytes, int64_t dim, int64_t n_vocab,
                             const int32_t *__restrict__ ids, float *__restrict__ out, int64_t ld_out)
{
    constexpr int G = gpu_deq<TYPE>::G;
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
                        const int32_t *ids, int32_t n, float *out, int64_t ld_out, greta_error *err)
{
    embed_kernel<TYPE><<<n, 256, 0, st>>>((const uint8_t *)table, row_bytes, dim, n_vocab, ids, out, ld_out);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

extern "C" int greta_gpu_embed(greta_gpu_stream *s, uint32_t type, const void *table, int64_t dim, int64_t n_vocab,
                               const int32_t *d_ids, int32_t n, float *out, int64_t ld_out, greta_error *err)
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
    return fn((gpu_stream_t)s, table, (int64_t)row_bytes, dim, n_vocab, d_ids, n, out, ld_out, err);
}
