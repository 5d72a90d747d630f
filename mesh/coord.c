/*
 * coord.c - see coord.h. The interface every backend shares: the PAIR the
 * answers come back on, request ids, counters, and the record's JSON form.
 */
#include "coord.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* The record format's version: a newer agent may add keys (ignored here) but
 * a different "v" means a format this code cannot read. */
#define S_FORMAT_VERSION 1

const char *
pm_coord_status_name(pm_coord_status_t s)
{
    switch (s) {
    case PM_COORD_OK: return "OK";
    case PM_COORD_CONFLICT: return "CONFLICT";
    case PM_COORD_NOT_FOUND: return "NOT_FOUND";
    case PM_COORD_UNAVAILABLE: return "UNAVAILABLE";
    case PM_COORD_BAD: return "BAD";
    }
    return "?";
}

const char *
pm_coord_kind_name(pm_coord_kind_t k)
{
    switch (k) {
    case PM_COORD_GET: return "GET";
    case PM_COORD_CREATE: return "CREATE";
    case PM_COORD_CAS: return "CAS";
    case PM_COORD_LIST: return "LIST";
    case PM_COORD_WATCH: return "WATCH";
    case PM_COORD_EVENT: return "EVENT";
    case PM_COORD_RESYNC: return "RESYNC";
    case PM_COORD_DELETE: return "DELETE";
    }
    return "?";
}

static int
s_name_ok(const char *name, int allow_empty, int allow_slash)
{
    size_t n = strnlen(name, PM_COORD_NAME_MAX);
    if (n >= PM_COORD_NAME_MAX || (n == 0 && !allow_empty))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) name[i];
        if (ch < 0x21 || ch == 0x7f || (ch == '/' && !allow_slash))
            return 0;
    }
    return 1;
}

int
pm_coord_space_ok(const char *name)
{
    return name && s_name_ok(name, 0, 0);
}

static int
s_record_ok(const pm_coord_record_t *rec)
{
    if (!pm_coord_space_ok(rec->space) || !s_name_ok(rec->owner, 1, 1) ||
        rec->n_in_sync > PM_COORD_MAX_INSYNC)
        return 0;
    for (size_t i = 0; i < rec->n_in_sync; i++)
        if (!s_name_ok(rec->in_sync[i].node, 0, 1))
            return 0;
    return 1;
}

int
pm_coord_record_same(const pm_coord_record_t *a, const pm_coord_record_t *b)
{
    if (strcmp(a->space, b->space) || strcmp(a->owner, b->owner) || a->owner_pid != b->owner_pid ||
        a->epoch != b->epoch || a->n_in_sync != b->n_in_sync)
        return 0;
    for (size_t i = 0; i < a->n_in_sync; i++)
        if (strcmp(a->in_sync[i].node, b->in_sync[i].node) ||
            a->in_sync[i].pid != b->in_sync[i].pid)
            return 0;
    return 1;
}

/* ---- the record's JSON form ---------------------------------------------- */

char *
pm_coord_record_encode(const pm_coord_record_t *rec)
{
    char pid[32];
    json_t *set = json_array();
    snprintf(pid, sizeof pid, "%" PRIu64, rec->owner_pid);
    json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:o}", "v", S_FORMAT_VERSION, "space",
                          rec->space, "owner", rec->owner, "owner_pid", pid, "epoch",
                          (json_int_t) rec->epoch, "in_sync", set);
    if (!o)
        return NULL;
    for (size_t i = 0; i < rec->n_in_sync && i < PM_COORD_MAX_INSYNC; i++) {
        snprintf(pid, sizeof pid, "%" PRIu64, rec->in_sync[i].pid);
        json_array_append_new(set,
                              json_pack("{s:s, s:s}", "node", rec->in_sync[i].node, "pid", pid));
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

/* A decimal u64 in a JSON string, all of it. */
static int
s_u64(json_t *v, uint64_t *out)
{
    const char *s = json_string_value(v);
    if (!s || !*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = x;
    return 0;
}

/* A name from a JSON string: copied only if it fits and is printable. */
static int
s_name(json_t *v, char *out, int allow_empty)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= PM_COORD_NAME_MAX || !s_name_ok(s, allow_empty, 1))
        return -1;
    snprintf(out, PM_COORD_NAME_MAX, "%s", s);
    return 0;
}

int
pm_coord_record_decode(const char *space, const char *json, size_t len, pm_coord_record_t *out,
                       char *err, size_t errlen)
{
    pm_coord_record_t r;
    memset(&r, 0, sizeof r);
    json_error_t jerr;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = -1;
    if (!o || !json_is_object(o)) {
        snprintf(err, errlen, "space %.127s: value is not a JSON object%s%.100s", space,
                 o ? "" : ": ", o ? "" : jerr.text);
        goto out;
    }
    json_t *v = json_object_get(o, "v");
    if (!json_is_integer(v) || json_integer_value(v) != S_FORMAT_VERSION) {
        snprintf(err, errlen, "space %.127s: unknown record format (v)", space);
        goto out;
    }
    if (s_name(json_object_get(o, "space"), r.space, 0) || strcmp(r.space, space) != 0) {
        snprintf(err, errlen, "space %.127s: the record names another space", space);
        goto out;
    }
    if (s_name(json_object_get(o, "owner"), r.owner, 1) ||
        s_u64(json_object_get(o, "owner_pid"), &r.owner_pid)) {
        snprintf(err, errlen, "space %.127s: bad owner or owner_pid", space);
        goto out;
    }
    json_t *e = json_object_get(o, "epoch");
    if (!json_is_integer(e) || json_integer_value(e) < 0) {
        snprintf(err, errlen, "space %.127s: bad epoch", space);
        goto out;
    }
    r.epoch = (uint64_t) json_integer_value(e);
    json_t *set = json_object_get(o, "in_sync");
    if (!json_is_array(set) || json_array_size(set) > PM_COORD_MAX_INSYNC) {
        snprintf(err, errlen, "space %.127s: in_sync is not an array of at most %d", space,
                 PM_COORD_MAX_INSYNC);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(set); i++) {
        json_t *m = json_array_get(set, i);
        if (!json_is_object(m) || s_name(json_object_get(m, "node"), r.in_sync[i].node, 0) ||
            s_u64(json_object_get(m, "pid"), &r.in_sync[i].pid)) {
            snprintf(err, errlen, "space %.127s: in_sync[%zu] is malformed", space, i);
            goto out;
        }
    }
    r.n_in_sync = json_array_size(set);
    *out = r;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* ---- results ------------------------------------------------------------- */

pm_coord_result_t *
pm_coord_result_new(uint64_t req, pm_coord_kind_t kind, pm_coord_status_t st)
{
    pm_coord_result_t *r = calloc(1, sizeof *r);
    if (r) {
        r->req = req;
        r->kind = kind;
        r->status = st;
    }
    return r;
}

void
pm_coord_result_msg(pm_coord_result_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

int
pm_coord_result_add(pm_coord_result_t *r, const pm_coord_record_t *rec)
{
    pm_coord_record_t *recs = realloc(r->records, (r->n_records + 1) * sizeof *recs);
    if (!recs)
        return -1;
    recs[r->n_records++] = *rec;
    r->records = recs;
    return 0;
}

void
pm_coord_result_destroy(pm_coord_result_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->records);
    free(*self_p);
    *self_p = NULL;
}

int
pm_coord_deliver(pm_coord_t *c, pm_coord_result_t *r)
{
    /* Counted before it is sent: a receive that sees no count need not look
     * (pm_coord_recv is called every loop iteration, and an empty inproc
     * receive costs a poll(2) and a getpid(2) in ZeroMQ). */
    atomic_fetch_add(&c->in_flight, 1);
    if (zmq_send(c->peer, &r, sizeof r, ZMQ_DONTWAIT) != (int) sizeof r) {
        atomic_fetch_sub(&c->in_flight, 1);
        pm_coord_result_destroy(&r);
        return -1;
    }
    return 0;
}

/* ---- the client ---------------------------------------------------------- */

pm_coord_t *
pm_coord_new(const pm_coord_config_t *cfg, char *err, size_t errlen)
{
    static _Atomic uint64_t instances;
    const pm_coord_backend_t *be = NULL;
    if (!cfg->url) {
        snprintf(err, errlen, "coordination: no store URL");
        return NULL;
    }
    if (strncmp(cfg->url, "etcd://", 7) == 0)
        be = &pm_coord_etcd_backend;
    else if (strcmp(cfg->url, "mem://") == 0)
        be = &pm_coord_mem_backend;
    if (!be) {
        snprintf(err, errlen, "coordination: '%.200s': expected etcd://HOST:PORT[,HOST:PORT...]",
                 cfg->url);
        return NULL;
    }
    const char *prefix = cfg->prefix ? cfg->prefix : "";
    size_t plen = strlen(prefix);
    if (plen == 0 || plen >= sizeof((pm_coord_t *) 0)->prefix || prefix[0] != '/' ||
        prefix[plen - 1] == '/' || !s_name_ok(prefix, 0, 1)) {
        snprintf(err, errlen,
                 "coordination: key prefix '%.200s' must start with '/', not end with one, "
                 "and be printable",
                 prefix);
        return NULL;
    }
    pm_coord_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->be = be;
    snprintf(self->prefix, sizeof self->prefix, "%s", prefix);
    self->ctx = cfg->zmq_ctx;
    if (!self->ctx) {
        self->ctx = zmq_ctx_new();
        self->own_ctx = 1;
    }
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://pm-coord-%" PRIu64, ++instances);
    self->sock = self->ctx ? zmq_socket(self->ctx, ZMQ_PAIR) : NULL;
    self->peer = self->ctx ? zmq_socket(self->ctx, ZMQ_PAIR) : NULL;
    int zero = 0;
    if (!self->sock || !self->peer) {
        snprintf(err, errlen, "coordination: cannot create sockets: %s", zmq_strerror(errno));
        goto fail;
    }
    /* No high-water mark: both ends only ever hold pointers to what is in
     * flight, and dropping one would lose an answer. No linger: at destroy
     * whatever is queued is freed by hand. */
    zmq_setsockopt(self->sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(self->sock, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(self->peer, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(self->peer, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->peer, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(self->sock, ep) != 0 || zmq_connect(self->peer, ep) != 0) {
        snprintf(err, errlen, "coordination: cannot bind %s: %s", ep, zmq_strerror(errno));
        goto fail;
    }
    if (be->open(self, cfg, err, errlen) != 0)
        goto fail;
    return self;
fail:
    pm_coord_destroy(&self); /* be->close copes with a half-open backend */
    return NULL;
}

/* Frees every pointer frame queued on s (results or requests). */
static void
s_drain(void *s, int results)
{
    void *p;
    while (s && zmq_recv(s, &p, sizeof p, ZMQ_DONTWAIT) == (int) sizeof p) {
        if (results) {
            pm_coord_result_t *r = p;
            pm_coord_result_destroy(&r);
        } else {
            free(p);
        }
    }
}

void
pm_coord_destroy(pm_coord_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_coord_t *self = *self_p;
    if (self->be)
        self->be->close(self);
    s_drain(self->sock, 1);
    s_drain(self->peer, 0);
    if (self->sock)
        zmq_close(self->sock);
    if (self->peer)
        zmq_close(self->peer);
    if (self->own_ctx && self->ctx)
        zmq_ctx_term(self->ctx);
    free(self);
    *self_p = NULL;
}

static uint64_t
s_submit(pm_coord_t *self, pm_coord_kind_t kind, const char *space, const pm_coord_record_t *rec,
         int64_t expected, int64_t from_rev)
{
    if (space && !pm_coord_space_ok(space))
        return 0;
    if (rec && !s_record_ok(rec))
        return 0;
    pm_coord_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return 0;
    req->id = ++self->next_id;
    req->kind = kind;
    if (space)
        snprintf(req->space, sizeof req->space, "%s", space);
    if (rec) {
        req->rec = *rec;
        req->rec.revision = 0;
    }
    req->expected = expected;
    req->from_rev = from_rev < 0 ? 0 : from_rev;
    self->stats.requests++;
    uint64_t id = req->id;
    self->be->submit(self, req);
    return id;
}

uint64_t
pm_coord_get(pm_coord_t *self, const char *space)
{
    return s_submit(self, PM_COORD_GET, space, NULL, 0, 0);
}

uint64_t
pm_coord_create(pm_coord_t *self, const pm_coord_record_t *rec)
{
    return s_submit(self, PM_COORD_CREATE, rec->space, rec, 0, 0);
}

uint64_t
pm_coord_cas(pm_coord_t *self, int64_t expected, const pm_coord_record_t *rec)
{
    if (expected <= 0)
        return 0;
    return s_submit(self, PM_COORD_CAS, rec->space, rec, expected, 0);
}

uint64_t
pm_coord_delete(pm_coord_t *self, const char *space, int64_t expected)
{
    if (expected <= 0)
        return 0;
    return s_submit(self, PM_COORD_DELETE, space, NULL, expected, 0);
}

uint64_t
pm_coord_list(pm_coord_t *self)
{
    return s_submit(self, PM_COORD_LIST, NULL, NULL, 0, 0);
}

uint64_t
pm_coord_watch(pm_coord_t *self, int64_t from_rev)
{
    return s_submit(self, PM_COORD_WATCH, NULL, NULL, 0, from_rev);
}

void *
pm_coord_socket(pm_coord_t *self)
{
    return self->sock;
}

int
pm_coord_fd(pm_coord_t *self)
{
    int fd = -1;
    size_t len = sizeof fd;
    if (zmq_getsockopt(self->sock, ZMQ_FD, &fd, &len) != 0)
        return -1;
    return fd;
}

int
pm_coord_recv(pm_coord_t *self, pm_coord_result_t **out)
{
    pm_coord_result_t *r;
    if (atomic_load(&self->in_flight) == 0 ||
        zmq_recv(self->sock, &r, sizeof r, ZMQ_DONTWAIT) != (int) sizeof r)
        return -1;
    atomic_fetch_sub(&self->in_flight, 1);
    pm_coord_stats_t *st = &self->stats;
    switch (r->kind) {
    case PM_COORD_EVENT: st->events++; break;
    case PM_COORD_RESYNC: st->resyncs++; break;
    case PM_COORD_WATCH:
        if (r->status != PM_COORD_OK)
            st->watch_breaks++;
        break;
    default:
        switch (r->status) {
        case PM_COORD_OK: st->ok++; break;
        case PM_COORD_CONFLICT: st->conflicts++; break;
        case PM_COORD_NOT_FOUND: st->not_found++; break;
        case PM_COORD_UNAVAILABLE: st->unavailable++; break;
        case PM_COORD_BAD: st->bad++; break;
        }
    }
    if (r->kind == PM_COORD_EVENT && r->status == PM_COORD_BAD)
        st->bad++;
    *out = r;
    return 0;
}

void
pm_coord_stats(const pm_coord_t *self, pm_coord_stats_t *out)
{
    *out = self->stats;
    out->failovers = atomic_load(&((pm_coord_t *) self)->failovers);
}
