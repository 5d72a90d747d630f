/*
 * replica.c - see replica.h.
 */
#include "replica.h"

#include "base.h"
#include "log.h"
#include "stats.h"
#include "steptrace.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Records per REPLICATE message in a state transfer: big enough to move a
 * million promises in ~1000 frames, small enough to stay far below the
 * frame limit. */
#define S_TRANSFER_CHUNK 1024
#define S_MAX_BACKUPS 8
/* A state transfer is acknowledged within milliseconds on a live backup;
 * one second without it means it was lost. */
#define S_RETRANSFER_MS 1000
/* Long enough to find peers through the seeds (a join round trip and a sync,
 * ~1 s on a restarted seed); a lone agent then acknowledges on its own. */
#define S_START_HOLD_MS 3000
/* A counted backup acknowledges streamed records within milliseconds too;
 * behind for this long with no progress, the records or its
 * acknowledgements were lost (a connection torn down drops what was
 * queued), and with nothing new to send it would never acknowledge again:
 * the state is copied over again. */
#define S_STALL_MS 2000

typedef struct s_rec {
    char *space;
    uint8_t *buf;
    size_t len;
} s_rec_t;

typedef struct s_backup {
    char *name;
    char *primary;        /* its primary space when chosen: a restart changes it */
    uint64_t pid;         /* the process id in it (pm_replica_pid_of), cached */
    uint64_t acked;
    uint64_t counts_from; /* counted once acked >= this (end of its state transfer) */
    int counted;
    int64_t transfer_at;  /* when the state transfer was sent (monotonic ms) */
    int64_t behind_since; /* counted, acked < produced, no progress since (0: not behind) */
} s_backup_t;

struct pm_replica {
    pm_mesh_t *mesh;
    char *primary;
    int replicas;
    pm_replica_hooks_t hooks;
    void *arg;
    s_rec_t *queue;
    size_t n, cap;
    uint64_t produced;
    uint64_t stream;    /* this process's stream: LSNs count in it (random, never 0) */
    uint64_t xfer_seq;  /* state transfers started */
    uint64_t xfer_count; /* records in the transfer being sent */
    uint64_t resyncs;   /* transfers a backup asked for (it missed records) */
    s_backup_t backups[S_MAX_BACKUPS];
    size_t n_backups;
    int degraded;
    int64_t hold_until; /* before this, no backup means wait, not degrade */
    int64_t now;        /* monotonic ms, as last handed in */
    uint64_t transfers, sent_records, fenced;
    /* Issue 11: the recorded in-sync set (R1) */
    int gated;
    size_t n_gate;
    char gate_nodes[S_MAX_BACKUPS][128];
    uint64_t gate_pids[S_MAX_BACKUPS];
    /* during a transfer: where add() sends */
    const char *xfer_to;
    s_rec_t xfer[S_TRANSFER_CHUNK];
    size_t xfer_n;
};

pm_replica_t *
pm_replica_new(pm_mesh_t *mesh, const char *primary, int replicas,
               const pm_replica_hooks_t *hooks, void *arg, uint64_t stream, int64_t now_ms)
{
    pm_replica_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->mesh = mesh;
    self->primary = strdup(primary);
    self->replicas = replicas < 2 ? 2 : replicas > S_MAX_BACKUPS + 1 ? S_MAX_BACKUPS + 1
                                                                      : replicas;
    self->hooks = *hooks;
    self->arg = arg;
    /* A restarted owner starts its LSNs again: the stream id keeps a backup
     * from reading them as the continuation of the old process's. */
    self->stream = stream ? stream : 1;
    self->now = now_ms;
    /* An agent that just started has not found its peers yet: for the first
     * seconds, "no backup" means "not yet", not "alone". */
    self->hold_until = now_ms + S_START_HOLD_MS;
    return self;
}

static void
s_clear_queue(pm_replica_t *self)
{
    for (size_t i = 0; i < self->n; i++) {
        free(self->queue[i].space);
        free(self->queue[i].buf);
    }
    self->n = 0;
}

void
pm_replica_destroy(pm_replica_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_replica_t *self = *self_p;
    s_clear_queue(self);
    free(self->queue);
    for (size_t i = 0; i < self->n_backups; i++) {
        free(self->backups[i].name);
        free(self->backups[i].primary);
    }
    free(self->primary);
    free(self);
    *self_p = NULL;
}

/* Fills r with a copy of one record of space. */
static void
s_rec_copy(s_rec_t *r, const char *space, const uint8_t *rec, size_t len)
{
    r->space = pm_xstrdup(space, "replicated record");
    r->buf = pm_xmalloc(len, "replicated record");
    memcpy(r->buf, rec, len);
    r->len = len;
}

void
pm_replica_record(pm_replica_t *self, const char *space, const uint8_t *rec, size_t len)
{
    if (self->n == self->cap) {
        /* A record dropped here would leave the backups without it while the
         * reply gate counts it produced: out of memory stops the agent. */
        self->cap = self->cap ? self->cap * 2 : 256;
        self->queue = pm_xrealloc(self->queue, self->cap * sizeof *self->queue,
                                  "replication queue");
    }
    s_rec_copy(&self->queue[self->n], space, rec, len);
    self->n++;
    self->produced++;
}

/* Sends arr[0..n) (all of one space) to backup node: stream records first..lsn,
 * or (full) part of the current state transfer. */
static void
s_send_batch(pm_replica_t *self, const char *node, const s_rec_t *arr, size_t n, uint64_t first,
             uint64_t lsn, int full)
{
    pm_bytes_t stack[64];
    pm_bytes_t *b = n <= 64 ? stack : pm_xmalloc(n * sizeof *b, "replication message");
    for (size_t i = 0; i < n; i++) {
        b[i].data = arr[i].buf;
        b[i].len = arr[i].len;
    }
    uint64_t epoch = 1;
    pm_mesh_owns(self->mesh, arr[0].space, &epoch);
    pm_msg_t m = {.type = PM_MSG_REPLICATE, .space = arr[0].space, .epoch = epoch,
                  .lsn = lsn, .first = first, .records = b, .record_count = n, .full = full,
                  .stream = self->stream, .xfer = full ? self->xfer_seq : 0};
    pm_mesh_send(self->mesh, node, &m);
    self->sent_records += n;
    if (b != stack)
        free(b);
}

/* Sends arr[0..n) grouped in runs of one space. Streamed records carry
 * their LSNs (base + 1 is arr[0]'s), so the backup can tell a gap; transfer
 * chunks carry none. */
static void
s_send_runs(pm_replica_t *self, const char *node, const s_rec_t *arr, size_t n, uint64_t base,
            int full)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && strcmp(arr[j].space, arr[i].space) == 0)
            j++;
        if (full)
            s_send_batch(self, node, &arr[i], j - i, 0, 0, 1);
        else
            s_send_batch(self, node, &arr[i], j - i, base + i + 1, base + j, 0);
        i = j;
    }
}

static void
s_xfer_flush(pm_replica_t *self)
{
    if (!self->xfer_n)
        return;
    s_send_runs(self, self->xfer_to, self->xfer, self->xfer_n, 0, 1);
    for (size_t i = 0; i < self->xfer_n; i++) {
        free(self->xfer[i].space);
        free(self->xfer[i].buf);
    }
    self->xfer_n = 0;
}

static void
s_xfer_add(pm_replica_t *self, const char *space, const uint8_t *rec, size_t len)
{
    s_rec_copy(&self->xfer[self->xfer_n], space, rec, len);
    self->xfer_count++;
    if (++self->xfer_n == S_TRANSFER_CHUNK)
        s_xfer_flush(self);
}

static void s_announce(pm_replica_t *self);

/* Copies the whole state to a backup; it counts once it acknowledged it. */
static void
s_transfer(pm_replica_t *self, s_backup_t *b)
{
    self->xfer_to = b->name;
    self->xfer_seq++;
    self->xfer_count = 0;
    self->hooks.full_state(self->arg, self, NULL, s_xfer_add);
    s_xfer_flush(self);
    /* An empty marker carrying the watermark and the number of records sent:
     * acknowledged once all of them arrived, are applied and durable at the
     * backup. Records still queued here are part of the copy already (they
     * are at or below the watermark), so the backup skips them. */
    const char *space = self->primary;
    pm_msg_t m = {.type = PM_MSG_REPLICATE, .space = space, .epoch = 1, .lsn = self->produced,
                  .full = 1, .stream = self->stream, .xfer = self->xfer_seq,
                  .count = self->xfer_count};
    pm_mesh_owns(self->mesh, space, &m.epoch);
    pm_mesh_send(self->mesh, b->name, &m);
    b->counted = 0;
    b->acked = 0; /* what it acknowledged before may have a hole behind it */
    b->counts_from = self->produced;
    b->transfer_at = self->now;
    b->behind_since = 0;
    self->transfers++;
    s_announce(self); /* not an heir until it has everything */
    pm_log_info("PM-REPL-TRANSFER", "copying the state to new backup %s", b->name);
}

/* Whether backup b is still the process we copied the state to: alive, and
 * under the same primary space (a restart mints a new one). */
static int
s_backup_same(pm_replica_t *self, s_backup_t *b)
{
    if (!pm_mesh_is_up(self->mesh, b->name))
        return 0;
    const char *now = pm_mesh_primary_of(self->mesh, b->name);
    if (!now || !*now)
        return 1;
    if (!*b->primary) { /* chosen before its metadata arrived */
        char *p = strdup(now);
        if (p) {
            free(b->primary);
            b->primary = p;
            b->pid = pm_replica_pid_of(p);
        }
        return 1;
    }
    return strcmp(now, b->primary) == 0;
}

/* Keeps backups that are alive; tops the set up from the rendezvous order. */
static void
s_check_backups(pm_replica_t *self)
{
    size_t want = (size_t) self->replicas - 1;
    int changed = 0;
    for (size_t i = 0; i < self->n_backups;) {
        if (s_backup_same(self, &self->backups[i])) {
            i++;
            continue;
        }
        pm_log_warn("PM-REPL-BACKUP-LOST", "backup %s is gone%s; choosing another",
                    self->backups[i].name,
                    pm_mesh_is_up(self->mesh, self->backups[i].name) ? " (restarted)" : "");
        free(self->backups[i].name);
        free(self->backups[i].primary);
        self->backups[i] = self->backups[--self->n_backups];
        changed = 1;
    }
    if (changed)
        s_announce(self);
    /* A transfer not acknowledged within a second was lost (sent before the
     * backup knew us, or to a backup that restarted): send it again. */
    int64_t now = self->now;
    for (size_t i = 0; i < self->n_backups; i++) {
        s_backup_t *b = &self->backups[i];
        if (!b->counted) {
            if (now - b->transfer_at > S_RETRANSFER_MS)
                s_transfer(self, b);
        } else if (b->acked >= self->produced) {
            b->behind_since = 0;
        } else if (!b->behind_since) {
            b->behind_since = now;
        } else if (now - b->behind_since > S_STALL_MS) {
            pm_log_warn("PM-REPL-STALLED", "backup %s acknowledged nothing for %lld ms "
                        "(LSN %llu of %llu); copying the state again", b->name,
                        (long long) (now - b->behind_since), (unsigned long long) b->acked,
                        (unsigned long long) self->produced);
            s_transfer(self, b);
        }
    }
    if (self->n_backups >= want)
        return;
    const char *cand[S_MAX_BACKUPS + 1];
    size_t n = pm_mesh_backups(self->mesh, pm_mesh_self(self->mesh), self->primary,
                               S_MAX_BACKUPS, cand);
    for (size_t i = 0; i < n && self->n_backups < want; i++) {
        int have = 0;
        for (size_t j = 0; j < self->n_backups; j++)
            have |= strcmp(self->backups[j].name, cand[i]) == 0;
        if (have || strcmp(cand[i], pm_mesh_self(self->mesh)) == 0)
            continue;
        s_backup_t *b = &self->backups[self->n_backups++];
        memset(b, 0, sizeof *b);
        const char *primary = pm_mesh_primary_of(self->mesh, cand[i]);
        b->name = strdup(cand[i]);
        b->primary = strdup(primary ? primary : "");
        b->pid = pm_replica_pid_of(primary);
        if (!b->name || !b->primary) {
            free(b->name);
            free(b->primary);
            self->n_backups--;
            continue;
        }
        s_transfer(self, b);
    }
}

void
pm_replica_flush(pm_replica_t *self, int64_t now_ms)
{
    self->now = now_ms;
    s_check_backups(self);
    if (!self->n)
        return;
    PM_STEPTRACE_MARK("r_send", "", 0);
    for (size_t i = 0; i < self->n_backups; i++)
        s_send_runs(self, self->backups[i].name, self->queue, self->n,
                    self->produced - self->n, 0);
    s_clear_queue(self);
}

void
pm_replica_resync(pm_replica_t *self)
{
    pm_replica_flush(self, self->now);
    for (size_t i = 0; i < self->n_backups; i++)
        s_transfer(self, &self->backups[i]);
}

size_t
pm_replica_add_space(pm_replica_t *self, const char *space)
{
    uint64_t before = self->produced;
    self->hooks.full_state(self->arg, self, space, pm_replica_record);
    return (size_t) (self->produced - before);
}

void
pm_replica_ack(pm_replica_t *self, const char *from, const pm_msg_t *m, int64_t now_ms)
{
    self->now = now_ms;
    if (m->fenced) {
        self->fenced++;
        if (self->hooks.fenced)
            self->hooks.fenced(self->arg, m->space, m->epoch, from);
        return;
    }
    if (m->stream != self->stream)
        return; /* meant for an earlier process of ours */
    uint64_t lsn = m->lsn;
    PM_STEPTRACE_MARK("r_ack", "", 0);
    for (size_t i = 0; i < self->n_backups; i++) {
        s_backup_t *b = &self->backups[i];
        if (strcmp(b->name, from) != 0)
            continue;
        if (m->resync) {
            /* It missed records. A transfer under way (younger than the
             * retransfer period) already answers that request. */
            if (!b->counted && self->now - b->transfer_at < S_RETRANSFER_MS)
                return;
            self->resyncs++;
            pm_log_warn("PM-REPL-RESYNC", "backup %s missed records; copying the state again",
                        b->name);
            s_transfer(self, b);
            return;
        }
        if (lsn > self->produced) {
            /* Outside input: an acknowledgement of records never produced. */
            pm_log_warn("PM-REPL-BAD-ACK", "backup %s acknowledged LSN %llu; only %llu "
                        "produced: ignored", b->name, (unsigned long long) lsn,
                        (unsigned long long) self->produced);
            return;
        }
        if (lsn > b->acked) {
            b->acked = lsn;
            b->behind_since = lsn < self->produced ? self->now : 0;
        }
        if (!b->counted && b->acked >= b->counts_from) {
            b->counted = 1;
            pm_log_info("PM-REPL-BACKUP-READY", "backup %s has the state; it counts now",
                        b->name);
            s_announce(self);
        }
    }
}

/* Tells the mesh which backups hold the whole state, in set order. */
static void
s_announce(pm_replica_t *self)
{
    const char *names[S_MAX_BACKUPS], *spaces[S_MAX_BACKUPS];
    size_t n = 0;
    for (size_t i = 0; i < self->n_backups; i++)
        if (self->backups[i].counted) {
            spaces[n] = self->backups[i].primary;
            names[n++] = self->backups[i].name;
        }
    pm_mesh_set_backups(self->mesh, names, spaces, n);
}

uint64_t
pm_replica_produced(const pm_replica_t *self)
{
    return self->produced;
}

uint64_t
pm_replica_pid_of(const char *primary)
{
    const char *dash = primary ? strrchr(primary, '-') : NULL;
    if (!dash || !dash[1])
        return 0;
    uint64_t v = 0;
    for (const char *p = dash + 1; *p; p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'z' ? *p - 'a' + 10 : -1;
        if (d < 0 || v > (UINT64_MAX - (uint64_t) d) / 36)
            return 0;
        v = v * 36 + (uint64_t) d;
    }
    return v;
}

void
pm_replica_set_gate(pm_replica_t *self, const char *const *nodes, const uint64_t *pids,
                    size_t n)
{
    self->gated = 1;
    self->n_gate = n < S_MAX_BACKUPS ? n : S_MAX_BACKUPS;
    for (size_t i = 0; i < self->n_gate; i++) {
        snprintf(self->gate_nodes[i], sizeof self->gate_nodes[i], "%s", nodes[i]);
        self->gate_pids[i] = pids[i];
    }
}

int
pm_replica_backup(const pm_replica_t *self, size_t i, const char **name, uint64_t *pid,
                  uint64_t *acked, int *counted)
{
    if (i >= self->n_backups)
        return 0;
    *name = self->backups[i].name;
    *pid = self->backups[i].pid;
    *acked = self->backups[i].acked;
    *counted = self->backups[i].counted;
    return 1;
}

/* R1: the lowest acknowledgement among the recorded in-sync members. */
static uint64_t
s_gate_acked(const pm_replica_t *self)
{
    uint64_t low = self->produced;
    for (size_t g = 0; g < self->n_gate; g++) {
        uint64_t a = 0;
        for (size_t i = 0; i < self->n_backups; i++)
            if (self->backups[i].counted &&
                self->backups[i].pid == self->gate_pids[g] &&
                strcmp(self->backups[i].name, self->gate_nodes[g]) == 0)
                a = self->backups[i].acked;
        if (a < low)
            low = a;
    }
    return low;
}

uint64_t
pm_replica_acked(const pm_replica_t *self)
{
    if (self->gated)
        return s_gate_acked(self);
    uint64_t low = UINT64_MAX;
    size_t counted = 0;
    for (size_t i = 0; i < self->n_backups; i++)
        if (self->backups[i].counted) {
            counted++;
            if (self->backups[i].acked < low)
                low = self->backups[i].acked;
        }
    if (!counted && self->now < self->hold_until)
        return 0; /* just started: wait for a backup rather than degrade */
    if (!counted) {
        /* No backup holds the state yet (a lone agent, or a new backup still
         * copying): acknowledge on local durability rather than not at all,
         * and say so. */
        if (!((pm_replica_t *) self)->degraded && self->n_backups == 0 && self->produced) {
            ((pm_replica_t *) self)->degraded = 1;
            pm_log_warn("PM-REPL-DEGRADED", "no backup available: acknowledging with local "
                        "durability only");
        }
        return self->n_backups ? 0 : self->produced;
    }
    ((pm_replica_t *) self)->degraded = 0;
    return low;
}

void
pm_replica_stats_fill(pm_replica_t *self, pm_stats_t *out)
{
    out->parts |= PM_STATS_REPL;
    for (size_t i = 0; i < self->n_backups; i++) {
        pm_stats_backup_t *b = pm_stats_add_backup(out, self->backups[i].name);
        b->acked = self->backups[i].acked;
        b->counted = self->backups[i].counted != 0;
    }
    out->repl_replicas = (uint64_t) self->replicas;
    out->repl_produced = self->produced;
    out->repl_acked = pm_replica_acked(self);
    out->repl_transfers = self->transfers;
    out->repl_resyncs = self->resyncs;
    out->repl_records_sent = self->sent_records;
    out->repl_fenced = self->fenced;
}
