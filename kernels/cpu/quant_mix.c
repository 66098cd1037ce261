/* quant_mix.c - model file types and per-tensor type rules (see quant_mix.h). */
#include "quant_mix.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/quant.h"
#include "threads.h"

static const greta_ftype ftypes[] = {
    {"Q8_0", 7, GGML_TYPE_Q8_0},
    {"Q4_0", 2, GGML_TYPE_Q4_0},
    {"Q6_K", 18, GGML_TYPE_Q6_K},
    {"Q4_K_S", 14, GGML_TYPE_Q4_K},
    {"Q4_K_M", 15, GGML_TYPE_Q4_K},
    {"Q5_K_M", 17, GGML_TYPE_Q5_K},
};

const greta_ftype *greta_ftype_find(const char *name)
{
    for (size_t i = 0; i < sizeof ftypes / sizeof ftypes[0]; i++)
        if (strcmp(ftypes[i].name, name) == 0)
            return &ftypes[i];
    return NULL;
}

const greta_ftype *greta_ftype_at(unsigned i)
{
    return i < sizeof ftypes / sizeof ftypes[0] ? &ftypes[i] : NULL;
}

int greta_tensor_layer(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    const char *p = name + 4;
    long v = 0;
    if (*p < '0' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (v > 1000000)
            return -1;
        p++;
    }
    return *p == '.' ? (int)v : -1;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* llama.cpp's use_more_bits(i, n) of the _M mixtures. */
static bool more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

uint32_t greta_ftype_tensor_type(const greta_ftype *ft, const char *name, uint32_t n_dims,
                                 const uint64_t *ne, uint32_t n_layers, uint32_t *wanted)
{
    uint32_t t = ft->base;
    const int n = (int)n_layers, i = greta_tensor_layer(name);
    const bool is_m = ft->file_type == 15 || ft->file_type == 17;
    const bool is_ks = ft->file_type == 14;
    const bool attn_v = i >= 0 && ends_with(name, ".attn_v.weight");
    const bool ffn_down = i >= 0 && ends_with(name, ".ffn_down.weight");
    if (n_dims < 2)
        t = GGML_TYPE_F32;
    else if (strcmp(name, "output.weight") == 0)
        t = ft->base == GGML_TYPE_Q8_0 ? GGML_TYPE_Q8_0 : GGML_TYPE_Q6_K;
    else if (is_m && (attn_v || ffn_down) && more_bits(i, n))
        t = GGML_TYPE_Q6_K;
    else if (is_ks && ((attn_v && i < 4) || (ffn_down && i < n / 8)))
        t = GGML_TYPE_Q5_K;
    if (wanted)
        *wanted = t;
    if (ne[0] % ggml_type_block_elems(t) != 0)
        t = ne[0] % QK8_0 == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
    return t;
}

int greta_quant_threads_parse(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 1 || v > GRETA_THREADS_MAX)
        return 0;
    return (int)v;
}

int greta_quant_threads_default(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > GRETA_THREADS_MAX ? GRETA_THREADS_MAX : (int)n;
}
