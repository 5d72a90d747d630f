/*
 * isr.h - the agent's side of the configuration store (issue 11): who owns
 * each id space, at which epoch, and which backups are in sync, decided by
 * compare-and-swap in the store (mesh/coord.h states the rules R1-R6 and
 * why they are safe; this module applies them).
 *
 *   R5 start: list the store, create the record of our new primary (owner
 *      us, our process id, epoch 1, in-sync set empty), watch from the
 *      list's revision on. Spaces of a previous process of ours are taken
 *      over only through R3, like anyone's: a restarted agent is a new
 *      process and is in no in-sync set.
 *   R2 set changes: for every space we own, the wanted set is our counted
 *      backups (same process) that hold everything acknowledged; a member
 *      that is no longer one leaves by CAS, a backup that caught up joins by
 *      CAS. Writes are refused (UNAVAILABLE) while fewer than min_in_sync
 *      members are recorded.
 *   R1 gate: the replica acknowledges only what every recorded member (and
 *      every member a CAS under way adds) holds (pm_replica_set_gate).
 *   R3 takeover: a space whose recorded owner is not alive (its node down,
 *      or up as another process) is taken over by a recorded in-sync member,
 *      by CAS to epoch + 1; from the first attempt on, records of the older
 *      epoch are refused (pm_isr_fence_epoch). A lost CAS re-reads.
 *   R4 watch: a record at a higher epoch than ours, or naming another owner,
 *      stops us serving the space.
 *   R6 the store is never on the data path; when it is down, spaces that
 *      need no change keep serving, changes wait and are retried with
 *      backoff (counted, logged PM-COORD-WAIT / PM-COORD-RETRY).
 *   R7 retire: a space the agent retired (pm_isr_retire: it holds no
 *      promise and no continuation, is not a live member's primary, and the
 *      agent serves it no more) whose record names us leaves the store, by
 *      compare-and-delete at the revision we know (never our own primary).
 *      A deleted record (ours, or learned by the watch, a re-read or a
 *      resync) is forgotten, its space dropped if we served it, and its
 *      epoch kept as a fence for the rest of the process (R4 for a stale
 *      owner cut off before the deletion). No record is ever created again
 *      for a space whose record once existed: create is only for our new
 *      primary, once. Why safe: coord.h, R7.
 *   R8 hand-back: an heir gives a space back to its home node's restarted
 *      agent. When: we own the space (an heir: the space's home node, its
 *      name's prefix, is another node), that node's current process (alive,
 *      the process its primary names) is a recorded in-sync member of it
 *      and was never recorded its owner as far as we have seen (a process
 *      that owned it may be alive, fenced or cut off, still serving it at
 *      its old epoch from its own copy: named owner again it would go on
 *      serving that copy), the store is reachable, and no other hand-back
 *      of ours is under way (one at a time). How: (1) drain: from now on writes to the space
 *      (create, settle, then, combine) are refused here with UNAVAILABLE
 *      ("being handed back"; the client tries again and reaches the new
 *      owner), and we remember what we have produced for the backups so far
 *      (drain LSN); (2) once the gate has acknowledged it (every recorded
 *      in-sync member, the new owner among them, holds every record of the
 *      space produced before the drain: acknowledged writes, registered
 *      continuations, pending invocations and placements), CAS the record
 *      from the revision we know to epoch + 1 with the home process as
 *      owner, our in-sync set without it, plus us (pm_isr_rule_handback:
 *      the record the home agent's own R3 would write, with the old owner
 *      kept in sync); (3) on success we drop the space as R4 drops a moved
 *      one (takeover.c pm_takeover_on_moved: held replies of unreplicated
 *      changes fail, awaits hear OWNER_LOST and re-subscribe, continuations
 *      of the space are the new owner's), and parked and relayed requests
 *      follow the store's record to the new owner. The drain is abandoned
 *      (writes accepted again) when the set must change (R2), the home
 *      process leaves the set or dies, the store is down, or it takes
 *      longer than S_HANDBACK_MS; tried again later. The home agent serves
 *      the space as soon as it learns a record naming it owner that it did
 *      not write (PM-COORD-HANDED-BACK; also when the record arrives while
 *      its own takeover attempt is under way), and its mint space
 *      (mint.h) is resumed then (pm_isr_resumable answers 1).
 *      Why safe. Nothing acknowledged is lost: an acknowledgement needs
 *      every recorded in-sync member (R1), the new owner is one, and it
 *      holds every record it acknowledged in the copy it serves from (it
 *      applies an owner's records in order and refuses the old epoch's once
 *      it knows the new one, so what it acknowledged it holds; what it
 *      refused is never acknowledged, and fails here at the drop). No two
 *      owners: the CAS moves the epoch; our records of the old epoch are
 *      refused by every member that knows the new one (R4), and we stop
 *      serving at the CAS's answer or the watch. Nothing in flight is
 *      dropped: writes are refused during the drain rather than accepted
 *      and lost; what the drain acknowledged is at the new owner, which
 *      revives continuations and re-places invocations from its copy
 *      (at-least-once, as after R3); requests parked or relayed here go to
 *      the new owner. What would be orphaned by the move holds it up: a
 *      drain starts, and its CAS is sent, only while nothing here depends
 *      on the space but what follows it (env.dependants: a continuation
 *      here whose source is in the space and whose target is not, or an
 *      invocation placed on such a source, or a combinator watching an
 *      input in it, would watch a copy nobody settles any more once the
 *      space is served elsewhere; awaits hear OWNER_LOST and follow it,
 *      the space's own continuations and placements are its next owner's);
 *      new continuations on the space's promises are refused during the
 *      drain, so none appears while the CAS is under way. What the heir
 *      itself still writes into the space during the drain (a timeout, a
 *      continuation's result) may not reach the new owner: it is never
 *      acknowledged then (R1), and the new owner times the promise out or
 *      runs the continuation again from its copy. (Open: a combinator made
 *      here during the CAS itself, with an input in the space, is not
 *      held up.) Why live: the home agent's next loop serves the space,
 *      its R2 records its own backups, and mint.c resumes minting there
 *      (a restarted agent waits takeover_grace for the hand-back before it
 *      mints in its primary, and takes the space up again if it comes back
 *      later). A hand-back that cannot finish is abandoned, never blocks
 *      the space (writes resume) and is retried.
 *   Force: pmesh space force-owner is a request to the agent (pm_isr_force):
 *      it re-reads the record and CASes from that revision to epoch + 1
 *      with us as owner and an empty in-sync set, with its own store client
 *      (its TLS), and answers through env.forced.
 * Pure helpers (pm_isr_rule_*) decide; the rest does I/O through coord.h.
 */
#ifndef PM_ISR_H
#define PM_ISR_H

#include "coord.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pm_isr pm_isr_t;

/* ---- the rules, pure (unit-tested) ---- */

/* 1 if (node, pid) is in r's in-sync set. */
int pm_isr_rule_member(const pm_coord_record_t *r, const char *node, uint64_t pid);
/* R3: the record that makes (node, pid) the owner of cur's space at
 * cur->epoch + 1, its in-sync set cur's without it and without the old
 * owner. 0 and *out, or -1 when (node, pid) may not take over: it is not a
 * recorded in-sync member, and neither is (node, prev), the previous process
 * on its data dir, nor was that the owner. prev (0: none) is the process
 * whose WAL this one replayed: what it acknowledged was durable in it, so
 * the new process holds it too (not with fsync never: then prev is 0). */
int pm_isr_rule_takeover(const pm_coord_record_t *cur, const char *node, uint64_t pid,
                         uint64_t prev, pm_coord_record_t *out);
/* R8: the record that gives cur's space, owned by (me, me_pid), to its
 * in-sync member (node, pid) at cur->epoch + 1: as R3 would write it for
 * (node, pid), with (me, me_pid) kept in sync. 0 and *out, or -1 when
 * (me, me_pid) is not the owner or (node, pid) not a recorded member. */
int pm_isr_rule_handback(const pm_coord_record_t *cur, const char *node, uint64_t pid,
                         const char *me, uint64_t me_pid, pm_coord_record_t *out);
/* The operator's override: (node, pid) owns cur's space at epoch + 1 with an
 * empty in-sync set, in sync or not (what it lacks is lost). */
void pm_isr_rule_force(const pm_coord_record_t *cur, const char *node, uint64_t pid,
                       pm_coord_record_t *out);
/* R2: cur with the in-sync set want[0..n) (only the owner's own record). */
void pm_isr_rule_set(const pm_coord_record_t *cur, const pm_coord_member_t *want, size_t n,
                     pm_coord_record_t *out);
/* Whether m is one of v[0..n). */
int pm_isr_rule_has(const pm_coord_member_t *v, size_t n, const pm_coord_member_t *m);
/* Whether two in-sync sets hold the same members (order ignored). */
int pm_isr_rule_same_set(const pm_coord_member_t *a, size_t na, const pm_coord_member_t *b,
                         size_t nb);

/* ---- the agent's coordinator ---- */

enum { PM_ISR_GONE = 0, PM_ISR_ALIVE = 1, PM_ISR_OTHER = 2 };

/* How long an owner process that we do not know, on a node that runs
 * another one, counts as alive: a restarted agent resumes its spaces by R3
 * at once, and the news of its new process reaches the other members by
 * gossip a little later; until then an heir must not take them from it. */
#define PM_ISR_OTHER_GRACE_MS 3000

/* What the coordinator asks of, and does to, the agent (isr_agent.c binds
 * it to the mesh, the replica and the journal; unit tests to a model). */
typedef struct pm_isr_env {
    /* What we know of process pid on node: PM_ISR_ALIVE (it runs there),
     * PM_ISR_GONE (node is down) or PM_ISR_OTHER (node runs a process we
     * know, another one: pid is an older process, or a newer one whose news
     * has not reached us yet). */
    int (*alive)(void *arg, const char *node, uint64_t pid);
    /* Whether we serve space now (and at which epoch). */
    int (*serves)(void *arg, const char *space, uint64_t *epoch);
    /* Serve space at epoch from now on (a takeover, a forced owner). */
    void (*take)(void *arg, const char *space, uint64_t epoch, const char *why);
    /* Stop serving space: the store names another owner (R4). */
    void (*drop)(void *arg, const char *space);
    /* Our backup i: 1 with its node, process id, acknowledged LSN and
     * whether it holds the whole state; 0 past the last. */
    int (*backup)(void *arg, size_t i, const char **node, uint64_t *pid, uint64_t *acked,
                  int *counted);
    /* Records produced for the backups so far; what the gate acknowledges. */
    uint64_t (*produced)(void *arg);
    uint64_t (*acked)(void *arg);
    /* R1: exactly these members count for acknowledgements. */
    void (*gate)(void *arg, const char *const *nodes, const uint64_t *pids, size_t n);
    /* Ends the replies held for changes not yet at every counted member
     * with err and why (never acknowledged); returns how many. */
    size_t (*fail_held)(void *arg, int err, const char *why);
    /* Answers an operator's force-owner (pm_isr_force): err 0 and text the
     * JSON of the outcome, or an error (PM_ERR_*) and text its reason.
     * NULL: no answer is sent. */
    void (*forced)(void *arg, uint64_t session, uint64_t req, int err, const char *text);
    /* R8: how many things here depend on space and would be orphaned if
     * it moved now: invocations placed on a source in it, continuations
     * whose source is in it and whose target is not, and other watches on
     * its pending promises than awaits (which hear OWNER_LOST and follow
     * the space) and its own continuations and placements (which its next
     * owner runs from its copy). 0: it may be handed back. NULL: none. */
    size_t (*dependants)(void *arg, const char *space);
} pm_isr_env_t;

typedef struct pm_isr_config {
    const char *url;    /* etcd://... or mem:// */
    const char *prefix; /* the mesh's key prefix */
    pm_coord_mem_t *mem; /* mem://: the shared store */
    void *zmq_ctx;      /* NULL: the store client's own */
    const char *node;   /* our node name */
    const char *primary; /* our new primary id space (R5 creates its record) */
    uint64_t pid;       /* our process id (not 0) */
    uint64_t prev;      /* the process before us on our data dir (0: none) */
    const char *mint;   /* mint.h: the space we mint in again (NULL: none) ... */
    uint64_t mint_prev; /* ... and the last process of our data dir that served it */
    int min_in_sync;    /* recorded backups needed to accept writes */
    const char *ca_file, *cert_file, *key_file; /* the store's TLS (NULL: none) */
} pm_isr_config_t;

/* NULL with a message when the configuration is malformed. */
pm_isr_t *pm_isr_new(const pm_isr_config_t *cfg, const pm_isr_env_t *env, void *arg, char *err,
                     size_t errlen);
void pm_isr_destroy(pm_isr_t **self_p);
/* Starts R5 (list, create our primary, watch). */
void pm_isr_start(pm_isr_t *self);
void *pm_isr_socket(pm_isr_t *self);
/* Drains the store's answers (now: monotonic ms). */
void pm_isr_readable(pm_isr_t *self, int64_t now);
/* Once per loop iteration: set changes, takeovers, retries, the gate. */
void pm_isr_tick(pm_isr_t *self, int64_t mono);
/* A member went down: its spaces may be ours to take over. */
void pm_isr_member_down(pm_isr_t *self, int64_t now);
/* The epoch below which records of space are refused (R4): the epoch of
 * the latest record we know, or the epoch of our own takeover attempt while
 * that attempt may still win (its CAS is under way or its outcome unknown,
 * and the record has not moved past the revision it was made from); 0:
 * none. An attempt that can no longer win stops fencing: its epoch was
 * never installed, and the recorded owner's records are the truth. */
uint64_t pm_isr_fence_epoch(pm_isr_t *self, const char *space);
/* Something suggests that space, which we serve, moved on (a backup
 * refused our records with a newer epoch, or gossip claims it): re-read its
 * record now (R4 drops it if the store names another owner). why: logged. */
void pm_isr_refresh(pm_isr_t *self, const char *space, const char *why);
/* The owner the store records for space, if that process is alive (a
 * routing hint usually fresher than gossip: the watch hears a takeover at
 * once, but not while its stream is stalled, as after a split), and its
 * epoch in *epoch (if not NULL); NULL: none known, or not alive. Borrowed
 * until the next call. */
const char *pm_isr_live_owner(pm_isr_t *self, const char *space, uint64_t *epoch);
/* Whether space may be ours to serve (mint.c: a restarted agent's mint
 * space): 1 the store records us its owner; 2 not yet, but we may take it
 * over (R3) and will try; 3 another live process owns it (an heir took it
 * over while we were down); 0 not ours (no record, deleted, or we may not
 * take it over); -1 the store has not been read yet. */
int pm_isr_resumable(pm_isr_t *self, const char *space);
/* A write to space (which we serve) is refused: PM_ERR_UNAVAILABLE with the
 * reason in msg; 0: go ahead. */
int pm_isr_write_check(pm_isr_t *self, const char *space, char *msg, size_t msglen);
/* R8: the space we are handing back (draining, or its CAS under way), or
 * NULL. Borrowed. */
const char *pm_isr_handing_back(pm_isr_t *self);
/* A request on a space owned elsewhere that cannot be served: its owner is
 * not alive and neither is any recorded in-sync member. PM_ERR_UNAVAILABLE
 * with the reason in msg, or 0. */
int pm_isr_route_check(pm_isr_t *self, const char *space, char *msg, size_t msglen);
/* R7: the agent retired space (it holds no promise and no continuation and
 * is served no more): if the store names us its owner and it is not our
 * primary, its record is deleted by compare-and-delete at the revision we
 * know (retried while the store is down; given up if the record moved to
 * another owner). Logged PM-COORD-RETIRE, then PM-COORD-DELETED. */
void pm_isr_retire(pm_isr_t *self, const char *space);
/* pmesh space force-owner SPACE --accept-data-loss, asked of this agent by
 * an operator on its local socket: re-reads space's record and by one CAS
 * from that revision makes us its owner at epoch + 1 with an empty in-sync
 * set (pm_isr_rule_force); we serve it from our copy (PM-COORD-FORCED).
 * 0: under way, env.forced(session, req, ...) answers it (JSON
 * {space, owner, owner_pid, epoch, was_owner, was_epoch}, or an error: the
 * record changed meanwhile, the store did not answer (the outcome is then
 * unknown: the agent re-reads and serves the space if it happened), no
 * record). Else an error at once (PM_ERR_*) with the reason in msg. */
int pm_isr_force(pm_isr_t *self, const char *space, uint64_t session, uint64_t req, char *msg,
                 size_t msglen);
/* The store client (tests cut it off the memory store). Borrowed. */
pm_coord_t *pm_isr_coord(pm_isr_t *self);
/* Fills the coordination part of a status snapshot (stats.h). */
struct pm_stats;
void pm_isr_stats_fill(pm_isr_t *self, struct pm_stats *out);

#endif
