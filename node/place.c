/*
 * place.c - placement of invocations: on a local worker if one serves the
 * function, else on the member with the most free capacity for it; every
 * invocation this agent places is kept (pm_deleg_t) until its target
 * settles, so it can be placed again if that member dies, and its result
 * settles the target only through it (the guard below).
 *
 * The guard of a result (issues 11 and 16). A then's function is invoked
 * as soon as its source settles here, while the settle's record is still on
 * its way to the WAL and the backups; what waits is the function's result.
 *
 *   R1. The result goes back to the agent that placed the invocation (a
 *       member's agent sends it to the placer as a Result carrying the
 *       placer's invocation id and target), never to whoever serves the
 *       target's space now. An agent applies only a result of an
 *       invocation it placed and still keeps (same id, same target, from
 *       the member it placed it on): anything else is refused.
 *   R2. It applies it only while it serves the target's space, and the
 *       source's if it served that too (until R5), in the epochs it placed
 *       it in.
 *   R3. It applies it only once its journal position at placement (every
 *       record appended by then, the source's settle among them) is
 *       durable here and acknowledged by the counted backups; until then
 *       the result is held in the journal (pm_journal_hold_at). A hold the
 *       journal fails (the in-sync set changed, the space moved, stopping)
 *       is held again from the current position if R2 still holds, else
 *       dropped.
 *   R4. A placement whose spaces are not served here is not made.
 *   R6. R3 holds only a result whose source is in another space (or not
 *       known): a result whose source is in its target's space is applied
 *       at once (d->same_space), as the target's settle record then follows
 *       the source's in this agent's one stream (below).
 *   R5. Once R2 and R3 have held together for a placement whose source is
 *       in another space (its position covered while this agent served
 *       both spaces in their epochs), the source's half of R2 has done its
 *       work and is no longer checked (a journal hold at the placement's
 *       position, s_src_fn, clears d->src_space): only the target's space
 *       must still be served in its epoch.
 *
 * Why R5 is safe, and why it is needed (pmesh-sim seed 8732). R2 checks the
 * source's space because the source's outcome the function ran on must be
 * one its space's next owner holds. Once the position is covered while we
 * served the source's space in the epoch, it is: the settle is at every
 * counted backup of that epoch, and the next owner is one of them (the
 * argument below, the same that lets R3 apply a result). That is a fact
 * about the past that no later move of the source's space undoes, so
 * refusing the result afterwards protects nothing. The target is still
 * settled only here, only once (a store settle), only while we serve its
 * space in the placement's epoch, and only through the placement we keep
 * (R1: a result finds no placement once the target settled otherwise, or
 * once it was placed again). Without R5 nobody ran the continuation when
 * the source's space moved and the target's did not: we dropped the
 * placement (R2), our then had fired already and only waited for the
 * target, and the source's new owner revives only continuations whose
 * target is in the space it took (takeover.c), as only a target's owner may
 * settle it (R4). A placement whose source space moves before its position
 * is covered is still dropped (the source's settle may be lost with the
 * move); that case is not covered by R5.
 *
 * Why R6 is safe (issue 16: a chain step no longer waits for a durability
 * round). A source in the target's space is one this agent serves, so its
 * settle is a record of this agent's journal and replication stream: written
 * when it settled here, or streamed as part of the space's state when the
 * space was taken over or resumed here (takeover.c; a backup counts only
 * once it holds the state), in either case before a result placed from it
 * can arrive. The target's settle is a record appended after it in the same
 * stream, which the WAL and every backup hold as a prefix (a backup that
 * misses a record asks for the whole state rather than acknowledge over a
 * hole). So whatever holds the target's settle holds the source's: nothing
 * shows the target (replies and answers are held until its own record is
 * covered) before the outcome it was computed from is durable here and at
 * the counted backups, and a next owner that lacks the source's settle lacks
 * the target's too and runs the continuation from its copy. A source in
 * another space may move with its own history (R5), so its result waits.
 * That needs a deposed owner's copy to drop what it settled unacknowledged
 * once the new owner's state has it pending (records.c, takeover.c;
 * pmesh-sim seed 4752: such a copy kept a target settled from its source's
 * lost value and took the space over again with it).
 *
 * Why no target is settled from an outcome the space's next owner does not
 * hold: a target is settled here only by R1-R3, so at that moment this
 * agent serves the spaces in the placement's epoch and the source's settle
 * is in its WAL and at every counted backup. Any next owner of the space
 * (at a higher epoch) is chosen among those backups (issue 11: only an
 * in-sync member takes over) or is this agent restarted from its WAL, so it
 * holds the source's outcome, which is the input the function ran on (a
 * promise settles once). The target's own settle is then an ordinary
 * change: replicated, and acknowledged to nobody before it is durable
 * (journal.c). If instead the space moves or this agent stops before R3
 * releases the result, the result is dropped (R2, or the journal's fail):
 * the next owner runs the continuation from its own copy (thens.c,
 * pm_then_revive): if its copy has the source settled, on that outcome;
 * if not, when it settles there. A result that reaches the next owner,
 * or any agent but the placer, is refused by R1, as the next owner did not
 * place it. A placer that restarted has no record of the invocations of
 * its previous run (ids carry its generation), so R1 refuses their
 * results too.
 */

#include "place.h"

#include "relay.h"
#include "requests.h"
#include "steptrace.h"
#include "thens.h"

/* Whether this agent serves id's space; *epoch gets its epoch (0 without a
 * mesh: a single agent serves everything it holds). */
static int
s_serves(pm_agent_t *self, const char *id, char *space, size_t cap, uint64_t *epoch)
{
    *epoch = 0;
    if (!self->mesh)
        return 1;
    return pm_id_space(id, space, cap) && pm_mesh_owns(self->mesh, space, epoch);
}

/* R2: this agent still serves d's spaces in the epochs it placed d in. */
static int
s_still_placer(pm_agent_t *self, const pm_deleg_t *d)
{
    if (!self->mesh)
        return 1;
    char space[PM_WIRE_MAX_NAME + 1];
    uint64_t e;
    if (!s_serves(self, d->target, space, sizeof space, &e) || e != d->epoch)
        return 0;
    return !d->src_space || (pm_mesh_owns(self->mesh, d->src_space, &e) && e == d->src_epoch);
}

int
pm_place_target_pending(void *arg, const char *target)
{
    pm_agent_t *self = arg;
    /* Only the space's owner knows: a copy kept here as a backup, or left
     * from when we served the space, may show a settle that was never
     * acknowledged (seed 153: every invocation the new owner sent was
     * dropped here, the chain never ran). Its owner refuses a late result. */
    if (!pm_req_serves(self, target))
        return 1;
    pm_prom_t *p = pm_store_get(self->store, target);
    return !p || p->state == PM_STATE_PENDING;
}

void
pm_place_deleg_unlink(pm_agent_t *self, pm_deleg_t *d)
{
    pm_watch_cancel(&d->watch);
    if (d->prev)
        d->prev->next = d->next;
    else
        self->delegs = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->next = d->prev = NULL;
}

void
pm_place_deleg_free(pm_deleg_t *d)
{
    free(d->res);
    free(d->function);
    free(d->input);
    free(d->inv_id);
    free(d->src_space);
    free(d);
}

static void
s_deleg_done(pm_watch_t *watch, pm_prom_t *p)
{
    (void) p;
    pm_deleg_t *d = (pm_deleg_t *) watch;
    pm_place_deleg_unlink(d->agent, d);
    pm_place_deleg_free(d);
}

/* The invocation inv_id this agent placed for target and still keeps: one
 * of the target's watches (few per promise). */
static pm_deleg_t *
s_find(pm_agent_t *self, const char *target, const char *inv_id)
{
    pm_prom_t *q = target ? pm_store_get(self->store, target) : NULL;
    if (!q || !inv_id)
        return NULL;
    for (pm_watch_t *w = q->watches; w; w = w->next)
        if (w->fn == s_deleg_done && strcmp(((pm_deleg_t *) w)->inv_id, inv_id) == 0)
            return (pm_deleg_t *) w;
    return NULL;
}

/* The invocation started early for target q (pm_place_early), if any. */
static pm_deleg_t *
s_early_of(pm_prom_t *q)
{
    for (pm_watch_t *w = q->watches; w; w = w->next)
        if (w->fn == s_deleg_done && ((pm_deleg_t *) w)->early)
            return (pm_deleg_t *) w;
    return NULL;
}

static void s_guard(pm_agent_t *self, pm_deleg_t *d, const char *from, int state,
                    const void *data, size_t len);
static void s_src_watch(pm_agent_t *self, pm_deleg_t *d);

/* The source of early invocation d settled, and its then places function on
 * input now, in the spaces' epochs given: if that is what d was started
 * with, d stands for it from here on (its guard position is now, after the
 * source's settle record) and a result it kept meanwhile goes through the
 * guard; 1. Otherwise d is dropped (its result will be refused) and 0. */
static int
s_adopt(pm_agent_t *self, pm_deleg_t *d, const char *function, const uint8_t *input,
        size_t len, uint64_t epoch, const char *src_space, uint64_t src_epoch)
{
    int same = (!d->chained || d->input_known) && strcmp(d->function, function) == 0 &&
               d->input_len == len &&
               (!len || memcmp(d->input, input, len) == 0) && d->epoch == epoch &&
               !d->src_space == !src_space &&
               (!src_space || (strcmp(d->src_space, src_space) == 0 && d->src_epoch == src_epoch));
    if (!same) {
        if (d->chained)
            self->chain_dropped++;
        else
            self->fanin_early_dropped++;
        pm_log(PM_LOG_DEBUG, "PM-EARLY-DROPPED", d->target,
               "%s %s: started again", d->function,
               d->chained && !d->input_known
                   ? "was handed on with the invocation of its source but not started there"
                   : "started early on a guess its source's outcome did not confirm");
        pm_place_deleg_unlink(self, d);
        pm_place_deleg_free(d);
        return 0;
    }
    PM_STEPTRACE_MARK(d->chained ? "adopt_chained" : "adopt_early", input, len);
    if (d->chained)
        self->chain_kept++;
    else
        self->fanin_early_kept++;
    d->early = 0;
    if (self->journal) {
        d->pos = pm_journal_pos(self->journal);
        if (d->src_space)
            s_src_watch(self, d); /* R5, from the position it has now */
    }
    if (d->has_res) {
        uint8_t *res = d->res;
        size_t res_len = d->res_len;
        int state = d->res_state;
        char from[sizeof d->node];
        snprintf(from, sizeof from, "%s", d->node);
        d->res = NULL;
        d->has_res = 0;
        s_guard(self, d, from, state, res, res_len); /* (may free d) */
        free(res);
    }
    return 1;
}

/* Sends d to member node; 0, or -1 if it cannot be sent. */
static int
s_send_invoke(pm_agent_t *self, pm_deleg_t *d, const char *node, const pm_wire_step_t *steps,
              size_t n_steps)
{
    pm_msg_t m = {.type = PM_MSG_INVOKE, .invocation_id = d->inv_id, .function = d->function,
                  .value = d->input, .value_len = d->input_len, .target_id = d->target,
                  .attempt = 1, .steps = steps, .step_count = n_steps};
    PM_STEPTRACE_MARK("inv_send", d->input, d->input_len);
    if (pm_mesh_send(self->mesh, node, &m) != 0)
        return -1;
    PM_STEPTRACE_MARK("inv_sent", d->input, d->input_len);
    snprintf(d->node, sizeof d->node, "%s", node);
    d->sent_at = self->now_mono;
    pm_log_debug("PM-INVOKE-PLACED", "%s for %s placed on %s", d->function, d->target, node);
    return 0;
}

/* A copy of a result's len bytes, NUL-terminated (a reason is read as a
 * string). */
static uint8_t *
s_result_copy(const void *data, size_t len, const char *what)
{
    uint8_t *b = pm_xmalloc(len + 1, what);
    if (len)
        memcpy(b, data, len);
    b[len] = 0;
    return b;
}

/* A placed invocation of function on input for pending q, in q's space's
 * epoch, linked and watching q (the caller sets how it is guarded). */
static pm_deleg_t *
s_deleg_new(pm_agent_t *self, pm_prom_t *q, const char *function, const uint8_t *input,
            size_t len, uint64_t epoch)
{
    size_t tlen = strlen(q->id);
    pm_deleg_t *d = pm_xcalloc(1, sizeof *d + tlen + 1, "placed invocation");
    memcpy(d->target, q->id, tlen + 1);
    d->agent = self;
    d->function = pm_xstrdup(function, "placed invocation");
    if (len) {
        d->input = pm_xmalloc(len, "placed invocation");
        memcpy(d->input, input, len);
    }
    d->input_len = len;
    /* Unique across this agent's runs: a result of a previous run's
     * invocation finds no record (R1). */
    char iid[PM_WIRE_MAX_NAME + 48];
    if (!self->next_deleg)
        self->next_deleg = self->generation << 32;
    pm_id_tagged(iid, sizeof iid, self->space, 'd', ++self->next_deleg);
    d->inv_id = pm_xstrdup(iid, "placed invocation");
    d->epoch = epoch;
    d->sent_at = self->now_mono;
    pm_store_watch(q, &d->watch, s_deleg_done);
    d->next = self->delegs;
    if (self->delegs)
        self->delegs->prev = d;
    self->delegs = d;
    return d;
}

/* ---- chain forwarding (issue 16) ------------------------------------------
 *
 * A chain step used to be two round trips: the owner invokes f on a member,
 * the member's worker answers, the result goes back to the owner, the
 * owner's then fires and invokes the next function on a member. Now an
 * invocation placed on a member carries the continuations chained after its
 * target (the thens on it, and on their targets, in the same space, up to
 * PM_WIRE_MAX_STEPS), each with an invocation id minted here; the member
 * starts each one whose function one of its own workers serves as soon as
 * its source's invocation resolves, and says so with that result. Here each
 * is a placement started early (like a combinator's, pm_place_early) whose
 * input is learned from that result: when its source settles and its then
 * places exactly that (same function, that value as input, same epoch), the
 * member's invocation stands for it (s_adopt) and its result goes through
 * the guard (R1-R6: to this agent only, from that member only, in the
 * space's epoch); otherwise it is dropped and the then places anew. So the
 * member never settles anything: the owner still applies every step, in
 * order, and a member that dies or an owner that moves loses only work. */
typedef struct s_chain {
    pm_agent_t *self;
    const char *node;
    size_t n;
    pm_wire_step_t steps[PM_WIRE_MAX_STEPS];
    pm_deleg_t *made[PM_WIRE_MAX_STEPS];
} s_chain_t;

static void
s_chain_each(void *arg, const char *source, const char *function, const char *target)
{
    s_chain_t *c = arg;
    pm_agent_t *self = c->self;
    if (c->n == PM_WIRE_MAX_STEPS || !function || !pm_id_same_space(source, target))
        return;
    pm_prom_t *q = pm_store_get(self->store, target);
    char space[PM_WIRE_MAX_NAME + 1];
    uint64_t epoch;
    if (!q || q->state != PM_STATE_PENDING || !s_serves(self, target, space, sizeof space, &epoch))
        return;
    pm_deleg_t *old = s_early_of(q);
    if (old && old->chained && !old->input_known) {
        /* Handed on with an earlier placement whose member never started
         * the step before it (so it cannot start this one): hand it on
         * again with this one. */
        self->chain_dropped++;
        pm_place_deleg_unlink(self, old);
        pm_place_deleg_free(old);
    } else if (old) {
        return; /* started early already (a combinator's, or a member's) */
    }
    pm_deleg_t *d = s_deleg_new(self, q, function, NULL, 0, epoch);
    d->early = d->chained = d->same_space = 1;
    snprintf(d->node, sizeof d->node, "%s", c->node);
    c->steps[c->n] = (pm_wire_step_t){.source = source, .function = d->function,
                                      .target_id = d->target, .invocation_id = d->inv_id};
    c->made[c->n++] = d;
}

/* The continuations chained after d's target, to hand on with d to node
 * ("": a local worker), each kept as a placement started early there. */
static void
s_chain_build(pm_agent_t *self, const pm_deleg_t *d, const char *node, s_chain_t *c)
{
    *c = (s_chain_t){.self = self, .node = node};
    pm_prom_t *q = self->chain_forward ? pm_store_get(self->store, d->target) : NULL;
    if (!q)
        return;
    pm_then_each_on(q, s_chain_each, c);
    for (size_t i = 0; i < c->n && c->n < PM_WIRE_MAX_STEPS; i++) {
        pm_prom_t *t = pm_store_get(self->store, c->steps[i].target_id);
        if (t)
            pm_then_each_on(t, s_chain_each, c);
    }
    self->chain_forwarded += c->n;
}

/* Sends d to member node, with the continuations chained after its target
 * when chain is set; 0, or -1 if it cannot be sent. */
static int
s_send_placed(pm_agent_t *self, pm_deleg_t *d, const char *node, int chain)
{
    s_chain_t c = {.n = 0};
    if (chain)
        s_chain_build(self, d, node, &c);
    if (s_send_invoke(self, d, node, c.steps, c.n) == 0)
        return 0;
    self->chain_forwarded -= c.n;
    for (size_t i = 0; i < c.n; i++) {
        pm_place_deleg_unlink(self, c.made[i]);
        pm_place_deleg_free(c.made[i]);
    }
    return -1;
}

/* The member that ran an invocation we placed started some of the
 * continuations handed on with it on its result (data, len): that result
 * is their input. */
static void
s_chain_started(pm_agent_t *self, const char *from, const pm_wire_step_t *steps, size_t n,
                const void *data, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        pm_deleg_t *d = s_find(self, steps[i].target_id, steps[i].invocation_id);
        if (!d || !d->chained || d->input_known || strcmp(d->node, from) != 0)
            continue;
        free(d->input);
        d->input = NULL;
        if (len)
            d->input = s_result_copy(data, len, "placed invocation");
        d->input_len = len;
        d->input_known = 1;
        d->sent_at = self->now_mono;
        PM_STEPTRACE_MARK("chain_started", data, len);
    }
}

/* A member's side: the invocation of origin resolved with data: starts the
 * continuations handed on with it whose source is target and whose function
 * a local worker serves (their results go to the same placer); fills
 * started with them and returns how many. */
static size_t
s_chain_start(pm_agent_t *self, const pm_workers_origin_t *origin, const char *target,
              const void *data, size_t len, pm_wire_step_t *started)
{
    size_t n = 0;
    for (size_t i = 0; i < origin->n_next; i++) {
        const pm_wire_step_t *st = &origin->next[i];
        if (strcmp(st->source, target) != 0 || !pm_workers_serves(self->workers, st->function))
            continue;
        pm_workers_origin_t o = {.node = origin->node, .inv_id = st->invocation_id,
                                 .next = origin->next + i + 1, .n_next = origin->n_next - i - 1};
        if (pm_workers_invoke(self->workers, st->function, data, len, st->target_id, &o) != PM_OK)
            continue;
        self->chain_started++;
        started[n++] = (pm_wire_step_t){.target_id = st->target_id,
                                        .invocation_id = st->invocation_id};
    }
    return n;
}

/* Runs function on input to settle target, guarded as the header says;
 * source: the promise whose outcome input is (NULL: not known, the
 * target's space alone is checked). early: source is not settled yet, and
 * input is what it is expected to settle with (pm_place_early). */
static void
s_place(pm_agent_t *self, const char *source, const char *function, const uint8_t *input,
        size_t len, const char *target, int early)
{
    PM_STEPTRACE_MARK("place", input, len);
    pm_prom_t *q = pm_store_get(self->store, target);
    if (!q || q->state != PM_STATE_PENDING)
        return; /* settled meanwhile: nothing waits for a result */
    char space[PM_WIRE_MAX_NAME + 1], sspace[PM_WIRE_MAX_NAME + 1];
    uint64_t epoch, sepoch = 0;
    int src_other = source && pm_id_space(source, sspace, sizeof sspace) &&
                    pm_id_space(target, space, sizeof space) && strcmp(space, sspace) != 0;
    /* R4: the target's owner places (a copy kept as a backup, or left from
     * when we served the space, does not). A source of another space is
     * guarded too when it is ours; when it is not (a continuation revived
     * by the target's new owner, its source's space served elsewhere), its
     * outcome here came from its owner's replication stream. */
    if (src_other && (!self->mesh || !pm_mesh_owns(self->mesh, sspace, &sepoch)))
        src_other = 0;
    if (!s_serves(self, target, space, sizeof space, &epoch)) {
        pm_log(PM_LOG_DEBUG, "PM-INVOKE-NOT-PLACED", target,
               "%s: its id space is not served here (its owner runs it)", function);
        return;
    }
    pm_deleg_t *e = s_early_of(q);
    if (e && early)
        return; /* started early already */
    if (e && s_adopt(self, e, function, input, len, epoch, src_other ? sspace : NULL, sepoch))
        return;
    if (early) {
        self->fanin_early_starts++;
        pm_log(PM_LOG_DEBUG, "PM-EARLY-START", target,
               "%s started before its source %s settled, on its expected outcome", function,
               source ? source : "?");
    }
    pm_deleg_t *d = s_deleg_new(self, q, function, input, len, epoch);
    d->early = early;
    if (self->journal && !early)
        d->pos = pm_journal_pos(self->journal);
    d->same_space = source && pm_id_same_space(source, target);
    if (src_other) {
        d->src_space = pm_xstrdup(sspace, "placed invocation");
        d->src_epoch = sepoch;
    }
    if (d->src_space && self->journal && !early)
        s_src_watch(self, d); /* R5 (an early one's starts when it is adopted) */
    if (self->mesh && !pm_workers_serves(self->workers, function)) {
        const char *node = pm_mesh_place(self->mesh, function);
        if (node && s_send_placed(self, d, node, !early) == 0)
            return;
    }
    /* On a local worker (or queued here for one): the chain rides along all
     * the same, so a worker that chains runs the next step without waiting
     * for this agent. */
    s_chain_t c = {.n = 0};
    if (!early)
        s_chain_build(self, d, "", &c);
    pm_workers_origin_t o = {.node = NULL, .inv_id = d->inv_id, .next = c.steps,
                             .n_next = c.n};
    int err = pm_workers_invoke(self->workers, function, input, len, target, &o);
    if (err != PM_OK)
        pm_log(PM_LOG_ERROR, "PM-INVOKE-FAILED", target, "%s", pm_err_name(err));
}

void
pm_place_then(pm_agent_t *self, const char *source, const char *function, const uint8_t *input,
              size_t len, const char *target)
{
    s_place(self, source, function, input, len, target, 0);
}

void
pm_place_early(pm_agent_t *self, const char *source, const char *function,
               const uint8_t *input, size_t len, const char *target)
{
    s_place(self, source, function, input, len, target, 1);
}

void
pm_place_invoke(pm_agent_t *self, const char *function, const uint8_t *input, size_t len,
                const char *target)
{
    s_place(self, NULL, function, input, len, target, 0);
}

/* ---- results -------------------------------------------------------------- */

/* Settles d's target with a result (R1-R3 hold). */
static void
s_apply(pm_agent_t *self, pm_deleg_t *d, int state, const void *data, size_t len)
{
    PM_STEPTRACE_MARK("result_apply", data, len);
    int err = pm_store_settle(self->store, d->target, state, data, len, self->now_real, NULL);
    if (err == PM_ERR_VALUE_TOO_LARGE) {
        char why[160];
        snprintf(why, sizeof why, "VALUE_TOO_LARGE: %s returned %zu bytes", d->function, len);
        err = pm_store_settle(self->store, d->target, PM_STATE_REJECTED, why, strlen(why),
                              self->now_real, NULL);
    }
    /* (d is freed by now if the target settled: its watch ran.) */
    (void) err;
}

/* R5: a placement whose source is in another space, waiting for its
 * position to be covered (a hold of the journal's) while R2 still holds. */
typedef struct s_src_hold {
    pm_agent_t *agent;
    char *inv_id;
    char target[];
} s_src_hold_t;

static void
s_src_fn(void *item, int how)
{
    s_src_hold_t *h = item;
    pm_agent_t *self = h->agent;
    pm_deleg_t *d = how == PM_JOURNAL_CLOSED || self->stopping ? NULL
                                                                : s_find(self, h->target, h->inv_id);
    if (d && !d->early && d->src_space && s_still_placer(self, d)) {
        if (how == PM_JOURNAL_FAILED) {
            /* Failed for another space's move or a change of the in-sync
             * set: ours still stands and waits for what is appended now. */
            pm_journal_hold_at(self->journal, pm_journal_pos(self->journal), s_src_fn, h);
            return;
        }
        /* Covered while we serve both spaces in their epochs: every later
         * owner of the source's space holds the outcome it ran on. */
        pm_log(PM_LOG_DEBUG, "PM-INVOKE-SOURCE-DURABLE", d->target,
               "%s: the settle of its source (space %s, epoch %llu) is at the backups; only "
               "the target's space guards its result from now on", d->inv_id, d->src_space,
               (unsigned long long) d->src_epoch);
        free(d->src_space);
        d->src_space = NULL;
    }
    free(h->inv_id);
    free(h);
}

/* Starts R5 for d (a source in another space; with a journal). */
static void
s_src_watch(pm_agent_t *self, pm_deleg_t *d)
{
    size_t n = strlen(d->target);
    s_src_hold_t *h = pm_xcalloc(1, sizeof *h + n + 1, "placed invocation");
    h->agent = self;
    h->inv_id = pm_xstrdup(d->inv_id, "placed invocation");
    memcpy(h->target, d->target, n + 1);
    pm_journal_hold_at(self->journal, d->pos, s_src_fn, h);
}

/* A result held until its placement's position is covered (R3). */
typedef struct s_held_result {
    pm_agent_t *agent;
    char *from;
    char *inv_id;
    char *target;
    int state;
    uint8_t *data;
    size_t len;
} s_held_result_t;

static void
s_held_free(s_held_result_t *h)
{
    free(h->from);
    free(h->inv_id);
    free(h->target);
    free(h->data);
    free(h);
}

static void
s_held_fn(void *item, int how)
{
    s_held_result_t *h = item;
    if (how == PM_JOURNAL_CLOSED) {
        s_held_free(h);
        return;
    }
    pm_agent_t *self = h->agent;
    pm_deleg_t *d = self->stopping ? NULL : s_find(self, h->target, h->inv_id);
    if (d && strcmp(d->node, h->from) == 0 && s_still_placer(self, d)) {
        if (how == PM_JOURNAL_RELEASED) {
            s_apply(self, d, h->state, h->data, h->len);
        } else {
            /* The journal fails every space's unreplicated holds when one
             * space moves or the in-sync set changes: ours still stands,
             * and waits for what is appended now (covering d->pos). */
            pm_journal_hold_at(self->journal, pm_journal_pos(self->journal), s_held_fn, h);
            return;
        }
    } else {
        self->results_refused++;
        pm_log(PM_LOG_DEBUG, "PM-RESULT-DROPPED", h->target,
               "result of %s dropped: its placement no longer stands here (the next owner "
               "runs the continuation from its copy)", h->inv_id);
    }
    s_held_free(h);
}

/* A result of invocation inv_id for target, from member `from` ("": a local
 * worker). PM_ERR_NOT_HOLDER when refused (R1, R2). */
static int
s_result(pm_agent_t *self, const char *from, const char *inv_id, const char *target, int state,
         const void *data, size_t len)
{
    pm_deleg_t *d = s_find(self, target, inv_id);
    if (!d || strcmp(d->node, from) != 0 || !s_still_placer(self, d)) {
        self->results_refused++;
        pm_log(PM_LOG_DEBUG, "PM-RESULT-REFUSED", target ? target : "?",
               "result of %s from %s refused: %s", inv_id ? inv_id : "?", *from ? from : "here",
               d && strcmp(d->node, from) == 0 ? "this agent no longer serves its id space in "
                                                 "the epoch it placed it in"
                                               : "no invocation this agent placed there waits for it "
                                                 "(its target settled, or it was placed again)");
        return PM_ERR_NOT_HOLDER;
    }
    if (d->early) {
        /* Its source has not settled: kept until it does (s_adopt). */
        if (!d->has_res) {
            d->res = s_result_copy(data, len, "early result");
            d->res_len = len;
            d->res_state = state;
            d->has_res = 1;
        }
        return PM_OK;
    }
    s_guard(self, d, from, state, data, len);
    return PM_OK;
}

/* R3: applies a result of d (R1 and R2 checked) once d's position is
 * covered, holding it in the journal until then. */
static void
s_guard(pm_agent_t *self, pm_deleg_t *d, const char *from, int state, const void *data,
        size_t len)
{
    if (!self->journal || d->same_space || pm_journal_covered(self->journal, d->pos)) {
        s_apply(self, d, state, data, len);
        return;
    }
    s_held_result_t *h = pm_xcalloc(1, sizeof *h, "held result");
    h->agent = self;
    h->from = pm_xstrdup(from, "held result");
    h->inv_id = pm_xstrdup(d->inv_id, "held result");
    h->target = pm_xstrdup(d->target, "held result");
    h->state = state;
    h->data = s_result_copy(data, len, "held result");
    h->len = len;
    pm_journal_hold_at(self->journal, d->pos, s_held_fn, h);
}

/* Workers hook: a local worker answered. The result goes to the placer: to
 * this agent's guard, or back to the member that placed it. */
int
pm_place_settle_anywhere(void *arg, const pm_workers_origin_t *origin, const char *function,
                         const char *target, int state, const void *data, size_t len)
{
    pm_agent_t *self = arg;
    (void) function;
    if (!origin || !origin->inv_id) /* placed without a record: settles directly */
        return pm_store_settle(self->store, target, state, data, len, self->now_real, NULL);
    if (!origin->node) {
        if (state == PM_STATE_RESOLVED && origin->n_next) {
            pm_wire_step_t started[PM_WIRE_MAX_STEPS];
            size_t n = s_chain_start(self, origin, target, data, len, started);
            s_chain_started(self, "", started, n, data, len);
        }
        return s_result(self, "", origin->inv_id, target, state, data, len) == PM_OK
                   ? PM_OK
                   : PM_ERR_NOT_FOUND;
    }
    if (!self->mesh)
        return PM_ERR_NOT_FOUND;
    if (state == PM_STATE_RESOLVED && len > self->max_value_bytes)
        return PM_ERR_VALUE_TOO_LARGE; /* workers.c rejects the target instead */
    pm_wire_step_t started[PM_WIRE_MAX_STEPS];
    size_t n_started = state == PM_STATE_RESOLVED && origin->n_next
                           ? s_chain_start(self, origin, target, data, len, started)
                           : 0;
    pm_msg_t m = {.type = PM_MSG_RESULT, .invocation_id = origin->inv_id, .target_id = target,
                  .ok = state == PM_STATE_RESOLVED, .steps = started, .step_count = n_started};
    char reason[1024];
    if (state == PM_STATE_RESOLVED) {
        m.value = data;
        m.value_len = len;
    } else {
        snprintf(reason, sizeof reason, "%.*s", (int) len, (const char *) data);
        m.reason = reason;
    }
    PM_STEPTRACE_MARK("settle_send", data, len);
    /* Not sent (the placer is gone): the next owner runs it from its copy;
     * lost on the way: the placer sends the invocation again. */
    if (pm_mesh_send(self->mesh, origin->node, &m) != 0)
        pm_log(PM_LOG_DEBUG, "PM-RESULT-UNSENT", target, "to %s", origin->node);
    return PM_OK;
}

void
pm_place_on_result(pm_agent_t *self, const char *from, const pm_msg_t *m)
{
    int state = m->ok ? PM_STATE_RESOLVED : PM_STATE_REJECTED;
    const char *why = m->reason && *m->reason ? m->reason : "worker failed";
    const void *data = m->ok ? (const void *) m->value : why;
    size_t len = m->ok ? (m->value ? m->value_len : 0) : strlen(why);
    PM_STEPTRACE_MARK("result_in", data, len);
    if (m->step_count && m->ok)
        s_chain_started(self, from, m->steps, m->step_count, data, len);
    s_result(self, from, m->invocation_id, m->target_id, state, data, len);
}

/* Once a second: placed invocations whose targets are still pending, sent again to their
 * member every PM_PLACE_RESEND_MS: the invocation or its result may have
 * been lost on the way (a connection reset, a member that dropped frames of
 * one it had just declared dead), and the member's death, which places it
 * again, may never come. The member ignores it while it holds one for that
 * placement (workers.c); a result that is on its way makes it moot. One
 * whose spaces moved on is forgotten (R2: its result would be refused). */
void
pm_place_tick(pm_agent_t *self, int64_t mono)
{
    if (!self->mesh || mono - self->place_scan < 1000)
        return;
    self->place_scan = mono;
    /* Queued here for a function nobody here serves (its worker died and
     * none came back): to a member with room for it, once one has. */
    pm_workers_offer_unserved(self->workers, pm_place_take_unserved, self);
    for (pm_deleg_t *d = self->delegs, *next; d; d = next) {
        next = d->next;
        if (!s_still_placer(self, d)) {
            pm_log(PM_LOG_DEBUG, "PM-INVOKE-FORGOTTEN", d->target,
                   "%s (%s): this agent no longer serves its id spaces in the epochs it placed "
                   "it in", d->inv_id, d->function);
            pm_place_deleg_unlink(self, d);
            pm_place_deleg_free(d);
            continue;
        }
        if (!d->node[0] || d->has_res || (d->chained && !d->input_known) ||
            mono - d->sent_at < PM_PLACE_RESEND_MS ||
            !pm_mesh_is_up(self->mesh, d->node))
            continue;
        char node[sizeof d->node];
        snprintf(node, sizeof node, "%s", d->node);
        if (s_send_invoke(self, d, node, NULL, 0) == 0)
            self->inv_resent++;
        d->sent_at = mono;
    }
}

int
pm_place_take_unserved(void *arg, const pm_workers_origin_t *origin, const char *function,
                       const uint8_t *input, size_t len, const char *target)
{
    (void) input;
    (void) len;
    pm_agent_t *self = arg;
    pm_deleg_t *d = s_find(self, target, origin ? origin->inv_id : NULL);
    if (!d || !s_still_placer(self, d))
        return 1; /* nothing waits for it here any more */
    const char *node = pm_mesh_place(self->mesh, function);
    return node && s_send_invoke(self, d, node, NULL, 0) == 0;
}
