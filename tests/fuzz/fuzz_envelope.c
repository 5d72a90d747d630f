/*
 * fuzz_envelope.c - libFuzzer target for the wire envelope (node/wire.c).
 *
 * Every input goes through pm_wire_decode and pm_wire_release; ASan and UBSan
 * catch bad reads, leaks and overflows on the way. An input that decodes is
 * re-encoded and decoded again, and the second decoding must equal the first
 * field by field: the encoder may not drop, add or change anything the
 * decoder accepted. Failures abort with the field that differed.
 *
 *   make fuzz-build && build/fuzz/fuzz_envelope tests/fuzz/corpus/fuzz_envelope
 */
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
s_fail(const char *what)
{
    fprintf(stderr, "fuzz_envelope: re-encoded envelope differs: %s\n", what);
    abort();
}

/* The decoder maps absent optional strings to NULL and present ones to
 * non-NULL, the same way both times: NULL-ness must match too. */
static void
s_str(const char *a, const char *b, const char *what)
{
    if (!a != !b || (a && strcmp(a, b) != 0))
        s_fail(what);
}

static void
s_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, const char *what)
{
    if (alen != blen || (alen && memcmp(a, b, alen) != 0))
        s_fail(what);
}

static void
s_labels(const pm_label_t *a, size_t na, const pm_label_t *b, size_t nb, const char *what)
{
    if (na != nb)
        s_fail(what);
    for (size_t i = 0; i < na; i++) {
        s_str(a[i].key, b[i].key, what);
        s_str(a[i].value, b[i].value, what);
    }
}

static void
s_promise(const pm_wire_promise_t *a, const pm_wire_promise_t *b)
{
    s_str(a->id, b->id, "promise.id");
    if (a->state != b->state)
        s_fail("promise.state");
    s_bytes(a->value, a->value_len, b->value, b->value_len, "promise.value");
    s_str(a->reason, b->reason, "promise.reason");
    if (a->created_ms != b->created_ms || a->settled_ms != b->settled_ms ||
        a->timeout_at_ms != b->timeout_at_ms || a->heartbeat_ms != b->heartbeat_ms ||
        a->heartbeat_at_ms != b->heartbeat_at_ms)
        s_fail("promise times");
    s_str(a->key, b->key, "promise.key");
    s_labels(a->labels, a->label_count, b->labels, b->label_count, "promise.labels");
}

static void
s_swim(const pm_swim_msg_t *a, const pm_swim_msg_t *b)
{
    if (!a != !b)
        s_fail("swim presence");
    if (!a)
        return;
    if (a->type != b->type || a->from_incarnation != b->from_incarnation || a->seq != b->seq)
        s_fail("swim numbers");
    s_str(a->from_name, b->from_name, "swim.from_name");
    s_str(a->from_endpoint, b->from_endpoint, "swim.from_endpoint");
    s_str(a->target_name, b->target_name, "swim.target_name");
    s_str(a->target_endpoint, b->target_endpoint, "swim.target_endpoint");
    if (a->update_count != b->update_count)
        s_fail("swim.update_count");
    for (size_t i = 0; i < a->update_count; i++) {
        const pm_swim_update_t *x = &a->updates[i], *y = &b->updates[i];
        s_str(x->name, y->name, "update.name");
        s_str(x->endpoint, y->endpoint, "update.endpoint");
        if (x->incarnation != y->incarnation || x->state != y->state)
            s_fail("update numbers");
        s_bytes(x->meta, x->meta_len, y->meta, y->meta_len, "update.meta");
        s_str(x->from, y->from, "update.from");
    }
}

static void
s_equal(const pm_msg_t *a, const pm_msg_t *b)
{
    if (a->type != b->type)
        s_fail("type");
    if (a->req_id != b->req_id)
        s_fail("req_id");
    s_str(a->from, b->from, "from");
    s_swim(a->swim, b->swim);
    s_str(a->id, b->id, "id");
    s_str(a->new_id, b->new_id, "new_id");
    s_str(a->function, b->function, "function");
    if (a->state != b->state)
        s_fail("state");
    s_bytes(a->value, a->value_len, b->value, b->value_len, "value");
    s_str(a->reason, b->reason, "reason");
    if (a->timeout_ms != b->timeout_ms || a->heartbeat_ms != b->heartbeat_ms)
        s_fail("durations");
    s_str(a->key, b->key, "key");
    s_labels(a->labels, a->label_count, b->labels, b->label_count, "labels");
    s_str(a->prefix, b->prefix, "prefix");
    if (a->limit != b->limit)
        s_fail("limit");
    s_str(a->cursor, b->cursor, "cursor");
    if (a->function_count != b->function_count)
        s_fail("function_count");
    for (size_t i = 0; i < a->function_count; i++)
        s_str(a->functions[i], b->functions[i], "functions");
    if (a->concurrency != b->concurrency)
        s_fail("concurrency");
    s_str(a->invocation_id, b->invocation_id, "invocation_id");
    s_str(a->target_id, b->target_id, "target_id");
    if (a->attempt != b->attempt)
        s_fail("attempt");
    if (!a->ok != !b->ok)
        s_fail("ok");
    if (a->session != b->session)
        s_fail("session");
    s_str(a->client_name, b->client_name, "client_name");
    s_str(a->space, b->space, "space");
    if (a->epoch != b->epoch || a->lsn != b->lsn || !a->full != !b->full ||
        !a->fenced != !b->fenced)
        s_fail("replication numbers");
    if (a->record_count != b->record_count)
        s_fail("record_count");
    for (size_t i = 0; i < a->record_count; i++)
        s_bytes(a->records[i].data, a->records[i].len, b->records[i].data, b->records[i].len,
                "records");
    if (a->err != b->err)
        s_fail("err");
    s_str(a->message, b->message, "message");
    if (!a->promise != !b->promise)
        s_fail("promise presence");
    if (a->promise)
        s_promise(a->promise, b->promise);
    if (a->promise_count != b->promise_count)
        s_fail("promise_count");
    for (size_t i = 0; i < a->promise_count; i++)
        s_promise(&a->promises[i], &b->promises[i]);
    s_str(a->json, b->json, "json");
    s_str(a->node, b->node, "node");
    s_str(a->mint_prefix, b->mint_prefix, "mint_prefix");
    if (!a->created != !b->created)
        s_fail("created");
    if (a->max_value != b->max_value)
        s_fail("max_value");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pm_msg_t a;
    int rc = pm_wire_decode(data, size, &a);
    if (rc == PM_OK) {
        if (a.type <= PM_MSG_NONE || a.type >= PM_MSG_TYPE_COUNT)
            s_fail("decoded type out of range");
        size_t len = 0;
        uint8_t *buf = pm_wire_encode(&a, &len);
        if (!buf)
            s_fail("a decoded message does not encode");
        pm_msg_t b;
        if (pm_wire_decode(buf, len, &b) != PM_OK)
            s_fail("the re-encoded message does not decode");
        s_equal(&a, &b);
        pm_wire_release(&b);
        free(buf);
    } else if (rc != PM_ERR_BAD_REQUEST && rc != PM_ERR_BAD_VERSION && rc != PM_ERR_INTERNAL) {
        fprintf(stderr, "fuzz_envelope: decode returned %d\n", rc);
        abort();
    }
    pm_wire_release(&a);
    return 0;
}
