/*
 * test_wire.c - cmocka suite for node/wire.c: every message type round-trips
 * with every field set (labels, binary values with NUL bytes, empty strings,
 * a list reply with many promises); wrong versions, truncated frames,
 * garbage, unknown body fields, body-less envelopes and oversize names are
 * refused with the right error and, where it could be read, the req_id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pmesh.pb-c.h"
#include "wire.h"

/* ---- comparing -------------------------------------------------------------- */

/* NULL and "" are the same on the wire (proto3 has no absent strings). */
static void
s_str_eq(const char *a, const char *b, const char *what)
{
    if (strcmp(a ? a : "", b ? b : "") != 0)
        fail_msg("%s: '%s' != '%s'", what, a ? a : "(null)", b ? b : "(null)");
}

static void
s_bytes_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, const char *what)
{
    if (alen != blen)
        fail_msg("%s: length %zu != %zu", what, alen, blen);
    if (alen && memcmp(a, b, alen) != 0)
        fail_msg("%s: bytes differ", what);
}

static void
s_labels_eq(const pm_label_t *a, size_t na, const pm_label_t *b, size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        s_str_eq(a[i].key, b[i].key, "label key");
        s_str_eq(a[i].value, b[i].value, "label value");
    }
}

static void
s_promise_eq(const pm_wire_promise_t *a, const pm_wire_promise_t *b)
{
    s_str_eq(a->id, b->id, "promise id");
    assert_int_equal(a->state, b->state);
    s_bytes_eq(a->value, a->value_len, b->value, b->value_len, "promise value");
    s_str_eq(a->reason, b->reason, "promise reason");
    assert_int_equal(a->created_ms, b->created_ms);
    assert_int_equal(a->settled_ms, b->settled_ms);
    assert_int_equal(a->timeout_at_ms, b->timeout_at_ms);
    assert_int_equal(a->heartbeat_ms, b->heartbeat_ms);
    assert_int_equal(a->heartbeat_at_ms, b->heartbeat_at_ms);
    s_str_eq(a->key, b->key, "promise key");
    s_labels_eq(a->labels, a->label_count, b->labels, b->label_count);
}

static void
s_swim_eq(const pm_swim_msg_t *a, const pm_swim_msg_t *b)
{
    if (!a || !b) {
        assert_ptr_equal(a, b);
        return;
    }
    assert_int_equal(a->type, b->type);
    s_str_eq(a->from_name, b->from_name, "swim from_name");
    s_str_eq(a->from_endpoint, b->from_endpoint, "swim from_endpoint");
    assert_int_equal(a->from_incarnation, b->from_incarnation);
    assert_int_equal(a->seq, b->seq);
    s_str_eq(a->target_name, b->target_name, "swim target_name");
    s_str_eq(a->target_endpoint, b->target_endpoint, "swim target_endpoint");
    assert_int_equal(a->update_count, b->update_count);
    for (size_t i = 0; i < a->update_count; i++) {
        const pm_swim_update_t *x = &a->updates[i], *y = &b->updates[i];
        s_str_eq(x->name, y->name, "update name");
        s_str_eq(x->endpoint, y->endpoint, "update endpoint");
        assert_int_equal(x->incarnation, y->incarnation);
        assert_int_equal(x->state, y->state);
        s_bytes_eq(x->meta, x->meta_len, y->meta, y->meta_len, "update meta");
        s_str_eq(x->from, y->from, "update from");
    }
}

/* Every field of pm_msg_t. */
static void
s_msg_eq(const pm_msg_t *a, const pm_msg_t *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->req_id, b->req_id);
    s_str_eq(a->from, b->from, "from");
    s_swim_eq(a->swim, b->swim);
    s_str_eq(a->id, b->id, "id");
    s_str_eq(a->new_id, b->new_id, "new_id");
    s_str_eq(a->function, b->function, "function");
    s_str_eq(a->on_reject, b->on_reject, "on_reject");
    assert_int_equal(a->combinator, b->combinator);
    assert_int_equal(a->id_count, b->id_count);
    for (size_t i = 0; i < a->id_count; i++)
        s_str_eq(a->ids[i], b->ids[i], "ids[i]");
    assert_int_equal(a->state, b->state);
    s_bytes_eq(a->value, a->value_len, b->value, b->value_len, "value");
    s_str_eq(a->reason, b->reason, "reason");
    assert_int_equal(a->timeout_ms, b->timeout_ms);
    assert_int_equal(a->final, b->final);
    assert_int_equal(a->tentative_ok, b->tentative_ok);
    assert_int_equal(a->tentative_states, b->tentative_states);
    assert_int_equal(a->heartbeat_ms, b->heartbeat_ms);
    s_str_eq(a->key, b->key, "key");
    s_labels_eq(a->labels, a->label_count, b->labels, b->label_count);
    s_str_eq(a->prefix, b->prefix, "prefix");
    assert_int_equal(a->limit, b->limit);
    s_str_eq(a->cursor, b->cursor, "cursor");
    assert_int_equal(a->function_count, b->function_count);
    for (size_t i = 0; i < a->function_count; i++)
        s_str_eq(a->functions[i], b->functions[i], "functions[i]");
    assert_int_equal(a->concurrency, b->concurrency);
    s_str_eq(a->invocation_id, b->invocation_id, "invocation_id");
    s_str_eq(a->target_id, b->target_id, "target_id");
    assert_int_equal(a->attempt, b->attempt);
    assert_int_equal(!!a->ok, !!b->ok);
    assert_int_equal(!!a->accept_data_loss, !!b->accept_data_loss);
    assert_int_equal(a->session, b->session);
    s_str_eq(a->client_name, b->client_name, "client_name");
    s_str_eq(a->space, b->space, "space");
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->lsn, b->lsn);
    assert_int_equal(a->record_count, b->record_count);
    for (size_t i = 0; i < a->record_count; i++)
        s_bytes_eq(a->records[i].data, a->records[i].len, b->records[i].data, b->records[i].len,
                   "records[i]");
    assert_int_equal(!!a->full, !!b->full);
    assert_int_equal(!!a->fenced, !!b->fenced);
    assert_int_equal(a->stream, b->stream);
    assert_int_equal(a->first, b->first);
    assert_int_equal(a->xfer, b->xfer);
    assert_int_equal(a->count, b->count);
    assert_int_equal(!!a->resync, !!b->resync);
    assert_int_equal(a->err, b->err);
    s_str_eq(a->message, b->message, "message");
    assert_int_equal(!!a->promise, !!b->promise);
    if (a->promise)
        s_promise_eq(a->promise, b->promise);
    assert_int_equal(a->promise_count, b->promise_count);
    for (size_t i = 0; i < a->promise_count; i++)
        s_promise_eq(&a->promises[i], &b->promises[i]);
    s_str_eq(a->json, b->json, "json");
    s_str_eq(a->node, b->node, "node");
    s_str_eq(a->mint_prefix, b->mint_prefix, "mint_prefix");
    assert_int_equal(!!a->created, !!b->created);
    assert_int_equal(a->max_value, b->max_value);
}

/* Encodes in, decodes it, checks every field; leaves the decoded copy in out
 * (caller releases). */
static void
s_round_trip(const pm_msg_t *in, pm_msg_t *out)
{
    size_t len = 0;
    uint8_t *buf = pm_wire_encode(in, &len);
    assert_non_null(buf);
    assert_true(len > 0);
    int rc = pm_wire_decode(buf, len, out);
    free(buf); /* decoded strings must not borrow from the input buffer */
    if (rc != PM_OK)
        fail_msg("decode of a %s: %s", pm_wire_type_name(in->type), pm_err_name(rc));
    s_msg_eq(in, out);
    assert_non_null(out->priv);
}

static void
s_round_trip_release(const pm_msg_t *in)
{
    pm_msg_t out;
    s_round_trip(in, &out);
    pm_wire_release(&out);
    assert_null(out.priv);
    pm_wire_release(&out); /* twice is harmless */
}

/* Packs a hand-built envelope (for what pm_wire_encode will not produce). */
static uint8_t *
s_pack(const Pmesh__Envelope *env, size_t *len)
{
    *len = pmesh__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(pmesh__envelope__pack(env, buf), *len);
    return buf;
}

static int
s_decode_bytes(const uint8_t *buf, size_t len, uint64_t *req_id)
{
    pm_msg_t m;
    int rc = pm_wire_decode(buf, len, &m);
    if (req_id)
        *req_id = m.req_id;
    if (rc == PM_OK)
        assert_int_not_equal(m.type, PM_MSG_NONE);
    pm_wire_release(&m);
    return rc;
}

static char *
s_repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

static const uint8_t s_bin[] = {0, 'a', 0, 0xff, 0x80, '\n', 0, 'z', 0};

/* ---- round trips ------------------------------------------------------------ */

static void
test_round_trip_requests(void **state)
{
    (void) state;
    pm_label_t labels[3] = {{"team", "red"}, {"empty", ""}, {"k=ish", "v\twith tab"}};
    const char *fns[3] = {"resize", "thumb", "x"};

    pm_msg_t hello = {.type = PM_MSG_HELLO, .req_id = 1, .client_name = "cli/42"};
    s_round_trip_release(&hello);

    pm_msg_t create = {.type = PM_MSG_CREATE,
                       .req_id = UINT64_MAX,
                       .id = "n1-abc~c1-7",
                       .timeout_ms = 30000,
                       .heartbeat_ms = INT64_MAX,
                       .key = "order-17",
                       .label_count = 3,
                       .labels = labels};
    s_round_trip_release(&create);

    pm_msg_t resolve = {.type = PM_MSG_SETTLE, .req_id = 3, .id = "p", .state = PM_STATE_RESOLVED,
                        .value = s_bin, .value_len = sizeof s_bin};
    s_round_trip_release(&resolve);
    pm_msg_t reject = {.type = PM_MSG_SETTLE, .req_id = 4, .id = "p", .state = PM_STATE_REJECTED,
                       .reason = "it broke: badly"};
    s_round_trip_release(&reject);
    pm_msg_t cancel = {.type = PM_MSG_SETTLE, .req_id = 5, .id = "p", .state = PM_STATE_CANCELED,
                       .value = s_bin, .value_len = 3, .reason = "both set"};
    s_round_trip_release(&cancel);

    pm_msg_t hb = {.type = PM_MSG_HEARTBEAT, .req_id = 6, .id = "hb-id"};
    s_round_trip_release(&hb);
    pm_msg_t get = {.type = PM_MSG_GET, .req_id = 7, .id = "get-id"};
    s_round_trip_release(&get);

    pm_msg_t await = {.type = PM_MSG_AWAIT, .req_id = 8, .id = "a", .timeout_ms = 1500};
    s_round_trip_release(&await);
    await.timeout_ms = -1; /* forever: negative must survive */
    s_round_trip_release(&await);
    await.timeout_ms = INT64_MIN;
    s_round_trip_release(&await);
    await.timeout_ms = -1;
    await.final = 1; /* a combinator's final lookup (fanins.c) */
    s_round_trip_release(&await);
    await.final = 0; /* a combinator's subscription asking early copies of failures */
    await.tentative_states = (1u << PM_STATE_REJECTED) | (1u << PM_STATE_TIMEDOUT);
    s_round_trip_release(&await);
    await.tentative_ok = 1;
    await.tentative_states = 0x3c;
    s_round_trip_release(&await);

    pm_msg_t then = {.type = PM_MSG_THEN, .req_id = 9, .id = "src", .function = "resize",
                     .new_id = "n1~c1-8", .timeout_ms = 60000};
    s_round_trip_release(&then);
    pm_msg_t catch = {.type = PM_MSG_THEN, .req_id = 9, .id = "src", .function = "resize",
                      .on_reject = "fallback"};
    s_round_trip_release(&catch);

    /* Combinators: every kind, inputs in order with duplicates, with and
     * without a minted id and a timeout. */
    const char *inputs[4] = {"n2~1", "n3-x~c1.2-5", "n2~1", "n4~zz"};
    for (int kind = PM_COMBINE_ALL; kind <= PM_COMBINE_ALL_SETTLED; kind++) {
        pm_msg_t comb = {.type = PM_MSG_COMBINE, .req_id = 19, .combinator = kind,
                         .id_count = 4, .ids = inputs, .new_id = "n1~c1-9",
                         .timeout_ms = 30000};
        s_round_trip_release(&comb);
        comb.new_id = NULL;
        comb.timeout_ms = 0;
        comb.id_count = 1;
        s_round_trip_release(&comb);
    }

    pm_msg_t list = {.type = PM_MSG_LIST, .req_id = 10, .state = PM_STATE_PENDING,
                     .prefix = "n1-", .limit = 500, .cursor = "17:n1~x", .label_count = 1,
                     .labels = labels};
    s_round_trip_release(&list);
    pm_msg_t list_plain = {.type = PM_MSG_LIST, .req_id = 11};
    s_round_trip_release(&list_plain);

    pm_msg_t status = {.type = PM_MSG_STATUS, .req_id = 12};
    s_round_trip_release(&status);
    pm_msg_t bye = {.type = PM_MSG_BYE, .req_id = 13};
    s_round_trip_release(&bye);
    pm_msg_t members = {.type = PM_MSG_MEMBERS, .req_id = 14};
    s_round_trip_release(&members);

    pm_msg_t reg = {.type = PM_MSG_REGISTER, .req_id = 15, .function_count = 3, .functions = fns,
                    .concurrency = 64};
    s_round_trip_release(&reg);

    pm_msg_t invoke = {.type = PM_MSG_INVOKE, .req_id = 16, .invocation_id = "sp~i1f",
                       .function = "thumb", .value = s_bin, .value_len = sizeof s_bin,
                       .target_id = "sp~9", .attempt = 3};
    s_round_trip_release(&invoke);

    pm_msg_t ok = {.type = PM_MSG_RESULT, .req_id = 17, .invocation_id = "sp~i1f", .ok = 1,
                   .value = s_bin, .value_len = sizeof s_bin};
    s_round_trip_release(&ok);
    pm_msg_t failed = {.type = PM_MSG_RESULT, .req_id = 18, .invocation_id = "sp~i20",
                       .ok = 0, .reason = "out of memory"};
    s_round_trip_release(&failed);

    pm_msg_t ping = {.type = PM_MSG_PING, .req_id = 19, .session = 0xfedcba9876543210ULL};
    s_round_trip_release(&ping);

    /* pmesh space force-owner: the operator's request. */
    pm_msg_t force = {.type = PM_MSG_FORCE_OWNER, .req_id = 21, .space = "n1-8a1f3",
                      .accept_data_loss = 1};
    s_round_trip_release(&force);
    force.accept_data_loss = 0; /* the agent refuses it; the wire carries it */
    s_round_trip_release(&force);
    assert_string_equal(pm_wire_type_name(PM_MSG_FORCE_OWNER), "force_owner");

    /* Mesh traffic: the sender's name travels on any envelope. */
    pm_msg_t from = {.type = PM_MSG_GET, .req_id = 20, .id = "x", .from = "node-b"};
    s_round_trip_release(&from);
}

static void
test_round_trip_swim(void **state)
{
    (void) state;
    pm_swim_update_t ups[2] = {
        {.name = "b", .endpoint = "tcp://10.0.0.2:7946", .incarnation = 9,
         .state = PM_SWIM_SUSPECT, .meta = s_bin, .meta_len = sizeof s_bin, .from = "c"},
        {.name = "d", .endpoint = "tcp://10.0.0.4:7946", .incarnation = UINT64_MAX,
         .state = PM_SWIM_LEFT},
    };
    pm_swim_msg_t sw = {.type = PM_SWIM_MSG_PING_REQ, .from_name = "a",
                        .from_endpoint = "tcp://10.0.0.1:7946", .from_incarnation = 4,
                        .seq = 77, .target_name = "b", .target_endpoint = "tcp://10.0.0.2:7946",
                        .update_count = 2, .updates = ups};
    pm_msg_t m = {.type = PM_MSG_SWIM, .req_id = 1, .from = "a", .swim = &sw};
    s_round_trip_release(&m);
    pm_swim_msg_t none = {.type = PM_SWIM_MSG_ACK, .from_name = "a", .seq = 1};
    m.swim = &none;
    s_round_trip_release(&m);
}

static void
test_round_trip_replication(void **state)
{
    (void) state;
    pm_bytes_t recs[4] = {{s_bin, sizeof s_bin}, {NULL, 0}, {(const uint8_t *) "rec", 3},
                          {s_bin, 1}};
    pm_msg_t repl = {.type = PM_MSG_REPLICATE, .req_id = 1, .from = "node-a",
                     .space = "node-a-x1", .epoch = 3, .lsn = UINT64_MAX - 1,
                     .record_count = 4, .records = recs, .full = 1, .stream = UINT64_MAX,
                     .xfer = 7};
    s_round_trip_release(&repl);
    repl.full = 0;
    repl.xfer = 0;
    repl.first = UINT64_MAX - 4;
    s_round_trip_release(&repl);
    repl.record_count = 0;
    repl.full = 1;
    repl.count = 1u << 20; /* a transfer's closing marker */
    s_round_trip_release(&repl);
    pm_msg_t ack = {.type = PM_MSG_REPLICATE_ACK, .req_id = 2, .space = "node-a-x1",
                    .epoch = 9, .lsn = 12345, .fenced = 1, .stream = 42};
    s_round_trip_release(&ack);
    ack.fenced = 0;
    ack.resync = 1;
    s_round_trip_release(&ack);

    /* A replicate names its space; an oversize space is refused. */
    pm_msg_t nospace = {.type = PM_MSG_REPLICATE, .req_id = 3, .space = ""};
    size_t len;
    uint8_t *buf = pm_wire_encode(&nospace, &len);
    pm_msg_t m;
    assert_int_equal(pm_wire_decode(buf, len, &m), PM_ERR_BAD_REQUEST);
    assert_int_equal(m.req_id, 3);
    pm_wire_release(&m);
    free(buf);
    char *big = s_repeat('s', PM_WIRE_MAX_NAME + 1);
    ack.space = big;
    buf = pm_wire_encode(&ack, &len);
    assert_int_equal(pm_wire_decode(buf, len, &m), PM_ERR_BAD_REQUEST);
    pm_wire_release(&m);
    free(buf);
    free(big);
}

static void
test_meta_backup_spaces(void **state)
{
    (void) state;
    const char *spaces[] = {"a-1", "b-2"};
    const uint64_t epochs[] = {1, 4};
    const char *backups[] = {"b", "c"};
    const char *bspaces[] = {"b-9", "c-3"};
    pm_meta_t in = {.id_space = "a-1", .space_count = 2, .spaces = spaces, .epochs = epochs,
                    .backup_count = 2, .backups = backups, .backup_spaces = bspaces};
    size_t len;
    uint8_t *buf = pm_wire_meta_encode(&in, &len);
    assert_non_null(buf);
    pm_meta_t out;
    assert_int_equal(pm_wire_meta_decode(buf, len, &out), PM_OK);
    assert_int_equal(out.backup_count, 2);
    assert_non_null(out.backup_spaces);
    for (size_t i = 0; i < 2; i++) {
        s_str_eq(out.backups[i], backups[i], "backup");
        s_str_eq(out.backup_spaces[i], bspaces[i], "backup space");
    }
    assert_int_equal(out.epochs[1], 4);
    pm_wire_meta_release(&out);
    free(buf);
    /* An older agent sends no backup spaces: NULL, not garbage. */
    in.backup_spaces = NULL;
    buf = pm_wire_meta_encode(&in, &len);
    assert_int_equal(pm_wire_meta_decode(buf, len, &out), PM_OK);
    assert_null(out.backup_spaces);
    pm_wire_meta_release(&out);
    free(buf);
    /* A malformed backup space is refused. */
    char *big = s_repeat('s', PM_WIRE_MAX_NAME + 1);
    const char *bad[] = {"b-9", big};
    in.backup_spaces = bad;
    buf = pm_wire_meta_encode(&in, &len);
    assert_int_equal(pm_wire_meta_decode(buf, len, &out), PM_ERR_BAD_REQUEST);
    pm_wire_meta_release(&out);
    free(buf);
    free(big);
}

static void
test_records_claim_and_release(void **state)
{
    (void) state;
    pm_rec_t claim = {.kind = PM_REC_GENERATION, .space = "n2-abc", .generation = 0, .epoch = 7};
    size_t len;
    uint8_t *buf = pm_wire_rec_encode(&claim, &len);
    pm_rec_t out;
    assert_int_equal(pm_wire_rec_decode(buf, len, &out), PM_OK);
    assert_int_equal(out.kind, PM_REC_GENERATION);
    assert_int_equal(out.generation, 0);
    assert_int_equal(out.epoch, 7);
    s_str_eq(out.space, "n2-abc", "claim space");
    pm_wire_rec_release(&out);
    free(buf);
    pm_rec_t rel = {.kind = PM_REC_RELEASE, .space = "n2-abc"};
    buf = pm_wire_rec_encode(&rel, &len);
    assert_int_equal(pm_wire_rec_decode(buf, len, &out), PM_OK);
    assert_int_equal(out.kind, PM_REC_RELEASE);
    s_str_eq(out.space, "n2-abc", "released space");
    pm_wire_rec_release(&out);
    free(buf);
    /* A release must name its space; unknown kinds are refused. */
    rel.space = NULL;
    buf = pm_wire_rec_encode(&rel, &len);
    assert_int_equal(pm_wire_rec_decode(buf, len, &out), PM_ERR_BAD_REQUEST);
    pm_wire_rec_release(&out);
    free(buf);
    /* (8 is COMBINE now: an unused kind, with what any kind could carry.) */
    pm_wire_promise_t p = {.id = "n1~1", .state = PM_STATE_PENDING};
    pm_rec_t unknown = {.kind = 99, .space = "x", .promise = p};
    buf = pm_wire_rec_encode(&unknown, &len);
    assert_int_equal(pm_wire_rec_decode(buf, len, &out), PM_ERR_BAD_REQUEST);
    pm_wire_rec_release(&out);
    free(buf);
}

/* Packs and unpacks a record; returns the decoder's verdict and leaves the
 * decoded copy in *out (caller releases). */
static int
s_rec_trip(const pm_rec_t *in, pm_rec_t *out)
{
    size_t len;
    uint8_t *buf = pm_wire_rec_encode(in, &len);
    assert_non_null(buf);
    int rc = pm_wire_rec_decode(buf, len, out);
    free(buf); /* the decoded copy must not borrow from the input */
    return rc;
}

static void
test_records_combine_and_catch(void **state)
{
    (void) state;
    const char *inputs[3] = {"n2~1", "n3~c1.2-5", "n2~1"};
    pm_rec_t comb = {.kind = PM_REC_COMBINE,
                     .promise = {.id = "n1~c1-9", .state = PM_STATE_PENDING,
                                 .created_ms = 1700000000000, .timeout_at_ms = 1700000030000},
                     .combinator = PM_COMBINE_ALL_SETTLED, .input_count = 3, .inputs = inputs};
    pm_rec_t out;
    for (int kind = PM_COMBINE_ALL; kind <= PM_COMBINE_ALL_SETTLED; kind++) {
        comb.combinator = kind;
        assert_int_equal(s_rec_trip(&comb, &out), PM_OK);
        assert_int_equal(out.kind, PM_REC_COMBINE);
        assert_int_equal(out.combinator, kind);
        s_promise_eq(&comb.promise, &out.promise);
        assert_int_equal(out.input_count, 3);
        for (size_t i = 0; i < 3; i++)
            s_str_eq(out.inputs[i], inputs[i], "inputs[i]");
        assert_null(out.on_reject);
        pm_wire_rec_release(&out);
    }

    /* A then record keeps its rejection handler; without one it is NULL. */
    pm_rec_t then = {.kind = PM_REC_THEN, .promise = {.id = "n1~1", .state = PM_STATE_PENDING},
                     .function = "resize", .target = "n1~2", .on_reject = "fallback"};
    assert_int_equal(s_rec_trip(&then, &out), PM_OK);
    assert_int_equal(out.kind, PM_REC_THEN);
    s_str_eq(out.function, "resize", "function");
    s_str_eq(out.target, "n1~2", "target");
    s_str_eq(out.on_reject, "fallback", "on_reject");
    assert_int_equal(out.input_count, 0);
    pm_wire_rec_release(&out);
    then.on_reject = NULL;
    assert_int_equal(s_rec_trip(&then, &out), PM_OK);
    assert_null(out.on_reject);
    pm_wire_rec_release(&out);

    /* Refused: no combinator kind or an unknown one, no inputs, an empty or
     * oversize input, no promise. */
    char *big = s_repeat('b', PM_WIRE_MAX_NAME + 1);
    const char *empty[1] = {""}, *oversize[2] = {"n2~1", big};
    pm_rec_t bad[6];
    for (size_t i = 0; i < 6; i++)
        bad[i] = comb;
    bad[0].combinator = 0;
    bad[1].combinator = PM_COMBINE_ALL_SETTLED + 1;
    bad[2].input_count = 0;
    bad[2].inputs = NULL;
    bad[3].input_count = 1;
    bad[3].inputs = empty;
    bad[4].input_count = 2;
    bad[4].inputs = oversize;
    bad[5].promise.id = "";
    for (size_t i = 0; i < 6; i++) {
        int rc = s_rec_trip(&bad[i], &out);
        if (rc != PM_ERR_BAD_REQUEST)
            fail_msg("bad combine record %zu: %s, want BAD_REQUEST", i, pm_err_name(rc));
        pm_wire_rec_release(&out);
    }
    free(big);
}

static void
test_round_trip_replies(void **state)
{
    (void) state;
    pm_label_t labels[2] = {{"team", "red"}, {"env", "prod"}};
    pm_wire_promise_t one = {.id = "n1~5", .state = PM_STATE_RESOLVED, .value = s_bin,
                             .value_len = sizeof s_bin, .reason = "", .created_ms = 1700000000000,
                             .settled_ms = 1700000000123, .timeout_at_ms = 1700000030000,
                             .heartbeat_ms = 5000, .heartbeat_at_ms = 1700000005000,
                             .key = "idem", .label_count = 2, .labels = labels};
    pm_msg_t reply = {.type = PM_MSG_REPLY, .req_id = 42, .err = PM_ERR_TIMED_OUT,
                      .message = "the promise timed out", .id = "n1~5", .cursor = "12:n1~5",
                      .json = "{\"a\":1}", .node = "node-a", .mint_prefix = "n1-x~c1-",
                      .session = 7, .created = 1, .max_value = 64 << 20, .promise = &one};
    s_round_trip_release(&reply);

    pm_msg_t rejected = {.type = PM_MSG_REPLY, .req_id = 43};
    pm_wire_promise_t rej = {.id = "n1~6", .state = PM_STATE_REJECTED, .reason = "why not"};
    rejected.promise = &rej;
    s_round_trip_release(&rejected);

    pm_msg_t empty = {.type = PM_MSG_REPLY, .req_id = 44};
    s_round_trip_release(&empty);

    /* A list reply with many promises, labels on some. */
    enum { N = 2000 };
    pm_wire_promise_t *ps = calloc(N, sizeof *ps);
    char (*ids)[32] = calloc(N, 32);
    assert_non_null(ps);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], 32, "n1~%x", i);
        ps[i].id = ids[i];
        ps[i].state = 1 + i % 5;
        ps[i].value = i % 5 == 1 ? s_bin : NULL;
        ps[i].value_len = i % 5 == 1 ? (size_t) (i % (int) sizeof s_bin) : 0;
        ps[i].reason = i % 5 >= 2 ? "r" : "";
        ps[i].created_ms = i;
        ps[i].label_count = i % 3 == 0 ? 2 : 0;
        ps[i].labels = labels;
    }
    pm_msg_t list = {.type = PM_MSG_REPLY, .req_id = 45, .promises = ps, .promise_count = N,
                     .cursor = "2000:n1~7cf", .promise = &one};
    pm_msg_t out;
    s_round_trip(&list, &out);
    assert_int_equal(out.promise_count, N);
    assert_string_equal(out.promises[N - 1].id, "n1~7cf");
    assert_int_equal(out.promises[3].label_count, 2);
    assert_string_equal(out.promises[3].labels[1].value, "prod");
    pm_wire_release(&out);
    free(ps);
    free(ids);
}

/* The decoder unpacks into an arena: a value far larger than its inline
 * buffer and its chunk size, then small objects after it, all intact. */
static void
test_arena_large_value(void **state)
{
    (void) state;
    enum { BIG = 3 << 20 };
    uint8_t *value = malloc(BIG);
    assert_non_null(value);
    for (size_t i = 0; i < BIG; i++)
        value[i] = (uint8_t) (i * 131 + 7);
    pm_label_t labels[3] = {{"a", "1"}, {"bb", "22"}, {"ccc", "333"}};
    pm_msg_t settle = {.type = PM_MSG_SETTLE, .req_id = 9, .id = "n1~big", .state = PM_STATE_RESOLVED,
                       .value = value, .value_len = BIG};
    pm_wire_promise_t one = {.id = "n1~big", .state = PM_STATE_RESOLVED, .value = value,
                             .value_len = BIG, .label_count = 3, .labels = labels};
    pm_msg_t reply = {.type = PM_MSG_REPLY, .req_id = 10, .promise = &one};
    pm_msg_t *ms[2] = {&settle, &reply};
    for (int k = 0; k < 2; k++) {
        size_t len;
        uint8_t *buf = pm_wire_encode(ms[k], &len);
        assert_non_null(buf);
        pm_msg_t out;
        assert_int_equal(pm_wire_decode(buf, len, &out), PM_OK);
        const uint8_t *v = k ? out.promise->value : out.value;
        size_t vlen = k ? out.promise->value_len : out.value_len;
        assert_int_equal(vlen, BIG);
        assert_memory_equal(v, value, BIG);
        if (k) {
            assert_int_equal(out.promise->label_count, 3);
            assert_string_equal(out.promise->labels[2].key, "ccc");
            assert_string_equal(out.promise->labels[2].value, "333");
        }
        pm_wire_release(&out);
        free(buf);
    }
    free(value);
}

/* Empty strings and absent optional fields: the decoder maps "" to NULL for
 * the optional ones, and keeps "" for the rest. */
static void
test_empty_strings(void **state)
{
    (void) state;
    size_t len;
    pm_msg_t m;
    pm_label_t empty_value[1] = {{"k", ""}};
    pm_msg_t create = {.type = PM_MSG_CREATE, .req_id = 1, .id = "", .key = "",
                       .label_count = 1, .labels = empty_value};
    uint8_t *buf = pm_wire_encode(&create, &len);
    assert_int_equal(pm_wire_decode(buf, len, &m), PM_OK);
    assert_null(m.id);
    assert_null(m.key);
    assert_null(m.from);
    assert_int_equal(m.label_count, 1);
    assert_string_equal(m.labels[0].value, "");
    pm_wire_release(&m);
    free(buf);

    pm_msg_t settle = {.type = PM_MSG_SETTLE, .req_id = 2, .state = PM_STATE_RESOLVED};
    buf = pm_wire_encode(&settle, &len); /* NULL id, NULL value */
    assert_int_equal(pm_wire_decode(buf, len, &m), PM_OK);
    assert_non_null(m.id);
    assert_string_equal(m.id, "");
    assert_int_equal(m.value_len, 0);
    assert_non_null(m.reason);
    assert_string_equal(m.reason, "");
    pm_wire_release(&m);
    free(buf);

    pm_msg_t then = {.type = PM_MSG_THEN, .req_id = 3, .id = "x", .function = "", .new_id = ""};
    buf = pm_wire_encode(&then, &len);
    assert_int_equal(pm_wire_decode(buf, len, &m), PM_OK);
    assert_string_equal(m.function, "");
    assert_null(m.new_id);
    pm_wire_release(&m);
    free(buf);

    pm_msg_t list = {.type = PM_MSG_LIST, .req_id = 4, .prefix = "", .cursor = ""};
    buf = pm_wire_encode(&list, &len);
    assert_int_equal(pm_wire_decode(buf, len, &m), PM_OK);
    assert_null(m.prefix);
    assert_null(m.cursor);
    assert_int_equal(m.label_count, 0);
    pm_wire_release(&m);
    free(buf);

    pm_msg_t reply = {.type = PM_MSG_REPLY, .req_id = 5, .id = ""};
    buf = pm_wire_encode(&reply, &len);
    assert_int_equal(pm_wire_decode(buf, len, &m), PM_OK);
    assert_null(m.id);
    assert_null(m.promise);
    assert_int_equal(m.promise_count, 0);
    assert_string_equal(m.message, "");
    pm_wire_release(&m);
    free(buf);
}

static void
test_encode_refuses_unknown_type(void **state)
{
    (void) state;
    size_t len = 12345;
    pm_msg_t none = {.type = PM_MSG_NONE};
    assert_null(pm_wire_encode(&none, &len));
    pm_msg_t bogus = {.type = PM_MSG_TYPE_COUNT + 3};
    assert_null(pm_wire_encode(&bogus, &len));
    assert_string_equal(pm_wire_type_name(PM_MSG_GET), "get");
    assert_string_equal(pm_wire_type_name(PM_MSG_REPLY), "reply");
    assert_string_equal(pm_wire_type_name(PM_MSG_TYPE_COUNT), "unknown");
}

/* ---- refusals --------------------------------------------------------------- */

static void
test_wrong_version(void **state)
{
    (void) state;
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    Pmesh__Target get = PMESH__TARGET__INIT;
    get.id = "x";
    env.body_case = PMESH__ENVELOPE__BODY_GET;
    env.get = &get;
    env.req_id = 77;
    uint32_t versions[] = {0, 2, 3, 0xffffffffu};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        env.version = versions[i];
        size_t len;
        uint8_t *buf = s_pack(&env, &len);
        uint64_t req_id = 0;
        assert_int_equal(s_decode_bytes(buf, len, &req_id), PM_ERR_BAD_VERSION);
        assert_int_equal(req_id, 77);
        free(buf);
    }
    env.version = PM_WIRE_VERSION;
    size_t len;
    uint8_t *buf = s_pack(&env, &len);
    assert_int_equal(s_decode_bytes(buf, len, NULL), PM_OK);
    free(buf);
}

static void
test_truncated_frames(void **state)
{
    (void) state;
    pm_label_t labels[1] = {{"a", "b"}};
    pm_wire_promise_t p = {.id = "n1~5", .state = 2, .value = s_bin, .value_len = sizeof s_bin,
                           .created_ms = 5, .label_count = 1, .labels = labels};
    pm_msg_t msgs[] = {
        {.type = PM_MSG_REPLY, .req_id = 300, .promise = &p, .message = "m", .node = "n"},
        {.type = PM_MSG_CREATE, .req_id = 301, .id = "i", .key = "k", .timeout_ms = 5,
         .label_count = 1, .labels = labels},
        {.type = PM_MSG_SETTLE, .req_id = 302, .id = "i", .state = 2, .value = s_bin,
         .value_len = sizeof s_bin},
    };
    for (size_t k = 0; k < sizeof msgs / sizeof msgs[0]; k++) {
        size_t len;
        uint8_t *buf = pm_wire_encode(&msgs[k], &len);
        assert_non_null(buf);
        for (size_t cut = 1; cut < len; cut++) {
            /* A copy of exactly `cut` bytes, so ASan/valgrind see any over-read. */
            uint8_t *part = malloc(cut);
            memcpy(part, buf, cut);
            int rc = s_decode_bytes(part, cut, NULL);
            if (rc != PM_ERR_BAD_REQUEST)
                fail_msg("%s cut at %zu of %zu: %s", pm_wire_type_name(msgs[k].type), cut, len,
                         pm_err_name(rc));
            free(part);
        }
        assert_int_equal(s_decode_bytes(buf, len, NULL), PM_OK);
        free(buf);
    }
    /* Nothing at all: an envelope of version 0, which is refused. */
    int rc = s_decode_bytes((const uint8_t *) "", 0, NULL);
    assert_true(rc == PM_ERR_BAD_REQUEST || rc == PM_ERR_BAD_VERSION);
}

static void
test_garbage(void **state)
{
    (void) state;
    const char *samples[] = {
        "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        "hello world",
        "\x08\x01\x10",                 /* req_id without its varint */
        "\x08\x01\x52\x05\x0a\x01",     /* hello body claims 5 bytes, has 2 */
        "\x08\x01\x0f",                 /* wire type 7 */
        "\x0b\x0c",                     /* groups */
        "\x08\x81\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", /* varint of 11 bytes */
    };
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        size_t n = strlen(samples[i]);
        uint8_t *copy = malloc(n);
        memcpy(copy, samples[i], n);
        int rc = s_decode_bytes(copy, n, NULL);
        if (rc != PM_ERR_BAD_REQUEST)
            fail_msg("sample %zu: %s", i, pm_err_name(rc));
        free(copy);
    }
    /* Random bytes never decode to a valid request (fixed seed). */
    uint64_t x = 0x2545f4914f6cdd1dULL;
    for (int i = 0; i < 5000; i++) {
        size_t n = 16 + (size_t) (i % 200);
        uint8_t *buf = malloc(n);
        for (size_t j = 0; j < n; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[j] = (uint8_t) x;
        }
        assert_int_not_equal(s_decode_bytes(buf, n, NULL), PM_OK);
        free(buf);
    }
    /* Over the frame limit: refused without being read. */
    uint8_t *huge = malloc(PM_WIRE_MAX_FRAME + 1);
    assert_non_null(huge);
    assert_int_equal(s_decode_bytes(huge, PM_WIRE_MAX_FRAME + 1, NULL), PM_ERR_BAD_REQUEST);
    free(huge);
}

static void
test_no_body_and_unknown_body(void **state)
{
    (void) state;
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    env.version = PM_WIRE_VERSION;
    env.req_id = 55;
    size_t len;
    uint8_t *buf = s_pack(&env, &len);
    uint64_t req_id = 0;
    assert_int_equal(s_decode_bytes(buf, len, &req_id), PM_ERR_BAD_REQUEST);
    assert_int_equal(req_id, 55);
    free(buf);

    /* version 1, req_id 9, then an unknown field 40 (length-delimited, 2
     * bytes; 29 is ForceOwner, 31 Batch now), and an unknown varint field 99. */
    const uint8_t unknown[] = {0x08, 0x01, 0x10, 0x09, 0xc2, 0x02, 0x02, 0x08, 0x01,
                               0x98, 0x06, 0x05};
    req_id = 0;
    assert_int_equal(s_decode_bytes(unknown, sizeof unknown, &req_id), PM_ERR_BAD_REQUEST);
    assert_int_equal(req_id, 9);

    /* An unknown field next to a real body is skipped: the body decodes. */
    Pmesh__Target get = PMESH__TARGET__INIT;
    get.id = "abc";
    env.body_case = PMESH__ENVELOPE__BODY_GET;
    env.get = &get;
    buf = s_pack(&env, &len);
    uint8_t *more = malloc(len + 4);
    memcpy(more, buf, len);
    memcpy(more + len, "\xc2\x02\x01\x00", 4);
    pm_msg_t m;
    assert_int_equal(pm_wire_decode(more, len + 4, &m), PM_OK);
    assert_int_equal(m.type, PM_MSG_GET);
    assert_string_equal(m.id, "abc");
    pm_wire_release(&m);
    free(more);
    free(buf);

    /* A reply body sent the wrong way decodes (the agent refuses it by type). */
    Pmesh__Reply reply = PMESH__REPLY__INIT;
    env.body_case = PMESH__ENVELOPE__BODY_REPLY;
    env.reply = &reply;
    buf = s_pack(&env, &len);
    assert_int_equal(s_decode_bytes(buf, len, NULL), PM_OK);
    free(buf);
}

/* Encodes m with one string field set to a name of `n` bytes and decodes. */
static int
s_decode_with(pm_msg_t *m)
{
    size_t len;
    uint8_t *buf = pm_wire_encode(m, &len);
    assert_non_null(buf);
    uint64_t req_id = 0;
    int rc = s_decode_bytes(buf, len, &req_id);
    assert_int_equal(req_id, m->req_id);
    free(buf);
    return rc;
}

static void
test_oversize_names(void **state)
{
    (void) state;
    char *ok = s_repeat('a', PM_WIRE_MAX_NAME);
    char *big = s_repeat('b', PM_WIRE_MAX_NAME + 1);
    char *cursor_ok = s_repeat('c', PM_WIRE_MAX_NAME + 32);
    char *cursor_big = s_repeat('c', PM_WIRE_MAX_NAME + 33);
    const char *names[2] = {ok, big};
    for (int b = 0; b < 2; b++) {
        const char *s = names[b];
        int want = b ? PM_ERR_BAD_REQUEST : PM_OK;
        pm_label_t lk[1] = {{s, "v"}}, lv[1] = {{"k", s}};
        const char *fn1[1] = {s};
        static const char *one_x[1] = {"x"};
        pm_msg_t cases[] = {
            {.type = PM_MSG_HELLO, .req_id = 1, .client_name = s},
            {.type = PM_MSG_CREATE, .req_id = 2, .id = s},
            {.type = PM_MSG_CREATE, .req_id = 3, .key = s},
            {.type = PM_MSG_CREATE, .req_id = 4, .label_count = 1, .labels = lk},
            {.type = PM_MSG_CREATE, .req_id = 5, .label_count = 1, .labels = lv},
            {.type = PM_MSG_SETTLE, .req_id = 6, .id = s, .state = 2},
            {.type = PM_MSG_HEARTBEAT, .req_id = 7, .id = s},
            {.type = PM_MSG_GET, .req_id = 8, .id = s},
            {.type = PM_MSG_AWAIT, .req_id = 9, .id = s},
            {.type = PM_MSG_THEN, .req_id = 10, .id = s, .function = "f"},
            {.type = PM_MSG_THEN, .req_id = 11, .id = "x", .function = s},
            {.type = PM_MSG_THEN, .req_id = 12, .id = "x", .function = "f", .new_id = s},
            {.type = PM_MSG_LIST, .req_id = 13, .prefix = s},
            {.type = PM_MSG_LIST, .req_id = 14, .label_count = 1, .labels = lk},
            {.type = PM_MSG_LIST, .req_id = 15, .label_count = 1, .labels = lv},
            {.type = PM_MSG_REGISTER, .req_id = 16, .function_count = 1, .functions = fn1,
             .concurrency = 1},
            {.type = PM_MSG_INVOKE, .req_id = 17, .invocation_id = s, .function = "f",
             .target_id = "t"},
            {.type = PM_MSG_INVOKE, .req_id = 18, .invocation_id = "i", .function = s,
             .target_id = "t"},
            {.type = PM_MSG_INVOKE, .req_id = 19, .invocation_id = "i", .function = "f",
             .target_id = s},
            {.type = PM_MSG_RESULT, .req_id = 20, .invocation_id = s},
            {.type = PM_MSG_GET, .req_id = 21, .id = "x", .from = s},
            {.type = PM_MSG_THEN, .req_id = 22, .id = "x", .function = "f", .on_reject = s},
            {.type = PM_MSG_COMBINE, .req_id = 23, .combinator = PM_COMBINE_ALL, .id_count = 1,
             .ids = fn1},
            {.type = PM_MSG_COMBINE, .req_id = 24, .combinator = PM_COMBINE_ANY, .id_count = 1,
             .ids = one_x, .new_id = s},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            int rc = s_decode_with(&cases[i]);
            if (rc != want)
                fail_msg("case %zu (%s) with a %zu-byte name: %s, want %s", i,
                         pm_wire_type_name(cases[i].type), strlen(s), pm_err_name(rc),
                         pm_err_name(want));
        }
    }
    pm_msg_t list = {.type = PM_MSG_LIST, .req_id = 30, .cursor = cursor_ok};
    assert_int_equal(s_decode_with(&list), PM_OK);
    list.cursor = cursor_big;
    assert_int_equal(s_decode_with(&list), PM_ERR_BAD_REQUEST);

    /* Reasons and messages are not names: long ones pass. */
    char *long_reason = s_repeat('r', 100000);
    pm_msg_t settle = {.type = PM_MSG_SETTLE, .req_id = 31, .id = "x", .state = 3,
                       .reason = long_reason};
    assert_int_equal(s_decode_with(&settle), PM_OK);
    free(long_reason);

    free(ok);
    free(big);
    free(cursor_ok);
    free(cursor_big);
}

static void
test_counts_and_durations_bounded(void **state)
{
    (void) state;
    /* 256 labels pass, 257 are refused (S_MAX_LABELS in wire.c). */
    pm_label_t *labels = calloc(257, sizeof *labels);
    for (int i = 0; i < 257; i++) {
        labels[i].key = "k";
        labels[i].value = "v";
    }
    pm_msg_t create = {.type = PM_MSG_CREATE, .req_id = 1, .label_count = 256, .labels = labels};
    assert_int_equal(s_decode_with(&create), PM_OK);
    create.label_count = 257;
    assert_int_equal(s_decode_with(&create), PM_ERR_BAD_REQUEST);
    free(labels);

    /* 64 functions pass, 65 are refused. */
    const char *fns[65];
    for (int i = 0; i < 65; i++)
        fns[i] = "f";
    pm_msg_t reg = {.type = PM_MSG_REGISTER, .req_id = 2, .function_count = 64,
                    .functions = fns, .concurrency = 1};
    assert_int_equal(s_decode_with(&reg), PM_OK);
    reg.function_count = 65;
    assert_int_equal(s_decode_with(&reg), PM_ERR_BAD_REQUEST);

    /* uint64 durations above INT64_MAX would turn negative: refused. */
    Pmesh__Envelope env = PMESH__ENVELOPE__INIT;
    Pmesh__Create c = PMESH__CREATE__INIT;
    env.version = PM_WIRE_VERSION;
    env.req_id = 3;
    env.body_case = PMESH__ENVELOPE__BODY_CREATE;
    env.create = &c;
    c.timeout_ms = (uint64_t) INT64_MAX + 1;
    size_t len;
    uint8_t *buf = s_pack(&env, &len);
    assert_int_equal(s_decode_bytes(buf, len, NULL), PM_ERR_BAD_REQUEST);
    free(buf);
    c.timeout_ms = 0;
    c.heartbeat_ms = UINT64_MAX;
    buf = s_pack(&env, &len);
    assert_int_equal(s_decode_bytes(buf, len, NULL), PM_ERR_BAD_REQUEST);
    free(buf);
    Pmesh__Then t = PMESH__THEN__INIT;
    t.id = "x";
    t.function = "f";
    t.timeout_ms = UINT64_MAX;
    env.body_case = PMESH__ENVELOPE__BODY_THEN;
    env.then = &t;
    buf = s_pack(&env, &len);
    assert_int_equal(s_decode_bytes(buf, len, NULL), PM_ERR_BAD_REQUEST);
    free(buf);

    /* A combine: PM_WIRE_MAX_IDS inputs pass, one more is refused, and so
     * is a timeout above INT64_MAX. */
    const char **ids = calloc(PM_WIRE_MAX_IDS + 1, sizeof *ids);
    for (size_t i = 0; i <= PM_WIRE_MAX_IDS; i++)
        ids[i] = "n1~1";
    pm_msg_t comb = {.type = PM_MSG_COMBINE, .req_id = 4, .combinator = PM_COMBINE_ALL,
                     .id_count = PM_WIRE_MAX_IDS, .ids = ids};
    assert_int_equal(s_decode_with(&comb), PM_OK);
    comb.id_count = PM_WIRE_MAX_IDS + 1;
    assert_int_equal(s_decode_with(&comb), PM_ERR_BAD_REQUEST);
    free(ids);
    Pmesh__Combine cb = PMESH__COMBINE__INIT;
    char *one[1] = {"x"};
    cb.kind = PMESH__COMBINATOR__RACE;
    cb.n_ids = 1;
    cb.ids = one;
    cb.timeout_ms = (uint64_t) INT64_MAX + 1;
    env.body_case = PMESH__ENVELOPE__BODY_COMBINE;
    env.combine = &cb;
    buf = s_pack(&env, &len);
    assert_int_equal(s_decode_bytes(buf, len, NULL), PM_ERR_BAD_REQUEST);
    free(buf);
    cb.timeout_ms = 1000;
    buf = s_pack(&env, &len);
    assert_int_equal(s_decode_bytes(buf, len, NULL), PM_OK);
    free(buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_requests),
        cmocka_unit_test(test_round_trip_swim),
        cmocka_unit_test(test_round_trip_replication),
        cmocka_unit_test(test_meta_backup_spaces),
        cmocka_unit_test(test_records_claim_and_release),
        cmocka_unit_test(test_records_combine_and_catch),
        cmocka_unit_test(test_round_trip_replies),
        cmocka_unit_test(test_empty_strings),
        cmocka_unit_test(test_encode_refuses_unknown_type),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_arena_large_value),
        cmocka_unit_test(test_truncated_frames),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_no_body_and_unknown_body),
        cmocka_unit_test(test_oversize_names),
        cmocka_unit_test(test_counts_and_durations_bounded),
    };
    return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
