/*
 * prom.c - Prometheus text exposition (format 0.0.4) of the agent's status
 * JSON (see prom.h), for the gateway's /metrics.
 *
 * Pure: functions of a FILE* and a jansson document; no globals.
 */
#include "prom.h"

#include <stdio.h>
#include <string.h>

json_int_t
pm_prom_jint(json_t *root, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = root;
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); part && v;
         part = strtok_r(NULL, ".", &save))
        v = json_object_get(v, part);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

void
pm_prom_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A Prometheus label value: backslash, quote and newline escaped. */
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

/* One sample per key of obj (integer values), labelled label="key". */
void
pm_prom_samples_by_key(FILE *f, const char *name, json_t *obj, const char *label, const char *skip)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (!json_is_integer(v) || (skip && strcmp(k, skip) == 0))
            continue;
        fprintf(f, "%s{%s=\"", name, label);
        pm_prom_label_value(f, k);
        fprintf(f, "\"} %lld\n", (long long) json_integer_value(v));
    }
}

/* One histogram from the agent's JSON form ({"le_ms":[..],"buckets":[cumulative..],
 * "count":n,"sum_ms":x}) as Prometheus samples in seconds. */
void
pm_prom_histogram(FILE *f, const char *name, const char *labels, json_t *h)
{
    json_t *le = json_object_get(h, "le_ms"), *b = json_object_get(h, "buckets");
    if (!json_is_array(le) || !json_is_array(b))
        return;
    const char *sep = labels && *labels ? "," : "";
    for (size_t i = 0; i < json_array_size(le) && i < json_array_size(b); i++)
        fprintf(f, "%s_bucket{%s%sle=\"%g\"} %lld\n", name, labels ? labels : "", sep,
                json_number_value(json_array_get(le, i)) / 1000.0,
                (long long) json_integer_value(json_array_get(b, i)));
    fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", name, labels ? labels : "", sep,
            (long long) pm_prom_jint(h, "count"));
    int lab = labels && *labels;
    fprintf(f, "%s_sum%s%s%s %g\n", name, lab ? "{" : "", lab ? labels : "", lab ? "}" : "",
            json_number_value(json_object_get(h, "sum_ms")) / 1000.0);
    fprintf(f, "%s_count%s%s%s %lld\n", name, lab ? "{" : "", lab ? labels : "", lab ? "}" : "",
            (long long) pm_prom_jint(h, "count"));
}

void
pm_prom_agent(FILE *f, json_t *st)
{
    json_t *v;
    fprintf(f, "# HELP pmesh_uptime_seconds Seconds since the agent started.\n"
               "# TYPE pmesh_uptime_seconds gauge\npmesh_uptime_seconds %.3f\n",
            (double) pm_prom_jint(st, "uptime_ms") / 1000.0);
    if ((v = json_object_get(st, "promises"))) {
        pm_prom_family(f, "pmesh_promises", "gauge", "Promises held by this agent, by state.");
        pm_prom_samples_by_key(f, "pmesh_promises", v, "state", "total");
    }
    if ((v = json_object_get(st, "ops"))) {
        pm_prom_family(f, "pmesh_operations_total", "counter",
                 "Requests the agent handled, by message type and result.");
        const char *k;
        json_t *op;
        json_object_foreach(v, k, op)
        {
            for (int ok = 1; ok >= 0; ok--) {
                json_t *n = json_object_get(op, ok ? "ok" : "error");
                if (!json_is_integer(n))
                    continue;
                fprintf(f, "pmesh_operations_total{type=\"");
                pm_prom_label_value(f, k);
                fprintf(f, "\",result=\"%s\"} %lld\n", ok ? "ok" : "error",
                        (long long) json_integer_value(n));
            }
        }
    }
    if ((v = json_object_get(st, "clients"))) {
        pm_prom_family(f, "pmesh_clients", "gauge",
                 "Client sessions, open awaits (waiters) and registered workers.");
        pm_prom_samples_by_key(f, "pmesh_clients", v, "kind", "expired");
        pm_prom_family(f, "pmesh_sessions_expired_total", "counter",
                 "Client sessions closed for silence.");
        fprintf(f, "pmesh_sessions_expired_total %lld\n",
                (long long) pm_prom_jint(st, "clients.expired"));
    }
    if ((v = json_object_get(st, "invocations"))) {
        pm_prom_family(f, "pmesh_invocations", "gauge", "Function invocations queued and in flight.");
        fprintf(f, "pmesh_invocations{state=\"queued\"} %lld\n",
                (long long) pm_prom_jint(st, "invocations.queued"));
        fprintf(f, "pmesh_invocations{state=\"inflight\"} %lld\n",
                (long long) pm_prom_jint(st, "invocations.inflight"));
        pm_prom_family(f, "pmesh_invocation_events_total", "counter",
                 "Function invocation events (invoked, dispatched, completed, failed, ...).");
        const char *k;
        json_t *n;
        json_object_foreach(v, k, n)
        {
            if (!json_is_integer(n) || !strcmp(k, "queued") || !strcmp(k, "inflight"))
                continue;
            fprintf(f, "pmesh_invocation_events_total{event=\"");
            pm_prom_label_value(f, k);
            fprintf(f, "\"} %lld\n", (long long) json_integer_value(n));
        }
    }
    if ((v = json_object_get(st, "errors"))) {
        pm_prom_family(f, "pmesh_errors_total", "counter",
                 "Bad frames from clients and replies the agent could not deliver.");
        pm_prom_samples_by_key(f, "pmesh_errors_total", v, "kind", NULL);
    }
    json_t *mesh = json_object_get(st, "mesh");
    if (mesh) {
        pm_prom_family(f, "pmesh_mesh_members", "gauge", "Mesh members by SWIM state, this agent included.");
        pm_prom_samples_by_key(f, "pmesh_mesh_members", json_object_get(mesh, "members"), "state", NULL);
        static const char *dirs[] = {"sent", "received"};
        pm_prom_family(f, "pmesh_mesh_messages_total", "counter",
                 "Mesh messages by direction and type.");
        for (int d = 0; d < 2; d++) {
            const char *k;
            json_t *t;
            json_object_foreach(json_object_get(mesh, dirs[d]), k, t)
            {
                fprintf(f, "pmesh_mesh_messages_total{direction=\"%s\",type=\"", dirs[d]);
                pm_prom_label_value(f, k);
                fprintf(f, "\"} %lld\n", (long long) pm_prom_jint(t, "messages"));
            }
        }
        pm_prom_family(f, "pmesh_mesh_bytes_total", "counter", "Mesh bytes by direction and type.");
        for (int d = 0; d < 2; d++) {
            const char *k;
            json_t *t;
            json_object_foreach(json_object_get(mesh, dirs[d]), k, t)
            {
                fprintf(f, "pmesh_mesh_bytes_total{direction=\"%s\",type=\"", dirs[d]);
                pm_prom_label_value(f, k);
                fprintf(f, "\"} %lld\n", (long long) pm_prom_jint(t, "bytes"));
            }
        }
        static const char *events[] = {"suspicions",      "deaths_declared", "refutations",
                                       "dropped_stale",   "dropped_invalid", "bad_frames",
                                       "unknown_peer",    "dropped_out",     "relayed",
                                       "relay_timeouts",  "owner_lost", "refused_not_served"};
        pm_prom_family(f, "pmesh_mesh_events_total", "counter",
                 "Mesh events: SWIM suspicions and deaths, drops, relays to owners.");
        for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
            if (json_is_integer(json_object_get(mesh, events[i])))
                fprintf(f, "pmesh_mesh_events_total{event=\"%s\"} %lld\n", events[i],
                        (long long) pm_prom_jint(mesh, events[i]));
    }
    if (json_object_get(st, "wal")) {
        pm_prom_family(f, "pmesh_wal_appended_total", "counter", "Records appended to the WAL.");
        fprintf(f, "pmesh_wal_appended_total %lld\n", (long long) pm_prom_jint(st, "wal.appended"));
        pm_prom_family(f, "pmesh_wal_durable_total", "counter", "WAL records known to be on disk.");
        fprintf(f, "pmesh_wal_durable_total %lld\n", (long long) pm_prom_jint(st, "wal.durable"));
        pm_prom_family(f, "pmesh_wal_fsyncs_total", "counter", "fsync calls on the WAL.");
        fprintf(f, "pmesh_wal_fsyncs_total %lld\n", (long long) pm_prom_jint(st, "wal.fsyncs"));
        pm_prom_family(f, "pmesh_wal_log_bytes", "gauge", "Bytes in the WAL since the last snapshot.");
        fprintf(f, "pmesh_wal_log_bytes %lld\n", (long long) pm_prom_jint(st, "wal.log_bytes"));
    }
    if ((v = json_object_get(st, "latency_ms")) && json_object_size(v)) {
        pm_prom_family(f, "pmesh_operation_duration_seconds", "histogram",
                 "Time from a request's arrival to its reply leaving the agent (durable and "
                 "replicated where it acknowledges a change), by type; awaits excluded.");
        const char *k;
        json_t *h;
        json_object_foreach(v, k, h)
        {
            char labels[96];
            snprintf(labels, sizeof labels, "type=\"%s\"", k);
            pm_prom_histogram(f, "pmesh_operation_duration_seconds", labels, h);
        }
    }
    if ((v = json_object_get(st, "functions")) && json_object_size(v)) {
        pm_prom_family(f, "pmesh_function_invocations_total", "counter",
                 "Invocations by function and outcome (on this agent's workers).");
        const char *k;
        json_t *fn;
        static const char *outcomes[] = {"invoked", "completed", "failed", "retried"};
        json_object_foreach(v, k, fn)
        {
            for (size_t i = 0; i < 4; i++) {
                fprintf(f, "pmesh_function_invocations_total{function=\"");
                pm_prom_label_value(f, k);
                fprintf(f, "\",outcome=\"%s\"} %lld\n", outcomes[i],
                        (long long) pm_prom_jint(fn, outcomes[i]));
            }
        }
    }
    if ((v = json_object_get(st, "wal")) && json_object_get(v, "fsync_ms")) {
        pm_prom_family(f, "pmesh_wal_fsync_duration_seconds", "histogram", "Duration of WAL fsyncs.");
        pm_prom_histogram(f, "pmesh_wal_fsync_duration_seconds", "", json_object_get(v, "fsync_ms"));
    }
    if (json_object_get(st, "replication")) {
        pm_prom_family(f, "pmesh_replication_produced_total", "counter",
                 "Records this owner produced for its backups.");
        fprintf(f, "pmesh_replication_produced_total %lld\n",
                (long long) pm_prom_jint(st, "replication.produced"));
        pm_prom_family(f, "pmesh_replication_acked_total", "counter",
                 "Records the backups acknowledged.");
        fprintf(f, "pmesh_replication_acked_total %lld\n",
                (long long) pm_prom_jint(st, "replication.acked"));
        pm_prom_family(f, "pmesh_replication_takeovers_total", "counter",
                 "Dead owners' id spaces this agent took over.");
        fprintf(f, "pmesh_replication_takeovers_total %lld\n",
                (long long) pm_prom_jint(st, "replication.takeovers"));
    }
    /* Issue 11: the configuration store (an object only when one is used). */
    if (json_is_object(json_object_get(st, "coordination"))) {
        static const struct {
            const char *name, *type, *path, *help;
        } co[] = {
            {"pmesh_coordination_store_up", "gauge", "coordination.store_up",
             "1 when the configuration store answers."},
            {"pmesh_coordination_waiting", "gauge", "coordination.waiting",
             "Id-space changes (takeovers, in-sync set changes) waiting for the store."},
            {"pmesh_coordination_retries_total", "counter", "coordination.retries",
             "Store requests tried again after the store did not answer."},
            {"pmesh_coordination_takeovers_total", "counter", "coordination.takeovers",
             "Id spaces taken over by CAS in the store."},
            {"pmesh_coordination_forced_total", "counter", "coordination.forced",
             "Id spaces forced to this agent by an operator."},
            {"pmesh_coordination_set_changes_total", "counter", "coordination.set_changes",
             "In-sync set changes recorded by this owner."},
            {"pmesh_coordination_refused_writes_total", "counter",
             "coordination.refused_writes",
             "Writes refused UNAVAILABLE: too few backups in sync (min_in_sync)."},
        };
        for (size_t i = 0; i < sizeof co / sizeof co[0]; i++) {
            pm_prom_family(f, co[i].name, co[i].type, co[i].help);
            json_t *v = json_object_get(json_object_get(st, "coordination"),
                                        co[i].path + strlen("coordination."));
            fprintf(f, "%s %lld\n", co[i].name,
                    json_is_boolean(v) ? (long long) json_is_true(v)
                                       : (long long) json_integer_value(v));
        }
    }
}

