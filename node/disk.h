/*
 * disk.h - the data directory's disk behind a seam. Everything the WAL does
 * to files (wal.c, wal_replay.c) goes through a pm_disk_t: open, read, write,
 * sync, truncate, rename, unlink, list, lock, map. Production uses
 * pm_disk_system (the syscalls); tests and the simulator use a fake disk in
 * memory (pm_disk_fake_t) that keeps, per file, what was written and what was
 * synced, and whose crash keeps only what a real disk promises to keep.
 *
 * Handles are small ints like file descriptors; a directory handle (open_dir)
 * names the directory for the *at-style calls. Calls return -1 with errno set
 * on failure, as the syscalls do, so callers report strerror(errno).
 *
 * Which disk: pm_disk_current(), a "current disk" like the clock (clock.h)
 * that the simulator switches to an agent's before stepping it. The WAL reads
 * it once, at pm_wal_open, and keeps using that disk (its handles belong to
 * it), so switching later never mixes two disks' handles.
 */
#ifndef PM_DISK_H
#define PM_DISK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* open flags */
enum {
    PM_DISK_READ = 0,     /* read only */
    PM_DISK_WRITE = 1,    /* write only */
    PM_DISK_RDWR = 2,     /* read and write */
    PM_DISK_CREATE = 4,   /* create if missing (mode 0640) */
    PM_DISK_EXCL = 8,     /* with CREATE: fail with EEXIST if it exists */
    PM_DISK_TRUNC = 16    /* cut to 0 bytes */
};

typedef struct pm_disk {
    /* Creates one directory (mode 0750); -1 with EEXIST if it exists. */
    int (*mkdir)(void *ctx, const char *path);
    /* A handle on an existing directory. */
    int (*open_dir)(void *ctx, const char *path);
    /* A file of the directory dir; flags as above. */
    int (*open)(void *ctx, int dir, const char *name, int flags);
    int (*close)(void *ctx, int fd);
    /* A second handle on the same open file (for the fsync thread). */
    int (*dup)(void *ctx, int fd);
    ssize_t (*pread)(void *ctx, int fd, void *buf, size_t n, uint64_t off);
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, uint64_t off);
    /* The file's data durable (fdatasync). */
    int (*datasync)(void *ctx, int fd);
    /* The directory's names durable: creations, renames, unlinks (fsync of
     * the directory). */
    int (*dirsync)(void *ctx, int dir);
    int (*truncate)(void *ctx, int fd, uint64_t len);
    int (*rename)(void *ctx, int dir, const char *from, const char *to);
    int (*unlink)(void *ctx, int dir, const char *name);
    /* Calls fn for each name in dir (not "." or ".."); fn may unlink the name
     * it is given. Stops early if fn returns non-zero. */
    int (*list)(void *ctx, int dir, int (*fn)(void *arg, const char *name), void *arg);
    /* An exclusive lock on the open file fd, held until that handle closes;
     * it conflicts with any other handle, in this process too. -1 with EAGAIN
     * if someone holds it. */
    int (*lock)(void *ctx, int fd);
    /* The whole file, read only, until unmap (*p NULL if empty). */
    int (*map)(void *ctx, int dir, const char *name, const uint8_t **p, size_t *n);
    void (*unmap)(void *ctx, const uint8_t *p, size_t n);
    void *ctx;
} pm_disk_t;

/* Calls through d, one per op (see pm_disk_t). */
static inline int
pm_disk_mkdir(const pm_disk_t *d, const char *path)
{
    return d->mkdir(d->ctx, path);
}
static inline int
pm_disk_open_dir(const pm_disk_t *d, const char *path)
{
    return d->open_dir(d->ctx, path);
}
static inline int
pm_disk_open(const pm_disk_t *d, int dir, const char *name, int flags)
{
    return d->open(d->ctx, dir, name, flags);
}
static inline int
pm_disk_close(const pm_disk_t *d, int fd)
{
    return d->close(d->ctx, fd);
}
static inline int
pm_disk_dup(const pm_disk_t *d, int fd)
{
    return d->dup(d->ctx, fd);
}
static inline ssize_t
pm_disk_pread(const pm_disk_t *d, int fd, void *buf, size_t n, uint64_t off)
{
    return d->pread(d->ctx, fd, buf, n, off);
}
static inline int
pm_disk_datasync(const pm_disk_t *d, int fd)
{
    return d->datasync(d->ctx, fd);
}
static inline int
pm_disk_dirsync(const pm_disk_t *d, int dir)
{
    return d->dirsync(d->ctx, dir);
}
static inline int
pm_disk_truncate(const pm_disk_t *d, int fd, uint64_t len)
{
    return d->truncate(d->ctx, fd, len);
}
static inline int
pm_disk_rename(const pm_disk_t *d, int dir, const char *from, const char *to)
{
    return d->rename(d->ctx, dir, from, to);
}
static inline int
pm_disk_unlink(const pm_disk_t *d, int dir, const char *name)
{
    return d->unlink(d->ctx, dir, name);
}
static inline int
pm_disk_list(const pm_disk_t *d, int dir, int (*fn)(void *arg, const char *name), void *arg)
{
    return d->list(d->ctx, dir, fn, arg);
}
static inline int
pm_disk_lock(const pm_disk_t *d, int fd)
{
    return d->lock(d->ctx, fd);
}
static inline int
pm_disk_map(const pm_disk_t *d, int dir, const char *name, const uint8_t **p, size_t *n)
{
    return d->map(d->ctx, dir, name, p, n);
}
static inline void
pm_disk_unmap(const pm_disk_t *d, const uint8_t *p, size_t n)
{
    d->unmap(d->ctx, p, n);
}

/* The real disk (open(2), pwrite(2), fdatasync(2), fcntl OFD locks, mmap(2)...). */
extern const pm_disk_t pm_disk_system;

/* Installs d as the current disk (NULL: the system one); borrowed. Returns the
 * previous one. */
const pm_disk_t *pm_disk_use(const pm_disk_t *d);
/* The current disk; never NULL. */
const pm_disk_t *pm_disk_current(void);

/* Writes all of p at off through d (short writes and EINTR retried); -1 with
 * errno set on failure, *done_out (if not NULL) = bytes written either way. */
int pm_disk_pwrite_all(const pm_disk_t *d, int fd, const void *p, size_t n, uint64_t off,
                       size_t *done_out);

/* --- the fake disk -------------------------------------------------------------- */

/*
 * A disk in memory for unit tests and the simulator. Per file it keeps the
 * bytes written and the bytes last synced; per directory the names as they
 * are and as of the last dirsync. pm_disk_fake_crash is a power cut: every
 * handle and lock goes; each directory gets back its names as of its last
 * dirsync (a file created, renamed or unlinked since comes back as it was);
 * each file gets back its synced bytes, plus, in torn mode, a random prefix
 * of what was appended after them (seeded, so a run replays), sometimes with
 * its last bytes zeroed (the size reached the disk, the data did not).
 * Directories themselves are durable once created; a directory's parents are
 * not modelled (mkdir of any path succeeds). Thread-safe (the WAL's
 * fsync thread calls it too).
 */
typedef struct pm_disk_fake pm_disk_fake_t;

/* A new, empty fake disk; seed drives torn crashes. NULL if out of memory.
 * Caller owns it (pm_disk_fake_destroy). */
pm_disk_fake_t *pm_disk_fake_new(uint64_t seed);
void pm_disk_fake_destroy(pm_disk_fake_t **self_p);
/* Its ops table (install with pm_disk_use). Borrowed. */
const pm_disk_t *pm_disk_fake_disk(pm_disk_fake_t *self);

enum {
    PM_DISK_CRASH_CLEAN = 0, /* keep exactly the synced bytes */
    PM_DISK_CRASH_TORN = 1   /* plus a random prefix of the unsynced tail */
};
/* A power cut (see above). Handles open before it are invalid after it. */
void pm_disk_fake_crash(pm_disk_fake_t *self, int mode);

/* Fault injection: the next call of op (one of the names below) fails with
 * errno err, after `skip` calls of it succeed. One pending fault per op. */
enum {
    PM_DISK_OP_OPEN = 0,
    PM_DISK_OP_PWRITE,
    PM_DISK_OP_DATASYNC,
    PM_DISK_OP_DIRSYNC,
    PM_DISK_OP_TRUNCATE,
    PM_DISK_OP_RENAME,
    PM_DISK_OP_UNLINK,
    PM_DISK_OP_COUNT
};
void pm_disk_fake_fail(pm_disk_fake_t *self, int op, int err, unsigned skip);
/* A filling disk: only `bytes` more bytes fit; the write that crosses the
 * line stores what fits (a short write) and every later one fails with err
 * (ENOSPC), until called again with err 0. */
void pm_disk_fake_room(pm_disk_fake_t *self, size_t bytes, int err);

/* Called before each datasync and dirsync with the file's "dir/name" (a slow
 * fsync: the hook may advance a fake clock; a non-zero return fails the sync
 * with that errno). Runs on the caller's thread, with the disk unlocked. */
typedef int(pm_disk_sync_hook_fn)(void *arg, const char *path);
void pm_disk_fake_on_sync(pm_disk_fake_t *self, pm_disk_sync_hook_fn *fn, void *arg);

/* Inspection: the file dir/name as it is now. 0 and its length, the length
 * synced so far (*synced_len; NULL allowed) and a copy of its bytes (*data,
 * caller frees; NULL allowed); -1 with ENOENT if no such name. */
int pm_disk_fake_file(pm_disk_fake_t *self, const char *dir, const char *name, uint8_t **data,
                      size_t *len, size_t *synced_len);
/* Flips bits: XORs x into byte off of dir/name, in both the current and the
 * synced bytes (damage at rest). -1 if no such file or off is past its end. */
int pm_disk_fake_corrupt(pm_disk_fake_t *self, const char *dir, const char *name, size_t off,
                         uint8_t x);
/* Bytes written past the synced length, summed over the files named now
 * whose name starts with prefix (NULL: every file): what a power cut would
 * lose of them (a torn one keeps a prefix of it). */
uint64_t pm_disk_fake_unsynced(pm_disk_fake_t *self, const char *prefix);
/* Counters, for assertions: syncs (datasync + dirsync) and bytes written. */
uint64_t pm_disk_fake_syncs(const pm_disk_fake_t *self);
uint64_t pm_disk_fake_written(const pm_disk_fake_t *self);

#endif
