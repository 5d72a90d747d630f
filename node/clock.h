/*
 * clock.h - the clocks every module reads, behind a seam: monotonic for
 * timeouts and intervals (never jumps), real time for what is stored or shown
 * (created_ms, deadlines that must survive a restart).
 *
 * The seam is an ops table. Production uses pm_clock_system (clock_gettime);
 * a test or the simulator installs another one, typically a pm_clock_fake_t
 * that it sets and advances, with drift and jumps of real time.
 *
 * Why a "current clock" and not a clock passed to every module: the clock is
 * read in ~80 places across most modules, and the simulator (issue 14) runs
 * one agent step at a time in one thread, so it can switch the current clock
 * (and random source, resolver) to that agent's before each step, as
 * FoundationDB's simulator switches the current process. Call sites stay
 * pm_mono_ms(); the hot path is one load and one predictable indirect call.
 * pm_clock_use must not run while other threads read the clock (production
 * sets nothing; the simulator is single-threaded).
 */
#ifndef PM_CLOCK_H
#define PM_CLOCK_H

#include <stdint.h>

typedef struct pm_clock {
    int64_t (*mono_us)(void *ctx); /* monotonic microseconds, never decreasing */
    int64_t (*real_ms)(void *ctx); /* wall-clock milliseconds since the epoch */
    void *ctx;
} pm_clock_t;

/* The system clock (CLOCK_MONOTONIC, CLOCK_REALTIME). */
extern const pm_clock_t pm_clock_system;
/* The clock pm_mono_ms and friends read; never NULL. */
extern const pm_clock_t *pm_clock_cur;

/* Installs c as the current clock (NULL: the system clock). Borrowed: c must
 * outlive its use. Returns the previous one. */
const pm_clock_t *pm_clock_use(const pm_clock_t *c);

static inline int64_t
pm_mono_us(void)
{
    const pm_clock_t *c = pm_clock_cur;
    return c->mono_us(c->ctx);
}

static inline int64_t
pm_mono_ms(void)
{
    return pm_mono_us() / 1000;
}

static inline int64_t
pm_real_ms(void)
{
    const pm_clock_t *c = pm_clock_cur;
    return c->real_ms(c->ctx);
}

/* A clock a test sets and advances. Monotonic time moves only by
 * pm_clock_fake_advance; real time moves with it, scaled by the drift, and
 * jumps by pm_clock_fake_jump (an NTP step, a VM resumed). */
typedef struct pm_clock_fake {
    pm_clock_t clock; /* install with pm_clock_use(&fake.clock) */
    int64_t mono_us;
    int64_t real_us;
    int64_t drift_ppm; /* real time runs this many parts per million fast (<0: slow) */
    int64_t drift_rem; /* sub-microsecond remainder of the drift, in 1e-6 us */
} pm_clock_fake_t;

/* Starts the fake at mono_us and real_ms, without drift. */
void pm_clock_fake_init(pm_clock_fake_t *f, int64_t mono_us, int64_t real_ms);
/* Moves both clocks on by us (>= 0) of monotonic time. */
void pm_clock_fake_advance(pm_clock_fake_t *f, int64_t us);
/* Real time runs ppm parts per million fast (negative: slow) from now on. */
void pm_clock_fake_drift(pm_clock_fake_t *f, int64_t ppm);
/* Steps real time by ms (either sign); monotonic time does not move. */
void pm_clock_fake_jump(pm_clock_fake_t *f, int64_t ms);

#endif
