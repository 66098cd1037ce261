/* matvec_f32.cuh - the decode GEMV "v3" kernels (decode_ops.h): fp32
 * activations against native Q4_K / Q6_K blocks. Included by matvec_f32.cu
 * (the library's instances and launchers) and tests/perf/gemv-bench.cu
 * (launch-shape variants).
 *
 * Why it is faster than matvec.cu (v1) at the same fp32 arithmetic:
 *   - a block takes R rows and its threads split their units, so each
 *     activation value a thread loads serves R weight rows (v1 read 8 bytes
 *     of x from L1 for every weight byte), and even a 4096-row matrix has
 *     thousands of blocks in flight (v1: one warp per row, few warps);
 *   - a code becomes a float with one byte permute: byte b placed in bits
 *     16..23 of 2.0f is exactly 2 + b/64, so sum(q*x) = 64*sum((2 + q/64)*x)
 *     - 128*sum(x) costs one permute and one FMA per value, no
 *     int-to-float conversion (a quarter-rate instruction);
 *   - the Q4_K scale/min pairs are decoded branch-free from three words,
 *     and the sums of x are made once per unit for the R rows.
 * Units: 32 values (8 per 256-value block). Q4_K unit u: 16 bytes of qs at
 * 32c + 16h (c = (u>>1)&3, h = u&1): low nibbles are values 64c + 16h + i
 * (sub-block 2c), high ones 64c + 32 + 16h + i (sub-block 2c + 1). Q6_K:
 * see units_q6k. Per unit a thread adds d*sc*sum(q*x) - dmin*m*sum(x)
 * (Q4_K) or d*sc*sum((q-32)*x) (Q6_K) per 16-value half, fp32 throughout;
 * the block sums its threads (warp shuffles, then shared memory). The value
 * per row is the fp32 dot product of the decoded weights with x, summed in
 * another order than the CPU reference (bound: tests/gpu/test_gpu_decode.c).
 *
 * Launch shape (one table for both warp widths): MV3_BLOCK threads per
 * block whatever the warp width (4 warps of 32, 2 wavefronts of 64), R rows
 * per block (MV3_ROWS; MV3_GLU_ROWS of gate and of up), one block per row
 * group; the register budget is set for MV3_MIN_BLOCKS blocks per SM/CU.
 */
#ifndef GRETA_GPU_MATVEC_F32_CUH
#define GRETA_GPU_MATVEC_F32_CUH

#include "gpu_port.h"
#include "kernels/quant.h"
#include "kv_io.cuh" /* kv_offset */
#include "vdot.cuh"   /* vdot_load16_a2w */

#define MV3_BLOCK 128
#define MV3_NT 2 /* most tokens of one launch; more run as several launches (registers) */
#define MV3_MAX_MATS 3
#ifndef MV3_MIN_BLOCKS
#define MV3_MIN_BLOCKS 4 /* blocks per SM the register budget is set for (gemv-bench varies it) */
#endif

/* Rows per block (the launch-shape table; the same for both warp widths:
 * a block's threads split the row's units, whatever the warp size). Chosen
 * with tests/perf/gemv-bench.cu on the H200 (7B shapes, 100 launches): R 8
 * with 4 blocks per SM was the fastest or within 2% on every shape
 * (1.75-2.37 TB/s against 1.25-1.73 for R 4 with 1 block per SM). */
#define MV3_ROWS 8     /* matvec_f32: rows of one matrix per block */
#define MV3_GLU_ROWS 4 /* matvec_f32_glu: rows of gate and of up per block */

/* The float 2 + b/64 for byte B of w (b < 128): byte b placed in bits 16..23
 * of the float 2.0 (0x40000000), one byte permute, exact. */
template <int B> __device__ inline float f2p(uint32_t w)
{
    return __int_as_float((int)__byte_perm(w, 0x40000000u, 0x7054u | (B << 8)));
}

/* acc + sum over the 4 bytes b of w of (2 + b/64) * x */
__device__ inline float dot4p(uint32_t w, float4 x, float acc)
{
    acc = fmaf(f2p<0>(w), x.x, acc);
    acc = fmaf(f2p<1>(w), x.y, acc);
    acc = fmaf(f2p<2>(w), x.z, acc);
    return fmaf(f2p<3>(w), x.w, acc);
}

__device__ inline float small_f(uint32_t v) /* 0 <= v < 2^23, exactly */
{
    return __int_as_float((int)(0x4B000000u | v)) - 8388608.0f;
}

/* Q4_K scale/min of sub-blocks 2c and 2c + 1 (greta_k_scale_min), from the
 * 12 scale bytes as words s0, s1, s2, without branches on c. */
__device__ inline void q4k_pair(uint32_t s0, uint32_t s1, uint32_t s2, int c, float &sa, float &ma, float &sb,
                                float &mb)
{
    const int sh = (c & 1) * 16;
    const uint32_t a0 = (s0 >> sh) & 0xffffu, a1 = (s1 >> sh) & 0xffffu, a2 = (s2 >> sh) & 0xffffu;
    const uint32_t lo_s = a0 & 0x3f3fu, lo_m = a1 & 0x3f3fu;
    const uint32_t hi_s = (a2 & 0x0f0fu) | ((a0 >> 2) & 0x3030u), hi_m = ((a2 >> 4) & 0x0f0fu) | ((a1 >> 2) & 0x3030u);
    const uint32_t ps = c >= 2 ? hi_s : lo_s, pm = c >= 2 ? hi_m : lo_m;
    sa = small_f(ps & 0xffu);
    sb = small_f(ps >> 8);
    ma = small_f(pm & 0xffu);
    mb = small_f(pm >> 8);
}

/* 16 activations at ea and at eb (two float4 x 4) and their sums. With
 * the fused RMSNorm (g non-NULL) the values are x * g, and ss gets the sum
 * of the squares of x. */
template <bool NORM>
__device__ inline void load_x2(const float *x, const float *g, int64_t ea, int64_t eb, float4 (&va)[4],
                               float4 (&vb)[4], float &sxa, float &sxb, float &ss)
{
    const float4 *xa = (const float4 *)(x + ea), *xb = (const float4 *)(x + eb);
    sxa = 0.0f;
    sxb = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        va[j] = xa[j];
        vb[j] = xb[j];
    }
    if (NORM) {
        const float4 *ga = (const float4 *)(g + ea), *gb = (const float4 *)(g + eb);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float4 wa = ga[j], wb = gb[j];
            ss += (va[j].x * va[j].x + va[j].y * va[j].y) + (va[j].z * va[j].z + va[j].w * va[j].w);
            ss += (vb[j].x * vb[j].x + vb[j].y * vb[j].y) + (vb[j].z * vb[j].z + vb[j].w * vb[j].w);
            va[j] = make_float4(va[j].x * wa.x, va[j].y * wa.y, va[j].z * wa.z, va[j].w * wa.w);
            vb[j] = make_float4(vb[j].x * wb.x, vb[j].y * wb.y, vb[j].z * wb.z, vb[j].w * wb.w);
        }
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        sxa += (va[j].x + va[j].y) + (va[j].z + va[j].w);
        sxb += (vb[j].x + vb[j].y) + (vb[j].z + vb[j].w);
    }
}

/* acc[t][r] += this thread's share of dot(row r, x[t]) over RR rows: the
 * block's threads take the 32-value units u = tid, tid + nthreads, ... */
template <int NT, int RR, bool NORM>
__device__ inline void units_q4k(const uint8_t *const (&wr)[RR], int64_t k, const float *__restrict__ x,
                                 int64_t ld_x, const float *__restrict__ gw, float (&acc)[NT][RR], float (&ss)[NT])
{
    const int64_t n_units = k / 32;
    for (int64_t u = threadIdx.x; u < n_units; u += blockDim.x) {
        const int64_t blk = u >> 3;
        const int c = (int)(u >> 1) & 3, h = (int)u & 1;
        uint4 q[RR], hd[RR];
#pragma unroll
        for (int r = 0; r < RR; r++) {
            const uint8_t *b = wr[r] + blk * sizeof(block_q4_K);
            q[r] = *(const uint4 *)(b + 16 + 32 * c + 16 * h);
            hd[r] = *(const uint4 *)b; /* d, dmin, scales[12] */
        }
        const int64_t ea = blk * QK_K + 64 * c + 16 * h;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float4 va[4], vb[4];
            float sxa, sxb;
            load_x2<NORM>(x + t * ld_x, gw, ea, ea + 32, va, vb, sxa, sxb, ss[t]);
#pragma unroll
            for (int r = 0; r < RR; r++) {
                const uint32_t w[4] = {q[r].x, q[r].y, q[r].z, q[r].w};
                float pa = 0.0f, pb = 0.0f; /* sums of (2 + q/64) * x */
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    pa = dot4p(w[j] & 0x0f0f0f0fu, va[j], pa);
                    pb = dot4p((w[j] >> 4) & 0x0f0f0f0fu, vb[j], pb);
                }
                float sa, ma, sb, mb;
                q4k_pair(hd[r].y, hd[r].z, hd[r].w, c, sa, ma, sb, mb);
                const float d = gpu_half_to_float((uint16_t)(hd[r].x & 0xffffu)),
                            dmin = gpu_half_to_float((uint16_t)(hd[r].x >> 16));
                /* sum(q * x) = 64 * p - 128 * sum(x) */
                acc[t][r] += (d * sa * (64.0f * pa - 128.0f * sxa) - dmin * ma * sxa) +
                             (d * sb * (64.0f * pb - 128.0f * sxb) - dmin * mb * sxb);
            }
        }
    }
}

/* Q6_K in units of 32 values: unit (h, g, s) of a block takes ql[64h + 32s
 * + 16g ..+16] and qh[32h + 16g ..+16]: the low nibbles with qh bits 2s,
 * 2s+1 are values 128h + 32s + 16g + i (quarter s), the high nibbles with
 * bits 2s+4, 2s+5 are values 64 further (quarter s + 2); quarter q of the
 * half has scale 8h + g + 2q. */
template <int NT, int RR, bool NORM>
__device__ inline void units_q6k(const uint8_t *const (&wr)[RR], int64_t k, const float *__restrict__ x,
                                 int64_t ld_x, const float *__restrict__ gw, float (&acc)[NT][RR], float (&ss)[NT])
{
    const int64_t n_units = k / 32;
    for (int64_t u = threadIdx.x; u < n_units; u += blockDim.x) {
        const int64_t blk = u >> 3;
        const int h = (int)(u >> 2) & 1, g = (int)(u >> 1) & 1, s = (int)u & 1;
        uint32_t lo[RR][4], hi[RR][4];
        float da[RR], db[RR];
#pragma unroll
        for (int r = 0; r < RR; r++) {
            const block_q6_K *b = (const block_q6_K *)(wr[r] + blk * sizeof(block_q6_K));
            uint32_t ql[4], qh[4];
            vdot_load16_a2w(b->ql + 64 * h + 32 * s + 16 * g, ql);
            vdot_load16_a2w(b->qh + 32 * h + 16 * g, qh);
            const float d = gpu_half_to_float(*(const uint16_t *)&b->d);
            da[r] = d * (float)b->scales[8 * h + g + 2 * s];
            db[r] = d * (float)b->scales[8 * h + g + 2 * s + 4];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                lo[r][j] = (ql[j] & 0x0f0f0f0fu) | (((qh[j] >> (2 * s)) & 0x03030303u) << 4);
                hi[r][j] = ((ql[j] >> 4) & 0x0f0f0f0fu) | (((qh[j] >> (2 * s + 4)) & 0x03030303u) << 4);
            }
        }
        const int64_t ea = blk * QK_K + 128 * h + 32 * s + 16 * g;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float4 va[4], vb[4];
            float sxa, sxb;
            load_x2<NORM>(x + t * ld_x, gw, ea, ea + 64, va, vb, sxa, sxb, ss[t]);
#pragma unroll
            for (int r = 0; r < RR; r++) {
                float pa = 0.0f, pb = 0.0f;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    pa = dot4p(lo[r][j], va[j], pa);
                    pb = dot4p(hi[r][j], vb[j], pb);
                }
                /* sum((q - 32) * x) = 64 * p - 160 * sum(x) */
                acc[t][r] += da[r] * (64.0f * pa - 160.0f * sxa) + db[r] * (64.0f * pb - 160.0f * sxb);
            }
        }
    }
}

/* The block's sums of v[0..N-1] (every thread passes its own) into res[N]
 * (shared), visible to every thread on return. Barriers inside: call from
 * all threads. */
template <int N> __device__ inline void block_sums(float (&v)[N], float (*sm)[N], float *res)
{
    const int lane = threadIdx.x % GRETA_WARP, warp = threadIdx.x / GRETA_WARP;
#pragma unroll
    for (int i = 0; i < N; i++)
        v[i] = gpu_warp_sum(v[i]);
    if (lane == 0)
#pragma unroll
        for (int i = 0; i < N; i++)
            sm[warp][i] = v[i];
    __syncthreads();
    if (threadIdx.x < N) {
        float r = 0.0f;
        for (int w = 0; w < (int)(blockDim.x / GRETA_WARP); w++)
            r += sm[w][threadIdx.x];
        res[threadIdx.x] = r;
    }
    __syncthreads();
}

/* res[t * RR + r] = dot(row r, x[t]) for the block's RR rows, or with the
 * fused RMSNorm (NORM, g = its weights, over the k values of x)
 * dot(row r, x[t] * g) * rr_t, rr_t = 1 / sqrtf(sum(x[t]^2) / k + eps):
 * the same value as greta_gpu_rmsnorm then the product, rounded in another
 * order. */
template <int NT, int RR, bool NORM>
__device__ inline void rows_dot(uint32_t type, const uint8_t *const (&wr)[RR], int64_t k, const float *x,
                                int64_t ld_x, const float *g, float eps, float *res)
{
    constexpr int N = NT * RR + (NORM ? NT : 0);
    __shared__ float sm[MV3_BLOCK / GPU_MIN_WARP][N];
    float acc[NT][RR], ss[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) {
        ss[t] = 0.0f;
#pragma unroll
        for (int r = 0; r < RR; r++)
            acc[t][r] = 0.0f;
    }
    if (type == GGML_TYPE_Q6_K)
        units_q6k<NT, RR, NORM>(wr, k, x, ld_x, g, acc, ss);
    else
        units_q4k<NT, RR, NORM>(wr, k, x, ld_x, g, acc, ss);
    float flat[N];
#pragma unroll
    for (int t = 0; t < NT; t++) {
#pragma unroll
        for (int r = 0; r < RR; r++)
            flat[t * RR + r] = acc[t][r];
        if (NORM)
            flat[NT * RR + t] = ss[t];
    }
    block_sums<N>(flat, sm, res);
    if (NORM) {
        if (threadIdx.x < NT * RR) {
            const float mean = res[NT * RR + threadIdx.x / RR] / (float)k;
            res[threadIdx.x] *= 1.0f / sqrtf(mean + eps);
        }
        __syncthreads();
    }
}

/* Up to MV3_MAX_MATS matrices sharing one input; blocks [end[i-1], end[i])
 * of the grid take matrix i, R rows each (end counts blocks of R rows).
 * Fusions: gamma (RMSNorm of x before the products, eps); rope/cache (the
 * Q/K/V of a decode step: matrices with rope[i] get RoPE with the table cs
 * [token][rope_dim] over heads of head_dim, matrices with cache[i] are also
 * stored into that KV cache at (seq[t], row / head_dim, pos[t])). */
struct mv3_args {
    const uint8_t *w[MV3_MAX_MATS];
    float *y[MV3_MAX_MATS];
    int64_t n[MV3_MAX_MATS], ld_y[MV3_MAX_MATS], row_bytes[MV3_MAX_MATS], end[MV3_MAX_MATS];
    uint32_t type[MV3_MAX_MATS];
    const float *gamma;
    float eps;
    const float *cs;
    const int32_t *pos, *seq;
    void *cache[MV3_MAX_MATS];
    int rope[MV3_MAX_MATS];
    int head_dim, rope_dim, n_kv_heads, n_ctx, kv_f32;
};

/* RoPE of the pair (x0, x1) as greta_cpu_rope: the even row gets
 * x0*c - x1*s, the odd one x0*s + x1*c. */
__device__ inline float rope_one(float v, float partner, bool even, float c, float s)
{
    const float x0 = even ? v : partner, x1 = even ? partner : v;
    return even ? gpu_sub_rn(gpu_mul_rn(x0, c), gpu_mul_rn(x1, s)) : gpu_add_rn(gpu_mul_rn(x0, s), gpu_mul_rn(x1, c));
}

template <int NT, bool NORM, bool EPI, int R = MV3_ROWS, int MINB = MV3_MIN_BLOCKS>
__global__ void __launch_bounds__(MV3_BLOCK, MINB)
mv3_kernel(const mv3_args A, const float *__restrict__ x, int64_t ld_x, int64_t k, int accumulate)
{
    __shared__ float res[NT * R + NT];
    const int64_t g = blockIdx.x;
    const int m = g < A.end[0] ? 0 : g < A.end[1] ? 1 : 2; /* block-uniform */
    const int64_t row0 = (g - (m == 0 ? 0 : m == 1 ? A.end[0] : A.end[1])) * R;
    const uint8_t *w = m == 0 ? A.w[0] : m == 1 ? A.w[1] : A.w[2];
    const int64_t n = m == 0 ? A.n[0] : m == 1 ? A.n[1] : A.n[2];
    const int64_t rb = m == 0 ? A.row_bytes[0] : m == 1 ? A.row_bytes[1] : A.row_bytes[2];
    const uint32_t type = m == 0 ? A.type[0] : m == 1 ? A.type[1] : A.type[2];
    const uint8_t *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        wr[r] = w + (row0 + r < n ? row0 + r : n - 1) * rb; /* past the end: row n-1 again, not stored */
    rows_dot<NT, R, NORM>(type, wr, k, x, ld_x, A.gamma, A.eps, res);
    const int t = threadIdx.x / R, r = threadIdx.x % R;
    if (threadIdx.x < NT * R && row0 + r < n) {
        float v = res[threadIdx.x];
        const int64_t row = row0 + r;
        if (EPI) {
            const int d = (int)(row % A.head_dim);
            if ((m == 0 ? A.rope[0] : m == 1 ? A.rope[1] : A.rope[2]) && d < A.rope_dim) {
                /* the pair partner is the neighbouring row of the same block (R even, row0 even) */
                const float *c = A.cs + (int64_t)t * A.rope_dim + (d & ~1);
                v = rope_one(v, res[threadIdx.x ^ 1], (d & 1) == 0, c[0], c[1]);
            }
            void *cache = m == 0 ? A.cache[0] : m == 1 ? A.cache[1] : A.cache[2];
            const int32_t p = A.pos[t], sq = A.seq[t];
            if (cache && p >= 0 && p < A.n_ctx && sq >= 0) {
                const int64_t off = kv_offset(sq, row / A.head_dim, p, d, A.n_kv_heads, A.n_ctx, A.head_dim);
                if (A.kv_f32)
                    ((float *)cache)[off] = v;
                else
                    ((uint16_t *)cache)[off] = gpu_float_to_half(v);
            }
        }
        float *y = m == 0 ? A.y[0] : m == 1 ? A.y[1] : A.y[2];
        const int64_t ld_y = m == 0 ? A.ld_y[0] : m == 1 ? A.ld_y[1] : A.ld_y[2];
        float *yp = y + t * ld_y + row;
        *yp = accumulate ? *yp + v : v;
    }
}

/* gate/up + SiLU: a block takes MV3_GLU_ROWS rows of gate and the same rows
 * of up; with NORM, RMSNorm of x (weights g) fused as in mv3_kernel. */
template <int NT, bool NORM, int R = MV3_GLU_ROWS, int MINB = MV3_MIN_BLOCKS>
__global__ void __launch_bounds__(MV3_BLOCK, MINB)
mv3_glu_kernel(uint32_t type, const uint8_t *__restrict__ wg, const uint8_t *__restrict__ wu, int64_t row_bytes,
               int64_t n, const float *__restrict__ x, int64_t ld_x, int64_t k, const float *__restrict__ g,
               float eps, float *__restrict__ out, int64_t ld_out)
{
    __shared__ float res[NT * 2 * R + NT];
    const int64_t row0 = (int64_t)blockIdx.x * R;
    const uint8_t *wr[2 * R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t row = row0 + r < n ? row0 + r : n - 1;
        wr[r] = wg + row * row_bytes;
        wr[R + r] = wu + row * row_bytes;
    }
    rows_dot<NT, 2 * R, NORM>(type, wr, k, x, ld_x, g, eps, res); /* res[t * 2R + j]: j < R gate, else up */
    if (threadIdx.x < NT * R) {
        const int t = threadIdx.x / R, r = threadIdx.x % R;
        if (row0 + r < n) {
            const float gv = res[t * 2 * R + r], uv = res[t * 2 * R + R + r];
            out[t * ld_out + row0 + r] = gv / (1.0f + expf(-gv)) * uv;
        }
    }
}

#endif
