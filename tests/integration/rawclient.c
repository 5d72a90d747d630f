/*
 * rawclient.c - a raw ZeroMQ DEALER client for test_badinput.sh: speaks the
 * envelope through the generated protobuf-c code (not libpmesh), so it can
 * send what no well-behaved client would. Each command runs one scenario
 * against the agent at SOCK and prints TAP-like lines ("ok - ...",
 * "not ok - ...", "# ...") that the script counts, plus "key value" lines
 * for numbers the script checks against `pmesh status`.
 *
 *   rawclient SOCK bad-frames          malformed input of every kind
 *   rawclient SOCK oversize MAXVAL     values at and over max_value_bytes,
 *                                      and a frame over ZMQ_MAXMSGSIZE
 *   rawclient SOCK await ID N VALUE    N awaits on ID; exits when all are
 *                                      answered with VALUE
 *   rawclient SOCK vanish ID           session with keep-alive, await, gone
 *   rawclient SOCK worker              a worker answering twice, answering
 *                                      what it does not hold, and answering
 *                                      with req_id 0 (no acknowledgement)
 *   rawclient SOCK huge-timeouts       durations of INT64_MAX ms
 *   rawclient SOCK batches             a client that takes batches gets a
 *                                      pipelined burst's replies in fewer
 *                                      frames, in order; one that did not
 *                                      say so, one frame each; a Batch from
 *                                      a client is refused
 *
 * Exit status: 0 if every check passed, 1 otherwise, 2 on usage errors.
 */
#include "pmesh.pb-c.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_VERSION 1
#define S_ERR_NOT_FOUND (-2)
#define S_ERR_VALUE_TOO_LARGE (-5)
#define S_ERR_BAD_REQUEST (-6)
#define S_ERR_BAD_VERSION (-10)
#define S_ERR_NOT_HOLDER (-11)

static int s_failed;
static void *s_ctx;

static void
s_check(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf(cond ? "ok - " : "not ok - ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    if (!cond)
        s_failed = 1;
}

static void
s_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

static void *
s_connect(const char *path)
{
    void *s = zmq_socket(s_ctx, ZMQ_DEALER);
    int zero = 0, hwm = 100000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    char ep[4200];
    snprintf(ep, sizeof ep, "ipc://%s", path);
    if (zmq_connect(s, ep) != 0) {
        fprintf(stderr, "rawclient: connect %s: %s\n", ep, zmq_strerror(zmq_errno()));
        exit(2);
    }
    return s;
}

static void
s_send_bytes(void *s, const void *buf, size_t len, int flags)
{
    if (zmq_send(s, buf, len, flags) < 0) {
        fprintf(stderr, "rawclient: send: %s\n", zmq_strerror(zmq_errno()));
        exit(2);
    }
}

/* Packs env (version S_VERSION unless set) into a malloc'd buffer. */
static uint8_t *
s_pack(const Pmesh__Envelope *env, size_t *len)
{
    *len = pmesh__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    pmesh__envelope__pack(env, buf);
    return buf;
}

static void
s_send_env(void *s, const Pmesh__Envelope *env)
{
    size_t len;
    uint8_t *buf = s_pack(env, &len);
    s_send_bytes(s, buf, len, 0);
    free(buf);
}

/* Next envelope within timeout_ms, or NULL. Caller frees with
 * pmesh__envelope__free_unpacked. An undecodable reply is a failure. */
static Pmesh__Envelope *
s_recv(void *s, int timeout_ms)
{
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, s, 0) < 0) {
        zmq_msg_close(&msg);
        return NULL;
    }
    Pmesh__Envelope *env = pmesh__envelope__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
    int more = zmq_msg_more(&msg);
    zmq_msg_close(&msg);
    if (!env || more)
        s_check(0, "agent's frame decodes as one envelope");
    return env;
}

/* The reply to req_id (other messages are dropped), or NULL after timeout_ms. */
static Pmesh__Reply *
s_reply_to(void *s, uint64_t req_id, int timeout_ms, Pmesh__Envelope **env_p)
{
    for (;;) {
        Pmesh__Envelope *env = s_recv(s, timeout_ms);
        if (!env)
            return NULL;
        if (env->req_id == req_id && env->body_case == PMESH__ENVELOPE__BODY_REPLY) {
            *env_p = env;
            return env->reply;
        }
        s_note("dropping a message (req_id %llu, body %d) while waiting for %llu",
               (unsigned long long) env->req_id, (int) env->body_case,
               (unsigned long long) req_id);
        pmesh__envelope__free_unpacked(env, NULL);
    }
}

/* ---- requests ---------------------------------------------------------------- */

static Pmesh__Envelope
s_env(uint64_t req_id)
{
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = S_VERSION;
    env.req_id = req_id;
    return env;
}

static void
s_send_get(void *s, uint64_t req_id, const char *id)
{
    Pmesh__Envelope env = s_env(req_id);
    Pmesh__Target t = PMESH__TARGET__INIT;
    t.id = (char *) id;
    env.body_case = PMESH__ENVELOPE__BODY_GET;
    env.get = &t;
    s_send_env(s, &env);
}

/* Sends a get for a promise that does not exist and expects its NOT_FOUND
 * reply as the very next message: proves nothing else was answered since. */
static void
s_expect_next_is(void *s, uint64_t req_id, const char *what)
{
    s_send_get(s, req_id, "no-such-promise");
    Pmesh__Envelope *env = s_recv(s, 5000);
    s_check(env && env->req_id == req_id && env->body_case == PMESH__ENVELOPE__BODY_REPLY &&
                env->reply->err == S_ERR_NOT_FOUND,
            "%s: no reply, and the agent still answers the next request", what);
    if (env)
        pmesh__envelope__free_unpacked(env, NULL);
}

/* Sends raw bytes and expects an error reply with err (and req_id if >= 0). */
static void
s_expect_error(void *s, const void *buf, size_t len, int err, long long req_id, const char *what)
{
    s_send_bytes(s, buf, len, 0);
    Pmesh__Envelope *env = s_recv(s, 5000);
    int ok = env && env->body_case == PMESH__ENVELOPE__BODY_REPLY && env->reply->err == err &&
             (req_id < 0 || env->req_id == (uint64_t) req_id) && env->version == S_VERSION;
    s_check(ok, "%s: reply err %d (got %d, req_id %llu)", what, err,
            env && env->body_case == PMESH__ENVELOPE__BODY_REPLY ? env->reply->err : 0,
            env ? (unsigned long long) env->req_id : 0ULL);
    if (env)
        pmesh__envelope__free_unpacked(env, NULL);
}

static char *
s_create(void *s, uint64_t req_id)
{
    Pmesh__Envelope env = s_env(req_id);
    Pmesh__Create c = PMESH__CREATE__INIT;
    env.body_case = PMESH__ENVELOPE__BODY_CREATE;
    env.create = &c;
    s_send_env(s, &env);
    Pmesh__Envelope *r = NULL;
    Pmesh__Reply *reply = s_reply_to(s, req_id, 5000, &r);
    char *id = reply && reply->err == 0 && *reply->id ? strdup(reply->id) : NULL;
    s_check(id != NULL, "create answers with an id");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    if (!id)
        exit(1);
    return id;
}

/* Settles id as resolved with value (or rejected with reason when value is
 * NULL) and returns the reply's err (1 if there was no reply). */
static int
s_settle(void *s, uint64_t req_id, const char *id, int kind, const uint8_t *value, size_t len,
         const char *reason)
{
    Pmesh__Envelope env = s_env(req_id);
    Pmesh__Settle st = PMESH__SETTLE__INIT;
    st.id = (char *) id;
    st.kind = kind;
    st.value.data = (uint8_t *) value;
    st.value.len = value ? len : 0;
    st.reason = (char *) (reason ? reason : "");
    env.body_case = PMESH__ENVELOPE__BODY_SETTLE;
    env.settle = &st;
    s_send_env(s, &env);
    Pmesh__Envelope *r = NULL;
    Pmesh__Reply *reply = s_reply_to(s, req_id, 10000, &r);
    int err = reply ? reply->err : 1;
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    return err;
}

/* ---- scenarios --------------------------------------------------------------- */

static int
s_bad_frames(const char *path)
{
    void *s = s_connect(path);
    int bad = 0;

    /* Garbage. */
    uint8_t junk[64];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < sizeof junk; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        junk[i] = (uint8_t) x;
    }
    junk[0] = 0x0f; /* field 1 with wire type 7: never valid */
    s_expect_error(s, junk, sizeof junk, S_ERR_BAD_REQUEST, -1, "garbage frame");
    bad++;

    /* A create cut in the middle of its body. */
    Pmesh__Envelope env = s_env(101);
    Pmesh__Create c = PMESH__CREATE__INIT;
    c.id = "whatever";
    c.idempotency_key = "a-key-long-enough-to-cut";
    env.body_case = PMESH__ENVELOPE__BODY_CREATE;
    env.create = &c;
    size_t len;
    uint8_t *buf = s_pack(&env, &len);
    s_expect_error(s, buf, len - 5, S_ERR_BAD_REQUEST, -1, "truncated frame");
    bad++;
    free(buf);

    /* Unknown body field numbers (40: length-delimited; 99: varint). */
    const uint8_t unknown[] = {0x08, 0x01, 0x10, 102, 0xc2, 0x02, 0x02, 0x08, 0x01};
    s_expect_error(s, unknown, sizeof unknown, S_ERR_BAD_REQUEST, 102, "unknown body field 40");
    bad++;
    const uint8_t unknown99[] = {0x08, 0x01, 0x10, 103, 0x98, 0x06, 0x05};
    s_expect_error(s, unknown99, sizeof unknown99, S_ERR_BAD_REQUEST, 103,
                   "unknown body field 99");
    bad++;

    /* Wrong envelope version: the reply says so and echoes the req_id. */
    env = s_env(104);
    env.version = 7;
    Pmesh__Target t = PMESH__TARGET__INIT;
    t.id = "x";
    env.body_case = PMESH__ENVELOPE__BODY_GET;
    env.get = &t;
    buf = s_pack(&env, &len);
    s_expect_error(s, buf, len, S_ERR_BAD_VERSION, 104, "envelope version 7");
    bad++;
    free(buf);

    /* No body at all. */
    env = s_env(105);
    buf = s_pack(&env, &len);
    s_expect_error(s, buf, len, S_ERR_BAD_REQUEST, 105, "envelope without a body");
    bad++;
    free(buf);

    /* An empty frame: version 0. */
    s_send_bytes(s, "", 0, 0);
    Pmesh__Envelope *r = s_recv(s, 5000);
    s_check(r && r->body_case == PMESH__ENVELOPE__BODY_REPLY &&
                (r->reply->err == S_ERR_BAD_REQUEST || r->reply->err == S_ERR_BAD_VERSION),
            "empty frame: error reply");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    bad++;

    /* Messages of two and of three frames: dropped without a reply. */
    env = s_env(106);
    env.body_case = PMESH__ENVELOPE__BODY_GET;
    env.get = &t;
    buf = s_pack(&env, &len);
    s_send_bytes(s, buf, len, ZMQ_SNDMORE);
    s_send_bytes(s, buf, len, 0);
    s_expect_next_is(s, 107, "two-frame message");
    bad++;
    s_send_bytes(s, buf, len, ZMQ_SNDMORE);
    s_send_bytes(s, buf, len, ZMQ_SNDMORE);
    s_send_bytes(s, buf, len, 0);
    s_expect_next_is(s, 108, "three-frame message");
    bad++;
    free(buf);

    /* Well-formed envelopes of kinds that never flow to the agent. */
    env = s_env(109);
    Pmesh__Reply rep = PMESH__REPLY__INIT;
    env.body_case = PMESH__ENVELOPE__BODY_REPLY;
    env.reply = &rep;
    buf = s_pack(&env, &len);
    s_expect_error(s, buf, len, S_ERR_BAD_REQUEST, 109, "a reply sent to the agent");
    bad++;
    free(buf);
    env = s_env(110);
    Pmesh__Invoke inv = PMESH__INVOKE__INIT;
    inv.invocation_id = "i";
    inv.function = "f";
    inv.target_id = "t";
    env.body_case = PMESH__ENVELOPE__BODY_INVOKE;
    env.invoke = &inv;
    buf = s_pack(&env, &len);
    s_expect_error(s, buf, len, S_ERR_BAD_REQUEST, 110, "an invoke sent to the agent");
    bad++;
    free(buf);

    /* An id longer than PM_WIRE_MAX_NAME (256). */
    char longid[301];
    memset(longid, 'L', 300);
    longid[300] = 0;
    env = s_env(111);
    Pmesh__Target lt = PMESH__TARGET__INIT;
    lt.id = longid;
    env.body_case = PMESH__ENVELOPE__BODY_GET;
    env.get = &lt;
    buf = s_pack(&env, &len);
    s_expect_error(s, buf, len, S_ERR_BAD_REQUEST, 111, "oversize id");
    bad++;
    free(buf);

    /* A settle with no outcome (kind 0), and a create with a forged id. */
    env = s_env(112);
    Pmesh__Settle st = PMESH__SETTLE__INIT;
    st.id = "x";
    env.body_case = PMESH__ENVELOPE__BODY_SETTLE;
    env.settle = &st;
    buf = s_pack(&env, &len);
    s_expect_error(s, buf, len, S_ERR_BAD_REQUEST, 112, "settle without an outcome");
    bad++;
    free(buf);
    env = s_env(113);
    Pmesh__Create forged = PMESH__CREATE__INIT;
    forged.id = "someone-else~c1-1";
    env.body_case = PMESH__ENVELOPE__BODY_CREATE;
    env.create = &forged;
    buf = s_pack(&env, &len);
    s_expect_error(s, buf, len, S_ERR_BAD_REQUEST, 113, "create with an id not minted here");
    bad++;
    free(buf);

    /* A burst of random garbage: every frame answered, in order. */
    enum { BURST = 300 };
    for (int i = 0; i < BURST; i++) {
        uint8_t g[96];
        size_t n = 8 + (size_t) (i % 80);
        for (size_t j = 0; j < n; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            g[j] = (uint8_t) x;
        }
        g[0] = 0x0f;
        s_send_bytes(s, g, n, 0);
    }
    int answered = 0, all_errors = 1;
    for (int i = 0; i < BURST; i++) {
        Pmesh__Envelope *e = s_recv(s, 5000);
        if (!e)
            break;
        answered++;
        if (e->body_case != PMESH__ENVELOPE__BODY_REPLY || e->reply->err != S_ERR_BAD_REQUEST)
            all_errors = 0;
        pmesh__envelope__free_unpacked(e, NULL);
    }
    s_check(answered == BURST && all_errors, "%d garbage frames: %d error replies", BURST,
            answered);
    bad += BURST;

    /* Still a working session: status answers. */
    env = s_env(114);
    Pmesh__Empty empty = PMESH__EMPTY__INIT;
    env.body_case = PMESH__ENVELOPE__BODY_STATUS;
    env.status = &empty;
    s_send_env(s, &env);
    Pmesh__Reply *reply = s_reply_to(s, 114, 5000, &r);
    s_check(reply && reply->err == 0 && strstr(reply->json, "\"bad_frames\""),
            "status after bad frames");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    printf("bad_frames %d\n", bad);
    zmq_close(s);
    return s_failed;
}

/* Sends a settle of id carrying len bytes of v, then probes with gets until
 * one is answered. must_drop: the settle itself must never be answered;
 * else it may be answered, but only with VALUE_TOO_LARGE. */
static void
s_big_frame(void *s, const char *id, const uint8_t *v, size_t len, int must_drop, const char *what)
{
    static uint64_t req = 1000;
    uint64_t big_req = ++req;
    Pmesh__Envelope env = s_env(big_req);
    Pmesh__Settle st = PMESH__SETTLE__INIT;
    st.id = (char *) id;
    st.kind = PMESH__STATE__RESOLVED;
    st.value.data = (uint8_t *) v;
    st.value.len = len;
    env.body_case = PMESH__ENVELOPE__BODY_SETTLE;
    env.settle = &st;
    s_send_env(s, &env);
    usleep(300 * 1000);
    int answered = 0, big_answered = 0, big_err = 0;
    for (int attempt = 0; attempt < 10 && !answered; attempt++) {
        uint64_t probe = ++req;
        s_send_get(s, probe, id);
        for (;;) {
            Pmesh__Envelope *e = s_recv(s, 1000);
            if (!e)
                break;
            if (e->req_id == big_req && e->body_case == PMESH__ENVELOPE__BODY_REPLY) {
                big_answered = 1;
                big_err = e->reply->err;
            }
            if (e->req_id == probe && e->body_case == PMESH__ENVELOPE__BODY_REPLY) {
                answered = e->reply->promise &&
                           e->reply->promise->state == PMESH__STATE__PENDING;
                pmesh__envelope__free_unpacked(e, NULL);
                break;
            }
            pmesh__envelope__free_unpacked(e, NULL);
        }
    }
    if (must_drop)
        s_check(!big_answered, "%s: dropped unanswered (ZMQ_MAXMSGSIZE)", what);
    else
        s_check(!big_answered || big_err == S_ERR_VALUE_TOO_LARGE,
                "%s: dropped, or refused with VALUE_TOO_LARGE (%s, err %d)", what,
                big_answered ? "answered" : "dropped", big_err);
    s_check(answered, "%s: promise still pending, and the agent answers after", what);
}

static int
s_oversize(const char *path, size_t maxval)
{
    void *s = s_connect(path);
    size_t huge = 8 * maxval + 128 * 1024;
    uint8_t *v = malloc(huge);
    for (size_t i = 0; i < huge; i++)
        v[i] = (uint8_t) (i * 31 + 7);
    char *a = s_create(s, 1);
    char *b = s_create(s, 2);
    char *big = s_create(s, 3);

    s_check(s_settle(s, 10, a, PMESH__STATE__RESOLVED, v, maxval + 1, NULL) ==
                S_ERR_VALUE_TOO_LARGE,
            "resolve with max_value_bytes + 1: VALUE_TOO_LARGE");
    char *reason = malloc(maxval + 2);
    memset(reason, 'r', maxval + 1);
    reason[maxval + 1] = 0;
    s_check(s_settle(s, 11, b, PMESH__STATE__REJECTED, NULL, 0, reason) == S_ERR_VALUE_TOO_LARGE,
            "reject with a reason of max_value_bytes + 1: VALUE_TOO_LARGE");
    free(reason);

    s_send_get(s, 12, a);
    Pmesh__Envelope *r = NULL;
    Pmesh__Reply *reply = s_reply_to(s, 12, 5000, &r);
    s_check(reply && reply->err == 0 && reply->promise &&
                reply->promise->state == PMESH__STATE__PENDING,
            "refused value left the promise pending");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);

    s_check(s_settle(s, 13, a, PMESH__STATE__RESOLVED, v, maxval, NULL) == 0,
            "resolve with exactly max_value_bytes: OK");
    s_send_get(s, 14, a);
    reply = s_reply_to(s, 14, 10000, &r);
    s_check(reply && reply->promise && reply->promise->state == PMESH__STATE__RESOLVED &&
                reply->promise->value.len == maxval &&
                memcmp(reply->promise->value.data, v, maxval) == 0,
            "the max-size value reads back intact");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);

    /* Frames over max_value_bytes + 64 KiB: one a little over (the agent may
     * read it and refuse it, or libzmq may cut it), one far over every
     * ZMQ_MAXMSGSIZE the agent could pick (libzmq must cut it and the
     * connection; the DEALER reconnects on its own). Either way the promise
     * stays pending and the agent keeps answering. */
    s_big_frame(s, big, v, maxval + 64 * 1024 + 4096, 0, "frame of max_value_bytes + 68 KiB");
    s_big_frame(s, big, v, huge, 1, "frame of 8 x max_value_bytes + 128 KiB");
    free(a);
    free(b);
    free(big);
    free(v);
    zmq_close(s);
    return s_failed;
}

static int
s_await(const char *path, const char *id, int n, const char *want)
{
    void *s = s_connect(path);
    for (int i = 1; i <= n; i++) {
        Pmesh__Envelope env = s_env((uint64_t) i);
        Pmesh__Await aw = PMESH__AWAIT__INIT;
        aw.id = (char *) id;
        aw.timeout_ms = -1;
        env.body_case = PMESH__ENVELOPE__BODY_AWAIT;
        env.await = &aw;
        s_send_env(s, &env);
    }
    /* One connection is ordered: once the get is answered, every await is
     * registered. */
    s_send_get(s, (uint64_t) n + 1, id);
    Pmesh__Envelope *r = NULL;
    Pmesh__Reply *reply = s_reply_to(s, (uint64_t) n + 1, 10000, &r);
    int pending = reply && reply->promise && reply->promise->state == PMESH__STATE__PENDING;
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    if (!pending) {
        s_check(0, "await: %s is pending before the awaits", id);
        return 1;
    }
    printf("registered %d\n", n);
    fflush(stdout);
    char *seen = calloc((size_t) n + 1, 1);
    int released = 0, right = 0;
    while (released < n) {
        Pmesh__Envelope *e = s_recv(s, 30000);
        if (!e)
            break;
        if (e->req_id >= 1 && e->req_id <= (uint64_t) n && !seen[e->req_id] &&
            e->body_case == PMESH__ENVELOPE__BODY_REPLY) {
            seen[e->req_id] = 1;
            released++;
            Pmesh__Promise *p = e->reply->promise;
            if (e->reply->err == 0 && p && p->state == PMESH__STATE__RESOLVED &&
                p->value.len == strlen(want) && memcmp(p->value.data, want, p->value.len) == 0)
                right++;
        }
        pmesh__envelope__free_unpacked(e, NULL);
    }
    s_check(released == n && right == n, "%d awaits on one connection: %d released, %d with %s",
            n, released, right, want);
    free(seen);
    zmq_close(s);
    return s_failed;
}

static int
s_vanish(const char *path, const char *id)
{
    void *s = s_connect(path);
    Pmesh__Envelope env = s_env(1);
    Pmesh__Hello hello = PMESH__HELLO__INIT;
    hello.client_name = "vanisher";
    env.body_case = PMESH__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    s_send_env(s, &env);
    Pmesh__Envelope *r = NULL;
    Pmesh__Reply *reply = s_reply_to(s, 1, 5000, &r);
    uint64_t session = reply ? reply->session : 0;
    s_check(session != 0, "hello: a session id");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    /* Keep-alive, as libpmesh's side thread would send it. */
    env = s_env(0);
    Pmesh__Ping ping = PMESH__PING__INIT;
    ping.session = session;
    env.body_case = PMESH__ENVELOPE__BODY_PING;
    env.ping = &ping;
    s_send_env(s, &env);
    env = s_env(2);
    Pmesh__Await aw = PMESH__AWAIT__INIT;
    aw.id = (char *) id;
    aw.timeout_ms = -1;
    env.body_case = PMESH__ENVELOPE__BODY_AWAIT;
    env.await = &aw;
    s_send_env(s, &env);
    s_send_get(s, 3, id);
    reply = s_reply_to(s, 3, 5000, &r);
    s_check(reply && reply->err == 0, "await registered, then gone without a bye");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    zmq_close(s);
    return s_failed;
}

static int
s_worker(const char *path)
{
    void *w = s_connect(path);
    void *c = s_connect(path);
    Pmesh__Envelope env = s_env(1);
    Pmesh__Register reg = PMESH__REGISTER__INIT;
    char *fns[1] = {"rawfn"};
    reg.n_functions = 1;
    reg.functions = fns;
    reg.concurrency = 1;
    env.body_case = PMESH__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    s_send_env(w, &env);
    Pmesh__Envelope *r = NULL;
    Pmesh__Reply *reply = s_reply_to(w, 1, 5000, &r);
    s_check(reply && reply->err == 0, "register a worker for rawfn");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);

    char *src = s_create(c, 10);
    env = s_env(11);
    Pmesh__Then then = PMESH__THEN__INIT;
    then.id = src;
    then.function = "rawfn";
    env.body_case = PMESH__ENVELOPE__BODY_THEN;
    env.then = &then;
    s_send_env(c, &env);
    reply = s_reply_to(c, 11, 5000, &r);
    char *target = reply && reply->err == 0 && *reply->id ? strdup(reply->id) : NULL;
    s_check(target != NULL, "then rawfn: a target id");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    if (!target)
        return 1;
    s_check(s_settle(c, 12, src, PMESH__STATE__RESOLVED, (const uint8_t *) "input", 5, NULL) == 0,
            "resolve the source");

    Pmesh__Envelope *ie = s_recv(w, 5000);
    Pmesh__Invoke *inv = ie && ie->body_case == PMESH__ENVELOPE__BODY_INVOKE ? ie->invoke : NULL;
    s_check(inv && !strcmp(inv->function, "rawfn") && !strcmp(inv->target_id, target) &&
                inv->input.len == 5 && !memcmp(inv->input.data, "input", 5) && inv->attempt == 1,
            "the worker gets the invocation with the source's value");
    if (!inv)
        return 1;
    char *inv_id = strdup(inv->invocation_id);
    pmesh__envelope__free_unpacked(ie, NULL);

    const char *values[2] = {"first", "second"};
    int want[2] = {0, S_ERR_NOT_HOLDER};
    for (int i = 0; i < 2; i++) {
        env = s_env(20 + (uint64_t) i);
        Pmesh__InvokeResult res = PMESH__INVOKE_RESULT__INIT;
        res.invocation_id = inv_id;
        res.ok = 1;
        res.value.data = (uint8_t *) values[i];
        res.value.len = strlen(values[i]);
        env.body_case = PMESH__ENVELOPE__BODY_RESULT;
        env.result = &res;
        s_send_env(w, &env);
        reply = s_reply_to(w, 20 + (uint64_t) i, 5000, &r);
        s_check(reply && reply->err == want[i], "result #%d: err %d (got %d)", i + 1, want[i],
                reply ? reply->err : 1);
        if (r)
            pmesh__envelope__free_unpacked(r, NULL);
    }
    env = s_env(22);
    Pmesh__InvokeResult res = PMESH__INVOKE_RESULT__INIT;
    res.invocation_id = "nobody~i1";
    res.ok = 0;
    res.reason = "not mine";
    env.body_case = PMESH__ENVELOPE__BODY_RESULT;
    env.result = &res;
    s_send_env(w, &env);
    reply = s_reply_to(w, 22, 5000, &r);
    s_check(reply && reply->err == S_ERR_NOT_HOLDER,
            "result for an unknown invocation: NOT_HOLDER");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);

    /* A Result with req_id 0 is taken and never answered: the first thing
     * the worker hears after it is the reply to its next request. */
    char *src2 = s_create(c, 40);
    env = s_env(41);
    then.id = src2;
    env.body_case = PMESH__ENVELOPE__BODY_THEN;
    env.then = &then;
    s_send_env(c, &env);
    reply = s_reply_to(c, 41, 5000, &r);
    char *target2 = reply && reply->err == 0 && *reply->id ? strdup(reply->id) : NULL;
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    s_check(target2 && s_settle(c, 42, src2, PMESH__STATE__RESOLVED, (const uint8_t *) "in2", 3,
                                NULL) == 0,
            "a second then on rawfn, its source resolved");
    ie = s_recv(w, 5000);
    inv = ie && ie->body_case == PMESH__ENVELOPE__BODY_INVOKE ? ie->invoke : NULL;
    s_check(inv != NULL, "the worker gets the second invocation");
    if (inv) {
        env = s_env(0);
        Pmesh__InvokeResult res0 = PMESH__INVOKE_RESULT__INIT;
        res0.invocation_id = inv->invocation_id;
        res0.ok = 1;
        res0.value.data = (uint8_t *) "zero";
        res0.value.len = 4;
        env.body_case = PMESH__ENVELOPE__BODY_RESULT;
        env.result = &res0;
        s_send_env(w, &env);
        Pmesh__Empty empty = PMESH__EMPTY__INIT;
        env = s_env(43);
        env.body_case = PMESH__ENVELOPE__BODY_STATUS;
        env.status = &empty;
        s_send_env(w, &env);
        Pmesh__Envelope *next = s_recv(w, 5000);
        s_check(next && next->req_id == 43,
                "a result with req_id 0 is not answered (next reply: req_id %llu)",
                next ? (unsigned long long) next->req_id : 0ULL);
        if (next)
            pmesh__envelope__free_unpacked(next, NULL);
        s_send_get(c, 44, target2);
        reply = s_reply_to(c, 44, 5000, &r);
        s_check(reply && reply->promise && reply->promise->state == PMESH__STATE__RESOLVED &&
                    reply->promise->value.len == 4 &&
                    !memcmp(reply->promise->value.data, "zero", 4),
                "... and it settles its target");
        if (r)
            pmesh__envelope__free_unpacked(r, NULL);
    }
    if (ie)
        pmesh__envelope__free_unpacked(ie, NULL);
    free(target2);
    free(src2);

    s_send_get(c, 30, target);
    reply = s_reply_to(c, 30, 5000, &r);
    s_check(reply && reply->promise && reply->promise->state == PMESH__STATE__RESOLVED &&
                reply->promise->value.len == 5 && !memcmp(reply->promise->value.data, "first", 5),
            "the target holds the first answer");
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    printf("not_holder 2\n");
    free(inv_id);
    free(target);
    free(src);
    zmq_close(w);
    zmq_close(c);
    return s_failed;
}


/* Returns the state of id (0 if the get fails). */
static int
s_state_of(void *s, uint64_t req_id, const char *id)
{
    s_send_get(s, req_id, id);
    Pmesh__Envelope *r = NULL;
    Pmesh__Reply *reply = s_reply_to(s, req_id, 5000, &r);
    int state = reply && reply->err == 0 && reply->promise ? (int) reply->promise->state : 0;
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    return state;
}

/* Durations near INT64_MAX (the wire allows up to INT64_MAX) must not wrap
 * into the past: refused, or effectively forever; never "at once". */
static int
s_huge_timeouts(const char *path)
{
    void *s = s_connect(path);
    int refused = 0; /* BAD_REQUEST answers: the agent counts them as bad frames */
    const char *what[2] = {"timeout_ms", "heartbeat_ms"};
    for (int k = 0; k < 2; k++) {
        uint64_t req = 10 + (uint64_t) k * 10;
        Pmesh__Envelope env = s_env(req);
        Pmesh__Create c = PMESH__CREATE__INIT;
        if (k == 0)
            c.timeout_ms = INT64_MAX;
        else
            c.heartbeat_ms = INT64_MAX;
        env.body_case = PMESH__ENVELOPE__BODY_CREATE;
        env.create = &c;
        s_send_env(s, &env);
        Pmesh__Envelope *r = NULL;
        Pmesh__Reply *reply = s_reply_to(s, req, 5000, &r);
        if (reply && reply->err == S_ERR_BAD_REQUEST) {
            s_check(1, "create with %s INT64_MAX: refused", what[k]);
            refused++;
        } else if (reply && reply->err == 0) {
            char *id = strdup(reply->id);
            usleep(200 * 1000);
            int st = s_state_of(s, req + 1, id);
            s_check(st == PMESH__STATE__PENDING,
                    "create with %s INT64_MAX: still pending 200 ms later (state %d)", what[k],
                    st);
            free(id);
        } else {
            s_check(0, "create with %s INT64_MAX: an answer (err %d)", what[k],
                    reply ? reply->err : 1);
        }
        if (r)
            pmesh__envelope__free_unpacked(r, NULL);
    }

    /* An await of INT64_MAX ms waits; it is not answered until the settle. */
    char *p = s_create(s, 30);
    Pmesh__Envelope env = s_env(31);
    Pmesh__Await aw = PMESH__AWAIT__INIT;
    aw.id = p;
    aw.timeout_ms = INT64_MAX;
    env.body_case = PMESH__ENVELOPE__BODY_AWAIT;
    env.await = &aw;
    s_send_env(s, &env);
    usleep(200 * 1000);
    s_send_get(s, 32, p);
    Pmesh__Envelope *e = s_recv(s, 5000);
    s_check(e && e->req_id == 32,
            "await with timeout_ms INT64_MAX: not answered before the promise settles "
            "(first reply: req %llu, err %d)",
            e ? (unsigned long long) e->req_id : 0ULL,
            e && e->body_case == PMESH__ENVELOPE__BODY_REPLY ? e->reply->err : 0);
    int early = e && e->req_id == 31;
    if (e)
        pmesh__envelope__free_unpacked(e, NULL);
    if (!early) {
        /* Settle, then collect both replies: the waiter is told before the
         * settle is acknowledged, so they come in either order. */
        Pmesh__Envelope senv = s_env(33);
        Pmesh__Settle st = PMESH__SETTLE__INIT;
        st.id = p;
        st.kind = PMESH__STATE__RESOLVED;
        st.value.data = (uint8_t *) "v";
        st.value.len = 1;
        senv.body_case = PMESH__ENVELOPE__BODY_SETTLE;
        senv.settle = &st;
        s_send_env(s, &senv);
        int settled = 0, answered = 0;
        for (int i = 0; i < 4 && !(settled && answered); i++) {
            Pmesh__Envelope *x = s_recv(s, 5000);
            if (!x)
                break;
            if (x->body_case == PMESH__ENVELOPE__BODY_REPLY) {
                if (x->req_id == 33)
                    settled = x->reply->err == 0;
                if (x->req_id == 31)
                    answered = x->reply->err == 0 && x->reply->promise &&
                               x->reply->promise->state == PMESH__STATE__RESOLVED;
            }
            pmesh__envelope__free_unpacked(x, NULL);
        }
        s_check(settled, "settle the awaited promise");
        s_check(answered, "await with timeout_ms INT64_MAX: answered by the settle");
    }
    free(p);

    /* then with a timeout of INT64_MAX ms. */
    char *src = s_create(s, 40);
    env = s_env(41);
    Pmesh__Then then = PMESH__THEN__INIT;
    then.id = src;
    then.function = "nobody-serves-this";
    then.timeout_ms = INT64_MAX;
    env.body_case = PMESH__ENVELOPE__BODY_THEN;
    env.then = &then;
    s_send_env(s, &env);
    Pmesh__Envelope *r = NULL;
    Pmesh__Reply *reply = s_reply_to(s, 41, 5000, &r);
    if (reply && reply->err == S_ERR_BAD_REQUEST) {
        s_check(1, "then with timeout_ms INT64_MAX: refused");
        refused++;
    } else if (reply && reply->err == 0) {
        char *t = strdup(reply->id);
        usleep(200 * 1000);
        int st = s_state_of(s, 42, t);
        s_check(st == PMESH__STATE__PENDING,
                "then with timeout_ms INT64_MAX: target still pending 200 ms later (state %d)",
                st);
        free(t);
    } else {
        s_check(0, "then with timeout_ms INT64_MAX: an answer");
    }
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    free(src);
    printf("bad_frames %d\n", refused);
    zmq_close(s);
    return s_failed;
}

/* Hello (batches as given), then n creates in one burst: the replies, each
 * to its request, in order; *frames counts the frames they came in and
 * *batch_frames those that were Batch envelopes. */
static void
s_burst(void *s, int batches, int n, int *frames, int *batch_frames, int *in_order)
{
    Pmesh__Hello hello = PMESH__HELLO__INIT;
    hello.client_name = "rawclient";
    hello.batches = batches;
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = S_VERSION;
    env.req_id = 1000;
    env.body_case = PMESH__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    s_send_env(s, &env);
    Pmesh__Envelope *r = s_recv(s, 5000);
    s_check(r && r->req_id == 1000, "hello (batches %d) answered", batches);
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    Pmesh__Create c = PMESH__CREATE__INIT;
    env.body_case = PMESH__ENVELOPE__BODY_CREATE;
    env.create = &c;
    for (int i = 1; i <= n; i++) {
        env.req_id = (uint64_t) i;
        s_send_env(s, &env);
    }
    *frames = *batch_frames = 0;
    *in_order = 1;
    int next = 1;
    while (next <= n) {
        r = s_recv(s, 5000);
        if (!r)
            break;
        (*frames)++;
        Pmesh__Envelope *one[1] = {r};
        Pmesh__Envelope **items = one;
        size_t k = 1;
        Pmesh__Envelope **inner = NULL;
        if (r->body_case == PMESH__ENVELOPE__BODY_BATCH) {
            (*batch_frames)++;
            k = r->batch->n_frames;
            inner = calloc(k ? k : 1, sizeof *inner);
            for (size_t j = 0; j < k; j++)
                inner[j] = pmesh__envelope__unpack(NULL, r->batch->frames[j].len,
                                                   r->batch->frames[j].data);
            items = inner;
        }
        for (size_t j = 0; j < k; j++, next++) {
            Pmesh__Envelope *e = items[j];
            if (!e || e->body_case != PMESH__ENVELOPE__BODY_REPLY || e->req_id != (uint64_t) next ||
                e->reply->err != 0)
                *in_order = 0;
        }
        if (inner) {
            for (size_t j = 0; j < k; j++)
                if (inner[j])
                    pmesh__envelope__free_unpacked(inner[j], NULL);
            free(inner);
        }
        pmesh__envelope__free_unpacked(r, NULL);
    }
    if (next <= n)
        *in_order = 0;
}

static int
s_batches(const char *path)
{
    const int n = 200;
    int frames, batch_frames, in_order;
    void *s = s_connect(path);
    s_burst(s, 1, n, &frames, &batch_frames, &in_order);
    s_check(in_order, "batches: %d pipelined creates answered, each once, in order", n);
    s_check(batch_frames >= 1 && frames < n,
            "batches: the replies came in %d frames (%d of them batches)", frames, batch_frames);
    zmq_close(s);
    s = s_connect(path);
    s_burst(s, 0, n, &frames, &batch_frames, &in_order);
    s_check(in_order, "no batches: %d pipelined creates answered, each once, in order", n);
    s_check(batch_frames == 0 && frames == n,
            "no batches: a frame per reply (%d frames, %d batches)", frames, batch_frames);
    /* A Batch from a client: refused, not taken apart. */
    Pmesh__Target t = PMESH__TARGET__INIT;
    t.id = "x";
    Pmesh__Envelope get = PMESH__ENVELOPE__INIT;
    get.version = S_VERSION;
    get.req_id = 77;
    get.body_case = PMESH__ENVELOPE__BODY_GET;
    get.get = &t;
    size_t glen;
    uint8_t *gbuf = s_pack(&get, &glen);
    ProtobufCBinaryData fr[1] = {{.data = gbuf, .len = glen}};
    Pmesh__Batch b = PMESH__BATCH__INIT;
    b.n_frames = 1;
    b.frames = fr;
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = S_VERSION;
    env.req_id = 78;
    env.body_case = PMESH__ENVELOPE__BODY_BATCH;
    env.batch = &b;
    s_send_env(s, &env);
    Pmesh__Envelope *r = NULL;
    Pmesh__Reply *rep = s_reply_to(s, 78, 3000, &r);
    s_check(rep && rep->err == S_ERR_BAD_REQUEST, "a Batch from a client: BAD_REQUEST (err %d)",
            rep ? rep->err : 0);
    printf("bad_frames 1\n"); /* that Batch: a request of no known kind */
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    free(gbuf);
    zmq_close(s);
    return s_failed;
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rawclient SOCK COMMAND [ARGS]\n");
        return 2;
    }
    s_ctx = zmq_ctx_new();
    const char *path = argv[1], *cmd = argv[2];
    int rc;
    if (!strcmp(cmd, "bad-frames"))
        rc = s_bad_frames(path);
    else if (!strcmp(cmd, "oversize") && argc == 4)
        rc = s_oversize(path, (size_t) strtoull(argv[3], NULL, 10));
    else if (!strcmp(cmd, "await") && argc == 6)
        rc = s_await(path, argv[3], atoi(argv[4]), argv[5]);
    else if (!strcmp(cmd, "vanish") && argc == 4)
        rc = s_vanish(path, argv[3]);
    else if (!strcmp(cmd, "worker"))
        rc = s_worker(path);
    else if (!strcmp(cmd, "huge-timeouts"))
        rc = s_huge_timeouts(path);
    else if (!strcmp(cmd, "batches"))
        rc = s_batches(path);
    else {
        fprintf(stderr, "rawclient: unknown command or arguments: %s\n", cmd);
        rc = 2;
    }
    zmq_ctx_term(s_ctx);
    return rc ? (rc == 2 ? 2 : 1) : 0;
}
