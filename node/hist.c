/*
 * hist.c - see hist.h.
 */
#include "hist.h"

static const double s_bounds[PM_HIST_N] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                           25,  50,   100, 250, 500, 1000, 2500};

void
pm_hist_add(pm_hist_t *h, double ms)
{
    int i = 0;
    while (i < PM_HIST_N && ms > s_bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum_ms += ms;
}

double
pm_hist_bound(int i)
{
    return s_bounds[i];
}
