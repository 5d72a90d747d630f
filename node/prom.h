/*
 * prom.h - Prometheus text exposition (format 0.0.4) for the gateway's
 * /metrics: the agent's typed status snapshot (stats.h) as metric families,
 * and the helpers the gateway writes its own families with.
 *
 * Pure: each function writes to f and reads only its arguments.
 */
#ifndef PM_PROM_H
#define PM_PROM_H

#include "hist.h"
#include "stats.h"

#include <stdio.h>

/* The # HELP and # TYPE lines of a metric family. */
void pm_prom_family(FILE *f, const char *name, const char *type, const char *help);

/* s as a label value: backslash, quote and newline escaped. */
void pm_prom_label_value(FILE *f, const char *s);

/* A histogram as name_bucket / _sum / _count in seconds (the buckets
 * cumulative); labels ("a=\"b\"", or NULL) go in front of le. */
void pm_prom_histogram(FILE *f, const char *name, const char *labels, const pm_hist_t *h);

/* Every pmesh_* family of the agent's snapshot: each row of
 * PM_STATS_SCALARS (of the parts st has), promises by state, operations,
 * latencies, mesh messages by kind, backups, id spaces, functions, and
 * pmesh_info with the agent's names. */
void pm_prom_stats(FILE *f, const pm_stats_t *st);

#endif
