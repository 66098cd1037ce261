/* rng.c - Philox4x32-10, written from the published algorithm. */
#include "rng.h"

#define PHILOX_M0 0xD2511F53u /* multiplier of word 0 */
#define PHILOX_M1 0xCD9E8D57u /* multiplier of word 2 */
#define PHILOX_W0 0x9E3779B9u /* key bump, golden ratio */
#define PHILOX_W1 0xBB67AE85u /* key bump, sqrt(3) - 1 */

void greta_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

double greta_sampler_uniform(uint64_t seed, uint64_t seq_id, uint64_t step)
{
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)step, (uint32_t)(step >> 32), (uint32_t)seq_id,
                             (uint32_t)(seq_id >> 32)};
    uint32_t out[4];
    greta_philox4x32_10(ctr, key, out);
    uint64_t bits = ((uint64_t)out[0] << 21) ^ (out[1] >> 11);
    return (double)bits * 0x1.0p-53;
}
