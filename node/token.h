/*
 * token.h - settle tokens: capabilities that let an outside system settle
 * exactly one promise over HTTP.
 *
 *   token = base64url-without-padding( HMAC-SHA256(secret, "pmesh-settle-v1:" + id) )
 *
 * A token minted with a lifetime carries its expiry (unix seconds) in front:
 *
 *   token = EXP "." base64url-without-padding( HMAC-SHA256(secret, "pmesh-settle-v2:" + id + ":" + EXP) )
 *
 * The expiry is inside the MAC, so it cannot be extended; ids never contain
 * ':' (promise ids are [A-Za-z0-9._~-]), so "id:EXP" is unambiguous and a
 * token of one promise never verifies for another. A v2 token is refused as
 * expired only once its MAC has verified: an expired token says nothing a
 * wrong one would not.
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
/* The longest token: up to 20 digits of expiry, '.', the MAC. */
#define PM_TOKEN_MAX (20 + 1 + PM_TOKEN_LEN)
#define PM_TOKEN_MESSAGE_PREFIX "pmesh-settle-v1:"
#define PM_TOKEN_MESSAGE_PREFIX_V2 "pmesh-settle-v2:"

/* What pm_token_verify found. */
enum { PM_TOKEN_OK = 0, PM_TOKEN_BAD = -1, PM_TOKEN_EXPIRED = -2 };

/* HMAC-SHA256(key, msg) into out. Any key length works (RFC 2104). */
void pm_token_hmac(const uint8_t *key, size_t keylen, const void *msg, size_t msglen,
                   uint8_t out[32]);

/* Writes the settle token of promise `id` (NUL-terminated) into out. Returns 0,
 * or -1 if an argument is NULL / empty or cap < PM_TOKEN_LEN + 1. */
int pm_token_make(const uint8_t *key, size_t keylen, const char *id, char *out, size_t cap);

/* The expiry (unix seconds) of a token minted at now_ms with a lifetime of
 * ttl_ms, rounded up to whole seconds so it never expires before asked; 0
 * (never) when ttl_ms <= 0. */
int64_t pm_token_expiry_s(int64_t now_ms, int64_t ttl_ms);

/* Like pm_token_make, with an expiry: exp_s (unix seconds) > 0 makes a token
 * that pm_token_verify refuses from exp_s on; 0 makes the lifetime-less v1
 * token. cap must be at least PM_TOKEN_MAX + 1. */
int pm_token_make_exp(const uint8_t *key, size_t keylen, const char *id, int64_t exp_s, char *out,
                      size_t cap);

/* PM_TOKEN_OK if token is a settle token of id under key that has not expired
 * at now_s (unix seconds); PM_TOKEN_EXPIRED if it is one whose expiry is at or
 * before now_s (*exp_s_p, if not NULL, gets the expiry); PM_TOKEN_BAD for
 * anything else. Constant time in the MAC. */
int pm_token_verify(const uint8_t *key, size_t keylen, const char *id, const char *token,
                    int64_t now_s, int64_t *exp_s_p);

/* Reads the secret file at path into *key_p (caller frees; wipe it with
 * sodium_memzero if you care) and *len_p. Trailing CR / LF are dropped, so a
 * file written by `openssl rand -hex 32 > f` works. 0 ok; -1 with a one-line
 * reason in err (unreadable, shorter than PM_TOKEN_KEY_MIN, larger than
 * PM_TOKEN_KEY_MAX). */
/* Reads a small secret file (at most max bytes) into *buf_p (max + 1 bytes
 * allocated; caller wipes with sodium_memzero and frees) and *len_p. 0 ok;
 * -1 with a one-line reason in err naming the path ("not WHAT?" when it is
 * larger than max). */
int pm_secret_file_read(const char *path, size_t max, const char *what, uint8_t **buf_p,
                        size_t *len_p, char *err, size_t errlen);

int pm_token_load_secret(const char *path, uint8_t **key_p, size_t *len_p, char *err,
                         size_t errlen);

#endif
