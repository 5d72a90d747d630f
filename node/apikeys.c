/*
 * apikeys.c - the gateway's API keys (see apikeys.h): parsing a keys file
 * into a table of BLAKE2b hashes, a constant-time lookup, and the keyring
 * that keeps the table in force for a file and swaps it on reload.
 */
#include "apikeys.h"
#include "token.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    uint8_t *buf;
    size_t len;
    if (pm_secret_file_read(path, S_FILE_MAX, "a keys file", &buf, &len, err, errlen))
        return -1;
    int rc = pm_apikeys_parse((const char *) buf, len, path, keys_p, err, errlen);
    sodium_memzero(buf, len);
    free(buf);
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

/* ---- the keyring: reloaded on SIGHUP and when the file changes ------------------- */

/* A table replaced by a reload: readers that loaded it just before may still
 * be parsing with it, for microseconds; it is freed a minute later. */
typedef struct s_retired {
    pm_apikeys_t *keys;
    int64_t since_ms;
    struct s_retired *next;
} s_retired_t;

struct pm_keyring {
    _Atomic(pm_apikeys_t *) keys; /* written by the reloading thread, read by any */
    char *path;
    struct stat st; /* of the file last loaded: a change reloads it */
    int64_t next_check_ms;
    s_retired_t *retired;
};

int
pm_keyring_new(const char *path, pm_keyring_t **self_p, char *err, size_t errlen)
{
    *self_p = NULL;
    pm_apikeys_t *keys = NULL;
    if (pm_apikeys_load(path, &keys, err, errlen) != 0)
        return -1;
    pm_keyring_t *self = calloc(1, sizeof *self);
    if (!self || !(self->path = strdup(path))) {
        free(self);
        pm_apikeys_destroy(&keys);
        return -2;
    }
    atomic_store(&self->keys, keys);
    stat(self->path, &self->st);
    self->next_check_ms = pm_mono_ms() + PM_KEYRING_CHECK_MS;
    *self_p = self;
    return 0;
}

void
pm_keyring_destroy(pm_keyring_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_keyring_t *self = *self_p;
    pm_apikeys_t *keys = atomic_load(&self->keys);
    pm_apikeys_destroy(&keys);
    while (self->retired) {
        s_retired_t *r = self->retired;
        self->retired = r->next;
        pm_apikeys_destroy(&r->keys);
        free(r);
    }
    free(self->path);
    free(self);
    *self_p = NULL;
}

const pm_apikeys_t *
pm_keyring_keys(pm_keyring_t *self)
{
    return atomic_load_explicit(&self->keys, memory_order_acquire);
}

static int
s_same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

void
pm_keyring_reload(pm_keyring_t *self, const char *why)
{
    char err[512];
    struct stat st;
    if (stat(self->path, &st) != 0)
        memset(&st, 0, sizeof st);
    pm_apikeys_t *fresh = NULL;
    if (pm_apikeys_load(self->path, &fresh, err, sizeof err) != 0) {
        self->st = st; /* do not retry an unchanged bad file every few seconds */
        pm_log_error("PM-HTTP-KEYS-RELOAD-FAILED", "%s: %s; the %zu keys loaded before stay in force",
                     why, err, pm_apikeys_count(atomic_load(&self->keys)));
        return;
    }
    self->st = st;
    pm_apikeys_t *old = atomic_exchange_explicit(&self->keys, fresh, memory_order_acq_rel);
    pm_log_info("PM-HTTP-KEYS-LOADED", "%s: %zu API keys from %s (%zu before)", why,
                pm_apikeys_count(fresh), self->path, pm_apikeys_count(old));
    int64_t now = pm_mono_ms();
    s_retired_t **pp = &self->retired;
    while (*pp) { /* free what no parse can still hold */
        if (now - (*pp)->since_ms > PM_KEYRING_RETIRE_MS) {
            s_retired_t *dead = *pp;
            *pp = dead->next;
            pm_apikeys_destroy(&dead->keys);
            free(dead);
        } else {
            pp = &(*pp)->next;
        }
    }
    s_retired_t *r = calloc(1, sizeof *r);
    if (!r) { /* keep it rather than free a table a parse may hold */
        pm_log_warn("PM-HTTP-KEYS-LOADED", "out of memory retiring the old keys; kept");
        return;
    }
    r->keys = old;
    r->since_ms = now;
    r->next = self->retired;
    self->retired = r;
}

void
pm_keyring_check(pm_keyring_t *self)
{
    int64_t now = pm_mono_ms();
    if (now < self->next_check_ms)
        return;
    self->next_check_ms = now + PM_KEYRING_CHECK_MS;
    struct stat st;
    if (stat(self->path, &st) == 0 && !s_same_file(&st, &self->st))
        pm_keyring_reload(self, "the keys file changed");
}
