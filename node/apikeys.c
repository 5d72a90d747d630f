/*
 * apikeys.c - the gateway's API keys (see apikeys.h): parsing a keys file
 * into a table of BLAKE2b hashes, and a constant-time lookup.
 */
#include "apikeys.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1 MiB: 1024 lines of at most a few hundred bytes, with room for comments. */
#define S_FILE_MAX (1024 * 1024)
#define S_HASH 32

typedef struct s_entry {
    char name[PM_APIKEY_NAME_MAX + 1];
    pm_scope_t scope;
    unsigned char hash[S_HASH];
} s_entry_t;

struct pm_apikeys {
    size_t n;
    s_entry_t *items;
};

/* The same key every time: the hash hides the key from memory dumps and
 * makes every comparison 32 bytes, whatever the presented length. */
static void
s_hash(const char *key, size_t len, unsigned char out[S_HASH])
{
    static const unsigned char ctx[] = "pmesh-apikey-v1";
    crypto_generichash(out, S_HASH, (const unsigned char *) key, len, ctx, sizeof ctx - 1);
}

static int
s_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > PM_APIKEY_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Splits line (len bytes, no newline, comment already cut) into fields. */
static size_t
s_fields(const char *line, size_t len, const char *f[4], size_t fl[4])
{
    size_t n = 0, i = 0;
    while (i < len) {
        while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            i++;
        if (n < 4) {
            f[n] = line + start;
            fl[n] = i - start;
        }
        n++;
    }
    return n;
}

int
pm_apikeys_parse(const char *text, size_t len, const char *origin, pm_apikeys_t **keys_p,
                 char *err, size_t errlen)
{
    *keys_p = NULL;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "%s: libsodium failed to initialise", origin);
        return -1;
    }
    pm_apikeys_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "%s: out of memory", origin);
        return -1;
    }
    size_t cap = 0, lineno = 0, pos = 0;
    while (pos < len) {
        lineno++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t) (nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        const char *hash = memchr(line, '#', ll);
        if (hash)
            ll = (size_t) (hash - line);
        for (size_t i = 0; i < ll; i++) {
            unsigned char c = (unsigned char) line[i];
            if (c < 0x20 && c != '\t' && c != '\r') {
                snprintf(err, errlen, "%s:%zu: a control character (0x%02x)", origin, lineno, c);
                goto fail;
            }
        }
        const char *f[4];
        size_t fl[4];
        size_t nf = s_fields(line, ll, f, fl);
        if (nf == 0)
            continue;
        if (nf != 3) {
            snprintf(err, errlen, "%s:%zu: %zu fields; a key line is NAME SCOPE KEY", origin,
                     lineno, nf);
            goto fail;
        }
        if (!s_name_ok(f[0], fl[0])) {
            snprintf(err, errlen, "%s:%zu: the name must be 1 to %d of [A-Za-z0-9._-]", origin,
                     lineno, PM_APIKEY_NAME_MAX);
            goto fail;
        }
        pm_scope_t scope = PM_SCOPE_NONE;
        if (fl[1] == 4 && memcmp(f[1], "read", 4) == 0)
            scope = PM_SCOPE_READ;
        else if (fl[1] == 5 && memcmp(f[1], "write", 5) == 0)
            scope = PM_SCOPE_WRITE;
        else {
            snprintf(err, errlen, "%s:%zu: the scope must be read or write", origin, lineno);
            goto fail;
        }
        if (fl[2] < PM_APIKEY_MIN || fl[2] > PM_APIKEY_MAX) {
            snprintf(err, errlen, "%s:%zu: the key of %.*s has %zu characters; keys have %d to %d",
                     origin, lineno, (int) fl[0], f[0], fl[2], PM_APIKEY_MIN, PM_APIKEY_MAX);
            goto fail;
        }
        for (size_t i = 0; i < fl[2]; i++) {
            unsigned char c = (unsigned char) f[2][i];
            if (c < 0x21 || c > 0x7e) {
                snprintf(err, errlen, "%s:%zu: the key of %.*s is not printable ASCII", origin,
                         lineno, (int) fl[0], f[0]);
                goto fail;
            }
        }
        if (self->n == PM_APIKEYS_MAX) {
            snprintf(err, errlen, "%s:%zu: more than %d keys", origin, lineno, PM_APIKEYS_MAX);
            goto fail;
        }
        s_entry_t e = {.scope = scope};
        memcpy(e.name, f[0], fl[0]);
        s_hash(f[2], fl[2], e.hash);
        for (size_t i = 0; i < self->n; i++) {
            if (strcmp(self->items[i].name, e.name) == 0) {
                snprintf(err, errlen, "%s:%zu: the name %s is used twice", origin, lineno,
                         e.name);
                goto fail;
            }
            if (memcmp(self->items[i].hash, e.hash, S_HASH) == 0) {
                snprintf(err, errlen, "%s:%zu: %s has the same key as %s", origin, lineno,
                         e.name, self->items[i].name);
                goto fail;
            }
        }
        if (self->n == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            s_entry_t *items = realloc(self->items, ncap * sizeof *items);
            if (!items) {
                snprintf(err, errlen, "%s: out of memory", origin);
                goto fail;
            }
            self->items = items;
            cap = ncap;
        }
        self->items[self->n++] = e;
        sodium_memzero(&e, sizeof e);
    }
    *keys_p = self;
    return 0;
fail:
    pm_apikeys_destroy(&self);
    return -1;
}

int
pm_apikeys_load(const char *path, pm_apikeys_t **keys_p, char *err, size_t errlen)
{
    *keys_p = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(S_FILE_MAX + 1);
    size_t len = 0;
    int rc = -1;
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, S_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t) n;
        if (len > S_FILE_MAX) {
            snprintf(err, errlen, "%s: larger than %d bytes; not a keys file?", path, S_FILE_MAX);
            goto out;
        }
    }
    rc = pm_apikeys_parse(buf, len, path, keys_p, err, errlen);
out:
    if (buf) {
        sodium_memzero(buf, len);
        free(buf);
    }
    close(fd);
    return rc;
}

void
pm_apikeys_destroy(pm_apikeys_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_apikeys_t *self = *self_p;
    if (self->items) {
        sodium_memzero(self->items, self->n * sizeof *self->items);
        free(self->items);
    }
    free(self);
    *self_p = NULL;
}

size_t
pm_apikeys_count(const pm_apikeys_t *self)
{
    return self ? self->n : 0;
}

pm_scope_t
pm_apikeys_match(const pm_apikeys_t *self, const char *key, size_t len, const char **name_p)
{
    if (name_p)
        *name_p = NULL;
    if (!self || !key || len < PM_APIKEY_MIN || len > PM_APIKEY_MAX)
        return PM_SCOPE_NONE;
    unsigned char h[S_HASH];
    s_hash(key, len, h);
    /* Every entry is compared, and the match is picked without a branch on
     * the comparison, so the time does not depend on which entry (if any)
     * matched. */
    size_t found = 0; /* index + 1 */
    for (size_t i = 0; i < self->n; i++) {
        size_t hit = (size_t) (crypto_verify_32(h, self->items[i].hash) == 0);
        found |= (i + 1) & (size_t) -hit;
    }
    sodium_memzero(h, sizeof h);
    if (!found)
        return PM_SCOPE_NONE;
    if (name_p)
        *name_p = self->items[found - 1].name;
    return self->items[found - 1].scope;
}

const char *
pm_scope_name(pm_scope_t scope)
{
    return scope == PM_SCOPE_WRITE ? "write" : scope == PM_SCOPE_READ ? "read" : "none";
}
