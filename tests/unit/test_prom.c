/*
 * test_prom.c - the agent's typed status snapshot (node/stats.c) and its
 * Prometheus text (node/prom.c): every field of the snapshot has its metric
 * (enumerated from the tables in stats.h), the text is well formed
 * (families once and together, histograms cumulative), the JSON and the
 * metrics agree, and the packed form round-trips and refuses another layout.
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
#include "prom.h"
#include "stats.h"

/* What stmt wrote to f, as a string the caller frees. */
#define CAPTURE(text, stmt)                                                                        \
    do {                                                                                           \
        size_t len_ = 0;                                                                           \
        FILE *f = open_memstream(&(text), &len_);                                                  \
        assert_non_null(f);                                                                        \
        stmt;                                                                                      \
        fclose(f);                                                                                 \
    } while (0)

/* The tables of stats.h as data (stats.c expands them): the scalars, and
 * each list by its label key. */
#define NROWS pm_stats_n_scalars
#define N(a) (sizeof(a) / sizeof((a)[0]))

static const pm_stats_list_t *
s_list(const char *key)
{
    for (size_t l = 0; l < pm_stats_n_lists; l++)
        if (!strcmp(pm_stats_lists[l].key, key))
            return &pm_stats_lists[l];
    fail_msg("no list %s", key);
    return NULL;
}

static uint64_t *
s_u64(void *base, size_t offset)
{
    return (uint64_t *) ((char *) base + offset);
}

/* A snapshot with every part, every list non-empty and every number
 * distinct (booleans 1), so a sample read from the wrong field shows. */
static void
s_full(pm_stats_t *st)
{
    memset(st, 0, sizeof *st);
    st->parts = PM_STATS_CORE | PM_STATS_MESH | PM_STATS_WAL | PM_STATS_FSYNC | PM_STATS_REPL |
                PM_STATS_COORD;
    st->node = pm_stats_str("a");
    st->version = pm_stats_str("9.9");
    st->id_space = pm_stats_str("a-x1");
    st->coord_desc = pm_stats_str("");
    st->co_store = pm_stats_str("mem://");
    st->co_prefix = pm_stats_str("/pm");
    st->co_node = pm_stats_str("a");
    st->co_pid = pm_stats_str("42");
    for (size_t i = 0; i < NROWS; i++)
        *s_u64(st, pm_stats_scalars[i].offset) = pm_stats_scalars[i].is_bool ? 1 : 1000 + 7 * i;
    for (int s = 0; s < PM_STATS_NSTATES; s++)
        st->promises[s] = 50 + s;
    for (int t = 0; t < PM_MSG_TYPE_COUNT; t++) {
        st->ops_ok[t] = 200 + t;
        st->ops_error[t] = 300 + t;
    }
    pm_hist_add(&st->op_ms[PM_MSG_CREATE], 0.05);
    pm_hist_add(&st->op_ms[PM_MSG_CREATE], 3);
    pm_hist_add(&st->op_ms[PM_MSG_CREATE], 99999);
    pm_hist_add(&st->wal_fsync, 0.7);
    pm_stats_fn_t *fn = pm_stats_add_fn(st, "resize \"img\"");
    const pm_stats_list_t *l = s_list("function");
    for (size_t i = 0; i < l->n_rows; i++)
        *s_u64(fn, l->rows[i].offset) = 400 + i;
    pm_stats_backup_t *b = pm_stats_add_backup(st, "b");
    l = s_list("node");
    for (size_t i = 0; i < l->n_rows; i++)
        *s_u64(b, l->rows[i].offset) = 500 + i;
    b->counted = 1;
    pm_stats_space_t *sp = pm_stats_add_space(st, "c-x2", "a");
    sp->in_sync = calloc(3, sizeof *sp->in_sync);
    sp->in_sync[0] = pm_stats_str("a");
    sp->in_sync[1] = pm_stats_str("b");
    sp->n_in_sync = 2;
    sp->epoch = 600;
    sp->ours = 1;
    pm_stats_kind_t *k = pm_stats_add_kind(st, "swim_ping");
    l = s_list("type");
    for (size_t i = 0; i < l->n_rows; i++)
        *s_u64(k, l->rows[i].offset) = 700 + i;
}

/* The value of the sample named exactly `sample` ("name{labels}") in text;
 * fails the test when absent. */
static double
s_sample(const char *text, const char *sample)
{
    size_t n = strlen(sample);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, sample, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    fail_msg("no sample %s", sample);
    return -1;
}

static void
s_name(char *buf, size_t cap, const char *family, const char *label)
{
    if (label)
        snprintf(buf, cap, "%s{%s}", family, label);
    else
        snprintf(buf, cap, "%s", family);
}

static void
test_label_value_escapes(void **state)
{
    (void) state;
    char *t = NULL;
    CAPTURE(t, pm_prom_label_value(f, "a\\b\"c\nd"));
    assert_string_equal(t, "a\\\\b\\\"c\\nd");
    free(t);
}

static void
test_histogram_seconds(void **state)
{
    (void) state;
    pm_hist_t h = {0};
    pm_hist_add(&h, 0.05); /* first bucket (<= 0.1 ms) */
    pm_hist_add(&h, 0.2);
    pm_hist_add(&h, 1499.75);
    char *t = NULL;
    CAPTURE(t, pm_prom_histogram(f, "x", "op=\"get\"", &h));
    assert_non_null(strstr(t, "x_bucket{op=\"get\",le=\"0.0001\"} 1\n"));
    assert_non_null(strstr(t, "x_bucket{op=\"get\",le=\"0.00025\"} 2\n"));
    assert_non_null(strstr(t, "x_bucket{op=\"get\",le=\"1\"} 2\n"));
    assert_non_null(strstr(t, "x_bucket{op=\"get\",le=\"2.5\"} 3\n"));
    assert_non_null(strstr(t, "x_bucket{op=\"get\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(t, "x_sum{op=\"get\"} 1.5\n"));
    assert_non_null(strstr(t, "x_count{op=\"get\"} 3\n"));
    free(t);
    CAPTURE(t, pm_prom_histogram(f, "y", NULL, &h));
    assert_non_null(strstr(t, "y_bucket{le=\"0.0001\"} 1\n"));
    assert_non_null(strstr(t, "y_sum 1.5\ny_count 3\n"));
    free(t);
}

/* The struct holds nothing but what the tables declare (plus the names and
 * the per-type arrays listed here): a field added by hand, without a row and
 * so without a metric, changes its size and fails here. The proto messages
 * have exactly the rows' fields too. */
static void
test_struct_is_the_tables(void **state)
{
    (void) state;
    struct mirror {
        uint32_t parts;
        char *node, *version, *id_space, *coord_desc, *co_store, *co_prefix, *co_node, *co_pid;
#define X(f, ...) uint64_t f;
        PM_STATS_SCALARS(X)
#undef X
        uint64_t promises[PM_STATS_NSTATES];
        uint64_t ops_ok[PM_MSG_TYPE_COUNT], ops_error[PM_MSG_TYPE_COUNT];
        pm_hist_t op_ms[PM_MSG_TYPE_COUNT];
        pm_hist_t wal_fsync;
        void *kinds;
        size_t n_kinds;
        void *backups;
        size_t n_backups;
        void *spaces;
        size_t n_spaces;
        void *fns;
        size_t n_fns;
    };
    assert_int_equal(sizeof(pm_stats_t), sizeof(struct mirror));
    size_t n_fn = s_list("function")->n_rows, n_backup = s_list("node")->n_rows,
           n_space = s_list("space")->n_rows, n_kind = s_list("type")->n_rows;
    assert_int_equal(pm_stats_n_lists, 4);
    assert_int_equal(sizeof(pm_stats_fn_t), sizeof(char *) + n_fn * sizeof(uint64_t));
    assert_int_equal(sizeof(pm_stats_backup_t), sizeof(char *) + n_backup * sizeof(uint64_t));
    assert_int_equal(sizeof(pm_stats_space_t), 3 * sizeof(char *) + n_space * sizeof(uint64_t));
    assert_int_equal(sizeof(pm_stats_kind_t), sizeof(char *) + n_kind * sizeof(uint64_t));
    /* The data tables are the X-macro tables, row for row. */
    size_t n = 0;
#define X(f, ...) assert_string_equal(pm_stats_scalars[n++].field, #f);
    PM_STATS_SCALARS(X)
#undef X
    assert_int_equal(n, NROWS);
    /* The wire: 19 fields besides the scalars (schema, parts, 8 names,
     * promises, ops x2, op_ms, wal_fsync, 4 lists); each item its name(s). */
    assert_int_equal(pmesh__stats__descriptor.n_fields, 19 + NROWS);
    assert_int_equal(pmesh__stats_function__descriptor.n_fields, 1 + n_fn);
    assert_int_equal(pmesh__stats_backup__descriptor.n_fields, 1 + n_backup);
    assert_int_equal(pmesh__stats_space__descriptor.n_fields, 3 + n_space);
    assert_int_equal(pmesh__stats_kind__descriptor.n_fields, 1 + n_kind);
    /* Field names are the metric's key on the wire, and unique. */
    for (size_t i = 0; i < NROWS; i++) {
        assert_non_null(protobuf_c_message_descriptor_get_field_by_name(&pmesh__stats__descriptor,
                                                                        pm_stats_scalars[i].field));
        for (size_t j = i + 1; j < NROWS; j++)
            assert_string_not_equal(pm_stats_scalars[i].path, pm_stats_scalars[j].path);
    }
}

/* Every scalar of the snapshot is in /metrics under its family and label
 * with its value; every item field of every list too. */
static void
test_every_field_has_its_metric(void **state)
{
    (void) state;
    pm_stats_t st;
    s_full(&st);
    char *t = NULL;
    CAPTURE(t, pm_prom_stats(f, &st));
    char name[256], head[256];
    for (size_t i = 0; i < NROWS; i++) {
        const pm_stats_row_t *r = &pm_stats_scalars[i];
        s_name(name, sizeof name, r->family, r->label);
        double want = (double) *s_u64(&st, r->offset) / (double) r->div;
        double got = s_sample(t, name);
        assert_true(got > want - 0.0005 && got < want + 0.0005);
        snprintf(head, sizeof head, "# TYPE %s %s\n", r->family, r->mtype);
        assert_non_null(strstr(t, head));
        snprintf(head, sizeof head, "# HELP %s ", r->family);
        const char *help = strstr(t, head);
        assert_non_null(help);
        assert_true(help[strlen(head)] != '\n'); /* the family's first row has its help */
    }
    /* Each list's one item (named so that escaping shows). */
    const char *items[] = {"swim_ping", "b", "c-x2", "resize \\\"img\\\""};
    assert_int_equal(pm_stats_n_lists, N(items));
    for (size_t l = 0; l < pm_stats_n_lists; l++) {
        const pm_stats_list_t *list = &pm_stats_lists[l];
        assert_int_equal(pm_stats_list_len(&st, list), 1);
        for (size_t i = 0; i < list->n_rows; i++) {
            const pm_stats_row_t *r = &list->rows[i];
            if (!r->label)
                snprintf(name, sizeof name, "%s{%s=\"%s\"}", r->family, list->key, items[l]);
            else if (list->row_first)
                snprintf(name, sizeof name, "%s{%s,%s=\"%s\"}", r->family, r->label, list->key,
                         items[l]);
            else
                snprintf(name, sizeof name, "%s{%s=\"%s\",%s}", r->family, list->key, items[l],
                         r->label);
            assert_int_equal((uint64_t) s_sample(t, name), pm_stats_item(&st, list, 0, r));
        }
    }
    for (int s = 0; s < PM_STATS_NSTATES; s++) {
        snprintf(name, sizeof name, "pmesh_promises{state=\"%s\"}",
                 pm_state_name(PM_STATE_PENDING + s));
        assert_int_equal((uint64_t) s_sample(t, name), st.promises[s]);
    }
    for (int ty = 0; ty < PM_MSG_TYPE_COUNT; ty++) {
        if (!pm_stats_op_shown(ty))
            continue;
        snprintf(name, sizeof name, "pmesh_operations_total{type=\"%s\",result=\"ok\"}",
                 pm_wire_type_name(ty));
        assert_int_equal((uint64_t) s_sample(t, name), st.ops_ok[ty]);
        snprintf(name, sizeof name, "pmesh_operations_total{type=\"%s\",result=\"error\"}",
                 pm_wire_type_name(ty));
        assert_int_equal((uint64_t) s_sample(t, name), st.ops_error[ty]);
    }
    assert_int_equal(s_sample(t, "pmesh_operation_duration_seconds_count{type=\"create\"}"), 3);
    assert_int_equal(s_sample(t, "pmesh_wal_fsync_duration_seconds_count"), 1);
    assert_int_equal(s_sample(t, "pmesh_info{node=\"a\",version=\"9.9\",id_space=\"a-x1\","
                                 "coordination=\"\"}"),
                     1);
    assert_int_equal(s_sample(t, "pmesh_coordination_info{store=\"mem://\",prefix=\"/pm\","
                                 "node=\"a\",pid=\"42\"}"),
                     1);
    free(t);
    pm_stats_clear(&st);
}

/* The text parses as exposition format 0.0.4: every family TYPE'd once,
 * its samples right after it; histograms' buckets rise to +Inf == _count. */
static void
test_text_well_formed(void **state)
{
    (void) state;
    pm_stats_t st;
    s_full(&st);
    char *t = NULL;
    CAPTURE(t, pm_prom_stats(f, &st));
    char family[128] = "", type[32] = "";
    char *save = NULL;
    char seen[8192] = " ";
    double last_bucket = -1, last_le = -1;
    size_t samples = 0;
    for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line, "# TYPE %127s %31s", family, type), 2);
            char key[140];
            snprintf(key, sizeof key, " %s ", family);
            assert_null(strstr(seen, key)); /* a family appears once */
            strncat(seen, key + 1, sizeof seen - strlen(seen) - 1);
            assert_true(!strcmp(type, "gauge") || !strcmp(type, "counter") ||
                        !strcmp(type, "histogram"));
            last_bucket = last_le = -1;
            continue;
        }
        samples++;
        size_t fl = strlen(family);
        assert_true(fl && strncmp(line, family, fl) == 0);
        const char *rest = line + fl;
        if (!strcmp(type, "histogram")) {
            if (!strncmp(rest, "_bucket{", 8)) {
                const char *le = strstr(rest, "le=\"");
                assert_non_null(le);
                double v = strtod(strrchr(line, ' ') + 1, NULL);
                double bound = strncmp(le + 4, "+Inf", 4) ? strtod(le + 4, NULL) : 1e300;
                if (bound < last_le) /* a new label set */
                    last_bucket = -1;
                assert_true(v >= last_bucket);
                last_bucket = v, last_le = bound;
            } else if (!strncmp(rest, "_count", 6)) {
                assert_true(strtod(strrchr(line, ' ') + 1, NULL) == last_bucket);
                last_le = -1;
            } else {
                assert_true(!strncmp(rest, "_sum", 4));
            }
        } else {
            assert_true(*rest == ' ' || *rest == '{');
            if (!strcmp(type, "counter"))
                assert_true(strlen(family) > 6 &&
                            !strcmp(family + strlen(family) - 6, "_total"));
        }
        char *sp = strrchr(line, ' ');
        char *end = NULL;
        strtod(sp + 1, &end);
        assert_true(end && *end == '\0'); /* the value is a number */
    }
    assert_true(samples > NROWS);
    free(t);
    pm_stats_clear(&st);
}

/* The JSON value at path (dots); fails when absent. */
static json_t *
s_json_node(json_t *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *p = strtok_r(buf, ".", &save); p; p = strtok_r(NULL, ".", &save))
        o = json_object_get(o, p);
    if (!o)
        fail_msg("no %s in the status JSON", path);
    return o;
}

/* The JSON at path as a number (true: 1). */
static double
s_json_at(json_t *o, const char *path)
{
    o = s_json_node(o, path);
    return json_is_boolean(o) ? (double) json_is_true(o) : json_number_value(o);
}

/* `pmesh status` and /metrics say the same: every row's JSON value is its
 * metric's (scaled), and so for the lists and the per-type numbers. */
static void
test_json_and_metrics_agree(void **state)
{
    (void) state;
    pm_stats_t st;
    s_full(&st);
    json_t *j = pm_stats_json(&st);
    assert_non_null(j);
    char *t = NULL;
    CAPTURE(t, pm_prom_stats(f, &st));
    char name[256];
    for (size_t i = 0; i < NROWS; i++) {
        const pm_stats_row_t *r = &pm_stats_scalars[i];
        s_name(name, sizeof name, r->family, r->label);
        double m = s_sample(t, name) * (double) r->div;
        double js = s_json_at(j, r->path);
        assert_true(m > js - 0.5 && m < js + 0.5);
        json_t *v = s_json_node(j, r->path);
        assert_true(r->is_bool ? json_is_boolean(v) : json_is_integer(v));
    }
    json_t *fo = json_object_get(json_object_get(j, "functions"), "resize \"img\"");
    assert_non_null(fo);
    const pm_stats_list_t *fl = s_list("function");
    for (size_t i = 0; i < fl->n_rows; i++)
        assert_int_equal(json_integer_value(json_object_get(fo, fl->rows[i].field)),
                         pm_stats_item(&st, fl, 0, &fl->rows[i]));
    assert_int_equal(s_json_at(j, "mesh.sent.swim_ping.messages"),
                     s_sample(t, "pmesh_mesh_messages_total{direction=\"sent\",type=\"swim_ping\"}"));
    assert_int_equal(s_json_at(j, "mesh.received.swim_ping.bytes"),
                     s_sample(t, "pmesh_mesh_bytes_total{direction=\"received\",type=\"swim_ping\"}"));
    json_t *b = json_array_get(json_object_get(json_object_get(j, "replication"), "backups"), 0);
    assert_string_equal(json_string_value(json_object_get(b, "node")), "b");
    assert_true(json_is_true(json_object_get(b, "counted")));
    assert_int_equal(json_integer_value(json_object_get(b, "acked")),
                     s_sample(t, "pmesh_replication_backup_acked{node=\"b\"}"));
    json_t *sp = json_array_get(json_object_get(json_object_get(j, "coordination"), "spaces"), 0);
    assert_int_equal(json_array_size(json_object_get(sp, "in_sync")),
                     s_sample(t, "pmesh_coordination_space_in_sync{space=\"c-x2\"}"));
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(j, "coordination"), "pid")),
                        "42");
    assert_int_equal(s_json_at(j, "promises.pending"), s_sample(t, "pmesh_promises{state=\"pending\"}"));
    assert_int_equal(s_json_at(j, "ops.create.error"),
                     s_sample(t, "pmesh_operations_total{type=\"create\",result=\"error\"}"));
    assert_int_equal(s_json_at(j, "latency_ms.create.count"),
                     s_sample(t, "pmesh_operation_duration_seconds_count{type=\"create\"}"));
    assert_int_equal(s_json_at(j, "wal.fsync_ms.count"),
                     s_sample(t, "pmesh_wal_fsync_duration_seconds_count"));
    assert_null(json_object_get(json_object_get(j, "ops"), "reply"));
    assert_null(strstr(t, "type=\"reply\""));
    json_decref(j);
    free(t);
    pm_stats_clear(&st);
}

/* A part the agent does not run is in neither form; the core always is. */
static void
test_absent_parts(void **state)
{
    (void) state;
    pm_stats_t st;
    s_full(&st);
    st.parts = PM_STATS_CORE;
    free(st.coord_desc);
    st.coord_desc = pm_stats_str("none (replicas 1)");
    json_t *j = pm_stats_json(&st);
    char *t = NULL;
    CAPTURE(t, pm_prom_stats(f, &st));
    assert_null(json_object_get(j, "mesh"));
    assert_null(json_object_get(j, "wal"));
    assert_null(json_object_get(j, "replication"));
    assert_string_equal(json_string_value(json_object_get(j, "coordination")),
                        "none (replicas 1)");
    assert_null(strstr(t, "pmesh_mesh_"));
    assert_null(strstr(t, "pmesh_wal_"));
    assert_null(strstr(t, "pmesh_replication_"));
    assert_null(strstr(t, "pmesh_coordination_"));
    assert_non_null(strstr(t, "coordination=\"none (replicas 1)\"} 1\n"));
    assert_non_null(strstr(t, "pmesh_clients{kind=\"sessions\"} "));
    json_decref(j);
    free(t);
    pm_stats_clear(&st);
}

/* The packed form carries everything; another layout, an empty reply or
 * garbage is refused, not read as zeros. */
static void
test_pack_roundtrip_and_refusals(void **state)
{
    (void) state;
    pm_stats_t st, back;
    s_full(&st);
    size_t len = 0;
    uint8_t *buf = pm_stats_pack(&st, &len);
    assert_non_null(buf);
    assert_int_equal(pm_stats_unpack(buf, len, &back), 0);
    json_t *a = pm_stats_json(&st), *b = pm_stats_json(&back);
    assert_true(json_equal(a, b));
    char *ta = NULL, *tb = NULL;
    CAPTURE(ta, pm_prom_stats(f, &st));
    CAPTURE(tb, pm_prom_stats(f, &back));
    assert_string_equal(ta, tb);
    free(ta), free(tb);
    json_decref(a), json_decref(b);
    pm_stats_clear(&back);

    /* Another layout: same message, another schema hash. */
    Pmesh__Stats *pb = pmesh__stats__unpack(NULL, len, buf);
    assert_non_null(pb);
    pb->schema ^= 1;
    size_t len2 = pmesh__stats__get_packed_size(pb);
    uint8_t *buf2 = malloc(len2);
    pmesh__stats__pack(pb, buf2);
    assert_int_equal(pm_stats_unpack(buf2, len2, &back), -1);
    assert_null(back.node);
    pb->schema ^= 1;
    pb->n_promises--; /* a list of the wrong length */
    len2 = pmesh__stats__get_packed_size(pb);
    buf2 = realloc(buf2, len2);
    pmesh__stats__pack(pb, buf2);
    assert_int_equal(pm_stats_unpack(buf2, len2, &back), -1);
    pb->n_promises++;
    pb->spaces[0]->n_in_sync = 3; /* says 3, carries 2 */
    len2 = pmesh__stats__get_packed_size(pb);
    buf2 = realloc(buf2, len2);
    pmesh__stats__pack(pb, buf2);
    assert_int_equal(pm_stats_unpack(buf2, len2, &back), -1);
    free(buf2);
    pmesh__stats__free_unpacked(pb, NULL);

    /* An agent that sends no snapshot; garbage. */
    assert_int_equal(pm_stats_unpack((const uint8_t *) "", 0, &back), -1);
    assert_int_equal(pm_stats_unpack((const uint8_t *) "\xff\xff\xff", 3, &back), -1);
    free(buf);
    pm_stats_clear(&st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_value_escapes),
        cmocka_unit_test(test_histogram_seconds),
        cmocka_unit_test(test_struct_is_the_tables),
        cmocka_unit_test(test_every_field_has_its_metric),
        cmocka_unit_test(test_text_well_formed),
        cmocka_unit_test(test_json_and_metrics_agree),
        cmocka_unit_test(test_absent_parts),
        cmocka_unit_test(test_pack_roundtrip_and_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
