/*
 * stats.c - the agent's typed statistics snapshot (see stats.h): its JSON
 * form for `pmesh status` and its packed pmesh.Stats form for the gateway.
 *
 * Pure: functions of a pm_stats_t; the packed form is the one place that
 * touches pmesh.Stats (node/wire.c carries it as bytes in Reply.stats).
 */
#include "stats.h"

#include "base.h"
#include "pmesh.pb-c.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tables as data ------------------------------------------------------------ */

const pm_stats_row_t pm_stats_scalars[] = {
#define X(f, part, path, jtype, mtype, family, label, div, help)                                   \
    {#f,     path, PM_STATS_##mtype, family, label, help, PM_STATS_##part,                         \
     PM_STATS_##jtype == PM_STATS_BOOL, div, offsetof(pm_stats_t, f)},
    PM_STATS_SCALARS(X)
#undef X
};
const size_t pm_stats_n_scalars = sizeof pm_stats_scalars / sizeof pm_stats_scalars[0];

#define S_ITEM_ROW(type, part, f, mtype, family, label, help)                                       \
    {#f, #f, PM_STATS_##mtype, family, label, help, part, 0, 1, offsetof(type, f)},
static const pm_stats_row_t s_fn_rows[] = {
#define X(f, mtype, family, label, help) S_ITEM_ROW(pm_stats_fn_t, PM_STATS_CORE, f, mtype, family, label, help)
    PM_STATS_FN_FIELDS(X)
#undef X
};
static const pm_stats_row_t s_backup_rows[] = {
#define X(f, mtype, family, label, help) S_ITEM_ROW(pm_stats_backup_t, PM_STATS_REPL, f, mtype, family, label, help)
    PM_STATS_BACKUP_FIELDS(X)
#undef X
};
static const pm_stats_row_t s_space_rows[] = {
#define X(f, mtype, family, label, help) S_ITEM_ROW(pm_stats_space_t, PM_STATS_COORD, f, mtype, family, label, help)
    PM_STATS_SPACE_FIELDS(X)
#undef X
};
static const pm_stats_row_t s_kind_rows[] = {
#define X(f, mtype, family, label, help) S_ITEM_ROW(pm_stats_kind_t, PM_STATS_MESH, f, mtype, family, label, help)
    PM_STATS_KIND_FIELDS(X)
#undef X
};
#undef S_ITEM_ROW

#define S_N(a) (sizeof(a) / sizeof((a)[0]))
#define S_LIST(key, part, first, rows, type, name, items, count)                                   \
    {key,                                                                                          \
     part,                                                                                         \
     first,                                                                                        \
     rows,                                                                                         \
     S_N(rows),                                                                                    \
     sizeof(type),                                                                                 \
     offsetof(type, name),                                                                         \
     offsetof(pm_stats_t, items),                                                                  \
     offsetof(pm_stats_t, count)}
const pm_stats_list_t pm_stats_lists[] = {
    S_LIST("type", PM_STATS_MESH, 1, s_kind_rows, pm_stats_kind_t, name, kinds, n_kinds),
    S_LIST("node", PM_STATS_REPL, 0, s_backup_rows, pm_stats_backup_t, node, backups, n_backups),
    S_LIST("space", PM_STATS_COORD, 0, s_space_rows, pm_stats_space_t, space, spaces, n_spaces),
    S_LIST("function", PM_STATS_CORE, 0, s_fn_rows, pm_stats_fn_t, name, fns, n_fns),
};
const size_t pm_stats_n_lists = S_N(pm_stats_lists);

uint64_t
pm_stats_scalar(const pm_stats_t *st, const pm_stats_row_t *row)
{
    return *(const uint64_t *) ((const char *) st + row->offset);
}

size_t
pm_stats_list_len(const pm_stats_t *st, const pm_stats_list_t *l)
{
    return *(const size_t *) ((const char *) st + l->count_offset);
}

static const char *
s_item_at(const pm_stats_t *st, const pm_stats_list_t *l, size_t i)
{
    return *(const char *const *) ((const char *) st + l->items_offset) + i * l->item_size;
}

const char *
pm_stats_item_name(const pm_stats_t *st, const pm_stats_list_t *l, size_t i)
{
    return *(const char *const *) (s_item_at(st, l, i) + l->name_offset);
}

uint64_t
pm_stats_item(const pm_stats_t *st, const pm_stats_list_t *l, size_t i, const pm_stats_row_t *row)
{
    return *(const uint64_t *) (s_item_at(st, l, i) + row->offset);
}

/* ---- ownership ---------------------------------------------------------------- */

char *
pm_stats_str(const char *s)
{
    return pm_xstrdup(s ? s : "", "stats string");
}

void
pm_stats_clear(pm_stats_t *st)
{
    free(st->node);
    free(st->version);
    free(st->id_space);
    free(st->coord_desc);
    free(st->co_store);
    free(st->co_prefix);
    free(st->co_node);
    free(st->co_pid);
    for (size_t i = 0; i < st->n_kinds; i++)
        free(st->kinds[i].name);
    free(st->kinds);
    for (size_t i = 0; i < st->n_backups; i++)
        free(st->backups[i].node);
    free(st->backups);
    for (size_t i = 0; i < st->n_spaces; i++) {
        pm_stats_space_t *sp = &st->spaces[i];
        free(sp->space);
        free(sp->owner);
        for (size_t j = 0; j < sp->n_in_sync; j++)
            free(sp->in_sync[j]);
        free(sp->in_sync);
    }
    free(st->spaces);
    for (size_t i = 0; i < st->n_fns; i++)
        free(st->fns[i].name);
    free(st->fns);
    memset(st, 0, sizeof *st);
}

/* Grows *items by one zeroed element of size sz; returns it. */
static void *
s_append(void **items, size_t *n, size_t sz)
{
    *items = pm_xrealloc(*items, (*n + 1) * sz, "stats list");
    void *at = (char *) *items + *n * sz;
    memset(at, 0, sz);
    (*n)++;
    return at;
}

pm_stats_fn_t *
pm_stats_add_fn(pm_stats_t *st, const char *name)
{
    pm_stats_fn_t *f = s_append((void **) &st->fns, &st->n_fns, sizeof *f);
    f->name = pm_stats_str(name);
    return f;
}

pm_stats_backup_t *
pm_stats_add_backup(pm_stats_t *st, const char *node)
{
    pm_stats_backup_t *b = s_append((void **) &st->backups, &st->n_backups, sizeof *b);
    b->node = pm_stats_str(node);
    return b;
}

pm_stats_space_t *
pm_stats_add_space(pm_stats_t *st, const char *space, const char *owner)
{
    pm_stats_space_t *sp = s_append((void **) &st->spaces, &st->n_spaces, sizeof *sp);
    sp->space = pm_stats_str(space);
    sp->owner = pm_stats_str(owner);
    return sp;
}

pm_stats_kind_t *
pm_stats_add_kind(pm_stats_t *st, const char *name)
{
    pm_stats_kind_t *k = s_append((void **) &st->kinds, &st->n_kinds, sizeof *k);
    k->name = pm_stats_str(name);
    return k;
}

int
pm_stats_op_shown(int t)
{
    return t >= PM_MSG_HELLO && t < PM_MSG_TYPE_COUNT && t != PM_MSG_REPLY && t != PM_MSG_INVOKE;
}

/* ---- JSON ------------------------------------------------------------------------ */

/* Sets v (stolen) at the dotted path under root, making objects on the way. */
static void
s_set_path(json_t *root, const char *path, json_t *v)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *o = root;
    char *part = buf;
    for (char *dot; (dot = strchr(part, '.')); part = dot + 1) {
        *dot = '\0';
        json_t *next = json_object_get(o, part);
        if (!json_is_object(next)) {
            next = json_object();
            json_object_set_new(o, part, next);
        }
        o = next;
    }
    json_object_set_new(o, part, v);
}

static json_t *
s_hist_json(const pm_hist_t *h)
{
    json_t *le = json_array(), *b = json_array();
    uint64_t cum = 0;
    for (int i = 0; i < PM_HIST_N; i++) {
        cum += h->counts[i];
        json_array_append_new(le, json_real(pm_hist_bound(i)));
        json_array_append_new(b, json_integer((json_int_t) cum));
    }
    return json_pack("{s:o,s:o,s:I,s:f}", "le_ms", le, "buckets", b, "count",
                     (json_int_t) h->count, "sum_ms", h->sum_ms);
}

static int
s_part_on(const pm_stats_t *st, int part)
{
    return (st->parts & (uint32_t) part) != 0;
}

json_t *
pm_stats_json(const pm_stats_t *st)
{
    json_t *o = json_pack("{s:s,s:s,s:s}", "node", st->node ? st->node : "", "version",
                          st->version ? st->version : "", "id_space",
                          st->id_space ? st->id_space : "");
    if (!o)
        return NULL;
    json_t *promises = json_object();
    for (int s = 0; s < PM_STATS_NSTATES; s++)
        json_object_set_new(promises, pm_state_name(PM_STATE_PENDING + s),
                            json_integer((json_int_t) st->promises[s]));
    json_object_set_new(o, "promises", promises);
    json_t *ops = json_object();
    for (int t = 0; t < PM_MSG_TYPE_COUNT; t++)
        if (pm_stats_op_shown(t))
            json_object_set_new(ops, pm_wire_type_name(t),
                                json_pack("{s:I,s:I}", "ok", (json_int_t) st->ops_ok[t], "error",
                                          (json_int_t) st->ops_error[t]));
    json_object_set_new(o, "ops", ops);
    if (s_part_on(st, PM_STATS_COORD))
        json_object_set_new(o, "coordination",
                            json_pack("{s:s,s:s,s:s,s:s}", "store", st->co_store ? st->co_store : "",
                                      "prefix", st->co_prefix ? st->co_prefix : "", "node",
                                      st->co_node ? st->co_node : "", "pid",
                                      st->co_pid ? st->co_pid : ""));
    else if (st->coord_desc && *st->coord_desc)
        json_object_set_new(o, "coordination", json_string(st->coord_desc));
    for (size_t i = 0; i < pm_stats_n_scalars; i++) {
        const pm_stats_row_t *r = &pm_stats_scalars[i];
        uint64_t v = pm_stats_scalar(st, r);
        if (s_part_on(st, r->part))
            s_set_path(o, r->path, r->is_bool ? json_boolean(v) : json_integer((json_int_t) v));
    }
    if (s_part_on(st, PM_STATS_MESH)) {
        json_t *mesh = json_object_get(o, "mesh");
        json_t *sent = json_object(), *recv = json_object();
        for (size_t i = 0; i < st->n_kinds; i++) {
            const pm_stats_kind_t *k = &st->kinds[i];
            if (k->sent)
                json_object_set_new(sent, k->name,
                                    json_pack("{s:I,s:I}", "messages", (json_int_t) k->sent,
                                              "bytes", (json_int_t) k->sent_bytes));
            if (k->received)
                json_object_set_new(recv, k->name,
                                    json_pack("{s:I,s:I}", "messages", (json_int_t) k->received,
                                              "bytes", (json_int_t) k->received_bytes));
        }
        json_object_set_new(mesh, "sent", sent);
        json_object_set_new(mesh, "received", recv);
    }
    if (s_part_on(st, PM_STATS_WAL) && s_part_on(st, PM_STATS_FSYNC))
        json_object_set_new(json_object_get(o, "wal"), "fsync_ms", s_hist_json(&st->wal_fsync));
    if (s_part_on(st, PM_STATS_REPL)) {
        json_t *bs = json_array();
        for (size_t i = 0; i < st->n_backups; i++) {
            const pm_stats_backup_t *b = &st->backups[i];
            json_array_append_new(bs, json_pack("{s:s,s:I,s:b}", "node", b->node, "acked",
                                                (json_int_t) b->acked, "counted", b->counted != 0));
        }
        json_object_set_new(json_object_get(o, "replication"), "backups", bs);
    }
    if (s_part_on(st, PM_STATS_COORD)) {
        json_t *spaces = json_array();
        for (size_t i = 0; i < st->n_spaces; i++) {
            const pm_stats_space_t *sp = &st->spaces[i];
            json_t *in = json_array();
            for (size_t j = 0; j < sp->n_in_sync; j++)
                json_array_append_new(in, json_string(sp->in_sync[j]));
            json_array_append_new(spaces, json_pack("{s:s,s:s,s:I,s:o,s:b}", "space", sp->space,
                                                    "owner", sp->owner, "epoch",
                                                    (json_int_t) sp->epoch, "in_sync", in, "ours",
                                                    sp->ours != 0));
        }
        json_object_set_new(json_object_get(o, "coordination"), "spaces", spaces);
    }
    json_t *lat = json_object();
    for (int t = 0; t < PM_MSG_TYPE_COUNT; t++)
        if (st->op_ms[t].count)
            json_object_set_new(lat, pm_wire_type_name(t), s_hist_json(&st->op_ms[t]));
    json_object_set_new(o, "latency_ms", lat);
    json_t *fns = json_object();
    for (size_t i = 0; i < st->n_fns; i++) {
        const pm_stats_fn_t *fn = &st->fns[i];
        json_t *fo = json_object();
#define X(f, ...) json_object_set_new(fo, #f, json_integer((json_int_t) fn->f));
        PM_STATS_FN_FIELDS(X)
#undef X
        json_object_set_new(fns, fn->name, fo);
    }
    json_object_set_new(o, "functions", fns);
    return o;
}

/* ---- schema ---------------------------------------------------------------------- */

static void
s_fnv(uint64_t *h, const char *s)
{
    for (; *s; s++) {
        *h ^= (unsigned char) *s;
        *h *= 1099511628211ULL;
    }
    *h ^= 0xff; /* a separator, so "ab","c" differs from "a","bc" */
    *h *= 1099511628211ULL;
}

uint64_t
pm_stats_schema(void)
{
    uint64_t h = 14695981039346656037ULL;
#define X(f, part, path, jtype, mtype, family, ...) s_fnv(&h, #f), s_fnv(&h, #part), s_fnv(&h, #jtype);
    PM_STATS_SCALARS(X)
#undef X
#define X(f, ...) s_fnv(&h, #f);
    s_fnv(&h, "fn");
    PM_STATS_FN_FIELDS(X)
    s_fnv(&h, "backup");
    PM_STATS_BACKUP_FIELDS(X)
    s_fnv(&h, "space");
    PM_STATS_SPACE_FIELDS(X)
    s_fnv(&h, "kind");
    PM_STATS_KIND_FIELDS(X)
#undef X
    for (int s = 0; s < PM_STATS_NSTATES; s++)
        s_fnv(&h, pm_state_name(PM_STATE_PENDING + s));
    for (int t = 0; t < PM_MSG_TYPE_COUNT; t++)
        s_fnv(&h, pm_wire_type_name(t));
    char b[32];
    for (int i = 0; i < PM_HIST_N; i++) {
        snprintf(b, sizeof b, "%g", pm_hist_bound(i));
        s_fnv(&h, b);
    }
    return h;
}

/* ---- packed form ------------------------------------------------------------------ */

/* protobuf-c wants char * for strings it only reads when packing. */
static char *
s_s(char *s)
{
    return s ? s : (char *) "";
}

static void
s_hist_pb(const pm_hist_t *h, Pmesh__StatsHist *pb, uint64_t *counts)
{
    pmesh__stats_hist__init(pb);
    memcpy(counts, h->counts, sizeof h->counts);
    pb->n_counts = PM_HIST_N + 1;
    pb->counts = counts;
    pb->count = h->count;
    pb->sum_ms = h->sum_ms;
}

static int
s_hist_from_pb(const Pmesh__StatsHist *pb, pm_hist_t *h)
{
    if (!pb || pb->n_counts != PM_HIST_N + 1)
        return -1;
    memcpy(h->counts, pb->counts, sizeof h->counts);
    h->count = pb->count;
    h->sum_ms = pb->sum_ms;
    return 0;
}

uint8_t *
pm_stats_pack(const pm_stats_t *st, size_t *len)
{
    Pmesh__Stats pb = PMESH__STATS__INIT;
    pb.schema = pm_stats_schema();
    pb.parts = st->parts;
    pb.node = s_s(st->node);
    pb.version = s_s(st->version);
    pb.id_space = s_s(st->id_space);
    pb.coord_desc = s_s(st->coord_desc);
    pb.co_store = s_s(st->co_store);
    pb.co_prefix = s_s(st->co_prefix);
    pb.co_node = s_s(st->co_node);
    pb.co_pid = s_s(st->co_pid);
#define X(f, ...) pb.f = st->f;
    PM_STATS_SCALARS(X)
#undef X
    pb.n_promises = PM_STATS_NSTATES;
    pb.promises = (uint64_t *) st->promises;
    pb.n_ops_ok = pb.n_ops_error = PM_MSG_TYPE_COUNT;
    pb.ops_ok = (uint64_t *) st->ops_ok;
    pb.ops_error = (uint64_t *) st->ops_error;
    Pmesh__StatsHist hists[PM_MSG_TYPE_COUNT + 1], *hp[PM_MSG_TYPE_COUNT];
    uint64_t counts[PM_MSG_TYPE_COUNT + 1][PM_HIST_N + 1];
    for (int t = 0; t < PM_MSG_TYPE_COUNT; t++) {
        s_hist_pb(&st->op_ms[t], &hists[t], counts[t]);
        hp[t] = &hists[t];
    }
    pb.n_op_ms = PM_MSG_TYPE_COUNT;
    pb.op_ms = hp;
    s_hist_pb(&st->wal_fsync, &hists[PM_MSG_TYPE_COUNT], counts[PM_MSG_TYPE_COUNT]);
    pb.wal_fsync = &hists[PM_MSG_TYPE_COUNT];

    size_t nk = st->n_kinds, nb = st->n_backups, ns = st->n_spaces, nf = st->n_fns;
    Pmesh__StatsKind *kinds = pm_xcalloc(nk + 1, sizeof *kinds, "stats pack");
    Pmesh__StatsKind **kp = pm_xcalloc(nk + 1, sizeof *kp, "stats pack");
    for (size_t i = 0; i < nk; i++) {
        pmesh__stats_kind__init(&kinds[i]);
        kinds[i].name = s_s(st->kinds[i].name);
#define X(f, ...) kinds[i].f = st->kinds[i].f;
        PM_STATS_KIND_FIELDS(X)
#undef X
        kp[i] = &kinds[i];
    }
    Pmesh__StatsBackup *backups = pm_xcalloc(nb + 1, sizeof *backups, "stats pack");
    Pmesh__StatsBackup **bp = pm_xcalloc(nb + 1, sizeof *bp, "stats pack");
    for (size_t i = 0; i < nb; i++) {
        pmesh__stats_backup__init(&backups[i]);
        backups[i].node = s_s(st->backups[i].node);
#define X(f, ...) backups[i].f = st->backups[i].f;
        PM_STATS_BACKUP_FIELDS(X)
#undef X
        bp[i] = &backups[i];
    }
    Pmesh__StatsSpace *spaces = pm_xcalloc(ns + 1, sizeof *spaces, "stats pack");
    Pmesh__StatsSpace **sp = pm_xcalloc(ns + 1, sizeof *sp, "stats pack");
    for (size_t i = 0; i < ns; i++) {
        pmesh__stats_space__init(&spaces[i]);
        spaces[i].space = s_s(st->spaces[i].space);
        spaces[i].owner = s_s(st->spaces[i].owner);
#define X(f, ...) spaces[i].f = st->spaces[i].f;
        PM_STATS_SPACE_FIELDS(X)
#undef X
        spaces[i].n_in_sync_nodes = st->spaces[i].n_in_sync;
        spaces[i].in_sync_nodes = st->spaces[i].in_sync;
        sp[i] = &spaces[i];
    }
    Pmesh__StatsFunction *fns = pm_xcalloc(nf + 1, sizeof *fns, "stats pack");
    Pmesh__StatsFunction **fp = pm_xcalloc(nf + 1, sizeof *fp, "stats pack");
    for (size_t i = 0; i < nf; i++) {
        pmesh__stats_function__init(&fns[i]);
        fns[i].name = s_s(st->fns[i].name);
#define X(f, ...) fns[i].f = st->fns[i].f;
        PM_STATS_FN_FIELDS(X)
#undef X
        fp[i] = &fns[i];
    }
    pb.n_kinds = nk, pb.kinds = kp;
    pb.n_backups = nb, pb.backups = bp;
    pb.n_spaces = ns, pb.spaces = sp;
    pb.n_fns = nf, pb.fns = fp;

    *len = pmesh__stats__get_packed_size(&pb);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        pmesh__stats__pack(&pb, buf);
    free(kinds), free(kp), free(backups), free(bp), free(spaces), free(sp), free(fns), free(fp);
    return buf;
}

int
pm_stats_unpack(const uint8_t *buf, size_t len, pm_stats_t *st)
{
    memset(st, 0, sizeof *st);
    Pmesh__Stats *pb = pmesh__stats__unpack(NULL, len, buf);
    if (!pb)
        return -1;
    int rc = -1;
    if (pb->schema != pm_stats_schema() || pb->n_promises != PM_STATS_NSTATES ||
        pb->n_ops_ok != PM_MSG_TYPE_COUNT || pb->n_ops_error != PM_MSG_TYPE_COUNT ||
        pb->n_op_ms != PM_MSG_TYPE_COUNT)
        goto out;
    for (size_t i = 0; i < pb->n_spaces; i++)
        if (pb->spaces[i]->n_in_sync != pb->spaces[i]->n_in_sync_nodes)
            goto out;
    for (int t = 0; t < PM_MSG_TYPE_COUNT; t++)
        if (s_hist_from_pb(pb->op_ms[t], &st->op_ms[t]))
            goto out;
    if (s_hist_from_pb(pb->wal_fsync, &st->wal_fsync))
        goto out;
    st->parts = pb->parts;
    st->node = pm_stats_str(pb->node);
    st->version = pm_stats_str(pb->version);
    st->id_space = pm_stats_str(pb->id_space);
    st->coord_desc = pm_stats_str(pb->coord_desc);
    st->co_store = pm_stats_str(pb->co_store);
    st->co_prefix = pm_stats_str(pb->co_prefix);
    st->co_node = pm_stats_str(pb->co_node);
    st->co_pid = pm_stats_str(pb->co_pid);
#define X(f, ...) st->f = pb->f;
    PM_STATS_SCALARS(X)
#undef X
    memcpy(st->promises, pb->promises, sizeof st->promises);
    memcpy(st->ops_ok, pb->ops_ok, sizeof st->ops_ok);
    memcpy(st->ops_error, pb->ops_error, sizeof st->ops_error);
    for (size_t i = 0; i < pb->n_kinds; i++) {
        pm_stats_kind_t *k = pm_stats_add_kind(st, pb->kinds[i]->name);
#define X(f, ...) k->f = pb->kinds[i]->f;
        PM_STATS_KIND_FIELDS(X)
#undef X
    }
    for (size_t i = 0; i < pb->n_backups; i++) {
        pm_stats_backup_t *b = pm_stats_add_backup(st, pb->backups[i]->node);
#define X(f, ...) b->f = pb->backups[i]->f;
        PM_STATS_BACKUP_FIELDS(X)
#undef X
    }
    for (size_t i = 0; i < pb->n_spaces; i++) {
        const Pmesh__StatsSpace *p = pb->spaces[i];
        pm_stats_space_t *s = pm_stats_add_space(st, p->space, p->owner);
        s->in_sync = pm_xcalloc(p->n_in_sync_nodes + 1, sizeof *s->in_sync, "stats in_sync");
        for (size_t j = 0; j < p->n_in_sync_nodes; j++)
            s->in_sync[j] = pm_stats_str(p->in_sync_nodes[j]);
#define X(f, ...) s->f = p->f;
        PM_STATS_SPACE_FIELDS(X)
#undef X
    }
    for (size_t i = 0; i < pb->n_fns; i++) {
        pm_stats_fn_t *f = pm_stats_add_fn(st, pb->fns[i]->name);
#define X(fl, ...) f->fl = pb->fns[i]->fl;
        PM_STATS_FN_FIELDS(X)
#undef X
    }
    rc = 0;
out:
    pmesh__stats__free_unpacked(pb, NULL);
    if (rc)
        pm_stats_clear(st);
    return rc;
}
