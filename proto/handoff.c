/* handoff.c - see handoff.h. */
#include "handoff.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "sampler/detmath.h"
#include "sampler/select.h"

static_assert(GRETA_SHM_MAX_BIAS == GRETA_SAMPLER_MAX_BIAS, "slot and sampler hold as many bias entries");
static_assert(sizeof(greta_shm_bias) == sizeof(greta_logit_bias), "bias entry layout");
static_assert(offsetof(greta_shm_bias, bias) == offsetof(greta_logit_bias, bias), "bias entry layout");

int greta_handoff_parse(const char *value, int *force_full, greta_error *err)
{
    *force_full = 0;
    if (!value || !*value || !strcmp(value, "auto"))
        return GRETA_OK;
    if (!strcmp(value, "full")) {
        *force_full = 1;
        return GRETA_OK;
    }
    return greta_error_set(err, GRETA_ERR_INVALID, "GRETA_HANDOFF: '%s' is not 'auto' or 'full'", value);
}

void greta_handoff_store_params(greta_shm_slot *sl, const greta_sampler_params *p)
{
    sl->temperature = p->temperature;
    sl->top_k = p->top_k;
    sl->top_p = p->top_p;
    sl->min_p = p->min_p;
    sl->repeat_penalty = p->repeat_penalty;
    sl->repeat_last_n = p->penalty_last_n;
    sl->seed = p->seed;
    sl->frequency_penalty = p->frequency_penalty;
    sl->presence_penalty = p->presence_penalty;
    sl->n_bias = p->n_bias <= GRETA_SHM_MAX_BIAS ? p->n_bias : GRETA_SHM_MAX_BIAS;
    memset(sl->bias, 0, sizeof sl->bias);
    for (uint32_t i = 0; i < sl->n_bias; i++) {
        sl->bias[i].token = p->bias[i].token;
        sl->bias[i].bias = p->bias[i].bias;
    }
}

void greta_handoff_load_params(const greta_shm_slot *sl, greta_sampler_params *p)
{
    greta_sampler_params_default(p);
    p->temperature = sl->temperature;
    p->top_k = sl->top_k;
    p->top_p = sl->top_p;
    p->min_p = sl->min_p;
    p->repeat_penalty = sl->repeat_penalty;
    p->penalty_last_n = sl->repeat_last_n;
    p->seed = sl->seed;
    p->frequency_penalty = sl->frequency_penalty;
    p->presence_penalty = sl->presence_penalty;
    p->n_bias = sl->n_bias <= GRETA_SHM_MAX_BIAS ? sl->n_bias : GRETA_SHM_MAX_BIAS;
    for (uint32_t i = 0; i < p->n_bias; i++) {
        p->bias[i].token = sl->bias[i].token;
        p->bias[i].bias = sl->bias[i].bias;
    }
}

int greta_handoff_mode(const greta_sampler_params *p, int32_t vocab, uint32_t topk_max, int force_full, int32_t *k)
{
    *k = 0;
    if (force_full)
        return GRETA_LOGITS_FULL;
    int32_t need = greta_sampler_reduced_count(p, vocab);
    if (need <= 0 || (uint32_t)need > topk_max)
        return GRETA_LOGITS_FULL;
    *k = need;
    return p->temperature == 0.0f ? GRETA_LOGITS_TOP1 : GRETA_LOGITS_TOPK;
}

int greta_handoff_reduce(const float *logits, int32_t vocab, int32_t k, int32_t *ids, float *vals, float *lse,
                         greta_error *err)
{
    assert(vocab >= 1 && k >= 1 && k <= vocab && k <= GRETA_SHM_MAX_TOPK);
    const size_t n = (size_t)vocab;
    float max = -INFINITY;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const float x = logits[i];
        bad |= isnan(x) || x == INFINITY;
        max = x > max ? x : max;
    }
    if (bad)
        return greta_error_set(err, GRETA_ERR_INVALID, "hand-off: a logit is NaN or +inf");
    if (max == -INFINITY)
        return greta_error_set(err, GRETA_ERR_INVALID, "hand-off: all %d logits are -inf", vocab);
    /* sum of exp(x - max) in the lane order of greta_det_sum */
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            a[j] += (double)greta_det_exp(logits[i + j] - max);
    double s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; i++)
        s += (double)greta_det_exp(logits[i] - max);
    *lse = (float)((double)max + log(s));
    greta_select_top(logits, NULL, n, (size_t)k, vals, ids);
    return GRETA_OK;
}
