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
 * The second argument of __launch_bounds__ means another thing on HIP:
 * the minimum waves per SIMD (amd_hip_runtime.h maps it to
 * amdgpu_waves_per_eu), not blocks per CU. The budget per thread comes out
 * the same, 512 / MINB registers: 65536 / (128 threads x MINB blocks) on
 * an NVIDIA SM, 512 VGPRs / MINB waves on a gfx942 SIMD (at most 256
 * architectural ones); a CU then holds up to 2 x MINB blocks of two waves.
 */
#ifndef GRETA_GPU_MATVEC_F32_CUH
#define GRETA_GPU_MATVEC_F32_CUH

#include "gpu_port.h"
#include "kernels/quant.h"
#include "act16.cuh"  /* the a16 activations (v6) */
#include "kv_io.cuh" /* kv_offset */
#include "vdot.cuh"   /* vdot_load16_a2w */

#define MV3_BLOCK 128
#define MV3_NT 2 /* most tokens of one launch; more run as several launches (registers) */
#define MV3_MAX_MATS 3
#ifndef MV3_MIN_BLOCKS
#define MV3_MIN_BLOCKS 3 /* blocks per SM the register budget is set for (gemv-bench varies it) */
#endif

/* Rows per block (the launch-shape table; the same for both warp widths:
 * a block's threads split the row's units, whatever the warp size). Chosen
 * with tests/perf/gemv-bench.cu on the H200 (7B shapes, 100 launches): R 8
 * with 4 blocks per SM was the fastest or within 2% on every shape
 * (1.75-2.37 TB/s against 1.25-1.73 for R 4 with 1 block per SM). With
 * programmatic dependent launch (v4) the register budget of 3 blocks per
 * SM (168 registers) measured faster in the engine: tg128 379.5 against
 * 367.8 tokens/s, 314 against 299 at depth 4096 (H200, same machine, two
 * runs each; bench/results/2026-11-26-gpu-h200-decode-v4.txt). */
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

/* The weight words one thread needs for one 32-value unit of RR rows, as
 * loaded: Q4_K w[r][0..3] the 16 qs bytes, w[r][4..7] the block's d, dmin
 * and 12 scale bytes; Q6_K w[r][0..3] the ql bytes, w[r][4..7] the qh
 * bytes, w[r][8] = d | scale_a << 16 | scale_b << 24. */
template <int RR> struct mv_unit {
    uint32_t w[RR][9];
};

/* The rows of one group, in few registers: rows 0..H-1 are consecutive
 * rows from base0, rows H..2H-1 (gate/up: RR = 2H) the same rows from
 * base1; past row `last` of each the last valid one again (its result is
 * not stored). */
struct mv_rows {
    const uint8_t *base0, *base1;
    int64_t row_bytes;
    int last;
    uint32_t type;
};

template <int RR, int H> __device__ __forceinline__ const uint8_t *row_ptr(const mv_rows &G, int r)
{
    const int i = r % H;
    return (r < H ? G.base0 : G.base1) + (int64_t)(i < G.last ? i : G.last) * G.row_bytes;
}

template <uint32_t TYPE, int RR, int H>
__device__ __forceinline__ void unit_load(const mv_rows &G, int64_t u, mv_unit<RR> &U)
{
    const int64_t blk = u >> 3;
    if (TYPE == GGML_TYPE_Q6_K) {
        const int h = (int)(u >> 2) & 1, g = (int)(u >> 1) & 1, s = (int)u & 1;
#pragma unroll
        for (int r = 0; r < RR; r++) {
            const block_q6_K *b = (const block_q6_K *)(row_ptr<RR, H>(G, r) + blk * sizeof(block_q6_K));
            vdot_load16_a2w(b->ql + 64 * h + 32 * s + 16 * g, &U.w[r][0]);
            vdot_load16_a2w(b->qh + 32 * h + 16 * g, &U.w[r][4]);
            U.w[r][8] = (uint32_t)*(const uint16_t *)&b->d | (uint32_t)(uint8_t)b->scales[8 * h + g + 2 * s] << 16 |
                        (uint32_t)(uint8_t)b->scales[8 * h + g + 2 * s + 4] << 24;
        }
    } else {
        const int c = (int)(u >> 1) & 3, h = (int)u & 1;
#pragma unroll
        for (int r = 0; r < RR; r++) {
            const uint8_t *b = row_ptr<RR, H>(G, r) + blk * sizeof(block_q4_K);
            const uint4 q = *(const uint4 *)(b + 16 + 32 * c + 16 * h);
            const uint4 hd = *(const uint4 *)b; /* d, dmin, scales[12] */
            U.w[r][0] = q.x, U.w[r][1] = q.y, U.w[r][2] = q.z, U.w[r][3] = q.w;
            U.w[r][4] = hd.x, U.w[r][5] = hd.y, U.w[r][6] = hd.z, U.w[r][7] = hd.w;
        }
    }
}

/* The first values of unit u's two 16-value halves (Q4_K: the low and
 * the high nibbles; Q6_K: quarters s and s + 2, see unit_dot). */
template <uint32_t TYPE> __device__ __forceinline__ void unit_halves(int64_t u, int64_t &ea, int64_t &eb)
{
    const int64_t blk = u >> 3;
    if (TYPE == GGML_TYPE_Q6_K) {
        ea = blk * QK_K + 128 * ((u >> 2) & 1) + 32 * (u & 1) + 16 * ((u >> 1) & 1);
        eb = ea + 64;
    } else {
        ea = blk * QK_K + 64 * ((u >> 1) & 3) + 16 * (u & 1);
        eb = ea + 32;
    }
}

/* Word j of row r of unit u as codes, one byte per value: lo for the first
 * half (values ea + 4j ..), hi for the second (Q4_K: 0..15; Q6_K: 0..63
 * with qh's bits of quarter s = u & 1). */
template <uint32_t TYPE, int RR>
__device__ __forceinline__ void unit_codes(const mv_unit<RR> &U, int r, int j, int s, uint32_t &lo, uint32_t &hi)
{
    if (TYPE == GGML_TYPE_Q6_K) {
        const uint32_t ql = U.w[r][j], qh = U.w[r][4 + j];
        lo = (ql & 0x0f0f0f0fu) | (((qh >> (2 * s)) & 0x03030303u) << 4);
        hi = ((ql >> 4) & 0x0f0f0f0fu) | (((qh >> (2 * s + 4)) & 0x03030303u) << 4);
    } else {
        lo = U.w[r][j] & 0x0f0f0f0fu;
        hi = (U.w[r][j] >> 4) & 0x0f0f0f0fu;
    }
}

/* acc[t][r] += the share of dot(row r, x[t]) of unit u (loaded into U).
 * Q4_K unit u: see the top of the file. Q6_K in units of 32 values: unit
 * (h, g, s) of a block takes ql[64h + 32s + 16g ..+16] and qh[32h + 16g
 * ..+16]: the low nibbles with qh bits 2s, 2s+1 are values 128h + 32s + 16g
 * + i (quarter s), the high nibbles with bits 2s+4, 2s+5 are values 64
 * further (quarter s + 2); quarter q of the half has scale 8h + g + 2q. */
template <uint32_t TYPE, int NT, int RR, bool NORM>
__device__ __forceinline__ void unit_dot(const mv_unit<RR> &U, int64_t u, const float *x, int64_t ld_x,
                                         const float *__restrict__ gw, float (&acc)[NT][RR], float (&ss)[NT])
{
    int64_t ea, eb;
    unit_halves<TYPE>(u, ea, eb);
    if (TYPE == GGML_TYPE_Q6_K) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float4 va[4], vb[4];
            float sxa, sxb;
            load_x2<NORM>(x + t * ld_x, gw, ea, eb, va, vb, sxa, sxb, ss[t]);
#pragma unroll
            for (int r = 0; r < RR; r++) {
                const float d = gpu_half_to_float((uint16_t)(U.w[r][8] & 0xffffu));
                const float da = d * (float)(int8_t)(U.w[r][8] >> 16), db = d * (float)(int8_t)(U.w[r][8] >> 24);
                float pa = 0.0f, pb = 0.0f;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    uint32_t lo, hi;
                    unit_codes<TYPE, RR>(U, r, j, (int)(u & 1), lo, hi);
                    pa = dot4p(lo, va[j], pa);
                    pb = dot4p(hi, vb[j], pb);
                }
                /* sum((q - 32) * x) = 64 * p - 160 * sum(x) */
                acc[t][r] += da * (64.0f * pa - 160.0f * sxa) + db * (64.0f * pb - 160.0f * sxb);
            }
        }
    } else {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float4 va[4], vb[4];
            float sxa, sxb;
            load_x2<NORM>(x + t * ld_x, gw, ea, eb, va, vb, sxa, sxb, ss[t]);
#pragma unroll
            for (int r = 0; r < RR; r++) {
                float pa = 0.0f, pb = 0.0f; /* sums of (2 + q/64) * x */
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    uint32_t lo, hi;
                    unit_codes<TYPE, RR>(U, r, j, 0, lo, hi);
                    pa = dot4p(lo, va[j], pa);
                    pb = dot4p(hi, vb[j], pb);
                }
                float sa, ma, sb, mb;
                q4k_pair(U.w[r][5], U.w[r][6], U.w[r][7], (int)(u >> 1) & 3, sa, ma, sb, mb);
                const float d = gpu_half_to_float((uint16_t)(U.w[r][4] & 0xffffu)),
                            dmin = gpu_half_to_float((uint16_t)(U.w[r][4] >> 16));
                /* sum(q * x) = 64 * p - 128 * sum(x) */
                acc[t][r] += (d * sa * (64.0f * pa - 128.0f * sxa) - dmin * ma * sxa) +
                             (d * sb * (64.0f * pb - 128.0f * sxb) - dmin * mb * sxb);
            }
        }
    }
}

/* unit_dot with the a16 activations (act16.cuh) of NT tokens at a (rows
 * ld_a bytes, k values): per 16-value half, the weight codes times the
 * activation codes in int32 (gpu_dp2a_*: exact), then d_x * sc * d in fp32;
 * the min (Q4_K) and offset (Q6_K) terms take the fp32 sums s. */
template <uint32_t TYPE, int NT, int RR>
__device__ __forceinline__ void unit_dot_a16(const mv_unit<RR> &U, int64_t u, const uint8_t *a, int64_t ld_a,
                                             int64_t k, float (&acc)[NT][RR])
{
    int64_t ea, eb;
    unit_halves<TYPE>(u, ea, eb);
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const uint8_t *at = a + t * ld_a;
        const uint4 a0 = *(const uint4 *)(at + 2 * ea), a1 = *(const uint4 *)(at + 2 * ea + 16);
        const uint4 b0 = *(const uint4 *)(at + 2 * eb), b1 = *(const uint4 *)(at + 2 * eb + 16);
        const uint32_t xa[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        const uint32_t xb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
        const float dxa = a16_d(at, k)[ea >> 4], dxb = a16_d(at, k)[eb >> 4];
        const float sxa = a16_s(at, k)[ea >> 4], sxb = a16_s(at, k)[eb >> 4];
#pragma unroll
        for (int r = 0; r < RR; r++) {
            int ia = 0, ib = 0;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                uint32_t lo, hi;
                unit_codes<TYPE, RR>(U, r, j, (int)(u & 1), lo, hi);
                ia = gpu_dp2a_lo(xa[2 * j], lo, ia);
                ia = gpu_dp2a_hi(xa[2 * j + 1], lo, ia);
                ib = gpu_dp2a_lo(xb[2 * j], hi, ib);
                ib = gpu_dp2a_hi(xb[2 * j + 1], hi, ib);
            }
            const float pa = dxa * (float)ia, pb = dxb * (float)ib; /* sum(q * x) per half */
            if (TYPE == GGML_TYPE_Q6_K) {
                const float d = gpu_half_to_float((uint16_t)(U.w[r][8] & 0xffffu));
                const float da = d * (float)(int8_t)(U.w[r][8] >> 16), db = d * (float)(int8_t)(U.w[r][8] >> 24);
                acc[t][r] += da * (pa - 32.0f * sxa) + db * (pb - 32.0f * sxb);
            } else {
                float sa, ma, sb, mb;
                q4k_pair(U.w[r][5], U.w[r][6], U.w[r][7], (int)(u >> 1) & 3, sa, ma, sb, mb);
                const float d = gpu_half_to_float((uint16_t)(U.w[r][4] & 0xffffu)),
                            dmin = gpu_half_to_float((uint16_t)(U.w[r][4] >> 16));
                acc[t][r] += (d * sa * pa - dmin * ma * sxa) + (d * sb * pb - dmin * mb * sxb);
            }
        }
    }
}

/* Each warp's sums of v[0..N-1] into sm[warp] (no barrier). */
template <int N> __device__ inline void warp_partials(float (&v)[N], float (*sm)[N])
{
    const int lane = threadIdx.x % GRETA_WARP, warp = threadIdx.x / GRETA_WARP;
#pragma unroll
    for (int i = 0; i < N; i++)
        v[i] = gpu_warp_sum(v[i]);
    if (lane == 0)
#pragma unroll
        for (int i = 0; i < N; i++)
            sm[warp][i] = v[i];
}

/* A group's results: the warps' partial sums of each of N values stay in
 * shared memory (one barrier per group, not two for a block-wide sum plus
 * one before the next group), and [i] adds them up in warp order for
 * whichever values the storing thread needs. */
template <int N> struct mv_partials {
    const float (*sm)[N];
    int n_warps;
    __device__ __forceinline__ float operator[](int i) const
    {
        float r = 0.0f;
        for (int w = 0; w < n_warps; w++)
            r += sm[w][i];
        return r;
    }
};

/* mv_partials with the fused RMSNorm: value i (< NI, of token i / RR) is
 * the product times 1 / sqrtf(sum(x^2) / k + eps), the sum of squares of
 * that token being value NI + i / RR. */
template <int N, int NI, int RR> struct mv_normed {
    mv_partials<N> p;
    float k, eps;
    __device__ __forceinline__ float operator[](int i) const
    {
        const float mean = p[NI + i / RR] / k;
        return p[i] * (1.0f / sqrtf(mean + eps));
    }
};

/* The dependency on the previous kernel (gpu_port.h, PDL), once per
 * thread: weights may be loaded before, x only after. */
__device__ __forceinline__ void mv_wait(bool &waited)
{
    if (!waited) {
        gpu_pdl_wait();
        gpu_pdl_trigger();
        waited = true;
    }
}

/* One group's units for this thread (u = tid, + blockDim.x, ...) into acc
 * and ss; the first unit's weights are loaded before mv_wait. */
template <uint32_t TYPE, int NT, int RR, int H, bool NORM, bool A16>
__device__ __forceinline__ void group_units(const mv_rows &rows, int64_t n_units, const void *x, int64_t ld_x,
                                            const float *__restrict__ gw, float (&acc)[NT][RR], float (&ss)[NT],
                                            bool &waited)
{
    mv_unit<RR> U;
    for (int64_t u = threadIdx.x; u < n_units; u += blockDim.x) {
        unit_load<TYPE, RR, H>(rows, u, U);
        mv_wait(waited);
        if constexpr (A16)
            unit_dot_a16<TYPE, NT, RR>(U, u, (const uint8_t *)x, ld_x, 32 * n_units, acc);
        else
            unit_dot<TYPE, NT, RR, NORM>(U, u, (const float *)x, ld_x, gw, acc, ss);
    }
}

/* The row groups of a launch, RR rows each (G: rows(g) gives group g's
 * mv_rows, H rows per base; done(g, res, i) stores the group's results
 * res[t * RR + r] (res: a float array, or mv_partials), called by every
 * thread, i = threadIdx.x). The block
 * takes groups blockIdx.x, + gridDim.x, ...; its threads split each
 * group's 32-value units. Per group, res[t * RR + r] = dot(row r, x[t]), or
 * with the fused RMSNorm (NORM, gw = its weights, over the k values of x)
 * dot(row r, x[t] * gw) * rr_t, rr_t = 1 / sqrtf(sum(x[t]^2) / k + eps):
 * the same value as greta_gpu_rmsnorm then the product, rounded in another
 * order. Launched with gpu_launch_pdl, a block loads its first weights
 * while the previous kernel finishes (mv_wait). x, which that kernel
 * writes, is deliberately not __restrict__: a const __restrict__ pointer
 * lets the compiler load through the non-coherent path and move the loads
 * above the wait. */
template <int NT, int RR, int H, bool NORM, bool A16, class G>
__device__ __forceinline__ void mv_groups(const G &grp, int64_t n_groups, const void *x, int64_t ld_x,
                                          int64_t k, const float *__restrict__ gw, float eps)
{
    static_assert(!(NORM && A16), "the a16 activations are normalized already");
    constexpr int N = NT * RR + (NORM ? NT : 0);
    __shared__ float sm[2][MV3_BLOCK / GPU_MIN_WARP][N]; /* [group parity] */
    int par = 0;
    const int64_t n_units = k / 32;
    bool waited = false;
    for (int64_t g = blockIdx.x; g < n_groups; g += gridDim.x) {
        float acc[NT][RR], ss[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            ss[t] = 0.0f;
#pragma unroll
            for (int r = 0; r < RR; r++)
                acc[t][r] = 0.0f;
        }
        const mv_rows rows = grp.rows(g);
        if (rows.type == GGML_TYPE_Q6_K)
            group_units<GGML_TYPE_Q6_K, NT, RR, H, NORM, A16>(rows, n_units, x, ld_x, gw, acc, ss, waited);
        else
            group_units<GGML_TYPE_Q4_K, NT, RR, H, NORM, A16>(rows, n_units, x, ld_x, gw, acc, ss, waited);
        mv_wait(waited); /* threads without units: before the results are stored */
        float flat[N];
#pragma unroll
        for (int t = 0; t < NT; t++) {
#pragma unroll
            for (int r = 0; r < RR; r++)
                flat[t * RR + r] = acc[t][r];
            if (NORM)
                flat[NT * RR + t] = ss[t];
        }
        /* the next group writes the other half of sm, and the one after this
         * half only once every thread has passed the next barrier; with the
         * norm its sums of squares are partial sums like the products (one
         * barrier either way) */
        warp_partials<N>(flat, sm[par]);
        __syncthreads();
        const mv_partials<N> part{sm[par], (int)(blockDim.x / GRETA_WARP)};
        if constexpr (NORM)
            grp.done(g, mv_normed<N, NT * RR, RR>{part, (float)k, eps}, (int)threadIdx.x);
        else
            grp.done(g, part, (int)threadIdx.x);
        par ^= 1;
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

/* mv3_kernel's groups: group g is R rows of matrix m (A.end). */
template <int NT, bool EPI, int R> struct mv3_groups {
    const mv3_args &A;
    int accumulate;
    __device__ __forceinline__ int mat(int64_t g) const { return g < A.end[0] ? 0 : g < A.end[1] ? 1 : 2; }
    __device__ __forceinline__ int64_t first_row(int64_t g, int m) const
    {
        return (g - (m == 0 ? 0 : m == 1 ? A.end[0] : A.end[1])) * R;
    }
    __device__ __forceinline__ mv_rows rows(int64_t g) const
    {
        const int m = mat(g); /* block-uniform */
        const int64_t row0 = first_row(g, m);
        const uint8_t *w = m == 0 ? A.w[0] : m == 1 ? A.w[1] : A.w[2];
        const int64_t n = m == 0 ? A.n[0] : m == 1 ? A.n[1] : A.n[2];
        const int64_t rb = m == 0 ? A.row_bytes[0] : m == 1 ? A.row_bytes[1] : A.row_bytes[2];
        const int64_t left = n - 1 - row0;
        const mv_rows r = {w + row0 * rb, nullptr, rb, left < R ? (int)left : R,
                           m == 0 ? A.type[0] : m == 1 ? A.type[1] : A.type[2]};
        return r;
    }
    template <class Res> __device__ __forceinline__ void done(int64_t g, const Res &res, int i) const
    {
        const int m = mat(g);
        const int64_t row0 = first_row(g, m), n = m == 0 ? A.n[0] : m == 1 ? A.n[1] : A.n[2];
        const int t = i / R, r = i % R;
        if (i >= NT * R || row0 + r >= n)
            return;
        float v = res[i];
        const int64_t row = row0 + r;
        if (EPI) {
            const int d = (int)(row % A.head_dim);
            if ((m == 0 ? A.rope[0] : m == 1 ? A.rope[1] : A.rope[2]) && d < A.rope_dim) {
                /* the pair partner is the neighbouring row of the same group (R even, row0 even) */
                const float *c = A.cs + (int64_t)t * A.rope_dim + (d & ~1);
                v = rope_one(v, res[i ^ 1], (d & 1) == 0, c[0], c[1]);
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
};

/* The products of up to three matrices (mv3_args; A.end[2] groups of R
 * rows). */
template <int NT, bool NORM, bool EPI, int R = MV3_ROWS, int MINB = MV3_MIN_BLOCKS, bool A16 = false>
__global__ void __launch_bounds__(MV3_BLOCK, MINB)
mv3_kernel(const GPU_GRID_CONSTANT mv3_args A, const void *x, int64_t ld_x, int64_t k, int accumulate)
{
    const mv3_groups<NT, EPI, R> grp{A, accumulate};
    mv_groups<NT, R, R, NORM, A16>(grp, A.end[MV3_MAX_MATS - 1], x, ld_x, k, A.gamma, A.eps);
}

/* gate/up + SiLU groups: R rows of gate and the same rows of up
 * (res[t * 2R + j]: j < R gate, else up). */
template <int NT, int R> struct glu_groups {
    uint32_t type;
    const uint8_t *wg, *wu;
    int64_t row_bytes, n;
    float *out;
    int64_t ld_out;
    __device__ __forceinline__ mv_rows rows(int64_t g) const
    {
        const int64_t left = n - 1 - g * R;
        const mv_rows r = {wg + g * R * row_bytes, wu + g * R * row_bytes, row_bytes, left < R ? (int)left : R, type};
        return r;
    }
    template <class Res> __device__ __forceinline__ void done(int64_t g, const Res &res, int i) const
    {
        const int t = i / R, r = i % R;
        if (i < NT * R && g * R + r < n) {
            const float gv = res[t * 2 * R + r], uv = res[t * 2 * R + R + r];
            out[t * ld_out + g * R + r] = gv / (1.0f + expf(-gv)) * uv;
        }
    }
};

/* gate/up + SiLU over groups of R rows of each; with NORM, RMSNorm of x
 * (weights g) fused as in mv3_kernel. */
template <int NT, bool NORM, int R = MV3_GLU_ROWS, int MINB = MV3_MIN_BLOCKS, bool A16 = false>
__global__ void __launch_bounds__(MV3_BLOCK, MINB)
mv3_glu_kernel(uint32_t type, const uint8_t *__restrict__ wg, const uint8_t *__restrict__ wu, int64_t row_bytes,
               int64_t n, const void *x, int64_t ld_x, int64_t k, const float *__restrict__ g,
               float eps, float *__restrict__ out, int64_t ld_out)
{
    const glu_groups<NT, R> grp{type, wg, wu, row_bytes, n, out, ld_out};
    mv_groups<NT, 2 * R, R, NORM, A16>(grp, (n + R - 1) / R, x, ld_x, k, g, eps);
}

#endif
