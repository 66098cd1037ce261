/* ops.c - CPU reference ops (see ops.h for the rules every op follows). */
#include "ops.h"

#include <math.h>

void greta_cpu_dot_accum(float acc[GRETA_DOT_LANES], const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float p = a[i] * b[i];
        acc[i % GRETA_DOT_LANES] = acc[i % GRETA_DOT_LANES] + p;
    }
}

float greta_cpu_dot_reduce(const float acc[GRETA_DOT_LANES])
{
    float r[8], s[4], u[2];
    for (int k = 0; k < 8; k++)
        r[k] = (acc[k] + acc[k + 8]) + (acc[k + 16] + acc[k + 24]);
    for (int k = 0; k < 4; k++)
        s[k] = r[k] + r[k + 4];
    for (int k = 0; k < 2; k++)
        u[k] = s[k] + s[k + 2];
    return u[0] + u[1];
}

float greta_cpu_dot(const float *a, const float *b, int64_t n)
{
    float acc[GRETA_DOT_LANES] = {0};
    greta_cpu_dot_accum(acc, a, b, n);
    return greta_cpu_dot_reduce(acc);
}

void greta_cpu_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps)
{
    const float ss = greta_cpu_dot(x, x, n);
    const float mean = ss / (float)n;
    const float s = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) {
        const float xs = x[i] * s;
        out[i] = xs * w[i];
    }
}

void greta_cpu_rope_table(float *cs, int32_t rope_dim, int32_t pos, float freq_base, float freq_scale)
{
    for (int32_t i = 0; i < rope_dim / 2; i++) {
        const double inv_freq = pow((double)freq_base, -2.0 * i / (double)rope_dim);
        const double theta = (double)pos * (double)freq_scale * inv_freq;
        cs[2 * i] = (float)cos(theta);
        cs[2 * i + 1] = (float)sin(theta);
    }
}

void greta_cpu_rope(float *x, int32_t n_heads, int32_t head_dim, int32_t rope_dim, const float *cs)
{
    for (int32_t h = 0; h < n_heads; h++) {
        float *xh = x + (int64_t)h * head_dim;
        for (int32_t i = 0; i < rope_dim / 2; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
            const float a = x0 * c, b = x1 * s, e = x0 * s, f = x1 * c;
            xh[2 * i] = a - b;
            xh[2 * i + 1] = e + f;
        }
    }
}

void greta_cpu_softmax(float *x, int64_t n)
{
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] / sum;
}

void greta_cpu_swiglu(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        const float silu = g / (1.0f + expf(-g));
        gate[i] = silu * up[i];
    }
}

void greta_cpu_add(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

void greta_cpu_weighted_sum(float *out, const float *w, const float *v, int64_t n_pos,
                            int64_t stride, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = 0.0f;
    for (int64_t j = 0; j < n_pos; j++) {
        const float a = w[j];
        const float *vj = v + j * stride;
        for (int64_t i = 0; i < n; i++) {
            const float p = a * vj[i];
            out[i] = out[i] + p;
        }
    }
}

int64_t greta_cpu_argmax(const float *x, int64_t n)
{
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best]))
            best = i;
    return best < 0 ? 0 : best;
}
