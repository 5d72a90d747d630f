/*
 * test_coord.c - cmocka suite for mesh/coord.c and the in-memory store
 * (mesh/coord_mem.c): the record's JSON form and its validation,
 * create-if-absent, CAS races between two candidates and between a set
 * shrink and a takeover, watches in order across outages and compaction,
 * delayed answers, malformed data, and the etcd backend's answer when
 * nothing listens (UNAVAILABLE within the timeout, no hang).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "coord.h"

static pm_coord_t *
s_client(pm_coord_mem_t *store)
{
    pm_coord_config_t cfg = {.url = "mem://", .prefix = "/pmesh/test", .mem = store};
    char err[256] = "";
    pm_coord_t *c = pm_coord_new(&cfg, err, sizeof err);
    assert_non_null(c);
    return c;
}

/* The next completion, which must be there already (the memory store
 * answers at once unless delayed). */
static pm_coord_result_t *
s_next(pm_coord_t *c)
{
    pm_coord_result_t *r = NULL;
    assert_int_equal(pm_coord_recv(c, &r), 0);
    assert_non_null(r);
    return r;
}

static void
s_none(pm_coord_t *c)
{
    pm_coord_result_t *r = NULL;
    assert_int_equal(pm_coord_recv(c, &r), -1);
}

static pm_coord_record_t
s_rec(const char *space, const char *owner, uint64_t pid, uint64_t epoch, const char *members)
{
    pm_coord_record_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.space, sizeof r.space, "%s", space);
    snprintf(r.owner, sizeof r.owner, "%s", owner);
    r.owner_pid = pid;
    r.epoch = epoch;
    /* members: "b:2,c:3" */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", members);
    char *save = NULL;
    for (char *m = strtok_r(buf, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(m, ':');
        assert_non_null(colon);
        *colon = 0;
        snprintf(r.in_sync[r.n_in_sync].node, PM_COORD_NAME_MAX, "%s", m);
        r.in_sync[r.n_in_sync++].pid = strtoull(colon + 1, NULL, 10);
    }
    return r;
}

/* Sends a request and returns its answer. */
static pm_coord_result_t *
s_call_get(pm_coord_t *c, const char *space)
{
    uint64_t id = pm_coord_get(c, space);
    assert_true(id > 0);
    pm_coord_result_t *r = s_next(c);
    assert_int_equal(r->req, id);
    assert_int_equal(r->kind, PM_COORD_GET);
    return r;
}

/* ---- the record's JSON form ------------------------------------------------ */

static void
test_record_json(void **state)
{
    (void) state;
    pm_coord_record_t a =
        s_rec("s1", "node-a", UINT64_MAX, 7, "node-b:1,node-c:18446744073709551615");
    char *json = pm_coord_record_encode(&a);
    assert_non_null(json);
    pm_coord_record_t b;
    char err[256];
    assert_int_equal(pm_coord_record_decode("s1", json, strlen(json), &b, err, sizeof err), 0);
    assert_true(pm_coord_record_same(&a, &b));
    assert_int_equal(b.in_sync[1].pid, UINT64_MAX);
    /* The key's space must be the record's. */
    assert_int_equal(pm_coord_record_decode("s2", json, strlen(json), &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "another space"));
    free(json);

    const char *bad[] = {
        "",
        "[]",
        "{\"v\":1",
        "{\"v\":2,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"1\",\"epoch\":1,\"in_sync\":[]}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":1,\"epoch\":1,\"in_sync\":[]}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"-1\",\"epoch\":1,\"in_sync\":[]"
        "}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"1x\",\"epoch\":1,\"in_sync\":[]"
        "}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"99999999999999999999\","
        "\"epoch\":1,\"in_sync\":[]}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"1\",\"epoch\":-1,\"in_sync\":[]"
        "}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"1\",\"epoch\":\"1\",\"in_sync\":"
        "[]}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"1\",\"epoch\":1,\"in_sync\":{}}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"1\",\"epoch\":1,"
        "\"in_sync\":[{\"node\":\"\",\"pid\":\"1\"}]}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a "
        "b\",\"owner_pid\":\"1\",\"epoch\":1,\"in_sync\":[]}",
        "{\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"1\",\"epoch\":1,\"in_sync\":["
        "{\"node\":\"n\",\"pid\":\"1\"},{\"node\":\"n\",\"pid\":\"1\"},{\"node\":\"n\",\"pid\":"
        "\"1\"},"
        "{\"node\":\"n\",\"pid\":\"1\"},{\"node\":\"n\",\"pid\":\"1\"},{\"node\":\"n\",\"pid\":"
        "\"1\"},"
        "{\"node\":\"n\",\"pid\":\"1\"},{\"node\":\"n\",\"pid\":\"1\"},{\"node\":\"n\",\"pid\":"
        "\"1\"}]}",
        "{\"v\":1,\"v\":1,\"space\":\"s1\",\"owner\":\"a\",\"owner_pid\":\"1\",\"epoch\":1,\"in_"
        "sync\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = pm_coord_record_decode("s1", bad[i], strlen(bad[i]), &b, err, sizeof err);
        if (rc != -1)
            fail_msg("accepted malformed record %zu: %s", i, bad[i]);
        assert_true(err[0] != 0);
    }
    /* No owner yet, unknown keys ignored. */
    const char *ok = "{\"v\":1,\"space\":\"s1\",\"owner\":\"\",\"owner_pid\":\"0\",\"epoch\":0,"
                     "\"in_sync\":[],\"future\":true}";
    assert_int_equal(pm_coord_record_decode("s1", ok, strlen(ok), &b, err, sizeof err), 0);
    assert_string_equal(b.owner, "");
}

static void
test_arguments(void **state)
{
    (void) state;
    char err[256];
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_config_t cfg = {.url = "mem://", .prefix = "/p", .mem = store};
    cfg.prefix = "p";
    assert_null(pm_coord_new(&cfg, err, sizeof err));
    cfg.prefix = "/p/";
    assert_null(pm_coord_new(&cfg, err, sizeof err));
    cfg.prefix = "/p";
    cfg.url = "http://x";
    assert_null(pm_coord_new(&cfg, err, sizeof err));
    const char *urls[] = {"etcd://",
                          "etcd://host",
                          "etcd://host:",
                          "etcd://:1",
                          "etcd://h:1/x",
                          "etcd://h:1,h:x",
                          "etcd://a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9"};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        cfg.url = urls[i];
        err[0] = 0;
        if (pm_coord_new(&cfg, err, sizeof err))
            fail_msg("accepted %s", urls[i]);
        assert_true(err[0] != 0);
    }
    cfg.url = "mem://";
    cfg.mem = NULL;
    assert_null(pm_coord_new(&cfg, err, sizeof err));
    pm_coord_t *c = s_client(store);
    assert_int_equal(pm_coord_get(c, ""), 0);
    assert_int_equal(pm_coord_get(c, "a/b"), 0);
    assert_int_equal(pm_coord_get(c, "a b"), 0);
    pm_coord_record_t r = s_rec("s", "a", 1, 1, "");
    assert_int_equal(pm_coord_cas(c, 0, &r), 0);
    r.n_in_sync = PM_COORD_MAX_INSYNC + 1;
    assert_int_equal(pm_coord_create(c, &r), 0);
    s_none(c);
    pm_coord_destroy(&c);
    assert_null(c);
    pm_coord_destroy(&c);
    pm_coord_mem_destroy(&store);
}

/* ---- requests ---------------------------------------------------------------- */

static void
test_create_if_absent(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *b = s_client(store);
    pm_coord_result_t *r = s_call_get(a, "s1");
    assert_int_equal(r->status, PM_COORD_NOT_FOUND);
    assert_int_equal(r->n_records, 0);
    pm_coord_result_destroy(&r);

    pm_coord_record_t ra = s_rec("s1", "a", 11, 1, "b:22");
    pm_coord_record_t rb = s_rec("s1", "b", 22, 1, "a:11");
    uint64_t ia = pm_coord_create(a, &ra), ib = pm_coord_create(b, &rb);
    r = s_next(a);
    assert_int_equal(r->req, ia);
    assert_int_equal(r->kind, PM_COORD_CREATE);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_int_equal(r->n_records, 1);
    assert_int_equal(r->records[0].revision, 1); /* revisions count up from 1 */
    assert_true(pm_coord_record_same(&r->records[0], &ra));
    pm_coord_result_destroy(&r);
    r = s_next(b);
    assert_int_equal(r->req, ib);
    assert_int_equal(r->status, PM_COORD_CONFLICT);
    assert_int_equal(r->n_records, 1);
    assert_true(pm_coord_record_same(&r->records[0], &ra)); /* the winner's */
    assert_int_equal(r->records[0].revision, 1);
    pm_coord_result_destroy(&r);

    r = s_call_get(b, "s1");
    assert_int_equal(r->status, PM_COORD_OK);
    assert_true(pm_coord_record_same(&r->records[0], &ra));
    pm_coord_result_destroy(&r);

    /* A CAS on a space nobody created. */
    pm_coord_record_t rc = s_rec("s2", "a", 11, 2, "");
    pm_coord_cas(a, 1, &rc);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_NOT_FOUND);
    pm_coord_result_destroy(&r);
    assert_int_equal(pm_coord_mem_revision(store), 1);

    pm_coord_list(a);
    pm_coord_mem_put(store, &rc);
    r = s_next(a);
    assert_int_equal(r->kind, PM_COORD_LIST);
    assert_int_equal(r->n_records, 1); /* at the revision it was asked */
    pm_coord_result_destroy(&r);
    pm_coord_list(a);
    r = s_next(a);
    assert_int_equal(r->n_records, 2);
    assert_int_equal(r->revision, 2);
    pm_coord_result_destroy(&r);

    pm_coord_stats_t st;
    pm_coord_stats(a, &st);
    assert_int_equal(st.requests, 5);
    assert_int_equal(st.ok, 3);
    assert_int_equal(st.not_found, 2);
    pm_coord_stats(b, &st);
    assert_int_equal(st.conflicts, 1);
    pm_coord_destroy(&a);
    pm_coord_destroy(&b);
    pm_coord_mem_destroy(&store);
}

/* Two candidates read the same revision and CAS to the next epoch: exactly
 * one wins, in either order, and the loser is handed the winner's record. */
static void
test_cas_race(void **state)
{
    (void) state;
    for (int order = 0; order < 2; order++) {
        pm_coord_mem_t *store = pm_coord_mem_new();
        pm_coord_t *owner = s_client(store), *b = s_client(store), *c = s_client(store);
        pm_coord_record_t r0 = s_rec("s", "a", 1, 4, "b:2,c:3");
        pm_coord_create(owner, &r0);
        pm_coord_result_t *r = s_next(owner);
        int64_t rev = r->records[0].revision;
        pm_coord_result_destroy(&r);

        pm_coord_record_t tb = s_rec("s", "b", 2, 5, "c:3");
        pm_coord_record_t tc = s_rec("s", "c", 3, 5, "b:2");
        pm_coord_t *first = order ? c : b, *second = order ? b : c;
        pm_coord_cas(first, rev, order ? &tc : &tb);
        pm_coord_cas(second, rev, order ? &tb : &tc);
        pm_coord_result_t *r1 = s_next(first), *r2 = s_next(second);
        assert_int_equal(r1->status, PM_COORD_OK);
        assert_int_equal(r2->status, PM_COORD_CONFLICT);
        assert_int_equal(r2->n_records, 1);
        assert_true(pm_coord_record_same(&r2->records[0], &r1->records[0]));
        assert_int_equal(r2->records[0].revision, r1->records[0].revision);
        assert_int_equal(r2->records[0].epoch, 5);
        assert_true(r1->records[0].revision > rev);
        pm_coord_result_destroy(&r1);
        pm_coord_result_destroy(&r2);

        /* The loser retries from the revision it was handed: it wins epoch 6. */
        pm_coord_record_t again = order ? tb : tc;
        again.epoch = 6;
        r = s_call_get(second, "s");
        int64_t cur = r->records[0].revision;
        pm_coord_result_destroy(&r);
        pm_coord_cas(second, cur, &again);
        r = s_next(second);
        assert_int_equal(r->status, PM_COORD_OK);
        assert_int_equal(r->records[0].epoch, 6);
        pm_coord_result_destroy(&r);
        pm_coord_destroy(&owner);
        pm_coord_destroy(&b);
        pm_coord_destroy(&c);
        pm_coord_mem_destroy(&store);
    }
}

/* The owner drops backup b from the in-sync set while b takes over, both
 * from the same revision: exactly one CAS wins. If the shrink wins, b is no
 * longer in the recorded set (it may not take over: R3); if the takeover
 * wins, the owner sees the higher epoch (it stops: R4). */
static void
test_shrink_vs_takeover(void **state)
{
    (void) state;
    for (int order = 0; order < 2; order++) {
        pm_coord_mem_t *store = pm_coord_mem_new();
        pm_coord_t *a = s_client(store), *b = s_client(store);
        pm_coord_record_t r0 = s_rec("s", "a", 1, 3, "b:2,c:3");
        pm_coord_create(a, &r0);
        pm_coord_result_t *r = s_next(a);
        int64_t rev = r->records[0].revision;
        pm_coord_result_destroy(&r);

        pm_coord_record_t shrink = s_rec("s", "a", 1, 3, "c:3");
        pm_coord_record_t takeover = s_rec("s", "b", 2, 4, "c:3");
        if (order == 0) {
            pm_coord_cas(a, rev, &shrink);
            pm_coord_cas(b, rev, &takeover);
        } else {
            pm_coord_cas(b, rev, &takeover);
            pm_coord_cas(a, rev, &shrink);
        }
        pm_coord_result_t *ra = s_next(a), *rb = s_next(b);
        assert_int_equal((ra->status == PM_COORD_OK) + (rb->status == PM_COORD_OK), 1);
        if (order == 0) {
            assert_int_equal(ra->status, PM_COORD_OK);
            assert_int_equal(rb->status, PM_COORD_CONFLICT);
            const pm_coord_record_t *cur = &rb->records[0];
            assert_int_equal(cur->epoch, 3);
            for (size_t i = 0; i < cur->n_in_sync; i++)
                assert_string_not_equal(cur->in_sync[i].node, "b");
        } else {
            assert_int_equal(rb->status, PM_COORD_OK);
            assert_int_equal(ra->status, PM_COORD_CONFLICT);
            assert_int_equal(ra->records[0].epoch, 4);
            assert_string_equal(ra->records[0].owner, "b");
        }
        pm_coord_result_destroy(&ra);
        pm_coord_result_destroy(&rb);
        pm_coord_destroy(&a);
        pm_coord_destroy(&b);
        pm_coord_mem_destroy(&store);
    }
}

/* ---- watches ------------------------------------------------------------------ */

/* Takes n EVENTs from w and checks their revisions climb by one from rev. */
static void
s_expect_events(pm_coord_t *w, uint64_t id, int64_t rev, int n)
{
    for (int i = 0; i < n; i++) {
        pm_coord_result_t *r = s_next(w);
        assert_int_equal(r->req, id);
        if (r->kind != PM_COORD_EVENT)
            fail_msg("expected EVENT %d at %lld, got %s", i, (long long) (rev + i),
                     pm_coord_kind_name(r->kind));
        assert_int_equal(r->revision, rev + i);
        assert_int_equal(r->n_records, 1);
        assert_int_equal(r->records[0].revision, rev + i);
        pm_coord_result_destroy(&r);
    }
}

static void
test_watch_in_order(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *w = s_client(store), *a = s_client(store);
    pm_coord_record_t pre = s_rec("old", "a", 1, 1, "");
    pm_coord_mem_put(store, &pre); /* before the watch: not seen */
    uint64_t id = pm_coord_watch(w, 0);
    pm_coord_result_t *r = s_next(w);
    assert_int_equal(r->kind, PM_COORD_WATCH);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_int_equal(r->revision, 1);
    pm_coord_result_destroy(&r);
    s_none(w);

    pm_coord_record_t r1 = s_rec("s", "a", 1, 1, "b:2");
    pm_coord_create(a, &r1);
    r = s_next(a);
    pm_coord_cas(a, r->records[0].revision, &(pm_coord_record_t){0}); /* malformed: 0 */
    pm_coord_record_t r2 = s_rec("s", "a", 1, 1, "");
    pm_coord_cas(a, r->records[0].revision, &r2);
    pm_coord_result_destroy(&r);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);
    pm_coord_record_t r3 = s_rec("t", "x", 9, 1, "");
    pm_coord_mem_put(store, &r3);
    pm_coord_mem_delete(store, "s");

    r = s_next(w);
    assert_int_equal(r->kind, PM_COORD_EVENT);
    assert_int_equal(r->req, id);
    assert_int_equal(r->revision, 2);
    assert_true(pm_coord_record_same(&r->records[0], &r1));
    assert_false(r->deleted);
    pm_coord_result_destroy(&r);
    r = s_next(w);
    assert_int_equal(r->revision, 3);
    assert_true(pm_coord_record_same(&r->records[0], &r2));
    pm_coord_result_destroy(&r);
    r = s_next(w);
    assert_int_equal(r->revision, 4);
    assert_string_equal(r->records[0].space, "t");
    pm_coord_result_destroy(&r);
    r = s_next(w);
    assert_int_equal(r->revision, 5);
    assert_true(r->deleted);
    assert_string_equal(r->records[0].space, "s");
    pm_coord_result_destroy(&r);
    s_none(w);

    /* A second watch from revision 1 replays the whole history. */
    uint64_t id2 = pm_coord_watch(w, 1);
    r = s_next(w);
    assert_int_equal(r->kind, PM_COORD_WATCH);
    pm_coord_result_destroy(&r);
    s_expect_events(w, id2, 1, 5);
    s_none(w);
    pm_coord_stats_t st;
    pm_coord_stats(w, &st);
    assert_int_equal(st.events, 9);
    pm_coord_destroy(&w);
    pm_coord_destroy(&a);
    pm_coord_mem_destroy(&store);
}

/* Compare-and-delete: only at the revision read; a moved record is a
 * CONFLICT carrying the current one, an absent one NOT_FOUND; the watch
 * reports the deletion, a list no longer carries it, and the space can be
 * created again (a deleted record is like one never created). Cut off, the
 * delete answers UNAVAILABLE and deletes nothing. */
static void
test_delete(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *w = s_client(store);
    uint64_t wid = pm_coord_watch(w, 0);
    pm_coord_result_t *r = s_next(w);
    assert_int_equal(r->kind, PM_COORD_WATCH);
    pm_coord_result_destroy(&r);

    assert_int_equal(pm_coord_delete(a, "s", 0), 0); /* no revision: programmer error */
    assert_int_equal(pm_coord_delete(a, "a/b", 1), 0);
    uint64_t id = pm_coord_delete(a, "s", 1);
    r = s_next(a);
    assert_int_equal(r->req, id);
    assert_int_equal(r->kind, PM_COORD_DELETE);
    assert_int_equal(r->status, PM_COORD_NOT_FOUND);
    pm_coord_result_destroy(&r);

    pm_coord_record_t r1 = s_rec("s", "a", 1, 1, "");
    pm_coord_create(a, &r1);
    r = s_next(a);
    int64_t rev1 = r->records[0].revision;
    pm_coord_result_destroy(&r);
    pm_coord_record_t r2 = s_rec("s", "a", 1, 1, "b:2");
    pm_coord_cas(a, rev1, &r2);
    r = s_next(a);
    int64_t rev2 = r->records[0].revision;
    pm_coord_result_destroy(&r);

    /* At a stale revision: nothing deleted, the current record handed back. */
    pm_coord_delete(a, "s", rev1);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_CONFLICT);
    assert_int_equal(r->n_records, 1);
    assert_true(pm_coord_record_same(&r->records[0], &r2));
    assert_int_equal(r->records[0].revision, rev2);
    pm_coord_result_destroy(&r);
    assert_int_equal(pm_coord_mem_revision(store), rev2);

    /* Cut off: UNAVAILABLE, nothing deleted. */
    pm_coord_mem_set_available(a, 0);
    pm_coord_delete(a, "s", rev2);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_UNAVAILABLE);
    pm_coord_result_destroy(&r);
    pm_coord_mem_set_available(a, 1);
    r = s_call_get(a, "s");
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);

    /* At the current revision: deleted. */
    pm_coord_delete(a, "s", rev2);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_int_equal(r->n_records, 0);
    assert_int_equal(r->revision, rev2 + 1);
    pm_coord_result_destroy(&r);
    r = s_call_get(a, "s");
    assert_int_equal(r->status, PM_COORD_NOT_FOUND);
    pm_coord_result_destroy(&r);
    pm_coord_list(a);
    r = s_next(a);
    assert_int_equal(r->n_records, 0);
    pm_coord_result_destroy(&r);
    /* Again: it is gone. A CAS on it: NOT_FOUND. */
    pm_coord_delete(a, "s", rev2);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_NOT_FOUND);
    pm_coord_result_destroy(&r);
    pm_coord_cas(a, rev2, &r2);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_NOT_FOUND);
    pm_coord_result_destroy(&r);

    /* The watch: create, cas, delete, in order. */
    s_expect_events(w, wid, rev1, 2);
    r = s_next(w);
    assert_int_equal(r->kind, PM_COORD_EVENT);
    assert_int_equal(r->revision, rev2 + 1);
    assert_true(r->deleted);
    assert_string_equal(r->records[0].space, "s");
    pm_coord_result_destroy(&r);
    s_none(w);

    /* Like one never created: create succeeds again. */
    pm_coord_create(a, &r1);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);

    pm_coord_stats_t st;
    pm_coord_stats(a, &st);
    assert_int_equal(st.conflicts, 1);
    assert_int_equal(st.not_found, 4);
    assert_int_equal(st.unavailable, 1);
    pm_coord_destroy(&a);
    pm_coord_destroy(&w);
    pm_coord_mem_destroy(&store);
}

/* The store's crash: what it applied before crashing stays applied though
 * the answer is lost (UNAVAILABLE, at once or after the timeout, never the
 * original and never twice); watch news of it gets out; the state survives. */
static void
test_crash_keeps_applied_writes(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *b = s_client(store);
    pm_coord_record_t r0 = s_rec("s", "a", 1, 1, "b:2");
    pm_coord_create(a, &r0);
    pm_coord_result_t *r = s_next(a);
    int64_t rev = r->records[0].revision;
    pm_coord_result_destroy(&r);
    uint64_t wid = pm_coord_watch(b, rev + 1);
    r = s_next(b);
    assert_int_equal(r->req, wid);
    pm_coord_result_destroy(&r);
    int applied = 0, tries = 0;
    pm_coord_mem_seed(store, 42);
    /* Until one CAS is applied in a hang (one chance in two each time). */
    while (!applied && tries++ < 40) {
        pm_coord_mem_hang(store);
        pm_coord_record_t t = s_rec("s", "a", 1, 1, "");
        t.epoch = (uint64_t) (10 + tries);
        int64_t before = pm_coord_mem_revision(store);
        uint64_t id = pm_coord_cas(a, before, &t);
        uint64_t gid = pm_coord_get(a, "s");
        s_none(a); /* hung: nothing answers */
        applied = pm_coord_mem_revision(store) > before;
        pm_coord_mem_crash(store, 1500);
        /* Each answer once: UNAVAILABLE now, or after the timeout. */
        int got = 0;
        for (int ms = 0; ms <= 1500 && got < 2; ms += 100) {
            while (pm_coord_recv(a, &r) == 0 && r) {
                assert_true(r->req == id || r->req == gid);
                assert_int_equal(r->status, PM_COORD_UNAVAILABLE);
                got++;
                pm_coord_result_destroy(&r);
            }
            pm_coord_mem_advance(store, 100);
        }
        assert_int_equal(got, 2);
        s_none(a);
        assert_int_equal(pm_coord_mem_unbalanced(a), 0);
        if (applied) { /* the watch saw it; the record holds it */
            r = s_next(b);
            assert_int_equal(r->kind, PM_COORD_EVENT);
            assert_int_equal(r->records[0].epoch, t.epoch);
            pm_coord_result_destroy(&r);
        }
        s_none(b);
    }
    assert_true(applied);
    r = s_call_get(a, "s"); /* a re-read shows what the lost answer hid */
    assert_int_equal(r->status, PM_COORD_OK);
    assert_int_equal(r->records[0].epoch, (uint64_t) (10 + tries));
    pm_coord_result_destroy(&r);
    pm_coord_mem_crash_stats_t cs;
    pm_coord_mem_crash_stats(store, &cs);
    assert_int_equal(cs.crashes, (uint64_t) tries);
    assert_int_equal(cs.writes_lost, 1);
    assert_int_equal(cs.answers_lost, 2 * (uint64_t) tries);
    pm_coord_destroy(&a);
    pm_coord_destroy(&b);
    pm_coord_mem_destroy(&store);
}

/* Cut off: requests answer UNAVAILABLE and change nothing, the watch says it
 * broke; changes made meanwhile arrive, in order, once it is back. */
static void
test_unavailable_then_recovery(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *b = s_client(store);
    pm_coord_record_t r0 = s_rec("s", "a", 1, 1, "b:2");
    pm_coord_create(a, &r0);
    pm_coord_result_t *r = s_next(a);
    int64_t rev = r->records[0].revision;
    pm_coord_result_destroy(&r);
    uint64_t wid = pm_coord_watch(a, rev + 1);
    r = s_next(a);
    assert_int_equal(r->kind, PM_COORD_WATCH);
    pm_coord_result_destroy(&r);

    pm_coord_mem_set_available(a, 0);
    r = s_next(a);
    assert_int_equal(r->kind, PM_COORD_WATCH);
    assert_int_equal(r->req, wid);
    assert_int_equal(r->status, PM_COORD_UNAVAILABLE);
    pm_coord_result_destroy(&r);

    pm_coord_record_t shrink = s_rec("s", "a", 1, 1, "");
    pm_coord_cas(a, rev, &shrink);
    r = s_next(a);
    assert_int_equal(r->kind, PM_COORD_CAS);
    assert_int_equal(r->status, PM_COORD_UNAVAILABLE);
    assert_true(r->message[0] != 0);
    pm_coord_result_destroy(&r);
    assert_int_equal(pm_coord_mem_revision(store), rev); /* not applied */
    r = s_call_get(a, "s");
    assert_int_equal(r->status, PM_COORD_UNAVAILABLE);
    pm_coord_result_destroy(&r);
    uint64_t wid2 = pm_coord_watch(a, 0); /* asked while cut off */
    r = s_next(a);
    assert_int_equal(r->req, wid2);
    assert_int_equal(r->status, PM_COORD_UNAVAILABLE);
    pm_coord_result_destroy(&r);

    /* b takes over meanwhile, then changes its set. */
    pm_coord_record_t t = s_rec("s", "b", 2, 2, "");
    pm_coord_cas(b, rev, &t);
    r = s_next(b);
    assert_int_equal(r->status, PM_COORD_OK);
    t.n_in_sync = 0;
    pm_coord_cas(b, r->records[0].revision, &t);
    pm_coord_result_destroy(&r);
    r = s_next(b);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);
    s_none(a);

    pm_coord_mem_set_available(a, 1);
    /* Watch 1: back, then both changes. */
    r = s_next(a);
    assert_int_equal(r->kind, PM_COORD_WATCH);
    assert_int_equal(r->req, wid);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);
    s_expect_events(a, wid, rev + 1, 2);
    /* Watch 2 (from "now" when asked): back, nothing missed since. */
    r = s_next(a);
    assert_int_equal(r->req, wid2);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);
    s_expect_events(a, wid2, rev + 1, 2);
    s_none(a);

    /* a's CAS from its stale revision now loses, showing the takeover. */
    pm_coord_cas(a, rev, &shrink);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_CONFLICT);
    assert_int_equal(r->records[0].epoch, 2);
    pm_coord_result_destroy(&r);
    pm_coord_stats_t st;
    pm_coord_stats(a, &st);
    assert_int_equal(st.unavailable, 2);
    assert_int_equal(st.watch_breaks, 2);
    pm_coord_destroy(&a);
    pm_coord_destroy(&b);
    pm_coord_mem_destroy(&store);
}

static void
test_delay(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *b = s_client(store);
    pm_coord_mem_set_delay(a, 50);
    pm_coord_record_t r0 = s_rec("s", "a", 1, 1, "");
    uint64_t i1 = pm_coord_create(a, &r0);
    uint64_t i2 = pm_coord_get(a, "s");
    s_none(a);
    /* Applied when asked (b sees it at once), answered later. */
    pm_coord_result_t *r = s_call_get(b, "s");
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);
    pm_coord_mem_advance(store, 49);
    s_none(a);
    zmq_pollitem_t item = {pm_coord_socket(a), 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&item, 1, 0), 0);
    pm_coord_mem_advance(store, 1);
    assert_int_equal(zmq_poll(&item, 1, 0), 1); /* the socket wakes a reactor */
    assert_true(pm_coord_fd(a) >= 0);
    r = s_next(a);
    assert_int_equal(r->req, i1);
    pm_coord_result_destroy(&r);
    r = s_next(a);
    assert_int_equal(r->req, i2);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);
    /* Answers still queued at destroy are freed (ASan checks). */
    pm_coord_get(a, "s");
    pm_coord_destroy(&a);
    pm_coord_destroy(&b);
    pm_coord_mem_destroy(&store);
}

/* The history a watch needs is compacted away while it is cut off: it gets
 * the whole list (RESYNC), then the changes after it. */
static void
test_compaction_resync(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *w = s_client(store);
    uint64_t id = pm_coord_watch(w, 0);
    pm_coord_result_t *r = s_next(w);
    pm_coord_result_destroy(&r);
    pm_coord_mem_set_available(w, 0);
    r = s_next(w);
    pm_coord_result_destroy(&r);
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        pm_coord_record_t x = s_rec(name, "a", 1, 1, "");
        pm_coord_mem_put(store, &x);
    }
    pm_coord_mem_delete(store, "s0");
    pm_coord_mem_compact(store, 3);
    pm_coord_mem_set_available(w, 1);
    r = s_next(w);
    assert_int_equal(r->kind, PM_COORD_WATCH);
    pm_coord_result_destroy(&r);
    r = s_next(w);
    assert_int_equal(r->kind, PM_COORD_RESYNC);
    assert_int_equal(r->req, id);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_int_equal(r->revision, 4);
    assert_int_equal(r->n_records, 2);
    pm_coord_result_destroy(&r);
    s_none(w);
    pm_coord_record_t y = s_rec("s9", "a", 1, 1, "");
    pm_coord_mem_put(store, &y);
    s_expect_events(w, id, 5, 1);
    /* A watch asked from a compacted revision resyncs at once. */
    uint64_t id2 = pm_coord_watch(w, 2);
    r = s_next(w);
    assert_int_equal(r->kind, PM_COORD_WATCH);
    pm_coord_result_destroy(&r);
    r = s_next(w);
    assert_int_equal(r->kind, PM_COORD_RESYNC);
    assert_int_equal(r->req, id2);
    assert_int_equal(r->n_records, 3);
    pm_coord_result_destroy(&r);
    pm_coord_stats_t st;
    pm_coord_stats(w, &st);
    assert_int_equal(st.resyncs, 2);
    pm_coord_destroy(&w);
    pm_coord_mem_destroy(&store);
}

/* Malformed data in the store is BAD with a message, never a crash. */
static void
test_bad_data(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store);
    pm_coord_watch(a, 0);
    pm_coord_result_t *r = s_next(a);
    pm_coord_result_destroy(&r);
    pm_coord_record_t good = s_rec("good", "a", 1, 1, "");
    pm_coord_mem_put(store, &good);
    int64_t rev = pm_coord_mem_put_raw(store, "s", "{\"v\":1,\"space\":\"other\"}");
    s_expect_events(a, 1, 1, 1);
    r = s_next(a);
    assert_int_equal(r->kind, PM_COORD_EVENT);
    assert_int_equal(r->status, PM_COORD_BAD);
    assert_int_equal(r->revision, rev);
    assert_string_equal(r->records[0].space, "s");
    assert_non_null(strstr(r->message, "another space"));
    pm_coord_result_destroy(&r);

    r = s_call_get(a, "s");
    assert_int_equal(r->status, PM_COORD_BAD);
    assert_true(r->message[0] != 0);
    pm_coord_result_destroy(&r);
    pm_coord_record_t x = s_rec("s", "a", 1, 2, "");
    pm_coord_cas(a, rev, &x);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_BAD);
    pm_coord_result_destroy(&r);
    pm_coord_list(a);
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_BAD);
    assert_int_equal(r->n_records, 1); /* the good one is still there */
    assert_string_equal(r->records[0].space, "good");
    pm_coord_result_destroy(&r);
    pm_coord_stats_t st;
    pm_coord_stats(a, &st);
    assert_int_equal(st.bad, 4);
    pm_coord_destroy(&a);
    pm_coord_mem_destroy(&store);
}

/* ---- the etcd backend without etcd --------------------------------------------- */

/* Waits up to ms for a completion on c. */
static pm_coord_result_t *
s_wait(pm_coord_t *c, int64_t ms)
{
    int64_t until = pm_mono_ms() + ms;
    pm_coord_result_t *r = NULL;
    while (pm_coord_recv(c, &r) != 0) {
        int64_t left = until - pm_mono_ms();
        if (left <= 0)
            return NULL;
        zmq_pollitem_t item = {pm_coord_socket(c), 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, (long) left);
    }
    return r;
}

/* Nothing listens on port 1 of loopback: every request is UNAVAILABLE well
 * within its timeout; the watch says it broke; destroy does not hang. */
static void
test_etcd_unreachable(void **state)
{
    (void) state;
    pm_coord_config_t cfg = {.url = "etcd://127.0.0.1:1,127.0.0.1:1",
                             .prefix = "/pmesh/unit",
                             .request_timeout_ms = 1500,
                             .connect_timeout_ms = 300};
    char err[256];
    pm_coord_t *c = pm_coord_new(&cfg, err, sizeof err);
    assert_non_null(c);
    int64_t t0 = pm_mono_ms();
    uint64_t g = pm_coord_get(c, "s");
    pm_coord_record_t rec = s_rec("s", "a", 1, 1, "b:2");
    uint64_t k = pm_coord_cas(c, 5, &rec);
    uint64_t w = pm_coord_watch(c, 0);
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        pm_coord_result_t *r = s_wait(c, 3000);
        assert_non_null(r);
        assert_int_equal(r->status, PM_COORD_UNAVAILABLE);
        assert_true(r->message[0] != 0);
        if (r->req == g)
            seen |= 1;
        else if (r->req == k)
            seen |= 2, assert_non_null(strstr(r->message, "may or may not"));
        else if (r->req == w)
            seen |= 4, assert_int_equal(r->kind, PM_COORD_WATCH);
        pm_coord_result_destroy(&r);
    }
    assert_int_equal(seen, 7);
    assert_true(pm_mono_ms() - t0 < 1500 + 500);
    pm_coord_stats_t st;
    pm_coord_stats(c, &st);
    assert_int_equal(st.unavailable, 2);
    assert_int_equal(st.watch_breaks, 1);
    pm_coord_destroy(&c);
    assert_null(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_json),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_create_if_absent),
        cmocka_unit_test(test_cas_race),
        cmocka_unit_test(test_shrink_vs_takeover),
        cmocka_unit_test(test_watch_in_order),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_unavailable_then_recovery),
        cmocka_unit_test(test_crash_keeps_applied_writes),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_compaction_resync),
        cmocka_unit_test(test_bad_data),
        cmocka_unit_test(test_etcd_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
