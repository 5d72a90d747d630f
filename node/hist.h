/*
 * hist.h - a fixed-bucket latency histogram (Prometheus style: cumulative
 * buckets, count and sum), cheap enough to update on every operation.
 */
#ifndef PM_HIST_H
#define PM_HIST_H

#include <stdint.h>

/* Bucket upper bounds in milliseconds: 100 us to 2.5 s, roughly x2.5 apart,
 * which spans a cached get (~0.05 ms) to a slow fsync (~1 s). */
#define PM_HIST_N 14

typedef struct pm_hist {
    uint64_t counts[PM_HIST_N + 1]; /* per bucket, the last one is +Inf; not cumulative */
    uint64_t count;
    double sum_ms;
} pm_hist_t;

/* Records one observation of ms milliseconds. */
void pm_hist_add(pm_hist_t *h, double ms);
/* The upper bound of bucket i (0 <= i < PM_HIST_N) in milliseconds. */
double pm_hist_bound(int i);

#endif
