/*
 * wal.c - see wal.h for the file format. The reactor owns everything here; the
 * only other thread is the batch-mode fsync thread, which owns nothing: it gets
 * (dup'd fd, lsn) over a PAIR socket, runs fdatasync, closes the fd and answers
 * (lsn, errno). Every file operation goes through the disk seam (disk.h), so a
 * test can run the WAL on a fake disk and crash it. At most one fsync is in flight; records written while it runs
 * wait for the next one, which pm_wal_readable starts at once.
 *
 * Recovery (wal_replay.c) maps the files read-only and makes two passes: the
 * first checks every checksum and LSN and decides what is a torn tail and what
 * is corruption; only if all is well does the second hand records to the
 * caller. The bytes (frames, CRC32C, headers, names) are wal_format.c; the
 * state the files share is wal_priv.h.
 */
#include "clock.h"
#include "wal_priv.h"

#include "log.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* Snapshot records are buffered and written in chunks this big: large enough
 * that write(2) calls are few, small enough not to matter in memory. */
#define S_SNAP_CHUNK (1024 * 1024)

struct s_fsync_req {
    const pm_disk_t *disk;
    int fd;       /* a dup of the segment fd, closed by the thread; -1 = stop */
    int fault;    /* test hook: report this errno instead of syncing */
    uint64_t lsn; /* everything up to here was written before the request */
};

struct s_fsync_rep {
    uint64_t lsn;
    int err;     /* 0 or the errno of fdatasync */
    uint32_t us; /* how long fdatasync took */
};

/* --- small helpers ---------------------------------------------------------- */

void
pm_wal_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int
s_fsync_dir(pm_wal_t *self)
{
    if (pm_disk_dirsync(self->disk, self->dir_fd) != 0) {
        pm_wal_fail(self, "fsync %s: %s", self->dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* fdatasync of the current segment in the reactor (always mode, rotation,
 * close). A failure is permanent: the kernel may have dropped the dirty pages. */
static int
s_sync_segment(pm_wal_t *self)
{
    int rc;
    int64_t a = pm_mono_us();
    if (self->fault_fsync) {
        errno = self->fault_fsync;
        self->fault_fsync = 0;
        rc = -1;
    } else
        rc = pm_disk_datasync(self->disk, self->seg_fd);
    int64_t b = pm_mono_us();
    if (rc != 0) {
        char name[40];
        pm_wal_seg_name(name, sizeof name, self->seg_base);
        pm_wal_fail(self, "fdatasync %s/%s: %s", self->dir, name, strerror(errno));
        pm_log_error("PM-WAL-FSYNC-FAIL", "%s; the WAL refuses further writes", self->error);
        self->failed = true;
        return -1;
    }
    self->stats.fsyncs++;
    pm_hist_add(&self->fsync_hist, (double) (b - a) / 1000.0);
    self->durable = self->written;
    return 0;
}

/* Creates segment `base` with its header and makes the name durable (unless
 * never mode). Returns the fd open for writing, or -1. */
int
pm_wal_segment_create(pm_wal_t *self, uint64_t base)
{
    char name[40];
    pm_wal_seg_name(name, sizeof name, base);
    int fd = pm_disk_open(self->disk, self->dir_fd, name,
                          PM_DISK_WRITE | PM_DISK_CREATE | PM_DISK_EXCL);
    if (fd < 0) {
        pm_wal_fail(self, "create %s/%s: %s", self->dir, name, strerror(errno));
        return -1;
    }
    uint8_t hdr[PM_WAL_SEG_HDR];
    memcpy(hdr, PM_WAL_SEG_MAGIC, 8);
    pm_wal_put64(hdr + 8, base);
    if (pm_disk_pwrite_all(self->disk, fd, hdr, sizeof hdr, 0, NULL) != 0) {
        pm_wal_fail(self, "write %s/%s: %s", self->dir, name, strerror(errno));
        goto fail;
    }
    if (self->mode != PM_FSYNC_NEVER) {
        if (pm_disk_datasync(self->disk, fd) != 0) {
            pm_wal_fail(self, "fdatasync %s/%s: %s", self->dir, name, strerror(errno));
            goto fail;
        }
        if (s_fsync_dir(self) != 0)
            goto fail;
    }
    return fd;
fail:
    pm_disk_close(self->disk, fd);
    pm_disk_unlink(self->disk, self->dir_fd, name);
    return -1;
}

static int s_write_pending(pm_wal_t *self);

/* --- the fsync thread ------------------------------------------------------ */

static void *
s_fsync_thread(void *arg)
{
    void *sock = arg;
    for (;;) {
        struct s_fsync_req req;
        int n = zmq_recv(sock, &req, sizeof req, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break; /* ETERM: the context is going away */
        }
        if (n != (int) sizeof req || req.fd < 0)
            break;
        struct s_fsync_rep rep = {.lsn = req.lsn, .err = 0, .us = 0};
        int64_t a = pm_mono_us();
        if (req.fault)
            rep.err = req.fault;
        else if (pm_disk_datasync(req.disk, req.fd) != 0)
            rep.err = errno;
        int64_t us = pm_mono_us() - a;
        rep.us = us > UINT32_MAX ? UINT32_MAX : (uint32_t) us;
        pm_disk_close(req.disk, req.fd);
        if (zmq_send(sock, &rep, sizeof rep, 0) < 0 && errno == ETERM)
            break;
    }
    zmq_close(sock);
    return NULL;
}

/* --- the syncer seam (wal.h): batch mode without the thread ----------------- */

static const pm_wal_syncer_t *s_syncer; /* NULL in production */

const pm_wal_syncer_t *
pm_wal_syncer_use(const pm_wal_syncer_t *s)
{
    const pm_wal_syncer_t *prev = s_syncer;
    s_syncer = s;
    return prev;
}

/* An fsync (the thread's or the syncer's) has ended: err, or everything up
 * to lsn is durable, after ms. */
static void
s_fsync_done(pm_wal_t *self, int err, uint64_t lsn, double ms)
{
    self->inflight = false;
    if (err) {
        char name[40];
        pm_wal_seg_name(name, sizeof name, self->seg_base);
        pm_wal_fail(self, "fdatasync %s/%s: %s", self->dir, name, strerror(err));
        if (!self->failed)
            pm_log_error("PM-WAL-FSYNC-FAIL", "%s; the WAL refuses further writes", self->error);
        self->failed = true;
        return;
    }
    self->stats.fsyncs++;
    pm_hist_add(&self->fsync_hist, ms);
    if (lsn > self->durable)
        self->durable = lsn;
}

/* The syncer's request in flight, if its time has come: runs it, as the
 * thread's answer would be consumed by pm_wal_readable. */
static void
s_syncer_poll(pm_wal_t *self)
{
    if (!self->inflight || pm_mono_us() < self->sync_due)
        return;
    int err = self->sync_fault;
    if (!err) {
        int rc = self->syncer->sync ? self->syncer->sync(self->syncer->arg, self->disk, self->sync_fd)
                                    : pm_disk_datasync(self->disk, self->sync_fd);
        if (rc != 0)
            err = errno ? errno : EIO;
    }
    pm_disk_close(self->disk, self->sync_fd);
    self->sync_fd = -1;
    self->sync_fault = 0;
    s_fsync_done(self, err, self->sync_lsn, (double) (pm_mono_us() - self->sync_at) / 1000.0);
}

/* Asks the fsync thread (or the syncer) to cover everything written so far. */
static int
s_request_fsync(pm_wal_t *self)
{
    int fd = pm_disk_dup(self->disk, self->seg_fd);
    if (fd < 0) {
        pm_wal_fail(self, "dup for fsync: %s", strerror(errno));
        return -1;
    }
    if (self->syncer) {
        self->sync_fd = fd;
        self->sync_fault = self->fault_fsync;
        self->fault_fsync = 0;
        self->sync_lsn = self->written;
        self->sync_at = pm_mono_us();
        self->sync_due = self->syncer->start(self->syncer->arg);
        self->inflight = true;
        return 0;
    }
    struct s_fsync_req req = {
        .disk = self->disk, .fd = fd, .fault = self->fault_fsync, .lsn = self->written};
    self->fault_fsync = 0;
    if (zmq_send(self->sock, &req, sizeof req, ZMQ_DONTWAIT) < 0) {
        pm_wal_fail(self, "send to the fsync thread: %s", zmq_strerror(errno));
        pm_disk_close(self->disk, fd);
        return -1;
    }
    self->inflight = true;
    return 0;
}

/* --- open / close ------------------------------------------------------------ */

/* mkdir -p with mode 0750 for what it creates. */
static int
s_mkdirs(const pm_disk_t *disk, const char *dir, char *err, size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int) sizeof path) {
        pm_wal_seterr(err, errlen, "%s: path too long", dir);
        return -1;
    }
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (pm_disk_mkdir(disk, path) != 0 && errno != EEXIST) {
                pm_wal_seterr(err, errlen, "mkdir %s: %s", path, strerror(errno));
                return -1;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

static int
s_lock(pm_wal_t *self, char *err, size_t errlen)
{
    self->lock_fd = pm_disk_open(self->disk, self->dir_fd, "LOCK", PM_DISK_RDWR | PM_DISK_CREATE);
    if (self->lock_fd < 0) {
        pm_wal_seterr(err, errlen, "open %s/LOCK: %s", self->dir, strerror(errno));
        return -1;
    }
    if (pm_disk_lock(self->disk, self->lock_fd) != 0) {
        if (errno == EAGAIN) {
            char pid[32] = "";
            ssize_t n = pm_disk_pread(self->disk, self->lock_fd, pid, sizeof pid - 1, 0);
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            pm_wal_seterr(err, errlen,
                     "%s/LOCK: the data dir is in use by another agent (pid %s); refusing to "
                     "share it",
                     self->dir, pid[0] ? pid : "unknown");
        } else
            pm_wal_seterr(err, errlen, "lock %s/LOCK: %s", self->dir, strerror(errno));
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long) getpid());
    if (pm_disk_truncate(self->disk, self->lock_fd, 0) != 0 ||
        pm_disk_pwrite_all(self->disk, self->lock_fd, pid, (size_t) len, 0, NULL) != 0) {
        pm_wal_seterr(err, errlen, "write %s/LOCK: %s", self->dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int
s_start_thread(pm_wal_t *self, void *ctx, char *err, size_t errlen)
{
    if (!ctx) {
        pm_wal_seterr(err, errlen, "fsync batch mode needs a ZeroMQ context");
        return -1;
    }
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://pm-wal-%p", (void *) self);
    int linger = 0;
    void *peer = NULL;
    self->sock = zmq_socket(ctx, ZMQ_PAIR);
    if (!self->sock || zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(self->sock, ep) != 0)
        goto fail;
    /* Created and connected here, then handed over: pthread_create is the full
     * memory barrier ZeroMQ asks for when a socket changes threads. */
    peer = zmq_socket(ctx, ZMQ_PAIR);
    if (!peer || zmq_setsockopt(peer, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(peer, ep) != 0)
        goto fail;
    int rc = pthread_create(&self->thread, NULL, s_fsync_thread, peer);
    if (rc != 0) {
        errno = rc;
        goto fail;
    }
    self->thread_up = true;
    return 0;
fail:
    pm_wal_seterr(err, errlen, "fsync thread setup: %s", zmq_strerror(errno));
    if (peer)
        zmq_close(peer);
    if (self->sock)
        zmq_close(self->sock);
    self->sock = NULL;
    return -1;
}

pm_wal_t *
pm_wal_open(const char *dir, pm_fsync_mode_t mode, void *zmq_ctx, char *err, size_t errlen)
{
    pm_wal_crc_init();
    if (!dir || !*dir) {
        pm_wal_seterr(err, errlen, "no data dir given");
        return NULL;
    }
    if (mode != PM_FSYNC_ALWAYS && mode != PM_FSYNC_BATCH && mode != PM_FSYNC_NEVER) {
        pm_wal_seterr(err, errlen, "bad fsync mode %d", (int) mode);
        return NULL;
    }
    pm_wal_t *self = calloc(1, sizeof *self);
    if (!self || !(self->dir = strdup(dir))) {
        pm_wal_seterr(err, errlen, "out of memory");
        free(self);
        return NULL;
    }
    self->mode = mode;
    self->disk = pm_disk_current();
    self->dir_fd = self->lock_fd = self->seg_fd = self->snap_fd = self->sync_fd = -1;
    if (mode == PM_FSYNC_BATCH)
        self->syncer = s_syncer;
    if (s_mkdirs(self->disk, dir, err, errlen) != 0)
        goto fail;
    self->dir_fd = pm_disk_open_dir(self->disk, dir);
    if (self->dir_fd < 0) {
        pm_wal_seterr(err, errlen, "open %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (s_lock(self, err, errlen) != 0)
        goto fail;
    if (mode == PM_FSYNC_BATCH && !self->syncer && s_start_thread(self, zmq_ctx, err, errlen) != 0)
        goto fail;
    return self;
fail:
    pm_wal_close(&self);
    return NULL;
}

void
pm_wal_close(pm_wal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_wal_t *self = *self_p;
    pm_wal_snapshot_abort(self);
    if (self->thread_up) {
        /* The thread finishes a queued request first, so nothing races the fds. */
        struct s_fsync_req stop = {.fd = -1, .fault = 0, .lsn = 0};
        zmq_send(self->sock, &stop, sizeof stop, 0);
        pthread_join(self->thread, NULL);
        self->thread_up = false;
        self->inflight = false;
    }
    if (self->sock)
        zmq_close(self->sock);
    if (self->sync_fd >= 0) { /* the syncer's request dies with the process */
        pm_disk_close(self->disk, self->sync_fd);
        self->sync_fd = -1;
        self->inflight = false;
    }
    if (self->seg_fd >= 0 && !self->failed) {
        if (s_write_pending(self) != 0 || s_sync_segment(self) != 0)
            pm_log_error("PM-WAL-CLOSE-FAIL", "records after lsn %" PRIu64 " may be lost: %s",
                         self->durable, self->error);
    }
    if (self->seg_fd >= 0)
        pm_disk_close(self->disk, self->seg_fd);
    if (self->lock_fd >= 0)
        pm_disk_close(self->disk, self->lock_fd); /* releases the lock */
    if (self->dir_fd >= 0)
        pm_disk_close(self->disk, self->dir_fd);
    free(self->buf);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

/* --- appending ------------------------------------------------------------- */

/* 0 if appends and snapshots may proceed, else -1 with the error set. */
static int
s_usable(pm_wal_t *self)
{
    if (!self->replayed) {
        if (!self->error[0])
            pm_wal_fail(self, "the WAL has not been recovered (call pm_wal_replay first)");
        return -1;
    }
    if (self->failed)
        return -1; /* self->error still says why */
    return 0;
}

uint64_t
pm_wal_append(pm_wal_t *self, const void *rec, size_t len)
{
    assert(rec || !len);
    if (s_usable(self) != 0)
        return 0;
    if (len > PM_WAL_MAX_RECORD) {
        pm_wal_fail(self, "record of %zu bytes is over the %u-byte limit", len, PM_WAL_MAX_RECORD);
        return 0;
    }
    size_t need = self->buf_len + PM_WAL_FRAME_HDR + len;
    if (need > self->buf_cap) {
        size_t cap = self->buf_cap ? self->buf_cap : 64 * 1024;
        while (cap < need)
            cap *= 2;
        uint8_t *b = realloc(self->buf, cap);
        if (!b) {
            pm_wal_fail(self, "out of memory queueing a %zu-byte record", len);
            return 0;
        }
        self->buf = b;
        self->buf_cap = cap;
    }
    uint64_t lsn = self->appended + 1;
    pm_wal_frame_put(self->buf + self->buf_len, lsn, rec, len);
    self->buf_len = need;
    self->appended = lsn;
    self->log_bytes += PM_WAL_FRAME_HDR + len;
    self->stats.appends++;
    return lsn;
}

/* pwrite(2)s the queued frames. On failure cuts the segment back to the last
 * whole record and keeps the queue, so a later call retries. */
static int
s_write_pending(pm_wal_t *self)
{
    if (!self->buf_len)
        return 0;
    size_t done = 0;
    int rc;
    if (self->fault_write) {
        errno = self->fault_write;
        self->fault_write = 0;
        rc = -1;
    } else
        rc = pm_disk_pwrite_all(self->disk, self->seg_fd, self->buf, self->buf_len, self->seg_off,
                                &done);
    char name[40];
    pm_wal_seg_name(name, sizeof name, self->seg_base);
    if (rc != 0) {
        int e = errno;
        if (done > 0 && pm_disk_truncate(self->disk, self->seg_fd, self->seg_off) != 0) {
            pm_wal_fail(self,
                   "write %s/%s at offset %" PRIu64 ": %s; cutting the partial record "
                   "failed too: %s",
                   self->dir, name, self->seg_off + done, strerror(e), strerror(errno));
            self->failed = true;
        } else
            pm_wal_fail(self, "write %s/%s at offset %" PRIu64 ": %s", self->dir, name,
                   self->seg_off + done, strerror(e));
        if (!self->write_failing || self->failed)
            pm_log_error("PM-WAL-WRITE-FAIL", "%s; %zu bytes wait to be written", self->error,
                         self->buf_len);
        self->write_failing = true;
        return -1;
    }
    if (self->write_failing)
        pm_log_info("PM-WAL-WRITE-OK", "%s/%s: writing again", self->dir, name);
    self->write_failing = false;
    self->seg_off += self->buf_len;
    self->buf_len = 0;
    self->written = self->appended;
    return 0;
}

int
pm_wal_flush(pm_wal_t *self)
{
    if (s_usable(self) != 0)
        return -1;
    if (self->syncer) {
        /* The syncer's fsync in flight first: it covers what was written before
         * this flush, not what this one writes (the thread may lag as much). */
        s_syncer_poll(self);
        if (self->failed)
            return -1;
    }
    if (s_write_pending(self) != 0)
        return -1;
    switch (self->mode) {
    case PM_FSYNC_NEVER:
        self->durable = self->written;
        return 0;
    case PM_FSYNC_ALWAYS:
        return self->durable < self->written ? s_sync_segment(self) : 0;
    case PM_FSYNC_BATCH:
        if (!self->inflight && self->durable < self->written)
            return s_request_fsync(self);
        return 0;
    }
    return 0;
}

int
pm_wal_sync(pm_wal_t *self)
{
    if (s_usable(self) != 0 || s_write_pending(self) != 0)
        return -1;
    if (self->mode == PM_FSYNC_NEVER) {
        self->durable = self->written;
        return 0;
    }
    /* An fsync under way in batch mode covers less than this one: it ends
     * later, below what durable already says, and changes nothing. */
    return self->durable < self->written ? s_sync_segment(self) : 0;
}

void
pm_wal_readable(pm_wal_t *self)
{
    if (!self->sock)
        return;
    struct s_fsync_rep rep;
    int n;
    while ((n = zmq_recv(self->sock, &rep, sizeof rep, ZMQ_DONTWAIT)) >= 0) {
        if (n == (int) sizeof rep)
            s_fsync_done(self, rep.err, rep.lsn, rep.us / 1000.0);
    }
    if (!self->failed && !self->inflight && self->durable < self->written)
        s_request_fsync(self);
}

uint64_t
pm_wal_appended(const pm_wal_t *self)
{
    return self->appended;
}

uint64_t
pm_wal_durable(const pm_wal_t *self)
{
    return self->durable;
}

void *
pm_wal_socket(pm_wal_t *self)
{
    return self->sock;
}

/* --- snapshots ------------------------------------------------------------- */

static int
s_snap_write_buf(pm_wal_t *self)
{
    if (pm_disk_pwrite_all(self->disk, self->snap_fd, self->sbuf, self->sbuf_len, self->snap_off,
                           NULL) != 0) {
        char name[48];
        pm_wal_snap_name(name, sizeof name, self->snap_new_lsn, true);
        pm_wal_fail(self, "write %s/%s: %s", self->dir, name, strerror(errno));
        return -1;
    }
    self->snap_off += self->sbuf_len;
    self->sbuf_len = 0;
    return 0;
}

static int
s_snap_reserve(pm_wal_t *self, size_t more)
{
    size_t need = self->sbuf_len + more;
    if (need <= self->sbuf_cap)
        return 0;
    size_t cap = self->sbuf_cap ? self->sbuf_cap : S_SNAP_CHUNK;
    while (cap < need)
        cap *= 2;
    uint8_t *b = realloc(self->sbuf, cap);
    if (!b) {
        pm_wal_fail(self, "out of memory writing a snapshot");
        return -1;
    }
    self->sbuf = b;
    self->sbuf_cap = cap;
    return 0;
}

int
pm_wal_snapshot_begin(pm_wal_t *self)
{
    if (s_usable(self) != 0)
        return -1;
    if (self->snap_fd >= 0) {
        pm_wal_fail(self, "a snapshot is already being written");
        return -1;
    }
    uint64_t L = self->appended;
    if (self->seg_base != L + 1) {
        /* Rotate: records up to L stay in segments the commit deletes; records
         * appended while the snapshot is built go to a segment it keeps. The old
         * segment is synced here so that durable never covers an fd we closed. */
        if (s_write_pending(self) != 0)
            return -1;
        if (self->mode != PM_FSYNC_NEVER && self->durable < self->written &&
            s_sync_segment(self) != 0)
            return -1;
        int fd = pm_wal_segment_create(self, L + 1);
        if (fd < 0)
            return -1;
        pm_disk_close(self->disk, self->seg_fd);
        self->seg_fd = fd;
        self->seg_base = L + 1;
        self->seg_off = PM_WAL_SEG_HDR;
        if (self->mode == PM_FSYNC_NEVER)
            self->durable = self->written;
    }
    char name[48];
    pm_wal_snap_name(name, sizeof name, L, true);
    self->snap_fd = pm_disk_open(self->disk, self->dir_fd, name,
                                 PM_DISK_WRITE | PM_DISK_CREATE | PM_DISK_TRUNC);
    if (self->snap_fd < 0) {
        pm_wal_fail(self, "create %s/%s: %s", self->dir, name, strerror(errno));
        return -1;
    }
    self->snap_new_lsn = L;
    self->snap_off = 0;
    self->snap_count = 0;
    self->sbuf_len = 0;
    if (s_snap_reserve(self, PM_WAL_SNAP_HDR) != 0) {
        pm_wal_snapshot_abort(self);
        return -1;
    }
    memcpy(self->sbuf, PM_WAL_SNAP_MAGIC, 8);
    pm_wal_put64(self->sbuf + 8, L);
    pm_wal_put32(self->sbuf + 16, pm_wal_crc32c(self->sbuf, 16));
    pm_wal_put32(self->sbuf + 20, 0);
    self->sbuf_len = PM_WAL_SNAP_HDR;
    self->log_bytes_before = self->log_bytes;
    self->log_bytes = 0;
    return 0;
}

int
pm_wal_snapshot_add(pm_wal_t *self, const void *rec, size_t len)
{
    assert(rec || !len);
    if (self->snap_fd < 0) {
        pm_wal_fail(self, "no snapshot is being written");
        return -1;
    }
    if (len > PM_WAL_MAX_RECORD) {
        pm_wal_fail(self, "snapshot record of %zu bytes is over the %u-byte limit", len,
               PM_WAL_MAX_RECORD);
        pm_wal_snapshot_abort(self);
        return -1;
    }
    if (s_snap_reserve(self, PM_WAL_FRAME_HDR + len) != 0) {
        pm_wal_snapshot_abort(self);
        return -1;
    }
    pm_wal_frame_put(self->sbuf + self->sbuf_len, ++self->snap_count, rec, len);
    self->sbuf_len += PM_WAL_FRAME_HDR + len;
    if (self->sbuf_len >= S_SNAP_CHUNK && s_snap_write_buf(self) != 0) {
        pm_wal_snapshot_abort(self);
        return -1;
    }
    return 0;
}

int
pm_wal_snapshot_commit(pm_wal_t *self)
{
    if (self->snap_fd < 0) {
        pm_wal_fail(self, "no snapshot is being written");
        return -1;
    }
    char tmp[48], name[48];
    pm_wal_snap_name(tmp, sizeof tmp, self->snap_new_lsn, true);
    pm_wal_snap_name(name, sizeof name, self->snap_new_lsn, false);
    if (s_snap_reserve(self, PM_WAL_SNAP_FTR) != 0)
        goto fail;
    uint8_t *f = self->sbuf + self->sbuf_len;
    memcpy(f, PM_WAL_SNAP_END, 8);
    pm_wal_put64(f + 8, self->snap_count);
    pm_wal_put32(f + 16, pm_wal_crc32c(f, 16));
    pm_wal_put32(f + 20, 0);
    self->sbuf_len += PM_WAL_SNAP_FTR;
    if (s_snap_write_buf(self) != 0)
        goto fail;
    /* Synced in every mode: the rename below lets the old log go. */
    if (pm_disk_datasync(self->disk, self->snap_fd) != 0) {
        pm_wal_fail(self, "fdatasync %s/%s: %s", self->dir, tmp, strerror(errno));
        goto fail;
    }
    if (pm_disk_rename(self->disk, self->dir_fd, tmp, name) != 0) {
        pm_wal_fail(self, "rename %s/%s to %s: %s", self->dir, tmp, name, strerror(errno));
        goto fail;
    }
    pm_disk_close(self->disk, self->snap_fd);
    self->snap_fd = -1;
    free(self->sbuf);
    self->sbuf = NULL;
    self->sbuf_len = self->sbuf_cap = 0;
    if (s_fsync_dir(self) != 0) {
        /* The snapshot may or may not survive a crash; either way the old log
         * is still there, so keep it and report. */
        self->log_bytes += self->log_bytes_before;
        return -1;
    }
    self->snap_lsn = self->snap_new_lsn;

    uint64_t *segs = NULL, *snaps = NULL;
    size_t nseg = 0, nsnap = 0;
    char err[256];
    if (pm_wal_list(self, &segs, &nseg, &snaps, &nsnap, err, sizeof err) == 0) {
        pm_wal_remove_stale(self, segs, nseg, snaps, nsnap, self->snap_lsn);
        if (pm_disk_dirsync(self->disk, self->dir_fd) != 0)
            pm_log_warn("PM-WAL-CLEANUP", "fsync %s: %s", self->dir, strerror(errno));
    } else
        pm_log_warn("PM-WAL-CLEANUP", "%s", err);
    free(segs);
    free(snaps);
    pm_log_info("PM-WAL-SNAPSHOT", "%s/%s: %" PRIu64 " records at LSN %" PRIu64, self->dir, name,
                self->snap_count, self->snap_lsn);
    return 0;
fail:
    pm_wal_snapshot_abort(self);
    return -1;
}

void
pm_wal_snapshot_abort(pm_wal_t *self)
{
    if (self->snap_fd < 0)
        return;
    char tmp[48];
    pm_wal_snap_name(tmp, sizeof tmp, self->snap_new_lsn, true);
    pm_disk_close(self->disk, self->snap_fd);
    self->snap_fd = -1;
    if (pm_disk_unlink(self->disk, self->dir_fd, tmp) != 0 && errno != ENOENT)
        pm_log_warn("PM-WAL-SNAP-TMP", "unlink %s/%s: %s", self->dir, tmp, strerror(errno));
    free(self->sbuf);
    self->sbuf = NULL;
    self->sbuf_len = self->sbuf_cap = 0;
    self->log_bytes += self->log_bytes_before;
    self->log_bytes_before = 0;
}

uint64_t
pm_wal_snapshot_lsn(const pm_wal_t *self)
{
    return self->snap_lsn;
}

uint64_t
pm_wal_log_bytes(const pm_wal_t *self)
{
    return self->log_bytes;
}

/* --- the rest --------------------------------------------------------------- */

void
pm_wal_stats(const pm_wal_t *self, pm_wal_stats_t *out)
{
    *out = self->stats;
    out->last_lsn = self->appended;
}

const char *
pm_wal_error(const pm_wal_t *self)
{
    return self->error;
}

const char *
pm_wal_mode_name(pm_fsync_mode_t mode)
{
    switch (mode) {
    case PM_FSYNC_ALWAYS:
        return "always";
    case PM_FSYNC_BATCH:
        return "batch";
    case PM_FSYNC_NEVER:
        return "never";
    }
    return "?";
}

int
pm_wal_mode_parse(const char *s, pm_fsync_mode_t *out)
{
    static const pm_fsync_mode_t modes[] = {PM_FSYNC_ALWAYS, PM_FSYNC_BATCH, PM_FSYNC_NEVER};
    for (size_t i = 0; s && i < sizeof modes / sizeof modes[0]; i++)
        if (!strcmp(s, pm_wal_mode_name(modes[i]))) {
            *out = modes[i];
            return 0;
        }
    return -1;
}

void
pm_wal_test_fault(pm_wal_t *self, int op, int err)
{
    if (op == PM_WAL_FAULT_WRITE)
        self->fault_write = err;
    else if (op == PM_WAL_FAULT_FSYNC)
        self->fault_fsync = err;
}

const pm_hist_t *
pm_wal_fsync_hist(const pm_wal_t *self)
{
    return &self->fsync_hist;
}

