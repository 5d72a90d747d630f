/*
 * clock.h - the two clocks every module reads, in milliseconds: monotonic
 * for timeouts and intervals (never jumps), real time for what is stored or
 * shown (created_ms, deadlines that must survive a restart).
 */
#ifndef PM_CLOCK_H
#define PM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t
pm_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t
pm_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t
pm_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
