/* rng.h - counter-based random numbers for the sampler (Philox4x32-10).
 *
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy
 * as 1, 2, 3", SC11) is a keyed bijection of a 128-bit counter: the output for
 * a counter depends on nothing else, so the draw for step k of a sequence can
 * be computed without the draws before it, on any machine, after any restart.
 * Integer arithmetic only; the results are the same everywhere (checked in
 * the tests against the Random123 known-answer vectors).
 *
 * Mapping used by the sampler (fixed: changing it changes every seeded output):
 *   key     = { seed low 32 bits, seed high 32 bits }
 *   counter = { step low, step high, seq_id low, seq_id high }
 *   u       = (out[0] << 21 ^ out[1] >> 11) * 2^-53, a double in [0, 1)
 *             (53 bits: out[0] gives the high 32, out[1] the low 21)
 */
#ifndef GRETA_SAMPLER_RNG_H
#define GRETA_SAMPLER_RNG_H

#include <stdint.h>

/* One Philox4x32-10 block: out = philox(ctr, key). */
void greta_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* The sampler's uniform draw in [0, 1) for (seed, seq_id, step), mapped as
 * described above. */
double greta_sampler_uniform(uint64_t seed, uint64_t seq_id, uint64_t step);

#endif
