/*
 * wire.c - see wire.h. Builds protobuf-c messages on the stack from pm_msg_t
 * and packs them; unpacks and maps back, checking every field's size first.
 * protobuf-c's unpack returns NULL on malformed input, which is how truncated
 * frames and garbage are caught.
 */
#include "wire.h"

#include "pmesh.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* Labels per message and functions per worker: bounded so a hostile frame
 * cannot make the decoder allocate without limit. */
#define S_MAX_LABELS 256
#define S_MAX_FUNCTIONS 64
/* Id spaces one member may serve: every restart leaves one behind for its
 * heir until its promises are dropped, so a busy mesh has many. The real
 * bound is the metadata size (PM_SWIM_META_MAX, ~280 spaces); this one only
 * caps the decoder's work. */
#define S_MAX_SPACES 1024

/* What one decoded message owns: protobuf-c unpacks into an arena (a buffer
 * inside this struct, then chunks taken from malloc when a message is
 * larger), so unpacking costs a pointer bump per object and releasing frees
 * a chunk or two instead of walking the message (issue 13's benchmark: the
 * walk was 5% of the agent's instructions per request). */
#define S_ARENA_INLINE 896 /* the struct stays within malloc's fast (tcache) sizes */
typedef struct s_chunk {
    struct s_chunk *next;
    max_align_t mem[];
} s_chunk_t;

typedef struct s_priv {
    Pmesh__Envelope *env;
    Pmesh__Meta *meta;
    Pmesh__Record *rec;
    ProtobufCAllocator pa; /* allocates from this arena; its free is a no-op */
    s_chunk_t *chunks;     /* overflow chunks, freed on release */
    size_t used;           /* bytes of mem taken */
    size_t cap;            /* bytes of the chunk in use (mem or chunks->mem) */
    unsigned char *cur;    /* that chunk */
    _Alignas(max_align_t) unsigned char mem[S_ARENA_INLINE];
} s_priv_t;

static const char *s_type_names[PM_MSG_TYPE_COUNT] = {
    "none", "hello", "create", "settle", "heartbeat", "get", "await", "then",
    "list", "status", "register", "invoke", "result", "ping", "bye", "swim", "members", "replicate", "replicate_ack", "reply",
    "combine", "force_owner", "batch"};

const char *
pm_wire_type_name(pm_msg_type_t type)
{
    return type < PM_MSG_TYPE_COUNT ? s_type_names[type] : "unknown";
}

/* protobuf-c wants char * for strings it will not modify when packing. */
static char *
s_str(const char *s)
{
    return (char *) (s ? s : "");
}

/* ---- encode --------------------------------------------------------------- */

static Pmesh__Label *
s_labels_out(const pm_label_t *in, size_t n, Pmesh__Label *store, Pmesh__Label **ptrs)
{
    for (size_t i = 0; i < n; i++) {
        pmesh__label__init(&store[i]);
        store[i].key = s_str(in[i].key);
        store[i].value = s_str(in[i].value);
        ptrs[i] = &store[i];
    }
    return store;
}

static size_t
s_promise_labels(const pm_wire_promise_t *p)
{
    return p->label_count;
}

static void
s_promise_out(const pm_wire_promise_t *in, Pmesh__Promise *out, Pmesh__Label *lstore,
              Pmesh__Label **lptrs)
{
    pmesh__promise__init(out);
    out->id = s_str(in->id);
    out->state = (Pmesh__State) in->state;
    out->value.data = (uint8_t *) in->value;
    out->value.len = in->value ? in->value_len : 0;
    out->reason = s_str(in->reason);
    out->created_ms = (uint64_t) in->created_ms;
    out->settled_ms = (uint64_t) in->settled_ms;
    out->timeout_at_ms = (uint64_t) in->timeout_at_ms;
    out->heartbeat_ms = (uint64_t) in->heartbeat_ms;
    out->heartbeat_at_ms = (uint64_t) in->heartbeat_at_ms;
    out->idempotency_key = s_str(in->key);
    out->n_labels = in->label_count;
    out->labels = lptrs;
    s_labels_out(in->labels, in->label_count, lstore, lptrs);
}

/* Builds the Swim body in one scratch block (freed by the caller). */
static long
s_swim_out(const pm_swim_msg_t *in, Pmesh__Envelope *env, void **scratch_p)
{
    if (!in)
        return -1;
    size_t n = in->update_count;
    char *block = malloc(sizeof(Pmesh__Swim) + n * (sizeof(Pmesh__SwimUpdate) +
                                                     sizeof(Pmesh__SwimUpdate *)) + 1);
    if (!block)
        return -1;
    *scratch_p = block;
    Pmesh__Swim *sw = (Pmesh__Swim *) block;
    Pmesh__SwimUpdate *us = (Pmesh__SwimUpdate *) (sw + 1);
    Pmesh__SwimUpdate **ups = (Pmesh__SwimUpdate **) (us + n);
    pmesh__swim__init(sw);
    sw->type = in->type;
    sw->from_name = s_str(in->from_name);
    sw->from_endpoint = s_str(in->from_endpoint);
    sw->from_incarnation = in->from_incarnation;
    sw->seq = in->seq;
    sw->target_name = s_str(in->target_name);
    sw->target_endpoint = s_str(in->target_endpoint);
    sw->n_updates = n;
    sw->updates = ups;
    for (size_t i = 0; i < n; i++) {
        const pm_swim_update_t *u = &in->updates[i];
        pmesh__swim_update__init(&us[i]);
        us[i].name = s_str(u->name);
        us[i].endpoint = s_str(u->endpoint);
        us[i].incarnation = u->incarnation;
        us[i].state = u->state;
        us[i].meta.data = (uint8_t *) u->meta;
        us[i].meta.len = u->meta ? u->meta_len : 0;
        us[i].from = s_str(u->from);
        ups[i] = &us[i];
    }
    env->body_case = PMESH__ENVELOPE__BODY_SWIM;
    env->swim = sw;
    return 0;
}

/* The records (replicate) or frames (batch) of m as protobuf-c's binary
 * fields, borrowing the data; *out is malloc'd (NULL when n is 0). */
static int
s_bytes_out(const pm_bytes_t *in, size_t n, ProtobufCBinaryData **out)
{
    *out = NULL;
    if (!n)
        return 0;
    *out = malloc(n * sizeof **out);
    if (!*out)
        return -1;
    for (size_t i = 0; i < n; i++)
        (*out)[i] = (ProtobufCBinaryData){.data = (uint8_t *) in[i].data, .len = in[i].len};
    return 0;
}

uint8_t *
pm_wire_encode(const pm_msg_t *m, size_t *len)
{
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = PM_WIRE_VERSION;
    env.req_id = m->req_id;
    env.from = s_str(m->from);

    Pmesh__Hello hello = PMESH__HELLO__INIT;
    Pmesh__Create create = PMESH__CREATE__INIT;
    Pmesh__Settle settle = PMESH__SETTLE__INIT;
    Pmesh__Target target = PMESH__TARGET__INIT;
    Pmesh__Await await = PMESH__AWAIT__INIT;
    Pmesh__Then then = PMESH__THEN__INIT;
    Pmesh__Combine combine = PMESH__COMBINE__INIT;
    Pmesh__List list = PMESH__LIST__INIT;
    Pmesh__Label label = PMESH__LABEL__INIT;
    Pmesh__Empty empty = PMESH__EMPTY__INIT;
    Pmesh__Register reg = PMESH__REGISTER__INIT;
    Pmesh__Invoke invoke = PMESH__INVOKE__INIT;
    Pmesh__InvokeResult result = PMESH__INVOKE_RESULT__INIT;
    Pmesh__Ping ping = PMESH__PING__INIT;
    Pmesh__ForceOwner force = PMESH__FORCE_OWNER__INIT;
    Pmesh__Reply reply = PMESH__REPLY__INIT;
    Pmesh__Promise one = PMESH__PROMISE__INIT;
    Pmesh__Batch batch = PMESH__BATCH__INIT;

    /* Scratch for labels and promise lists, freed before returning. */
    void *scratch = NULL;
    Pmesh__Label *lstore = NULL;
    Pmesh__Label **lptrs = NULL;
    Pmesh__Promise *pstore = NULL;
    Pmesh__Promise **pptrs = NULL;
    size_t nlabels = m->label_count;
    if (m->promise)
        nlabels += s_promise_labels(m->promise);
    for (size_t i = 0; i < m->promise_count; i++)
        nlabels += s_promise_labels(&m->promises[i]);
    size_t bytes = nlabels * (sizeof(Pmesh__Label) + sizeof(Pmesh__Label *)) +
                   m->promise_count * (sizeof(Pmesh__Promise) + sizeof(Pmesh__Promise *));
    if (bytes) {
        scratch = malloc(bytes);
        if (!scratch)
            return NULL;
        lstore = scratch;
        pstore = (Pmesh__Promise *) (lstore + nlabels);
        lptrs = (Pmesh__Label **) (pstore + m->promise_count);
        pptrs = (Pmesh__Promise **) (lptrs + nlabels);
    }
    size_t lused = 0;
    void *scratch_swim = NULL;
    Pmesh__ChainStep *sstore = NULL, **sptrs = NULL;
    if (m->step_count && (m->type == PM_MSG_INVOKE || m->type == PM_MSG_RESULT)) {
        sstore = malloc(m->step_count * (sizeof *sstore + sizeof *sptrs));
        if (!sstore) {
            free(scratch);
            return NULL;
        }
        sptrs = (Pmesh__ChainStep **) (sstore + m->step_count);
        for (size_t i = 0; i < m->step_count; i++) {
            pmesh__chain_step__init(&sstore[i]);
            sstore[i].source = s_str(m->steps[i].source);
            sstore[i].function = s_str(m->steps[i].function);
            sstore[i].target_id = s_str(m->steps[i].target_id);
            sstore[i].invocation_id = s_str(m->steps[i].invocation_id);
            sptrs[i] = &sstore[i];
        }
    }
    long buf_len = 0;
    Pmesh__Replicate repl = PMESH__REPLICATE__INIT;
    Pmesh__ReplicateAck rack = PMESH__REPLICATE_ACK__INIT;
    ProtobufCBinaryData *recs = NULL;

    switch (m->type) {
    case PM_MSG_HELLO:
        env.body_case = PMESH__ENVELOPE__BODY_HELLO;
        env.hello = &hello;
        hello.client_name = s_str(m->client_name);
        hello.batches = m->batches != 0;
        break;
    case PM_MSG_CREATE:
        env.body_case = PMESH__ENVELOPE__BODY_CREATE;
        env.create = &create;
        create.id = s_str(m->id);
        create.timeout_ms = (uint64_t) m->timeout_ms;
        create.heartbeat_ms = (uint64_t) m->heartbeat_ms;
        create.idempotency_key = s_str(m->key);
        create.want_token = m->want_token != 0;
        create.token_ttl_ms = m->token_ttl_ms > 0 ? (uint64_t) m->token_ttl_ms : 0;
        create.n_labels = m->label_count;
        create.labels = lptrs;
        s_labels_out(m->labels, m->label_count, lstore, lptrs);
        lused += m->label_count;
        break;
    case PM_MSG_SETTLE:
        env.body_case = PMESH__ENVELOPE__BODY_SETTLE;
        env.settle = &settle;
        settle.id = s_str(m->id);
        settle.kind = (Pmesh__State) m->state;
        settle.value.data = (uint8_t *) m->value;
        settle.value.len = m->value ? m->value_len : 0;
        settle.reason = s_str(m->reason);
        break;
    case PM_MSG_HEARTBEAT:
    case PM_MSG_GET:
        env.body_case = m->type == PM_MSG_GET ? PMESH__ENVELOPE__BODY_GET
                                              : PMESH__ENVELOPE__BODY_HEARTBEAT;
        env.get = &target; /* same union slot type for both */
        target.id = s_str(m->id);
        break;
    case PM_MSG_AWAIT:
        env.body_case = PMESH__ENVELOPE__BODY_AWAIT;
        env.await = &await;
        await.id = s_str(m->id);
        await.timeout_ms = m->timeout_ms;
        await.final = m->final != 0;
        await.tentative_ok = m->tentative_ok != 0;
        await.tentative_states = m->tentative_states;
        break;
    case PM_MSG_THEN:
        env.body_case = PMESH__ENVELOPE__BODY_THEN;
        env.then = &then;
        then.id = s_str(m->id);
        then.function = s_str(m->function);
        then.new_id = s_str(m->new_id);
        then.timeout_ms = (uint64_t) m->timeout_ms;
        then.on_reject = s_str(m->on_reject);
        break;
    case PM_MSG_COMBINE:
        env.body_case = PMESH__ENVELOPE__BODY_COMBINE;
        env.combine = &combine;
        combine.kind = (Pmesh__Combinator) m->combinator;
        combine.n_ids = m->id_count;
        combine.ids = (char **) m->ids;
        combine.new_id = s_str(m->new_id);
        combine.timeout_ms = (uint64_t) m->timeout_ms;
        break;
    case PM_MSG_LIST:
        env.body_case = PMESH__ENVELOPE__BODY_LIST;
        env.list = &list;
        list.state = (Pmesh__State) m->state;
        list.prefix = s_str(m->prefix);
        list.limit = m->limit;
        list.cursor = s_str(m->cursor);
        if (m->label_count) {
            label.key = s_str(m->labels[0].key);
            label.value = s_str(m->labels[0].value);
            list.label = &label;
        }
        break;
    case PM_MSG_STATUS:
    case PM_MSG_BYE:
        env.body_case = m->type == PM_MSG_STATUS ? PMESH__ENVELOPE__BODY_STATUS
                                                 : PMESH__ENVELOPE__BODY_BYE;
        env.status = &empty;
        break;
    case PM_MSG_REGISTER:
        env.body_case = PMESH__ENVELOPE__BODY_REGISTER;
        env.register_ = &reg;
        reg.n_functions = m->function_count;
        reg.functions = (char **) m->functions;
        reg.concurrency = m->concurrency;
        break;
    case PM_MSG_INVOKE:
        env.body_case = PMESH__ENVELOPE__BODY_INVOKE;
        env.invoke = &invoke;
        invoke.invocation_id = s_str(m->invocation_id);
        invoke.function = s_str(m->function);
        invoke.input.data = (uint8_t *) m->value;
        invoke.input.len = m->value ? m->value_len : 0;
        invoke.target_id = s_str(m->target_id);
        invoke.attempt = m->attempt;
        invoke.n_next = sptrs ? m->step_count : 0;
        invoke.next = sptrs;
        break;
    case PM_MSG_RESULT:
        env.body_case = PMESH__ENVELOPE__BODY_RESULT;
        env.result = &result;
        result.invocation_id = s_str(m->invocation_id);
        result.ok = m->ok != 0;
        result.value.data = (uint8_t *) m->value;
        result.value.len = m->value ? m->value_len : 0;
        result.reason = s_str(m->reason);
        result.target_id = s_str(m->target_id);
        result.n_started = sptrs ? m->step_count : 0;
        result.started = sptrs;
        break;
    case PM_MSG_MEMBERS:
        env.body_case = PMESH__ENVELOPE__BODY_MEMBERS;
        env.members = &empty;
        break;
    case PM_MSG_FORCE_OWNER:
        env.body_case = PMESH__ENVELOPE__BODY_FORCE_OWNER;
        env.force_owner = &force;
        force.space = s_str(m->space);
        force.accept_data_loss = m->accept_data_loss != 0;
        break;
    case PM_MSG_REPLICATE:
        env.body_case = PMESH__ENVELOPE__BODY_REPLICATE;
        env.replicate = &repl;
        repl.space = s_str(m->space);
        repl.epoch = m->epoch;
        repl.lsn = m->lsn;
        repl.full = m->full != 0;
        repl.stream = m->stream;
        repl.first = m->first;
        repl.xfer = m->xfer;
        repl.count = m->count;
        repl.n_records = m->record_count;
        if (s_bytes_out(m->records, m->record_count, &recs) != 0) {
            free(scratch);
            return NULL;
        }
        repl.records = recs;
        break;
    case PM_MSG_BATCH:
        env.body_case = PMESH__ENVELOPE__BODY_BATCH;
        env.batch = &batch;
        batch.n_frames = m->record_count;
        if (s_bytes_out(m->records, m->record_count, &recs) != 0) {
            free(scratch);
            return NULL;
        }
        batch.frames = recs;
        break;
    case PM_MSG_REPLICATE_ACK:
        env.body_case = PMESH__ENVELOPE__BODY_REPLICATE_ACK;
        env.replicate_ack = &rack;
        rack.space = s_str(m->space);
        rack.lsn = m->lsn;
        rack.fenced = m->fenced != 0;
        rack.epoch = m->epoch;
        rack.resync = m->resync != 0;
        rack.stream = m->stream;
        break;
    case PM_MSG_SWIM: {
        buf_len = s_swim_out(m->swim, &env, &scratch_swim);
        if (buf_len < 0) {
            free(scratch);
            return NULL;
        }
        break;
    }
    case PM_MSG_PING:
        env.body_case = PMESH__ENVELOPE__BODY_PING;
        env.ping = &ping;
        ping.session = m->session;
        break;
    case PM_MSG_REPLY:
        env.body_case = PMESH__ENVELOPE__BODY_REPLY;
        env.reply = &reply;
        reply.err = m->err;
        reply.message = s_str(m->message);
        reply.id = s_str(m->id);
        reply.cursor = s_str(m->cursor);
        reply.json = s_str(m->json);
        reply.node = s_str(m->node);
        reply.mint_prefix = s_str(m->mint_prefix);
        reply.session = m->session;
        reply.created = m->created != 0;
        reply.tentative = m->tentative != 0;
        reply.max_value = m->max_value;
        reply.client_timeout_ms = m->client_timeout_ms;
        reply.stats.data = (uint8_t *) m->stats.data;
        reply.stats.len = m->stats.len;
        reply.token = s_str(m->token);
        if (m->promise) {
            s_promise_out(m->promise, &one, lstore + lused, lptrs + lused);
            lused += m->promise->label_count;
            reply.promise = &one;
        }
        reply.n_promises = m->promise_count;
        reply.promises = pptrs;
        for (size_t i = 0; i < m->promise_count; i++) {
            s_promise_out(&m->promises[i], &pstore[i], lstore + lused, lptrs + lused);
            lused += m->promises[i].label_count;
            pptrs[i] = &pstore[i];
        }
        break;
    default:
        free(scratch);
        free(sstore);
        return NULL;
    }
    (void) buf_len;
    size_t n = pmesh__envelope__get_packed_size(&env);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf)
        *len = pmesh__envelope__pack(&env, buf);
    free(scratch);
    free(scratch_swim);
    free(sstore);
    free(recs);
    return buf;
}

/* ---- decode --------------------------------------------------------------- */

/* Zeroed memory from the message's arena, freed with it. */
static void *
s_alloc(s_priv_t *pv, size_t bytes)
{
    size_t a = _Alignof(max_align_t);
    size_t n = (bytes + a - 1) & ~(a - 1);
    if (n < bytes)
        return NULL;
    if (pv->cap - pv->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        s_chunk_t *c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = pv->chunks;
        pv->chunks = c;
        pv->cur = (unsigned char *) c->mem;
        pv->cap = cap;
        pv->used = 0;
    }
    void *p = pv->cur + pv->used;
    pv->used += n;
    return memset(p, 0, bytes);
}

static void *
s_pa_alloc(void *data, size_t bytes)
{
    return s_alloc(data, bytes);
}

static void
s_pa_free(void *data, void *p)
{
    (void) data;
    (void) p; /* the arena goes as a whole */
}

/* A fresh arena for one decoded message (NULL: out of memory). */
static s_priv_t *
s_priv_new(void)
{
    s_priv_t *pv = malloc(sizeof *pv);
    if (!pv)
        return NULL;
    pv->env = NULL;
    pv->meta = NULL;
    pv->rec = NULL;
    pv->pa = (ProtobufCAllocator){.alloc = s_pa_alloc, .free = s_pa_free, .allocator_data = pv};
    pv->chunks = NULL;
    pv->used = 0;
    pv->cap = sizeof pv->mem;
    pv->cur = pv->mem;
    return pv;
}

static void
s_priv_free(s_priv_t *pv)
{
    if (!pv)
        return;
    while (pv->chunks) {
        s_chunk_t *next = pv->chunks->next;
        free(pv->chunks);
        pv->chunks = next;
    }
    free(pv);
}

static int
s_name_ok(const char *s)
{
    return strlen(s) <= PM_WIRE_MAX_NAME;
}

static const char *
s_opt(const char *s)
{
    return s && *s ? s : NULL;
}

static int
s_labels_in(s_priv_t *pv, Pmesh__Label **in, size_t n, const pm_label_t **out)
{
    if (n > S_MAX_LABELS)
        return -1;
    pm_label_t *l = s_alloc(pv, n * sizeof *l);
    if (!l)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!s_name_ok(in[i]->key) || !s_name_ok(in[i]->value))
            return -1;
        l[i].key = in[i]->key;
        l[i].value = in[i]->value;
    }
    *out = l;
    return 0;
}

/* Chained continuations of an invoke (full: every field named) or those
 * started on a result (target and invocation id). */
static int
s_steps_in(s_priv_t *pv, Pmesh__ChainStep **in, size_t n, int full, pm_msg_t *m)
{
    if (n > PM_WIRE_MAX_STEPS)
        return -1;
    pm_wire_step_t *st = n ? s_alloc(pv, n * sizeof *st) : NULL;
    if (n && !st)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const Pmesh__ChainStep *c = in[i];
        if (!*c->target_id || !*c->invocation_id || !s_name_ok(c->target_id) ||
            !s_name_ok(c->invocation_id) || !s_name_ok(c->source) || !s_name_ok(c->function) ||
            (full && (!*c->source || !*c->function)))
            return -1;
        st[i] = (pm_wire_step_t){.source = s_opt(c->source), .function = s_opt(c->function),
                                 .target_id = c->target_id, .invocation_id = c->invocation_id};
    }
    m->steps = st;
    m->step_count = n;
    return 0;
}

static int
s_promise_in(s_priv_t *pv, const Pmesh__Promise *in, pm_wire_promise_t *out)
{
    out->id = in->id;
    out->state = in->state;
    out->value = in->value.data;
    out->value_len = in->value.len;
    out->reason = in->reason;
    out->created_ms = (int64_t) in->created_ms;
    out->settled_ms = (int64_t) in->settled_ms;
    out->timeout_at_ms = (int64_t) in->timeout_at_ms;
    out->heartbeat_ms = (int64_t) in->heartbeat_ms;
    out->heartbeat_at_ms = (int64_t) in->heartbeat_at_ms;
    out->key = in->idempotency_key;
    out->label_count = in->n_labels;
    return s_labels_in(pv, in->labels, in->n_labels, &out->labels);
}

static int
s_swim_in(s_priv_t *pv, const Pmesh__Swim *in, pm_msg_t *m)
{
    if (in->n_updates > PM_SWIM_MAX_MEMBERS || !s_name_ok(in->from_name) ||
        !s_name_ok(in->from_endpoint) || !s_name_ok(in->target_name) ||
        !s_name_ok(in->target_endpoint))
        return -1;
    pm_swim_msg_t *sw = s_alloc(pv, sizeof *sw);
    pm_swim_update_t *us = s_alloc(pv, in->n_updates * sizeof *us);
    if (!sw || !us)
        return -1;
    sw->type = (pm_swim_msg_type_t) in->type;
    sw->from_name = in->from_name;
    sw->from_endpoint = in->from_endpoint;
    sw->from_incarnation = in->from_incarnation;
    sw->seq = in->seq;
    sw->target_name = in->target_name;
    sw->target_endpoint = in->target_endpoint;
    for (size_t i = 0; i < in->n_updates; i++) {
        const Pmesh__SwimUpdate *u = in->updates[i];
        if (!s_name_ok(u->name) || !s_name_ok(u->endpoint) || !s_name_ok(u->from) ||
            u->meta.len > PM_SWIM_META_MAX)
            return -1;
        us[i].name = u->name;
        us[i].endpoint = u->endpoint;
        us[i].incarnation = u->incarnation;
        us[i].state = (pm_swim_state_t) u->state;
        us[i].meta = u->meta.data;
        us[i].meta_len = u->meta.len;
        us[i].from = u->from;
    }
    sw->update_count = in->n_updates;
    sw->updates = us;
    m->swim = sw;
    return 0;
}

/* m->records from protobuf-c's binary fields (borrowed from the arena). */
static int
s_bytes_in(s_priv_t *pv, const ProtobufCBinaryData *in, size_t n, pm_msg_t *m)
{
    pm_bytes_t *b = s_alloc(pv, n * sizeof *b);
    if (!b && n)
        return -1;
    for (size_t i = 0; i < n; i++)
        b[i] = (pm_bytes_t){.data = in[i].data, .len = in[i].len};
    m->records = b;
    m->record_count = n;
    return 0;
}

static int
s_decode_body(s_priv_t *pv, const Pmesh__Envelope *env, pm_msg_t *m)
{
    switch (env->body_case) {
    case PMESH__ENVELOPE__BODY_HELLO:
        m->type = PM_MSG_HELLO;
        m->client_name = env->hello->client_name;
        m->batches = env->hello->batches;
        return s_name_ok(m->client_name) ? 0 : -1;
    case PMESH__ENVELOPE__BODY_CREATE:
        m->type = PM_MSG_CREATE;
        m->id = s_opt(env->create->id);
        m->timeout_ms = (int64_t) env->create->timeout_ms;
        m->heartbeat_ms = (int64_t) env->create->heartbeat_ms;
        m->key = s_opt(env->create->idempotency_key);
        m->want_token = env->create->want_token;
        /* capped at ~292 years so that the arithmetic below cannot wrap */
        m->token_ttl_ms = env->create->token_ttl_ms > (uint64_t) INT64_MAX / 1000
                              ? INT64_MAX / 1000
                              : (int64_t) env->create->token_ttl_ms;
        m->label_count = env->create->n_labels;
        if (m->timeout_ms < 0 || m->heartbeat_ms < 0)
            return -1;
        if ((m->id && !s_name_ok(m->id)) || (m->key && !s_name_ok(m->key)))
            return -1;
        return s_labels_in(pv, env->create->labels, env->create->n_labels, &m->labels);
    case PMESH__ENVELOPE__BODY_SETTLE:
        m->type = PM_MSG_SETTLE;
        m->id = env->settle->id;
        m->state = env->settle->kind;
        m->value = env->settle->value.data;
        m->value_len = env->settle->value.len;
        m->reason = env->settle->reason;
        return s_name_ok(m->id) ? 0 : -1;
    case PMESH__ENVELOPE__BODY_HEARTBEAT:
        m->type = PM_MSG_HEARTBEAT;
        m->id = env->heartbeat->id;
        return s_name_ok(m->id) ? 0 : -1;
    case PMESH__ENVELOPE__BODY_GET:
        m->type = PM_MSG_GET;
        m->id = env->get->id;
        return s_name_ok(m->id) ? 0 : -1;
    case PMESH__ENVELOPE__BODY_AWAIT:
        m->type = PM_MSG_AWAIT;
        m->id = env->await->id;
        m->timeout_ms = env->await->timeout_ms;
        m->final = env->await->final != 0;
        m->tentative_ok = env->await->tentative_ok != 0;
        m->tentative_states = env->await->tentative_states;
        return s_name_ok(m->id) ? 0 : -1;
    case PMESH__ENVELOPE__BODY_THEN:
        m->type = PM_MSG_THEN;
        m->id = env->then->id;
        m->function = env->then->function;
        m->new_id = s_opt(env->then->new_id);
        m->timeout_ms = (int64_t) env->then->timeout_ms;
        m->on_reject = s_opt(env->then->on_reject);
        if (m->timeout_ms < 0)
            return -1;
        return s_name_ok(m->id) && s_name_ok(m->function) &&
                       (!m->new_id || s_name_ok(m->new_id)) &&
                       (!m->on_reject || s_name_ok(m->on_reject))
                   ? 0
                   : -1;
    case PMESH__ENVELOPE__BODY_COMBINE:
        m->type = PM_MSG_COMBINE;
        m->combinator = (int) env->combine->kind;
        m->id_count = env->combine->n_ids;
        m->ids = (const char *const *) env->combine->ids;
        m->new_id = s_opt(env->combine->new_id);
        m->timeout_ms = (int64_t) env->combine->timeout_ms;
        if (m->timeout_ms < 0 || m->id_count > PM_WIRE_MAX_IDS ||
            (m->new_id && !s_name_ok(m->new_id)))
            return -1;
        for (size_t i = 0; i < m->id_count; i++)
            if (!s_name_ok(m->ids[i]))
                return -1;
        return 0;
    case PMESH__ENVELOPE__BODY_LIST:
        m->type = PM_MSG_LIST;
        m->state = env->list->state;
        m->prefix = s_opt(env->list->prefix);
        m->limit = env->list->limit;
        m->cursor = s_opt(env->list->cursor);
        if ((m->prefix && !s_name_ok(m->prefix)) ||
            (m->cursor && strlen(m->cursor) > PM_WIRE_MAX_NAME + 32))
            return -1;
        if (env->list->label) {
            m->label_count = 1;
            Pmesh__Label *one[1] = {env->list->label};
            return s_labels_in(pv, one, 1, &m->labels);
        }
        return 0;
    case PMESH__ENVELOPE__BODY_STATUS:
        m->type = PM_MSG_STATUS;
        return 0;
    case PMESH__ENVELOPE__BODY_BYE:
        m->type = PM_MSG_BYE;
        return 0;
    case PMESH__ENVELOPE__BODY_REGISTER:
        m->type = PM_MSG_REGISTER;
        m->function_count = env->register_->n_functions;
        m->functions = (const char *const *) env->register_->functions;
        m->concurrency = env->register_->concurrency;
        if (m->function_count > S_MAX_FUNCTIONS)
            return -1;
        for (size_t i = 0; i < m->function_count; i++)
            if (!s_name_ok(m->functions[i]))
                return -1;
        return 0;
    case PMESH__ENVELOPE__BODY_INVOKE:
        m->type = PM_MSG_INVOKE;
        m->invocation_id = env->invoke->invocation_id;
        m->function = env->invoke->function;
        m->value = env->invoke->input.data;
        m->value_len = env->invoke->input.len;
        m->target_id = env->invoke->target_id;
        m->attempt = env->invoke->attempt;
        if (s_steps_in(pv, env->invoke->next, env->invoke->n_next, 1, m) != 0)
            return -1;
        return s_name_ok(m->invocation_id) && s_name_ok(m->function) && s_name_ok(m->target_id)
                   ? 0
                   : -1;
    case PMESH__ENVELOPE__BODY_RESULT:
        m->type = PM_MSG_RESULT;
        m->invocation_id = env->result->invocation_id;
        m->ok = env->result->ok;
        m->value = env->result->value.data;
        m->value_len = env->result->value.len;
        m->reason = env->result->reason;
        m->target_id = s_opt(env->result->target_id);
        if (s_steps_in(pv, env->result->started, env->result->n_started, 0, m) != 0)
            return -1;
        return s_name_ok(m->invocation_id) && (!m->target_id || s_name_ok(m->target_id)) ? 0
                                                                                       : -1;
    case PMESH__ENVELOPE__BODY_MEMBERS:
        m->type = PM_MSG_MEMBERS;
        return 0;
    case PMESH__ENVELOPE__BODY_FORCE_OWNER:
        m->type = PM_MSG_FORCE_OWNER;
        m->space = env->force_owner->space;
        m->accept_data_loss = env->force_owner->accept_data_loss;
        return s_name_ok(m->space) && *m->space ? 0 : -1;
    case PMESH__ENVELOPE__BODY_REPLICATE: {
        const Pmesh__Replicate *r = env->replicate;
        m->type = PM_MSG_REPLICATE;
        m->space = r->space;
        m->epoch = r->epoch;
        m->lsn = r->lsn;
        m->full = r->full;
        m->stream = r->stream;
        m->first = r->first;
        m->xfer = r->xfer;
        m->count = r->count;
        if (!s_name_ok(m->space) || !*m->space)
            return -1;
        return s_bytes_in(pv, r->records, r->n_records, m);
    }
    case PMESH__ENVELOPE__BODY_BATCH:
        m->type = PM_MSG_BATCH;
        return s_bytes_in(pv, env->batch->frames, env->batch->n_frames, m);
    case PMESH__ENVELOPE__BODY_REPLICATE_ACK:
        m->type = PM_MSG_REPLICATE_ACK;
        m->space = env->replicate_ack->space;
        m->lsn = env->replicate_ack->lsn;
        m->fenced = env->replicate_ack->fenced;
        m->epoch = env->replicate_ack->epoch;
        m->resync = env->replicate_ack->resync;
        m->stream = env->replicate_ack->stream;
        return s_name_ok(m->space) ? 0 : -1;
    case PMESH__ENVELOPE__BODY_SWIM:
        m->type = PM_MSG_SWIM;
        return s_swim_in(pv, env->swim, m);
    case PMESH__ENVELOPE__BODY_PING:
        m->type = PM_MSG_PING;
        m->session = env->ping->session;
        return 0;
    case PMESH__ENVELOPE__BODY_REPLY: {
        const Pmesh__Reply *r = env->reply;
        m->type = PM_MSG_REPLY;
        m->err = r->err;
        m->message = r->message;
        m->id = s_opt(r->id);
        m->cursor = r->cursor;
        m->json = r->json;
        m->node = r->node;
        m->mint_prefix = r->mint_prefix;
        m->session = r->session;
        m->created = r->created;
        m->tentative = r->tentative;
        m->max_value = r->max_value;
        m->client_timeout_ms = r->client_timeout_ms;
        m->token = s_opt(r->token);
        m->stats = (pm_bytes_t){r->stats.data, r->stats.len};
        if (r->promise) {
            pm_wire_promise_t *p = s_alloc(pv, sizeof *p);
            if (!p || s_promise_in(pv, r->promise, p) != 0)
                return -1;
            m->promise = p;
        }
        if (r->n_promises) {
            pm_wire_promise_t *ps = s_alloc(pv, r->n_promises * sizeof *ps);
            if (!ps)
                return -1;
            for (size_t i = 0; i < r->n_promises; i++)
                if (s_promise_in(pv, r->promises[i], &ps[i]) != 0)
                    return -1;
            m->promises = ps;
            m->promise_count = r->n_promises;
        }
        return 0;
    }
    default:
        return -1;
    }
}

int
pm_wire_decode(const void *buf, size_t len, pm_msg_t *m)
{
    memset(m, 0, sizeof *m);
    if (len > PM_WIRE_MAX_FRAME)
        return PM_ERR_BAD_REQUEST;
    s_priv_t *pv = s_priv_new();
    if (!pv)
        return PM_ERR_INTERNAL;
    Pmesh__Envelope *env = pmesh__envelope__unpack(&pv->pa, len, buf);
    if (!env) {
        s_priv_free(pv);
        return PM_ERR_BAD_REQUEST;
    }
    pv->env = env;
    m->priv = pv;
    m->req_id = env->req_id;
    m->from = env->from && *env->from ? env->from : NULL;
    if (m->from && !s_name_ok(m->from))
        return PM_ERR_BAD_REQUEST;
    if (env->version != PM_WIRE_VERSION)
        return PM_ERR_BAD_VERSION;
    if (s_decode_body(pv, env, m) != 0)
        return PM_ERR_BAD_REQUEST;
    return PM_OK;
}

pm_wire_step_t *
pm_wire_steps_copy(const pm_wire_step_t *in, size_t n)
{
    size_t bytes = n * sizeof *in;
    for (size_t i = 0; i < n; i++) {
        const char *f[4] = {in[i].source, in[i].function, in[i].target_id, in[i].invocation_id};
        for (int k = 0; k < 4; k++)
            bytes += f[k] ? strlen(f[k]) + 1 : 0;
    }
    pm_wire_step_t *out = malloc(bytes ? bytes : 1);
    if (!out)
        return NULL;
    char *at = (char *) (out + n);
    for (size_t i = 0; i < n; i++) {
        const char *f[4] = {in[i].source, in[i].function, in[i].target_id, in[i].invocation_id};
        const char *g[4] = {NULL, NULL, NULL, NULL};
        for (int k = 0; k < 4; k++) {
            if (!f[k])
                continue;
            size_t len = strlen(f[k]) + 1;
            memcpy(at, f[k], len);
            g[k] = at;
            at += len;
        }
        out[i] = (pm_wire_step_t){.source = g[0], .function = g[1], .target_id = g[2],
                                  .invocation_id = g[3]};
    }
    return out;
}

void
pm_wire_release(pm_msg_t *m)
{
    s_priv_free(m->priv);
    m->priv = NULL;
}

/* ---- member metadata ------------------------------------------------------ */

uint8_t *
pm_wire_meta_encode(const pm_meta_t *in, size_t *len)
{
    Pmesh__Meta meta = PMESH__META__INIT;
    meta.id_space = s_str(in->id_space);
    Pmesh__FunctionCap *caps = calloc(in->fn_count + 1, sizeof *caps);
    Pmesh__FunctionCap **ptrs = calloc(in->fn_count + 1, sizeof *ptrs);
    uint8_t *buf = NULL;
    if (!caps || !ptrs)
        goto out;
    for (size_t i = 0; i < in->fn_count; i++) {
        pmesh__function_cap__init(&caps[i]);
        caps[i].name = s_str(in->fns[i].name);
        caps[i].free = in->fns[i].free;
        caps[i].total = in->fns[i].total;
        ptrs[i] = &caps[i];
    }
    meta.n_functions = in->fn_count;
    meta.functions = ptrs;
    meta.n_spaces = in->space_count;
    meta.spaces = (char **) in->spaces;
    meta.n_epochs = in->epochs ? in->space_count : 0;
    meta.epochs = (uint64_t *) in->epochs;
    meta.n_backups = in->backup_count;
    meta.backups = (char **) in->backups;
    meta.n_backup_spaces = in->backup_spaces ? in->backup_count : 0;
    meta.backup_spaces = (char **) in->backup_spaces;
    size_t n = pmesh__meta__get_packed_size(&meta);
    buf = malloc(n ? n : 1);
    if (buf)
        *len = pmesh__meta__pack(&meta, buf);
out:
    free(caps);
    free(ptrs);
    return buf;
}

int
pm_wire_meta_decode(const void *buf, size_t len, pm_meta_t *out)
{
    memset(out, 0, sizeof *out);
    s_priv_t *pv = s_priv_new();
    if (!pv)
        return PM_ERR_INTERNAL;
    Pmesh__Meta *meta = pmesh__meta__unpack(&pv->pa, len, buf);
    if (!meta) {
        s_priv_free(pv);
        return PM_ERR_BAD_REQUEST;
    }
    pv->meta = meta;
    out->priv = pv;
    if (!s_name_ok(meta->id_space) || meta->n_functions > S_MAX_FUNCTIONS * 4 ||
        meta->n_spaces > S_MAX_SPACES)
        return PM_ERR_BAD_REQUEST;
    pm_fn_cap_t *fns = s_alloc(pv, meta->n_functions * sizeof *fns);
    if (!fns)
        return PM_ERR_INTERNAL;
    for (size_t i = 0; i < meta->n_functions; i++) {
        if (!s_name_ok(meta->functions[i]->name))
            return PM_ERR_BAD_REQUEST;
        fns[i].name = meta->functions[i]->name;
        fns[i].free = meta->functions[i]->free;
        fns[i].total = meta->functions[i]->total;
    }
    for (size_t i = 0; i < meta->n_spaces; i++)
        if (!s_name_ok(meta->spaces[i]))
            return PM_ERR_BAD_REQUEST;
    out->id_space = meta->id_space;
    out->fns = fns;
    out->fn_count = meta->n_functions;
    out->spaces = (const char *const *) meta->spaces;
    out->space_count = meta->n_spaces;
    out->epochs = meta->n_epochs == meta->n_spaces ? meta->epochs : NULL;
    if (meta->n_backups > S_MAX_FUNCTIONS)
        return PM_ERR_BAD_REQUEST;
    for (size_t i = 0; i < meta->n_backups; i++)
        if (!s_name_ok(meta->backups[i]))
            return PM_ERR_BAD_REQUEST;
    out->backups = (const char *const *) meta->backups;
    out->backup_count = meta->n_backups;
    if (meta->n_backup_spaces == meta->n_backups && meta->n_backups) {
        for (size_t i = 0; i < meta->n_backup_spaces; i++)
            if (!s_name_ok(meta->backup_spaces[i]))
                return PM_ERR_BAD_REQUEST;
        out->backup_spaces = (const char *const *) meta->backup_spaces;
    }
    return PM_OK;
}


void
pm_wire_meta_release(pm_meta_t *meta)
{
    s_priv_free(meta->priv);
    meta->priv = NULL;
}


/* ---- records -------------------------------------------------------------- */

uint8_t *
pm_wire_rec_encode(const pm_rec_t *in, size_t *len)
{
    Pmesh__Record rec = PMESH__RECORD__INIT;
    Pmesh__Promise p = PMESH__PROMISE__INIT;
    size_t nl = in->promise.label_count;
    /* Most records carry a few labels or none (every WAL record and every
     * replicated one goes through here): those on the stack. */
    Pmesh__Label ls_few[8], *lp_few[8];
    int few = nl <= 8;
    Pmesh__Label *ls = few ? ls_few : calloc(nl + 1, sizeof *ls);
    Pmesh__Label **lp = few ? lp_few : calloc(nl + 1, sizeof *lp);
    uint8_t *buf = NULL;
    if (!ls || !lp)
        goto out;
    rec.kind = (uint32_t) in->kind;
    if (in->promise.id) {
        s_promise_out(&in->promise, &p, ls, lp);
        rec.promise = &p;
    }
    rec.function = s_str(in->function);
    rec.target = s_str(in->target);
    rec.generation = in->generation;
    rec.space = s_str(in->space);
    rec.epoch = in->epoch;
    rec.on_reject = s_str(in->on_reject);
    rec.combinator = (Pmesh__Combinator) in->combinator;
    rec.n_inputs = in->input_count;
    rec.inputs = (char **) in->inputs;
    size_t n = pmesh__record__get_packed_size(&rec);
    buf = malloc(n ? n : 1);
    if (buf)
        *len = pmesh__record__pack(&rec, buf);
out:
    if (!few) {
        free(ls);
        free(lp);
    }
    return buf;
}

int
pm_wire_rec_decode(const void *buf, size_t len, pm_rec_t *out)
{
    memset(out, 0, sizeof *out);
    s_priv_t *pv = s_priv_new();
    if (!pv)
        return PM_ERR_INTERNAL;
    Pmesh__Record *rec = pmesh__record__unpack(&pv->pa, len, buf);
    if (!rec) {
        s_priv_free(pv);
        return PM_ERR_BAD_REQUEST;
    }
    pv->rec = rec;
    out->priv = pv;
    out->kind = (int) rec->kind;
    out->function = s_opt(rec->function);
    out->target = s_opt(rec->target);
    out->generation = rec->generation;
    out->space = s_opt(rec->space);
    out->epoch = rec->epoch;
    out->on_reject = s_opt(rec->on_reject);
    out->combinator = (int) rec->combinator;
    out->input_count = rec->n_inputs;
    out->inputs = (const char *const *) rec->inputs;
    if (out->kind < PM_REC_CREATE || out->kind > PM_REC_COMBINE)
        return PM_ERR_BAD_REQUEST;
    if (out->kind == PM_REC_RELEASE && (!out->space || !s_name_ok(out->space)))
        return PM_ERR_BAD_REQUEST;
    if (rec->promise && s_promise_in(pv, rec->promise, &out->promise) != 0)
        return PM_ERR_BAD_REQUEST;
    if (out->kind != PM_REC_GENERATION && out->kind != PM_REC_RELEASE &&
        (!rec->promise || !*rec->promise->id))
        return PM_ERR_BAD_REQUEST;
    if (out->kind == PM_REC_THEN && (!out->function || !out->target))
        return PM_ERR_BAD_REQUEST;
    if (out->kind == PM_REC_GENERATION && out->target && !s_name_ok(out->target))
        return PM_ERR_BAD_REQUEST;
    if (out->kind == PM_REC_COMBINE &&
        (out->combinator < 1 || out->combinator > 4 || !out->input_count ||
         out->input_count > PM_WIRE_MAX_IDS))
        return PM_ERR_BAD_REQUEST;
    for (size_t i = 0; i < out->input_count; i++)
        if (!s_name_ok(out->inputs[i]) || !*out->inputs[i])
            return PM_ERR_BAD_REQUEST;
    return PM_OK;
}

void
pm_wire_rec_release(pm_rec_t *rec)
{
    s_priv_free(rec->priv);
    rec->priv = NULL;
}
