/*
 * mesh.c - see mesh.h.
 *
 * Every member announces in its gossip metadata the id spaces it serves and
 * the functions its workers serve with their free capacity. From that this
 * module keeps two tables: peers by name, and owners by id space. A space
 * whose owner died or left is remembered as lost (with R = 1 nobody takes
 * over), so operations on it fail with OWNER_LOST rather than NOT_FOUND.
 */
#include "clock.h"
#include "mesh_priv.h"

#include "base.h"
#include "ids.h"
#include "log.h"
#include "rand.h"
#include "resolve.h"
#include "spaces.h"
#include "stats.h"
#include "swim.h"
#include "transport.h"

#include <czmq.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static const char *
s_kind_name(size_t k, char *buf, size_t cap)
{
    if (k < PM_MSG_TYPE_COUNT)
        return pm_wire_type_name((pm_msg_type_t) k);
    snprintf(buf, cap, "swim_%s", pm_swim_msg_type_name((int) (k - PM_MSG_TYPE_COUNT)));
    return buf;
}

static size_t
s_kind(const pm_msg_t *m)
{
    if (m->type == PM_MSG_SWIM && m->swim && m->swim->type < PM_SWIM_MSG_TYPES)
        return PM_MSG_TYPE_COUNT + m->swim->type;
    return m->type < PM_MSG_TYPE_COUNT ? m->type : 0;
}

/* ---- peers ---------------------------------------------------------------- */

static void
s_peer_clear_meta(pm_mesh_peer_t *p)
{
    for (size_t i = 0; i < p->n_fns; i++)
        free((char *) p->fns[i].name);
    free(p->fns);
    for (size_t i = 0; i < p->n_spaces; i++)
        free(p->spaces[i]);
    free(p->spaces);
    free(p->epochs);
    free(p->primary);
    for (size_t i = 0; i < p->n_backups; i++) {
        free(p->backups[i]);
        free(p->backup_spaces[i]);
    }
    free(p->backups);
    free(p->backup_spaces);
    p->backups = NULL;
    p->backup_spaces = NULL;
    p->n_backups = 0;
    p->fns = NULL;
    p->spaces = NULL;
    p->epochs = NULL;
    p->primary = NULL;
    p->n_fns = p->n_spaces = 0;
}

static void
s_peer_destroy(void **item)
{
    pm_mesh_peer_t *p = *item;
    s_peer_clear_meta(p);
    free(p->name);
    free(p->endpoint);
    free(p);
    *item = NULL;
}

static void
s_free_str(void **item)
{
    free(*item);
    *item = NULL;
}

static void
s_owner_destroy(void **item)
{
    pm_mesh_owner_t *o = *item;
    free(o->node);
    free(o);
    *item = NULL;
}

/* Records that node serves space at epoch, unless the claim we know wins
 * over it (spaces.h: the same rule on every member). */
static void
s_set_owner(pm_mesh_t *self, const char *space, const char *node, uint64_t epoch)
{
    pm_mesh_owner_t *o = zhashx_lookup(self->owners, space);
    if (o && !pm_epoch_wins(epoch, node, o->epoch, o->node))
        return;
    pm_mesh_owner_t *n = pm_xcalloc(1, sizeof *n, "space owner");
    n->node = pm_xstrdup(node, "space owner");
    n->epoch = epoch;
    zhashx_update(self->owners, space, n);
    zhashx_delete(self->lost, space);
}

/* Reads a member's metadata into its peer record and the owners table. */
static void
s_peer_meta(pm_mesh_t *self, pm_mesh_peer_t *p, const pm_swim_member_t *m)
{
    pm_meta_t meta;
    if (!m->meta_len)
        return;
    if (pm_wire_meta_decode(m->meta, m->meta_len, &meta) != PM_OK) {
        pm_wire_meta_release(&meta);
        self->bad_frames++;
        pm_log_warn("PM-MESH-BAD-META", "member %s sent metadata that does not decode", p->name);
        return;
    }
    s_peer_clear_meta(p);
    /* A member's spaces and backups dropped here would be a takeover or a
     * route missed: out of memory stops the agent (base.h). */
    p->fns = pm_xcalloc(meta.fn_count + 1, sizeof *p->fns, "member metadata");
    p->spaces = pm_xcalloc(meta.space_count + 1, sizeof *p->spaces, "member metadata");
    p->epochs = pm_xcalloc(meta.space_count + 1, sizeof *p->epochs, "member metadata");
    p->primary = pm_xstrdup(meta.id_space, "member metadata");
    p->backups = pm_xcalloc(meta.backup_count + 1, sizeof *p->backups, "member metadata");
    p->backup_spaces =
        pm_xcalloc(meta.backup_count + 1, sizeof *p->backup_spaces, "member metadata");
    for (size_t i = 0; i < meta.backup_count; i++) {
        p->backups[p->n_backups] = pm_xstrdup(meta.backups[i], "member metadata");
        p->backup_spaces[p->n_backups++] =
            pm_xstrdup(meta.backup_spaces ? meta.backup_spaces[i] : "", "member metadata");
    }
    for (size_t i = 0; i < meta.fn_count; i++) {
        p->fns[i] = meta.fns[i];
        p->fns[i].name = pm_xstrdup(meta.fns[i].name, "member metadata");
        p->n_fns++;
    }
    for (size_t i = 0; i < meta.space_count; i++) {
        uint64_t epoch = meta.epochs ? meta.epochs[i] : 1;
        p->epochs[p->n_spaces] = epoch;
        p->spaces[p->n_spaces++] = pm_xstrdup(meta.spaces[i], "member metadata");
        uint64_t mine;
        if (pm_mesh_owns(self, meta.spaces[i], &mine) &&
            pm_epoch_wins(mine, self->node, epoch, p->name))
            continue; /* our claim wins */
        if (pm_mesh_owns(self, meta.spaces[i], NULL) && self->hooks.contested) {
            /* The store decides who serves it (R4 in coord.h): ask it. */
            self->hooks.contested(self->arg, meta.spaces[i]);
        } else if (pm_mesh_owns(self, meta.spaces[i], NULL)) {
            /* Someone serves a space of ours at a newer epoch: it took
             * it over while we were cut off. Let it go. */
            pm_log_warn("PM-SPACE-MOVED", "%s serves id space %s at epoch %llu; we had "
                        "epoch %llu: no longer serving it", p->name, meta.spaces[i],
                        (unsigned long long) epoch, (unsigned long long) mine);
            pm_mesh_unclaim(self, meta.spaces[i]);
            if (self->hooks.moved)
                self->hooks.moved(self->arg, meta.spaces[i]);
        }
        s_set_owner(self, meta.spaces[i], p->name, epoch);
    }
    pm_wire_meta_release(&meta);
}

/* Drops the channel to endpoint and what waits for it: the transport's
 * queue, and what this turn's outbox holds (its member is dead or moved). */
static void
s_forget_endpoint(pm_mesh_t *self, const char *endpoint)
{
    pm_mesh_outbox_drop(self, endpoint);
    pm_transport_forget(self->transport, endpoint);
}

/* A member is gone (dead, left, or restarted as a new process): the spaces
 * it served are lost until someone claims them, and whatever is queued for
 * it would reach its successor as stale traffic, so the channel goes too. */
static void
s_member_down(pm_mesh_t *self, pm_mesh_peer_t *p, int was_up)
{
    for (size_t i = 0; i < p->n_spaces; i++) {
        pm_mesh_owner_t *owner = zhashx_lookup(self->owners, p->spaces[i]);
        if (owner && strcmp(owner->node, p->name) == 0) {
            /* Remember the epoch: whoever serves it next must claim above. */
            char e[24];
            snprintf(e, sizeof e, "%llu", (unsigned long long) owner->epoch);
            zhashx_update(self->lost, p->spaces[i], pm_xstrdup(e, "lost space"));
            zhashx_delete(self->owners, p->spaces[i]);
        }
    }
    s_forget_endpoint(self, p->endpoint);
    if (was_up && self->hooks.member)
        self->hooks.member(self->arg, PM_MESH_DOWN, p->name);
}

/* The primary id space a member's metadata announces ("" if none). */
static void
s_meta_primary(const pm_swim_member_t *m, char *out, size_t cap)
{
    out[0] = 0;
    pm_meta_t meta;
    if (m->meta_len && pm_wire_meta_decode(m->meta, m->meta_len, &meta) == PM_OK)
        snprintf(out, cap, "%s", meta.id_space);
    pm_wire_meta_release(&meta);
}

static void
s_on_swim_event(pm_swim_event_t ev, const pm_swim_member_t *m, void *arg)
{
    pm_mesh_t *self = arg;
    pm_mesh_peer_t *p = zhashx_lookup(self->peers, m->name);
    if (!p && ev != PM_SWIM_EV_REMOVED) {
        p = pm_xcalloc(1, sizeof *p, "member");
        p->name = pm_xstrdup(m->name, "member");
        p->endpoint = pm_xstrdup(m->endpoint, "member");
        zhashx_insert(self->peers, m->name, p);
    }
    if (!p)
        return;
    int was_up = p->state == PM_SWIM_ALIVE || p->state == PM_SWIM_SUSPECT;
    if (strcmp(p->endpoint, m->endpoint) != 0) {
        s_forget_endpoint(self, p->endpoint);
        free(p->endpoint);
        p->endpoint = pm_xstrdup(m->endpoint, "member");
    }
    switch (ev) {
    case PM_SWIM_EV_JOINED:
    case PM_SWIM_EV_ALIVE:
    case PM_SWIM_EV_META: {
        /* A new primary space means a new process under the same name (a
         * restart faster than detection): what the old one owed is lost. */
        char primary[PM_WIRE_MAX_NAME + 1];
        s_meta_primary(m, primary, sizeof primary);
        if (p->primary && *primary && strcmp(p->primary, primary) != 0) {
            pm_log_warn("PM-PEER-RESTARTED", "member %s restarted (id space %s, was %s)",
                        m->name, primary, p->primary);
            s_member_down(self, p, was_up);
            was_up = 0;
        }
        p->state = m->state;
        s_peer_meta(self, p, m);
        if (ev != PM_SWIM_EV_META || !was_up)
            pm_log_info("PM-PEER-UP", "member %s at %s is %s (incarnation %llu)", m->name,
                        m->endpoint, pm_swim_state_name(m->state),
                        (unsigned long long) m->incarnation);
        if (self->hooks.member)
            self->hooks.member(self->arg, was_up ? PM_MESH_CHANGED : PM_MESH_UP, m->name);
        break;
    }
    case PM_SWIM_EV_SUSPECT:
        p->state = PM_SWIM_SUSPECT;
        pm_log_warn("PM-PEER-SUSPECT", "member %s is suspected of having failed", m->name);
        break;
    case PM_SWIM_EV_DEAD:
    case PM_SWIM_EV_LEFT:
        p->state = m->state;
        pm_log_warn(ev == PM_SWIM_EV_DEAD ? "PM-PEER-DEAD" : "PM-PEER-LEFT",
                    "member %s is %s; its %zu id space(s) are lost", m->name,
                    ev == PM_SWIM_EV_DEAD ? "dead" : "gone", p->n_spaces);
        s_member_down(self, p, was_up);
        break;
    case PM_SWIM_EV_REMOVED:
        zhashx_delete(self->peers, m->name);
        break;
    }
}

/* ---- sending -------------------------------------------------------------- */

static void
s_count_out(pm_mesh_t *self, const pm_msg_t *m, size_t len)
{
    size_t k = s_kind(m);
    self->sent[k]++;
    self->sent_bytes[k] += len;
}

/* Every frame leaves through here: the outbox while corked (outbox.c), else
 * at once. */
static int
s_transmit(pm_mesh_t *self, const char *endpoint, uint8_t *buf, size_t len)
{
    if (self->corked)
        return pm_mesh_outbox_add(self, endpoint, buf, len);
    return pm_mesh_transmit_now(self, endpoint, buf, len);
}

/* The transport, or the seam's sender. */
int
pm_mesh_transmit_now(pm_mesh_t *self, const char *endpoint, uint8_t *buf, size_t len)
{
    if (self->sender)
        return self->sender(self->sender_arg, endpoint, buf, len);
    return pm_transport_send(self->transport, endpoint, buf, len);
}

void
pm_mesh_set_sender(pm_mesh_t *self, pm_mesh_send_fn *fn, void *arg)
{
    self->sender = fn;
    self->sender_arg = arg;
}

int
pm_mesh_transmit(pm_mesh_t *self, const char *endpoint, uint8_t *buf, size_t len)
{
    return pm_transport_send(self->transport, endpoint, buf, len);
}

static void
s_send_swim(const char *endpoint, const pm_swim_msg_t *sw, void *arg)
{
    pm_mesh_t *self = arg;
    if (strcmp(endpoint, self->advertise) == 0)
        return;
    pm_msg_t m = {.type = PM_MSG_SWIM, .from = self->node, .swim = sw};
    size_t len;
    uint8_t *buf = pm_wire_encode(&m, &len);
    if (!buf)
        pm_oom("encoding a membership message");
    s_count_out(self, &m, len);
    s_transmit(self, endpoint, buf, len);
}

/* Where to reach member node: the peer table, else SWIM's view (a member we
 * heard from before its metadata arrived). NULL if unknown. */
static const char *
s_endpoint_of(pm_mesh_t *self, const char *node)
{
    pm_mesh_peer_t *p = zhashx_lookup(self->peers, node);
    if (p)
        return p->endpoint;
    pm_swim_member_t m;
    if (pm_swim_lookup(self->swim, node, &m) == 0 && !m.is_self)
        return m.endpoint;
    return NULL;
}

int
pm_mesh_send(pm_mesh_t *self, const char *node, pm_msg_t *m)
{
    const char *endpoint = s_endpoint_of(self, node);
    if (!endpoint)
        return -1;
    m->from = self->node;
    size_t len;
    uint8_t *buf = pm_wire_encode(m, &len);
    if (!buf)
        pm_oom("encoding a message to a peer");
    s_count_out(self, m, len);
    return s_transmit(self, endpoint, buf, len);
}

int
pm_mesh_send_raw(pm_mesh_t *self, const char *node, int type, uint8_t *buf, size_t len)
{
    const char *endpoint = s_endpoint_of(self, node);
    if (!endpoint) {
        free(buf);
        return -1;
    }
    pm_msg_t m = {.type = (pm_msg_type_t) type};
    s_count_out(self, &m, len);
    return s_transmit(self, endpoint, buf, len);
}

/* ---- metadata ------------------------------------------------------------- */

void
pm_mesh_publish_meta(pm_mesh_t *self, uint64_t now)
{
    pm_meta_t meta = {.id_space = self->space,
                      .fns = self->fns,
                      .fn_count = self->n_fns,
                      .spaces = (const char *const *) self->mine,
                      .epochs = self->mine_epochs,
                      .space_count = self->n_mine,
                      .backups = (const char *const *) self->my_backups,
                      .backup_spaces = (const char *const *) self->my_backup_spaces,
                      .backup_count = self->n_my_backups};
    size_t len;
    uint8_t *buf = pm_wire_meta_encode(&meta, &len);
    if (!buf)
        return;
    /* Too big: with a store, the longest prefix of our spaces that fits
     * (bisection over the count; the list starts with our own). */
    size_t fit = self->n_mine;
    if (len > PM_SWIM_META_MAX && self->meta_trim) {
        size_t lo = 1, hi = self->n_mine;
        while (lo < hi) {
            meta.space_count = (lo + hi + 1) / 2;
            size_t l;
            uint8_t *b = pm_wire_meta_encode(&meta, &l);
            if (b && l <= PM_SWIM_META_MAX)
                lo = meta.space_count;
            else
                hi = meta.space_count - 1;
            free(b);
        }
        meta.space_count = fit = lo;
        free(buf);
        buf = pm_wire_meta_encode(&meta, &len);
        if (!buf)
            return;
    }
    if (fit < self->n_mine && self->n_mine - fit != self->meta_trimmed)
        pm_log_warn("PM-MESH-META-TRIMMED", "announcing %zu of the %zu id spaces we serve: the "
                    "rest do not fit in %d bytes of gossip; the configuration store routes "
                    "requests for them", fit, self->n_mine, PM_SWIM_META_MAX);
    self->meta_trimmed = self->n_mine - fit;
    self->meta_spaces = 0;
    if (len > PM_SWIM_META_MAX)
        pm_log_warn("PM-MESH-META-TOO-BIG", "metadata of %zu bytes exceeds %d; not published",
                    len, PM_SWIM_META_MAX);
    else if (pm_swim_set_meta(self->swim, buf, len, now) == 0)
        self->meta_spaces = meta.space_count;
    free(buf);
    self->meta_dirty = 0;
    self->meta_at = now;
}

size_t
pm_mesh_meta_spaces(const pm_mesh_t *self)
{
    return self->meta_spaces;
}

void
pm_mesh_set_functions(pm_mesh_t *self, const pm_fn_cap_t *fns, size_t n)
{
    int same = n == self->n_fns;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(fns[i].name, self->fns[i].name) == 0 && fns[i].free == self->fns[i].free &&
               fns[i].total == self->fns[i].total;
    if (same)
        return;
    for (size_t i = 0; i < self->n_fns; i++)
        free((char *) self->fns[i].name);
    free(self->fns);
    self->fns = pm_xcalloc(n + 1, sizeof *self->fns, "functions");
    self->n_fns = 0;
    for (size_t i = 0; i < n; i++) {
        self->fns[i] = fns[i];
        self->fns[i].name = pm_xstrdup(fns[i].name, "functions");
        self->n_fns++;
    }
    self->meta_dirty = 1;
}

/* ---- seeds ---------------------------------------------------------------- */

/* tcp://HOST:PORT -> every tcp://ADDR:PORT HOST resolves to. DNS is looked
 * up in the reactor: a cluster resolver answers in milliseconds, and this
 * runs once per seed_refresh. */
static void
s_resolve_seeds(pm_mesh_t *self, uint64_t now)
{
    self->next_resolve = now + (uint64_t) self->seed_refresh;
    for (size_t i = 0; i < self->n_seeds; i++) {
        const char *seed = self->seeds[i];
        const char *hostp = strncmp(seed, "tcp://", 6) == 0 ? seed + 6 : seed;
        const char *colon = strrchr(hostp, ':');
        if (!colon || colon == hostp) {
            pm_log_warn("PM-MESH-SEED", "seed '%s' is not tcp://HOST:PORT; ignored", seed);
            continue;
        }
        char host[256], port[16];
        snprintf(host, sizeof host, "%.*s", (int) (colon - hostp), hostp);
        snprintf(port, sizeof port, "%s", colon + 1);
        /* A headless service may list every node: room for them all (16 KiB). */
        char ips[256][PM_RESOLVE_ADDRLEN];
        const char *why = NULL;
        int n = pm_resolve_host(host, port, ips, sizeof ips / sizeof ips[0], &why);
        if (n < 0) {
            pm_log_warn("PM-MESH-SEED", "cannot resolve seed %s: %s", seed, why);
            continue;
        }
        for (int k = 0; k < n; k++) {
            char ep[128];
            snprintf(ep, sizeof ep, "tcp://%.63s:%s", ips[k], port);
            if (strcmp(ep, self->advertise) != 0)
                pm_swim_join(self->swim, ep, now);
        }
    }
}

/* ---- receiving ------------------------------------------------------------ */

static int
s_rate_ok(uint64_t n)
{
    return n <= 10 || n % 1000 == 0; /* the first ten, then one in a thousand */
}

/* Hands a SWIM message to the membership state machine, after checks the
 * state machine cannot make: the envelope's sender must be the message's,
 * and someone who is not a live member may say only that others are alive,
 * and anything about itself or about us (a forged "X is dead" from outside
 * the mesh is dropped; X would refute it anyway, but not before waiters on X
 * had failed). */
static void
s_receive_swim(pm_mesh_t *self, const pm_msg_t *m)
{
    const pm_swim_msg_t *sw = m->swim;
    uint64_t now = (uint64_t) pm_mono_ms();
    if (strcmp(sw->from_name, m->from) != 0) {
        if (s_rate_ok(++self->bad_frames))
            pm_log_warn("PM-PEER-BAD-FRAME", "SWIM message from %s claims to be from %s; dropped",
                        m->from, sw->from_name);
        return;
    }
    int trusted = pm_mesh_is_up(self, sw->from_name);
    pm_swim_update_t kept[PM_SWIM_MAX_PIGGYBACK];
    pm_swim_msg_t copy = *sw;
    if (!trusted && sw->update_count <= PM_SWIM_MAX_PIGGYBACK) {
        size_t n = 0;
        for (size_t i = 0; i < sw->update_count; i++) {
            const pm_swim_update_t *u = &sw->updates[i];
            /* A rumour about ourselves can only make us refute it: keep it
             * (it is how the two sides of a healed partition meet again). */
            if (u->state != PM_SWIM_ALIVE && strcmp(u->name, sw->from_name) != 0 &&
                strcmp(u->name, self->node) != 0) {
                if (s_rate_ok(++self->untrusted))
                    pm_log_warn("PM-PEER-UNTRUSTED", "%s, not a live member, says %s is %s; "
                                "ignored", sw->from_name, u->name,
                                pm_swim_state_name(u->state));
                continue;
            }
            kept[n++] = *u;
        }
        copy.updates = kept;
        copy.update_count = n;
        /* A stranger (a new or restarted agent): exchange full state with it
         * now rather than at the next periodic sync. */
        if (now - self->last_stranger_join > 500 && *sw->from_endpoint &&
            strcmp(sw->from_endpoint, self->advertise) != 0) {
            self->last_stranger_join = now;
            pm_swim_join(self->swim, sw->from_endpoint, now);
        }
    }
    pm_swim_stats_t before;
    pm_swim_stats(self->swim, &before);
    if (pm_swim_receive(self->swim, &copy, now) != 0) {
        pm_swim_stats_t after;
        pm_swim_stats(self->swim, &after);
        const char *why = after.dropped_stale > before.dropped_stale     ? "stale incarnation"
                          : after.dropped_invalid > before.dropped_invalid ? "invalid"
                                                                           : "misdirected";
        if (s_rate_ok(++self->swim_dropped))
            pm_log_warn("PM-PEER-SWIM-DROPPED", "%s %s message from %s dropped",
                        why, pm_swim_msg_type_name(sw->type), sw->from_name);
    }
}

/* ---- frames from members we do not know yet ----------------------------- */

/* How long a frame from a sender whose address we have not learnt waits for
 * it. A new or restarted agent is known to its seed from its first SWIM
 * message and to everyone else within a gossip round or two (~100 ms here);
 * 5 s is far past that on a loaded box, and below forward_timeout (10 s),
 * which the asker waits before it calls the owner unreachable. */
#define S_EARLY_HOLD_MS 5000
/* Bounds on what is held for all such senders together (each held frame is
 * at most a frame's size): beyond them a flood, dropped. */
#define S_EARLY_MAX_FRAMES 4096
#define S_EARLY_MAX_BYTES (64u << 20)

static void
s_early_free(pm_mesh_early_t *e)
{
    free(e->from);
    free(e->buf);
    free(e);
}

/* Holds frame buf (m is its decoding) from a sender whose address we do not
 * know: a member that just started and asked us something before its
 * membership reached us. Delivered now, our answer would go nowhere (we
 * cannot reach it), and it would wait forward_timeout for nothing; held,
 * it is delivered as soon as SWIM tells us where the sender is. Takes buf. */
static void
s_early_hold(pm_mesh_t *self, const pm_msg_t *m, uint8_t *buf, size_t len)
{
    if (self->n_early >= S_EARLY_MAX_FRAMES || self->early_bytes + len > S_EARLY_MAX_BYTES) {
        if (s_rate_ok(++self->unknown_peer))
            pm_log_warn("PM-PEER-UNKNOWN", "%s from %s, which is not a member we know of; "
                        "dropped (%zu frames of such senders held already)",
                        pm_wire_type_name(m->type), m->from, self->n_early);
        free(buf);
        return;
    }
    pm_mesh_early_t *e = pm_xcalloc(1, sizeof *e, "early frame");
    e->from = pm_xstrdup(m->from, "early frame");
    e->buf = buf;
    e->len = len;
    e->at = (uint64_t) pm_mono_ms();
    *self->early_tail = e;
    self->early_tail = &e->next;
    self->n_early++;
    self->early_bytes += len;
    pm_log_debug("PM-PEER-EARLY", "%s from %s, whose address we have not learnt yet: held "
                 "until its membership reaches us", pm_wire_type_name(m->type), m->from);
}

/* Delivers, oldest first, the held frames of senders we now know where to
 * reach (the rest keep their order and wait). */
static void
s_early_flush(pm_mesh_t *self)
{
    pm_mesh_early_t **pp = &self->early;
    while (*pp) {
        pm_mesh_early_t *e = *pp;
        if (!s_endpoint_of(self, e->from)) {
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        self->n_early--;
        self->early_bytes -= e->len;
        pm_msg_t m;
        if (pm_wire_decode(e->buf, e->len, &m) == PM_OK && self->hooks.message) {
            pm_log_debug("PM-PEER-EARLY", "%s from %s delivered after %llu ms, now that it "
                         "is a member", pm_wire_type_name(m.type), e->from,
                         (unsigned long long) ((uint64_t) pm_mono_ms() - e->at));
            self->hooks.message(self->arg, m.from, &m);
        }
        pm_wire_release(&m);
        s_early_free(e);
    }
    self->early_tail = pp;
}

/* Drops held frames whose sender has not become a member in time. */
static void
s_early_expire(pm_mesh_t *self, uint64_t now)
{
    while (self->early && now - self->early->at >= S_EARLY_HOLD_MS) {
        pm_mesh_early_t *e = self->early;
        self->early = e->next;
        self->n_early--;
        self->early_bytes -= e->len;
        if (s_rate_ok(++self->unknown_peer))
            pm_log_warn("PM-PEER-UNKNOWN", "frame from %s, which did not become a member "
                        "within %d ms; dropped", e->from, S_EARLY_HOLD_MS);
        s_early_free(e);
    }
    if (!self->early)
        self->early_tail = &self->early;
}

/* One envelope from a peer (a frame, or one of a batch's: batch_from is then
 * the batch's sender): counted, then heard, held or dropped. buf is
 * borrowed (copied if held). */
static void
s_on_frame(pm_mesh_t *self, const uint8_t *buf, size_t len, const char *batch_from)
{
    pm_msg_t m;
    int err = pm_wire_decode(buf, len, &m);
    if (!err && batch_from && (m.type == PM_MSG_BATCH || !m.from || strcmp(m.from, batch_from)))
        err = PM_ERR_BAD_REQUEST; /* a batch holds one sender's envelopes, no batch */
    if (err || !m.from) {
        if (s_rate_ok(++self->bad_frames))
            pm_log_warn("PM-PEER-BAD-FRAME", "%s frame of %zu bytes on the mesh port%s "
                        "(bad frames so far: %llu)", err ? pm_err_name(err) : "anonymous",
                        len, batch_from ? " (in a batch)" : "",
                        (unsigned long long) self->bad_frames);
        pm_wire_release(&m);
        return;
    }
    size_t k = s_kind(&m);
    self->recv[k]++;
    self->recv_bytes[k] += len;
    if (m.type == PM_MSG_BATCH) {
        for (size_t i = 0; i < m.record_count; i++) {
            self->recv_bytes[k] -= m.records[i].len; /* counted by their own kinds */
            s_on_frame(self, m.records[i].data, m.records[i].len, m.from);
        }
    } else if (m.type == PM_MSG_SWIM) {
        s_receive_swim(self, &m);
        if (self->early)
            s_early_flush(self); /* it may have told us of a sender held */
    } else if (!pm_mesh_is_up(self, m.from) && !self->curve) {
        /* Without CURVE anyone can send: only live members are heard. With
         * it, every peer that got through the handshake holds the mesh key;
         * one we have not heard of yet is a member that just started (its
         * first frames can come before the gossip that announces it): its
         * frames wait until we know where to answer it. */
        self->unknown_peer++;
        if (self->unknown_peer <= 10 || self->unknown_peer % 1000 == 0)
            pm_log_warn("PM-PEER-UNKNOWN", "%s from %s, which is not a live member; "
                        "dropped", pm_wire_type_name(m.type), m.from);
    } else if (self->curve && !s_endpoint_of(self, m.from)) {
        uint8_t *copy = pm_xmalloc(len ? len : 1, "early frame");
        memcpy(copy, buf, len);
        s_early_hold(self, &m, copy, len);
    } else if (self->hooks.message) {
        self->hooks.message(self->arg, m.from, &m);
    }
    pm_wire_release(&m);
}

void
pm_mesh_readable(pm_mesh_t *self)
{
    size_t len;
    uint8_t *buf;
    for (int i = 0; i < 1024 && (buf = pm_transport_recv(self->transport, &len)); i++) {
        s_on_frame(self, buf, len, NULL);
        free(buf);
    }
}

/* ---- queries -------------------------------------------------------------- */

pm_route_t
pm_mesh_route(pm_mesh_t *self, const char *id, const char **node)
{
    char space[PM_WIRE_MAX_NAME + 1];
    if (!pm_id_space(id, space, sizeof space))
        return PM_ROUTE_UNKNOWN;
    return pm_mesh_route_space(self, space, node);
}

pm_route_t
pm_mesh_route_space(pm_mesh_t *self, const char *space, const char **node)
{
    if (pm_mesh_owns(self, space, NULL))
        return PM_ROUTE_LOCAL;
    pm_mesh_owner_t *owner = zhashx_lookup(self->owners, space);
    if (owner && pm_mesh_is_up(self, owner->node)) {
        *node = owner->node;
        return PM_ROUTE_REMOTE;
    }
    if (owner || zhashx_lookup(self->lost, space))
        return PM_ROUTE_LOST;
    return PM_ROUTE_UNKNOWN;
}

int
pm_mesh_is_up(pm_mesh_t *self, const char *node)
{
    pm_mesh_peer_t *p = zhashx_lookup(self->peers, node);
    return p && (p->state == PM_SWIM_ALIVE || p->state == PM_SWIM_SUSPECT);
}

int
pm_mesh_knows(pm_mesh_t *self, const char *node)
{
    return zhashx_lookup(self->peers, node) != NULL;
}

const char *
pm_mesh_place(pm_mesh_t *self, const char *function)
{
    /* The member with the most free slots as gossiped, ties broken at
     * random. Gossip is up to half a second old, so each placement takes a
     * slot off our copy of that member's figure until its next metadata
     * arrives: a burst of placements spreads over the servers instead of all
     * going to whoever looked best last. */
    pm_mesh_peer_t *best = NULL;
    pm_fn_cap_t *best_fn = NULL;
    uint32_t ties = 0;
    for (pm_mesh_peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers)) {
        if (p->state != PM_SWIM_ALIVE)
            continue;
        for (size_t i = 0; i < p->n_fns; i++) {
            pm_fn_cap_t *f = &p->fns[i];
            if (strcmp(f->name, function) != 0)
                continue;
            if (!best || f->free > best_fn->free) {
                best = p;
                best_fn = f;
                ties = 1;
            } else if (f->free == best_fn->free) {
                /* Reservoir choice among equals: each kept with 1/ties. */
                self->place_rng = self->place_rng * 6364136223846793005ULL + 1442695040888963407ULL;
                if ((self->place_rng >> 33) % ++ties == 0) {
                    best = p;
                    best_fn = f;
                }
            }
        }
    }
    if (!best)
        return NULL;
    if (best_fn->free > 0)
        best_fn->free--;
    return best->name;
}

size_t
pm_mesh_alive(pm_mesh_t *self)
{
    return pm_swim_count(self->swim, PM_SWIM_ALIVE);
}

char *
pm_mesh_members_json(pm_mesh_t *self)
{
    json_t *arr = json_array();
    uint64_t now = (uint64_t) pm_mono_ms();
    for (size_t i = 0; i < pm_swim_size(self->swim); i++) {
        pm_swim_member_t m;
        if (pm_swim_member_at(self->swim, i, &m) != 0)
            continue;
        json_t *fns = json_array();
        const pm_fn_cap_t *caps = self->fns;
        size_t n = self->n_fns;
        pm_mesh_peer_t *p = m.is_self ? NULL : zhashx_lookup(self->peers, m.name);
        if (p) {
            caps = p->fns;
            n = p->n_fns;
        }
        for (size_t j = 0; j < n; j++)
            json_array_append_new(fns, json_pack("{s:s,s:i,s:i}", "name", caps[j].name, "free",
                                                 (int) caps[j].free, "total",
                                                 (int) caps[j].total));
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:I,s:I,s:b,s:o}", "node", m.name, "endpoint",
                           m.endpoint, "state", pm_swim_state_name(m.state), "incarnation",
                           (json_int_t) m.incarnation, "last_heard_ms_ago",
                           m.is_self ? 0 : m.last_heard_ms ? (json_int_t) (now - m.last_heard_ms) : -1,
                           "self", m.is_self, "functions", fns));
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

void
pm_mesh_stats_fill(pm_mesh_t *self, pm_stats_t *out)
{
    char buf[64];
    out->parts |= PM_STATS_MESH;
    for (size_t k = 1; k < PM_MESH_KINDS; k++) {
        out->mesh_bytes_sent += self->sent_bytes[k];
        out->mesh_bytes_received += self->recv_bytes[k];
        if (!self->sent[k] && !self->recv[k])
            continue;
        pm_stats_kind_t *kind = pm_stats_add_kind(out, s_kind_name(k, buf, sizeof buf));
        kind->sent = self->sent[k];
        kind->sent_bytes = self->sent_bytes[k];
        kind->received = self->recv[k];
        kind->received_bytes = self->recv_bytes[k];
    }
    pm_swim_stats_t ss;
    pm_swim_stats(self->swim, &ss);
    pm_transport_stats_t ts;
    pm_transport_stats(self->transport, &ts);
    out->mesh_alive = pm_swim_count(self->swim, PM_SWIM_ALIVE);
    out->mesh_suspect = pm_swim_count(self->swim, PM_SWIM_SUSPECT);
    out->mesh_dead = pm_swim_count(self->swim, PM_SWIM_DEAD);
    out->mesh_left = pm_swim_count(self->swim, PM_SWIM_LEFT);
    out->mesh_incarnation = pm_swim_incarnation(self->swim);
    out->mesh_local_health = (uint64_t) pm_swim_health(self->swim);
    out->mesh_suspicions = ss.suspicions;
    out->mesh_deaths_declared = ss.deaths;
    out->mesh_refutations = ss.refutations;
    out->mesh_dropped_stale = ss.dropped_stale;
    out->mesh_dropped_invalid = ss.dropped_invalid;
    out->mesh_bad_frames = self->bad_frames + ts.bad_in;
    out->mesh_unknown_peer = self->unknown_peer;
    out->mesh_dropped_out = ts.dropped_out;
    out->mesh_untrusted_updates = self->untrusted;
    out->mesh_auth_refused = ts.auth_refused;
    out->mesh_handshakes_failed = ts.handshakes_failed;
}

/* ---- lifecycle ------------------------------------------------------------ */

void *
pm_mesh_socket(pm_mesh_t *self)
{
    return pm_transport_socket(self->transport);
}

void
pm_mesh_tick(pm_mesh_t *self)
{
    uint64_t now = (uint64_t) pm_mono_ms();
    if (self->meta_dirty && now - self->meta_at >= PM_MESH_META_PERIOD_MS)
        pm_mesh_publish_meta(self, now);
    if (self->n_seeds && now >= self->next_resolve)
        s_resolve_seeds(self, now);
    pm_swim_tick(self->swim, now);
    if (self->early) {
        s_early_flush(self);
        s_early_expire(self, now);
    }
}

int64_t
pm_mesh_timeout(pm_mesh_t *self)
{
    uint64_t now = (uint64_t) pm_mono_ms();
    uint64_t at = pm_swim_next_deadline(self->swim);
    if (self->meta_dirty && self->meta_at + PM_MESH_META_PERIOD_MS < at)
        at = self->meta_at + PM_MESH_META_PERIOD_MS;
    if (self->n_seeds && self->next_resolve < at)
        at = self->next_resolve;
    return at <= now ? 0 : (int64_t) (at - now);
}

void
pm_mesh_leave(pm_mesh_t *self)
{
    if (self->left)
        return;
    self->left = 1;
    pm_swim_leave(self->swim, (uint64_t) pm_mono_ms());
}

pm_mesh_t *
pm_mesh_new(void *ctx, const pm_config_t *cfg, const char *node, const char *space,
            const pm_mesh_hooks_t *hooks, void *arg)
{
    pm_mesh_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->early_tail = &self->early;
    self->node = strdup(node);
    self->space = strdup(space);
    self->advertise = strdup(cfg->advertise && *cfg->advertise ? cfg->advertise : cfg->bind);
    self->hooks = *hooks;
    self->arg = arg;
    self->seed_refresh = cfg->seed_refresh;
    self->meta_trim = cfg->coordination && *cfg->coordination;
    self->peers = zhashx_new();
    self->owners = zhashx_new();
    self->lost = zhashx_new();
    zhashx_set_destructor(self->peers, s_peer_destroy);
    zhashx_set_destructor(self->owners, s_owner_destroy);
    self->mine = calloc(1, sizeof *self->mine);
    self->mine_epochs = calloc(1, sizeof *self->mine_epochs);
    if (!self->mine || !self->mine_epochs || !(self->mine[0] = strdup(space))) {
        pm_mesh_destroy(&self);
        return NULL;
    }
    self->mine_epochs[0] = 1;
    self->n_mine = 1;
    zhashx_set_destructor(self->lost, s_free_str);
    self->seeds = calloc(cfg->seeds.len + 1, sizeof *self->seeds);
    for (size_t i = 0; self->seeds && i < cfg->seeds.len; i++)
        self->seeds[self->n_seeds++] = strdup(cfg->seeds.items[i]);
    pm_mesh_keys_t keys;
    int curve = cfg->mesh_key_dir && *cfg->mesh_key_dir;
    if (curve) {
        char err[512];
        if (pm_auth_load_keys(cfg->mesh_key_dir, &keys, err, sizeof err) != 0) {
            pm_log_error("PM-MESH-KEYS", "%s", err);
            pm_mesh_destroy(&self);
            return NULL;
        }
    } else {
        pm_log_warn("PM-MESH-INSECURE", "mesh traffic is NOT encrypted and anyone who reaches "
                    "%s can join (--insecure); use --mesh-key-dir in production", cfg->bind);
    }
    self->curve = curve;
    self->transport = pm_transport_new(ctx, cfg->bind,
                                       (int64_t) cfg->max_value_bytes + PM_WIRE_MAX_FRAME / 64,
                                       curve ? &keys : NULL);
    if (!self->transport) {
        pm_mesh_destroy(&self);
        return NULL;
    }
    pm_swim_config_t sc;
    pm_swim_config_defaults(&sc);
    sc.probe_interval_ms = (uint32_t) cfg->probe_interval;
    sc.probe_timeout_ms = (uint32_t) cfg->probe_timeout;
    sc.indirect_checks = (uint32_t) cfg->indirect_checks;
    sc.suspicion_mult = (uint32_t) cfg->suspicion_mult;
    sc.gossip_interval_ms = (uint32_t) cfg->gossip_interval;
    sc.sync_interval_ms = (uint32_t) cfg->sync_interval;
    /* Start above any incarnation an earlier run of this node used, so a
     * restart is never mistaken for stale news. */
    sc.incarnation = (uint64_t) pm_real_ms();
    const char *why = NULL;
    if (pm_swim_config_check(&sc, &why) != 0) {
        pm_log_error("PM-MESH-CONFIG", "membership settings refused: %s", why ? why : "?");
        pm_mesh_destroy(&self);
        return NULL;
    }
    uint64_t seed = pm_rand_u64();
    self->place_rng = seed ^ 0x9e3779b97f4a7c15ULL;
    self->swim = pm_swim_new(node, self->advertise, &sc, seed, s_send_swim, s_on_swim_event, self);
    if (!self->swim) {
        pm_log_error("PM-MESH-CONFIG", "cannot start membership for %s at %s", node,
                     self->advertise);
        pm_mesh_destroy(&self);
        return NULL;
    }
    uint64_t now = (uint64_t) pm_mono_ms();
    pm_mesh_publish_meta(self, now);
    if (self->n_seeds)
        s_resolve_seeds(self, now);
    pm_log_info("PM-MESH-UP", "node %s in the mesh at %s (listening on %s), %zu seed(s)", node,
                self->advertise, cfg->bind, self->n_seeds);
    return self;
}

void
pm_mesh_destroy(pm_mesh_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_mesh_t *self = *self_p;
    while (self->early) {
        pm_mesh_early_t *e = self->early;
        self->early = e->next;
        s_early_free(e);
    }
    pm_mesh_outbox_free(self);
    pm_swim_destroy(&self->swim);
    pm_transport_destroy(&self->transport);
    zhashx_destroy(&self->peers);
    zhashx_destroy(&self->owners);
    zhashx_destroy(&self->lost);
    for (size_t i = 0; i < self->n_seeds; i++)
        free(self->seeds[i]);
    free(self->seeds);
    for (size_t i = 0; i < self->n_fns; i++)
        free((char *) self->fns[i].name);
    free(self->fns);
    for (size_t i = 0; i < self->n_mine; i++)
        free(self->mine[i]);
    free(self->mine);
    pm_mesh_free_backups(self);
    free(self->mine_epochs);
    free(self->node);
    free(self->space);
    free(self->advertise);
    free(self);
    *self_p = NULL;
}
