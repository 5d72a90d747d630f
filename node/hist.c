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

json_t *
pm_hist_json(const pm_hist_t *h)
{
    json_t *le = json_array(), *b = json_array();
    uint64_t cum = 0;
    for (int i = 0; i < PM_HIST_N; i++) {
        cum += h->counts[i];
        json_array_append_new(le, json_real(s_bounds[i]));
        json_array_append_new(b, json_integer((json_int_t) cum));
    }
    return json_pack("{s:o,s:o,s:I,s:f}", "le_ms", le, "buckets", b, "count",
                     (json_int_t) h->count, "sum_ms", h->sum_ms);
}
