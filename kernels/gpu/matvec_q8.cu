/* matvec_q8.cu - decode products over int8-quantized activations
 * (decode_ops.h): quantize, RMSNorm + quantize, and the K-quant GEMV with
 * integer dot products.
 *
 * GEMV: one warp per weight row (rows spread over the grid's warps; the host
 * sizes the grid for 32-wide warps, 64-wide warps loop). Lane l takes units
 * l, l + GRETA_WARP, ...:
 *   Q4_K  32 values: 16 bytes of qs (one 16-byte load) = 16 low nibbles of
 *         sub-block 2c and 16 high nibbles of sub-block 2c + 1; against 2 x 16
 *         bytes of q8: 8 dp4a, then d*sc*dx*sum - dmin*m*sum(x) (the min term
 *         once per sub-block, by the lane with h == 0).
 *   Q6_K  64 values: ql (2 x 16 bytes) and qh (16 bytes), read as aligned
 *         32-bit words and funnel-shifted (210-byte blocks are 2-byte
 *         aligned); 4 quarters of 16 with their own int8 scale:
 *         d*sc*dx*(dot(code, q) - 32*sum(q)).
 * The warp sums its lanes in fp32.
 */
#include "decode_ops.h"
#include "gpu_port.h"
#include "kernels/quant.h"
#include "vdot.cuh" /* kscales_pair */

#define MVQ_BLOCK 256
#define MVQ_NT 4
#define MVQ_MAX_MATS 3

/* a . b over 4 signed bytes, plus c */
__device__ inline int gpu_dp4a(int a, int b, int c)
{
#if defined(GRETA_GPU_HIP)
#if defined(__gfx90a__) || defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__) || defined(__gfx908__)
    return __builtin_amdgcn_sdot4(a, b, c, false);
#else
    for (int i = 0; i < 4; i++)
        c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
#endif
#else
    return __dp4a(a, b, c);
#endif
}

/* Reductions over aligned groups of 32 (or 16) lanes: the same on 32- and
 * 64-wide warps. */
__device__ inline float sum32(float v)
{
#pragma unroll
    for (int m = 16; m > 0; m >>= 1)
        v += gpu_shfl_xor(v, m);
    return v;
}
__device__ inline float max32(float v)
{
#pragma unroll
    for (int m = 16; m > 0; m >>= 1)
        v = fmaxf(v, gpu_shfl_xor(v, m));
    return v;
}
__device__ inline int isum16(int v)
{
#pragma unroll
    for (int m = 8; m > 0; m >>= 1)
        v += gpu_shfl_xor(v, m);
    return v;
}

/* q8 row of k values: offsets of its parts (decode_ops.h). */
__host__ __device__ inline int64_t q8_row_bytes(int64_t k) { return k + k / 4 + k / 4; }

/* 32 lanes (l32 = 0..31) hold the values of block blk of one token row. */
__device__ inline void q8_store_block(float v, int l32, uint8_t *row, int64_t k, int64_t blk)
{
    const float amax = max32(fabsf(v));
    const float s = sum32(v);
    const float d = amax / 127.0f;
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    const int q = __float2int_rn(v * id);
    ((int8_t *)row)[blk * 32 + l32] = (int8_t)q;
    const int t = isum16(q);
    if (l32 == 0) {
        ((float *)(row + k))[blk] = d;
        ((float *)(row + k + k / 8))[blk] = s;
    }
    if ((l32 & 15) == 0)
        ((int32_t *)(row + k + k / 4))[2 * blk + l32 / 16] = t;
}

/* grid (k / 256, n_tok), block 256 */
__global__ void __launch_bounds__(256) quantize_q8_kernel(const float *__restrict__ x, int64_t ld_x, int64_t k,
                                                          uint8_t *__restrict__ q8)
{
    const int64_t i = (int64_t)blockIdx.x * 256 + threadIdx.x;
    const int t = blockIdx.y;
    q8_store_block(x[t * ld_x + i], (int)(i & 31), q8 + t * q8_row_bytes(k), k, i >> 5);
}

/* grid (n_tok), block 256: greta_gpu_rmsnorm's arithmetic, then quantize. */
__global__ void __launch_bounds__(256) rmsnorm_q8_kernel(const float *__restrict__ x, int64_t ld_x,
                                                         const float *__restrict__ w, float *out, int64_t ld_out,
                                                         int64_t n, float eps, uint8_t *__restrict__ q8)
{
    __shared__ float scratch[GPU_MAX_WARPS];
    const float *xr = x + (int64_t)blockIdx.x * ld_x;
    float *o = out + (int64_t)blockIdx.x * ld_out;
    uint8_t *qr = q8 + (int64_t)blockIdx.x * q8_row_bytes(n);
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        ss += xr[i] * xr[i];
    ss = gpu_block_sum(ss, scratch);
    const float mean = ss / (float)n;
    const float r = 1.0f / sqrtf(mean + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) { /* n % 256 == 0: every lane takes each turn */
        const float v = (xr[i] * r) * w[i];
        o[i] = v;
        q8_store_block(v, (int)(i & 31), qr, n, i >> 5);
    }
}

struct q8_view {
    const uint8_t *base;
    int64_t stride, k;
};

template <int NT>
__device__ inline void q4k_unit(const uint8_t *row, int64_t u, const q8_view &x, float *acc)
{
    const block_q4_K *b = (const block_q4_K *)(row + (u >> 3) * sizeof(block_q4_K));
    const int c = (int)(u >> 1) & 3, h = (int)u & 1;
    const uint4 q = *(const uint4 *)(b->qs + 32 * c + 16 * h);
    const uint32_t hd = *(const uint32_t *)b;
    uint8_t sc[K_SCALE_SIZE];
    *(uint32_t *)&sc[0] = *(const uint32_t *)&b->scales[0];
    *(uint32_t *)&sc[4] = *(const uint32_t *)&b->scales[4];
    *(uint32_t *)&sc[8] = *(const uint32_t *)&b->scales[8];
    uint8_t s1, m1, s2, m2;
    kscales_pair(c, sc, &s1, &m1, &s2, &m2);
    const float d = gpu_half_to_float((uint16_t)(hd & 0xffffu)), dmin = gpu_half_to_float((uint16_t)(hd >> 16));
    const float d1 = d * (float)s1, d2 = d * (float)s2;
    const float mm1 = h == 0 ? dmin * (float)m1 : 0.0f, mm2 = h == 0 ? dmin * (float)m2 : 0.0f;
    const int64_t e = (u >> 3) * QK_K + 64 * c + 16 * h, blk = (u >> 3) * 8 + 2 * c;
    const int lo0 = (int)(q.x & 0x0f0f0f0fu), lo1 = (int)(q.y & 0x0f0f0f0fu), lo2 = (int)(q.z & 0x0f0f0f0fu),
              lo3 = (int)(q.w & 0x0f0f0f0fu);
    const int hi0 = (int)((q.x >> 4) & 0x0f0f0f0fu), hi1 = (int)((q.y >> 4) & 0x0f0f0f0fu),
              hi2 = (int)((q.z >> 4) & 0x0f0f0f0fu), hi3 = (int)((q.w >> 4) & 0x0f0f0f0fu);
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const uint8_t *xr = x.base + t * x.stride;
        const int4 xa = *(const int4 *)(xr + e), xb = *(const int4 *)(xr + e + 32);
        int sa = gpu_dp4a(lo0, xa.x, 0);
        sa = gpu_dp4a(lo1, xa.y, sa);
        sa = gpu_dp4a(lo2, xa.z, sa);
        sa = gpu_dp4a(lo3, xa.w, sa);
        int sb = gpu_dp4a(hi0, xb.x, 0);
        sb = gpu_dp4a(hi1, xb.y, sb);
        sb = gpu_dp4a(hi2, xb.z, sb);
        sb = gpu_dp4a(hi3, xb.w, sb);
        const float *xd = (const float *)(xr + x.k), *xs = (const float *)(xr + x.k + x.k / 8);
        acc[t] += (d1 * xd[blk] * (float)sa + d2 * xd[blk + 1] * (float)sb) - (mm1 * xs[blk] + mm2 * xs[blk + 1]);
    }
}

template <int NT>
__device__ inline void q6k_unit(const uint8_t *row, int64_t u, const q8_view &x, float *acc)
{
    const block_q6_K *b = (const block_q6_K *)(row + (u >> 2) * sizeof(block_q6_K));
    const int h = (int)(u >> 1) & 1, g = (int)u & 1;
    uint32_t la[4], lb[4], qh[4];
    vdot_load16_a2w(b->ql + 64 * h + 16 * g, la);
    vdot_load16_a2w(b->ql + 64 * h + 32 + 16 * g, lb);
    vdot_load16_a2w(b->qh + 32 * h + 16 * g, qh);
    const float d = gpu_half_to_float(*(const uint16_t *)&b->d);
    float ds[4];
#pragma unroll
    for (int q = 0; q < 4; q++)
        ds[q] = d * (float)b->scales[8 * h + g + 2 * q];
    int code[4][4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        code[0][j] = (int)((la[j] & 0x0f0f0f0fu) | ((qh[j] & 0x03030303u) << 4));
        code[1][j] = (int)((lb[j] & 0x0f0f0f0fu) | (((qh[j] >> 2) & 0x03030303u) << 4));
        code[2][j] = (int)(((la[j] >> 4) & 0x0f0f0f0fu) | (((qh[j] >> 4) & 0x03030303u) << 4));
        code[3][j] = (int)(((lb[j] >> 4) & 0x0f0f0f0fu) | (((qh[j] >> 6) & 0x03030303u) << 4));
    }
    const int64_t e = (u >> 2) * QK_K + 128 * h + 16 * g;
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const uint8_t *xr = x.base + t * x.stride;
        const float *xd = (const float *)(xr + x.k);
        const int32_t *xt = (const int32_t *)(xr + x.k + x.k / 4);
        float r = 0.0f;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const int64_t eq = e + 32 * q;
            const int4 xv = *(const int4 *)(xr + eq);
            int s = gpu_dp4a(code[q][0], xv.x, 0);
            s = gpu_dp4a(code[q][1], xv.y, s);
            s = gpu_dp4a(code[q][2], xv.z, s);
            s = gpu_dp4a(code[q][3], xv.w, s);
            s -= 32 * xt[eq >> 4];
            r += ds[q] * xd[eq >> 5] * (float)s;
        }
        acc[t] += r;
    }
}

template <int NT>
__device__ inline void dot_row(uint32_t type, const uint8_t *row, const q8_view &x, float *acc)
{
    const int lane = threadIdx.x % GRETA_WARP;
    if (type == GGML_TYPE_Q4_K) {
        const int64_t n_units = x.k / 32;
#pragma unroll 4
        for (int64_t u = lane; u < n_units; u += GRETA_WARP)
            q4k_unit<NT>(row, u, x, acc);
    } else {
        const int64_t n_units = x.k / 64;
#pragma unroll 2
        for (int64_t u = lane; u < n_units; u += GRETA_WARP)
            q6k_unit<NT>(row, u, x, acc);
    }
}

struct mvq_mat {
    const uint8_t *w;
    int64_t row_bytes, n, ld_y;
    float *y;
    uint32_t type;
};

struct mvq_args {
    mvq_mat m[MVQ_MAX_MATS];
    int n_mat, accumulate, glu;
    int64_t rows; /* all matrices' rows, or gate's rows for glu */
    q8_view x;
    float *glu_out;
    int64_t ld_glu;
};

template <int NT> __global__ void __launch_bounds__(MVQ_BLOCK) mvq_kernel(const mvq_args a)
{
    const int lane = threadIdx.x % GRETA_WARP;
    const int64_t n_warps = (int64_t)gridDim.x * (blockDim.x / GRETA_WARP);
    for (int64_t row = (int64_t)blockIdx.x * (blockDim.x / GRETA_WARP) + threadIdx.x / GRETA_WARP; row < a.rows;
         row += n_warps) {
        int mi = 0;
        int64_t r = row;
        if (!a.glu)
            while (mi + 1 < a.n_mat && r >= a.m[mi].n) {
                r -= a.m[mi].n;
                mi++;
            }
        float acc[NT], acc2[NT];
#pragma unroll
        for (int t = 0; t < NT; t++)
            acc[t] = acc2[t] = 0.0f;
        dot_row<NT>(a.m[mi].type, a.m[mi].w + r * a.m[mi].row_bytes, a.x, acc);
        if (a.glu)
            dot_row<NT>(a.m[1].type, a.m[1].w + r * a.m[1].row_bytes, a.x, acc2);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            acc[t] = gpu_warp_sum(acc[t]);
            if (a.glu)
                acc2[t] = gpu_warp_sum(acc2[t]);
        }
        if (lane == 0) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (a.glu) {
                    const float g = acc[t];
                    a.glu_out[t * a.ld_glu + r] = g / (1.0f + expf(-g)) * acc2[t];
                } else {
                    float *yp = a.m[mi].y + t * a.m[mi].ld_y + r;
                    *yp = a.accumulate ? *yp + acc[t] : acc[t];
                }
            }
        }
    }
}

static int mvq_run(gpu_stream_t st, mvq_args a, int32_t n_tok, greta_error *err)
{
    const int64_t rows_per_block = MVQ_BLOCK / GPU_MIN_WARP; /* see the kernel */
    const unsigned blocks = (unsigned)((a.rows + rows_per_block - 1) / rows_per_block);
    for (int32_t t0 = 0; t0 < n_tok; t0 += MVQ_NT) {
        mvq_args b = a;
        b.x.base = a.x.base + t0 * a.x.stride;
        for (int i = 0; i < a.n_mat; i++)
            if (b.m[i].y)
                b.m[i].y += t0 * b.m[i].ld_y;
        if (b.glu_out)
            b.glu_out += t0 * b.ld_glu;
        switch (n_tok - t0 < MVQ_NT ? n_tok - t0 : MVQ_NT) {
        case 1: mvq_kernel<1><<<blocks, MVQ_BLOCK, 0, st>>>(b); break;
        case 2: mvq_kernel<2><<<blocks, MVQ_BLOCK, 0, st>>>(b); break;
        case 3: mvq_kernel<3><<<blocks, MVQ_BLOCK, 0, st>>>(b); break;
        default: mvq_kernel<4><<<blocks, MVQ_BLOCK, 0, st>>>(b); break;
        }
    }
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

extern "C" int64_t greta_gpu_q8_row_bytes(int64_t k) { return k > 0 && k % 256 == 0 ? q8_row_bytes(k) : 0; }

extern "C" int greta_gpu_matvec_q8_supported(uint32_t type, int64_t k)
{
    return (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q6_K) && k > 0 && k % QK_K == 0;
}

extern "C" int greta_gpu_quantize_q8(greta_gpu_stream *s, const float *x, int64_t ld_x, int32_t n_tok, int64_t k,
                                     void *q8, greta_error *err)
{
    if (k <= 0 || k % 256 != 0 || ld_x < k || n_tok < 0 || n_tok > 65535 || !q8)
        return greta_error_set(err, GRETA_ERR_INVALID, "quantize_q8: bad shape (k %lld, tokens %d)", (long long)k,
                               n_tok);
    if (n_tok == 0)
        return 0;
    quantize_q8_kernel<<<dim3((unsigned)(k / 256), n_tok), 256, 0, (gpu_stream_t)s>>>(x, ld_x, k, (uint8_t *)q8);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

extern "C" int greta_gpu_rmsnorm_q8(greta_gpu_stream *s, const float *x, int64_t ld_x, const float *w, float *out,
                                    int64_t ld_out, int32_t n_tok, int64_t n, float eps, void *q8, greta_error *err)
{
    if (n <= 0 || n % 256 != 0 || ld_x < n || ld_out < n || n_tok < 0 || !q8)
        return greta_error_set(err, GRETA_ERR_INVALID, "rmsnorm_q8: bad shape (n %lld, tokens %d)", (long long)n,
                               n_tok);
    if (n_tok == 0)
        return 0;
    rmsnorm_q8_kernel<<<n_tok, 256, 0, (gpu_stream_t)s>>>(x, ld_x, w, out, ld_out, n, eps, (uint8_t *)q8);
    GPU_CHECK(gpu_last_error(), err);
    return 0;
}

static int mvq_setup(const void *q8, int64_t k, int32_t n_tok, const greta_gpu_mv_mat *m, int n_mat, int need_y,
                     mvq_args *a, greta_error *err)
{
    if (!q8 || k <= 0 || k % QK_K != 0 || n_tok < 0 || n_tok > GRETA_GPU_MATVEC_MAX_TOK || n_mat < 1 ||
        n_mat > MVQ_MAX_MATS)
        return greta_error_set(err, GRETA_ERR_INVALID, "matvec_q8: bad shape (k %lld, tokens %d, matrices %d)",
                               (long long)k, n_tok, n_mat);
    *a = mvq_args{};
    a->n_mat = n_mat;
    a->x.base = (const uint8_t *)q8;
    a->x.stride = q8_row_bytes(k);
    a->x.k = k;
    for (int i = 0; i < n_mat; i++) {
        if (!greta_gpu_matvec_q8_supported(m[i].type, k))
            return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "matvec_q8: no kernel for type %s at k %lld",
                                   ggml_type_name(m[i].type), (long long)k);
        if (!m[i].w || m[i].n <= 0 || (need_y && (!m[i].y || m[i].ld_y < m[i].n)))
            return greta_error_set(err, GRETA_ERR_INVALID, "matvec_q8: matrix %d: bad rows %lld or output", i,
                                   (long long)m[i].n);
        a->m[i].w = (const uint8_t *)m[i].w;
        a->m[i].row_bytes = (int64_t)ggml_row_bytes(m[i].type, (uint64_t)k);
        a->m[i].n = m[i].n;
        a->m[i].y = need_y ? m[i].y : NULL;
        a->m[i].ld_y = m[i].ld_y;
        a->m[i].type = m[i].type;
        a->rows += m[i].n;
    }
    return 0;
}

extern "C" int greta_gpu_matvec_q8(greta_gpu_stream *s, const void *q8, int64_t k, int32_t n_tok,
                                   const greta_gpu_mv_mat *m, int n_mat, int accumulate, greta_error *err)
{
    mvq_args a;
    int rc = mvq_setup(q8, k, n_tok, m, n_mat, 1, &a, err);
    if (rc)
        return rc;
    a.accumulate = accumulate != 0;
    return n_tok == 0 ? 0 : mvq_run((gpu_stream_t)s, a, n_tok, err);
}

extern "C" int greta_gpu_matvec_q8_glu(greta_gpu_stream *s, const void *q8, int64_t k, int32_t n_tok,
                                       const greta_gpu_mv_mat *gate, const greta_gpu_mv_mat *up, float *out,
                                       int64_t ld_out, greta_error *err)
{
    if (!gate || !up || gate->n != up->n || !out || ld_out < gate->n)
        return greta_error_set(err, GRETA_ERR_INVALID, "matvec_q8_glu: gate and up must have the same rows");
    const greta_gpu_mv_mat m[2] = {*gate, *up};
    mvq_args a;
    int rc = mvq_setup(q8, k, n_tok, m, 2, 0, &a, err);
    if (rc)
        return rc;
    a.glu = 1;
    a.rows = gate->n;
    a.glu_out = out;
    a.ld_glu = ld_out;
    return n_tok == 0 ? 0 : mvq_run((gpu_stream_t)s, a, n_tok, err);
}
