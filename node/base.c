/*
 * base.c - see base.h.
 */
#include "base.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

void
pm_oom(const char *what)
{
    pm_log_error("PM-OOM", "out of memory (%s): stopping rather than drop acknowledged state",
                 what);
    abort();
}

void
pm_invariant_failed(const char *invariant, const char *file, int line)
{
    pm_log_error("PM-INVARIANT", "invariant broken: %s (%s:%d); stopping", invariant, file, line);
    abort();
}

void *
pm_xmalloc(size_t size, const char *what)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        pm_oom(what);
    return p;
}

void *
pm_xcalloc(size_t n, size_t size, const char *what)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        pm_oom(what);
    return p;
}

void *
pm_xrealloc(void *p, size_t size, const char *what)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        pm_oom(what);
    return q;
}

char *
pm_xstrdup(const char *s, const char *what)
{
    char *p = strdup(s);
    if (!p)
        pm_oom(what);
    return p;
}
