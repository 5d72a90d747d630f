/*
 * wal_bench.c - numbers for node/wal.c on this machine:
 *   1. append throughput per fsync mode (records of ~100 bytes, flushed every
 *      1000 appends as a busy reactor would, timed until all are durable);
 *   2. group commit in batch mode under concurrent load: C clients, each
 *      waiting for its previous record to be durable before sending the next;
 *      fsyncs vs appends;
 *   3. recovery time of a 1,000,000-record log, and of a 1,000,000-record
 *      snapshot.
 * Usage: wal_bench [DIR] [RECORDS]   (DIR default: a fresh one under $TMPDIR or
 * /tmp, removed afterwards; RECORDS default 1000000)
 */
#include "log.h"
#include "wal.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define REC_LEN 100
#define PER_FLUSH 1000 /* appends per reactor iteration */

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int
s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static void
s_rmrf(const char *dir)
{
    nftw(dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static void
s_die(const char *what, const char *why)
{
    fprintf(stderr, "wal_bench: %s: %s\n", what, why);
    exit(1);
}

static pm_wal_t *
s_open(const char *dir, pm_fsync_mode_t mode, void *ctx)
{
    char err[512];
    pm_wal_t *w = pm_wal_open(dir, mode, ctx, err, sizeof err);
    if (!w)
        s_die("open", err);
    if (pm_wal_replay(w, NULL, NULL, err, sizeof err) != 0)
        s_die("replay", err);
    return w;
}

static void
s_fill(uint8_t *rec, uint64_t i)
{
    for (int j = 0; j < REC_LEN; j++)
        rec[j] = (uint8_t) (i * 31 + (uint64_t) j);
}

/* Polls the WAL socket (batch mode) for up to timeout_ms. */
static void
s_poll(pm_wal_t *w, long timeout_ms)
{
    void *sock = pm_wal_socket(w);
    if (!sock)
        return;
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) > 0)
        pm_wal_readable(w);
}

static void
s_append_run(const char *dir, pm_fsync_mode_t mode, void *ctx, uint64_t n, uint64_t per_flush)
{
    s_rmrf(dir);
    pm_wal_t *w = s_open(dir, mode, ctx);
    uint8_t rec[REC_LEN];
    double t0 = s_now();
    for (uint64_t i = 1; i <= n; i++) {
        s_fill(rec, i);
        if (!pm_wal_append(w, rec, sizeof rec))
            s_die("append", pm_wal_error(w));
        if (i % per_flush == 0 || i == n) {
            if (pm_wal_flush(w) != 0)
                s_die("flush", pm_wal_error(w));
            s_poll(w, 0);
        }
    }
    while (pm_wal_durable(w) < n)
        s_poll(w, 100);
    double dt = s_now() - t0;
    pm_wal_stats_t st;
    pm_wal_stats(w, &st);
    printf("  %-6s %8" PRIu64 " records, %5" PRIu64 " per flush: %6.3f s, %10.0f records/s, "
           "%6.1f MB/s, %6" PRIu64 " fsyncs\n",
           pm_wal_mode_name(mode), n, per_flush, dt, (double) n / dt,
           (double) pm_wal_log_bytes(w) / dt / 1e6, st.fsyncs);
    pm_wal_close(&w);
}

/* C clients in a closed loop: each sends a record, waits until it is durable,
 * sends the next. One reactor iteration appends for every idle client,
 * flushes, then waits on the WAL socket. */
static void
s_group_run(const char *dir, void *ctx, int clients, uint64_t n)
{
    s_rmrf(dir);
    pm_wal_t *w = s_open(dir, PM_FSYNC_BATCH, ctx);
    uint64_t *waiting = calloc((size_t) clients, sizeof *waiting); /* LSN or 0 if idle */
    uint8_t rec[REC_LEN];
    uint64_t sent = 0, acked = 0;
    double t0 = s_now();
    while (acked < n) {
        for (int c = 0; c < clients; c++)
            if (!waiting[c] && sent < n) {
                s_fill(rec, ++sent);
                waiting[c] = pm_wal_append(w, rec, sizeof rec);
                if (!waiting[c])
                    s_die("append", pm_wal_error(w));
            }
        if (pm_wal_flush(w) != 0)
            s_die("flush", pm_wal_error(w));
        s_poll(w, 1000);
        uint64_t durable = pm_wal_durable(w);
        for (int c = 0; c < clients; c++)
            if (waiting[c] && waiting[c] <= durable) {
                waiting[c] = 0;
                acked++;
            }
    }
    double dt = s_now() - t0;
    pm_wal_stats_t st;
    pm_wal_stats(w, &st);
    printf("  %5d clients: %7" PRIu64 " appends, %6" PRIu64 " fsyncs (%7.1f appends/fsync), "
           "%9.0f acked/s, %6.2f ms per fsync round\n",
           clients, st.appends, st.fsyncs, (double) st.appends / (double) st.fsyncs,
           (double) n / dt, dt * 1000 / (double) st.fsyncs);
    free(waiting);
    pm_wal_close(&w);
}

/* Pushes the WAL's files out of the page cache, so recovery reads the disk. */
static void
s_drop_cache(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        s_die("opendir", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    closedir(d);
}

static int
s_count(void *arg, uint64_t lsn, const uint8_t *rec, size_t len)
{
    (void) lsn, (void) rec;
    uint64_t *c = arg;
    c[0]++;
    c[1] += len;
    return 0;
}

static void
s_recovery_run(const char *dir, uint64_t n, int snapshot)
{
    s_rmrf(dir);
    pm_wal_t *w = s_open(dir, PM_FSYNC_NEVER, NULL);
    uint8_t rec[REC_LEN];
    double t0 = s_now();
    if (snapshot && pm_wal_snapshot_begin(w) != 0)
        s_die("snapshot", pm_wal_error(w));
    for (uint64_t i = 1; i <= n; i++) {
        s_fill(rec, i);
        if (snapshot ? pm_wal_snapshot_add(w, rec, sizeof rec) != 0
                     : !pm_wal_append(w, rec, sizeof rec))
            s_die("append", pm_wal_error(w));
        if (!snapshot && i % PER_FLUSH == 0 && pm_wal_flush(w) != 0)
            s_die("flush", pm_wal_error(w));
    }
    if (snapshot && pm_wal_snapshot_commit(w) != 0)
        s_die("snapshot commit", pm_wal_error(w));
    double t_write = s_now() - t0;
    pm_wal_close(&w);

    printf("  %s of %" PRIu64 " records (%.1f MB) written in %.3f s\n",
           snapshot ? "snapshot" : "log", n, (double) (n * (REC_LEN + 16)) / 1e6, t_write);
    for (int cold = 1; cold >= 0; cold--) {
        if (cold)
            s_drop_cache(dir);
        char err[512];
        uint64_t seen[2] = {0, 0};
        t0 = s_now();
        w = pm_wal_open(dir, PM_FSYNC_NEVER, NULL, err, sizeof err);
        if (!w || pm_wal_replay(w, s_count, seen, err, sizeof err) != 0)
            s_die("recover", err);
        double dt = s_now() - t0;
        pm_wal_stats_t st;
        pm_wal_stats(w, &st);
        if (seen[0] != n)
            s_die("recover", "wrong record count");
        printf("    recovered (%s page cache) in %.3f s: %.0f records/s; stats: %" PRId64
               " ms, %" PRIu64 " log + %" PRIu64 " snapshot records\n",
               cold ? "cold" : "warm", dt, (double) n / dt, st.recovery_ms, st.records,
               st.snapshot_records);
        pm_wal_close(&w);
    }
}

int
main(int argc, char **argv)
{
    pm_log_setup(PM_LOG_WARN, PM_LOG_TEXT, "wal-bench");
    char root[512];
    int own = argc < 2;
    if (own) {
        const char *tmp = getenv("TMPDIR");
        snprintf(root, sizeof root, "%s/pm-wal-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(root))
            s_die("mkdtemp", root);
    } else
        snprintf(root, sizeof root, "%s", argv[1]);
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    if (n < 1000)
        n = 1000;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/wal", root);
    void *ctx = zmq_ctx_new();

    printf("wal_bench: %d-byte records, data in %s\n", REC_LEN, root);
    printf("append throughput (until all durable):\n");
    s_append_run(dir, PM_FSYNC_NEVER, NULL, n, PER_FLUSH);
    s_append_run(dir, PM_FSYNC_BATCH, ctx, n, PER_FLUSH);
    s_append_run(dir, PM_FSYNC_ALWAYS, NULL, n, PER_FLUSH);
    s_append_run(dir, PM_FSYNC_ALWAYS, NULL, 2000, 1);
    s_append_run(dir, PM_FSYNC_BATCH, ctx, 2000, 1);

    printf("group commit, batch mode, clients waiting for durability:\n");
    int clients[] = {1, 10, 100, 1000};
    for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++)
        s_group_run(dir, ctx, clients[i], clients[i] == 1 ? 2000 : 50000);

    printf("recovery:\n");
    s_recovery_run(dir, n, 0);
    s_recovery_run(dir, n, 1);

    s_rmrf(dir);
    if (own)
        s_rmrf(root);
    zmq_ctx_term(ctx);
    return 0;
}
