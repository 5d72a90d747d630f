/*
 * stats.h - the agent's statistics as one typed snapshot (pm_stats_t).
 *
 * The agent fills a pm_stats_t in one place (pm_agent_stats, requests.c)
 * and every form of it is rendered from the struct by pure functions:
 * `pmesh status` JSON (pm_stats_json), the gateway's /metrics (prom.c,
 * pm_prom_stats) and the wire (pm_stats_pack / pm_stats_unpack: a packed
 * pmesh.Stats in the status reply, which the gateway decodes). Nothing is
 * read back out of JSON by a dotted path, so a renamed field is a compile
 * error and a snapshot of another layout is a counted decode error, never a
 * silent 0.
 *
 * Every scalar is one row of PM_STATS_SCALARS: its C field (also its name in
 * proto/pmesh.proto's Stats), the part it belongs to, its JSON path, its
 * metric family and label. The struct, the JSON, the metrics, the wire
 * codec and the schema hash are all expanded from the rows, so a field
 * cannot be added without its metric. The lists (functions, backups, id
 * spaces, mesh message kinds) have one table each for their numbers.
 */
#ifndef PM_STATS_H
#define PM_STATS_H

#include "hist.h"
#include "wire.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The parts of a snapshot; a part the agent does not run (no mesh, no WAL,
 * no replication, no configuration store) is absent from every form. */
enum {
    PM_STATS_CORE = 1,
    PM_STATS_MESH = 2,
    PM_STATS_WAL = 4,
    PM_STATS_FSYNC = 8, /* the WAL's fsync histogram (a WAL on disk) */
    PM_STATS_REPL = 16,
    PM_STATS_COORD = 32,
};

/* How a scalar is typed in JSON (INT or BOOL) and in Prometheus. */
#define PM_STATS_INT 0
#define PM_STATS_BOOL 1
#define PM_STATS_GAUGE "gauge"
#define PM_STATS_COUNTER "counter"

/* X(field, part, json path, json type, metric type, family, label, divisor, help).
 * Rows of one family are adjacent; the first row of a family carries its
 * help. divisor: the metric is field / divisor (ms -> seconds). */
#define PM_STATS_SCALARS(X)                                                                        \
    X(uptime_ms, CORE, "uptime_ms", INT, GAUGE, "pmesh_uptime_seconds", NULL, 1000,               \
      "Seconds since the agent started.")                                                          \
    X(generation, CORE, "generation", INT, GAUGE, "pmesh_generation", NULL, 1,                    \
      "How many times this agent's data directory has been started.")                              \
    X(promises_total, CORE, "promises.total", INT, GAUGE, "pmesh_promises_held", NULL, 1,         \
      "Promises held by this agent, in any state.")                                                \
    X(clients_sessions, CORE, "clients.sessions", INT, GAUGE, "pmesh_clients", "kind=\"sessions\"", \
      1, "Client sessions, open awaits (waiters) and registered workers.")                         \
    X(clients_waiters, CORE, "clients.waiters", INT, GAUGE, "pmesh_clients", "kind=\"waiters\"", 1, \
      "")                                                                                          \
    X(clients_workers, CORE, "clients.workers", INT, GAUGE, "pmesh_clients", "kind=\"workers\"", 1, \
      "")                                                                                          \
    X(clients_expired, CORE, "clients.expired", INT, COUNTER, "pmesh_sessions_expired_total",     \
      NULL, 1, "Client sessions closed for silence.")                                              \
    X(clients_waiters_timed_out, CORE, "clients.waiters_timed_out", INT, COUNTER,                 \
      "pmesh_waiters_timed_out_total", NULL, 1, "Awaits answered WAIT_TIMEOUT.")                   \
    X(clients_held_expired, CORE, "clients.held_expired", INT, COUNTER,                           \
      "pmesh_held_replies_expired_total", NULL, 1,                                                 \
      "Await replies not durable by the await's timeout, answered without their content.")         \
    X(inv_queued, CORE, "invocations.queued", INT, GAUGE, "pmesh_invocations", "state=\"queued\"", \
      1, "Function invocations queued and in flight.")                                             \
    X(inv_inflight, CORE, "invocations.inflight", INT, GAUGE, "pmesh_invocations",                \
      "state=\"inflight\"", 1, "")                                                                 \
    X(inv_invoked, CORE, "invocations.invoked", INT, COUNTER, "pmesh_invocation_events_total",    \
      "event=\"invoked\"", 1,                                                                      \
      "Function invocation events (invoked, dispatched, completed, failed, ...).")                 \
    X(inv_dispatched, CORE, "invocations.dispatched", INT, COUNTER,                               \
      "pmesh_invocation_events_total", "event=\"dispatched\"", 1, "")                              \
    X(inv_completed, CORE, "invocations.completed", INT, COUNTER, "pmesh_invocation_events_total", \
      "event=\"completed\"", 1, "")                                                                \
    X(inv_failed, CORE, "invocations.failed", INT, COUNTER, "pmesh_invocation_events_total",      \
      "event=\"failed\"", 1, "")                                                                   \
    X(inv_retried, CORE, "invocations.retried", INT, COUNTER, "pmesh_invocation_events_total",    \
      "event=\"retried\"", 1, "")                                                                  \
    X(inv_dropped, CORE, "invocations.dropped", INT, COUNTER, "pmesh_invocation_events_total",    \
      "event=\"dropped\"", 1, "")                                                                  \
    X(inv_duplicates, CORE, "invocations.duplicates", INT, COUNTER,                               \
      "pmesh_invocation_events_total", "event=\"duplicate\"", 1, "")                               \
    X(inv_resent, CORE, "invocations.resent", INT, COUNTER, "pmesh_invocation_events_total",      \
      "event=\"resent\"", 1, "")                                                                   \
    X(inv_not_holder, CORE, "invocations.not_holder", INT, COUNTER,                               \
      "pmesh_invocation_events_total", "event=\"not_holder\"", 1, "")                              \
    X(fanin_tentative_sent, CORE, "fanin.tentative_sent", INT, COUNTER,                           \
      "pmesh_fanin_events_total", "event=\"tentative_sent\"", 1,                                  \
      "Combinator events: early answers sent, early starts made, kept and dropped, inputs "         \
      "waited for last asked for every early answer.")                                             \
    X(fanin_early_starts, CORE, "fanin.early_starts", INT, COUNTER, "pmesh_fanin_events_total",   \
      "event=\"early_starts\"", 1, "")                                                             \
    X(fanin_early_kept, CORE, "fanin.early_kept", INT, COUNTER, "pmesh_fanin_events_total",       \
      "event=\"early_kept\"", 1, "")                                                               \
    X(fanin_early_dropped, CORE, "fanin.early_dropped", INT, COUNTER,                             \
      "pmesh_fanin_events_total", "event=\"early_dropped\"", 1, "")                                \
    X(fanin_last_asked, CORE, "fanin.last_asked", INT, COUNTER, "pmesh_fanin_events_total",       \
      "event=\"last_asked\"", 1, "")                                                               \
    X(chain_forwarded, CORE, "chain.forwarded", INT, COUNTER, "pmesh_chain_events_total",         \
      "event=\"forwarded\"", 1,                                                                    \
      "Chained continuations: handed on with an invocation, started by the member, kept, dropped.") \
    X(chain_started, CORE, "chain.started", INT, COUNTER, "pmesh_chain_events_total",             \
      "event=\"started\"", 1, "")                                                                  \
    X(chain_kept, CORE, "chain.kept", INT, COUNTER, "pmesh_chain_events_total",                   \
      "event=\"kept\"", 1, "")                                                                     \
    X(chain_dropped, CORE, "chain.dropped", INT, COUNTER, "pmesh_chain_events_total",             \
      "event=\"dropped\"", 1, "")                                                                  \
    X(err_bad_frames, CORE, "errors.bad_frames", INT, COUNTER, "pmesh_errors_total",              \
      "kind=\"bad_frames\"", 1, "Bad frames from clients and replies the agent could not deliver.") \
    X(err_replies_dropped, CORE, "errors.replies_dropped", INT, COUNTER, "pmesh_errors_total",    \
      "kind=\"replies_dropped\"", 1, "")                                                           \
    X(err_replies_failed, CORE, "errors.replies_failed", INT, COUNTER, "pmesh_errors_total",      \
      "kind=\"replies_failed\"", 1, "")                                                            \
    X(mesh_alive, MESH, "mesh.members.alive", INT, GAUGE, "pmesh_mesh_members", "state=\"alive\"", \
      1, "Mesh members by SWIM state, this agent included.")                                       \
    X(mesh_suspect, MESH, "mesh.members.suspect", INT, GAUGE, "pmesh_mesh_members",               \
      "state=\"suspect\"", 1, "")                                                                  \
    X(mesh_dead, MESH, "mesh.members.dead", INT, GAUGE, "pmesh_mesh_members", "state=\"dead\"", 1, \
      "")                                                                                          \
    X(mesh_left, MESH, "mesh.members.left", INT, GAUGE, "pmesh_mesh_members", "state=\"left\"", 1, \
      "")                                                                                          \
    X(mesh_bytes_sent, MESH, "mesh.bytes_sent", INT, COUNTER, "pmesh_mesh_traffic_bytes_total",   \
      "direction=\"sent\"", 1, "Mesh bytes of every type, by direction.")                          \
    X(mesh_bytes_received, MESH, "mesh.bytes_received", INT, COUNTER,                             \
      "pmesh_mesh_traffic_bytes_total", "direction=\"received\"", 1, "")                           \
    X(mesh_incarnation, MESH, "mesh.incarnation", INT, GAUGE, "pmesh_mesh_incarnation", NULL, 1,  \
      "This agent's SWIM incarnation (it rises each time the agent refutes a suspicion).")         \
    X(mesh_local_health, MESH, "mesh.local_health", INT, GAUGE, "pmesh_mesh_local_health", NULL,  \
      1, "SWIM local health (0: healthy; higher: this agent misses its own probes' deadlines).")   \
    X(mesh_suspicions, MESH, "mesh.suspicions", INT, COUNTER, "pmesh_mesh_events_total",          \
      "event=\"suspicions\"", 1,                                                                   \
      "Mesh events: SWIM suspicions and deaths, drops, relays to owners.")                         \
    X(mesh_deaths_declared, MESH, "mesh.deaths_declared", INT, COUNTER, "pmesh_mesh_events_total", \
      "event=\"deaths_declared\"", 1, "")                                                          \
    X(mesh_refutations, MESH, "mesh.refutations", INT, COUNTER, "pmesh_mesh_events_total",        \
      "event=\"refutations\"", 1, "")                                                              \
    X(mesh_dropped_stale, MESH, "mesh.dropped_stale", INT, COUNTER, "pmesh_mesh_events_total",    \
      "event=\"dropped_stale\"", 1, "")                                                            \
    X(mesh_dropped_invalid, MESH, "mesh.dropped_invalid", INT, COUNTER, "pmesh_mesh_events_total", \
      "event=\"dropped_invalid\"", 1, "")                                                          \
    X(mesh_bad_frames, MESH, "mesh.bad_frames", INT, COUNTER, "pmesh_mesh_events_total",          \
      "event=\"bad_frames\"", 1, "")                                                               \
    X(mesh_unknown_peer, MESH, "mesh.unknown_peer", INT, COUNTER, "pmesh_mesh_events_total",      \
      "event=\"unknown_peer\"", 1, "")                                                             \
    X(mesh_dropped_out, MESH, "mesh.dropped_out", INT, COUNTER, "pmesh_mesh_events_total",        \
      "event=\"dropped_out\"", 1, "")                                                              \
    X(mesh_relayed, MESH, "mesh.relayed", INT, COUNTER, "pmesh_mesh_events_total",                \
      "event=\"relayed\"", 1, "")                                                                  \
    X(mesh_relay_timeouts, MESH, "mesh.relay_timeouts", INT, COUNTER, "pmesh_mesh_events_total",  \
      "event=\"relay_timeouts\"", 1, "")                                                           \
    X(mesh_owner_lost, MESH, "mesh.owner_lost", INT, COUNTER, "pmesh_mesh_events_total",          \
      "event=\"owner_lost\"", 1, "")                                                               \
    X(mesh_sub_resends, MESH, "mesh.sub_resends", INT, COUNTER, "pmesh_mesh_events_total",        \
      "event=\"sub_resends\"", 1, "")                                                              \
    X(mesh_sub_repeats_dropped, MESH, "mesh.sub_repeats_dropped", INT, COUNTER,                   \
      "pmesh_mesh_events_total", "event=\"sub_repeats_dropped\"", 1, "")                           \
    X(mesh_refused_not_served, MESH, "mesh.refused_not_served", INT, COUNTER,                     \
      "pmesh_mesh_events_total", "event=\"refused_not_served\"", 1, "")                            \
    X(mesh_untrusted_updates, MESH, "mesh.untrusted_updates", INT, COUNTER,                       \
      "pmesh_mesh_events_total", "event=\"untrusted_updates\"", 1, "")                             \
    X(mesh_auth_refused, MESH, "mesh.auth_refused", INT, COUNTER, "pmesh_mesh_events_total",      \
      "event=\"auth_refused\"", 1, "")                                                             \
    X(mesh_handshakes_failed, MESH, "mesh.handshakes_failed", INT, COUNTER,                       \
      "pmesh_mesh_events_total", "event=\"handshakes_failed\"", 1, "")                             \
    X(wal_appended, WAL, "wal.appended", INT, COUNTER, "pmesh_wal_appended_total", NULL, 1,       \
      "Records appended to the WAL.")                                                              \
    X(wal_durable, WAL, "wal.durable", INT, COUNTER, "pmesh_wal_durable_total", NULL, 1,          \
      "WAL records known to be on disk.")                                                          \
    X(wal_fsyncs, WAL, "wal.fsyncs", INT, COUNTER, "pmesh_wal_fsyncs_total", NULL, 1,             \
      "fsync calls on the WAL.")                                                                   \
    X(wal_log_bytes, WAL, "wal.log_bytes", INT, GAUGE, "pmesh_wal_log_bytes", NULL, 1,            \
      "Bytes in the WAL since the last snapshot.")                                                 \
    X(wal_held, WAL, "wal.held", INT, GAUGE, "pmesh_wal_held_replies", NULL, 1,                   \
      "Replies held until their records are durable (and at the backups).")                        \
    X(wal_snapshots, WAL, "wal.snapshots", INT, COUNTER, "pmesh_wal_snapshots_total", NULL, 1,    \
      "Snapshots written (each starts a new log).")                                                \
    X(wal_recovery_ms, WAL, "wal.recovery_ms", INT, GAUGE, "pmesh_wal_recovery_seconds", NULL,    \
      1000, "Time the last start spent replaying the snapshot and the log.")                       \
    X(wal_recovered_records, WAL, "wal.recovered_records", INT, GAUGE,                            \
      "pmesh_wal_recovered_records", NULL, 1, "Log records replayed at the last start.")           \
    X(wal_failed, WAL, "wal.failed", BOOL, GAUGE, "pmesh_wal_failed", NULL, 1,                    \
      "1 when the WAL has failed (the agent then refuses changes and is not ready).")              \
    X(repl_replicas, REPL, "replication.replicas", INT, GAUGE, "pmesh_replication_replicas", NULL, \
      1, "Copies of every record wanted, this owner's included (R).")                              \
    X(repl_produced, REPL, "replication.produced", INT, COUNTER,                                  \
      "pmesh_replication_produced_total", NULL, 1, "Records this owner produced for its backups.") \
    X(repl_acked, REPL, "replication.acked", INT, COUNTER, "pmesh_replication_acked_total", NULL, \
      1, "Records the backups acknowledged.")                                                      \
    X(repl_transfers, REPL, "replication.transfers", INT, COUNTER,                                \
      "pmesh_replication_transfers_total", NULL, 1, "Whole-state transfers sent to backups.")      \
    X(repl_resyncs, REPL, "replication.resyncs", INT, COUNTER, "pmesh_replication_resyncs_total", \
      NULL, 1, "Transfers a backup asked for because it missed records.")                          \
    X(repl_records_sent, REPL, "replication.records_sent", INT, COUNTER,                          \
      "pmesh_replication_records_sent_total", NULL, 1, "Records sent to backups.")                 \
    X(repl_fenced, REPL, "replication.fenced", INT, COUNTER, "pmesh_replication_fenced_total",    \
      NULL, 1, "Acknowledgements saying a backup knows a newer epoch (this owner is fenced).")     \
    X(repl_takeovers, REPL, "replication.takeovers", INT, COUNTER,                                \
      "pmesh_replication_takeovers_total", NULL, 1, "Dead owners' id spaces this agent took over.") \
    X(repl_spaces_retired, REPL, "replication.spaces_retired", INT, COUNTER,                      \
      "pmesh_replication_spaces_retired_total", NULL, 1,                                           \
      "Taken-over id spaces retired once they held nothing.")                                      \
    X(repl_parked, REPL, "replication.parked", INT, COUNTER, "pmesh_replication_parked_total",    \
      NULL, 1, "Requests parked while their owner's id space changed hands.")                      \
    X(repl_replica_continuations, REPL, "replication.replica_continuations", INT, GAUGE,          \
      "pmesh_replication_replica_continuations", NULL, 1,                                          \
      "Continuations held as a backup, to run if their owner dies.")                               \
    X(repl_owners_in_sync, REPL, "replication.owners_in_sync", INT, GAUGE,                        \
      "pmesh_replication_owners_in_sync", NULL, 1, "Owners this agent is an in-sync backup of.")   \
    X(repl_resyncs_asked, REPL, "replication.resyncs_asked", INT, COUNTER,                        \
      "pmesh_replication_resyncs_asked_total", NULL, 1,                                            \
      "Whole-state transfers this agent asked owners for, as a backup that missed records.")       \
    X(co_store_up, COORD, "coordination.store_up", BOOL, GAUGE, "pmesh_coordination_store_up",    \
      NULL, 1, "1 when the configuration store answers.")                                          \
    X(co_ready, COORD, "coordination.ready", BOOL, GAUGE, "pmesh_coordination_ready", NULL, 1,    \
      "1 once the id spaces have been read from the store.")                                       \
    X(co_waiting, COORD, "coordination.waiting", INT, GAUGE, "pmesh_coordination_waiting", NULL,  \
      1, "Id-space changes (takeovers, in-sync set changes) waiting for the store.")               \
    X(co_retries, COORD, "coordination.retries", INT, COUNTER, "pmesh_coordination_retries_total", \
      NULL, 1, "Store requests tried again after the store did not answer.")                       \
    X(co_takeovers, COORD, "coordination.takeovers", INT, COUNTER,                                \
      "pmesh_coordination_takeovers_total", NULL, 1, "Id spaces taken over by CAS in the store.")  \
    X(co_forced, COORD, "coordination.forced", INT, COUNTER, "pmesh_coordination_forced_total",   \
      NULL, 1, "Id spaces forced to this agent by an operator.")                                   \
    X(co_set_changes, COORD, "coordination.set_changes", INT, COUNTER,                            \
      "pmesh_coordination_set_changes_total", NULL, 1,                                             \
      "In-sync set changes recorded by this owner.")                                               \
    X(co_refused_writes, COORD, "coordination.refused_writes", INT, COUNTER,                      \
      "pmesh_coordination_refused_writes_total", NULL, 1,                                          \
      "Writes refused UNAVAILABLE: too few backups in sync (min_in_sync).")                        \
    X(co_refreshes, COORD, "coordination.refreshes", INT, COUNTER,                                \
      "pmesh_coordination_refreshes_total", NULL, 1,                                               \
      "Id spaces this agent re-read in the store because a backup or gossip said they moved.")    \
    X(co_requests, COORD, "coordination.requests", INT, COUNTER,                                  \
      "pmesh_coordination_requests_total", NULL, 1, "Requests sent to the configuration store.")   \
    X(co_min_in_sync, COORD, "coordination.min_in_sync", INT, GAUGE,                              \
      "pmesh_coordination_min_in_sync", NULL, 1,                                                   \
      "Backups that must be in sync for a write to be accepted.")

/* The numbers of one function (functions.NAME.KEY in JSON):
 * X(field, metric type, family, label, help). */
#define PM_STATS_FN_FIELDS(X)                                                                      \
    X(invoked, COUNTER, "pmesh_function_invocations_total", "outcome=\"invoked\"",                \
      "Invocations by function and outcome (on this agent's workers).")                            \
    X(completed, COUNTER, "pmesh_function_invocations_total", "outcome=\"completed\"", "")        \
    X(failed, COUNTER, "pmesh_function_invocations_total", "outcome=\"failed\"", "")              \
    X(retried, COUNTER, "pmesh_function_invocations_total", "outcome=\"retried\"", "")            \
    X(queued, GAUGE, "pmesh_function_queued", NULL, "Invocations queued, by function.")           \
    X(workers, GAUGE, "pmesh_function_workers", NULL, "Workers registered, by function.")

/* One backup of this owner (replication.backups[] in JSON). */
#define PM_STATS_BACKUP_FIELDS(X)                                                                  \
    X(acked, GAUGE, "pmesh_replication_backup_acked", NULL,                                        \
      "The last record each backup acknowledged.")                                                 \
    X(counted, GAUGE, "pmesh_replication_backup_counted", NULL,                                    \
      "1 when the backup counts towards a reply's R-1 acknowledgements.")

/* One id space recorded in the configuration store (coordination.spaces[]). */
#define PM_STATS_SPACE_FIELDS(X)                                                                   \
    X(epoch, GAUGE, "pmesh_coordination_space_epoch", NULL, "Each id space's epoch in the store.") \
    X(ours, GAUGE, "pmesh_coordination_space_ours", NULL, "1 when this agent owns the id space.")  \
    X(n_in_sync, GAUGE, "pmesh_coordination_space_in_sync", NULL,                                  \
      "Members of each id space's in-sync set.")

/* One kind of mesh message (mesh.sent.KIND and mesh.received.KIND). */
#define PM_STATS_KIND_FIELDS(X)                                                                    \
    X(sent, COUNTER, "pmesh_mesh_messages_total", "direction=\"sent\"",                            \
      "Mesh messages by direction and type.")                                                      \
    X(received, COUNTER, "pmesh_mesh_messages_total", "direction=\"received\"", "")               \
    X(sent_bytes, COUNTER, "pmesh_mesh_bytes_total", "direction=\"sent\"",                         \
      "Mesh bytes by direction and type.")                                                         \
    X(received_bytes, COUNTER, "pmesh_mesh_bytes_total", "direction=\"received\"", "")

#define PM_STATS_FIELD_(f, ...) uint64_t f;

typedef struct pm_stats_fn {
    char *name;
    PM_STATS_FN_FIELDS(PM_STATS_FIELD_)
} pm_stats_fn_t;

typedef struct pm_stats_backup {
    char *node;
    PM_STATS_BACKUP_FIELDS(PM_STATS_FIELD_)
} pm_stats_backup_t;

typedef struct pm_stats_space {
    char *space, *owner;
    char **in_sync; /* n_in_sync node names */
    PM_STATS_SPACE_FIELDS(PM_STATS_FIELD_)
} pm_stats_space_t;

typedef struct pm_stats_kind {
    char *name; /* "create", "swim_ping", ... */
    PM_STATS_KIND_FIELDS(PM_STATS_FIELD_)
} pm_stats_kind_t;

/* Promise states counted: PM_STATE_PENDING .. PM_STATE_TIMEDOUT. */
#define PM_STATS_NSTATES 5

typedef struct pm_stats {
    uint32_t parts; /* PM_STATS_* bits */
    char *node, *version, *id_space;
    /* PM_STATS_COORD: the store as configured; without it, what decides
     * ownership in words (coord_desc, "" for none). */
    char *coord_desc, *co_store, *co_prefix, *co_node, *co_pid;
#define PM_STATS_SCALAR_(f, ...) uint64_t f;
    PM_STATS_SCALARS(PM_STATS_SCALAR_)
#undef PM_STATS_SCALAR_
    uint64_t promises[PM_STATS_NSTATES]; /* by state, PM_STATE_PENDING first */
    uint64_t ops_ok[PM_MSG_TYPE_COUNT], ops_error[PM_MSG_TYPE_COUNT];
    pm_hist_t op_ms[PM_MSG_TYPE_COUNT]; /* request to reply, by type */
    pm_hist_t wal_fsync;                /* PM_STATS_FSYNC */
    pm_stats_kind_t *kinds;             /* PM_STATS_MESH */
    size_t n_kinds;
    pm_stats_backup_t *backups; /* PM_STATS_REPL */
    size_t n_backups;
    pm_stats_space_t *spaces; /* PM_STATS_COORD */
    size_t n_spaces;
    pm_stats_fn_t *fns;
    size_t n_fns;
} pm_stats_t;

/* The tables as data, for the renderers and the tests: one row per
 * number, with where it lives (offset of its uint64_t in pm_stats_t, or in
 * a list's item). */
typedef struct pm_stats_row {
    const char *field;  /* the C field, also the name in pmesh.Stats */
    const char *path;   /* scalars: the JSON path; items: the JSON key */
    const char *mtype;  /* "gauge" or "counter" */
    const char *family; /* the metric family */
    const char *label;  /* "k=\"v\"" or NULL */
    const char *help;   /* the family's first row: its help; others "" */
    int part;           /* PM_STATS_*; items: their list's */
    int is_bool;        /* JSON true/false */
    uint64_t div;       /* the metric is the field / div */
    size_t offset;
} pm_stats_row_t;

extern const pm_stats_row_t pm_stats_scalars[];
extern const size_t pm_stats_n_scalars;

/* A list of items (functions, backups, id spaces, mesh message kinds). */
typedef struct pm_stats_list {
    const char *key; /* the label naming an item in /metrics */
    int part;
    int row_first;   /* the row's label before the item's (mesh: direction, then type) */
    const pm_stats_row_t *rows;
    size_t n_rows;
    size_t item_size, name_offset, items_offset, count_offset;
} pm_stats_list_t;

extern const pm_stats_list_t pm_stats_lists[];
extern const size_t pm_stats_n_lists;

/* The row's number in st (a scalar) or in item i of list l. */
uint64_t pm_stats_scalar(const pm_stats_t *st, const pm_stats_row_t *row);
size_t pm_stats_list_len(const pm_stats_t *st, const pm_stats_list_t *l);
const char *pm_stats_item_name(const pm_stats_t *st, const pm_stats_list_t *l, size_t i);
uint64_t pm_stats_item(const pm_stats_t *st, const pm_stats_list_t *l, size_t i,
                       const pm_stats_row_t *row);

/* Frees what st owns (strings, lists) and zeroes it. */
void pm_stats_clear(pm_stats_t *st);
/* A copy of s for a string field (NULL: ""); fail-stop when out of memory. */
char *pm_stats_str(const char *s);
/* Appends a zeroed item to a list (fail-stop when out of memory). */
pm_stats_fn_t *pm_stats_add_fn(pm_stats_t *st, const char *name);
pm_stats_backup_t *pm_stats_add_backup(pm_stats_t *st, const char *node);
pm_stats_space_t *pm_stats_add_space(pm_stats_t *st, const char *space, const char *owner);
pm_stats_kind_t *pm_stats_add_kind(pm_stats_t *st, const char *name);

/* Whether op type t is shown (ops and latency; replies and invocations are
 * not requests the agent answers). */
int pm_stats_op_shown(int t);

/* `pmesh status`: the snapshot as the JSON object it always was. Caller owns
 * it; NULL when out of memory. */
json_t *pm_stats_json(const pm_stats_t *st);

/* A hash of the snapshot's layout (every field's name, the states and
 * message types, the histogram's buckets): the packed form carries it, and
 * a snapshot of another layout does not decode. */
uint64_t pm_stats_schema(void);

/* The snapshot as a packed pmesh.Stats (proto/pmesh.proto). Caller frees
 * the buffer; NULL when out of memory. */
uint8_t *pm_stats_pack(const pm_stats_t *st, size_t *len);
/* Decodes a packed pmesh.Stats into *st (cleared first; pm_stats_clear it
 * after). -1 when it is malformed or of another layout (schema, list
 * lengths): nothing is read as 0 silently. */
int pm_stats_unpack(const uint8_t *buf, size_t len, pm_stats_t *st);

/* The gateway's fetch (libpmesh, client.c; not in pmesh.h): asks the agent
 * for its status and hands back the packed snapshot of the reply (*buf_p
 * the caller's to free; empty from an agent that sends none, which then
 * fails to unpack). 0 or a pm_err. */
int pm_client_stats(pm_client_t *self, uint8_t **buf_p, size_t *len_p);

#endif
