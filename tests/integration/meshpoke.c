/*
 * meshpoke.c - a test helper that talks to pmeshd the way a stranger or a
 * confused peer would, for the mesh integration tests. It builds envelopes
 * with the generated protobuf-c code directly (not node/wire.c), so it can
 * send what the agent's own encoder never would.
 *
 *   meshpoke members SOCKET
 *       print the agent's member table (JSON) from its local socket
 *   meshpoke garbage ENDPOINT [ROUNDS]
 *       send malformed frames to a mesh port: random bytes, a truncated
 *       envelope, a wrong version, a multi-part message, an envelope with no
 *       `from`, an empty frame, a batch holding garbage, a batch holding a
 *       batch (8 per round, 1 round by default); prints how many were sent
 *   meshpoke get ENDPOINT FROM ID
 *       send a well-formed GET for ID that claims to come from node FROM
 *   meshpoke settle ENDPOINT FROM ID VALUE
 *       send a well-formed settle (resolve ID with VALUE) that claims to come
 *       from node FROM, as a peer relaying a client's settle would
 *   meshpoke swim ENDPOINT TYPE FROM_NAME FROM_ENDPOINT FROM_INC [NAME EP INC STATE]...
 *       send one SWIM message (TYPE 1..7) with the given updates
 *   meshpoke pipeline SOCKET ID FN [FN...]
 *       through libpmesh: chain then(ID, FN1), then(that, FN2), ... each sent
 *       before any reply came back; print the last id (exit 1 if any failed)
 *
 * Exit: 0 ok, 1 failure, 64 usage. Built by the test scripts:
 *   cc -Inode -I$BUILD/gen meshpoke.c $BUILD/lib/libpmesh.a $(pkg-config ...)
 */
#include "pmesh.h"
#include "pmesh.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static void *s_ctx;

static int
s_usage(void)
{
    fprintf(stderr, "usage: meshpoke members SOCKET | garbage EP [ROUNDS] | get EP FROM ID |\n"
                    "       settle EP FROM ID VALUE |\n"
                    "       swim EP TYPE FROM_NAME FROM_EP FROM_INC [NAME EP INC STATE]... |\n"
                    "       pipeline SOCKET ID FN [FN...]\n");
    return 64;
}

static void *
s_dealer(const char *endpoint)
{
    void *s = zmq_socket(s_ctx, ZMQ_DEALER);
    int linger = 2000, tmo = 5000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    if (zmq_connect(s, endpoint) != 0) {
        fprintf(stderr, "meshpoke: connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        exit(1);
    }
    return s;
}

static void
s_send_env(void *sock, const Pmesh__Envelope *env)
{
    size_t len = pmesh__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    pmesh__envelope__pack(env, buf);
    if (zmq_send(sock, buf, len, 0) < 0) {
        fprintf(stderr, "meshpoke: send: %s\n", zmq_strerror(zmq_errno()));
        exit(1);
    }
    free(buf);
}

static int
s_members(const char *socket_path)
{
    char ep[4200];
    snprintf(ep, sizeof ep, "ipc://%s", socket_path);
    void *s = s_dealer(ep);
    Pmesh__Empty empty = PMESH__EMPTY__INIT;
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = 1;
    env.req_id = 1;
    env.body_case = PMESH__ENVELOPE__BODY_MEMBERS;
    env.members = &empty;
    s_send_env(s, &env);
    static uint8_t buf[1 << 20];
    int n = zmq_recv(s, buf, sizeof buf, 0);
    zmq_close(s);
    if (n < 0) {
        fprintf(stderr, "meshpoke: no answer from %s\n", socket_path);
        return 1;
    }
    if (n > (int) sizeof buf)
        n = (int) sizeof buf;
    Pmesh__Envelope *r = pmesh__envelope__unpack(NULL, (size_t) n, buf);
    int rc = 1;
    if (!r || r->body_case != PMESH__ENVELOPE__BODY_REPLY || !r->reply->json ||
        !*r->reply->json)
        fprintf(stderr, "meshpoke: unexpected answer to members\n");
    else {
        printf("%s\n", r->reply->json);
        rc = 0;
    }
    if (r)
        pmesh__envelope__free_unpacked(r, NULL);
    return rc;
}

/* One round of malformed frames on s; returns how many were sent. */
static int
s_garbage_round(void *s)
{
    int sent = 0;
    /* 1. random bytes */
    uint8_t junk[200];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t) rand();
    junk[0] = 0xff; /* field 31, wire type 7: never valid protobuf */
    zmq_send(s, junk, sizeof junk, 0);
    sent++;
    /* 2. a valid GET envelope, truncated in the middle of a string */
    Pmesh__Target t = PMESH__TARGET__INIT;
    t.id = "n1-xxxx~1";
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = 1;
    env.req_id = 7;
    env.from = "n2";
    env.body_case = PMESH__ENVELOPE__BODY_GET;
    env.get = &t;
    size_t len = pmesh__envelope__get_packed_size(&env);
    uint8_t *buf = malloc(len);
    pmesh__envelope__pack(&env, buf);
    zmq_send(s, buf, len - 3, 0);
    sent++;
    free(buf);
    /* 3. the same, whole, but version 99 */
    env.version = 99;
    s_send_env(s, &env);
    sent++;
    env.version = 1;
    /* 4. two body frames in one message */
    zmq_send(s, "a", 1, ZMQ_SNDMORE);
    zmq_send(s, "b", 1, 0);
    sent++;
    /* 5. an envelope with no sender name */
    env.from = NULL;
    s_send_env(s, &env);
    sent++;
    /* 6. an empty frame */
    zmq_send(s, "", 0, 0);
    sent++;
    /* 7. a batch (from n2) whose one envelope is not protobuf */
    env.from = "n2";
    ProtobufCBinaryData frames[1] = {{.data = junk, .len = sizeof junk}};
    Pmesh__Batch batch = PMESH__BATCH__INIT;
    batch.n_frames = 1;
    batch.frames = frames;
    env.body_case = PMESH__ENVELOPE__BODY_BATCH;
    env.batch = &batch;
    s_send_env(s, &env);
    sent++;
    /* 8. a batch holding a batch (of that GET) */
    Pmesh__Envelope inner = env;
    Pmesh__Batch inner_batch = PMESH__BATCH__INIT;
    Pmesh__Envelope get = env;
    get.body_case = PMESH__ENVELOPE__BODY_GET;
    get.get = &t;
    size_t glen = pmesh__envelope__get_packed_size(&get);
    uint8_t *gbuf = malloc(glen);
    pmesh__envelope__pack(&get, gbuf);
    ProtobufCBinaryData one[1] = {{.data = gbuf, .len = glen}};
    inner_batch.n_frames = 1;
    inner_batch.frames = one;
    inner.batch = &inner_batch;
    size_t ilen = pmesh__envelope__get_packed_size(&inner);
    uint8_t *ibuf = malloc(ilen);
    pmesh__envelope__pack(&inner, ibuf);
    frames[0] = (ProtobufCBinaryData){.data = ibuf, .len = ilen};
    s_send_env(s, &env);
    sent++;
    free(gbuf);
    free(ibuf);
    return sent;
}

static int
s_garbage(const char *endpoint, int rounds)
{
    void *s = s_dealer(endpoint);
    srand((unsigned) time(NULL) ^ (unsigned) getpid());
    int sent = 0;
    for (int round = 0; round < rounds; round++)
        sent += s_garbage_round(s);
    zmq_close(s);
    printf("%d\n", sent);
    return 0;
}

static int
s_get(const char *endpoint, const char *from, const char *id)
{
    void *s = s_dealer(endpoint);
    Pmesh__Target t = PMESH__TARGET__INIT;
    t.id = (char *) id;
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = 1;
    env.req_id = 4242;
    env.from = (char *) from;
    env.body_case = PMESH__ENVELOPE__BODY_GET;
    env.get = &t;
    s_send_env(s, &env);
    zmq_close(s);
    return 0;
}

static int
s_settle(const char *endpoint, const char *from, const char *id, const char *value)
{
    void *s = s_dealer(endpoint);
    Pmesh__Settle st = PMESH__SETTLE__INIT;
    st.id = (char *) id;
    st.kind = PMESH__STATE__RESOLVED;
    st.value.data = (uint8_t *) value;
    st.value.len = strlen(value);
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = 1;
    env.req_id = 4243;
    env.from = (char *) from;
    env.body_case = PMESH__ENVELOPE__BODY_SETTLE;
    env.settle = &st;
    s_send_env(s, &env);
    zmq_close(s);
    return 0;
}

static int
s_swim(int argc, char **argv)
{
    /* argv: EP TYPE FROM_NAME FROM_EP FROM_INC [NAME EP INC STATE]... */
    if (argc < 5 || (argc - 5) % 4 != 0)
        return s_usage();
    void *s = s_dealer(argv[0]);
    size_t n = (size_t) (argc - 5) / 4;
    Pmesh__SwimUpdate *us = calloc(n + 1, sizeof *us);
    Pmesh__SwimUpdate **up = calloc(n + 1, sizeof *up);
    for (size_t i = 0; i < n; i++) {
        char **a = argv + 5 + 4 * i;
        pmesh__swim_update__init(&us[i]);
        us[i].name = a[0];
        us[i].endpoint = a[1];
        us[i].incarnation = strtoull(a[2], NULL, 10);
        us[i].state = (uint32_t) strtoul(a[3], NULL, 10);
        us[i].from = argv[2];
        up[i] = &us[i];
    }
    Pmesh__Swim sw = PMESH__SWIM__INIT;
    sw.type = (uint32_t) strtoul(argv[1], NULL, 10);
    sw.from_name = argv[2];
    sw.from_endpoint = argv[3];
    sw.from_incarnation = strtoull(argv[4], NULL, 10);
    sw.seq = 99;
    sw.n_updates = n;
    sw.updates = up;
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = 1;
    env.from = argv[2];
    env.body_case = PMESH__ENVELOPE__BODY_SWIM;
    env.swim = &sw;
    s_send_env(s, &env);
    zmq_close(s);
    free(us);
    free(up);
    return 0;
}

static int
s_pipeline(const char *socket_path, const char *id, char **fns, int n)
{
    pm_client_t *c = NULL;
    int err = pm_client_connect(socket_path, &c);
    if (err) {
        fprintf(stderr, "meshpoke: connect: %s\n", pm_err_name(err));
        return 1;
    }
    char *prev = strdup(id);
    for (int i = 0; i < n; i++) {
        char *nid = NULL;
        uint64_t req;
        err = pm_send_then(c, prev, fns[i], 0, &nid, &req);
        if (err) {
            fprintf(stderr, "meshpoke: send then %d: %s\n", i, pm_err_name(err));
            return 1;
        }
        free(prev);
        prev = nid;
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        pm_result_t *r = NULL;
        err = pm_recv(c, 10000, &r);
        if (err) {
            fprintf(stderr, "meshpoke: reply %d: %s\n", i, pm_err_name(err));
            return 1;
        }
        if (r->err) {
            fprintf(stderr, "meshpoke: then failed: %s %s\n", pm_err_name(r->err), r->message);
            failed = 1;
        }
        pm_result_destroy(&r);
    }
    printf("%s\n", prev);
    free(prev);
    pm_client_destroy(&c);
    return failed;
}

int
main(int argc, char **argv)
{
    if (argc < 3)
        return s_usage();
    s_ctx = zmq_ctx_new();
    int rc;
    if (strcmp(argv[1], "members") == 0 && argc == 3)
        rc = s_members(argv[2]);
    else if (strcmp(argv[1], "garbage") == 0 && (argc == 3 || argc == 4))
        rc = s_garbage(argv[2], argc == 4 ? atoi(argv[3]) : 1);
    else if (strcmp(argv[1], "get") == 0 && argc == 5)
        rc = s_get(argv[2], argv[3], argv[4]);
    else if (strcmp(argv[1], "settle") == 0 && argc == 6)
        rc = s_settle(argv[2], argv[3], argv[4], argv[5]);
    else if (strcmp(argv[1], "swim") == 0)
        rc = s_swim(argc - 2, argv + 2);
    else if (strcmp(argv[1], "pipeline") == 0 && argc >= 5)
        rc = s_pipeline(argv[2], argv[3], argv + 4, argc - 4);
    else
        rc = s_usage();
    zmq_ctx_term(s_ctx);
    return rc;
}
