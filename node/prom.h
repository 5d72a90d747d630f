/*
 * prom.h - Prometheus text exposition (format 0.0.4) for the gateway's
 * /metrics: the agent's status JSON (what `pmesh status` prints) as metric
 * families, and the helpers the gateway writes its own families with.
 *
 * Pure: each function writes to f and reads only its arguments.
 */
#ifndef PM_PROM_H
#define PM_PROM_H

#include <jansson.h>
#include <stdio.h>

/* The integer at a dotted path ("mesh.members.alive") of root; 0 if any
 * part is missing or the value is not an integer. */
json_int_t pm_prom_jint(json_t *root, const char *path);

/* The # HELP and # TYPE lines of a metric family. */
void pm_prom_family(FILE *f, const char *name, const char *type, const char *help);

/* s as a label value: backslash, quote and newline escaped. */
void pm_prom_label_value(FILE *f, const char *s);

/* One sample name{label="key"} per integer member of obj, except skip
 * (NULL: none). */
void pm_prom_samples_by_key(FILE *f, const char *name, json_t *obj, const char *label,
                            const char *skip);

/* A histogram in the agent's JSON form ({"le_ms":[..],"buckets":[cumulative
 * ..],"count":n,"sum_ms":x}) as name_bucket / _sum / _count in seconds;
 * labels ("a=\"b\"", or NULL) go in front of le. Nothing if malformed. */
void pm_prom_histogram(FILE *f, const char *name, const char *labels, json_t *h);

/* Every pmesh_* family of the agent's status document st (uptime,
 * promises, operations, sessions, WAL, mesh, replication, ...). */
void pm_prom_agent(FILE *f, json_t *st);

#endif
