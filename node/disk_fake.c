/*
 * disk_fake.c - a disk in memory (disk.h, "the fake disk") for unit tests and
 * the simulator: per file the bytes written and the bytes synced, per
 * directory the names now and as of the last dirsync, and a crash that keeps
 * only what fdatasync and a directory fsync promise (plus, when asked, a torn
 * prefix of an unsynced append). One mutex guards it all: the WAL's fsync
 * thread calls in too.
 */
#include "disk.h"

#include "rand.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Handles are numbered from here, so that a mix-up with stdin/stdout/stderr or
 * a real descriptor is unlikely to go unnoticed. */
#define S_FD_BASE 1000

typedef struct s_inode {
    uint8_t *data; /* bytes as written */
    size_t len, cap;
    uint8_t *synced; /* bytes as of the last datasync */
    size_t synced_len;
    int refs;      /* names (current and durable) and handles */
    int lock_fd;   /* handle holding the lock, or -1 */
} s_inode_t;

typedef struct s_entry {
    char *name;
    s_inode_t *ino;
} s_entry_t;

typedef struct s_names {
    s_entry_t *e;
    size_t n, cap;
} s_names_t;

typedef struct s_dir {
    char *path;
    s_names_t now;     /* names as they are */
    s_names_t durable; /* names as of the last dirsync */
} s_dir_t;

typedef struct s_handle {
    int kind; /* 0 free, 1 file, 2 directory, 3 dropped by a crash (never reused) */
    int flags;
    s_dir_t *dir;
    s_inode_t *ino;
} s_handle_t;

struct pm_disk_fake {
    pm_disk_t disk;
    pthread_mutex_t mu;
    pm_rand_seeded_t rng;
    s_dir_t **dirs;
    size_t ndirs;
    s_handle_t *h;
    size_t nh;
    int fail_err[PM_DISK_OP_COUNT];
    unsigned fail_skip[PM_DISK_OP_COUNT];
    size_t room; /* bytes that still fit when room_err is set */
    int room_err;
    pm_disk_sync_hook_fn *hook;
    void *hook_arg;
    uint64_t syncs, written;
};

/* --- helpers (mutex held) ------------------------------------------------------ */

static void
s_unref(s_inode_t *ino)
{
    if (ino && --ino->refs == 0) {
        free(ino->data);
        free(ino->synced);
        free(ino);
    }
}

static s_inode_t *
s_inode_new(void)
{
    s_inode_t *ino = calloc(1, sizeof *ino);
    if (ino)
        ino->lock_fd = -1;
    return ino;
}

static s_entry_t *
s_find(s_names_t *ns, const char *name)
{
    for (size_t i = 0; i < ns->n; i++)
        if (!strcmp(ns->e[i].name, name))
            return &ns->e[i];
    return NULL;
}

/* Adds name -> ino (a reference taken). -1 on out of memory. */
static int
s_names_add(s_names_t *ns, const char *name, s_inode_t *ino)
{
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 8;
        s_entry_t *e = realloc(ns->e, cap * sizeof *e);
        if (!e)
            return -1;
        ns->e = e;
        ns->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    ns->e[ns->n].name = copy;
    ns->e[ns->n].ino = ino;
    ns->n++;
    ino->refs++;
    return 0;
}

static void
s_names_remove(s_names_t *ns, s_entry_t *e)
{
    free(e->name);
    s_unref(e->ino);
    *e = ns->e[--ns->n];
}

static void
s_names_clear(s_names_t *ns)
{
    while (ns->n)
        s_names_remove(ns, &ns->e[ns->n - 1]);
}

/* dst := a copy of src (references taken). -1 on out of memory (dst cleared). */
static int
s_names_copy(s_names_t *dst, const s_names_t *src)
{
    s_names_clear(dst);
    for (size_t i = 0; i < src->n; i++)
        if (s_names_add(dst, src->e[i].name, src->e[i].ino) != 0) {
            s_names_clear(dst);
            return -1;
        }
    return 0;
}

/* The pending fault of op, if its turn has come: 0 or the errno to fail with. */
static int
s_fault(pm_disk_fake_t *self, int op)
{
    if (!self->fail_err[op])
        return 0;
    if (self->fail_skip[op]) {
        self->fail_skip[op]--;
        return 0;
    }
    int e = self->fail_err[op];
    self->fail_err[op] = 0;
    return e;
}

static s_handle_t *
s_handle(pm_disk_fake_t *self, int fd, int kind)
{
    size_t i = (size_t) (fd - S_FD_BASE);
    if (fd < S_FD_BASE || i >= self->nh || self->h[i].kind == 0 || self->h[i].kind == 3 ||
        (kind && self->h[i].kind != kind)) {
        errno = kind == 2 ? ENOTDIR : EBADF;
        return NULL;
    }
    return &self->h[i];
}

/* A free handle slot, its number in *fd. NULL on out of memory. */
static s_handle_t *
s_handle_new(pm_disk_fake_t *self, int *fd)
{
    size_t i = 0;
    while (i < self->nh && self->h[i].kind)
        i++;
    if (i == self->nh) {
        size_t n = self->nh ? self->nh * 2 : 16;
        s_handle_t *h = realloc(self->h, n * sizeof *h);
        if (!h)
            return NULL;
        memset(h + self->nh, 0, (n - self->nh) * sizeof *h);
        self->h = h;
        self->nh = n;
    }
    *fd = S_FD_BASE + (int) i;
    return &self->h[i];
}

static s_dir_t *
s_dir_find(pm_disk_fake_t *self, const char *path)
{
    for (size_t i = 0; i < self->ndirs; i++)
        if (!strcmp(self->dirs[i]->path, path))
            return self->dirs[i];
    return NULL;
}

static int
s_set_len(s_inode_t *ino, size_t len)
{
    if (len > ino->cap) {
        size_t cap = ino->cap ? ino->cap : 4096;
        while (cap < len)
            cap *= 2;
        uint8_t *d = realloc(ino->data, cap);
        if (!d)
            return -1;
        ino->data = d;
        ino->cap = cap;
    }
    if (len > ino->len)
        memset(ino->data + ino->len, 0, len - ino->len);
    ino->len = len;
    return 0;
}

#define S_LOCKED(self, expr)                                                                       \
    do {                                                                                           \
        pthread_mutex_lock(&(self)->mu);                                                           \
        expr;                                                                                      \
        pthread_mutex_unlock(&(self)->mu);                                                         \
    } while (0)

/* --- the ops ---------------------------------------------------------------- */

/* The directory path, created if missing (create) ; NULL with errno. */
static s_dir_t *
s_dir_get(pm_disk_fake_t *self, const char *path, bool create)
{
    s_dir_t *d = s_dir_find(self, path);
    if (!d && !create)
        errno = ENOENT;
    if (!d && create) {
        s_dir_t **dirs = realloc(self->dirs, (self->ndirs + 1) * sizeof *dirs);
        if (!dirs)
            goto oom;
        self->dirs = dirs;
        d = calloc(1, sizeof *d);
        if (!d || !(d->path = strdup(path))) {
            free(d);
            goto oom;
        }
        self->dirs[self->ndirs++] = d;
    }
    return d;
oom:
    errno = ENOMEM;
    return NULL;
}

static int
s_mkdir(void *ctx, const char *path)
{
    pm_disk_fake_t *self = ctx;
    int rc = 0;
    pthread_mutex_lock(&self->mu);
    if (s_dir_find(self, path)) {
        errno = EEXIST;
        rc = -1;
    } else if (!s_dir_get(self, path, true))
        rc = -1;
    pthread_mutex_unlock(&self->mu);
    return rc;
}

static int
s_open_dir_l(pm_disk_fake_t *self, const char *path)
{
    s_dir_t *d = s_dir_get(self, path, false);
    if (!d)
        return -1;
    int fd;
    s_handle_t *h = s_handle_new(self, &fd);
    if (!h) {
        errno = ENOMEM;
        return -1;
    }
    *h = (s_handle_t){.kind = 2, .dir = d};
    return fd;
}

static int
s_open_dir(void *ctx, const char *path)
{
    pm_disk_fake_t *self = ctx;
    int rc;
    S_LOCKED(self, rc = s_open_dir_l(self, path));
    return rc;
}

static int
s_open_l(pm_disk_fake_t *self, int dir, const char *name, int flags)
{
    int e = s_fault(self, PM_DISK_OP_OPEN);
    if (e) {
        errno = e;
        return -1;
    }
    s_handle_t *dh = s_handle(self, dir, 2);
    if (!dh)
        return -1;
    s_dir_t *d = dh->dir;
    s_entry_t *ent = s_find(&d->now, name);
    s_inode_t *ino = ent ? ent->ino : NULL;
    if (ino && (flags & PM_DISK_CREATE) && (flags & PM_DISK_EXCL)) {
        errno = EEXIST;
        return -1;
    }
    if (!ino) {
        if (!(flags & PM_DISK_CREATE)) {
            errno = ENOENT;
            return -1;
        }
        if (!(ino = s_inode_new()) || s_names_add(&d->now, name, ino) != 0) {
            free(ino);
            errno = ENOMEM;
            return -1;
        }
    }
    if (flags & PM_DISK_TRUNC)
        ino->len = 0;
    int fd;
    s_handle_t *h = s_handle_new(self, &fd);
    if (!h) {
        errno = ENOMEM;
        return -1;
    }
    *h = (s_handle_t){.kind = 1, .flags = flags, .dir = d, .ino = ino};
    ino->refs++;
    return fd;
}

static int
s_open(void *ctx, int dir, const char *name, int flags)
{
    pm_disk_fake_t *self = ctx;
    int rc;
    S_LOCKED(self, rc = s_open_l(self, dir, name, flags));
    return rc;
}

static int
s_close_l(pm_disk_fake_t *self, int fd)
{
    s_handle_t *h = s_handle(self, fd, 0);
    if (!h)
        return -1;
    if (h->ino) {
        if (h->ino->lock_fd == fd)
            h->ino->lock_fd = -1;
        s_unref(h->ino);
    }
    *h = (s_handle_t){0};
    return 0;
}

static int
s_close(void *ctx, int fd)
{
    pm_disk_fake_t *self = ctx;
    int rc;
    S_LOCKED(self, rc = s_close_l(self, fd));
    return rc;
}

static int
s_dup_l(pm_disk_fake_t *self, int fd)
{
    if (!s_handle(self, fd, 0))
        return -1;
    int nfd;
    s_handle_t *h = s_handle_new(self, &nfd);
    if (!h) {
        errno = ENOMEM;
        return -1;
    }
    *h = *s_handle(self, fd, 0); /* the table may have moved */
    if (h->ino)
        h->ino->refs++;
    return nfd;
}

static int
s_dup(void *ctx, int fd)
{
    pm_disk_fake_t *self = ctx;
    int rc;
    S_LOCKED(self, rc = s_dup_l(self, fd));
    return rc;
}

static ssize_t
s_pread_l(pm_disk_fake_t *self, int fd, void *buf, size_t n, uint64_t off)
{
    s_handle_t *h = s_handle(self, fd, 1);
    if (!h)
        return -1;
    if ((h->flags & 3) == PM_DISK_WRITE) {
        errno = EBADF;
        return -1;
    }
    if (off >= h->ino->len)
        return 0;
    size_t k = h->ino->len - (size_t) off < n ? h->ino->len - (size_t) off : n;
    memcpy(buf, h->ino->data + off, k);
    return (ssize_t) k;
}

static ssize_t
s_pread(void *ctx, int fd, void *buf, size_t n, uint64_t off)
{
    pm_disk_fake_t *self = ctx;
    ssize_t rc;
    S_LOCKED(self, rc = s_pread_l(self, fd, buf, n, off));
    return rc;
}

static ssize_t
s_pwrite_l(pm_disk_fake_t *self, int fd, const void *buf, size_t n, uint64_t off)
{
    s_handle_t *h = s_handle(self, fd, 1);
    if (!h)
        return -1;
    if ((h->flags & 3) == PM_DISK_READ) {
        errno = EBADF;
        return -1;
    }
    int e = s_fault(self, PM_DISK_OP_PWRITE);
    if (e) {
        errno = e;
        return -1;
    }
    if (self->room_err) {
        if (self->room == 0 && n > 0) {
            errno = self->room_err;
            return -1;
        }
        if (n > self->room)
            n = self->room; /* a short write: the caller retries the rest and fails */
        self->room -= n;
    }
    s_inode_t *ino = h->ino;
    if (n) {
        size_t end = (size_t) off + n;
        if (end > ino->len && s_set_len(ino, end) != 0) {
            errno = ENOSPC;
            return -1;
        }
        memcpy(ino->data + off, buf, n);
        self->written += n;
    }
    return (ssize_t) n;
}

static ssize_t
s_pwrite(void *ctx, int fd, const void *buf, size_t n, uint64_t off)
{
    pm_disk_fake_t *self = ctx;
    ssize_t rc;
    S_LOCKED(self, rc = s_pwrite_l(self, fd, buf, n, off));
    return rc;
}

/* Runs the sync hook, unlocked. 0 or the errno it asks for. */
static int
s_run_hook(pm_disk_fake_t *self, int fd, int kind)
{
    pm_disk_sync_hook_fn *fn;
    void *arg;
    char path[512] = "";
    pthread_mutex_lock(&self->mu);
    fn = self->hook;
    arg = self->hook_arg;
    s_handle_t *h = s_handle(self, fd, kind);
    if (fn && h) {
        const char *name = "";
        if (kind == 1)
            for (size_t i = 0; i < h->dir->now.n; i++)
                if (h->dir->now.e[i].ino == h->ino)
                    name = h->dir->now.e[i].name;
        snprintf(path, sizeof path, "%s%s%s", h->dir->path, kind == 1 ? "/" : "", name);
    }
    pthread_mutex_unlock(&self->mu);
    return fn && h ? fn(arg, path) : 0;
}

static int
s_datasync_l(pm_disk_fake_t *self, int fd)
{
    s_handle_t *h = s_handle(self, fd, 1);
    if (!h)
        return -1;
    int e = s_fault(self, PM_DISK_OP_DATASYNC);
    if (e) {
        errno = e;
        return -1;
    }
    s_inode_t *ino = h->ino;
    uint8_t *s = malloc(ino->len ? ino->len : 1);
    if (!s) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(s, ino->data ? ino->data : s, ino->len);
    free(ino->synced);
    ino->synced = s;
    ino->synced_len = ino->len;
    self->syncs++;
    return 0;
}

static int
s_datasync(void *ctx, int fd)
{
    pm_disk_fake_t *self = ctx;
    int e = s_run_hook(self, fd, 1);
    if (e) {
        errno = e;
        return -1;
    }
    int rc;
    S_LOCKED(self, rc = s_datasync_l(self, fd));
    return rc;
}

static int
s_dirsync_l(pm_disk_fake_t *self, int dir)
{
    s_handle_t *h = s_handle(self, dir, 2);
    if (!h)
        return -1;
    int e = s_fault(self, PM_DISK_OP_DIRSYNC);
    if (e) {
        errno = e;
        return -1;
    }
    if (s_names_copy(&h->dir->durable, &h->dir->now) != 0) {
        errno = ENOMEM;
        return -1;
    }
    self->syncs++;
    return 0;
}

static int
s_dirsync(void *ctx, int dir)
{
    pm_disk_fake_t *self = ctx;
    int e = s_run_hook(self, dir, 2);
    if (e) {
        errno = e;
        return -1;
    }
    int rc;
    S_LOCKED(self, rc = s_dirsync_l(self, dir));
    return rc;
}

static int
s_truncate_l(pm_disk_fake_t *self, int fd, uint64_t len)
{
    s_handle_t *h = s_handle(self, fd, 1);
    if (!h)
        return -1;
    if ((h->flags & 3) == PM_DISK_READ) {
        errno = EINVAL;
        return -1;
    }
    int e = s_fault(self, PM_DISK_OP_TRUNCATE);
    if (e) {
        errno = e;
        return -1;
    }
    if (s_set_len(h->ino, (size_t) len) != 0) {
        errno = ENOSPC;
        return -1;
    }
    return 0;
}

static int
s_truncate(void *ctx, int fd, uint64_t len)
{
    pm_disk_fake_t *self = ctx;
    int rc;
    S_LOCKED(self, rc = s_truncate_l(self, fd, len));
    return rc;
}

static int
s_rename_l(pm_disk_fake_t *self, int dir, const char *from, const char *to)
{
    s_handle_t *dh = s_handle(self, dir, 2);
    if (!dh)
        return -1;
    int e = s_fault(self, PM_DISK_OP_RENAME);
    if (e) {
        errno = e;
        return -1;
    }
    s_names_t *ns = &dh->dir->now;
    s_entry_t *src = s_find(ns, from);
    if (!src) {
        errno = ENOENT;
        return -1;
    }
    if (!strcmp(from, to))
        return 0;
    s_inode_t *ino = src->ino;
    ino->refs++; /* keep it while the names move */
    s_entry_t *dst = s_find(ns, to);
    if (dst)
        s_names_remove(ns, dst);
    s_names_remove(ns, s_find(ns, from));
    int rc = s_names_add(ns, to, ino);
    s_unref(ino);
    if (rc != 0)
        errno = ENOMEM;
    return rc;
}

static int
s_rename(void *ctx, int dir, const char *from, const char *to)
{
    pm_disk_fake_t *self = ctx;
    int rc;
    S_LOCKED(self, rc = s_rename_l(self, dir, from, to));
    return rc;
}

static int
s_unlink_l(pm_disk_fake_t *self, int dir, const char *name)
{
    s_handle_t *dh = s_handle(self, dir, 2);
    if (!dh)
        return -1;
    int e = s_fault(self, PM_DISK_OP_UNLINK);
    if (e) {
        errno = e;
        return -1;
    }
    s_entry_t *ent = s_find(&dh->dir->now, name);
    if (!ent) {
        errno = ENOENT;
        return -1;
    }
    s_names_remove(&dh->dir->now, ent);
    return 0;
}

static int
s_unlink(void *ctx, int dir, const char *name)
{
    pm_disk_fake_t *self = ctx;
    int rc;
    S_LOCKED(self, rc = s_unlink_l(self, dir, name));
    return rc;
}

static int
s_list(void *ctx, int dir, int (*fn)(void *arg, const char *name), void *arg)
{
    pm_disk_fake_t *self = ctx;
    /* Copies the names first: fn may unlink (which takes the mutex). */
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    pthread_mutex_lock(&self->mu);
    s_handle_t *dh = s_handle(self, dir, 2);
    if (!dh)
        rc = -1;
    else if (dh->dir->now.n) {
        names = calloc(dh->dir->now.n, sizeof *names);
        for (; names && n < dh->dir->now.n; n++)
            if (!(names[n] = strdup(dh->dir->now.e[n].name)))
                break;
        if (!names || n < dh->dir->now.n) {
            errno = ENOMEM;
            rc = -1;
        }
    }
    pthread_mutex_unlock(&self->mu);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (fn(arg, names[i]))
            break;
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int
s_lock_l(pm_disk_fake_t *self, int fd)
{
    s_handle_t *h = s_handle(self, fd, 1);
    if (!h)
        return -1;
    if (h->ino->lock_fd >= 0 && h->ino->lock_fd != fd) {
        errno = EAGAIN;
        return -1;
    }
    h->ino->lock_fd = fd;
    return 0;
}

static int
s_lock(void *ctx, int fd)
{
    pm_disk_fake_t *self = ctx;
    int rc;
    S_LOCKED(self, rc = s_lock_l(self, fd));
    return rc;
}

static int
s_map_l(pm_disk_fake_t *self, int dir, const char *name, const uint8_t **p, size_t *n)
{
    *p = NULL;
    *n = 0;
    s_handle_t *dh = s_handle(self, dir, 2);
    if (!dh)
        return -1;
    s_entry_t *ent = s_find(&dh->dir->now, name);
    if (!ent) {
        errno = ENOENT;
        return -1;
    }
    if (ent->ino->len) {
        uint8_t *c = malloc(ent->ino->len);
        if (!c) {
            errno = ENOMEM;
            return -1;
        }
        memcpy(c, ent->ino->data, ent->ino->len);
        *p = c;
        *n = ent->ino->len;
    }
    return 0;
}

static int
s_map(void *ctx, int dir, const char *name, const uint8_t **p, size_t *n)
{
    pm_disk_fake_t *self = ctx;
    int rc;
    S_LOCKED(self, rc = s_map_l(self, dir, name, p, n));
    return rc;
}

static void
s_unmap(void *ctx, const uint8_t *p, size_t n)
{
    (void) ctx;
    (void) n;
    free((void *) p);
}

/* --- the rest ------------------------------------------------------------------ */

pm_disk_fake_t *
pm_disk_fake_new(uint64_t seed)
{
    pm_disk_fake_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->mu, NULL);
    pm_rand_seeded_init(&self->rng, seed);
    self->disk = (pm_disk_t){
        .mkdir = s_mkdir, .open_dir = s_open_dir, .open = s_open, .close = s_close, .dup = s_dup,
        .pread = s_pread, .pwrite = s_pwrite, .datasync = s_datasync, .dirsync = s_dirsync,
        .truncate = s_truncate, .rename = s_rename, .unlink = s_unlink, .list = s_list,
        .lock = s_lock, .map = s_map, .unmap = s_unmap, .ctx = self,
    };
    return self;
}

/* Drops every handle (and with them every lock). Mutex held. A crash marks
 * their slots dead, so that a handle the crashed owner still holds can never
 * name a file opened after the crash. */
static void
s_drop_handles(pm_disk_fake_t *self, bool dead)
{
    for (size_t i = 0; i < self->nh; i++)
        if (self->h[i].kind == 1 || self->h[i].kind == 2) {
            s_close_l(self, S_FD_BASE + (int) i);
            if (dead)
                self->h[i].kind = 3;
        }
}

void
pm_disk_fake_destroy(pm_disk_fake_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_disk_fake_t *self = *self_p;
    s_drop_handles(self, false);
    for (size_t i = 0; i < self->ndirs; i++) {
        s_names_clear(&self->dirs[i]->now);
        s_names_clear(&self->dirs[i]->durable);
        free(self->dirs[i]->now.e);
        free(self->dirs[i]->durable.e);
        free(self->dirs[i]->path);
        free(self->dirs[i]);
    }
    free(self->dirs);
    free(self->h);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

const pm_disk_t *
pm_disk_fake_disk(pm_disk_fake_t *self)
{
    return &self->disk;
}

/* What a power cut leaves of one file. */
static void
s_crash_inode(pm_disk_fake_t *self, s_inode_t *ino, int mode)
{
    size_t keep = ino->synced_len;
    size_t torn = 0;
    /* Only an append is torn: if the synced bytes were rewritten or cut since,
     * what reaches the platter first is anyone's guess, so keep the synced. */
    bool append = ino->len > ino->synced_len &&
                  (!ino->synced_len || !memcmp(ino->data, ino->synced, ino->synced_len));
    if (mode == PM_DISK_CRASH_TORN && append) {
        torn = (size_t) (pm_rand_seeded_next(&self->rng) % (ino->len - ino->synced_len + 1));
        keep += torn;
    }
    uint8_t *d = malloc(keep ? keep : 1);
    if (!d)
        return; /* out of memory in a test fake: keep everything as it is */
    if (ino->synced_len)
        memcpy(d, ino->synced, ino->synced_len);
    if (torn) {
        memcpy(d + ino->synced_len, ino->data + ino->synced_len, torn);
        /* Half the time the size got there before the data: zeros at the end. */
        if (pm_rand_seeded_next(&self->rng) & 1) {
            size_t z = (size_t) (pm_rand_seeded_next(&self->rng) % (torn + 1));
            memset(d + keep - z, 0, z);
        }
    }
    free(ino->data);
    ino->data = d;
    ino->len = ino->cap = keep;
    /* What survived a crash is on the disk: synced from now on. */
    uint8_t *s = malloc(keep ? keep : 1);
    if (s) {
        memcpy(s, d, keep);
        free(ino->synced);
        ino->synced = s;
        ino->synced_len = keep;
    }
}

void
pm_disk_fake_crash(pm_disk_fake_t *self, int mode)
{
    pthread_mutex_lock(&self->mu);
    s_drop_handles(self, true);
    for (size_t i = 0; i < self->ndirs; i++) {
        s_dir_t *d = self->dirs[i];
        if (s_names_copy(&d->now, &d->durable) != 0)
            continue; /* out of memory in a test fake */
        for (size_t k = 0; k < d->now.n; k++)
            s_crash_inode(self, d->now.e[k].ino, mode);
    }
    pthread_mutex_unlock(&self->mu);
}

void
pm_disk_fake_fail(pm_disk_fake_t *self, int op, int err, unsigned skip)
{
    if (op < 0 || op >= PM_DISK_OP_COUNT)
        return;
    pthread_mutex_lock(&self->mu);
    self->fail_err[op] = err;
    self->fail_skip[op] = skip;
    pthread_mutex_unlock(&self->mu);
}

void
pm_disk_fake_room(pm_disk_fake_t *self, size_t bytes, int err)
{
    pthread_mutex_lock(&self->mu);
    self->room = bytes;
    self->room_err = err;
    pthread_mutex_unlock(&self->mu);
}

void
pm_disk_fake_on_sync(pm_disk_fake_t *self, pm_disk_sync_hook_fn *fn, void *arg)
{
    pthread_mutex_lock(&self->mu);
    self->hook = fn;
    self->hook_arg = arg;
    pthread_mutex_unlock(&self->mu);
}

int
pm_disk_fake_file(pm_disk_fake_t *self, const char *dir, const char *name, uint8_t **data,
                  size_t *len, size_t *synced_len)
{
    int rc = -1;
    pthread_mutex_lock(&self->mu);
    s_dir_t *d = s_dir_find(self, dir);
    s_entry_t *e = d ? s_find(&d->now, name) : NULL;
    if (!e) {
        errno = ENOENT;
        goto out;
    }
    if (data) {
        *data = malloc(e->ino->len ? e->ino->len : 1);
        if (!*data) {
            errno = ENOMEM;
            goto out;
        }
        if (e->ino->len)
            memcpy(*data, e->ino->data, e->ino->len);
    }
    if (len)
        *len = e->ino->len;
    if (synced_len)
        *synced_len = e->ino->synced_len;
    rc = 0;
out:
    pthread_mutex_unlock(&self->mu);
    return rc;
}

int
pm_disk_fake_corrupt(pm_disk_fake_t *self, const char *dir, const char *name, size_t off, uint8_t x)
{
    int rc = -1;
    pthread_mutex_lock(&self->mu);
    s_dir_t *d = s_dir_find(self, dir);
    s_entry_t *e = d ? s_find(&d->now, name) : NULL;
    if (e && off < e->ino->len) {
        e->ino->data[off] ^= x;
        if (off < e->ino->synced_len)
            e->ino->synced[off] ^= x;
        rc = 0;
    } else
        errno = e ? EINVAL : ENOENT;
    pthread_mutex_unlock(&self->mu);
    return rc;
}

uint64_t
pm_disk_fake_unsynced(pm_disk_fake_t *self, const char *prefix)
{
    uint64_t n = 0;
    size_t plen = prefix ? strlen(prefix) : 0;
    pthread_mutex_lock(&self->mu);
    for (size_t i = 0; i < self->ndirs; i++) {
        const s_names_t *ns = &self->dirs[i]->now;
        for (size_t k = 0; k < ns->n; k++)
            if (ns->e[k].ino->len > ns->e[k].ino->synced_len &&
                (!plen || !strncmp(ns->e[k].name, prefix, plen)))
                n += ns->e[k].ino->len - ns->e[k].ino->synced_len;
    }
    pthread_mutex_unlock(&self->mu);
    return n;
}

uint64_t
pm_disk_fake_syncs(const pm_disk_fake_t *self)
{
    return self->syncs;
}

uint64_t
pm_disk_fake_written(const pm_disk_fake_t *self)
{
    return self->written;
}
