/* gpu_port.h - the small neutral vocabulary the GPU sources are written in.
 *
 * Kernels are HIP-style C++ that compiles as CUDA (nvcc) and as HIP (clang
 * -x hip). Instead of renaming one vendor's API into the other, this header
 * gives both a few gpu_* names:
 *   errors   gpu_error_t, gpu_success, gpu_error_string(), gpu_last_error(),
 *            GPU_CHECK(call, err) -> returns GRETA_ERR_GPU with a message
 *   devices  gpu_device_count(), gpu_set_device(), gpu_device_props_t,
 *            gpu_get_device_props(), gpu_sm_count(), gpu_driver_version(),
 *            gpu_mem_get_info()
 *   memory   gpu_malloc(), gpu_free(), gpu_malloc_host(), gpu_free_host(),
 *            gpu_memcpy_async(dst, src, n, kind, stream), gpu_memset_async()
 *   streams  gpu_stream_t, gpu_stream_create/destroy/synchronize()
 *   events   gpu_event_t, gpu_event_create/destroy/record/synchronize(),
 *            gpu_event_elapsed_ms()
 *   graphs   gpu_graph_t, gpu_graph_exec_t, gpu_stream_begin_capture(),
 *            gpu_stream_end_capture(), gpu_graph_instantiate(),
 *            gpu_graph_launch(), gpu_graph_destroy(), gpu_graph_exec_destroy()
 *   device   GRETA_WARP (compile-time warp width), gpu_lanemask_t,
 *            GPU_FULL_MASK, gpu_shfl_xor(), gpu_warp_sum(), gpu_warp_max(),
 *            gpu_block_sum(), gpu_block_max(); gpu_half_to_float(),
 *            gpu_float_to_half() (fp16 bits, exact / round to nearest even);
 *            gpu_mul_rn(), gpu_add_rn(), gpu_sub_rn() (never fused into an FMA);
 *            gpu_dp2a_lo(), gpu_dp2a_hi() (16-bit x 8-bit dot products)
 *   params   GPU_GRID_CONSTANT: a const struct kernel parameter that device
 *            code may reference without a local copy (CUDA's
 *            __grid_constant__; HIP kernel arguments need nothing)
 *   PDL      gpu_launch_pdl(kernel, grid, block, stream, args...) and, in
 *            the kernel, gpu_pdl_wait() / gpu_pdl_trigger(): programmatic
 *            dependent launch (below)
 *   copies   gpu_cp_async16(), gpu_cp_async_commit(), gpu_cp_async_wait<N>():
 *            global -> shared memory, asynchronous where the GPU can
 *   smem     gpu_smem_opt_in<kernel>(bytes): dynamic shared memory above the
 *            default, asked once per kernel
 *   loads    gpu_load_stream16() (read once), gpu_prefetch_l2() (a hint)
 * Kernels launch with <<<grid, block, shmem, stream>>>, which both compilers
 * accept.
 *
 * Warp width: 64 on gfx9 / CDNA (gfx90a, gfx942), 32 on NVIDIA and on RDNA.
 * GRETA_WARP is exact in device code. HIP compiles host code once for all
 * offload targets, so in the HIP host pass it cannot know the target; there
 * it is 64 (our AMD targets) and host code that sizes launches must use the
 * runtime value instead (greta_gpu_info.warp_size, gpu_ops.h). No kernel
 * hard-codes 32 or a 32-bit lane mask: masks are gpu_lanemask_t (64-bit on
 * AMD) and reductions loop up to GRETA_WARP.
 */
#ifndef GRETA_GPU_PORT_H
#define GRETA_GPU_PORT_H

#include <atomic>

#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "common/error.h"
}

#if defined(__HIP__) || defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)
#define GRETA_GPU_HIP 1
#include <hip/hip_runtime.h>
#else
#define GRETA_GPU_CUDA 1
#include <cuda_runtime.h>
#endif

/* ---- warp width and lane masks ------------------------------------------- */
#if defined(GRETA_GPU_HIP)
#if defined(__GFX9__) || !defined(__HIP_DEVICE_COMPILE__)
#define GRETA_WARP 64
#else
#define GRETA_WARP 32 /* RDNA in wave32 mode */
#endif
typedef uint64_t gpu_lanemask_t;
#define GPU_FULL_MASK (~(gpu_lanemask_t)0)
#if defined(__HIP_DEVICE_COMPILE__) && defined(__AMDGCN_WAVEFRONT_SIZE)
static_assert(GRETA_WARP == __AMDGCN_WAVEFRONT_SIZE, "GRETA_WARP differs from the target's wavefront size");
#endif
#else
#define GRETA_WARP 32
typedef unsigned int gpu_lanemask_t;
#define GPU_FULL_MASK (~(gpu_lanemask_t)0)
#endif

#if defined(GRETA_GPU_HIP)
#define GPU_GRID_CONSTANT
#else
#define GPU_GRID_CONSTANT __grid_constant__
#endif

/* The narrowest warp of any target. Host code that must size a grid without
 * knowing the device's width sizes it for this one; kernels then loop. */
#define GPU_MIN_WARP 32

/* Most warps in a block of at most 1024 threads (sizes shared scratch). */
#define GPU_MAX_WARPS (1024 / GRETA_WARP)

/* ---- errors ---------------------------------------------------------------- */
#if defined(GRETA_GPU_HIP)
typedef hipError_t gpu_error_t;
#define gpu_success hipSuccess
static inline const char *gpu_error_string(gpu_error_t e) { return hipGetErrorString(e); }
static inline gpu_error_t gpu_last_error(void) { return hipGetLastError(); }
#else
typedef cudaError_t gpu_error_t;
#define gpu_success cudaSuccess
static inline const char *gpu_error_string(gpu_error_t e) { return cudaGetErrorString(e); }
static inline gpu_error_t gpu_last_error(void) { return cudaGetLastError(); }
#endif

/* Runs a runtime call; on failure fills err and returns GRETA_ERR_GPU from the
 * enclosing function (which must return int). Never aborts. */
#define GPU_CHECK(call, err)                                                        \
    do {                                                                            \
        gpu_error_t gpu_check_e_ = (call);                                          \
        if (gpu_check_e_ != gpu_success)                                            \
            return greta_error_set((err), GRETA_ERR_GPU, "%s: %s (%s:%d)", #call,   \
                                   gpu_error_string(gpu_check_e_), __FILE__, __LINE__); \
    } while (0)


/* ---- devices and memory --------------------------------------------------- */
#if defined(GRETA_GPU_HIP)
typedef hipDeviceProp_t gpu_device_props_t;
typedef hipStream_t gpu_stream_t;
typedef hipEvent_t gpu_event_t;
typedef hipGraph_t gpu_graph_t;
typedef hipGraphExec_t gpu_graph_exec_t;
typedef enum { gpu_h2d = hipMemcpyHostToDevice, gpu_d2h = hipMemcpyDeviceToHost,
               gpu_d2d = hipMemcpyDeviceToDevice } gpu_copy_kind;
static inline gpu_error_t gpu_device_count(int *n) { return hipGetDeviceCount(n); }
static inline gpu_error_t gpu_set_device(int d) { return hipSetDevice(d); }
static inline gpu_error_t gpu_get_device_props(gpu_device_props_t *p, int d) { return hipGetDeviceProperties(p, d); }
static inline gpu_error_t gpu_sm_count(int *n) /* of the current device */
{
    int d = 0;
    const gpu_error_t e = hipGetDevice(&d);
    return e != hipSuccess ? e : hipDeviceGetAttribute(n, hipDeviceAttributeMultiprocessorCount, d);
}
static inline gpu_error_t gpu_driver_version(int *v) { return hipDriverGetVersion(v); }
static inline gpu_error_t gpu_runtime_version(int *v) { return hipRuntimeGetVersion(v); }
static inline gpu_error_t gpu_mem_get_info(size_t *free_b, size_t *total_b) { return hipMemGetInfo(free_b, total_b); }
static inline gpu_error_t gpu_malloc(void **p, size_t n) { return hipMalloc(p, n); }
static inline gpu_error_t gpu_free(void *p) { return hipFree(p); }
static inline gpu_error_t gpu_malloc_host(void **p, size_t n) { return hipHostMalloc(p, n, hipHostMallocDefault); }
static inline gpu_error_t gpu_malloc_host_mapped(void **p, size_t n) { return hipHostMalloc(p, n, hipHostMallocMapped); }
static inline gpu_error_t gpu_host_device_pointer(void **d, void *h) { return hipHostGetDevicePointer(d, h, 0); }
static inline gpu_error_t gpu_free_host(void *p) { return hipHostFree(p); }
static inline gpu_error_t gpu_memcpy_async(void *dst, const void *src, size_t n, gpu_copy_kind k, gpu_stream_t s)
{ return hipMemcpyAsync(dst, src, n, (hipMemcpyKind)k, s); }
static inline gpu_error_t gpu_memset_async(void *dst, int v, size_t n, gpu_stream_t s) { return hipMemsetAsync(dst, v, n, s); }
static inline gpu_error_t gpu_stream_create(gpu_stream_t *s) { return hipStreamCreateWithFlags(s, hipStreamNonBlocking); }
static inline gpu_error_t gpu_stream_destroy(gpu_stream_t s) { return hipStreamDestroy(s); }
static inline gpu_error_t gpu_stream_synchronize(gpu_stream_t s) { return hipStreamSynchronize(s); }
static inline gpu_error_t gpu_event_create(gpu_event_t *e) { return hipEventCreate(e); }
static inline gpu_error_t gpu_event_destroy(gpu_event_t e) { return hipEventDestroy(e); }
static inline gpu_error_t gpu_event_record(gpu_event_t e, gpu_stream_t s) { return hipEventRecord(e, s); }
static inline gpu_error_t gpu_event_synchronize(gpu_event_t e) { return hipEventSynchronize(e); }
static inline gpu_error_t gpu_event_elapsed_ms(float *ms, gpu_event_t a, gpu_event_t b) { return hipEventElapsedTime(ms, a, b); }
static inline gpu_error_t gpu_stream_begin_capture(gpu_stream_t s) { return hipStreamBeginCapture(s, hipStreamCaptureModeThreadLocal); }
static inline gpu_error_t gpu_stream_end_capture(gpu_stream_t s, gpu_graph_t *g) { return hipStreamEndCapture(s, g); }
static inline gpu_error_t gpu_graph_instantiate(gpu_graph_exec_t *x, gpu_graph_t g) { return hipGraphInstantiate(x, g, NULL, NULL, 0); }
static inline gpu_error_t gpu_graph_launch(gpu_graph_exec_t x, gpu_stream_t s) { return hipGraphLaunch(x, s); }
static inline gpu_error_t gpu_graph_destroy(gpu_graph_t g) { return hipGraphDestroy(g); }
static inline gpu_error_t gpu_graph_exec_destroy(gpu_graph_exec_t x) { return hipGraphExecDestroy(x); }
#else
typedef cudaDeviceProp gpu_device_props_t;
typedef cudaStream_t gpu_stream_t;
typedef cudaEvent_t gpu_event_t;
typedef cudaGraph_t gpu_graph_t;
typedef cudaGraphExec_t gpu_graph_exec_t;
typedef enum { gpu_h2d = cudaMemcpyHostToDevice, gpu_d2h = cudaMemcpyDeviceToHost,
               gpu_d2d = cudaMemcpyDeviceToDevice } gpu_copy_kind;
static inline gpu_error_t gpu_device_count(int *n) { return cudaGetDeviceCount(n); }
static inline gpu_error_t gpu_set_device(int d) { return cudaSetDevice(d); }
static inline gpu_error_t gpu_get_device_props(gpu_device_props_t *p, int d) { return cudaGetDeviceProperties(p, d); }
static inline gpu_error_t gpu_sm_count(int *n) /* of the current device */
{
    int d = 0;
    const gpu_error_t e = cudaGetDevice(&d);
    return e != cudaSuccess ? e : cudaDeviceGetAttribute(n, cudaDevAttrMultiProcessorCount, d);
}
static inline gpu_error_t gpu_driver_version(int *v) { return cudaDriverGetVersion(v); }
static inline gpu_error_t gpu_runtime_version(int *v) { return cudaRuntimeGetVersion(v); }
static inline gpu_error_t gpu_mem_get_info(size_t *free_b, size_t *total_b) { return cudaMemGetInfo(free_b, total_b); }
static inline gpu_error_t gpu_malloc(void **p, size_t n) { return cudaMalloc(p, n); }
static inline gpu_error_t gpu_free(void *p) { return cudaFree(p); }
static inline gpu_error_t gpu_malloc_host(void **p, size_t n) { return cudaMallocHost(p, n); }
static inline gpu_error_t gpu_malloc_host_mapped(void **p, size_t n) { return cudaHostAlloc(p, n, cudaHostAllocMapped); }
static inline gpu_error_t gpu_host_device_pointer(void **d, void *h) { return cudaHostGetDevicePointer(d, h, 0); }
static inline gpu_error_t gpu_free_host(void *p) { return cudaFreeHost(p); }
static inline gpu_error_t gpu_memcpy_async(void *dst, const void *src, size_t n, gpu_copy_kind k, gpu_stream_t s)
{ return cudaMemcpyAsync(dst, src, n, (cudaMemcpyKind)k, s); }
static inline gpu_error_t gpu_memset_async(void *dst, int v, size_t n, gpu_stream_t s) { return cudaMemsetAsync(dst, v, n, s); }
static inline gpu_error_t gpu_stream_create(gpu_stream_t *s) { return cudaStreamCreateWithFlags(s, cudaStreamNonBlocking); }
static inline gpu_error_t gpu_stream_destroy(gpu_stream_t s) { return cudaStreamDestroy(s); }
static inline gpu_error_t gpu_stream_synchronize(gpu_stream_t s) { return cudaStreamSynchronize(s); }
static inline gpu_error_t gpu_event_create(gpu_event_t *e) { return cudaEventCreate(e); }
static inline gpu_error_t gpu_event_destroy(gpu_event_t e) { return cudaEventDestroy(e); }
static inline gpu_error_t gpu_event_record(gpu_event_t e, gpu_stream_t s) { return cudaEventRecord(e, s); }
static inline gpu_error_t gpu_event_synchronize(gpu_event_t e) { return cudaEventSynchronize(e); }
static inline gpu_error_t gpu_event_elapsed_ms(float *ms, gpu_event_t a, gpu_event_t b) { return cudaEventElapsedTime(ms, a, b); }
static inline gpu_error_t gpu_stream_begin_capture(gpu_stream_t s) { return cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal); }
static inline gpu_error_t gpu_stream_end_capture(gpu_stream_t s, gpu_graph_t *g) { return cudaStreamEndCapture(s, g); }
static inline gpu_error_t gpu_graph_instantiate(gpu_graph_exec_t *x, gpu_graph_t g) { return cudaGraphInstantiate(x, g, 0); }
static inline gpu_error_t gpu_graph_launch(gpu_graph_exec_t x, gpu_stream_t s) { return cudaGraphLaunch(x, s); }
static inline gpu_error_t gpu_graph_destroy(gpu_graph_t g) { return cudaGraphDestroy(g); }
static inline gpu_error_t gpu_graph_exec_destroy(gpu_graph_exec_t x) { return cudaGraphExecDestroy(x); }
#endif

/* ---- asynchronous copies into shared memory ------------------------------
 * gpu_cp_async16(dst, src, n) copies n (0..16) bytes from global src to
 * shared dst (both 16-byte aligned; src readable even when n is 0) and
 * zero-fills the rest of the 16 bytes. On NVIDIA sm_80+ it returns at once
 * (cp.async, L1 bypassed): gpu_cp_async_commit() closes the calling
 * thread's group of copies and gpu_cp_async_wait<N>() returns once at most
 * N of its groups are still in flight; a __syncthreads() after it makes
 * every thread's copies visible. Elsewhere (HIP, older NVIDIA GPUs) the
 * copy is done before gpu_cp_async16 returns and the other two do
 * nothing, so the same pipelined code runs, without the overlap. */
__device__ inline void gpu_cp_async16(void *dst, const void *src, int n)
{
#if defined(GRETA_GPU_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(n) : "memory");
#else
    uint8_t *o = (uint8_t *)dst;
    const uint8_t *i = (const uint8_t *)src;
    if (n == 16) {
        *(uint4 *)o = *(const uint4 *)i;
    } else {
        for (int j = 0; j < 16; j++)
            o[j] = j < n ? i[j] : 0;
    }
#endif
}

__device__ inline void gpu_cp_async_commit(void)
{
#if defined(GRETA_GPU_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N> __device__ inline void gpu_cp_async_wait(void)
{
#if defined(GRETA_GPU_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/* A 16-byte load of data read once (NVIDIA: ld.global.cs, evict first
 * from L1 and L2, so a stream does not push out what the next kernels
 * read); a plain load elsewhere. Not for data the previous kernel may still
 * write before the early-launch wait. */
__device__ inline uint4 gpu_load_stream16(const void *p)
{
#if defined(GRETA_GPU_CUDA)
    return __ldcs((const uint4 *)p);
#else
    return *(const uint4 *)p;
#endif
}

/* A hint: the bytes at p (their 32-byte sector at least) into the L2 cache
 * (NVIDIA); nothing elsewhere. It changes no load's result (L2 is where
 * every write lands); p must be an address the kernel may read. */
__device__ inline void gpu_prefetch_l2(const void *p)
{
#if defined(GRETA_GPU_CUDA) && defined(__CUDA_ARCH__)
    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p));
#else
    (void)p;
#endif
}

/* ---- programmatic dependent launch ------------------------------------------
 * A kernel launched with gpu_launch_pdl may start while the kernel before
 * it in the stream is still running (NVIDIA sm_90+: the launch attribute
 * "programmatic stream serialization"; stream capture records it as a
 * programmatic graph edge): once every block of the previous kernel has
 * called gpu_pdl_trigger() (or exited). Before gpu_pdl_wait() returns, the
 * previous kernel has completed and its writes are visible. So a kernel
 * launched this way must call gpu_pdl_wait() before it reads anything the
 * previous kernel writes (through pointers that are not const __restrict__:
 * those the compiler may read early, through the non-coherent cache) and
 * before it writes anything that kernel reads;
 * what it does before (loading weights) overlaps the previous kernel's
 * tail and the launch latency. Kernels call gpu_pdl_trigger() once they no
 * longer need their SM slots to themselves (after their own wait), so at
 * most the next kernel waits beside them; the RMSNorm triggers before its
 * wait (rmsnorm.cu), so the product after it can start while the product
 * before it drains. Either way a kernel's reads after its wait follow the
 * completion of every kernel before it (the previous one completes only
 * after its own wait), so before the wait a kernel must read only data no
 * earlier kernel of the chain writes (weights). Without the attribute (an
 * older GPU, a plain launch) or on HIP (no equivalent: a plain launch) both
 * calls do nothing. */
__device__ inline void gpu_pdl_wait(void)
{
#if defined(GRETA_GPU_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ inline void gpu_pdl_trigger(void)
{
#if defined(GRETA_GPU_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/* Whether gpu_launch_pdl asks for early launch (greta_gpu_set_pdl,
 * runtime.cu; default off): off, it is a plain launch. */
extern "C" int greta_gpu_pdl_enabled(void);

template <typename... KArgs, typename... Args>
static inline gpu_error_t gpu_launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, gpu_stream_t stream,
                                         Args... args)
{
#if defined(GRETA_GPU_HIP)
    kernel<<<grid, block, 0, stream>>>(((KArgs)args)...);
    return hipGetLastError();
#else
    if (!greta_gpu_pdl_enabled()) {
        kernel<<<grid, block, 0, stream>>>(((KArgs)args)...);
        return cudaGetLastError();
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = 0;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, kernel, ((KArgs)args)...);
#endif
}

/* Lets kernel K launch with `bytes` of dynamic shared memory: NVIDIA needs
 * an opt-in above 48 KiB, an attribute of the function, so it is set on the
 * first call that asks for more than before and the later ones return at
 * once (the processes use one device). HIP: nothing to do. */
template <auto K> static inline gpu_error_t gpu_smem_opt_in(int bytes)
{
#if defined(GRETA_GPU_HIP)
    (void)bytes;
    return hipSuccess;
#else
    static std::atomic<int> granted{48 * 1024};
    if (bytes <= granted.load(std::memory_order_acquire))
        return cudaSuccess;
    const cudaError_t e = cudaFuncSetAttribute(K, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (e == cudaSuccess)
        granted.store(bytes, std::memory_order_release);
    return e;
#endif
}

/* ---- device-side helpers -------------------------------------------------- */
#if defined(GRETA_GPU_HIP)
#include <hip/hip_fp16.h>
#else
#include <cuda_fp16.h>
#endif

/* Exact fp16 bits -> fp32 (hardware conversion; same value as
 * greta_fp16_to_f32). */
__device__ inline float gpu_half_to_float(uint16_t h)
{
    __half_raw r;
    r.x = h;
    return __half2float(__half(r));
}

/* fp32 -> fp16 bits, round to nearest even (as greta_f32_to_fp16). */
__device__ inline uint16_t gpu_float_to_half(float f)
{
    __half_raw r = __half_raw(__float2half_rn(f));
    return r.x;
}

/* Products and differences that must not be contracted into an FMA. */
#if defined(GRETA_GPU_HIP)
__device__ inline float gpu_mul_rn(float a, float b)
{
#pragma clang fp contract(off)
    return a * b;
}
__device__ inline float gpu_sub_rn(float a, float b)
{
#pragma clang fp contract(off)
    return a - b;
}
__device__ inline float gpu_add_rn(float a, float b)
{
#pragma clang fp contract(off)
    return a + b;
}
#else
__device__ inline float gpu_mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline float gpu_add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline float gpu_sub_rn(float a, float b) { return __fsub_rn(a, b); }
#endif

#if defined(GRETA_GPU_HIP)
__device__ inline float gpu_shfl_xor(float v, int lane_mask) { return __shfl_xor(v, lane_mask, GRETA_WARP); }
__device__ inline int gpu_shfl_xor(int v, int lane_mask) { return __shfl_xor(v, lane_mask, GRETA_WARP); }
#else
__device__ inline float gpu_shfl_xor(float v, int lane_mask) { return __shfl_xor_sync(GPU_FULL_MASK, v, lane_mask, GRETA_WARP); }
__device__ inline int gpu_shfl_xor(int v, int lane_mask) { return __shfl_xor_sync(GPU_FULL_MASK, v, lane_mask, GRETA_WARP); }
#endif

/* c + the two signed 16-bit halves of a times the signed bytes 0, 1 (lo)
 * or 2, 3 (hi) of b, low half with the lower byte. */
__device__ inline int gpu_dp2a_lo(uint32_t a, uint32_t b, int c)
{
#if defined(GRETA_GPU_CUDA)
    return __dp2a_lo((int)a, (int)b, c);
#else
    return c + (int)(int16_t)(a & 0xffffu) * (int)(int8_t)(b & 0xffu) +
           (int)(int16_t)(a >> 16) * (int)(int8_t)((b >> 8) & 0xffu);
#endif
}

__device__ inline int gpu_dp2a_hi(uint32_t a, uint32_t b, int c)
{
#if defined(GRETA_GPU_CUDA)
    return __dp2a_hi((int)a, (int)b, c);
#else
    return c + (int)(int16_t)(a & 0xffffu) * (int)(int8_t)((b >> 16) & 0xffu) +
           (int)(int16_t)(a >> 16) * (int)(int8_t)(b >> 24);
#endif
}

/* Butterfly reductions: every lane ends with the result. */
__device__ inline float gpu_warp_sum(float v)
{
#pragma unroll
    for (int m = GRETA_WARP / 2; m > 0; m >>= 1)
        v += gpu_shfl_xor(v, m);
    return v;
}

__device__ inline float gpu_warp_max(float v)
{
#pragma unroll
    for (int m = GRETA_WARP / 2; m > 0; m >>= 1)
        v = fmaxf(v, gpu_shfl_xor(v, m));
    return v;
}

/* Block-wide reductions; blockDim.x a multiple of GRETA_WARP; scratch holds
 * GPU_MAX_WARPS floats. Every thread gets the result. Contains barriers:
 * call from all threads. */
__device__ inline float gpu_block_sum(float v, float *scratch)
{
    const int lane = threadIdx.x % GRETA_WARP, warp = threadIdx.x / GRETA_WARP;
    const int n_warps = blockDim.x / GRETA_WARP;
    v = gpu_warp_sum(v);
    __syncthreads(); /* scratch may still be read by an earlier call */
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : 0.0f;
    return gpu_warp_sum(v);
}

__device__ inline float gpu_block_max(float v, float *scratch)
{
    const int lane = threadIdx.x % GRETA_WARP, warp = threadIdx.x / GRETA_WARP;
    const int n_warps = blockDim.x / GRETA_WARP;
    v = gpu_warp_max(v);
    __syncthreads();
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : -INFINITY;
    return gpu_warp_max(v);
}

#endif
