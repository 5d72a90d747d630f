/*
 * wal.c - see wal.h for the file format. The reactor owns everything here; the
 * only other thread is the batch-mode fsync thread, which owns nothing: it gets
 * (dup'd fd, lsn) over a PAIR socket, runs fdatasync, closes the fd and answers
 * (lsn, errno). At most one fsync is in flight; records written while it runs
 * wait for the next one, which pm_wal_readable starts at once.
 *
 * Recovery maps the files read-only and makes two passes: the first checks
 * every checksum and LSN and decides what is a torn tail and what is corruption;
 * only if all is well does the second hand records to the caller.
 */
#include "clock.h"
#include "wal.h"

#include "hist.h"

#include "log.h"

#include <assert.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* Segment header: magic + first LSN. */
#define S_SEG_MAGIC "PMWAL001"
#define S_SEG_HDR 16
/* Record frame header: len, crc, lsn. */
#define S_FRAME_HDR 16
/* Snapshot header and footer: magic, u64, crc, zero pad. */
#define S_SNAP_MAGIC "PMWSNAP1"
#define S_SNAP_END "PMWSEND1"
#define S_SNAP_HDR 24
#define S_SNAP_FTR 24
/* Snapshot records are buffered and written in chunks this big: large enough
 * that write(2) calls are few, small enough not to matter in memory. */
#define S_SNAP_CHUNK (1024 * 1024)

struct s_fsync_req {
    int fd;       /* a dup of the segment fd, closed by the thread; -1 = stop */
    int fault;    /* test hook: report this errno instead of syncing */
    uint64_t lsn; /* everything up to here was written before the request */
};

struct s_fsync_rep {
    uint64_t lsn;
    int err;     /* 0 or the errno of fdatasync */
    uint32_t us; /* how long fdatasync took */
};

struct pm_wal {
    pm_hist_t fsync_hist; /* fdatasync durations */
    char *dir;
    int dir_fd;
    int lock_fd;
    pm_fsync_mode_t mode;

    void *sock; /* reactor end of the PAIR; NULL unless batch */
    pthread_t thread;
    bool thread_up;
    bool inflight; /* an fsync request is out */

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

/* --- CRC32C, slicing by 8 ------------------------------------------------- */

static uint32_t s_crc_tab[8][256];
static pthread_once_t s_crc_once = PTHREAD_ONCE_INIT;

static void
s_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1))); /* reflected Castagnoli */
        s_crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            s_crc_tab[t][i] = (s_crc_tab[t - 1][i] >> 8) ^ s_crc_tab[0][s_crc_tab[t - 1][i] & 0xff];
}

/* crc is the running (inverted) register: start at ~0, finish with ~. */
static uint32_t
s_crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w = le64toh(w) ^ crc;
        crc = s_crc_tab[7][w & 0xff] ^ s_crc_tab[6][(w >> 8) & 0xff] ^
              s_crc_tab[5][(w >> 16) & 0xff] ^ s_crc_tab[4][(w >> 24) & 0xff] ^
              s_crc_tab[3][(w >> 32) & 0xff] ^ s_crc_tab[2][(w >> 40) & 0xff] ^
              s_crc_tab[1][(w >> 48) & 0xff] ^ s_crc_tab[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = s_crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

uint32_t
pm_wal_crc32c(const void *p, size_t n)
{
    pthread_once(&s_crc_once, s_crc_init);
    return ~s_crc_update(~0u, p, n);
}

/* --- little-endian fields -------------------------------------------------- */

static void
s_put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static void
s_put64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static uint32_t
s_get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t
s_get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

/* Checksum of a frame: its len and lsn fields, then the payload. */
static uint32_t
s_frame_crc(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
    uint32_t c = s_crc_update(~0u, hdr, 4);
    c = s_crc_update(c, hdr + 8, 8);
    return ~s_crc_update(c, payload, len);
}

static void
s_frame_put(uint8_t *out, uint64_t lsn, const void *rec, size_t len)
{
    s_put32(out, (uint32_t) len);
    s_put64(out + 8, lsn);
    if (len)
        memcpy(out + S_FRAME_HDR, rec, len);
    s_put32(out + 4, s_frame_crc(out, out + S_FRAME_HDR, len));
}

/* Checks the frame at p (n bytes left in the file) expecting LSN want. NULL if
 * good (length in *len), else what is wrong; *crc_ok says whether the frame was
 * intact and only its LSN was wrong. */
static const char *
s_frame_check(const uint8_t *p, size_t n, uint64_t want, uint32_t *len, bool *crc_ok)
{
    *crc_ok = false;
    if (n < S_FRAME_HDR)
        return "short record header";
    uint32_t l = s_get32(p);
    if (l > PM_WAL_MAX_RECORD)
        return "record length over the limit";
    if ((size_t) l > n - S_FRAME_HDR)
        return "short record payload";
    if (s_frame_crc(p, p + S_FRAME_HDR, l) != s_get32(p + 4))
        return "bad checksum";
    *crc_ok = true;
    if (s_get64(p + 8) != want)
        return "LSN out of sequence";
    *len = l;
    return NULL;
}

/* First offset in [from, n) holding an intact frame with an LSN after `after`
 * (a record a crash could not have left there unless it was written later);
 * -1 if none. The LSN test comes first because it rejects zeros and most
 * garbage without checksumming. */
static int64_t
s_find_intact(const uint8_t *map, size_t from, size_t n, uint64_t after)
{
    if (n < S_FRAME_HDR)
        return -1;
    uint64_t most = after + (n - from) / S_FRAME_HDR + 1;
    for (size_t q = from; q + S_FRAME_HDR <= n; q++) {
        uint64_t lsn = s_get64(map + q + 8);
        if (lsn <= after || lsn > most)
            continue;
        uint32_t l = s_get32(map + q);
        if (l > PM_WAL_MAX_RECORD || (size_t) l > n - q - S_FRAME_HDR)
            continue;
        if (s_frame_crc(map + q, map + q + S_FRAME_HDR, l) == s_get32(map + q + 4))
            return (int64_t) q;
    }
    return -1;
}

/* --- small helpers ---------------------------------------------------------- */

static void s_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
s_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#define s_fail(self, ...) s_seterr((self)->error, sizeof(self)->error, __VA_ARGS__)

static void
s_seg_name(char *out, size_t n, uint64_t base)
{
    snprintf(out, n, "wal-%016" PRIx64 ".log", base);
}

static void
s_snap_name(char *out, size_t n, uint64_t lsn, bool tmp)
{
    snprintf(out, n, "snap-%016" PRIx64 ".snap%s", lsn, tmp ? ".tmp" : "");
}

/* Parses "<prefix><16 hex><suffix>" exactly. */
static bool
s_parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *out)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (strlen(name) != pl + 16 + sl || strncmp(name, prefix, pl) || strcmp(name + pl + 16, suffix))
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[pl + i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t) d;
    }
    *out = v;
    return true;
}

static int
s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

/* Writes all of p at off; -1 with errno set on failure (partial writes retried). */
static int
s_pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off, size_t *done_out)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, p + done, n - done, (off_t) (off + done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (done_out)
                *done_out = done;
            return -1;
        }
        done += (size_t) w;
    }
    if (done_out)
        *done_out = done;
    return 0;
}

static int
s_fsync_dir(pm_wal_t *self)
{
    if (fsync(self->dir_fd) != 0) {
        s_fail(self, "fsync %s: %s", self->dir, strerror(errno));
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
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (self->fault_fsync) {
        errno = self->fault_fsync;
        self->fault_fsync = 0;
        rc = -1;
    } else
        rc = fdatasync(self->seg_fd);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (rc != 0) {
        char name[40];
        s_seg_name(name, sizeof name, self->seg_base);
        s_fail(self, "fdatasync %s/%s: %s", self->dir, name, strerror(errno));
        pm_log_error("PM-WAL-FSYNC-FAIL", "%s; the WAL refuses further writes", self->error);
        self->failed = true;
        return -1;
    }
    self->stats.fsyncs++;
    pm_hist_add(&self->fsync_hist,
                ((b.tv_sec - a.tv_sec) * 1000000.0 + (b.tv_nsec - a.tv_nsec) / 1000.0) / 1000.0);
    self->durable = self->written;
    return 0;
}

/* Creates segment `base` with its header and makes the name durable (unless
 * never mode). Returns the fd open for writing, or -1. */
static int
s_segment_create(pm_wal_t *self, uint64_t base)
{
    char name[40];
    s_seg_name(name, sizeof name, base);
    int fd = openat(self->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        s_fail(self, "create %s/%s: %s", self->dir, name, strerror(errno));
        return -1;
    }
    uint8_t hdr[S_SEG_HDR];
    memcpy(hdr, S_SEG_MAGIC, 8);
    s_put64(hdr + 8, base);
    if (s_pwrite_all(fd, hdr, sizeof hdr, 0, NULL) != 0) {
        s_fail(self, "write %s/%s: %s", self->dir, name, strerror(errno));
        goto fail;
    }
    if (self->mode != PM_FSYNC_NEVER) {
        if (fdatasync(fd) != 0) {
            s_fail(self, "fdatasync %s/%s: %s", self->dir, name, strerror(errno));
            goto fail;
        }
        if (s_fsync_dir(self) != 0)
            goto fail;
    }
    return fd;
fail:
    close(fd);
    unlinkat(self->dir_fd, name, 0);
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
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (req.fault)
            rep.err = req.fault;
        else if (fdatasync(req.fd) != 0)
            rep.err = errno;
        clock_gettime(CLOCK_MONOTONIC, &b);
        int64_t us = (b.tv_sec - a.tv_sec) * 1000000LL + (b.tv_nsec - a.tv_nsec) / 1000;
        rep.us = us > UINT32_MAX ? UINT32_MAX : (uint32_t) us;
        close(req.fd);
        if (zmq_send(sock, &rep, sizeof rep, 0) < 0 && errno == ETERM)
            break;
    }
    zmq_close(sock);
    return NULL;
}

/* Asks the fsync thread to cover everything written so far. */
static int
s_request_fsync(pm_wal_t *self)
{
    int fd = fcntl(self->seg_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        s_fail(self, "dup for fsync: %s", strerror(errno));
        return -1;
    }
    struct s_fsync_req req = {.fd = fd, .fault = self->fault_fsync, .lsn = self->written};
    self->fault_fsync = 0;
    if (zmq_send(self->sock, &req, sizeof req, ZMQ_DONTWAIT) < 0) {
        s_fail(self, "send to the fsync thread: %s", zmq_strerror(errno));
        close(fd);
        return -1;
    }
    self->inflight = true;
    return 0;
}

/* --- open / close ------------------------------------------------------------ */

/* mkdir -p with mode 0750 for what it creates. */
static int
s_mkdirs(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int) sizeof path) {
        s_seterr(err, errlen, "%s: path too long", dir);
        return -1;
    }
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(path, 0750) != 0 && errno != EEXIST) {
                s_seterr(err, errlen, "mkdir %s: %s", path, strerror(errno));
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
    self->lock_fd = openat(self->dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (self->lock_fd < 0) {
        s_seterr(err, errlen, "open %s/LOCK: %s", self->dir, strerror(errno));
        return -1;
    }
    /* An open-file-description lock conflicts even within one process, unlike a
     * classic POSIX lock; fall back to the latter on kernels before 3.15. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int rc = fcntl(self->lock_fd, F_OFD_SETLK, &fl);
    if (rc != 0 && errno == EINVAL) {
        fl.l_pid = 0;
        rc = fcntl(self->lock_fd, F_SETLK, &fl);
    }
    if (rc != 0) {
        if (errno == EAGAIN || errno == EACCES) {
            char pid[32] = "";
            ssize_t n = pread(self->lock_fd, pid, sizeof pid - 1, 0);
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            s_seterr(err, errlen,
                     "%s/LOCK: the data dir is in use by another agent (pid %s); refusing to "
                     "share it",
                     self->dir, pid[0] ? pid : "unknown");
        } else
            s_seterr(err, errlen, "lock %s/LOCK: %s", self->dir, strerror(errno));
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long) getpid());
    if (ftruncate(self->lock_fd, 0) != 0 ||
        s_pwrite_all(self->lock_fd, (uint8_t *) pid, (size_t) len, 0, NULL) != 0) {
        s_seterr(err, errlen, "write %s/LOCK: %s", self->dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int
s_start_thread(pm_wal_t *self, void *ctx, char *err, size_t errlen)
{
    if (!ctx) {
        s_seterr(err, errlen, "fsync batch mode needs a ZeroMQ context");
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
    s_seterr(err, errlen, "fsync thread setup: %s", zmq_strerror(errno));
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
    pthread_once(&s_crc_once, s_crc_init);
    if (!dir || !*dir) {
        s_seterr(err, errlen, "no data dir given");
        return NULL;
    }
    if (mode != PM_FSYNC_ALWAYS && mode != PM_FSYNC_BATCH && mode != PM_FSYNC_NEVER) {
        s_seterr(err, errlen, "bad fsync mode %d", (int) mode);
        return NULL;
    }
    pm_wal_t *self = calloc(1, sizeof *self);
    if (!self || !(self->dir = strdup(dir))) {
        s_seterr(err, errlen, "out of memory");
        free(self);
        return NULL;
    }
    self->mode = mode;
    self->dir_fd = self->lock_fd = self->seg_fd = self->snap_fd = -1;
    if (s_mkdirs(dir, err, errlen) != 0)
        goto fail;
    self->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (self->dir_fd < 0) {
        s_seterr(err, errlen, "open %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (s_lock(self, err, errlen) != 0)
        goto fail;
    if (mode == PM_FSYNC_BATCH && s_start_thread(self, zmq_ctx, err, errlen) != 0)
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
    if (self->seg_fd >= 0 && !self->failed) {
        if (s_write_pending(self) != 0 || s_sync_segment(self) != 0)
            pm_log_error("PM-WAL-CLOSE-FAIL", "records after lsn %" PRIu64 " may be lost: %s",
                         self->durable, self->error);
    }
    if (self->seg_fd >= 0)
        close(self->seg_fd);
    if (self->lock_fd >= 0)
        close(self->lock_fd); /* releases the lock */
    if (self->dir_fd >= 0)
        close(self->dir_fd);
    free(self->buf);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

/* --- recovery ------------------------------------------------------------------ */

typedef struct {
    uint8_t *map;
    size_t size;
} s_map_t;

static int
s_map(pm_wal_t *self, const char *name, s_map_t *m, char *err, size_t errlen)
{
    m->map = NULL;
    m->size = 0;
    int fd = openat(self->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s_seterr(err, errlen, "open %s/%s: %s", self->dir, name, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        s_seterr(err, errlen, "stat %s/%s: %s", self->dir, name, strerror(errno));
        close(fd);
        return -1;
    }
    m->size = (size_t) st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            s_seterr(err, errlen, "mmap %s/%s: %s", self->dir, name, strerror(errno));
            close(fd);
            return -1;
        }
        madvise(p, m->size, MADV_SEQUENTIAL | MADV_WILLNEED);
        m->map = p;
    }
    close(fd);
    return 0;
}

static void
s_unmap(s_map_t *m)
{
    if (m->map)
        munmap(m->map, m->size);
    m->map = NULL;
}

/* Checks a whole snapshot: header, every frame, footer. NULL if valid (count in
 * *count), else why not. */
static const char *
s_snap_check(const s_map_t *m, uint64_t lsn, uint64_t *count, size_t *bad_off)
{
    const uint8_t *p = m->map;
    *bad_off = 0;
    if (m->size < S_SNAP_HDR + S_SNAP_FTR)
        return "too short";
    if (memcmp(p, S_SNAP_MAGIC, 8) || pm_wal_crc32c(p, 16) != s_get32(p + 16))
        return "bad header";
    if (s_get64(p + 8) != lsn)
        return "header LSN differs from the file name";
    const uint8_t *f = p + m->size - S_SNAP_FTR;
    *bad_off = m->size - S_SNAP_FTR;
    if (memcmp(f, S_SNAP_END, 8) || pm_wal_crc32c(f, 16) != s_get32(f + 16))
        return "no valid footer (incomplete)";
    size_t off = S_SNAP_HDR, end = m->size - S_SNAP_FTR;
    uint64_t n = 0;
    while (off < end) {
        uint32_t len;
        bool crc_ok;
        const char *why = s_frame_check(p + off, end - off, n + 1, &len, &crc_ok);
        if (why) {
            *bad_off = off;
            return why;
        }
        off += S_FRAME_HDR + len;
        n++;
    }
    if (n != s_get64(f + 8)) {
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
    s_seg_name(name, sizeof name, s->base);
    const uint8_t *p = s->m.map;
    s->last = s->base - 1;
    if (s->m.size < S_SEG_HDR || memcmp(p, S_SEG_MAGIC, 8) || s_get64(p + 8) != s->base) {
        /* A crash right after creating the file leaves a short or zeroed
         * header; anything else is not ours to drop. */
        if (last && s_find_intact(p, 0, s->m.size, s->base - 1) < 0) {
            s->good_end = 0;
            s->dropped = s->m.size;
            s->torn_why = s->m.size < S_SEG_HDR ? "short segment header" : "bad segment header";
            s->fresh_header = true;
            return 0;
        }
        s_seterr(err, errlen,
                 "%s/%s: offset 0: bad segment header (not a pmesh WAL segment, "
                 "or its first LSN differs from the file name)",
                 self->dir, name);
        return -1;
    }
    size_t off = S_SEG_HDR;
    uint64_t want = s->base;
    while (off < s->m.size) {
        uint32_t len;
        bool crc_ok;
        const char *why = s_frame_check(p + off, s->m.size - off, want, &len, &crc_ok);
        if (!why) {
            off += S_FRAME_HDR + len;
            want++;
            continue;
        }
        if (crc_ok) {
            s_seterr(err, errlen,
                     "%s/%s: offset %zu: record has LSN %" PRIu64 ", expected %" PRIu64
                     "; refusing to recover",
                     self->dir, name, off, s_get64(p + off + 8), want);
            return -1;
        }
        int64_t next = s_find_intact(p, off + 1, s->m.size, want - 1);
        if (next >= 0) {
            s_seterr(err, errlen,
                     "%s/%s: offset %zu: corrupt record (%s) followed by a valid "
                     "record at offset %" PRId64 " (LSN %" PRIu64 "); refusing to skip it",
                     self->dir, name, off, why, next, s_get64(p + next + 8));
            return -1;
        }
        if (!last) {
            s_seterr(err, errlen,
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

/* Lists the dir: sorted segment bases and snapshot LSNs; removes leftover
 * snapshot tmp files. */
static int
s_list(pm_wal_t *self, uint64_t **segs, size_t *nseg, uint64_t **snaps, size_t *nsnap, char *err,
       size_t errlen)
{
    *segs = *snaps = NULL;
    *nseg = *nsnap = 0;
    size_t cap_seg = 0, cap_snap = 0;
    int dfd = fcntl(self->dir_fd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        s_seterr(err, errlen, "opendir %s: %s", self->dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    rewinddir(d);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        uint64_t v;
        uint64_t **arr = NULL;
        size_t *n = NULL, *cap = NULL;
        if (s_parse_name(e->d_name, "wal-", ".log", &v))
            arr = segs, n = nseg, cap = &cap_seg;
        else if (s_parse_name(e->d_name, "snap-", ".snap", &v))
            arr = snaps, n = nsnap, cap = &cap_snap;
        else if (s_parse_name(e->d_name, "snap-", ".snap.tmp", &v)) {
            pm_log_warn("PM-WAL-SNAP-TMP", "%s/%s: removing an unfinished snapshot", self->dir,
                        e->d_name);
            if (unlinkat(self->dir_fd, e->d_name, 0) != 0)
                pm_log_warn("PM-WAL-SNAP-TMP", "unlink %s/%s: %s", self->dir, e->d_name,
                            strerror(errno));
            continue;
        } else
            continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            uint64_t *a = realloc(*arr, nc * sizeof *a);
            if (!a) {
                s_seterr(err, errlen, "out of memory");
                rc = -1;
                break;
            }
            *arr = a;
            *cap = nc;
        }
        (*arr)[(*n)++] = v;
    }
    closedir(d);
    if (rc == 0) {
        if (*nseg)
            qsort(*segs, *nseg, sizeof **segs, s_cmp_u64);
        if (*nsnap)
            qsort(*snaps, *nsnap, sizeof **snaps, s_cmp_u64);
    }
    return rc;
}

/* Deletes segments whose records are all <= lsn (those with a successor whose
 * first LSN is <= lsn + 1) and snapshots older than lsn. Failures are logged:
 * the files are merely stale. */
static void
s_remove_stale(pm_wal_t *self, const uint64_t *segs, size_t nseg, const uint64_t *snaps,
               size_t nsnap, uint64_t lsn)
{
    char name[40];
    for (size_t i = 0; i + 1 < nseg; i++) {
        if (segs[i + 1] > lsn + 1)
            break;
        s_seg_name(name, sizeof name, segs[i]);
        if (unlinkat(self->dir_fd, name, 0) != 0 && errno != ENOENT)
            pm_log_warn("PM-WAL-CLEANUP", "unlink %s/%s: %s", self->dir, name, strerror(errno));
    }
    for (size_t i = 0; i < nsnap && snaps[i] < lsn; i++) {
        s_snap_name(name, sizeof name, snaps[i], false);
        if (unlinkat(self->dir_fd, name, 0) != 0 && errno != ENOENT)
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
        s_seterr(err, errlen, "pm_wal_replay called twice");
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

    if (s_list(self, &segs, &nseg, &snaps, &nsnap, err, errlen) != 0)
        goto out;

    /* The newest snapshot that checks out entirely. */
    for (size_t i = nsnap; i-- > 0;) {
        s_snap_name(name, sizeof name, snaps[i], false);
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
        s_unmap(&snap);
    }

    /* Segments holding records after L: from the last one starting at or
     * before L + 1 onwards. */
    while (first + 1 < nseg && segs[first + 1] <= L + 1)
        first++;
    if (first < nseg && segs[first] > L + 1) {
        s_seg_name(name, sizeof name, segs[first]);
        s_seterr(err, errlen,
                 "%s: records %" PRIu64 "..%" PRIu64 " are missing: the %s ends at "
                 "LSN %" PRIu64 " but the log resumes with %s; refusing to recover",
                 self->dir, L + 1, segs[first] - 1, L ? "snapshot" : "empty state", L, name);
        goto out;
    }
    n = nseg - first;
    ss = calloc(n ? n : 1, sizeof *ss);
    if (!ss) {
        s_seterr(err, errlen, "out of memory");
        goto out;
    }
    uint64_t last = L;
    for (size_t i = 0; i < n; i++) {
        ss[i].base = segs[first + i];
        s_seg_name(name, sizeof name, ss[i].base);
        if (i > 0 && ss[i].base != ss[i - 1].last + 1) {
            s_seterr(err, errlen,
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
        size_t off = S_SNAP_HDR;
        for (uint64_t i = 0; i < snap_count; i++) {
            uint32_t len = s_get32(snap.map + off);
            if (fn && fn(arg, L, snap.map + off + S_FRAME_HDR, len) != 0) {
                s_seterr(err, errlen, "replay stopped by the caller at snapshot record %" PRIu64,
                         i + 1);
                goto out;
            }
            off += S_FRAME_HDR + len;
        }
        self->stats.snapshot_records = snap_count;
    }
    for (size_t i = 0; i < n; i++) {
        size_t off = ss[i].fresh_header ? ss[i].good_end : S_SEG_HDR;
        for (uint64_t lsn = ss[i].base; off < ss[i].good_end; lsn++) {
            uint32_t len = s_get32(ss[i].m.map + off);
            if (lsn > L) {
                if (fn && fn(arg, lsn, ss[i].m.map + off + S_FRAME_HDR, len) != 0) {
                    s_seterr(err, errlen, "replay stopped by the caller at LSN %" PRIu64, lsn);
                    goto out;
                }
                self->stats.records++;
                self->stats.bytes += S_FRAME_HDR + len;
            }
            off += S_FRAME_HDR + len;
        }
    }

    /* Cut the torn tail and pick the segment to append to: the last one, unless
     * the log ends inside the snapshot (never mode lost the tail of a segment
     * the snapshot covers); then a new one after the snapshot. */
    s_seg_t *tail = n ? &ss[n - 1] : NULL;
    if (tail && tail->dropped) {
        s_seg_name(name, sizeof name, tail->base);
        self->stats.dropped_bytes = tail->dropped;
        pm_log_warn("PM-WAL-TORN",
                    "%s/%s: torn tail at offset %zu (%s): dropped %zu bytes; "
                    "the log ends at LSN %" PRIu64,
                    self->dir, name, tail->good_end, tail->torn_why, tail->dropped, last);
    }
    if (tail && tail->last == last) {
        s_seg_name(name, sizeof name, tail->base);
        self->seg_fd = openat(self->dir_fd, name, O_WRONLY | O_CLOEXEC);
        if (self->seg_fd < 0) {
            s_seterr(err, errlen, "open %s/%s: %s", self->dir, name, strerror(errno));
            goto out;
        }
        self->seg_base = tail->base;
        if (tail->dropped || tail->fresh_header) {
            if (ftruncate(self->seg_fd, (off_t) tail->good_end) != 0) {
                s_seterr(err, errlen, "truncate %s/%s: %s", self->dir, name, strerror(errno));
                goto out;
            }
            if (tail->fresh_header) {
                uint8_t hdr[S_SEG_HDR];
                memcpy(hdr, S_SEG_MAGIC, 8);
                s_put64(hdr + 8, tail->base);
                if (s_pwrite_all(self->seg_fd, hdr, sizeof hdr, 0, NULL) != 0) {
                    s_seterr(err, errlen, "write %s/%s: %s", self->dir, name, strerror(errno));
                    goto out;
                }
                tail->good_end = S_SEG_HDR;
            }
            if (fdatasync(self->seg_fd) != 0) {
                s_seterr(err, errlen, "fdatasync %s/%s: %s", self->dir, name, strerror(errno));
                goto out;
            }
        }
        self->seg_off = tail->good_end;
    } else {
        /* No segment, or the log ends inside the snapshot: start after both. */
        if ((self->seg_fd = s_segment_create(self, last + 1)) < 0) {
            s_seterr(err, errlen, "%s", self->error);
            goto out;
        }
        self->seg_base = last + 1;
        self->seg_off = S_SEG_HDR;
    }
    s_remove_stale(self, segs, nseg, snaps, nsnap, L);

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
        s_fail(self, "%s", err);
        if (self->seg_fd >= 0)
            close(self->seg_fd);
        self->seg_fd = -1;
        self->stats.records = self->stats.bytes = self->stats.snapshot_records = 0;
    }
    for (size_t i = 0; ss && i < n; i++)
        s_unmap(&ss[i].m);
    s_unmap(&snap);
    free(ss);
    free(segs);
    free(snaps);
    return rc;
}

/* --- appending ------------------------------------------------------------- */

/* 0 if appends and snapshots may proceed, else -1 with the error set. */
static int
s_usable(pm_wal_t *self)
{
    if (!self->replayed) {
        if (!self->error[0])
            s_fail(self, "the WAL has not been recovered (call pm_wal_replay first)");
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
        s_fail(self, "record of %zu bytes is over the %u-byte limit", len, PM_WAL_MAX_RECORD);
        return 0;
    }
    size_t need = self->buf_len + S_FRAME_HDR + len;
    if (need > self->buf_cap) {
        size_t cap = self->buf_cap ? self->buf_cap : 64 * 1024;
        while (cap < need)
            cap *= 2;
        uint8_t *b = realloc(self->buf, cap);
        if (!b) {
            s_fail(self, "out of memory queueing a %zu-byte record", len);
            return 0;
        }
        self->buf = b;
        self->buf_cap = cap;
    }
    uint64_t lsn = self->appended + 1;
    s_frame_put(self->buf + self->buf_len, lsn, rec, len);
    self->buf_len = need;
    self->appended = lsn;
    self->log_bytes += S_FRAME_HDR + len;
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
        rc = s_pwrite_all(self->seg_fd, self->buf, self->buf_len, self->seg_off, &done);
    char name[40];
    s_seg_name(name, sizeof name, self->seg_base);
    if (rc != 0) {
        int e = errno;
        if (done > 0 && ftruncate(self->seg_fd, (off_t) self->seg_off) != 0) {
            s_fail(self,
                   "write %s/%s at offset %" PRIu64 ": %s; cutting the partial record "
                   "failed too: %s",
                   self->dir, name, self->seg_off + done, strerror(e), strerror(errno));
            self->failed = true;
        } else
            s_fail(self, "write %s/%s at offset %" PRIu64 ": %s", self->dir, name,
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

void
pm_wal_readable(pm_wal_t *self)
{
    if (!self->sock)
        return;
    struct s_fsync_rep rep;
    int n;
    while ((n = zmq_recv(self->sock, &rep, sizeof rep, ZMQ_DONTWAIT)) >= 0) {
        if (n != (int) sizeof rep)
            continue;
        self->inflight = false;
        if (rep.err) {
            char name[40];
            s_seg_name(name, sizeof name, self->seg_base);
            s_fail(self, "fdatasync %s/%s: %s", self->dir, name, strerror(rep.err));
            if (!self->failed)
                pm_log_error("PM-WAL-FSYNC-FAIL", "%s; the WAL refuses further writes",
                             self->error);
            self->failed = true;
            continue;
        }
        self->stats.fsyncs++;
        pm_hist_add(&self->fsync_hist, rep.us / 1000.0);
        if (rep.lsn > self->durable)
            self->durable = rep.lsn;
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
    if (s_pwrite_all(self->snap_fd, self->sbuf, self->sbuf_len, self->snap_off, NULL) != 0) {
        char name[48];
        s_snap_name(name, sizeof name, self->snap_new_lsn, true);
        s_fail(self, "write %s/%s: %s", self->dir, name, strerror(errno));
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
        s_fail(self, "out of memory writing a snapshot");
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
        s_fail(self, "a snapshot is already being written");
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
        int fd = s_segment_create(self, L + 1);
        if (fd < 0)
            return -1;
        close(self->seg_fd);
        self->seg_fd = fd;
        self->seg_base = L + 1;
        self->seg_off = S_SEG_HDR;
        if (self->mode == PM_FSYNC_NEVER)
            self->durable = self->written;
    }
    char name[48];
    s_snap_name(name, sizeof name, L, true);
    self->snap_fd = openat(self->dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (self->snap_fd < 0) {
        s_fail(self, "create %s/%s: %s", self->dir, name, strerror(errno));
        return -1;
    }
    self->snap_new_lsn = L;
    self->snap_off = 0;
    self->snap_count = 0;
    self->sbuf_len = 0;
    if (s_snap_reserve(self, S_SNAP_HDR) != 0) {
        pm_wal_snapshot_abort(self);
        return -1;
    }
    memcpy(self->sbuf, S_SNAP_MAGIC, 8);
    s_put64(self->sbuf + 8, L);
    s_put32(self->sbuf + 16, pm_wal_crc32c(self->sbuf, 16));
    s_put32(self->sbuf + 20, 0);
    self->sbuf_len = S_SNAP_HDR;
    self->log_bytes_before = self->log_bytes;
    self->log_bytes = 0;
    return 0;
}

int
pm_wal_snapshot_add(pm_wal_t *self, const void *rec, size_t len)
{
    assert(rec || !len);
    if (self->snap_fd < 0) {
        s_fail(self, "no snapshot is being written");
        return -1;
    }
    if (len > PM_WAL_MAX_RECORD) {
        s_fail(self, "snapshot record of %zu bytes is over the %u-byte limit", len,
               PM_WAL_MAX_RECORD);
        pm_wal_snapshot_abort(self);
        return -1;
    }
    if (s_snap_reserve(self, S_FRAME_HDR + len) != 0) {
        pm_wal_snapshot_abort(self);
        return -1;
    }
    s_frame_put(self->sbuf + self->sbuf_len, ++self->snap_count, rec, len);
    self->sbuf_len += S_FRAME_HDR + len;
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
        s_fail(self, "no snapshot is being written");
        return -1;
    }
    char tmp[48], name[48];
    s_snap_name(tmp, sizeof tmp, self->snap_new_lsn, true);
    s_snap_name(name, sizeof name, self->snap_new_lsn, false);
    if (s_snap_reserve(self, S_SNAP_FTR) != 0)
        goto fail;
    uint8_t *f = self->sbuf + self->sbuf_len;
    memcpy(f, S_SNAP_END, 8);
    s_put64(f + 8, self->snap_count);
    s_put32(f + 16, pm_wal_crc32c(f, 16));
    s_put32(f + 20, 0);
    self->sbuf_len += S_SNAP_FTR;
    if (s_snap_write_buf(self) != 0)
        goto fail;
    /* Synced in every mode: the rename below lets the old log go. */
    if (fdatasync(self->snap_fd) != 0) {
        s_fail(self, "fdatasync %s/%s: %s", self->dir, tmp, strerror(errno));
        goto fail;
    }
    if (renameat(self->dir_fd, tmp, self->dir_fd, name) != 0) {
        s_fail(self, "rename %s/%s to %s: %s", self->dir, tmp, name, strerror(errno));
        goto fail;
    }
    close(self->snap_fd);
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
    if (s_list(self, &segs, &nseg, &snaps, &nsnap, err, sizeof err) == 0) {
        s_remove_stale(self, segs, nseg, snaps, nsnap, self->snap_lsn);
        if (fsync(self->dir_fd) != 0)
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
    s_snap_name(tmp, sizeof tmp, self->snap_new_lsn, true);
    close(self->snap_fd);
    self->snap_fd = -1;
    if (unlinkat(self->dir_fd, tmp, 0) != 0 && errno != ENOENT)
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
