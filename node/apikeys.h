/*
 * apikeys.h - the gateway's API keys: who may use the client API over HTTP.
 *
 * A keys file has one key per line, `NAME SCOPE KEY`, separated by spaces or
 * tabs; `#` starts a comment (to the end of the line) and blank lines are
 * skipped. NAME is [A-Za-z0-9._-]{1,64} and unique (it names the caller in
 * logs, never the key); SCOPE is `read` (list and get any promise) or
 * `write` (everything: create, settle, cancel, ...); KEY is 32 to 256
 * printable characters without spaces or '#', unique. `scripts/gen-secrets`
 * writes such a file with random 43-character keys.
 *
 * Only a BLAKE2b hash of each key is kept. A presented key is hashed and
 * compared with every entry in constant time, so neither the comparison nor
 * the position of a match tells an attacker anything.
 *
 * A table is immutable once loaded: the gateway swaps in a new one on
 * SIGHUP (or when the file changes) and readers on other threads keep using
 * the one they loaded. Pure: no globals, safe from any thread.
 *
 * The keyring (pm_keyring_t, below) is the table in force for one keys file:
 * one thread reloads it, any thread reads it without a lock.
 */
#ifndef PM_APIKEYS_H
#define PM_APIKEYS_H

#include <stddef.h>
#include <stdint.h>

/* 32 characters: at least 190 bits in the base64url keys gen-secrets makes;
 * shorter keys are refused so a truncated file fails loudly. */
#define PM_APIKEY_MIN 32
/* 256: far above any generated key; bounds the work per presented key. */
#define PM_APIKEY_MAX 256
/* 64: names are for logs. */
#define PM_APIKEY_NAME_MAX 64
/* 1024 keys per file: the comparison touches every one on each request. */
#define PM_APIKEYS_MAX 1024

typedef enum pm_scope {
    PM_SCOPE_NONE = 0,
    PM_SCOPE_READ = 1,
    PM_SCOPE_WRITE = 2,
} pm_scope_t;

typedef struct pm_apikeys pm_apikeys_t;

/* Parses the text of a keys file. origin names it in errors
 * ("FILE:LINE: ..."). 0 and *keys_p (caller owns), or -1 with a one-line
 * reason in err and *keys_p NULL. Never aborts on any input. */
int pm_apikeys_parse(const char *text, size_t len, const char *origin, pm_apikeys_t **keys_p,
                     char *err, size_t errlen);

/* Reads and parses the file at path (at most 1 MiB). As pm_apikeys_parse. */
int pm_apikeys_load(const char *path, pm_apikeys_t **keys_p, char *err, size_t errlen);

/* Wipes and frees; sets *self_p to NULL. NULL-safe. */
void pm_apikeys_destroy(pm_apikeys_t **self_p);

size_t pm_apikeys_count(const pm_apikeys_t *self);

/* The scope of the presented key (len bytes), PM_SCOPE_NONE if no entry
 * matches; *name_p (if not NULL) gets the matching entry's name (borrowed
 * from self) or NULL. Constant time in the table's size. */
pm_scope_t pm_apikeys_match(const pm_apikeys_t *self, const char *key, size_t len,
                            const char **name_p);

/* "read", "write", "none". */
const char *pm_scope_name(pm_scope_t scope);

/* ---- the keyring: the table in force for a keys file, reloaded in place ---- */

/* How often pm_keyring_check looks at the file: a Kubernetes Secret volume
 * is updated in place (an atomic symlink swap), without a signal. */
#define PM_KEYRING_CHECK_MS 5000
/* A replaced table is freed this long after: no parse takes a minute. */
#define PM_KEYRING_RETIRE_MS 60000

typedef struct pm_keyring pm_keyring_t;

/* Loads the keys file at path. 0 and *self_p (caller owns); -1 with a
 * one-line reason in err if the file is refused; -2 if memory runs out. */
int pm_keyring_new(const char *path, pm_keyring_t **self_p, char *err, size_t errlen);

/* Frees the table in force and every retired one; sets *self_p to NULL.
 * NULL-safe. No reader may still hold a table. */
void pm_keyring_destroy(pm_keyring_t **self_p);

/* The table in force (borrowed: valid for PM_KEYRING_RETIRE_MS after a
 * reload replaces it). Any thread; one atomic load. */
const pm_apikeys_t *pm_keyring_keys(pm_keyring_t *self);

/* Loads the file again and swaps the new table in; a refused file keeps the
 * table in force. why names the cause in the log line (PM-HTTP-KEYS-LOADED,
 * PM-HTTP-KEYS-RELOAD-FAILED). The reloading thread only. */
void pm_keyring_reload(pm_keyring_t *self, const char *why);

/* At most every PM_KEYRING_CHECK_MS: reloads if the file changed (inode,
 * size or mtime). The reloading thread only. */
void pm_keyring_check(pm_keyring_t *self);

#endif
