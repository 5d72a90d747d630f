/*
 * wal.h - the write-ahead log: every state change the agent acknowledges is an
 * opaque record here first. Records get a 1-based LSN that keeps rising across
 * restarts. The log lives in one data directory as segments plus an optional
 * snapshot of the agent's live state; recovery is "latest valid snapshot, then
 * every log record after it". The WAL knows nothing about promises.
 *
 * Threads: the reactor owns the pm_wal_t and calls every function here. In
 * batch mode an fsync thread runs fdatasync for it and reports back over an
 * inproc ZeroMQ PAIR socket (pm_wal_socket), so concurrent appends share one
 * fsync (group commit).
 *
 * Files in the data dir (LSNs as 16 lowercase hex digits, so names sort):
 *   LOCK                     fcntl lock (open file description) + holder's pid
 *   wal-<first lsn>.log      a log segment: 16-byte header, then records
 *   snap-<lsn>.snap          the state after applying records 1..lsn
 *   snap-<lsn>.snap.tmp      a snapshot being written; ignored and removed on recovery
 * Integers are little-endian. Checksums are CRC32C (Castagnoli, software table).
 *   segment header:  "PMWAL001" | u64 first lsn (= the name's)
 *   record frame:    u32 len | u32 crc | u64 lsn | len bytes of payload
 *                    crc = CRC32C(len bytes, lsn bytes, payload)
 *   snapshot:        "PMWSNAP1" | u64 lsn | u32 CRC32C(previous 16 bytes) | u32 0
 *                    then frames whose lsn field counts 1..n
 *                    then "PMWSEND1" | u64 n | u32 CRC32C(previous 16 bytes) | u32 0
 */
#ifndef PM_WAL_H
#define PM_WAL_H

#include <stddef.h>
#include <stdint.h>

/* Largest record accepted. A record carries at most one promise value, and
 * values are capped below the 64 MiB + 64 KiB wire frame; the cap also lets
 * recovery reject an absurd length in a damaged frame at once. */
#define PM_WAL_MAX_RECORD (80u * 1024 * 1024)

typedef struct pm_wal pm_wal_t;

typedef enum pm_fsync_mode {
    PM_FSYNC_ALWAYS = 0, /* every flush runs fdatasync in the reactor */
    PM_FSYNC_BATCH = 1,  /* the fsync thread syncs whatever was written (group commit) */
    PM_FSYNC_NEVER = 2   /* no fsync: durable means "handed to the kernel" */
} pm_fsync_mode_t;

typedef struct pm_wal_stats {
    uint64_t records;          /* log records replayed by recovery (after the snapshot) */
    uint64_t bytes;            /* bytes of those records, frames included */
    uint64_t snapshot_records; /* records replayed from the snapshot */
    uint64_t dropped_bytes;    /* torn tail cut off by recovery */
    int64_t recovery_ms;       /* wall time of pm_wal_replay */
    uint64_t fsyncs;           /* fdatasyncs of log segments since open */
    uint64_t appends;          /* records appended since open */
    uint64_t last_lsn;         /* last LSN appended (or recovered) */
} pm_wal_stats_t;

/* Called once per record in LSN order. Snapshot records come first, each with
 * lsn = the snapshot's LSN; log records follow with their own LSNs, all greater.
 * rec is borrowed for the duration of the call. Non-zero stops the replay. */
typedef int(pm_wal_replay_fn)(void *arg, uint64_t lsn, const uint8_t *rec, size_t len);

/* Opens the WAL in dir, creating dir (mode 0750) if missing, and takes DIR/LOCK;
 * a second agent on the same dir is refused. zmq_ctx hosts the fsync thread's
 * socket (needed in batch mode). Reads nothing yet: call pm_wal_replay next.
 * Returns NULL with a message in err on failure. Caller owns the WAL. */
pm_wal_t *pm_wal_open(const char *dir, pm_fsync_mode_t mode, void *zmq_ctx, char *err,
                      size_t errlen);

/* Writes and fsyncs what was appended (in every mode), stops the fsync thread,
 * releases the lock and frees. Call before zmq_ctx_term. Sets *self_p to NULL. */
void pm_wal_close(pm_wal_t **self_p);

/* Recovery: validates the latest snapshot (falling back to older ones) and the
 * log after it, cuts a torn tail (one PM-WAL-TORN line), then calls fn for every
 * record (fn may be NULL). Corruption anywhere but the tail, or a gap in the
 * LSNs, is refused before fn sees any record. Call once, after open and before
 * anything else. 0 ok; -1 with a message in err (file, offset, what is wrong). */
int pm_wal_replay(pm_wal_t *self, pm_wal_replay_fn *fn, void *arg, char *err, size_t errlen);

/* Queues one record (copied) and returns its LSN; nothing reaches the kernel
 * until pm_wal_flush. 0 on error (see pm_wal_error): not replayed yet, record
 * too large, out of memory, or the WAL has failed. */
uint64_t pm_wal_append(pm_wal_t *self, const void *rec, size_t len);

/* Hands queued records to the kernel with pwrite(2), then: always - fdatasync
 * now; batch - ask the fsync thread unless one is running (pm_wal_readable
 * starts the next); never - nothing. -1 on I/O error with pm_wal_error set: a
 * failed write (disk full) is cut back to the last whole record and retried by
 * the next flush; a failed fsync is permanent (the WAL refuses all later work). */
int pm_wal_flush(pm_wal_t *self);
/* Writes and fsyncs everything appended so far before returning, in any
 * mode but never (there: written only). For the rare record that must be
 * durable before the agent goes on (a start's generation). 0, or -1. */
int pm_wal_sync(pm_wal_t *self);

/* Last LSN appended. */
uint64_t pm_wal_appended(const pm_wal_t *self);

/* Last LSN durable under the mode: fsynced (always, batch) or written (never). */
uint64_t pm_wal_durable(const pm_wal_t *self);

/* The socket to poll for ZMQ_POLLIN in batch mode; NULL in always/never mode.
 * Borrowed. */
void *pm_wal_socket(pm_wal_t *self);

/* Consumes fsync completions: advances pm_wal_durable, starts the next fsync if
 * more was written meanwhile. A failed fsync makes the WAL fail for good. */
void pm_wal_readable(pm_wal_t *self);

/* Starts a snapshot of the state as of pm_wal_appended() = its LSN. Appends made
 * before commit go to a fresh segment after that LSN, so the caller may build the
 * snapshot over several loop iterations. 0 ok; -1 on error or if one is running. */
int pm_wal_snapshot_begin(pm_wal_t *self);

/* Adds one record (copied) to the snapshot being written. -1 on error, which
 * also aborts the snapshot. */
int pm_wal_snapshot_add(pm_wal_t *self, const void *rec, size_t len);

/* Writes the snapshot (tmp file, fsync, rename, fsync dir; in every mode), then
 * deletes older snapshots and the segments it covers. -1 on error, which aborts
 * the snapshot and leaves the previous one and the log intact. */
int pm_wal_snapshot_commit(pm_wal_t *self);

/* Drops a snapshot in progress (no-op if none). */
void pm_wal_snapshot_abort(pm_wal_t *self);

/* LSN of the last committed (or recovered) snapshot; 0 if none. */
uint64_t pm_wal_snapshot_lsn(const pm_wal_t *self);

/* Bytes of log records after the last snapshot, queued ones included: what
 * recovery would replay on top of the snapshot. For deciding when to compact. */
uint64_t pm_wal_log_bytes(const pm_wal_t *self);

void pm_wal_stats(const pm_wal_t *self, pm_wal_stats_t *out);

/* The last error message; "" if none. Borrowed. */
const char *pm_wal_error(const pm_wal_t *self);
/* Durations of the fsyncs so far (milliseconds). Borrowed. */
struct pm_hist;
const struct pm_hist *pm_wal_fsync_hist(const pm_wal_t *self);

/* "always", "batch", "never"; and back: 0 ok, -1 if s is none of them. */
const char *pm_wal_mode_name(pm_fsync_mode_t mode);
int pm_wal_mode_parse(const char *s, pm_fsync_mode_t *out);

/*
 * The batch mode's fsync seam, for the deterministic simulator (tests/sim,
 * issue 14). Production never installs one: batch mode then runs its fsync
 * thread as described above. With a syncer current at pm_wal_open, batch
 * mode starts no thread and pm_wal_socket is NULL: an fsync asked for (on a
 * dup of the segment's fd, as for the thread) is pending until pm_mono_us()
 * reaches the time start() returned; the first pm_wal_flush after that runs
 * it (sync(), or pm_disk_datasync if NULL) and advances pm_wal_durable to
 * what was written when it was asked for, then asks for the next one if
 * more was written meanwhile. A crash before that loses what it would have
 * covered, as a real power cut during the thread's fdatasync does.
 */
struct pm_disk;
typedef struct pm_wal_syncer {
    /* An fsync is asked for now: the pm_mono_us() at which it completes. */
    int64_t (*start)(void *arg);
    /* Runs it: 0, or -1 with errno set. NULL: pm_disk_datasync. */
    int (*sync)(void *arg, const struct pm_disk *disk, int fd);
    void *arg;
} pm_wal_syncer_t;
/* Installs s for the WALs opened from now on (NULL: the thread); borrowed.
 * Returns the previous one. */
const pm_wal_syncer_t *pm_wal_syncer_use(const pm_wal_syncer_t *s);

/* CRC32C of n bytes (the checksum in every frame). */
uint32_t pm_wal_crc32c(const void *p, size_t n);

/* Test hook: the next write (PM_WAL_FAULT_WRITE) or log fsync (PM_WAL_FAULT_FSYNC)
 * fails with errno err instead of running, once. Not for production use. */
enum { PM_WAL_FAULT_WRITE = 1, PM_WAL_FAULT_FSYNC = 2 };
void pm_wal_test_fault(pm_wal_t *self, int op, int err);

#endif
