/*
 * clock.c - the system clock behind the clock seam, and the fake clock tests
 * and the simulator drive (clock.h). This and rand.c are the only places
 * that read the system's time.
 */
#include "clock.h"

#include <time.h>

static int64_t
s_sys_mono_us(void *ctx)
{
    (void) ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
s_sys_real_ms(void *ctx)
{
    (void) ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const pm_clock_t pm_clock_system = {.mono_us = s_sys_mono_us, .real_ms = s_sys_real_ms, .ctx = 0};
const pm_clock_t *pm_clock_cur = &pm_clock_system;

const pm_clock_t *
pm_clock_use(const pm_clock_t *c)
{
    const pm_clock_t *prev = pm_clock_cur;
    pm_clock_cur = c ? c : &pm_clock_system;
    return prev;
}

/* --- the fake ------------------------------------------------------------- */

/* Relaxed atomics: a helper thread (the WAL's fsync thread) may read the fake
 * while the test advances it. Advancing from two threads at once is not
 * supported. */
static int64_t
s_fake_mono_us(void *ctx)
{
    return __atomic_load_n(&((pm_clock_fake_t *) ctx)->mono_us, __ATOMIC_RELAXED);
}

static int64_t
s_fake_real_ms(void *ctx)
{
    int64_t us = __atomic_load_n(&((pm_clock_fake_t *) ctx)->real_us, __ATOMIC_RELAXED);
    /* Floor, so that real time before 1970 (a test's jump) still rounds down. */
    return us >= 0 ? us / 1000 : -((-us + 999) / 1000);
}

void
pm_clock_fake_init(pm_clock_fake_t *f, int64_t mono_us, int64_t real_ms)
{
    f->clock.mono_us = s_fake_mono_us;
    f->clock.real_ms = s_fake_real_ms;
    f->clock.ctx = f;
    f->mono_us = mono_us;
    f->real_us = real_ms * 1000;
    f->drift_ppm = 0;
    f->drift_rem = 0;
}

void
pm_clock_fake_advance(pm_clock_fake_t *f, int64_t us)
{
    if (us <= 0)
        return; /* monotonic time never goes back */
    __atomic_store_n(&f->mono_us, f->mono_us + us, __ATOMIC_RELAXED);
    /* Drift in exact integer steps: us * ppm millionths of a microsecond,
     * carried over so that many small steps add up like one big one. */
    int64_t extra = us * f->drift_ppm + f->drift_rem;
    f->drift_rem = extra % 1000000;
    __atomic_store_n(&f->real_us, f->real_us + us + extra / 1000000, __ATOMIC_RELAXED);
}

void
pm_clock_fake_drift(pm_clock_fake_t *f, int64_t ppm)
{
    f->drift_ppm = ppm;
}

void
pm_clock_fake_jump(pm_clock_fake_t *f, int64_t ms)
{
    __atomic_store_n(&f->real_us, f->real_us + ms * 1000, __ATOMIC_RELAXED);
}
