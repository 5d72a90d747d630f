/*
 * token.h - settle tokens: capabilities that let an outside system settle
 * exactly one promise over HTTP.
 *
 *   token = base64url-without-padding( HMAC-SHA256(secret, "pmesh-settle-v1:" + id) )
 *
 * Every agent of a mesh reads the same secret (--token-secret-file), so any
 * agent checks any promise's token without a lookup. The "v1" in the message
 * lets a future token format coexist with this one. The CLI makes the same
 * token from the file named by $PMESH_TOKEN_SECRET_FILE (pm_token_load_secret
 * + pm_token_make), so `pmesh create --token` and the gateway always agree.
 *
 * Owns nothing: pure functions over borrowed buffers, safe from any thread.
 */
#ifndef PM_TOKEN_H
#define PM_TOKEN_H

#include <stddef.h>
#include <stdint.h>

/* 32 bytes: the HMAC-SHA256 block of security; shorter keys are refused so a
 * typo'd or truncated secret file fails loudly instead of weakening tokens. */
#define PM_TOKEN_KEY_MIN 32
/* 4 KiB: far above any sensible key; bounds what a wrong path can make us read. */
#define PM_TOKEN_KEY_MAX 4096
/* A token is 43 characters (32 bytes in unpadded base64url); +1 for the NUL. */
#define PM_TOKEN_LEN 43
#define PM_TOKEN_MESSAGE_PREFIX "pmesh-settle-v1:"

/* HMAC-SHA256(key, msg) into out. Any key length works (RFC 2104). */
void pm_token_hmac(const uint8_t *key, size_t keylen, const void *msg, size_t msglen,
                   uint8_t out[32]);

/* Writes the settle token of promise `id` (NUL-terminated) into out. Returns 0,
 * or -1 if an argument is NULL / empty or cap < PM_TOKEN_LEN + 1. */
int pm_token_make(const uint8_t *key, size_t keylen, const char *id, char *out, size_t cap);

/* 0 if token is the settle token of id under key; -1 otherwise (including a
 * malformed token). The comparison takes the same time wherever the bytes
 * differ. */
int pm_token_check(const uint8_t *key, size_t keylen, const char *id, const char *token);

/* Reads the secret file at path into *key_p (caller frees; wipe it with
 * sodium_memzero if you care) and *len_p. Trailing CR / LF are dropped, so a
 * file written by `openssl rand -hex 32 > f` works. 0 ok; -1 with a one-line
 * reason in err (unreadable, shorter than PM_TOKEN_KEY_MIN, larger than
 * PM_TOKEN_KEY_MAX). */
int pm_token_load_secret(const char *path, uint8_t **key_p, size_t *len_p, char *err,
                         size_t errlen);

#endif
