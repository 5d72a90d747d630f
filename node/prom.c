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

/* An info family: name{keys[i]="vals[i]",...} 1. */
static void
s_info_family(FILE *f, const char *name, const char *help, const char *const *keys,
              char *const *vals, int n)
{
    pm_prom_family(f, name, "gauge", help);
    fprintf(f, "%s{", name);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s%s=\"", i ? "," : "", keys[i]);
        pm_prom_label_value(f, vals[i] ? vals[i] : "");
        fputc('"', f);
    }
    fputs("} 1\n", f);
}

static void
s_info(FILE *f, const pm_stats_t *st)
{
    static const char *const keys[] = {"node", "version", "id_space", "coordination"};
    char *const vals[] = {st->node, st->version, st->id_space, st->coord_desc};
    s_info_family(f, "pmesh_info",
                  "The agent's node name, version, primary id space and what decides ownership.",
                  keys, vals, 4);
    if (!(st->parts & PM_STATS_COORD))
        return;
    static const char *const ckeys[] = {"store", "prefix", "node", "pid"};
    char *const cvals[] = {st->co_store, st->co_prefix, st->co_node, st->co_pid};
    s_info_family(f, "pmesh_coordination_info",
                  "The configuration store this agent uses, its key prefix, node and process.",
                  ckeys, cvals, 4);
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

    for (size_t i = 0; i < pm_stats_n_scalars; i++) {
        const pm_stats_row_t *r = &pm_stats_scalars[i];
        if (!(st->parts & (uint32_t) r->part))
            continue;
        s_header(f, &last, r->family, r->mtype, r->help);
        fputs(r->family, f);
        s_braced(f, r->label);
        if (r->div == 1)
            fprintf(f, " %llu\n", (unsigned long long) pm_stats_scalar(st, r));
        else
            fprintf(f, " %.3f\n", (double) pm_stats_scalar(st, r) / (double) r->div);
    }
    for (size_t l = 0; l < pm_stats_n_lists; l++) {
        const pm_stats_list_t *list = &pm_stats_lists[l];
        if (!(st->parts & (uint32_t) list->part))
            continue;
        for (size_t k = 0; k < list->n_rows; k++) {
            const pm_stats_row_t *r = &list->rows[k];
            s_header(f, &last, r->family, r->mtype, r->help);
            for (size_t i = 0; i < pm_stats_list_len(st, list); i++)
                s_item(f, r->family, r->label, list->row_first, list->key,
                       pm_stats_item_name(st, list, i), pm_stats_item(st, list, i, r));
        }
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
