/*
 * test_wal.c - cmocka suite for node/wal.c: round trips, LSNs across restarts,
 * a torn tail cut at every byte of the last record, flipped bytes at the tail
 * (dropped) and in the middle (refused), zero tails, snapshots and crashes
 * while writing one, the lock, the three fsync modes and I/O errors (a real
 * EFBIG from RLIMIT_FSIZE, plus the fault hook for fsync).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "wal.h"

#define FRAME 16 /* record frame header: len, crc, lsn */
#define SEG_HDR 16

/* --- helpers ---------------------------------------------------------------- */

typedef struct {
    char dir[256];
    char dir2[300];
} fx_t;

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

static int
setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/pm-wal-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->dir2, sizeof fx->dir2, "%s/copy", fx->dir);
    strcat(fx->dir, "/data"); /* not there yet: open must create it */
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fx_t *fx = *state;
    char root[256];
    snprintf(root, sizeof root, "%s", fx->dir);
    *strrchr(root, '/') = '\0';
    s_rmrf(root);
    free(fx);
    return 0;
}

/* Record i: deterministic content and length 0..199 (length 0 included). */
static size_t
s_rec(uint64_t i, uint8_t *out)
{
    size_t len = (size_t) ((i * 37) % 200);
    for (size_t j = 0; j < len; j++)
        out[j] = (uint8_t) (i * 131 + j * 7);
    return len;
}

typedef struct {
    size_t n;
    uint64_t lsn[4096];
    size_t len[4096];
    uint8_t *rec[4096];
    int stop_at; /* return non-zero on this call (1-based); 0 never */
} got_t;

static int
s_collect(void *arg, uint64_t lsn, const uint8_t *rec, size_t len)
{
    got_t *g = arg;
    if (g->n >= 4096)
        return -1;
    g->lsn[g->n] = lsn;
    g->len[g->n] = len;
    g->rec[g->n] = malloc(len ? len : 1);
    memcpy(g->rec[g->n], rec, len);
    g->n++;
    return g->stop_at && (int) g->n == g->stop_at;
}

static void
s_got_free(got_t *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->rec[i]);
    g->n = 0;
}

static pm_wal_t *
s_open(const char *dir, pm_fsync_mode_t mode, void *ctx)
{
    char err[512];
    pm_wal_t *w = pm_wal_open(dir, mode, ctx, err, sizeof err);
    if (!w)
        print_error("open: %s\n", err);
    assert_non_null(w);
    return w;
}

/* Opens and replays into g (which is reset); returns the WAL. */
static pm_wal_t *
s_open_replay(const char *dir, got_t *g)
{
    pm_wal_t *w = s_open(dir, PM_FSYNC_NEVER, NULL);
    char err[512];
    s_got_free(g);
    int rc = pm_wal_replay(w, s_collect, g, err, sizeof err);
    if (rc)
        print_error("replay: %s\n", err);
    assert_int_equal(rc, 0);
    return w;
}

/* Appends records first..last (contents by s_rec) and flushes. */
static void
s_append(pm_wal_t *w, uint64_t first, uint64_t last)
{
    uint8_t buf[256];
    for (uint64_t i = first; i <= last; i++) {
        size_t len = s_rec(i, buf);
        assert_int_equal(pm_wal_append(w, buf, len), i);
    }
    assert_int_equal(pm_wal_flush(w), 0);
}

/* Checks g holds log records first..last with their LSNs, from index at. */
static void
s_check_log(const got_t *g, size_t at, uint64_t first, uint64_t last)
{
    uint8_t buf[256];
    assert_int_equal(g->n, at + (last - first + 1));
    for (uint64_t i = first; i <= last; i++, at++) {
        size_t len = s_rec(i, buf);
        assert_int_equal(g->lsn[at], i);
        assert_int_equal(g->len[at], len);
        assert_memory_equal(g->rec[at], buf, len);
    }
}

static char *
s_path(const char *dir, const char *name)
{
    static char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static const char *
s_seg(uint64_t base)
{
    static char n[64];
    snprintf(n, sizeof n, "wal-%016" PRIx64 ".log", base);
    return n;
}

static const char *
s_snapname(uint64_t lsn)
{
    static char n[64];
    snprintf(n, sizeof n, "snap-%016" PRIx64 ".snap", lsn);
    return n;
}

static uint8_t *
s_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t) ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*len ? *len : 1);
    assert_int_equal(fread(p, 1, *len, f), *len);
    fclose(f);
    return p;
}

static void
s_write(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, len, f), len);
    fclose(f);
}

static off_t
s_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static int
s_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Offset of record k (1-based) in a segment starting at LSN 1. */
static size_t
s_rec_off(uint64_t k)
{
    uint8_t buf[256];
    size_t off = SEG_HDR;
    for (uint64_t i = 1; i < k; i++)
        off += FRAME + s_rec(i, buf);
    return off;
}

/* A fresh copy of dir/name, holding only that file with data p[0..len). */
static void
s_copy_dir_with(const char *dir2, const char *name, const uint8_t *p, size_t len)
{
    s_rmrf(dir2);
    assert_int_equal(mkdir(dir2, 0750), 0);
    s_write(s_path(dir2, name), p, len);
}

/* Sends stderr (where log lines go) to a file until s_capture_end, which
 * returns what was written (caller frees). */
static int s_saved_fd = -1;
static char s_capture_path[600];

static void
s_capture_begin(const char *dir)
{
    snprintf(s_capture_path, sizeof s_capture_path, "%s/../stderr.txt", dir);
    fflush(stderr);
    s_saved_fd = dup(2);
    int fd = open(s_capture_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(fd >= 0 && s_saved_fd >= 0);
    dup2(fd, 2);
    close(fd);
}

static char *
s_capture_end(void)
{
    fflush(stderr);
    dup2(s_saved_fd, 2);
    close(s_saved_fd);
    size_t len;
    uint8_t *p = s_read(s_capture_path, &len);
    char *out = realloc(p, len + 1);
    out[len] = '\0';
    return out;
}

static int
s_count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* --- tests ------------------------------------------------------------------ */

static void
test_crc32c(void **state)
{
    (void) state;
    /* The standard check value of CRC-32C (Castagnoli). */
    assert_int_equal(pm_wal_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(pm_wal_crc32c("", 0), 0);
    /* Lengths that exercise the 8-byte and the byte-at-a-time paths agree. */
    uint8_t b[64];
    for (int i = 0; i < 64; i++)
        b[i] = (uint8_t) (i * 29);
    uint32_t ref = 0xFFFFFFFFu;
    for (int i = 0; i < 61; i++) {
        ref ^= b[i];
        for (int k = 0; k < 8; k++)
            ref = (ref >> 1) ^ (0x82F63B78u & (0u - (ref & 1)));
    }
    assert_int_equal(pm_wal_crc32c(b, 61), ~ref);
}

static void
test_round_trip(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    pm_wal_t *w = s_open_replay(fx->dir, &g); /* creates the dir */
    assert_int_equal(g.n, 0);
    struct stat st;
    assert_int_equal(stat(fx->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0750);
    assert_true(s_exists(s_path(fx->dir, "LOCK")));
    assert_true(s_exists(s_path(fx->dir, s_seg(1))));
    s_append(w, 1, 300);
    /* one large record too */
    size_t big = 3 * 1024 * 1024 + 5;
    uint8_t *bp = malloc(big);
    for (size_t i = 0; i < big; i++)
        bp[i] = (uint8_t) (i ^ (i >> 9));
    assert_int_equal(pm_wal_append(w, bp, big), 301);
    assert_int_equal(pm_wal_append(w, bp, PM_WAL_MAX_RECORD + 1), 0); /* length checked first */
    assert_non_null(strstr(pm_wal_error(w), "limit"));
    pm_wal_close(&w);
    assert_null(w);

    w = s_open_replay(fx->dir, &g);
    assert_int_equal(g.n, 301);
    g.n = 300;
    s_check_log(&g, 0, 1, 300);
    g.n = 301;
    assert_int_equal(g.len[300], big);
    assert_memory_equal(g.rec[300], bp, big);
    pm_wal_stats_t s;
    pm_wal_stats(w, &s);
    assert_int_equal(s.records, 301);
    assert_int_equal(s.snapshot_records, 0);
    assert_int_equal(s.dropped_bytes, 0);
    assert_int_equal(s.last_lsn, 301);
    assert_int_equal(s.bytes, s_size(s_path(fx->dir, s_seg(1))) - SEG_HDR);
    assert_int_equal(pm_wal_log_bytes(w), s.bytes);
    assert_true(s.recovery_ms >= 0);
    pm_wal_close(&w);
    free(bp);
    s_got_free(&g);
}

static void
test_lsn_continues(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    for (uint64_t round = 0; round < 4; round++) {
        pm_wal_t *w = s_open_replay(fx->dir, &g);
        s_check_log(&g, 0, 1, round * 3);
        assert_int_equal(pm_wal_appended(w), round * 3);
        assert_int_equal(pm_wal_durable(w), round * 3);
        s_append(w, round * 3 + 1, round * 3 + 3);
        pm_wal_close(&w);
    }
    s_got_free(&g);
}

static void
test_misuse(void **state)
{
    fx_t *fx = *state;
    pm_wal_t *w = s_open(fx->dir, PM_FSYNC_NEVER, NULL);
    assert_int_equal(pm_wal_append(w, "x", 1), 0);
    assert_non_null(strstr(pm_wal_error(w), "pm_wal_replay"));
    assert_int_equal(pm_wal_flush(w), -1);
    assert_int_equal(pm_wal_snapshot_begin(w), -1);
    assert_int_equal(pm_wal_snapshot_add(w, "x", 1), -1);
    assert_int_equal(pm_wal_snapshot_commit(w), -1);
    assert_int_equal(pm_wal_replay(w, NULL, NULL, NULL, 0), 0);
    char err[256];
    assert_int_equal(pm_wal_replay(w, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(pm_wal_append(w, "x", 1), 1);
    pm_wal_close(&w);

    /* batch mode without a context */
    assert_null(pm_wal_open(fx->dir, PM_FSYNC_BATCH, NULL, err, sizeof err));
    assert_non_null(strstr(err, "context"));
    /* a data dir that cannot be created */
    assert_null(pm_wal_open("/proc/pm-wal-nope/x", PM_FSYNC_NEVER, NULL, err, sizeof err));
    assert_non_null(strstr(err, "mkdir /proc/pm-wal-nope"));

    pm_fsync_mode_t m;
    assert_int_equal(pm_wal_mode_parse("batch", &m), 0);
    assert_int_equal(m, PM_FSYNC_BATCH);
    assert_int_equal(pm_wal_mode_parse("never", &m), 0);
    assert_int_equal(m, PM_FSYNC_NEVER);
    assert_int_equal(pm_wal_mode_parse("always", &m), 0);
    assert_int_equal(m, PM_FSYNC_ALWAYS);
    assert_int_equal(pm_wal_mode_parse("sometimes", &m), -1);
    assert_string_equal(pm_wal_mode_name(PM_FSYNC_BATCH), "batch");
}

static void
test_replay_callback_stops(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    s_append(w, 1, 10);
    pm_wal_close(&w);
    w = s_open(fx->dir, PM_FSYNC_NEVER, NULL);
    g.stop_at = 4;
    char err[256];
    assert_int_equal(pm_wal_replay(w, s_collect, &g, err, sizeof err), -1);
    assert_non_null(strstr(err, "LSN 4"));
    assert_int_equal(g.n, 4);
    assert_int_equal(pm_wal_append(w, "x", 1), 0);
    pm_wal_close(&w);
    s_got_free(&g);
}

/* Cuts a copy of the segment at every length inside the last record. */
static void
test_torn_tail_every_offset(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    const uint64_t n = 6; /* record 6 is 22 bytes long */
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    s_append(w, 1, n);
    pm_wal_close(&w);
    size_t len;
    uint8_t *orig = s_read(s_path(fx->dir, s_seg(1)), &len);
    size_t last_off = s_rec_off(n);
    assert_int_equal(last_off + FRAME + s_rec(n, (uint8_t[256]){0}), len);

    for (size_t cut = last_off + 1; cut < len; cut++) {
        s_copy_dir_with(fx->dir2, s_seg(1), orig, cut);
        s_capture_begin(fx->dir2);
        w = s_open_replay(fx->dir2, &g);
        char *log = s_capture_end();
        char want[64];
        snprintf(want, sizeof want, "dropped %zu bytes", cut - last_off);
        assert_int_equal(s_count_str(log, "PM-WAL-TORN"), 1);
        assert_non_null(strstr(log, want));
        assert_int_equal(s_count_str(log, "PM-WAL-RECOVERED"), 1);
        free(log);
        s_check_log(&g, 0, 1, n - 1);
        pm_wal_stats_t s;
        pm_wal_stats(w, &s);
        assert_int_equal(s.dropped_bytes, cut - last_off);
        assert_int_equal(s.last_lsn, n - 1);
        assert_int_equal(s_size(s_path(fx->dir2, s_seg(1))), last_off);
        /* the next record takes the dropped one's LSN and lands after it */
        s_append(w, n, n);
        pm_wal_close(&w);
        w = s_open_replay(fx->dir2, &g);
        s_check_log(&g, 0, 1, n);
        pm_wal_stats(w, &s);
        assert_int_equal(s.dropped_bytes, 0);
        pm_wal_close(&w);
    }
    /* cut exactly at a record boundary: nothing torn */
    s_copy_dir_with(fx->dir2, s_seg(1), orig, last_off);
    w = s_open_replay(fx->dir2, &g);
    s_check_log(&g, 0, 1, n - 1);
    pm_wal_stats_t s;
    pm_wal_stats(w, &s);
    assert_int_equal(s.dropped_bytes, 0);
    pm_wal_close(&w);
    free(orig);
    s_got_free(&g);
}

static void
test_flipped_byte_in_last_record(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    const uint64_t n = 6;
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    s_append(w, 1, n);
    pm_wal_close(&w);
    size_t len;
    uint8_t *orig = s_read(s_path(fx->dir, s_seg(1)), &len);
    size_t last_off = s_rec_off(n);
    for (size_t at = last_off; at < len; at++) {
        for (int bit = 0; bit < 8; bit += 7) {
            orig[at] ^= (uint8_t) (1u << bit);
            s_copy_dir_with(fx->dir2, s_seg(1), orig, len);
            orig[at] ^= (uint8_t) (1u << bit);
            w = s_open_replay(fx->dir2, &g);
            s_check_log(&g, 0, 1, n - 1);
            pm_wal_stats_t s;
            pm_wal_stats(w, &s);
            assert_int_equal(s.dropped_bytes, len - last_off);
            pm_wal_close(&w);
        }
    }
    free(orig);
    s_got_free(&g);
}

static void
test_flipped_byte_in_middle_refused(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    s_append(w, 1, 8);
    pm_wal_close(&w);
    size_t len;
    uint8_t *orig = s_read(s_path(fx->dir, s_seg(1)), &len);
    size_t off3 = s_rec_off(3), end3 = s_rec_off(4);
    for (size_t at = off3; at < end3; at++) {
        orig[at] ^= 0x10;
        s_copy_dir_with(fx->dir2, s_seg(1), orig, len);
        orig[at] ^= 0x10;
        w = s_open(fx->dir2, PM_FSYNC_NEVER, NULL);
        char err[512], want[64];
        s_got_free(&g);
        assert_int_equal(pm_wal_replay(w, s_collect, &g, err, sizeof err), -1);
        snprintf(want, sizeof want, "offset %zu:", off3);
        if (!strstr(err, want) || !strstr(err, s_seg(1)))
            fail_msg("flip at %zu: error does not name the file and offset %zu: %s", at, off3, err);
        assert_int_equal(g.n, 0); /* refused before any record was handed over */
        assert_string_equal(pm_wal_error(w), err);
        assert_int_equal(pm_wal_append(w, "x", 1), 0);
        pm_wal_close(&w);
        assert_int_equal(s_size(s_path(fx->dir2, s_seg(1))), len); /* left alone */
    }
    free(orig);
    s_got_free(&g);
}

/* An intact frame whose LSN is out of order is corruption even at the tail. */
static void
test_out_of_sequence_refused(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    uint8_t r[10] = "0123456789";
    for (int i = 0; i < 4; i++)
        pm_wal_append(w, r, sizeof r);
    assert_int_equal(pm_wal_flush(w), 0);
    pm_wal_close(&w);
    size_t len;
    uint8_t *p = s_read(s_path(fx->dir, s_seg(1)), &len);
    /* swap records 3 and 4 (same size) */
    size_t a = SEG_HDR + 2 * (FRAME + 10), b = a + FRAME + 10;
    uint8_t tmp[FRAME + 10];
    memcpy(tmp, p + a, sizeof tmp);
    memcpy(p + a, p + b, sizeof tmp);
    memcpy(p + b, tmp, sizeof tmp);
    s_copy_dir_with(fx->dir2, s_seg(1), p, len);
    w = s_open(fx->dir2, PM_FSYNC_NEVER, NULL);
    char err[512];
    assert_int_equal(pm_wal_replay(w, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "LSN 4, expected 3"));
    pm_wal_close(&w);
    free(p);
}

static void
test_zero_filled_tail(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    s_append(w, 1, 5);
    pm_wal_close(&w);
    size_t len;
    uint8_t *orig = s_read(s_path(fx->dir, s_seg(1)), &len);

    /* zeros appended after the last record (file size updated, data not) */
    uint8_t *p = calloc(1, len + 8192);
    memcpy(p, orig, len);
    s_copy_dir_with(fx->dir2, s_seg(1), p, len + 8192);
    w = s_open_replay(fx->dir2, &g);
    s_check_log(&g, 0, 1, 5);
    pm_wal_stats_t s;
    pm_wal_stats(w, &s);
    assert_int_equal(s.dropped_bytes, 8192);
    pm_wal_close(&w);

    /* the last record's bytes zeroed in place */
    size_t off5 = s_rec_off(5);
    memset(p + off5, 0, len - off5);
    s_copy_dir_with(fx->dir2, s_seg(1), p, len);
    w = s_open_replay(fx->dir2, &g);
    s_check_log(&g, 0, 1, 4);
    pm_wal_stats(w, &s);
    assert_int_equal(s.dropped_bytes, len - off5);
    pm_wal_close(&w);

    /* a segment that never got its header (crash right after create) */
    s_copy_dir_with(fx->dir2, s_seg(1), p, 7);
    w = s_open_replay(fx->dir2, &g);
    assert_int_equal(g.n, 0);
    pm_wal_stats(w, &s);
    assert_int_equal(s.dropped_bytes, 7);
    s_append(w, 1, 2);
    pm_wal_close(&w);
    w = s_open_replay(fx->dir2, &g);
    s_check_log(&g, 0, 1, 2);
    pm_wal_close(&w);

    /* an all-zero header is torn too; a foreign one is refused */
    memset(p, 0, 64);
    s_copy_dir_with(fx->dir2, s_seg(1), p, 64);
    w = s_open_replay(fx->dir2, &g);
    assert_int_equal(g.n, 0);
    pm_wal_close(&w);
    memcpy(p, orig, len);
    memcpy(p, "GARBAGE!", 8);
    s_copy_dir_with(fx->dir2, s_seg(1), p, len);
    w = s_open(fx->dir2, PM_FSYNC_NEVER, NULL);
    char err[512];
    assert_int_equal(pm_wal_replay(w, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "offset 0: bad segment header"));
    pm_wal_close(&w);
    free(p);
    free(orig);
    s_got_free(&g);
}

static void
s_snapshot(pm_wal_t *w, const char *prefix, int count)
{
    assert_int_equal(pm_wal_snapshot_begin(w), 0);
    for (int i = 0; i < count; i++) {
        char r[32];
        int n = snprintf(r, sizeof r, "%s%d", prefix, i);
        assert_int_equal(pm_wal_snapshot_add(w, r, (size_t) n), 0);
    }
    assert_int_equal(pm_wal_snapshot_commit(w), 0);
}

static void
s_check_snap(const got_t *g, const char *prefix, int count, uint64_t lsn)
{
    assert_true(g->n >= (size_t) count);
    for (int i = 0; i < count; i++) {
        char r[32];
        int n = snprintf(r, sizeof r, "%s%d", prefix, i);
        assert_int_equal(g->lsn[i], lsn);
        assert_int_equal(g->len[i], n);
        assert_memory_equal(g->rec[i], r, (size_t) n);
    }
}

static int
s_count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

static void
test_snapshot_then_log(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    s_append(w, 1, 10);
    assert_true(pm_wal_log_bytes(w) > 0);
    s_snapshot(w, "A", 3);
    assert_int_equal(pm_wal_snapshot_lsn(w), 10);
    assert_int_equal(pm_wal_log_bytes(w), 0);
    assert_false(s_exists(s_path(fx->dir, s_seg(1))));
    assert_true(s_exists(s_path(fx->dir, s_seg(11))));
    assert_true(s_exists(s_path(fx->dir, s_snapname(10))));
    s_append(w, 11, 12);
    uint8_t buf[256];
    assert_int_equal(pm_wal_log_bytes(w), 2 * FRAME + s_rec(11, buf) + s_rec(12, buf));
    pm_wal_close(&w);

    w = s_open_replay(fx->dir, &g);
    s_check_snap(&g, "A", 3, 10);
    s_check_log(&g, 3, 11, 12);
    pm_wal_stats_t s;
    pm_wal_stats(w, &s);
    assert_int_equal(s.snapshot_records, 3);
    assert_int_equal(s.records, 2);
    assert_int_equal(pm_wal_snapshot_lsn(w), 10);
    assert_int_equal(pm_wal_log_bytes(w), 2 * FRAME + s_rec(11, buf) + s_rec(12, buf));

    /* appends between begin and commit land after the snapshot */
    assert_int_equal(pm_wal_snapshot_begin(w), 0);
    assert_int_equal(pm_wal_snapshot_begin(w), -1);
    assert_int_equal(pm_wal_snapshot_add(w, "B0", 2), 0);
    s_append(w, 13, 14);
    assert_int_equal(pm_wal_snapshot_add(w, "B1", 2), 0);
    assert_int_equal(pm_wal_snapshot_commit(w), 0);
    assert_int_equal(pm_wal_snapshot_lsn(w), 12);
    assert_int_equal(s_count_files(fx->dir, "snap-"), 1);
    assert_int_equal(s_count_files(fx->dir, "wal-"), 1);
    /* a snapshot with nothing appended since the last one replaces it */
    pm_wal_close(&w);
    w = s_open_replay(fx->dir, &g);
    s_check_snap(&g, "B", 2, 12);
    s_check_log(&g, 2, 13, 14);
    s_snapshot(w, "C", 1);
    s_snapshot(w, "D", 4);
    assert_int_equal(s_count_files(fx->dir, "snap-"), 1);
    pm_wal_close(&w);
    w = s_open_replay(fx->dir, &g);
    s_check_snap(&g, "D", 4, 14);
    assert_int_equal(g.n, 4);
    s_append(w, 15, 15);
    pm_wal_close(&w);
    w = s_open_replay(fx->dir, &g);
    s_check_snap(&g, "D", 4, 14);
    s_check_log(&g, 4, 15, 15);
    pm_wal_close(&w);

    /* aborting keeps the old state */
    w = s_open_replay(fx->dir, &g);
    assert_int_equal(pm_wal_snapshot_begin(w), 0);
    assert_int_equal(pm_wal_snapshot_add(w, "E0", 2), 0);
    pm_wal_snapshot_abort(w);
    assert_int_equal(s_count_files(fx->dir, "snap-"), 1);
    s_append(w, 16, 16);
    pm_wal_close(&w);
    w = s_open_replay(fx->dir, &g);
    s_check_snap(&g, "D", 4, 14);
    s_check_log(&g, 4, 15, 16);
    pm_wal_close(&w);
    s_got_free(&g);
}

/* State for the crash tests: snapshot "A"x3 at LSN 5, then records 6..10. */
static void
s_crash_base(const char *dir)
{
    got_t g = {0};
    pm_wal_t *w = s_open_replay(dir, &g);
    s_append(w, 1, 5);
    s_snapshot(w, "A", 3);
    s_append(w, 6, 10);
    pm_wal_close(&w);
}

static void
s_check_crash_base(const char *dir)
{
    got_t g = {0};
    pm_wal_t *w = s_open_replay(dir, &g);
    s_check_snap(&g, "A", 3, 5);
    s_check_log(&g, 3, 6, 10);
    assert_int_equal(pm_wal_snapshot_lsn(w), 5);
    s_append(w, 11, 11);
    pm_wal_close(&w);
    w = s_open_replay(dir, &g);
    s_check_log(&g, 3, 6, 11);
    pm_wal_close(&w);
    s_got_free(&g);
}

static void
test_crash_during_snapshot(void **state)
{
    fx_t *fx = *state;
    s_crash_base(fx->dir);

    /* A process dies while writing snapshot 10: a .tmp file and a rotated,
     * empty segment are left behind. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];
        pm_wal_t *w = pm_wal_open(fx->dir, PM_FSYNC_NEVER, NULL, err, sizeof err);
        if (!w || pm_wal_replay(w, NULL, NULL, err, sizeof err) || pm_wal_snapshot_begin(w))
            _exit(1);
        static uint8_t big[300000];
        for (int i = 0; i < 8; i++)
            if (pm_wal_snapshot_add(w, big, sizeof big))
                _exit(2);
        _exit(0); /* no commit, no close */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char tmpname[80];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", s_snapname(10));
    assert_true(s_exists(s_path(fx->dir, tmpname)));
    assert_true(s_size(s_path(fx->dir, tmpname)) > 0);
    assert_true(s_exists(s_path(fx->dir, s_seg(11))));
    s_check_crash_base(fx->dir);
    assert_false(s_exists(s_path(fx->dir, tmpname)));
}

static void
test_truncated_snapshot_falls_back(void **state)
{
    fx_t *fx = *state;
    s_crash_base(fx->dir);
    /* Make a real snapshot 10 elsewhere, then plant a truncated copy of it
     * next to the old state, as a filesystem that reorders a rename ahead of
     * the data could leave it. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s' && rm -f '%s/LOCK'", fx->dir2,
             fx->dir, fx->dir2, fx->dir2);
    assert_int_equal(system(cmd), 0);
    got_t g = {0};
    pm_wal_t *w = s_open_replay(fx->dir2, &g);
    s_snapshot(w, "B", 50);
    pm_wal_close(&w);
    size_t len;
    uint8_t *p = s_read(s_path(fx->dir2, s_snapname(10)), &len);
    for (size_t cut = 0; cut < len; cut += len / 7 + 1) {
        s_write(s_path(fx->dir, s_snapname(10)), p, cut);
        got_t g2 = {0};
        w = s_open_replay(fx->dir, &g2);
        s_check_snap(&g2, "A", 3, 5);
        s_check_log(&g2, 3, 6, 10);
        pm_wal_close(&w);
        s_got_free(&g2);
    }
    /* a snapshot missing its last record, footer intact */
    size_t off = 24, last = 0;
    while (off < len - 24) {
        last = off;
        off += FRAME + (p[off] | (size_t) p[off + 1] << 8);
    }
    assert_int_equal(off, len - 24);
    uint8_t *q = malloc(len);
    memcpy(q, p, last);
    memcpy(q + last, p + len - 24, 24);
    s_write(s_path(fx->dir, s_snapname(10)), q, last + 24);
    free(q);
    got_t g3 = {0};
    w = s_open_replay(fx->dir, &g3);
    s_check_snap(&g3, "A", 3, 5);
    s_check_log(&g3, 3, 6, 10);
    pm_wal_close(&w);
    s_got_free(&g3);

    /* a flipped byte inside a complete snapshot file counts as damage too */
    p[len / 2] ^= 1;
    s_write(s_path(fx->dir, s_snapname(10)), p, len);
    s_check_crash_base(fx->dir);
    free(p);

    /* ...but with the old log gone there is nothing to fall back to */
    p = s_read(s_path(fx->dir2, s_snapname(10)), &len);
    s_write(s_path(fx->dir2, s_snapname(10)), p, len - 1);
    w = s_open(fx->dir2, PM_FSYNC_NEVER, NULL);
    char err[512];
    assert_int_equal(pm_wal_replay(w, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing"));
    pm_wal_close(&w);
    free(p);
    s_got_free(&g);
}

static void
test_lock(void **state)
{
    fx_t *fx = *state;
    char err[512];
    pm_wal_t *a = s_open(fx->dir, PM_FSYNC_NEVER, NULL);
    pm_wal_t *b = pm_wal_open(fx->dir, PM_FSYNC_NEVER, NULL, err, sizeof err);
    assert_null(b);
    assert_non_null(strstr(err, "in use by another agent"));
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long) getpid());
    assert_non_null(strstr(err, pid));
    /* another process is refused too */
    pid_t child = fork();
    if (child == 0) {
        pm_wal_t *c = pm_wal_open(fx->dir, PM_FSYNC_NEVER, NULL, err, sizeof err);
        _exit(c == NULL && strstr(err, "in use") ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pm_wal_close(&a);
    b = s_open(fx->dir, PM_FSYNC_NEVER, NULL);
    pm_wal_close(&b);
}

/* Waits on the WAL's socket until durable reaches target; 0 ok, -1 on timeout. */
static int
s_wait_durable(pm_wal_t *w, uint64_t target, int timeout_ms)
{
    for (int waited = 0; pm_wal_durable(w) < target && waited < timeout_ms; waited += 10) {
        zmq_pollitem_t it = {pm_wal_socket(w), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 10) > 0)
            pm_wal_readable(w);
    }
    return pm_wal_durable(w) >= target ? 0 : -1;
}

static void
test_batch_group_commit(void **state)
{
    fx_t *fx = *state;
    void *ctx = zmq_ctx_new();
    pm_wal_t *w = s_open(fx->dir, PM_FSYNC_BATCH, ctx);
    assert_non_null(pm_wal_socket(w));
    assert_int_equal(pm_wal_replay(w, NULL, NULL, NULL, 0), 0);
    const uint64_t n = 20000;
    uint8_t buf[256];
    /* a reactor: each iteration takes 50 requests, flushes and polls once */
    for (uint64_t i = 1; i <= n; i++) {
        size_t len = s_rec(i, buf);
        assert_int_equal(pm_wal_append(w, buf, len), i);
        assert_true(pm_wal_durable(w) < i);
        if (i % 50 == 0) {
            assert_int_equal(pm_wal_flush(w), 0);
            zmq_pollitem_t it = {pm_wal_socket(w), 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&it, 1, 0) > 0)
                pm_wal_readable(w);
            assert_true(pm_wal_durable(w) <= pm_wal_appended(w));
        }
    }
    assert_int_equal(pm_wal_flush(w), 0);
    assert_int_equal(s_wait_durable(w, n, 10000), 0);
    assert_int_equal(pm_wal_durable(w), n);
    pm_wal_stats_t s;
    pm_wal_stats(w, &s);
    assert_int_equal(s.appends, n);
    assert_true(s.fsyncs >= 1);
    assert_true(s.fsyncs <= n / 50); /* at most one per flush, shared by 50 appends */
    print_message("batch: %" PRIu64 " appends, %" PRIu64 " fsyncs\n", s.appends, s.fsyncs);
    /* nothing new written: no further fsync */
    pm_wal_flush(w);
    pm_wal_readable(w);
    uint64_t f = s.fsyncs;
    pm_wal_stats(w, &s);
    assert_int_equal(s.fsyncs, f);
    /* a snapshot in batch mode rotates the segment with an fsync in flight */
    assert_int_equal(pm_wal_append(w, "x", 1), n + 1);
    assert_int_equal(pm_wal_flush(w), 0);
    assert_int_equal(pm_wal_snapshot_begin(w), 0);
    assert_int_equal(pm_wal_durable(w), n + 1);
    assert_int_equal(pm_wal_snapshot_commit(w), 0);
    assert_int_equal(pm_wal_append(w, "y", 1), n + 2);
    assert_int_equal(pm_wal_flush(w), 0);
    assert_int_equal(s_wait_durable(w, n + 2, 10000), 0);
    pm_wal_close(&w);
    zmq_ctx_term(ctx);

    got_t g = {0};
    w = s_open_replay(fx->dir, &g);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.lsn[0], n + 2);
    pm_wal_close(&w);
    s_got_free(&g);
}

static void
test_always_and_never(void **state)
{
    fx_t *fx = *state;
    pm_fsync_mode_t modes[] = {PM_FSYNC_ALWAYS, PM_FSYNC_NEVER};
    for (int m = 0; m < 2; m++) {
        s_rmrf(fx->dir);
        pm_wal_t *w = s_open(fx->dir, modes[m], NULL);
        assert_null(pm_wal_socket(w));
        assert_int_equal(pm_wal_replay(w, NULL, NULL, NULL, 0), 0);
        pm_wal_stats_t s;
        pm_wal_stats(w, &s);
        uint64_t f0 = s.fsyncs;
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < 5; i++)
                pm_wal_append(w, "abc", 3);
            assert_int_equal(pm_wal_appended(w), (uint64_t) (round + 1) * 5);
            assert_int_equal(pm_wal_durable(w), (uint64_t) round * 5);
            assert_int_equal(pm_wal_flush(w), 0);
            assert_int_equal(pm_wal_durable(w), pm_wal_appended(w));
        }
        assert_int_equal(pm_wal_flush(w), 0); /* nothing new: no fsync */
        pm_wal_readable(w);                   /* harmless without a socket */
        pm_wal_stats(w, &s);
        assert_int_equal(s.fsyncs - f0, modes[m] == PM_FSYNC_ALWAYS ? 3 : 0);
        pm_wal_close(&w);
    }
}

static void
test_write_error_efbig(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    s_append(w, 1, 10);
    pm_wal_close(&w);
    off_t before = s_size(s_path(fx->dir, s_seg(1)));

    /* In a child, so the file size limit cannot touch the test's own output. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        char err[256];
        w = pm_wal_open(fx->dir, PM_FSYNC_ALWAYS, NULL, err, sizeof err);
        if (!w || pm_wal_replay(w, NULL, NULL, err, sizeof err))
            _exit(10);
        struct rlimit old, lim;
        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = (rlim_t) before + 1000; /* room for a few records, not all */
        if (setrlimit(RLIMIT_FSIZE, &lim))
            _exit(11);
        uint8_t buf[256];
        for (uint64_t i = 11; i <= 40; i++)
            if (pm_wal_append(w, buf, s_rec(i, buf)) != i)
                _exit(12);
        if (pm_wal_flush(w) != -1 || !strstr(pm_wal_error(w), "File too large"))
            _exit(13);
        if (pm_wal_durable(w) != 10)
            _exit(14);
        struct stat st;
        if (stat(s_path(fx->dir, s_seg(1)), &st) || st.st_size != before)
            _exit(15);             /* the partial write was cut back */
        if (pm_wal_flush(w) != -1) /* still failing */
            _exit(16);
        setrlimit(RLIMIT_FSIZE, &old);
        if (pm_wal_flush(w) != 0 || pm_wal_durable(w) != 40)
            _exit(17);
        pm_wal_close(&w);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    w = s_open_replay(fx->dir, &g);
    s_check_log(&g, 0, 1, 40);
    pm_wal_close(&w);
    s_got_free(&g);
}

static void
test_io_fault_hooks(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    /* a failed write is reported and retried */
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    s_append(w, 1, 3);
    uint8_t buf[256];
    pm_wal_append(w, buf, s_rec(4, buf));
    pm_wal_test_fault(w, PM_WAL_FAULT_WRITE, ENOSPC);
    assert_int_equal(pm_wal_flush(w), -1);
    assert_non_null(strstr(pm_wal_error(w), "No space left on device"));
    assert_non_null(strstr(pm_wal_error(w), s_seg(1)));
    assert_int_equal(pm_wal_durable(w), 3);
    assert_int_equal(pm_wal_flush(w), 0);
    assert_int_equal(pm_wal_durable(w), 4);

    /* always: a failed fsync is permanent */
    pm_wal_close(&w);
    w = s_open(fx->dir, PM_FSYNC_ALWAYS, NULL);
    assert_int_equal(pm_wal_replay(w, NULL, NULL, NULL, 0), 0);
    pm_wal_append(w, buf, s_rec(5, buf));
    pm_wal_test_fault(w, PM_WAL_FAULT_FSYNC, EIO);
    assert_int_equal(pm_wal_flush(w), -1);
    assert_non_null(strstr(pm_wal_error(w), "fdatasync"));
    assert_non_null(strstr(pm_wal_error(w), "Input/output error"));
    assert_int_equal(pm_wal_durable(w), 4);
    assert_int_equal(pm_wal_append(w, "x", 1), 0);
    assert_int_equal(pm_wal_flush(w), -1);
    assert_int_equal(pm_wal_snapshot_begin(w), -1);
    pm_wal_close(&w);

    /* batch: the failure arrives through the socket */
    void *ctx = zmq_ctx_new();
    w = s_open(fx->dir, PM_FSYNC_BATCH, ctx);
    assert_int_equal(pm_wal_replay(w, NULL, NULL, NULL, 0), 0);
    uint64_t last = pm_wal_appended(w);
    pm_wal_append(w, "y", 1);
    pm_wal_test_fault(w, PM_WAL_FAULT_FSYNC, EIO);
    assert_int_equal(pm_wal_flush(w), 0);
    assert_int_equal(s_wait_durable(w, last + 1, 500), -1);
    assert_int_equal(pm_wal_durable(w), last);
    assert_non_null(strstr(pm_wal_error(w), "Input/output error"));
    assert_int_equal(pm_wal_append(w, "z", 1), 0);
    assert_int_equal(pm_wal_flush(w), -1);
    pm_wal_close(&w);
    zmq_ctx_term(ctx);
    s_got_free(&g);
}

static void
test_log_gap_refused(void **state)
{
    fx_t *fx = *state;
    got_t g = {0};
    /* two segments: 1..5 and (after a snapshot begin) 6..8; then lose the
     * snapshot but keep both segments, and drop the first one */
    pm_wal_t *w = s_open_replay(fx->dir, &g);
    s_append(w, 1, 3);
    uint8_t buf[256];
    for (uint64_t i = 4; i <= 5; i++) /* queued, not flushed: begin must write them first */
        assert_int_equal(pm_wal_append(w, buf, s_rec(i, buf)), i);
    assert_int_equal(pm_wal_snapshot_begin(w), 0);
    pm_wal_snapshot_abort(w);
    s_append(w, 6, 8);
    pm_wal_close(&w);
    assert_true(s_exists(s_path(fx->dir, s_seg(1))));
    assert_true(s_exists(s_path(fx->dir, s_seg(6))));
    w = s_open_replay(fx->dir, &g);
    s_check_log(&g, 0, 1, 8);
    pm_wal_close(&w);
    assert_int_equal(unlink(s_path(fx->dir, s_seg(1))), 0);
    w = s_open(fx->dir, PM_FSYNC_NEVER, NULL);
    char err[512];
    assert_int_equal(pm_wal_replay(w, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "records 1..5 are missing"));
    pm_wal_close(&w);

    /* a segment lost between two others */
    s_rmrf(fx->dir);
    w = s_open_replay(fx->dir, &g);
    for (uint64_t i = 1; i <= 7; i += 3) {
        s_append(w, i, i + 2);
        assert_int_equal(pm_wal_snapshot_begin(w), 0);
        pm_wal_snapshot_abort(w);
    }
    pm_wal_close(&w);
    w = s_open_replay(fx->dir, &g);
    s_check_log(&g, 0, 1, 9);
    pm_wal_close(&w);
    assert_int_equal(unlink(s_path(fx->dir, s_seg(4))), 0);
    w = s_open(fx->dir, PM_FSYNC_NEVER, NULL);
    assert_int_equal(pm_wal_replay(w, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "log gap"));
    assert_non_null(strstr(err, s_seg(7)));
    pm_wal_close(&w);
    s_got_free(&g);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lsn_continues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_callback_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_in_last_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_in_middle_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_sequence_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_filled_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_then_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_during_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_snapshot_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_always_and_never, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error_efbig, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_fault_hooks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_gap_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
