/* select.h - partial selection of the best candidates (internal to the sampler).
 *
 * Candidates are parallel arrays: logit[n], id[n] and, where given, weight[n]
 * (moved along with them). "Better" is a total order: a higher logit, and on
 * equal logits the lower id (logits are never NaN here; ids are distinct).
 * Because the order is total, the selected set and its sorted order do not
 * depend on the algorithm or the input order.
 */
#ifndef GRETA_SAMPLER_SELECT_H
#define GRETA_SAMPLER_SELECT_H

#include <stddef.h>
#include <stdint.h>

/* Writes the k best of the n candidates l[n] / id[n] (id NULL: id = index)
 * to out_l[0..k) / out_id[0..k), sorted best first; the input is not changed
 * and must not overlap the output. 0 <= k <= n. k <= 1024: a heap scan (one
 * comparison for most candidates); larger k: all n are copied to out_l/out_id
 * (room for n needed) and a quickselect partitions them there. Only the k
 * selected are sorted. */
void greta_select_top(const float *l, const int32_t *id, size_t n, size_t k, float *out_l,
                      int32_t *out_id);

/* Top-p cut without sorting: finds the smallest m such that the m best
 * candidates' weights (weight[i] >= 0) add up to `target`, moves them to
 * [0, m) in some order with the m-th best at m - 1, and returns m (n when the
 * total stays below target). Expected O(n): a quickselect that keeps the
 * weight of the better side; ranges of 32 or fewer are sorted and walked.
 * Sums are taken in the order the partitions visit the candidates, so the
 * cut is exact up to double rounding (and deterministic). */
size_t greta_select_mass(float *logit, int32_t *id, float *weight, size_t n, double target);

/* Index of the best candidate of n >= 1. */
size_t greta_select_best(const float *logit, const int32_t *id, size_t n);

#endif
