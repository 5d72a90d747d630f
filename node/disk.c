/*
 * disk.c - the real disk behind the disk seam (disk.h): the only file of the
 * agent that opens, writes, syncs, renames or maps the data directory's
 * files. The fake disk is disk_fake.c.
 */
#include "disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int
s_mkdir(void *ctx, const char *path)
{
    (void) ctx;
    return mkdir(path, 0750);
}

static int
s_open_dir(void *ctx, const char *dir)
{
    (void) ctx;
    return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static int
s_open(void *ctx, int dir, const char *name, int flags)
{
    (void) ctx;
    int f = O_CLOEXEC;
    f |= (flags & 3) == PM_DISK_WRITE ? O_WRONLY : (flags & 3) == PM_DISK_RDWR ? O_RDWR : O_RDONLY;
    if (flags & PM_DISK_CREATE)
        f |= O_CREAT;
    if (flags & PM_DISK_EXCL)
        f |= O_EXCL;
    if (flags & PM_DISK_TRUNC)
        f |= O_TRUNC;
    return openat(dir, name, f, 0640);
}

static int
s_close(void *ctx, int fd)
{
    (void) ctx;
    return close(fd);
}

static int
s_dup(void *ctx, int fd)
{
    (void) ctx;
    return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

static ssize_t
s_pread(void *ctx, int fd, void *buf, size_t n, uint64_t off)
{
    (void) ctx;
    return pread(fd, buf, n, (off_t) off);
}

static ssize_t
s_pwrite(void *ctx, int fd, const void *buf, size_t n, uint64_t off)
{
    (void) ctx;
    return pwrite(fd, buf, n, (off_t) off);
}

static int
s_datasync(void *ctx, int fd)
{
    (void) ctx;
    return fdatasync(fd);
}

static int
s_dirsync(void *ctx, int dir)
{
    (void) ctx;
    return fsync(dir);
}

static int
s_truncate(void *ctx, int fd, uint64_t len)
{
    (void) ctx;
    return ftruncate(fd, (off_t) len);
}

static int
s_rename(void *ctx, int dir, const char *from, const char *to)
{
    (void) ctx;
    return renameat(dir, from, dir, to);
}

static int
s_unlink(void *ctx, int dir, const char *name)
{
    (void) ctx;
    return unlinkat(dir, name, 0);
}

static int
s_list(void *ctx, int dir, int (*fn)(void *arg, const char *name), void *arg)
{
    (void) ctx;
    int dfd = fcntl(dir, F_DUPFD_CLOEXEC, 0);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        errno = e;
        return -1;
    }
    rewinddir(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && fn(arg, e->d_name))
            break;
    closedir(d);
    return 0;
}

static int
s_lock(void *ctx, int fd)
{
    (void) ctx;
    /* An open-file-description lock conflicts even within one process, unlike a
     * classic POSIX lock; fall back to the latter on kernels before 3.15. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int rc = fcntl(fd, F_OFD_SETLK, &fl);
    if (rc != 0 && errno == EINVAL) {
        fl.l_pid = 0;
        rc = fcntl(fd, F_SETLK, &fl);
    }
    if (rc != 0 && errno == EACCES)
        errno = EAGAIN;
    return rc;
}

static int
s_map(void *ctx, int dir, const char *name, const uint8_t **p, size_t *n)
{
    (void) ctx;
    *p = NULL;
    *n = 0;
    int fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        madvise(m, (size_t) st.st_size, MADV_SEQUENTIAL | MADV_WILLNEED);
        *p = m;
        *n = (size_t) st.st_size;
    }
    close(fd);
    return 0;
}

static void
s_unmap(void *ctx, const uint8_t *p, size_t n)
{
    (void) ctx;
    if (p)
        munmap((void *) p, n);
}

const pm_disk_t pm_disk_system = {
    .mkdir = s_mkdir, .open_dir = s_open_dir, .open = s_open, .close = s_close, .dup = s_dup,
    .pread = s_pread, .pwrite = s_pwrite, .datasync = s_datasync, .dirsync = s_dirsync,
    .truncate = s_truncate, .rename = s_rename, .unlink = s_unlink, .list = s_list,
    .lock = s_lock, .map = s_map, .unmap = s_unmap, .ctx = NULL,
};

static const pm_disk_t *s_cur = &pm_disk_system;

const pm_disk_t *
pm_disk_use(const pm_disk_t *d)
{
    const pm_disk_t *prev = s_cur;
    s_cur = d ? d : &pm_disk_system;
    return prev;
}

const pm_disk_t *
pm_disk_current(void)
{
    return s_cur;
}

int
pm_disk_pwrite_all(const pm_disk_t *d, int fd, const void *p, size_t n, uint64_t off,
                   size_t *done_out)
{
    const uint8_t *b = p;
    size_t done = 0;
    int rc = 0;
    while (done < n) {
        ssize_t w = d->pwrite(d->ctx, fd, b + done, n - done, off + done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -1;
            break;
        }
        done += (size_t) w;
    }
    if (done_out)
        *done_out = done;
    return rc;
}
