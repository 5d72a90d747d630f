/*
 * swim.c - SWIM membership with Lifeguard, as a pure state machine. This
 * file is the protocol; the member table, suspicion timers, local health and
 * the piggyback queue are swim_table.c, configuration swim_config.c
 * (swim_priv.h says what they share).
 *
 * Owns the member table (self included), the one probe in flight, the
 * ping-req relays this node serves, the suspicion timers, the queue of
 * updates waiting to be piggybacked, and the seed list. Everything is driven
 * by pm_swim_tick / pm_swim_receive with the caller's clock; nothing here
 * blocks, sleeps, reads a clock or touches a socket.
 *
 * The protocol follows SWIM (Das, Gupta, Motivala 2002) with the Lifeguard
 * extensions (Dadgar et al. 2018) as hashicorp/memberlist implements them:
 * local health scales the probe period and timeout, relays nack, suspicion
 * timeouts start long and shrink with independent confirmations, a probe of
 * a suspect carries the suspicion (buddy system), a full push-pull sync runs
 * periodically and on join, and a remote "dead" seen in a sync only raises
 * a suspicion. Our changes, each for a reason given where it is coded:
 *   - the probe order is a random permutation walked round-robin but not
 *     reshuffled between rounds (bounds the gap between probes of a member);
 *   - a node that hears a suspicion probes the suspect next (confirmations,
 *     or the refutation, come within two periods);
 *   - a node that receives an update older than its own record answers the
 *     sender with the newer record, and one that hears from a member it holds
 *     suspect/dead/left (or at a stale incarnation) tells that member (s_tell);
 *   - a sync is also tried with one dead member per round (heals partitions).
 *
 * ---- Defaults and the detection-time math -------------------------------
 *
 * Target: with 5 members, a SIGKILLed member is dead at every survivor
 * within ~1.5 s of the kill, p99. With period I = probe_interval = 200 ms,
 * probe_timeout = 80 ms, suspicion_mult = 3, suspicion_max_mult = 6:
 *
 *   1. First probe. Each of the 4 survivors probes the victim exactly once
 *      every 4 periods, at a phase independent of the others, so the time
 *      from the kill to the first probe is the minimum of 4 uniform draws on
 *      [0, 4 I): p99 = 4 I * (1 - 0.01^(1/4)) = 2.74 I = 548 ms, worst 4 I.
 *   2. That probe fails: no ack by probe_timeout, ping-req through 3 relays
 *      (they nack at 64 ms), still no ack at the end of the period: suspect
 *      at +1 I, so by 748 ms p99.
 *   3. Suspicion timeout. min = suspicion_mult * max(1, log10 N) * I =
 *      3 * 1 * 200 = 600 ms for N <= 10; max = 6 * min = 3.6 s; Lifeguard
 *      expects k = suspicion_mult - 2 = 1 independent confirmation to bring
 *      it down from max to min. The survivors hear the suspicion by gossip
 *      within milliseconds, probe the victim at their next period start
 *      (<= 1 I) and fail at its end (+1 I): the confirmation is back at the
 *      first suspecter within ~2 I = 400 ms < min, so its timer runs min.
 *      Dead at 748 + 600 = 1.35 s p99 (worst 4 I + I + 600 = 1.6 s).
 *   4. The death is gossiped at once to gossip_nodes = 3 members, and the
 *      other survivors' own timers (started within ms, also confirmed)
 *      expire within a few ms anyway.
 *   Measured in the unit test's simulation (500 kills, 1-3 ms latency):
 *   p50 ~0.92 s, p99 ~1.31-1.37 s, max <= 1.55 s across 40 seeds.
 *
 * Why not 500 ms periods: step 1 alone would be 1.37 s p99, and step 2 adds
 * 0.5 s. What 200 ms costs: 5 probes/s per member, about 10 small messages/s
 * sent per member (measured 10.2 with syncs), independent of N.
 * Safety margins: a member paused for less than the suspicion minimum
 * (600 ms) is never declared dead, since the earliest any timer can expire
 * is 1 I + min = 800 ms after it stopped answering and it refutes as soon
 * as it resumes. A lone (unconfirmed) suspicion runs 3.6 s, which is what
 * makes 20% message loss harmless: the test runs 600 s of it without a
 * false death. Under load, local health stretches I and the probe timeout
 * up to 9x on the node that is slow, not on the others.
 *
 * Everything scales: min suspicion grows with log10 N past 10 members, and
 * each update is retransmitted retransmit_mult * ceil(log2(N+1)) times.
 */
#include "swim_priv.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- sending */

/* Sends one message: the `extras` first (as many as fit the byte budget),
 * then as many queued updates as fit, least-sent and newest first. Sync
 * messages instead carry the whole table. */
static void
s_send_x(pm_swim_t *s, const char *endpoint, pm_swim_msg_type_t type, uint64_t seq,
         const char *target_name, const char *target_endpoint, const pm_swim_update_t *extras,
         size_t extra_count)
{
    pm_swim_msg_t msg = {
        .type = type,
        .from_name = s->self->name,
        .from_endpoint = s->self->endpoint,
        .from_incarnation = s->self->incarnation,
        .seq = seq,
        .target_name = target_name,
        .target_endpoint = target_endpoint,
    };
    size_t picked = 0;
    if (type == PM_SWIM_MSG_SYNC_REQ || type == PM_SWIM_MSG_SYNC_RESP) {
        pm_swim_scratch_reserve(s, s->count);
        for (size_t i = 0; i < s->count; i++)
            pm_swim_record_view(s->members[i], &s->scratch[i], NULL);
        msg.update_count = s->count;
    } else {
        pm_swim_scratch_reserve(s, s->cfg.max_piggyback + extra_count);
        size_t n = 0, bytes = 0;
        for (size_t i = 0; i < extra_count; i++) {
            size_t size = pm_swim_update_size(&extras[i]);
            if (n > 0 && bytes + size > s->cfg.piggyback_bytes)
                continue;
            s->scratch[n++] = extras[i];
            bytes += size;
        }
        size_t first = n;
        if (s->bcast_count > 1)
            qsort(s->bcasts, s->bcast_count, sizeof *s->bcasts, pm_swim_bcast_cmp);
        for (size_t i = 0; i < s->bcast_count && n < s->cfg.max_piggyback; i++) {
            pm_swim_update_t u;
            pm_swim_bcast_view(s->bcasts[i], &u);
            bool dup = false;
            for (size_t j = 0; j < first && !dup; j++)
                dup = pm_swim_streq(u.name, s->scratch[j].name);
            if (dup)
                continue;
            size_t size = pm_swim_update_size(&u);
            if (bytes + size > s->cfg.piggyback_bytes)
                continue;
            s->scratch[n++] = u;
            bytes += size;
            s->picked[picked++] = i;
        }
        msg.update_count = n;
    }
    msg.updates = msg.update_count ? s->scratch : NULL;
    s->send(endpoint, &msg, s->arg);
    s->stats.sent[type]++;

    if (picked) {
        uint32_t limit = s->cfg.retransmit_mult * pm_swim_ceil_log2(pm_swim_live_count(s) + 1);
        /* picked[] is ascending; remove from the back so indices stay valid */
        for (size_t j = picked; j-- > 0;) {
            size_t i = s->picked[j];
            if (++s->bcasts[i]->transmits >= limit)
                pm_swim_bcast_remove(s, i);
        }
    }
}

static void
s_send(pm_swim_t *s, const char *endpoint, pm_swim_msg_type_t type, uint64_t seq,
       const char *target_name, const char *target_endpoint, const pm_swim_update_t *extra)
{
    s_send_x(s, endpoint, type, seq, target_name, target_endpoint, extra, extra ? 1 : 0);
}

/* Anti-entropy on demand: sends the sender of a message (at `endpoint`;
 * `sender` is its record, NULL if unknown) our records `tell[0..n)`, because
 * its message showed it holds an older view of them, or because we hold it
 * suspect, dead or left and it should refute. At most once per probe
 * interval per known sender, so a confused peer cannot make us chatty.
 *
 * Gossip alone leaves a small hole this closes: under heavy loss a member
 * can miss every copy of a refutation, keep the old suspicion, collect
 * confirmations and declare a live member dead; with this, the first stale
 * rumor it sends (its probe of the suspect carries one) is answered with the
 * refutation. */
static void
s_tell(pm_swim_t *s, pm_swim_rec_t *sender, const char *endpoint, pm_swim_rec_t *const *tell, size_t n)
{
    if (n == 0)
        return;
    if (sender) {
        if (sender->told && s->now < sender->told_at + s->cfg.probe_interval_ms)
            return;
        sender->told = true;
        sender->told_at = s->now;
    }
    pm_swim_update_t u[PM_SWIM_MAX_PIGGYBACK];
    if (n > s->cfg.max_piggyback)
        n = s->cfg.max_piggyback;
    for (size_t i = 0; i < n; i++)
        pm_swim_record_view(tell[i], &u[i], NULL);
    s_send_x(s, endpoint, PM_SWIM_MSG_GOSSIP, 0, NULL, NULL, u, n);
}

/* ---------------------------------------------------------------- state changes */

/* Raises self's incarnation above `inc` and re-asserts self's state. */
static void
s_refute(pm_swim_t *s, uint64_t inc)
{
    pm_swim_rec_t *me = s->self;
    me->incarnation = (inc > me->incarnation ? inc : me->incarnation) + 1;
    s->stats.refutations++;
    /* Lifeguard: having to refute hints that we are the slow one. */
    pm_swim_health_add(s, 1);
    pm_swim_enqueue(s, me, NULL);
    s->gossip_now = true;
    if (!pm_swim_has_live_peer(s))
        s->next_join_at = s->now;
}

/* Returns true if the update was stale (older than our own incarnation). */
static bool
s_update_self(pm_swim_t *s, const pm_swim_update_t *u)
{
    pm_swim_rec_t *me = s->self;
    if (u->incarnation < me->incarnation) {
        s->stats.stale_updates++;
        return true;
    }
    if (me->state == PM_SWIM_LEFT) {
        /* We are leaving: only a rumor that contradicts it needs an answer. */
        if (u->state != PM_SWIM_LEFT || u->incarnation > me->incarnation)
            s_refute(s, u->incarnation);
        return false;
    }
    if (u->state == PM_SWIM_ALIVE) {
        /* Someone holds a newer alive for us than we do (we restarted and
         * lost our incarnation): get above it. */
        if (u->incarnation > me->incarnation)
            s_refute(s, u->incarnation);
        return false;
    }
    s_refute(s, u->incarnation);
    return false;
}

static void
s_clear_urgent(pm_swim_t *s, const pm_swim_rec_t *m)
{
    if (s->urgent && pm_swim_streq(s->urgent, m->name)) {
        free(s->urgent);
        s->urgent = NULL;
    }
}

/* The s_on_* handlers apply one update about another member. Each returns
 * true if the update was stale: older than our record, so its sender needs
 * our record. */
static bool
s_on_alive(pm_swim_t *s, const pm_swim_update_t *u)
{
    pm_swim_rec_t *m = pm_swim_find(s, u->name);
    if (m == NULL) {
        if (s->count >= PM_SWIM_MAX_MEMBERS)
            return false;
        m = pm_swim_member_add(s, u->name, u->endpoint, u->incarnation, u->meta, u->meta_len);
        pm_swim_emit(s, PM_SWIM_EV_JOINED, m);
        pm_swim_enqueue(s, m, NULL);
        return false;
    }
    if (u->incarnation < m->incarnation) {
        s->stats.stale_updates++;
        return true;
    }
    if (u->incarnation == m->incarnation)
        return false;
    pm_swim_state_t prev = m->state;
    bool changed = !pm_swim_streq(m->endpoint, u->endpoint) || m->meta_len != u->meta_len ||
                   (u->meta_len && memcmp(m->meta, u->meta, u->meta_len) != 0);
    m->incarnation = u->incarnation;
    if (changed) {
        free(m->endpoint);
        m->endpoint = pm_swim_xstrdup(u->endpoint);
        free(m->meta);
        m->meta = pm_swim_xmemdup(u->meta, u->meta_len);
        m->meta_len = u->meta_len;
    }
    pm_swim_susp_free(&m->susp);
    s_clear_urgent(s, m);
    if (prev != PM_SWIM_ALIVE) {
        m->state = PM_SWIM_ALIVE;
        m->state_since = s->now;
        pm_swim_emit(s, PM_SWIM_EV_ALIVE, m);
    }
    if (changed)
        pm_swim_emit(s, PM_SWIM_EV_META, m);
    pm_swim_enqueue(s, m, NULL);
    return false;
}

/* Sets *news if the suspicion was news to us (new state or confirmation). */
static bool
s_on_suspect(pm_swim_t *s, const pm_swim_update_t *u, const char *from, bool *news)
{
    *news = false;
    pm_swim_rec_t *m = pm_swim_find(s, u->name);
    if (m == NULL)
        return false;
    if (u->incarnation < m->incarnation) {
        s->stats.stale_updates++;
        return true;
    }
    if (m->state == PM_SWIM_DEAD || m->state == PM_SWIM_LEFT)
        return false;
    if (m->state == PM_SWIM_SUSPECT) {
        if (u->incarnation > m->incarnation)
            m->incarnation = u->incarnation;
        if (!pm_swim_susp_confirm(m->susp, from))
            return false;
        /* Re-gossip so the confirmation reaches the others too. */
        pm_swim_enqueue(s, m, from);
        *news = true;
        return false;
    }
    m->incarnation = u->incarnation;
    m->state = PM_SWIM_SUSPECT;
    m->state_since = s->now;
    m->susp = pm_swim_susp_new(s, from);
    pm_swim_emit(s, PM_SWIM_EV_SUSPECT, m);
    pm_swim_enqueue(s, m, from);
    if (!pm_swim_streq(from, s->self->name)) {
        /* Probe it next: our probe either confirms the suspicion (Lifeguard
         * wants independent confirmations) or carries it to the suspect,
         * which then refutes. */
        free(s->urgent);
        s->urgent = pm_swim_xstrdup(m->name);
    }
    *news = true;
    return false;
}

/* Sets *news if it made the member dead. */
static bool
s_on_dead(pm_swim_t *s, const pm_swim_update_t *u, const char *from, bool *news)
{
    *news = false;
    pm_swim_rec_t *m = pm_swim_find(s, u->name);
    if (m == NULL)
        return false;
    if (u->incarnation < m->incarnation) {
        s->stats.stale_updates++;
        return true;
    }
    if (m->state == PM_SWIM_DEAD || m->state == PM_SWIM_LEFT) {
        m->incarnation = u->incarnation;
        return false;
    }
    m->incarnation = u->incarnation;
    m->state = PM_SWIM_DEAD;
    m->state_since = s->now;
    pm_swim_susp_free(&m->susp);
    s_clear_urgent(s, m);
    pm_swim_emit(s, PM_SWIM_EV_DEAD, m);
    pm_swim_enqueue(s, m, from);
    *news = true;
    return false;
}

static bool
s_on_left(pm_swim_t *s, const pm_swim_update_t *u)
{
    pm_swim_rec_t *m = pm_swim_find(s, u->name);
    if (m == NULL)
        return false;
    if (u->incarnation < m->incarnation) {
        s->stats.stale_updates++;
        return true;
    }
    if (m->state == PM_SWIM_LEFT) {
        m->incarnation = u->incarnation;
        return false;
    }
    m->incarnation = u->incarnation;
    m->state = PM_SWIM_LEFT;
    m->state_since = s->now;
    pm_swim_susp_free(&m->susp);
    s_clear_urgent(s, m);
    pm_swim_emit(s, PM_SWIM_EV_LEFT, m);
    pm_swim_enqueue(s, m, NULL);
    return false;
}

/* Applies one received update. In a full sync a remote "dead" only makes us
 * suspect (memberlist does the same): a sync from a stale or partitioned
 * peer then costs a refutation, not a false death. */
static bool
s_merge(pm_swim_t *s, const pm_swim_update_t *u, const char *sender, bool sync)
{
    if (pm_swim_streq(u->name, s->self->name))
        return s_update_self(s, u);
    const char *from = pm_swim_empty(u->from) ? sender : u->from;
    bool news;
    switch (u->state) {
    case PM_SWIM_ALIVE:
        return s_on_alive(s, u);
    case PM_SWIM_SUSPECT:
        return s_on_suspect(s, u, from, &news);
    case PM_SWIM_DEAD:
        if (sync)
            return s_on_suspect(s, u, sender, &news);
        return s_on_dead(s, u, from, &news);
    case PM_SWIM_LEFT:
        return s_on_left(s, u);
    }
    return false;
}

/* ---------------------------------------------------------------- probing */

static pm_swim_rec_t *
s_next_target(pm_swim_t *s)
{
    if (s->urgent) {
        pm_swim_rec_t *m = pm_swim_find(s, s->urgent);
        free(s->urgent);
        s->urgent = NULL;
        if (m && m->state == PM_SWIM_SUSPECT)
            return m;
    }
    /* Randomized round-robin: the table is in random order (each member is
     * inserted at a random place) and each round walks it. Unlike SWIM and
     * memberlist we do not reshuffle between rounds: a reshuffle lets the gap
     * between two probes of one member reach 2(N-1)-1 periods, while a fixed
     * order holds it at N-1, and that gap is what bounds detection time (see
     * the top of this file). Orders are still independent across members. */
    for (size_t tries = 0; tries <= s->count; tries++) {
        if (s->probe_index >= s->count)
            s->probe_index = 0;
        pm_swim_rec_t *m = s->members[s->probe_index++];
        if (!m->is_self && pm_swim_live(m))
            return m;
    }
    return NULL;
}

static void
s_probe_start(pm_swim_t *s)
{
    uint64_t period = pm_swim_period_scaled(s);
    s->next_probe_at = s->now + period;
    pm_swim_rec_t *m = s_next_target(s);
    if (m == NULL)
        return;
    free(s->probe.target);
    s->probe.target = pm_swim_xstrdup(m->name);
    s->probe.target_inc = m->incarnation;
    s->probe.active = true;
    s->probe.acked = false;
    s->probe.indirect_sent = false;
    s->probe.seq = ++s->seq;
    s->probe.ack_at = s->now + pm_swim_probe_timeout(s);
    s->probe.end_at = s->now + period;
    s->probe.expected_nacks = 0;
    s->probe.nacks = 0;
    s->stats.probes++;
    /* Buddy system: a suspect hears it is suspected from whoever probes it. */
    pm_swim_update_t buddy;
    pm_swim_record_view(m, &buddy, s->self->name);
    s_send(s, m->endpoint, PM_SWIM_MSG_PING, s->probe.seq, m->name, NULL,
           m->state == PM_SWIM_SUSPECT ? &buddy : NULL);
}

static void
s_probe_indirect(pm_swim_t *s)
{
    s->probe.indirect_sent = true;
    pm_swim_rec_t *target = pm_swim_find(s, s->probe.target);
    if (target == NULL)
        return;
    size_t n = pm_swim_pick_random(s, s->cfg.indirect_checks, target->name, PM_SWIM_PICK_ALIVE);
    for (size_t i = 0; i < n; i++)
        s_send(s, s->pick[i]->endpoint, PM_SWIM_MSG_PING_REQ, s->probe.seq, target->name,
               target->endpoint, NULL);
    s->probe.expected_nacks = (uint32_t) n;
}

static void
s_probe_fail(pm_swim_t *s)
{
    s->probe.active = false;
    s->stats.probes_failed++;
    /* Lifeguard: relays that nacked were reachable and could not reach the
     * target either, which speaks for the target being down; each missing
     * nack speaks for us being the problem. With no relays, any failure
     * counts against us. */
    if (s->probe.expected_nacks > 0)
        pm_swim_health_add(s, (int) (s->probe.expected_nacks - s->probe.nacks));
    else
        pm_swim_health_add(s, 1);
    pm_swim_update_t u = {
        .name = s->probe.target,
        .endpoint = "",
        .incarnation = s->probe.target_inc,
        .state = PM_SWIM_SUSPECT,
    };
    bool news;
    s_on_suspect(s, &u, s->self->name, &news);
    if (news) {
        s->stats.suspicions++;
        s->gossip_now = true;
    }
}

static void
s_probe_tick(pm_swim_t *s)
{
    if (s->probe.active && !s->probe.acked && !s->probe.indirect_sent &&
        s->now >= s->probe.ack_at)
        s_probe_indirect(s);
    if (s->probe.active && s->now >= s->probe.end_at) {
        if (s->probe.acked)
            s->probe.active = false;
        else
            s_probe_fail(s);
    }
    if (!s->probe.active && s->self->state != PM_SWIM_LEFT && s->now >= s->next_probe_at)
        s_probe_start(s);
}

/* ---------------------------------------------------------------- relays */

static void
s_relay_remove(pm_swim_t *s, size_t i)
{
    free(s->relays[i].origin_endpoint);
    s->relays[i] = s->relays[--s->relay_count];
}

static void
s_relay_tick(pm_swim_t *s)
{
    for (size_t i = 0; i < s->relay_count;) {
        pm_swim_relay_t *r = &s->relays[i];
        if (!r->nack_sent && s->now >= r->nack_at) {
            r->nack_sent = true;
            s_send(s, r->origin_endpoint, PM_SWIM_MSG_NACK, r->origin_seq, NULL, NULL, NULL);
        }
        if (s->now >= r->expire_at)
            s_relay_remove(s, i);
        else
            i++;
    }
}

static void
s_handle_ping_req(pm_swim_t *s, const pm_swim_msg_t *msg)
{
    if (pm_swim_streq(msg->target_name, s->self->name)) {
        s_send(s, msg->from_endpoint, PM_SWIM_MSG_ACK, msg->seq, NULL, NULL, NULL);
        return;
    }
    if (s->relay_count == PM_SWIM_MAX_RELAYS) {
        s->stats.relays_dropped++;
        return;
    }
    pm_swim_relay_t *r = &s->relays[s->relay_count++];
    r->local_seq = ++s->seq;
    r->origin_seq = msg->seq;
    r->origin_endpoint = pm_swim_xstrdup(msg->from_endpoint);
    /* Nack at 80% of the probe timeout (Lifeguard), so the nack reaches the
     * origin well before its period ends; keep forwarding a late ack until a
     * whole period has passed. */
    r->nack_at = s->now + (uint64_t) s->cfg.probe_timeout_ms * 8 / 10;
    r->expire_at = s->now + s->cfg.probe_interval_ms;
    r->nack_sent = false;
    /* Buddy system here too: if we hold the target suspect, say so. */
    const pm_swim_rec_t *m = pm_swim_find(s, msg->target_name);
    pm_swim_update_t buddy;
    if (m && m->state == PM_SWIM_SUSPECT)
        pm_swim_record_view(m, &buddy, s->self->name);
    s_send(s, msg->target_endpoint, PM_SWIM_MSG_PING, r->local_seq, msg->target_name, NULL,
           m && m->state == PM_SWIM_SUSPECT ? &buddy : NULL);
}

static void
s_handle_ack(pm_swim_t *s, const pm_swim_msg_t *msg)
{
    if (s->probe.active && !s->probe.acked && msg->seq == s->probe.seq) {
        s->probe.acked = true;
        pm_swim_health_add(s, -1);
        return;
    }
    for (size_t i = 0; i < s->relay_count; i++)
        if (s->relays[i].local_seq == msg->seq) {
            s_send(s, s->relays[i].origin_endpoint, PM_SWIM_MSG_ACK, s->relays[i].origin_seq,
                   NULL, NULL, NULL);
            s_relay_remove(s, i);
            return;
        }
}

/* ---------------------------------------------------------------- other timers */

static void
s_suspicion_tick(pm_swim_t *s)
{
    for (size_t i = 0; i < s->count; i++) {
        pm_swim_rec_t *m = s->members[i];
        if (m->state != PM_SWIM_SUSPECT || s->now < pm_swim_susp_deadline(m->susp))
            continue;
        pm_swim_update_t u = {
            .name = m->name,
            .endpoint = m->endpoint,
            .incarnation = m->incarnation,
            .state = PM_SWIM_DEAD,
        };
        bool news;
        s_on_dead(s, &u, s->self->name, &news);
        if (news) {
            s->stats.deaths++;
            s->gossip_now = true;
        }
    }
}

static void
s_gossip_tick(pm_swim_t *s)
{
    if (s->bcast_count == 0) {
        s->gossip_now = false;
        return;
    }
    if (!s->gossip_now && s->now < s->last_gossip_at + s->cfg.gossip_interval_ms)
        return;
    s->gossip_now = false;
    s->last_gossip_at = s->now;
    size_t n = pm_swim_pick_random(s, s->cfg.gossip_nodes, NULL, PM_SWIM_PICK_LIVE);
    for (size_t i = 0; i < n && s->bcast_count > 0; i++)
        s_send(s, s->pick[i]->endpoint, PM_SWIM_MSG_GOSSIP, 0, NULL, NULL, NULL);
}

/* The full-state sync sends the whole member table, so its bytes grow with
 * N; its period grows with N past 8 members so that each member's idle
 * traffic stays flat whatever the mesh size (gossip, not sync, spreads news
 * quickly; sync only repairs what gossip missed). */
static uint64_t
s_sync_period(const pm_swim_t *s)
{
    size_t n = pm_swim_count(s, PM_SWIM_ALIVE) + pm_swim_count(s, PM_SWIM_SUSPECT);
    uint64_t scale = n > 8 ? (n + 7) / 8 : 1;
    return (uint64_t) s->cfg.sync_interval_ms * scale;
}

static void
s_sync_tick(pm_swim_t *s)
{
    if (s->now < s->next_sync_at)
        return;
    /* The period depends on the member count, which grows after the start
     * (when the first sync was scheduled): a sync due too early under the
     * count now known waits. */
    uint64_t due = s->last_sync_at + s_sync_period(s);
    if (s->now < due) {
        s->next_sync_at = due;
        return;
    }
    s->last_sync_at = s->now;
    s->next_sync_at = s->now + s_sync_period(s);
    if (s->self->state == PM_SWIM_LEFT)
        return;
    if (pm_swim_pick_random(s, 1, NULL, PM_SWIM_PICK_ALIVE) == 1)
        s_send(s, s->pick[0]->endpoint, PM_SWIM_MSG_SYNC_REQ, 0, NULL, NULL, NULL);
    /* Also try one member we hold dead (Serf's reconnect): this is how a
     * healed partition finds its other half. */
    if (pm_swim_pick_random(s, 1, NULL, PM_SWIM_PICK_DEAD) == 1)
        s_send(s, s->pick[0]->endpoint, PM_SWIM_MSG_SYNC_REQ, 0, NULL, NULL, NULL);
}

static void
s_join_tick(pm_swim_t *s)
{
    if (s->seed_count == 0 || s->self->state == PM_SWIM_LEFT || s->now < s->next_join_at)
        return;
    s->next_join_at = s->now + s->cfg.join_retry_ms;
    if (pm_swim_has_live_peer(s))
        return;
    for (size_t i = 0; i < s->seed_count; i++)
        s_send(s, s->seeds[i], PM_SWIM_MSG_SYNC_REQ, 0, NULL, NULL, NULL);
}

static void
s_gc_tick(pm_swim_t *s)
{
    for (size_t i = 0; i < s->count;) {
        pm_swim_rec_t *m = s->members[i];
        if (!m->is_self && !pm_swim_live(m) && s->now >= m->state_since + s->cfg.gc_interval_ms) {
            pm_swim_emit(s, PM_SWIM_EV_REMOVED, m);
            pm_swim_member_remove(s, i);
        } else
            i++;
    }
}

static void
s_clock(pm_swim_t *s, uint64_t now)
{
    if (!s->started) {
        s->started = true;
        s->now = now;
        /* Random phases, so a mesh started at once does not probe in lockstep. */
        s->next_probe_at = now + pm_swim_rand_below(s, s->cfg.probe_interval_ms);
        s->next_sync_at = now + s->cfg.sync_interval_ms / 2 + pm_swim_rand_below(s, s->cfg.sync_interval_ms);
        s->last_sync_at = now;
        s->next_join_at = now + s->cfg.join_retry_ms;
        return;
    }
    if (now > s->now)
        s->now = now;
}

/* ---------------------------------------------------------------- validation */

static int
s_check_update(const pm_swim_update_t *u)
{
    if (pm_swim_check_str(u->name, PM_SWIM_NAME_MAX, true) != 0 ||
        pm_swim_check_str(u->endpoint, PM_SWIM_ENDPOINT_MAX, true) != 0 ||
        pm_swim_check_str(u->from, PM_SWIM_NAME_MAX, false) != 0)
        return -1;
    if (u->state < PM_SWIM_ALIVE || u->state > PM_SWIM_LEFT)
        return -1;
    if (u->meta_len > PM_SWIM_META_MAX || (u->meta_len > 0 && u->meta == NULL))
        return -1;
    return 0;
}

static int
s_check_msg(const pm_swim_msg_t *msg)
{
    if (msg == NULL || msg->type < PM_SWIM_MSG_PING || msg->type > PM_SWIM_MSG_SYNC_RESP)
        return -1;
    if (pm_swim_check_str(msg->from_name, PM_SWIM_NAME_MAX, true) != 0 ||
        pm_swim_check_str(msg->from_endpoint, PM_SWIM_ENDPOINT_MAX, true) != 0)
        return -1;
    bool ping_req = msg->type == PM_SWIM_MSG_PING_REQ;
    if (pm_swim_check_str(msg->target_name, PM_SWIM_NAME_MAX, ping_req) != 0 ||
        pm_swim_check_str(msg->target_endpoint, PM_SWIM_ENDPOINT_MAX, ping_req) != 0)
        return -1;
    bool sync = msg->type == PM_SWIM_MSG_SYNC_REQ || msg->type == PM_SWIM_MSG_SYNC_RESP;
    size_t max = sync ? PM_SWIM_MAX_MEMBERS : PM_SWIM_MAX_PIGGYBACK;
    if (msg->update_count > max || (msg->update_count > 0 && msg->updates == NULL))
        return -1;
    for (size_t i = 0; i < msg->update_count; i++)
        if (s_check_update(&msg->updates[i]) != 0)
            return -1;
    return 0;
}

/* ---------------------------------------------------------------- public API */

pm_swim_t *
pm_swim_new(const char *self_name, const char *self_endpoint, const pm_swim_config_t *cfg,
            uint64_t seed, pm_swim_send_fn *send, pm_swim_event_fn *event, void *arg)
{
    assert(send);
    pm_swim_config_t defaults;
    if (cfg == NULL) {
        pm_swim_config_defaults(&defaults);
        cfg = &defaults;
    }
    if (pm_swim_check_str(self_name, PM_SWIM_NAME_MAX, true) != 0 ||
        pm_swim_check_str(self_endpoint, PM_SWIM_ENDPOINT_MAX, true) != 0 ||
        pm_swim_config_check(cfg, NULL) != 0)
        return NULL;
    pm_swim_t *s = pm_swim_xalloc(sizeof *s);
    s->cfg = *cfg;
    s->send = send;
    s->event = event;
    s->arg = arg;
    s->rng = seed;
    s->seq = pm_swim_rand(s) >> 16; /* a fresh start does not reuse a predecessor's seqs */
    s->self = pm_swim_member_add(s, self_name, self_endpoint, cfg->incarnation, NULL, 0);
    s->self->is_self = true;
    return s;
}

void
pm_swim_destroy(pm_swim_t **self_p)
{
    assert(self_p);
    pm_swim_t *s = *self_p;
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->count; i++)
        pm_swim_member_free(&s->members[i]);
    free(s->members);
    free(s->pick);
    for (size_t i = 0; i < s->bcast_count; i++)
        pm_swim_bcast_free(&s->bcasts[i]);
    free(s->bcasts);
    for (size_t i = 0; i < s->relay_count; i++)
        free(s->relays[i].origin_endpoint);
    for (size_t i = 0; i < s->seed_count; i++)
        free(s->seeds[i]);
    free(s->probe.target);
    free(s->urgent);
    free(s->scratch);
    free(s);
    *self_p = NULL;
}

void
pm_swim_tick(pm_swim_t *s, uint64_t now_ms)
{
    assert(s);
    s_clock(s, now_ms);
    s_relay_tick(s);
    s_probe_tick(s);
    s_suspicion_tick(s);
    s_gossip_tick(s);
    s_sync_tick(s);
    s_join_tick(s);
    s_gc_tick(s);
}

static uint64_t
s_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t
pm_swim_next_deadline(const pm_swim_t *s)
{
    assert(s);
    if (!s->started)
        return 0;
    bool leaving = s->self->state == PM_SWIM_LEFT;
    uint64_t t = s->next_sync_at;
    if (s->probe.active) {
        if (!s->probe.acked && !s->probe.indirect_sent)
            t = s_min(t, s->probe.ack_at);
        t = s_min(t, s->probe.end_at);
    } else if (!leaving)
        t = s_min(t, s->next_probe_at);
    for (size_t i = 0; i < s->relay_count; i++) {
        if (!s->relays[i].nack_sent)
            t = s_min(t, s->relays[i].nack_at);
        t = s_min(t, s->relays[i].expire_at);
    }
    if (s->bcast_count > 0)
        t = s_min(t, s->gossip_now ? s->now : s->last_gossip_at + s->cfg.gossip_interval_ms);
    if (s->seed_count > 0 && !leaving)
        t = s_min(t, s->next_join_at);
    for (size_t i = 0; i < s->count; i++) {
        const pm_swim_rec_t *m = s->members[i];
        if (m->state == PM_SWIM_SUSPECT)
            t = s_min(t, pm_swim_susp_deadline(m->susp));
        else if (!m->is_self && !pm_swim_live(m))
            t = s_min(t, m->state_since + s->cfg.gc_interval_ms);
    }
    return t;
}

int
pm_swim_receive(pm_swim_t *s, const pm_swim_msg_t *msg, uint64_t now_ms)
{
    assert(s);
    s_clock(s, now_ms);
    if (s_check_msg(msg) != 0) {
        s->stats.dropped_invalid++;
        return -1;
    }
    if (pm_swim_streq(msg->from_name, s->self->name) ||
        (msg->type == PM_SWIM_MSG_PING && !pm_swim_empty(msg->target_name) &&
         !pm_swim_streq(msg->target_name, s->self->name))) {
        s->stats.dropped_misdirected++;
        return -1;
    }
    pm_swim_rec_t *sender = pm_swim_find(s, msg->from_name);
    if (sender && msg->from_incarnation < sender->incarnation) {
        /* An old message, or a restarted sender that lost its incarnation:
         * drop it, and tell the sender where its incarnation stands. */
        s->stats.dropped_stale++;
        s_tell(s, sender, msg->from_endpoint, &sender, 1);
        return -1;
    }
    s->stats.received[msg->type]++;
    if (sender)
        sender->last_heard = s->now;

    bool sync = msg->type == PM_SWIM_MSG_SYNC_REQ || msg->type == PM_SWIM_MSG_SYNC_RESP;
    pm_swim_rec_t *tell[PM_SWIM_MAX_PIGGYBACK];
    size_t ntell = 0;
    for (size_t i = 0; i < msg->update_count; i++) {
        if (!s_merge(s, &msg->updates[i], msg->from_name, sync) || ntell == s->cfg.max_piggyback)
            continue;
        pm_swim_rec_t *m = pm_swim_find(s, msg->updates[i].name);
        bool dup = false;
        for (size_t j = 0; j < ntell && !dup; j++)
            dup = tell[j] == m;
        if (m && !dup)
            tell[ntell++] = m;
    }
    /* The sender speaks at an incarnation we hold suspect, dead or left:
     * tell it too, so it refutes. */
    sender = pm_swim_find(s, msg->from_name);
    if (sender && sender->state != PM_SWIM_ALIVE &&
        sender->incarnation >= msg->from_incarnation && ntell < s->cfg.max_piggyback) {
        bool dup = false;
        for (size_t j = 0; j < ntell && !dup; j++)
            dup = tell[j] == sender;
        if (!dup)
            tell[ntell++] = sender;
    }
    /* A sync request is answered with our whole table anyway. */
    if (msg->type != PM_SWIM_MSG_SYNC_REQ)
        s_tell(s, sender, msg->from_endpoint, tell, ntell);

    switch (msg->type) {
    case PM_SWIM_MSG_PING:
        s_send(s, msg->from_endpoint, PM_SWIM_MSG_ACK, msg->seq, NULL, NULL, NULL);
        break;
    case PM_SWIM_MSG_ACK:
        s_handle_ack(s, msg);
        break;
    case PM_SWIM_MSG_PING_REQ:
        s_handle_ping_req(s, msg);
        break;
    case PM_SWIM_MSG_NACK:
        if (s->probe.active && msg->seq == s->probe.seq &&
            s->probe.nacks < s->probe.expected_nacks)
            s->probe.nacks++;
        break;
    case PM_SWIM_MSG_SYNC_REQ:
        s_send(s, msg->from_endpoint, PM_SWIM_MSG_SYNC_RESP, msg->seq, NULL, NULL, NULL);
        break;
    case PM_SWIM_MSG_GOSSIP:
    case PM_SWIM_MSG_SYNC_RESP:
        break;
    }
    return 0;
}

int
pm_swim_join(pm_swim_t *s, const char *endpoint, uint64_t now_ms)
{
    assert(s);
    if (pm_swim_check_str(endpoint, PM_SWIM_ENDPOINT_MAX, true) != 0)
        return -1;
    s_clock(s, now_ms);
    if (pm_swim_streq(endpoint, s->self->endpoint))
        return 0; /* seed lists often include ourselves */
    bool known = false;
    for (size_t i = 0; i < s->seed_count && !known; i++)
        known = pm_swim_streq(s->seeds[i], endpoint);
    if (!known) {
        if (s->seed_count == PM_SWIM_MAX_SEEDS) {
            free(s->seeds[0]);
            memmove(&s->seeds[0], &s->seeds[1], (PM_SWIM_MAX_SEEDS - 1) * sizeof s->seeds[0]);
            s->seed_count--;
        }
        s->seeds[s->seed_count++] = pm_swim_xstrdup(endpoint);
    }
    if (s->self->state != PM_SWIM_LEFT)
        s_send(s, endpoint, PM_SWIM_MSG_SYNC_REQ, 0, NULL, NULL, NULL);
    s->next_join_at = s->now + s->cfg.join_retry_ms;
    return 0;
}

void
pm_swim_leave(pm_swim_t *s, uint64_t now_ms)
{
    assert(s);
    s_clock(s, now_ms);
    pm_swim_rec_t *me = s->self;
    if (me->state == PM_SWIM_LEFT)
        return;
    me->incarnation++;
    me->state = PM_SWIM_LEFT;
    me->state_since = s->now;
    s->probe.active = false;
    pm_swim_enqueue(s, me, NULL);
    pm_swim_update_t u;
    pm_swim_record_view(me, &u, NULL);
    size_t n = pm_swim_pick_random(s, s->cfg.leave_fanout, NULL, PM_SWIM_PICK_LIVE);
    for (size_t i = 0; i < n; i++)
        s_send(s, s->pick[i]->endpoint, PM_SWIM_MSG_GOSSIP, 0, NULL, NULL, &u);
    s->last_gossip_at = s->now;
}

int
pm_swim_set_meta(pm_swim_t *s, const void *meta, size_t len, uint64_t now_ms)
{
    assert(s);
    if (len > PM_SWIM_META_MAX || (len > 0 && meta == NULL))
        return -1;
    s_clock(s, now_ms);
    pm_swim_rec_t *me = s->self;
    free(me->meta);
    me->meta = pm_swim_xmemdup(meta, len);
    me->meta_len = len;
    me->incarnation++;
    pm_swim_enqueue(s, me, NULL);
    s->gossip_now = true;
    return 0;
}
