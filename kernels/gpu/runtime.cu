/* runtime.cu - devices, memory, streams, events and graphs for the C side
 * (gpu_ops.h), over the gpu_* vocabulary of gpu_port.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_ops.h"
#include "gpu_port.h"

static gpu_stream_t stream_of(greta_gpu_stream *s) { return (gpu_stream_t)s; }

extern "C" int greta_gpu_device_count(void)
{
    int n = 0;
    if (gpu_device_count(&n) != gpu_success) {
        (void)gpu_last_error(); /* no driver: clear the sticky error */
        return 0;
    }
    return n;
}

extern "C" int greta_gpu_open(int device, greta_gpu_info *info, greta_error *err)
{
    const int n = greta_gpu_device_count();
    if (n == 0)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "no GPU found (no device or no driver)");
    if (device < 0 || device >= n)
        return greta_error_set(err, GRETA_ERR_INVALID, "GPU device %d does not exist (%d visible)", device, n);
    GPU_CHECK(gpu_set_device(device), err);
    gpu_device_props_t p;
    GPU_CHECK(gpu_get_device_props(&p, device), err);
    memset(info, 0, sizeof *info);
    info->device = device;
    snprintf(info->name, sizeof info->name, "%s", p.name);
#if defined(GRETA_GPU_HIP)
    snprintf(info->arch, sizeof info->arch, "%s", p.gcnArchName);
    snprintf(info->api, sizeof info->api, "hip");
#else
    snprintf(info->arch, sizeof info->arch, "sm_%d%d", p.major, p.minor);
    snprintf(info->api, sizeof info->api, "cuda");
#endif
    GPU_CHECK(gpu_driver_version(&info->driver_version), err);
    GPU_CHECK(gpu_runtime_version(&info->runtime_version), err);
    info->warp_size = p.warpSize;
    info->sm_count = p.multiProcessorCount;
    size_t free_b = 0, total_b = 0;
    GPU_CHECK(gpu_mem_get_info(&free_b, &total_b), err);
    info->free_mem = free_b;
    info->total_mem = total_b;
    if (info->warp_size != 32 && info->warp_size != 64)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED, "GPU '%s': warp size %d not supported", info->name,
                               info->warp_size);
    return 0;
}

extern "C" int greta_gpu_mem_info(uint64_t *free_bytes, uint64_t *total_bytes, greta_error *err)
{
    size_t f = 0, t = 0;
    GPU_CHECK(gpu_mem_get_info(&f, &t), err);
    *free_bytes = f;
    *total_bytes = t;
    return 0;
}

extern "C" int greta_gpu_alloc(void **p, size_t n, greta_error *err)
{
    *p = NULL;
    gpu_error_t e = gpu_malloc(p, n ? n : 1);
    if (e != gpu_success) {
        (void)gpu_last_error();
        *p = NULL;
        return greta_error_set(err, GRETA_ERR_NOMEM, "GPU allocation of %zu bytes failed: %s", n,
                               gpu_error_string(e));
    }
    return 0;
}

extern "C" void greta_gpu_free(void *p)
{
    if (p)
        (void)gpu_free(p);
}

extern "C" int greta_gpu_alloc_host(void **p, size_t n, greta_error *err)
{
    *p = NULL;
    gpu_error_t e = gpu_malloc_host(p, n ? n : 1);
    if (e != gpu_success) {
        (void)gpu_last_error();
        *p = NULL;
        return greta_error_set(err, GRETA_ERR_NOMEM, "page-locked host allocation of %zu bytes failed: %s", n,
                               gpu_error_string(e));
    }
    return 0;
}

extern "C" int greta_gpu_alloc_host_mapped(void **p, void **dev, size_t n, greta_error *err)
{
    *p = NULL;
    *dev = NULL;
    gpu_error_t e = gpu_malloc_host_mapped(p, n ? n : 1);
    if (e == gpu_success)
        e = gpu_host_device_pointer(dev, *p);
    if (e != gpu_success) {
        (void)gpu_last_error();
        if (*p)
            (void)gpu_free_host(*p);
        *p = NULL;
        *dev = NULL;
        return greta_error_set(err, GRETA_ERR_NOMEM, "mapped page-locked host allocation of %zu bytes failed: %s", n,
                               gpu_error_string(e));
    }
    return 0;
}

extern "C" void greta_gpu_free_host(void *p)
{
    if (p)
        (void)gpu_free_host(p);
}

extern "C" int greta_gpu_copy(void *dst, const void *src, size_t n, greta_gpu_copy_dir dir, greta_gpu_stream *s,
                              greta_error *err)
{
    if (n == 0)
        return 0;
    const gpu_copy_kind k = dir == GRETA_GPU_H2D ? gpu_h2d : dir == GRETA_GPU_D2H ? gpu_d2h : gpu_d2d;
    GPU_CHECK(gpu_memcpy_async(dst, src, n, k, stream_of(s)), err);
    return 0;
}

extern "C" int greta_gpu_memset(void *dst, int value, size_t n, greta_gpu_stream *s, greta_error *err)
{
    if (n == 0)
        return 0;
    GPU_CHECK(gpu_memset_async(dst, value, n, stream_of(s)), err);
    return 0;
}

extern "C" int greta_gpu_stream_create(greta_gpu_stream **s, greta_error *err)
{
    gpu_stream_t st;
    *s = NULL;
    GPU_CHECK(gpu_stream_create(&st), err);
    *s = (greta_gpu_stream *)st;
    return 0;
}

extern "C" void greta_gpu_stream_destroy(greta_gpu_stream **s)
{
    if (s && *s) {
        (void)gpu_stream_destroy(stream_of(*s));
        *s = NULL;
    }
}

extern "C" int greta_gpu_stream_sync(greta_gpu_stream *s, greta_error *err)
{
    GPU_CHECK(gpu_stream_synchronize(stream_of(s)), err);
    return 0;
}

extern "C" int greta_gpu_event_create(greta_gpu_event **e, greta_error *err)
{
    gpu_event_t ev;
    *e = NULL;
    GPU_CHECK(gpu_event_create(&ev), err);
    *e = (greta_gpu_event *)ev;
    return 0;
}

extern "C" void greta_gpu_event_destroy(greta_gpu_event **e)
{
    if (e && *e) {
        (void)gpu_event_destroy((gpu_event_t)*e);
        *e = NULL;
    }
}

extern "C" int greta_gpu_event_record(greta_gpu_event *e, greta_gpu_stream *s, greta_error *err)
{
    GPU_CHECK(gpu_event_record((gpu_event_t)e, stream_of(s)), err);
    return 0;
}

extern "C" int greta_gpu_event_sync(greta_gpu_event *e, greta_error *err)
{
    GPU_CHECK(gpu_event_synchronize((gpu_event_t)e), err);
    return 0;
}

extern "C" int greta_gpu_event_elapsed(greta_gpu_event *start, greta_gpu_event *end, float *ms, greta_error *err)
{
    GPU_CHECK(gpu_event_synchronize((gpu_event_t)end), err);
    GPU_CHECK(gpu_event_elapsed_ms(ms, (gpu_event_t)start, (gpu_event_t)end), err);
    return 0;
}

struct greta_gpu_graph {
    gpu_graph_t graph;
    gpu_graph_exec_t exec;
};

extern "C" int greta_gpu_graph_begin(greta_gpu_stream *s, greta_error *err)
{
    if (!s)
        return greta_error_set(err, GRETA_ERR_INVALID, "graph capture needs a created stream, not the default one");
    GPU_CHECK(gpu_stream_begin_capture(stream_of(s)), err);
    return 0;
}

extern "C" int greta_gpu_graph_end(greta_gpu_stream *s, greta_gpu_graph **g, greta_error *err)
{
    *g = NULL;
    gpu_graph_t graph;
    GPU_CHECK(gpu_stream_end_capture(stream_of(s), &graph), err);
    gpu_graph_exec_t exec;
    gpu_error_t e = gpu_graph_instantiate(&exec, graph);
    if (e != gpu_success) {
        (void)gpu_graph_destroy(graph);
        return greta_error_set(err, GRETA_ERR_GPU, "graph instantiate: %s", gpu_error_string(e));
    }
    greta_gpu_graph *r = (greta_gpu_graph *)malloc(sizeof *r);
    if (!r) {
        (void)gpu_graph_exec_destroy(exec);
        (void)gpu_graph_destroy(graph);
        return greta_error_set(err, GRETA_ERR_NOMEM, "graph: out of memory");
    }
    r->graph = graph;
    r->exec = exec;
    *g = r;
    return 0;
}

extern "C" int greta_gpu_graph_launch(greta_gpu_graph *g, greta_gpu_stream *s, greta_error *err)
{
    GPU_CHECK(gpu_graph_launch(g->exec, stream_of(s)), err);
    return 0;
}

extern "C" void greta_gpu_graph_destroy(greta_gpu_graph **g)
{
    if (g && *g) {
        (void)gpu_graph_exec_destroy((*g)->exec);
        (void)gpu_graph_destroy((*g)->graph);
        free(*g);
        *g = NULL;
    }
}

static int g_pdl; /* greta_gpu_set_pdl */

extern "C" int greta_gpu_set_pdl(int on)
{
#if defined(GRETA_GPU_HIP)
    (void)on;
    g_pdl = 0;
#else
    int dev = 0, major = 0;
    g_pdl = on && cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
#endif
    return g_pdl;
}

extern "C" int greta_gpu_pdl_enabled(void)
{
    return g_pdl;
}

static int g_decode_table; /* greta_gpu_set_decode_table */
static int g_sm_count;     /* of the device current when table 2 was set */

extern "C" int greta_gpu_set_decode_table(int table)
{
    int sms = 0;
    if (table == 2 && (gpu_sm_count(&sms) != gpu_success || sms <= 0)) {
        (void)gpu_last_error(); /* not left for the next launch's check */
        table = 1;              /* no SM count: table 2's grids cannot be sized */
    }
    g_decode_table = table == 1 || table == 2 ? table : 0;
    g_sm_count = g_decode_table == 2 ? sms : 0;
    return g_decode_table;
}

extern "C" int greta_gpu_decode_sm_count(void)
{
    return g_sm_count;
}

extern "C" int greta_gpu_decode_table(void)
{
    return g_decode_table;
}
