/*
 * steptrace.h - where a chain step's time goes (bench/CHAIN-STEP.md): a
 * diagnosis build (CFLAGS='-O2 -g -DPM_STEPTRACE' make BUILD=build/trace)
 * records, at each point a step passes, the point's name, a key (the
 * step's input value, or its output for the points after the function ran)
 * and CLOCK_MONOTONIC in ns, which all processes of one machine share; every
 * process writes its marks at exit to $PM_STEPTRACE_DIR/PID.N. Without
 * PM_STEPTRACE the marks compile to nothing. tests/bench/steptrace.py joins
 * the files into a per-hop breakdown.
 */
#ifndef PM_STEPTRACE_H
#define PM_STEPTRACE_H

#ifdef PM_STEPTRACE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PM_STEPTRACE_MAX (1 << 20)
#define PM_STEPTRACE_KEY 40

typedef struct {
    const char *point;
    int64_t t_ns;
    char key[PM_STEPTRACE_KEY];
} pm_steptrace_rec_t;

/* One buffer per translation unit (static inline state): each dumps its own. */
static pm_steptrace_rec_t *pm_steptrace_buf;
static size_t pm_steptrace_n;

static void
pm_steptrace_dump(void)
{
    const char *dir = getenv("PM_STEPTRACE_DIR");
    if (!dir || !pm_steptrace_buf)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%d.%p", dir, (int) getpid(), (void *) &pm_steptrace_buf);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    for (size_t i = 0; i < pm_steptrace_n; i++)
        fprintf(f, "%s %lld %s\n", pm_steptrace_buf[i].point,
                (long long) pm_steptrace_buf[i].t_ns, pm_steptrace_buf[i].key);
    fclose(f);
}

static inline void
pm_steptrace(const char *point, const void *key, size_t len)
{
    if (!pm_steptrace_buf) {
        if (!getenv("PM_STEPTRACE_DIR") ||
            !(pm_steptrace_buf = calloc(PM_STEPTRACE_MAX, sizeof *pm_steptrace_buf)))
            return;
        atexit(pm_steptrace_dump);
    }
    if (pm_steptrace_n >= PM_STEPTRACE_MAX)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    pm_steptrace_rec_t *r = &pm_steptrace_buf[pm_steptrace_n++];
    r->point = point;
    r->t_ns = (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
    size_t n = len < PM_STEPTRACE_KEY - 1 ? len : PM_STEPTRACE_KEY - 1;
    for (size_t i = 0; i < n; i++) {
        char c = ((const char *) key)[i];
        r->key[i] = c > ' ' && c < 127 ? c : '_';
    }
    r->key[n] = 0;
}
#define PM_STEPTRACE_MARK(point, key, len) pm_steptrace(point, key, len)
#else
#define PM_STEPTRACE_MARK(point, key, len) ((void) 0)
#endif

#endif
