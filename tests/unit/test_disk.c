/*
 * test_disk.c - cmocka suite for the disk seam: the fake disk's own promises
 * (node/disk_fake.c: what a crash keeps of data and of names, locks, dead
 * handles, faults) and the WAL run on it (node/wal.c, wal_replay.c): records
 * written through the fake disk, a power cut at any moment, and recovery that
 * returns every acknowledged record exactly, may return unacknowledged ones
 * only intact, cuts a torn tail and never misreads one. Seeded: a failure
 * names its seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "disk.h"
#include "hist.h"
#include "log.h"
#include "rand.h"
#include "wal.h"

#define DIR "/data/wal"

/* --- the fake disk itself ---------------------------------------------------------- */

static int
s_write(const pm_disk_t *d, int fd, const char *s, uint64_t off)
{
    return pm_disk_pwrite_all(d, fd, s, strlen(s), off, NULL);
}

static void
test_fake_crash_keeps_synced(void **state)
{
    (void) state;
    pm_disk_fake_t *f = pm_disk_fake_new(1);
    const pm_disk_t *d = pm_disk_fake_disk(f);
    assert_int_equal(pm_disk_mkdir(d, DIR), 0);
    assert_int_equal(pm_disk_mkdir(d, DIR), -1);
    assert_int_equal(errno, EEXIST);
    int dir = pm_disk_open_dir(d, DIR);
    assert_true(dir >= 0);
    assert_int_equal(pm_disk_open_dir(d, "/nowhere"), -1);

    /* a: synced data, durable name. b: synced data, name never made durable.
     * c: durable name, data never synced. */
    int a = pm_disk_open(d, dir, "a", PM_DISK_WRITE | PM_DISK_CREATE);
    int c = pm_disk_open(d, dir, "c", PM_DISK_WRITE | PM_DISK_CREATE);
    assert_int_equal(pm_disk_open(d, dir, "a", PM_DISK_WRITE | PM_DISK_CREATE | PM_DISK_EXCL), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(s_write(d, a, "hello", 0), 0);
    assert_int_equal(pm_disk_datasync(d, a), 0);
    assert_int_equal(pm_disk_dirsync(d, dir), 0);
    assert_int_equal(s_write(d, a, " world", 5), 0); /* unsynced append */
    assert_int_equal(s_write(d, c, "lost", 0), 0);
    int b = pm_disk_open(d, dir, "b", PM_DISK_WRITE | PM_DISK_CREATE);
    assert_int_equal(s_write(d, b, "gone", 0), 0);
    assert_int_equal(pm_disk_datasync(d, b), 0);
    size_t len, synced;
    assert_int_equal(pm_disk_fake_file(f, DIR, "a", NULL, &len, &synced), 0);
    assert_int_equal(len, 11);
    assert_int_equal(synced, 5);

    pm_disk_fake_crash(f, PM_DISK_CRASH_CLEAN);
    uint8_t *data;
    assert_int_equal(pm_disk_fake_file(f, DIR, "a", &data, &len, NULL), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "hello", 5);
    free(data);
    assert_int_equal(pm_disk_fake_file(f, DIR, "c", NULL, &len, NULL), 0);
    assert_int_equal(len, 0);
    assert_int_equal(pm_disk_fake_file(f, DIR, "b", NULL, &len, NULL), -1);
    /* Handles from before the crash are dead, and stay dead. */
    assert_int_equal(s_write(d, a, "x", 0), -1);
    assert_int_equal(errno, EBADF);
    int dir2 = pm_disk_open_dir(d, DIR);
    int a2 = pm_disk_open(d, dir2, "a", PM_DISK_RDWR);
    assert_true(a2 >= 0 && a2 != a && dir2 != dir);
    char buf[16] = "";
    assert_int_equal(pm_disk_pread(d, a2, buf, sizeof buf, 0), 5);
    assert_int_equal(pm_disk_close(d, a), -1);
    pm_disk_fake_destroy(&f);
    assert_null(f);
}

static void
test_fake_names(void **state)
{
    (void) state;
    pm_disk_fake_t *f = pm_disk_fake_new(2);
    const pm_disk_t *d = pm_disk_fake_disk(f);
    pm_disk_mkdir(d, DIR);
    int dir = pm_disk_open_dir(d, DIR);
    int t = pm_disk_open(d, dir, "snap.tmp", PM_DISK_WRITE | PM_DISK_CREATE);
    assert_int_equal(s_write(d, t, "state", 0), 0);
    assert_int_equal(pm_disk_datasync(d, t), 0);
    assert_int_equal(pm_disk_dirsync(d, dir), 0);
    assert_int_equal(pm_disk_rename(d, dir, "snap.tmp", "snap"), 0);
    assert_int_equal(pm_disk_fake_file(f, DIR, "snap.tmp", NULL, NULL, NULL), -1);
    assert_int_equal(pm_disk_fake_file(f, DIR, "snap", NULL, NULL, NULL), 0);
    /* The rename was not made durable: the crash undoes it. */
    pm_disk_fake_crash(f, PM_DISK_CRASH_CLEAN);
    assert_int_equal(pm_disk_fake_file(f, DIR, "snap", NULL, NULL, NULL), -1);
    assert_int_equal(pm_disk_fake_file(f, DIR, "snap.tmp", NULL, NULL, NULL), 0);
    /* Now durable. And an unlink without dirsync comes back. */
    dir = pm_disk_open_dir(d, DIR);
    assert_int_equal(pm_disk_rename(d, dir, "snap.tmp", "snap"), 0);
    assert_int_equal(pm_disk_dirsync(d, dir), 0);
    assert_int_equal(pm_disk_unlink(d, dir, "snap"), 0);
    assert_int_equal(pm_disk_unlink(d, dir, "snap"), -1);
    assert_int_equal(errno, ENOENT);
    pm_disk_fake_crash(f, PM_DISK_CRASH_CLEAN);
    uint8_t *data;
    size_t len;
    assert_int_equal(pm_disk_fake_file(f, DIR, "snap", &data, &len, NULL), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "state", 5);
    free(data);
    pm_disk_fake_destroy(&f);
}

static int
s_count_name(void *arg, const char *name)
{
    (void) name;
    (*(int *) arg)++;
    return 0;
}

static void
test_fake_lock_list_map(void **state)
{
    (void) state;
    pm_disk_fake_t *f = pm_disk_fake_new(3);
    const pm_disk_t *d = pm_disk_fake_disk(f);
    pm_disk_mkdir(d, DIR);
    int dir = pm_disk_open_dir(d, DIR);
    int l1 = pm_disk_open(d, dir, "LOCK", PM_DISK_RDWR | PM_DISK_CREATE);
    int l2 = pm_disk_open(d, dir, "LOCK", PM_DISK_RDWR | PM_DISK_CREATE);
    assert_int_equal(pm_disk_lock(d, l1), 0);
    assert_int_equal(pm_disk_lock(d, l2), -1);
    assert_int_equal(errno, EAGAIN);
    pm_disk_close(d, l1);
    assert_int_equal(pm_disk_lock(d, l2), 0);
    /* A crash releases every lock. */
    pm_disk_fake_crash(f, PM_DISK_CRASH_CLEAN);
    dir = pm_disk_open_dir(d, DIR);
    int l3 = pm_disk_open(d, dir, "LOCK", PM_DISK_RDWR | PM_DISK_CREATE);
    assert_int_equal(pm_disk_lock(d, l3), 0);

    int x = pm_disk_open(d, dir, "x", PM_DISK_WRITE | PM_DISK_CREATE);
    s_write(d, x, "abcdef", 0);
    assert_int_equal(pm_disk_truncate(d, x, 3), 0);
    const uint8_t *p;
    size_t n;
    assert_int_equal(pm_disk_map(d, dir, "x", &p, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "abc", 3);
    pm_disk_unmap(d, p, n);
    assert_int_equal(pm_disk_map(d, dir, "none", &p, &n), -1);
    int names = 0;
    assert_int_equal(pm_disk_list(d, dir, s_count_name, &names), 0);
    assert_int_equal(names, 2); /* LOCK, x */
    pm_disk_fake_destroy(&f);
}

static void
test_fake_faults(void **state)
{
    (void) state;
    pm_disk_fake_t *f = pm_disk_fake_new(4);
    const pm_disk_t *d = pm_disk_fake_disk(f);
    pm_disk_mkdir(d, DIR);
    int dir = pm_disk_open_dir(d, DIR);
    int x = pm_disk_open(d, dir, "x", PM_DISK_WRITE | PM_DISK_CREATE);
    pm_disk_fake_fail(f, PM_DISK_OP_DATASYNC, EIO, 1);
    assert_int_equal(pm_disk_datasync(d, x), 0); /* skipped once */
    assert_int_equal(pm_disk_datasync(d, x), -1);
    assert_int_equal(errno, EIO);
    assert_int_equal(pm_disk_datasync(d, x), 0); /* once only */
    pm_disk_fake_room(f, 4, ENOSPC);
    size_t done = 0;
    assert_int_equal(pm_disk_pwrite_all(d, x, "abcdef", 6, 0, &done), -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(done, 4);
    pm_disk_fake_room(f, 0, 0);
    assert_int_equal(pm_disk_pwrite_all(d, x, "abcdef", 6, 0, &done), 0);
    assert_int_equal(done, 6);
    pm_disk_fake_destroy(&f);
}

/* --- the WAL on the fake disk ------------------------------------------------------ */

/* Record lsn's bytes: a length and contents that only lsn (and the run's
 * salt) decide, so a recovered record can be checked without a copy. */
static size_t
s_rec(uint64_t salt, uint64_t lsn, uint8_t *buf, size_t cap)
{
    uint64_t st = salt ^ (lsn * 0x9e3779b97f4a7c15ULL);
    size_t len = 1 + (size_t) (pm_splitmix64(&st) % 700);
    if (len > cap)
        len = cap;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = pm_splitmix64(&st);
        memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
    }
    return len;
}

/* Checks what recovery hands over. The test's snapshots hold records 1..L
 * (each with lsn = L), so the i-th record handed over, snapshot or log, must
 * be record i: from the snapshot with lsn = its L (>= i), from the log with
 * lsn = i. */
typedef struct {
    uint64_t salt;
    uint64_t seen;     /* records handed over so far */
    uint64_t snap_lsn; /* L of the snapshot records, 0 if none */
    int log_started;
    int bad;
} s_check_t;

static int
s_check_rec(void *arg, uint64_t lsn, const uint8_t *rec, size_t len)
{
    s_check_t *c = arg;
    uint64_t i = ++c->seen;
    uint8_t want[1024];
    size_t n = s_rec(c->salt, i, want, sizeof want);
    if (n != len || memcmp(want, rec, len))
        c->bad++;
    if (lsn == i && !(c->snap_lsn && lsn == c->snap_lsn && i < c->snap_lsn))
        c->log_started = 1;
    else if (lsn > i && !c->log_started && (!c->snap_lsn || c->snap_lsn == lsn))
        c->snap_lsn = lsn;
    else
        c->bad++;
    return 0;
}

typedef struct {
    pm_disk_fake_t *f;
    int crash_at;  /* crash inside the n-th sync from now (1-based); 0 never */
    int mode;      /* PM_DISK_CRASH_* */
    int crashed;
    pm_clock_fake_t *clock;
    int64_t slow_us; /* each sync takes this long */
} s_hook_t;

static int
s_hook(void *arg, const char *path)
{
    s_hook_t *h = arg;
    (void) path;
    if (h->clock && h->slow_us)
        pm_clock_fake_advance(h->clock, h->slow_us);
    if (h->crash_at && --h->crash_at == 0) {
        pm_disk_fake_crash(h->f, h->mode);
        h->crashed = 1;
        return EIO; /* the process dies here: nothing after this is acknowledged */
    }
    return 0;
}

static pm_wal_t *
s_open(pm_fsync_mode_t mode, void *ctx, s_check_t *chk, pm_wal_stats_t *st)
{
    char err[512];
    pm_wal_t *w = pm_wal_open(DIR, mode, ctx, err, sizeof err);
    if (!w)
        fail_msg("open: %s", err);
    if (pm_wal_replay(w, s_check_rec, chk, err, sizeof err) != 0)
        fail_msg("replay: %s", err);
    if (st)
        pm_wal_stats(w, st);
    return w;
}

/* The property, over many seeds: append and flush records in ALWAYS mode, now
 * and then a snapshot; a power cut lands inside a random sync (clean or
 * torn). Recovery must return 1..K intact, with every acknowledged record
 * (K >= acked) and nothing that was never appended (K <= appended); a second
 * recovery after appending more agrees. */
static void
test_wal_crash_recovers_acked(void **state)
{
    (void) state;
    int torn_seen = 0, extra_seen = 0, snaps = 0;
    for (uint64_t seed = 1; seed <= 300; seed++) {
        pm_disk_fake_t *f = pm_disk_fake_new(seed);
        const pm_disk_t *prev = pm_disk_use(pm_disk_fake_disk(f));
        pm_rand_seeded_t rng;
        pm_rand_seeded_init(&rng, seed * 7919);
        s_hook_t hook = {.f = f, .mode = (int) (seed % 2)};
        pm_disk_fake_on_sync(f, s_hook, &hook);
        s_check_t chk = {.salt = seed};
        pm_wal_t *w = s_open(PM_FSYNC_ALWAYS, NULL, &chk, NULL);
        assert_true(chk.seen == 0);
        uint64_t acked = 0, appended = 0;
        hook.crash_at = 1 + (int) (pm_rand_seeded_next(&rng) % 40);
        while (!hook.crashed) {
            int batch = 1 + (int) (pm_rand_seeded_next(&rng) % 5);
            for (int i = 0; i < batch; i++) {
                uint8_t rec[1024];
                size_t len = s_rec(seed, appended + 1, rec, sizeof rec);
                assert_int_equal(pm_wal_append(w, rec, len), appended + 1);
                appended++;
            }
            if (pm_wal_flush(w) == 0) {
                assert_true(pm_wal_durable(w) == appended);
                acked = appended;
            } else
                assert_true(hook.crashed);
            if (!hook.crashed && pm_rand_seeded_next(&rng) % 8 == 0) {
                /* A snapshot of "the state": records 1..L again, as snapshot
                 * records (s_check_rec knows). */
                uint64_t L = pm_wal_appended(w);
                if (pm_wal_snapshot_begin(w) == 0) {
                    uint8_t rec[1024];
                    int ok = 1;
                    for (uint64_t k = 1; k <= L && ok; k++)
                        ok = pm_wal_snapshot_add(w, rec, s_rec(seed, k, rec, sizeof rec)) == 0;
                    if (ok && pm_wal_snapshot_commit(w) == 0)
                        snaps++;
                }
            }
        }
        /* The process is gone: its WAL is freed without touching the disk
         * again (its handles died with the crash). */
        pm_disk_fake_on_sync(f, NULL, NULL);
        pm_wal_close(&w);

        char err[512];
        pm_wal_t *r = pm_wal_open(DIR, PM_FSYNC_ALWAYS, NULL, err, sizeof err);
        assert_non_null(r);
        s_check_t c = {.salt = seed};
        if (pm_wal_replay(r, s_check_rec, &c, err, sizeof err) != 0)
            fail_msg("seed %llu: recovery refused: %s", (unsigned long long) seed, err);
        pm_wal_stats_t st;
        pm_wal_stats(r, &st);
        uint64_t K = pm_wal_appended(r);
        if (c.bad || c.seen != K || K < acked || K > appended)
            fail_msg("seed %llu: recovered 1..%llu (%llu handed over, bad %d), acked %llu, "
                     "appended %llu",
                     (unsigned long long) seed, (unsigned long long) K,
                     (unsigned long long) c.seen, c.bad, (unsigned long long) acked,
                     (unsigned long long) appended);
        /* A clean power cut keeps exactly what was synced: the acknowledged. */
        if (hook.mode == PM_DISK_CRASH_CLEAN && K != acked)
            fail_msg("seed %llu: clean crash recovered 1..%llu, acked %llu",
                     (unsigned long long) seed, (unsigned long long) K,
                     (unsigned long long) acked);
        torn_seen += st.dropped_bytes > 0;
        extra_seen += K > acked;
        /* Appending goes on after K, and a second recovery agrees. */
        uint8_t rec[1024];
        size_t len = s_rec(seed, K + 1, rec, sizeof rec);
        assert_true(pm_wal_append(r, rec, len) == K + 1);
        assert_int_equal(pm_wal_flush(r), 0);
        pm_wal_close(&r);
        s_check_t c4 = {.salt = seed};
        r = pm_wal_open(DIR, PM_FSYNC_ALWAYS, NULL, err, sizeof err);
        assert_non_null(r);
        assert_int_equal(pm_wal_replay(r, s_check_rec, &c4, err, sizeof err), 0);
        assert_int_equal(c4.bad, 0);
        assert_true(c4.seen == K + 1);
        assert_true(pm_wal_appended(r) == K + 1);
        pm_wal_stats(r, &st);
        assert_true(st.dropped_bytes == 0);
        pm_wal_close(&r);
        pm_disk_use(prev);
        pm_disk_fake_destroy(&f);
    }
    /* The seeds reach both interesting cases. */
    assert_true(torn_seen > 10);
    assert_true(extra_seen > 10);
    assert_true(snaps > 10);
}

/* Batch mode: the fsync thread syncs through the fake disk too. An
 * acknowledgement (durable >= lsn) survives a clean crash; a slow fsync (the
 * hook advances the fake clock) shows in the WAL's fsync histogram. */
static void
test_wal_batch_slow_fsync(void **state)
{
    (void) state;
    pm_disk_fake_t *f = pm_disk_fake_new(99);
    const pm_disk_t *prev = pm_disk_use(pm_disk_fake_disk(f));
    pm_clock_fake_t clk;
    pm_clock_fake_init(&clk, 1000000, 1700000000000LL);
    pm_clock_use(&clk.clock);
    s_hook_t hook = {.f = f, .clock = &clk, .slow_us = 250000};
    void *ctx = zmq_ctx_new();
    s_check_t chk = {.salt = 5};
    pm_wal_t *w = s_open(PM_FSYNC_BATCH, ctx, &chk, NULL);
    pm_disk_fake_on_sync(f, s_hook, &hook);
    uint8_t rec[1024];
    uint64_t lsn = 0;
    for (uint64_t k = 1; k <= 20; k++) {
        lsn = pm_wal_append(w, rec, s_rec(5, k, rec, sizeof rec));
        assert_true(lsn == k);
        assert_int_equal(pm_wal_flush(w), 0);
    }
    /* Wait on the WAL's socket until everything is durable. */
    while (pm_wal_durable(w) < lsn) {
        zmq_pollitem_t it = {.socket = pm_wal_socket(w), .events = ZMQ_POLLIN};
        assert_true(zmq_poll(&it, 1, 5000) == 1);
        pm_wal_readable(w);
    }
    const struct pm_hist *h = pm_wal_fsync_hist(w);
    pm_wal_stats_t st;
    pm_wal_stats(w, &st);
    assert_true(st.fsyncs >= 1);
    /* Each fsync took 250 ms of the fake clock (the thread read it too). */
    const pm_hist_t *hh = (const pm_hist_t *) h;
    assert_true(hh->count == st.fsyncs);
    assert_true(hh->sum_ms >= 250.0 * (double) hh->count - 0.5);
    pm_disk_fake_on_sync(f, NULL, NULL);
    pm_disk_fake_crash(f, PM_DISK_CRASH_CLEAN);
    pm_wal_close(&w);
    pm_clock_use(NULL);
    s_check_t c = {.salt = 5};
    w = s_open(PM_FSYNC_ALWAYS, NULL, &c, NULL);
    assert_int_equal(c.bad, 0);
    assert_true(c.seen == 20 && pm_wal_appended(w) == 20);
    pm_wal_close(&w);
    zmq_ctx_term(ctx);
    pm_disk_use(prev);
    pm_disk_fake_destroy(&f);
}

/* Batch mode under a syncer (wal.h; the simulator's seam): no thread, no
 * socket; one fsync in flight at a time, completed by the first flush once
 * the clock reaches the time the syncer chose; durable advances only then,
 * and a power cut before it loses what was written since the last one. */
typedef struct {
    int starts, syncs;
    int64_t us; /* each fsync takes this long */
} s_syncer_t;

static int64_t
s_syncer_start(void *arg)
{
    s_syncer_t *sy = arg;
    sy->starts++;
    return pm_mono_us() + sy->us;
}

static int
s_syncer_sync(void *arg, const struct pm_disk *disk, int fd)
{
    s_syncer_t *sy = arg;
    sy->syncs++;
    return pm_disk_datasync(disk, fd);
}

static void
test_wal_batch_syncer(void **state)
{
    (void) state;
    pm_disk_fake_t *f = pm_disk_fake_new(11);
    const pm_disk_t *prev = pm_disk_use(pm_disk_fake_disk(f));
    pm_clock_fake_t clk;
    pm_clock_fake_init(&clk, 1000000, 1700000000000LL);
    pm_clock_use(&clk.clock);
    s_syncer_t sy = {.us = 5000};
    pm_wal_syncer_t syncer = {s_syncer_start, s_syncer_sync, &sy};
    assert_null(pm_wal_syncer_use(&syncer));
    s_check_t chk = {.salt = 4};
    pm_wal_t *w = s_open(PM_FSYNC_BATCH, NULL, &chk, NULL); /* no context needed */
    assert_null(pm_wal_socket(w));
    uint8_t rec[512];
    for (uint64_t k = 1; k <= 3; k++)
        pm_wal_append(w, rec, s_rec(4, k, rec, sizeof rec));
    assert_int_equal(pm_wal_flush(w), 0);
    assert_int_equal(sy.starts, 1);
    assert_true(pm_wal_durable(w) == 0);
    assert_true(pm_disk_fake_unsynced(f, "wal-") > 0);
    assert_true(pm_disk_fake_unsynced(f, "nothing-") == 0);
    for (uint64_t k = 4; k <= 5; k++)
        pm_wal_append(w, rec, s_rec(4, k, rec, sizeof rec));
    assert_int_equal(pm_wal_flush(w), 0);
    assert_int_equal(sy.starts, 1); /* one in flight: 4-5 wait for the next */
    pm_clock_fake_advance(&clk, 4999);
    assert_int_equal(pm_wal_flush(w), 0);
    assert_true(pm_wal_durable(w) == 0 && sy.syncs == 0);
    pm_clock_fake_advance(&clk, 1);
    assert_int_equal(pm_wal_flush(w), 0);
    assert_true(pm_wal_durable(w) == 3); /* what was written when it was asked for */
    assert_int_equal(sy.syncs, 1);
    assert_int_equal(sy.starts, 2); /* and the next one for 4-5 */
    pm_clock_fake_advance(&clk, 5000);
    assert_int_equal(pm_wal_flush(w), 0);
    assert_true(pm_wal_durable(w) == 5);
    assert_int_equal(sy.starts, 2);
    pm_wal_stats_t st;
    pm_wal_stats(w, &st);
    assert_true(st.fsyncs == 2);
    /* 6-7 written, their fsync in flight: a power cut loses them. */
    for (uint64_t k = 6; k <= 7; k++)
        pm_wal_append(w, rec, s_rec(4, k, rec, sizeof rec));
    assert_int_equal(pm_wal_flush(w), 0);
    assert_int_equal(sy.starts, 3);
    assert_true(pm_wal_durable(w) == 5 && pm_disk_fake_unsynced(f, "wal-") > 0);
    pm_disk_fake_crash(f, PM_DISK_CRASH_CLEAN);
    pm_wal_close(&w);
    assert_ptr_equal(pm_wal_syncer_use(NULL), &syncer);
    s_check_t c = {.salt = 4};
    w = s_open(PM_FSYNC_ALWAYS, NULL, &c, NULL);
    assert_int_equal(c.bad, 0);
    assert_true(c.seen == 5 && pm_wal_appended(w) == 5);
    pm_wal_close(&w);
    pm_clock_use(NULL);
    pm_disk_use(prev);
    pm_disk_fake_destroy(&f);
}

/* A disk that fills up mid-record: the flush fails, the partial record is cut
 * back, nothing is acknowledged; with room again the same records go out, and
 * recovery (also after a torn crash) reads each exactly once. */
static void
test_wal_disk_full(void **state)
{
    (void) state;
    pm_disk_fake_t *f = pm_disk_fake_new(7);
    const pm_disk_t *prev = pm_disk_use(pm_disk_fake_disk(f));
    s_check_t chk = {.salt = 9};
    pm_wal_t *w = s_open(PM_FSYNC_ALWAYS, NULL, &chk, NULL);
    uint8_t rec[1024];
    for (uint64_t k = 1; k <= 5; k++)
        pm_wal_append(w, rec, s_rec(9, k, rec, sizeof rec));
    assert_int_equal(pm_wal_flush(w), 0);
    pm_disk_fake_room(f, 100, ENOSPC);
    for (uint64_t k = 6; k <= 10; k++)
        pm_wal_append(w, rec, s_rec(9, k, rec, sizeof rec));
    assert_int_equal(pm_wal_flush(w), -1);
    assert_non_null(strstr(pm_wal_error(w), "No space"));
    assert_true(pm_wal_durable(w) == 5);
    assert_int_equal(pm_wal_flush(w), -1); /* still full */
    pm_disk_fake_room(f, 0, 0);
    assert_int_equal(pm_wal_flush(w), 0);
    assert_true(pm_wal_durable(w) == 10);
    pm_disk_fake_crash(f, PM_DISK_CRASH_TORN);
    pm_wal_close(&w);
    s_check_t c = {.salt = 9};
    w = s_open(PM_FSYNC_ALWAYS, NULL, &c, NULL);
    assert_int_equal(c.bad, 0);
    assert_true(c.seen == 10);
    pm_wal_close(&w);
    pm_disk_use(prev);
    pm_disk_fake_destroy(&f);
}

/* Damage at rest in the middle of the log (not a torn tail) is refused,
 * never skipped or misread. */
static void
test_wal_corruption_refused(void **state)
{
    (void) state;
    pm_disk_fake_t *f = pm_disk_fake_new(8);
    const pm_disk_t *prev = pm_disk_use(pm_disk_fake_disk(f));
    s_check_t chk = {.salt = 3};
    pm_wal_t *w = s_open(PM_FSYNC_ALWAYS, NULL, &chk, NULL);
    uint8_t rec[1024];
    for (uint64_t k = 1; k <= 10; k++)
        pm_wal_append(w, rec, s_rec(3, k, rec, sizeof rec));
    assert_int_equal(pm_wal_flush(w), 0);
    pm_wal_close(&w);
    assert_int_equal(pm_disk_fake_corrupt(f, DIR, "wal-0000000000000001.log", 40, 0x20), 0);
    char err[512];
    w = pm_wal_open(DIR, PM_FSYNC_ALWAYS, NULL, err, sizeof err);
    assert_non_null(w);
    s_check_t c = {.salt = 3};
    assert_int_equal(pm_wal_replay(w, s_check_rec, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "refusing"));
    assert_true(c.seen == 0); /* not one record handed over */
    pm_wal_close(&w);
    pm_disk_use(prev);
    pm_disk_fake_destroy(&f);
}

int
main(void)
{
    pm_log_setup(-1, PM_LOG_TEXT, "test"); /* failed fsyncs and torn tails are the point here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fake_crash_keeps_synced),
        cmocka_unit_test(test_fake_names),
        cmocka_unit_test(test_fake_lock_list_map),
        cmocka_unit_test(test_fake_faults),
        cmocka_unit_test(test_wal_crash_recovers_acked),
        cmocka_unit_test(test_wal_batch_slow_fsync),
        cmocka_unit_test(test_wal_batch_syncer),
        cmocka_unit_test(test_wal_disk_full),
        cmocka_unit_test(test_wal_corruption_refused),
    };
    return cmocka_run_group_tests_name("disk", tests, NULL, NULL);
}
