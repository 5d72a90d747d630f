/*
 * dur.c - duration parsing ("250ms", "30s", "5m", "2h", bare milliseconds),
 * the one spelling of time used by flags, config, CLI and HTTP bodies.
 */
#include "pmesh.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
pm_parse_duration(const char *text, int64_t *ms)
{
    if (!text || !*text || *text == '-' || *text == '+')
        return -1;
    errno = 0;
    char *end;
    long long n = strtoll(text, &end, 10);
    if (end == text || errno)
        return -1;
    int64_t unit;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        unit = 3600 * 1000;
    else
        return -1;
    /* Cap at ~100 years so later additions to "now" cannot overflow. */
    if (n > (int64_t) 3153600000000LL / unit)
        return -1;
    *ms = (int64_t) n * unit;
    return 0;
}
