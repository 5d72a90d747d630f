/*
 * wal_priv.h - the WAL's state, shared by its files: wal.c (open and close,
 * the fsync thread, appending, snapshots) and wal_replay.c (recovery). The
 * bytes themselves are wal_format.h. Nothing here is public (wal.h is).
 */
#ifndef PM_WAL_PRIV_H
#define PM_WAL_PRIV_H

#include "disk.h"
#include "hist.h"
#include "wal.h"
#include "wal_format.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pm_wal {
    pm_hist_t fsync_hist; /* fdatasync durations */
    const pm_disk_t *disk; /* every file operation goes through it (pm_disk_current at open) */
    char *dir;
    int dir_fd;
    int lock_fd;
    pm_fsync_mode_t mode;

    void *sock; /* reactor end of the PAIR; NULL unless batch */
    pthread_t thread;
    bool thread_up;
    bool inflight; /* an fsync request is out */
    /* batch mode under a syncer (wal.h; the simulator): no thread, the
     * request in flight waits here until its time */
    const pm_wal_syncer_t *syncer;
    int sync_fd;          /* its dup of the segment fd (-1: none) */
    int sync_fault;       /* test hook: report this errno instead of syncing */
    uint64_t sync_lsn;    /* written when it was asked for */
    int64_t sync_at, sync_due; /* pm_mono_us: asked for, completes */

    bool replayed;
    bool failed;        /* sticky: after a failed fsync nothing is known about the page cache */
    bool write_failing; /* the last write failed (logged once per episode) */
    char error[512];

    int seg_fd;        /* segment appends go to */
    uint64_t seg_base; /* its first LSN */
    uint64_t seg_off;  /* bytes of whole records on disk in it */
    uint8_t *buf;      /* frames appended but not written */
    size_t buf_len, buf_cap;

    uint64_t appended, written, durable;
    uint64_t snap_lsn;  /* last committed snapshot */
    uint64_t log_bytes; /* record bytes after snap_lsn */

    /* snapshot being written */
    int snap_fd;
    uint64_t snap_off; /* bytes written to it */
    uint64_t snap_new_lsn;
    uint64_t snap_count;
    uint8_t *sbuf;
    size_t sbuf_len, sbuf_cap;
    uint64_t log_bytes_before; /* log_bytes at begin, restored on abort */

    int fault_write, fault_fsync;
    pm_wal_stats_t stats;
};

/* Formats into err (errlen bytes; nothing if err is NULL). */
void pm_wal_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the WAL's error (pm_wal_error). */
#define pm_wal_fail(self, ...) pm_wal_seterr((self)->error, sizeof(self)->error, __VA_ARGS__)

/* Creates segment `base` with its header and makes the name durable (unless
 * never mode). Returns the fd open for writing, or -1 (the error set). */
int pm_wal_segment_create(pm_wal_t *self, uint64_t base);

/* Lists the dir: sorted segment bases and snapshot LSNs (caller frees both);
 * removes leftover snapshot tmp files. 0, or -1 with err. wal_replay.c */
int pm_wal_list(pm_wal_t *self, uint64_t **segs, size_t *nseg, uint64_t **snaps, size_t *nsnap,
                char *err, size_t errlen);

/* Deletes segments whose records are all <= lsn and snapshots older than
 * lsn; failures are logged (the files are merely stale). wal_replay.c */
void pm_wal_remove_stale(pm_wal_t *self, const uint64_t *segs, size_t nseg, const uint64_t *snaps,
                         size_t nsnap, uint64_t lsn);

#endif
