/*
 * prom.c - Prometheus text exposition (format 0.0.4) of the agent's typed
 * status snapshot (see prom.h), for the gateway's /metrics.
 *
 * Pure: functions of a FILE* and a pm_stats_t; no globals. The families
 * and their names come from the tables in stats.h, so a field of the
 * snapshot cannot exist without its metric.
 */
#include "prom.h"

#include <stdio.h>
#include <string.h>

void
pm_prom_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
pm_prom_label_value(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* "{labels}" or nothing. */
static void
s_braced(FILE *f, const char *labels)
{
    if (labels && *labels)
        fprintf(f, "{%s}", labels);
}

void
pm_prom_histogram(FILE *f, const char *name, const char *labels, const pm_hist_t *h)
{
    const char *l = labels ? labels : "", *sep = *l ? "," : "";
    uint64_t cum = 0;
    for (int i = 0; i < PM_HIST_N; i++) {
        cum += h->counts[i];
        fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, l, sep, pm_hist_bound(i) / 1000.0,
                (unsigned long long) cum);
    }
    fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, l, sep, (unsigned long long) h->count);
    fprintf(f, "%s_sum", name);
    s_braced(f, l);
    fprintf(f, " %g\n%s_count", h->sum_ms / 1000.0, name);
    s_braced(f, l);
    fprintf(f, " %llu\n", (unsigned long long) h->count);
}

/* The family's header when it differs from the last one written. */
static void
s_header(FILE *f, const char **last, const char *family, const char *type, const char *help)
{
    if (!*last || strcmp(*last, family) != 0)
        pm_prom_family(f, family, type, help);
    *last = family;
}

/* family{row,key="name"} v (row_first) or family{key="name",row} v. */
static void
s_item(FILE *f, const char *family, const char *row, int row_first, const char *key,
       const char *name, uint64_t v)
{
    fprintf(f, "%s{", family);
    if (row && row_first)
        fprintf(f, "%s,", row);
    fprintf(f, "%s=\"", key);
    pm_prom_label_value(f, name);
    fputc('"', f);
    if (row && !row_first)
        fprintf(f, ",%s", row);
    fprintf(f, "} %llu\n", (unsigned long long) v);
}

static void
s_info(FILE *f, const pm_stats_t *st)
{
    pm_prom_family(f, "pmesh_info", "gauge",
                   "The agent's node name, version, primary id space and what decides ownership.");
    const char *keys[] = {"node", "version", "id_space", "coordination"};
    const char *vals[] = {st->node, st->version, st->id_space, st->coord_desc};
    fputs("pmesh_info{", f);
    for (int i = 0; i < 4; i++) {
        fprintf(f, "%s%s=\"", i ? "," : "", keys[i]);
        pm_prom_label_value(f, vals[i] ? vals[i] : "");
        fputc('"', f);
    }
    fputs("} 1\n", f);
    if (!(st->parts & PM_STATS_COORD))
        return;
    pm_prom_family(f, "pmesh_coordination_info", "gauge",
                   "The configuration store this agent uses, its key prefix, node and process.");
    const char *ckeys[] = {"store", "prefix", "node", "pid"};
    const char *cvals[] = {st->co_store, st->co_prefix, st->co_node, st->co_pid};
    fputs("pmesh_coordination_info{", f);
    for (int i = 0; i < 4; i++) {
        fprintf(f, "%s%s=\"", i ? "," : "", ckeys[i]);
        pm_prom_label_value(f, cvals[i] ? cvals[i] : "");
        fputc('"', f);
    }
    fputs("} 1\n", f);
}

void
pm_prom_stats(FILE *f, const pm_stats_t *st)
{
    const char *last = NULL;
    s_info(f, st);
    pm_prom_family(f, "pmesh_promises", "gauge", "Promises held by this agent, by state.");
    for (int s = 0; s < PM_STATS_NSTATES; s++)
        s_item(f, "pmesh_promises", NULL, 0, "state", pm_state_name(PM_STATE_PENDING + s),
               st->promises[s]);
    pm_prom_family(f, "pmesh_operations_total", "counter",
                   "Requests the agent handled, by message type and result.");
    for (int t = 0; t < PM_MSG_TYPE_COUNT; t++) {
        if (!pm_stats_op_shown(t))
            continue;
        s_item(f, "pmesh_operations_total", "result=\"ok\"", 0, "type", pm_wire_type_name(t),
               st->ops_ok[t]);
        s_item(f, "pmesh_operations_total", "result=\"error\"", 0, "type", pm_wire_type_name(t),
               st->ops_error[t]);
    }

#define X(fl, part, path, jtype, mtype, family, label, div, help)                                  \
    if (st->parts & PM_STATS_##part) {                                                             \
        s_header(f, &last, family, PM_STATS_##mtype, help);                                        \
        fputs(family, f);                                                                          \
        s_braced(f, label);                                                                        \
        if ((div) == 1)                                                                            \
            fprintf(f, " %llu\n", (unsigned long long) st->fl);                                    \
        else                                                                                       \
            fprintf(f, " %.3f\n", (double) st->fl / (div));                                        \
    }
    PM_STATS_SCALARS(X)
#undef X

    if (st->parts & PM_STATS_MESH) {
#define X(fl, mtype, family, label, help)                                                          \
    s_header(f, &last, family, PM_STATS_##mtype, help);                                            \
    for (size_t i = 0; i < st->n_kinds; i++)                                                       \
        s_item(f, family, label, 1, "type", st->kinds[i].name, st->kinds[i].fl);
        PM_STATS_KIND_FIELDS(X)
#undef X
    }
    if (st->parts & PM_STATS_REPL) {
#define X(fl, mtype, family, label, help)                                                          \
    s_header(f, &last, family, PM_STATS_##mtype, help);                                            \
    for (size_t i = 0; i < st->n_backups; i++)                                                     \
        s_item(f, family, label, 0, "node", st->backups[i].node, st->backups[i].fl);
        PM_STATS_BACKUP_FIELDS(X)
#undef X
    }
    if (st->parts & PM_STATS_COORD) {
#define X(fl, mtype, family, label, help)                                                          \
    s_header(f, &last, family, PM_STATS_##mtype, help);                                            \
    for (size_t i = 0; i < st->n_spaces; i++)                                                      \
        s_item(f, family, label, 0, "space", st->spaces[i].space, st->spaces[i].fl);
        PM_STATS_SPACE_FIELDS(X)
#undef X
    }
    if (st->n_fns) {
#define X(fl, mtype, family, label, help)                                                          \
    s_header(f, &last, family, PM_STATS_##mtype, help);                                            \
    for (size_t i = 0; i < st->n_fns; i++)                                                         \
        s_item(f, family, label, 0, "function", st->fns[i].name, st->fns[i].fl);
        PM_STATS_FN_FIELDS(X)
#undef X
    }

    int any = 0;
    for (int t = 0; t < PM_MSG_TYPE_COUNT; t++)
        any |= st->op_ms[t].count != 0;
    if (any) {
        pm_prom_family(f, "pmesh_operation_duration_seconds", "histogram",
                       "Time from a request's arrival to its reply leaving the agent (durable "
                       "and replicated where it acknowledges a change), by type; awaits "
                       "excluded.");
        for (int t = 0; t < PM_MSG_TYPE_COUNT; t++) {
            if (!st->op_ms[t].count)
                continue;
            char labels[96];
            snprintf(labels, sizeof labels, "type=\"%s\"", pm_wire_type_name(t));
            pm_prom_histogram(f, "pmesh_operation_duration_seconds", labels, &st->op_ms[t]);
        }
    }
    if ((st->parts & PM_STATS_WAL) && (st->parts & PM_STATS_FSYNC)) {
        pm_prom_family(f, "pmesh_wal_fsync_duration_seconds", "histogram",
                       "Duration of WAL fsyncs.");
        pm_prom_histogram(f, "pmesh_wal_fsync_duration_seconds", NULL, &st->wal_fsync);
    }
}
