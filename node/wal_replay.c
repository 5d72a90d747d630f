/*
 * wal_replay.c - recovery of the write-ahead log (pm_wal_replay, see wal.h).
 *
 * Maps the files read-only (through the disk seam, disk.h) and makes two passes: the first checks every
 * checksum and LSN of the newest valid snapshot and of the segments after it,
 * and decides what is a torn tail (cut off and logged) and what is
 * corruption (refused, with the file and offset); only if all is well does
 * the second hand records to the caller. Then appends continue in the last
 * segment, or a fresh one.
 */
#include "wal_priv.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const uint8_t *map;
    size_t size;
} s_map_t;

static int
s_map(pm_wal_t *self, const char *name, s_map_t *m, char *err, size_t errlen)
{
    if (pm_disk_map(self->disk, self->dir_fd, name, &m->map, &m->size) != 0) {
        pm_wal_seterr(err, errlen, "open %s/%s: %s", self->dir, name, strerror(errno));
        m->map = NULL;
        m->size = 0;
        return -1;
    }
    return 0;
}

static void
s_unmap(pm_wal_t *self, s_map_t *m)
{
    if (m->map)
        pm_disk_unmap(self->disk, m->map, m->size);
    m->map = NULL;
}

/* Checks a whole snapshot: header, every frame, footer. NULL if valid (count in
 * *count), else why not. */
static const char *
s_snap_check(const s_map_t *m, uint64_t lsn, uint64_t *count, size_t *bad_off)
{
    const uint8_t *p = m->map;
    *bad_off = 0;
    if (m->size < PM_WAL_SNAP_HDR + PM_WAL_SNAP_FTR)
        return "too short";
    if (memcmp(p, PM_WAL_SNAP_MAGIC, 8) || pm_wal_crc32c(p, 16) != pm_wal_get32(p + 16))
        return "bad header";
    if (pm_wal_get64(p + 8) != lsn)
        return "header LSN differs from the file name";
    const uint8_t *f = p + m->size - PM_WAL_SNAP_FTR;
    *bad_off = m->size - PM_WAL_SNAP_FTR;
    if (memcmp(f, PM_WAL_SNAP_END, 8) || pm_wal_crc32c(f, 16) != pm_wal_get32(f + 16))
        return "no valid footer (incomplete)";
    size_t off = PM_WAL_SNAP_HDR, end = m->size - PM_WAL_SNAP_FTR;
    uint64_t n = 0;
    while (off < end) {
        uint32_t len;
        bool crc_ok;
        const char *why = pm_wal_frame_check(p + off, end - off, n + 1, &len, &crc_ok);
        if (why) {
            *bad_off = off;
            return why;
        }
        off += PM_WAL_FRAME_HDR + len;
        n++;
    }
    if (n != pm_wal_get64(f + 8)) {
        *bad_off = end;
        return "record count differs from the footer";
    }
    *count = n;
    return NULL;
}

typedef struct {
    uint64_t base;
    s_map_t m;
    size_t good_end; /* offset after the last good record */
    uint64_t last;   /* LSN of the last good record; base - 1 if none */
    size_t dropped;  /* torn tail bytes (last segment only) */
    const char *torn_why;
    bool fresh_header; /* header missing or torn: rewrite it */
} s_seg_t;

/* Pass 1 over one segment. expected = LSN its first record must carry. */
static int
s_seg_check(pm_wal_t *self, s_seg_t *s, bool last, char *err, size_t errlen)
{
    char name[40];
    pm_wal_seg_name(name, sizeof name, s->base);
    const uint8_t *p = s->m.map;
    s->last = s->base - 1;
    if (s->m.size < PM_WAL_SEG_HDR || memcmp(p, PM_WAL_SEG_MAGIC, 8) || pm_wal_get64(p + 8) != s->base) {
        /* A crash right after creating the file leaves a short or zeroed
         * header; anything else is not ours to drop. */
        if (last && pm_wal_find_intact(p, 0, s->m.size, s->base - 1) < 0) {
            s->good_end = 0;
            s->dropped = s->m.size;
            s->torn_why = s->m.size < PM_WAL_SEG_HDR ? "short segment header" : "bad segment header";
            s->fresh_header = true;
            return 0;
        }
        pm_wal_seterr(err, errlen,
                 "%s/%s: offset 0: bad segment header (not a pmesh WAL segment, "
                 "or its first LSN differs from the file name)",
                 self->dir, name);
        return -1;
    }
    size_t off = PM_WAL_SEG_HDR;
    uint64_t want = s->base;
    while (off < s->m.size) {
        uint32_t len;
        bool crc_ok;
        const char *why = pm_wal_frame_check(p + off, s->m.size - off, want, &len, &crc_ok);
        if (!why) {
            off += PM_WAL_FRAME_HDR + len;
            want++;
            continue;
        }
        if (crc_ok) {
            pm_wal_seterr(err, errlen,
                     "%s/%s: offset %zu: record has LSN %" PRIu64 ", expected %" PRIu64
                     "; refusing to recover",
                     self->dir, name, off, pm_wal_get64(p + off + 8), want);
            return -1;
        }
        int64_t next = pm_wal_find_intact(p, off + 1, s->m.size, want - 1);
        if (next >= 0) {
            pm_wal_seterr(err, errlen,
                     "%s/%s: offset %zu: corrupt record (%s) followed by a valid "
                     "record at offset %" PRId64 " (LSN %" PRIu64 "); refusing to skip it",
                     self->dir, name, off, why, next, pm_wal_get64(p + next + 8));
            return -1;
        }
        if (!last) {
            pm_wal_seterr(err, errlen,
                     "%s/%s: offset %zu: corrupt record (%s) in a segment that is "
                     "not the last; refusing to recover",
                     self->dir, name, off, why);
            return -1;
        }
        s->dropped = s->m.size - off;
        s->torn_why = why;
        break;
    }
    s->good_end = off;
    s->last = want - 1;
    return 0;
}

typedef struct {
    pm_wal_t *self;
    uint64_t **segs, **snaps;
    size_t *nseg, *nsnap, cap_seg, cap_snap;
    int oom;
} s_list_t;

static int
s_list_one(void *arg, const char *name)
{
    s_list_t *l = arg;
    pm_wal_t *self = l->self;
    uint64_t v;
    uint64_t **arr = NULL;
    size_t *n = NULL, *cap = NULL;
    if (pm_wal_parse_name(name, "wal-", ".log", &v))
        arr = l->segs, n = l->nseg, cap = &l->cap_seg;
    else if (pm_wal_parse_name(name, "snap-", ".snap", &v))
        arr = l->snaps, n = l->nsnap, cap = &l->cap_snap;
    else if (pm_wal_parse_name(name, "snap-", ".snap.tmp", &v)) {
        pm_log_warn("PM-WAL-SNAP-TMP", "%s/%s: removing an unfinished snapshot", self->dir, name);
        if (pm_disk_unlink(self->disk, self->dir_fd, name) != 0)
            pm_log_warn("PM-WAL-SNAP-TMP", "unlink %s/%s: %s", self->dir, name, strerror(errno));
        return 0;
    } else
        return 0;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        uint64_t *a = realloc(*arr, nc * sizeof *a);
        if (!a) {
            l->oom = 1;
            return 1;
        }
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = v;
    return 0;
}

/* Lists the dir: sorted segment bases and snapshot LSNs; removes leftover
 * snapshot tmp files. */
int
pm_wal_list(pm_wal_t *self, uint64_t **segs, size_t *nseg, uint64_t **snaps, size_t *nsnap,
            char *err, size_t errlen)
{
    *segs = *snaps = NULL;
    *nseg = *nsnap = 0;
    s_list_t l = {.self = self, .segs = segs, .snaps = snaps, .nseg = nseg, .nsnap = nsnap};
    if (pm_disk_list(self->disk, self->dir_fd, s_list_one, &l) != 0) {
        pm_wal_seterr(err, errlen, "opendir %s: %s", self->dir, strerror(errno));
        return -1;
    }
    if (l.oom) {
        pm_wal_seterr(err, errlen, "out of memory");
        return -1;
    }
    if (*nseg)
        qsort(*segs, *nseg, sizeof **segs, s_cmp_u64);
    if (*nsnap)
        qsort(*snaps, *nsnap, sizeof **snaps, s_cmp_u64);
    return 0;
}

/* Deletes segments whose records are all <= lsn (those with a successor whose
 * first LSN is <= lsn + 1) and snapshots older than lsn. Failures are logged:
 * the files are merely stale. */
void
pm_wal_remove_stale(pm_wal_t *self, const uint64_t *segs, size_t nseg, const uint64_t *snaps,
                    size_t nsnap, uint64_t lsn)
{
    char name[40];
    for (size_t i = 0; i + 1 < nseg; i++) {
        if (segs[i + 1] > lsn + 1)
            break;
        pm_wal_seg_name(name, sizeof name, segs[i]);
        if (pm_disk_unlink(self->disk, self->dir_fd, name) != 0 && errno != ENOENT)
            pm_log_warn("PM-WAL-CLEANUP", "unlink %s/%s: %s", self->dir, name, strerror(errno));
    }
    for (size_t i = 0; i < nsnap && snaps[i] < lsn; i++) {
        pm_wal_snap_name(name, sizeof name, snaps[i], false);
        if (pm_disk_unlink(self->disk, self->dir_fd, name) != 0 && errno != ENOENT)
            pm_log_warn("PM-WAL-CLEANUP", "unlink %s/%s: %s", self->dir, name, strerror(errno));
    }
}

int
pm_wal_replay(pm_wal_t *self, pm_wal_replay_fn *fn, void *arg, char *err, size_t errlen)
{
    char ebuf[512];
    if (!err || !errlen) {
        err = ebuf;
        errlen = sizeof ebuf;
    }
    err[0] = '\0';
    if (self->replayed) {
        pm_wal_seterr(err, errlen, "pm_wal_replay called twice");
        return -1;
    }
    int64_t t0 = pm_mono_ms();
    int rc = -1;
    uint64_t *segs = NULL, *snaps = NULL;
    size_t nseg = 0, nsnap = 0, first = 0, n = 0;
    s_seg_t *ss = NULL;
    s_map_t snap = {NULL, 0};
    uint64_t L = 0, snap_count = 0;
    char name[40];

    if (pm_wal_list(self, &segs, &nseg, &snaps, &nsnap, err, errlen) != 0)
        goto out;

    /* The newest snapshot that checks out entirely. */
    for (size_t i = nsnap; i-- > 0;) {
        pm_wal_snap_name(name, sizeof name, snaps[i], false);
        if (s_map(self, name, &snap, err, errlen) != 0)
            goto out;
        size_t bad_off;
        const char *why = s_snap_check(&snap, snaps[i], &snap_count, &bad_off);
        if (!why) {
            L = snaps[i];
            break;
        }
        pm_log_warn("PM-WAL-SNAP-BAD", "%s/%s: offset %zu: %s; falling back to an older state",
                    self->dir, name, bad_off, why);
        s_unmap(self, &snap);
    }

    /* Segments holding records after L: from the last one starting at or
     * before L + 1 onwards. */
    while (first + 1 < nseg && segs[first + 1] <= L + 1)
        first++;
    if (first < nseg && segs[first] > L + 1) {
        pm_wal_seg_name(name, sizeof name, segs[first]);
        pm_wal_seterr(err, errlen,
                 "%s: records %" PRIu64 "..%" PRIu64 " are missing: the %s ends at "
                 "LSN %" PRIu64 " but the log resumes with %s; refusing to recover",
                 self->dir, L + 1, segs[first] - 1, L ? "snapshot" : "empty state", L, name);
        goto out;
    }
    n = nseg - first;
    ss = calloc(n ? n : 1, sizeof *ss);
    if (!ss) {
        pm_wal_seterr(err, errlen, "out of memory");
        goto out;
    }
    uint64_t last = L;
    for (size_t i = 0; i < n; i++) {
        ss[i].base = segs[first + i];
        pm_wal_seg_name(name, sizeof name, ss[i].base);
        if (i > 0 && ss[i].base != ss[i - 1].last + 1) {
            pm_wal_seterr(err, errlen,
                     "%s/%s: log gap: the previous segment ends at LSN %" PRIu64
                     "; refusing to recover",
                     self->dir, name, ss[i - 1].last);
            goto out;
        }
        if (s_map(self, name, &ss[i].m, err, errlen) != 0 ||
            s_seg_check(self, &ss[i], i + 1 == n, err, errlen) != 0)
            goto out;
        if (ss[i].last > last)
            last = ss[i].last;
    }
    /* Pass 2: everything checked; hand the records over. */
    if (snap.map) {
        size_t off = PM_WAL_SNAP_HDR;
        for (uint64_t i = 0; i < snap_count; i++) {
            uint32_t len = pm_wal_get32(snap.map + off);
            if (fn && fn(arg, L, snap.map + off + PM_WAL_FRAME_HDR, len) != 0) {
                pm_wal_seterr(err, errlen, "replay stopped by the caller at snapshot record %" PRIu64,
                         i + 1);
                goto out;
            }
            off += PM_WAL_FRAME_HDR + len;
        }
        self->stats.snapshot_records = snap_count;
    }
    for (size_t i = 0; i < n; i++) {
        size_t off = ss[i].fresh_header ? ss[i].good_end : PM_WAL_SEG_HDR;
        for (uint64_t lsn = ss[i].base; off < ss[i].good_end; lsn++) {
            uint32_t len = pm_wal_get32(ss[i].m.map + off);
            if (lsn > L) {
                if (fn && fn(arg, lsn, ss[i].m.map + off + PM_WAL_FRAME_HDR, len) != 0) {
                    pm_wal_seterr(err, errlen, "replay stopped by the caller at LSN %" PRIu64, lsn);
                    goto out;
                }
                self->stats.records++;
                self->stats.bytes += PM_WAL_FRAME_HDR + len;
            }
            off += PM_WAL_FRAME_HDR + len;
        }
    }

    /* Cut the torn tail and pick the segment to append to: the last one, unless
     * the log ends inside the snapshot (never mode lost the tail of a segment
     * the snapshot covers); then a new one after the snapshot. */
    s_seg_t *tail = n ? &ss[n - 1] : NULL;
    if (tail && tail->dropped) {
        pm_wal_seg_name(name, sizeof name, tail->base);
        self->stats.dropped_bytes = tail->dropped;
        pm_log_warn("PM-WAL-TORN",
                    "%s/%s: torn tail at offset %zu (%s): dropped %zu bytes; "
                    "the log ends at LSN %" PRIu64,
                    self->dir, name, tail->good_end, tail->torn_why, tail->dropped, last);
    }
    if (tail && tail->last == last) {
        pm_wal_seg_name(name, sizeof name, tail->base);
        self->seg_fd = pm_disk_open(self->disk, self->dir_fd, name, PM_DISK_WRITE);
        if (self->seg_fd < 0) {
            pm_wal_seterr(err, errlen, "open %s/%s: %s", self->dir, name, strerror(errno));
            goto out;
        }
        self->seg_base = tail->base;
        if (tail->dropped || tail->fresh_header) {
            if (pm_disk_truncate(self->disk, self->seg_fd, tail->good_end) != 0) {
                pm_wal_seterr(err, errlen, "truncate %s/%s: %s", self->dir, name, strerror(errno));
                goto out;
            }
            if (tail->fresh_header) {
                uint8_t hdr[PM_WAL_SEG_HDR];
                memcpy(hdr, PM_WAL_SEG_MAGIC, 8);
                pm_wal_put64(hdr + 8, tail->base);
                if (pm_disk_pwrite_all(self->disk, self->seg_fd, hdr, sizeof hdr, 0, NULL) != 0) {
                    pm_wal_seterr(err, errlen, "write %s/%s: %s", self->dir, name, strerror(errno));
                    goto out;
                }
                tail->good_end = PM_WAL_SEG_HDR;
            }
            if (pm_disk_datasync(self->disk, self->seg_fd) != 0) {
                pm_wal_seterr(err, errlen, "fdatasync %s/%s: %s", self->dir, name, strerror(errno));
                goto out;
            }
        }
        self->seg_off = tail->good_end;
    } else {
        /* No segment, or the log ends inside the snapshot: start after both. */
        if ((self->seg_fd = pm_wal_segment_create(self, last + 1)) < 0) {
            pm_wal_seterr(err, errlen, "%s", self->error);
            goto out;
        }
        self->seg_base = last + 1;
        self->seg_off = PM_WAL_SEG_HDR;
    }
    pm_wal_remove_stale(self, segs, nseg, snaps, nsnap, L);

    self->appended = self->written = self->durable = last;
    self->snap_lsn = L;
    self->log_bytes = self->stats.bytes;
    self->replayed = true;
    self->stats.recovery_ms = pm_mono_ms() - t0;
    pm_log_info(
        "PM-WAL-RECOVERED",
        "%s: snapshot LSN %" PRIu64 " (%" PRIu64 " records), %" PRIu64 " log records (%" PRIu64
        " bytes), last LSN %" PRIu64 ", dropped %" PRIu64 " bytes, fsync %s, in %" PRId64 " ms",
        self->dir, L, self->stats.snapshot_records, self->stats.records, self->stats.bytes, last,
        self->stats.dropped_bytes, pm_wal_mode_name(self->mode), self->stats.recovery_ms);
    rc = 0;
out:
    if (rc != 0) {
        pm_wal_fail(self, "%s", err);
        if (self->seg_fd >= 0)
            pm_disk_close(self->disk, self->seg_fd);
        self->seg_fd = -1;
        self->stats.records = self->stats.bytes = self->stats.snapshot_records = 0;
    }
    for (size_t i = 0; ss && i < n; i++)
        s_unmap(self, &ss[i].m);
    s_unmap(self, &snap);
    free(ss);
    free(segs);
    free(snaps);
    return rc;
}

