/*
 * coordctl.c - drives the configuration store client (mesh/coord.h) from the
 * command line, for tests/integration/test_coord_etcd.sh and by hand:
 *
 *   coordctl [--timeout MS] [--connect-timeout MS] URL PREFIX COMMAND ARGS...
 *     get SPACE
 *     create SPACE OWNER PID EPOCH [NODE:PID,...]
 *     cas SPACE REV OWNER PID EPOCH [NODE:PID,...]
 *     delete SPACE REV         compare-and-delete at revision REV
 *     list
 *     watch [FROM_REV]         one line per result until SIGTERM
 *     race SPACE ROUNDS        two clients CAS to the next epoch from one revision
 *     shrink-race SPACE ROUNDS owner shrinks the set while a member takes over
 *     bench SPACE N            N sequential CAS round trips: p50, p99, max
 *
 * One line per result: KIND STATUS rev=R [record fields] ms=ELAPSED
 * [failovers=N] [msg=...]. Exit status of a single request: 0 OK, 2
 * CONFLICT, 3 NOT_FOUND, 4 UNAVAILABLE, 5 BAD; 1 usage or a failed check.
 */
#include "clock.h"
#include "coord.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Nothing the client does may take this long: a hang fails loudly. */
#define S_HANG_MS 30000

static volatile sig_atomic_t s_stop;

static void
s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

static int
s_members(pm_coord_record_t *r, const char *text)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    for (char *m = strtok_r(buf, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(m, ':');
        if (!colon || r->n_in_sync == PM_COORD_MAX_INSYNC)
            return -1;
        *colon = 0;
        snprintf(r->in_sync[r->n_in_sync].node, PM_COORD_NAME_MAX, "%s", m);
        r->in_sync[r->n_in_sync++].pid = strtoull(colon + 1, NULL, 10);
    }
    return 0;
}

static void
s_print_rec(const pm_coord_record_t *r)
{
    printf(" space=%s owner=%s pid=%" PRIu64 " epoch=%" PRIu64 " mod=%" PRId64 " in_sync=",
           r->space, r->owner[0] ? r->owner : "-", r->owner_pid, r->epoch, r->revision);
    for (size_t i = 0; i < r->n_in_sync; i++)
        printf("%s%s:%" PRIu64, i ? "," : "", r->in_sync[i].node, r->in_sync[i].pid);
    if (!r->n_in_sync)
        printf("-");
}

static void
s_print(pm_coord_t *c, const pm_coord_result_t *r, int64_t ms)
{
    pm_coord_stats_t st;
    pm_coord_stats(c, &st);
    printf("%s %s rev=%" PRId64, pm_coord_kind_name(r->kind), pm_coord_status_name(r->status),
           r->revision);
    if (r->deleted)
        printf(" deleted=1 space=%s", r->records[0].space);
    else if (r->n_records == 1 && r->kind != PM_COORD_LIST && r->kind != PM_COORD_RESYNC)
        s_print_rec(&r->records[0]);
    if (r->kind == PM_COORD_LIST || r->kind == PM_COORD_RESYNC)
        printf(" n=%zu", r->n_records);
    if (ms >= 0)
        printf(" ms=%" PRId64, ms);
    printf(" failovers=%" PRIu64, st.failovers);
    if (r->message[0])
        printf(" msg=%s", r->message);
    printf("\n");
    if (r->kind == PM_COORD_LIST || r->kind == PM_COORD_RESYNC)
        for (size_t i = 0; i < r->n_records; i++) {
            printf("  ");
            s_print_rec(&r->records[i]);
            printf("\n");
        }
    fflush(stdout);
}

/* The answer to request id on c (other results are printed and dropped).
 * NULL after S_HANG_MS. */
static pm_coord_result_t *
s_wait(pm_coord_t *c, uint64_t id)
{
    int64_t until = pm_mono_ms() + S_HANG_MS;
    for (;;) {
        pm_coord_result_t *r = NULL;
        while (pm_coord_recv(c, &r) == 0) {
            if (r->req == id)
                return r;
            pm_coord_result_destroy(&r);
        }
        int64_t left = until - pm_mono_ms();
        if (left <= 0) {
            fprintf(stderr, "coordctl: no answer to request %" PRIu64 " in %d ms\n", id, S_HANG_MS);
            return NULL;
        }
        zmq_pollitem_t item = {pm_coord_socket(c), 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, (long) left);
    }
}

static int
s_exit_code(pm_coord_status_t st)
{
    switch (st) {
    case PM_COORD_OK: return 0;
    case PM_COORD_CONFLICT: return 2;
    case PM_COORD_NOT_FOUND: return 3;
    case PM_COORD_UNAVAILABLE: return 4;
    case PM_COORD_BAD: return 5;
    }
    return 1;
}

/* One request, printed; its exit code. */
static int
s_one(pm_coord_t *c, uint64_t id)
{
    if (!id) {
        fprintf(stderr, "coordctl: malformed request\n");
        return 1;
    }
    int64_t t0 = pm_mono_ms();
    pm_coord_result_t *r = s_wait(c, id);
    if (!r)
        return 1;
    s_print(c, r, pm_mono_ms() - t0);
    int rc = s_exit_code(r->status);
    pm_coord_result_destroy(&r);
    return rc;
}

/* The current record of space (created empty if absent). 0, or -1. */
static int
s_current(pm_coord_t *c, const char *space, pm_coord_record_t *out)
{
    pm_coord_record_t fresh;
    memset(&fresh, 0, sizeof fresh);
    snprintf(fresh.space, sizeof fresh.space, "%s", space);
    snprintf(fresh.owner, sizeof fresh.owner, "a");
    fresh.owner_pid = 1;
    fresh.epoch = 1;
    pm_coord_result_t *r = s_wait(c, pm_coord_create(c, &fresh));
    if (!r || (r->status != PM_COORD_OK && r->status != PM_COORD_CONFLICT) || r->n_records != 1) {
        if (r)
            s_print(c, r, -1);
        pm_coord_result_destroy(&r);
        return -1;
    }
    *out = r->records[0];
    pm_coord_result_destroy(&r);
    return 0;
}

static int
s_has(const pm_coord_record_t *r, const char *node)
{
    for (size_t i = 0; i < r->n_in_sync; i++)
        if (!strcmp(r->in_sync[i].node, node))
            return 1;
    return 0;
}

/* Candidates b and c (two clients, two connections) both CAS from the same
 * revision to the next epoch; exactly one may win, and the loser must be
 * handed the winner's record. */
static int
s_race(pm_coord_t *cb, pm_coord_t *cc, const char *space, int rounds)
{
    int wins_b = 0, wins_c = 0, bad = 0;
    for (int i = 0; i < rounds; i++) {
        pm_coord_record_t cur;
        if (s_current(cb, space, &cur))
            return 1;
        pm_coord_record_t tb = cur, tc = cur;
        snprintf(tb.owner, sizeof tb.owner, "b");
        tb.owner_pid = 2;
        snprintf(tc.owner, sizeof tc.owner, "c");
        tc.owner_pid = 3;
        tb.epoch = tc.epoch = cur.epoch + 1;
        /* Alternate who asks first. */
        uint64_t ib, ic;
        if (i % 2) {
            ic = pm_coord_cas(cc, cur.revision, &tc);
            ib = pm_coord_cas(cb, cur.revision, &tb);
        } else {
            ib = pm_coord_cas(cb, cur.revision, &tb);
            ic = pm_coord_cas(cc, cur.revision, &tc);
        }
        pm_coord_result_t *rb = s_wait(cb, ib), *rc = s_wait(cc, ic);
        if (!rb || !rc)
            return 1;
        pm_coord_result_t *win = rb->status == PM_COORD_OK ? rb : rc;
        pm_coord_result_t *lose = win == rb ? rc : rb;
        int ok = win->status == PM_COORD_OK && lose->status == PM_COORD_CONFLICT &&
                 lose->n_records == 1 && win->n_records == 1 &&
                 pm_coord_record_same(&lose->records[0], &win->records[0]) &&
                 lose->records[0].revision == win->records[0].revision;
        if (!ok) {
            bad++;
            printf("race round %d: BROKEN\n", i);
            s_print(cb, rb, -1);
            s_print(cc, rc, -1);
        }
        if (win == rb)
            wins_b++;
        else
            wins_c++;
        pm_coord_result_destroy(&rb);
        pm_coord_result_destroy(&rc);
    }
    printf("race rounds=%d exactly_one_winner=%d wins_b=%d wins_c=%d\n", rounds, rounds - bad,
           wins_b, wins_c);
    return bad ? 1 : 0;
}

/* Owner a drops b from its in-sync set while b takes over, both from the
 * same revision: exactly one wins; a winning shrink leaves b out of the set;
 * a winning takeover shows a the higher epoch. */
static int
s_shrink_race(pm_coord_t *ca, pm_coord_t *cb, const char *space, int rounds)
{
    int shrinks = 0, takeovers = 0, bad = 0;
    for (int i = 0; i < rounds; i++) {
        pm_coord_record_t cur;
        if (s_current(ca, space, &cur))
            return 1;
        /* Reset: owner a at the next epoch with b and c in sync. */
        pm_coord_record_t base;
        memset(&base, 0, sizeof base);
        snprintf(base.space, sizeof base.space, "%s", space);
        snprintf(base.owner, sizeof base.owner, "a");
        base.owner_pid = 1;
        base.epoch = cur.epoch + 1;
        s_members(&base, "b:2,c:3");
        pm_coord_result_t *r = s_wait(ca, pm_coord_cas(ca, cur.revision, &base));
        if (!r || r->status != PM_COORD_OK)
            return 1;
        int64_t rev = r->records[0].revision;
        pm_coord_result_destroy(&r);
        pm_coord_record_t shrink = base, take = base;
        shrink.n_in_sync = 0;
        s_members(&shrink, "c:3");
        snprintf(take.owner, sizeof take.owner, "b");
        take.owner_pid = 2;
        take.epoch = base.epoch + 1;
        take.n_in_sync = 0;
        s_members(&take, "c:3");
        uint64_t ia, ib;
        if (i % 2) {
            ib = pm_coord_cas(cb, rev, &take);
            ia = pm_coord_cas(ca, rev, &shrink);
        } else {
            ia = pm_coord_cas(ca, rev, &shrink);
            ib = pm_coord_cas(cb, rev, &take);
        }
        pm_coord_result_t *ra = s_wait(ca, ia), *rb = s_wait(cb, ib);
        if (!ra || !rb)
            return 1;
        int ok = 0;
        if (ra->status == PM_COORD_OK && rb->status == PM_COORD_CONFLICT && rb->n_records == 1) {
            ok = !s_has(&rb->records[0], "b") && rb->records[0].epoch == base.epoch;
            shrinks++;
        } else if (rb->status == PM_COORD_OK && ra->status == PM_COORD_CONFLICT &&
                   ra->n_records == 1) {
            ok = ra->records[0].epoch == take.epoch && !strcmp(ra->records[0].owner, "b");
            takeovers++;
        }
        if (!ok) {
            bad++;
            printf("shrink-race round %d: BROKEN\n", i);
            s_print(ca, ra, -1);
            s_print(cb, rb, -1);
        }
        pm_coord_result_destroy(&ra);
        pm_coord_result_destroy(&rb);
    }
    printf("shrink-race rounds=%d exactly_one_winner=%d shrinks=%d takeovers=%d\n", rounds,
           rounds - bad, shrinks, takeovers);
    return bad ? 1 : 0;
}

static int
s_cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

static int
s_bench(pm_coord_t *c, const char *space, int n)
{
    pm_coord_record_t cur;
    if (s_current(c, space, &cur))
        return 1;
    int64_t *us = calloc((size_t) n, sizeof *us);
    if (!us)
        return 1;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        pm_coord_record_t next = cur;
        next.epoch++;
        int64_t t0 = pm_mono_us();
        pm_coord_result_t *r = s_wait(c, pm_coord_cas(c, cur.revision, &next));
        us[i] = pm_mono_us() - t0;
        if (!r || r->status != PM_COORD_OK) {
            failed++;
            if (r)
                s_print(c, r, -1);
            pm_coord_result_destroy(&r);
            break;
        }
        cur = r->records[0];
        pm_coord_result_destroy(&r);
    }
    if (!failed) {
        qsort(us, (size_t) n, sizeof *us, s_cmp64);
        printf("bench cas n=%d p50_us=%" PRId64 " p99_us=%" PRId64 " max_us=%" PRId64 "\n", n,
               us[n / 2], us[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], us[n - 1]);
    }
    free(us);
    return failed ? 1 : 0;
}

static int
s_watch(pm_coord_t *c, int64_t from)
{
    uint64_t id = pm_coord_watch(c, from);
    if (!id)
        return 1;
    while (!s_stop) {
        pm_coord_result_t *r = NULL;
        while (pm_coord_recv(c, &r) == 0) {
            s_print(c, r, -1);
            pm_coord_result_destroy(&r);
        }
        zmq_pollitem_t item = {pm_coord_socket(c), 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 1000);
    }
    return 0;
}

static int
s_usage(void)
{
    fprintf(stderr, "usage: coordctl [--timeout MS] [--connect-timeout MS] URL PREFIX "
                    "get|create|cas|delete|list|watch|race|shrink-race|bench ARGS...\n");
    return 1;
}

int
main(int argc, char **argv)
{
    pm_coord_config_t cfg = {0};
    int i = 1;
    for (; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
        if (!strcmp(argv[i], "--timeout"))
            cfg.request_timeout_ms = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--connect-timeout"))
            cfg.connect_timeout_ms = atoll(argv[i + 1]);
        else
            return s_usage();
    }
    if (argc - i < 3)
        return s_usage();
    cfg.url = argv[i];
    cfg.prefix = argv[i + 1];
    const char *cmd = argv[i + 2];
    char **a = argv + i + 3;
    int na = argc - i - 3;
    signal(SIGTERM, s_on_signal);
    signal(SIGINT, s_on_signal);
    char err[256];
    pm_coord_t *c = pm_coord_new(&cfg, err, sizeof err);
    if (!c) {
        fprintf(stderr, "coordctl: %s\n", err);
        return 1;
    }
    int rc = 1;
    pm_coord_record_t rec;
    memset(&rec, 0, sizeof rec);
    if (!strcmp(cmd, "get") && na == 1) {
        rc = s_one(c, pm_coord_get(c, a[0]));
    } else if (!strcmp(cmd, "delete") && na == 2) {
        rc = s_one(c, pm_coord_delete(c, a[0], atoll(a[1])));
    } else if (!strcmp(cmd, "list") && na == 0) {
        rc = s_one(c, pm_coord_list(c));
    } else if ((!strcmp(cmd, "create") && (na == 4 || na == 5)) ||
               (!strcmp(cmd, "cas") && (na == 5 || na == 6))) {
        int cas = !strcmp(cmd, "cas");
        char **f = a + 1 + cas; /* OWNER PID EPOCH [MEMBERS] */
        snprintf(rec.space, sizeof rec.space, "%s", a[0]);
        snprintf(rec.owner, sizeof rec.owner, "%s", f[0]);
        rec.owner_pid = strtoull(f[1], NULL, 10);
        rec.epoch = strtoull(f[2], NULL, 10);
        if (na == 5 + cas && s_members(&rec, f[3]))
            rc = s_usage();
        else
            rc = s_one(c, cas ? pm_coord_cas(c, atoll(a[1]), &rec) : pm_coord_create(c, &rec));
    } else if (!strcmp(cmd, "watch") && na <= 1) {
        rc = s_watch(c, na ? atoll(a[0]) : 0);
    } else if ((!strcmp(cmd, "race") || !strcmp(cmd, "shrink-race")) && na == 2) {
        pm_coord_t *c2 = pm_coord_new(&cfg, err, sizeof err);
        if (c2)
            rc = !strcmp(cmd, "race") ? s_race(c, c2, a[0], atoi(a[1]))
                                      : s_shrink_race(c, c2, a[0], atoi(a[1]));
        pm_coord_destroy(&c2);
    } else if (!strcmp(cmd, "bench") && na == 2 && atoi(a[1]) > 0) {
        rc = s_bench(c, a[0], atoi(a[1]));
    } else {
        rc = s_usage();
    }
    pm_coord_destroy(&c);
    return rc;
}
