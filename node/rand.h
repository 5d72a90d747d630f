/*
 * rand.h - the random source every agent module draws from, behind a seam.
 * Production uses pm_rand_system (getrandom(2)); a test or the simulator
 * installs a seeded generator (pm_rand_seeded_t, xoshiro256** seeded through
 * splitmix64), so that the same seed gives the same run bit for bit.
 *
 * Like the clock (clock.h) this is a "current source" that the simulator
 * switches to the agent it is about to step, so call sites need no context
 * argument. pm_rand_use must not run while other threads draw.
 */
#ifndef PM_RAND_H
#define PM_RAND_H

#include <stddef.h>
#include <stdint.h>

typedef struct pm_rand {
    void (*bytes)(void *ctx, void *buf, size_t n); /* fills buf; never fails */
    void *ctx;
} pm_rand_t;

/* getrandom(2); should the kernel refuse (no entropy source, ancient kernel),
 * a generator seeded from the time and the pid, with one warning. */
extern const pm_rand_t pm_rand_system;

/* Installs r as the current source (NULL: the system one). Borrowed: r must
 * outlive its use. Returns the previous one. */
const pm_rand_t *pm_rand_use(const pm_rand_t *r);

/* n random bytes from the current source. */
void pm_rand_bytes(void *buf, size_t n);
/* A random 64-bit value from the current source. */
uint64_t pm_rand_u64(void);

/* A deterministic generator: xoshiro256** (Blackman, Vigna), its state
 * seeded by splitmix64 as its authors recommend. */
typedef struct pm_rand_seeded {
    pm_rand_t rand; /* install with pm_rand_use(&g.rand) */
    uint64_t s[4];
} pm_rand_seeded_t;

void pm_rand_seeded_init(pm_rand_seeded_t *g, uint64_t seed);
/* The next value of g itself (not the current source). */
uint64_t pm_rand_seeded_next(pm_rand_seeded_t *g);

/* splitmix64: one step of the seed expander; also a cheap hash of a counter. */
uint64_t pm_splitmix64(uint64_t *state);

#endif
