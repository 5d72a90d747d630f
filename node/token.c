/*
 * token.c - settle tokens (see token.h): HMAC-SHA256 from libsodium, unpadded
 * base64url, constant-time check. No state.
 */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void
pm_token_hmac(const uint8_t *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, msg, msglen);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

/* The MAC of one promise id; exp (digits, NULL: none) makes it a v2 MAC. */
static void
s_mac(const uint8_t *key, size_t keylen, const char *id, const char *exp, size_t explen,
      uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, keylen);
    if (exp) {
        crypto_auth_hmacsha256_update(&st, (const uint8_t *) PM_TOKEN_MESSAGE_PREFIX_V2,
                                      sizeof PM_TOKEN_MESSAGE_PREFIX_V2 - 1);
        crypto_auth_hmacsha256_update(&st, (const uint8_t *) id, strlen(id));
        crypto_auth_hmacsha256_update(&st, (const uint8_t *) ":", 1);
        crypto_auth_hmacsha256_update(&st, (const uint8_t *) exp, explen);
    } else {
        crypto_auth_hmacsha256_update(&st, (const uint8_t *) PM_TOKEN_MESSAGE_PREFIX,
                                      sizeof PM_TOKEN_MESSAGE_PREFIX - 1);
        crypto_auth_hmacsha256_update(&st, (const uint8_t *) id, strlen(id));
    }
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

int
pm_token_make(const uint8_t *key, size_t keylen, const char *id, char *out, size_t cap)
{
    if (!key || !keylen || !id || !*id || !out || cap < PM_TOKEN_LEN + 1)
        return -1;
    uint8_t mac[32];
    s_mac(key, keylen, id, NULL, 0, mac);
    sodium_bin2base64(out, cap, mac, sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

int64_t
pm_token_expiry_s(int64_t now_ms, int64_t ttl_ms)
{
    return ttl_ms > 0 ? (now_ms + ttl_ms + 999) / 1000 : 0;
}

int
pm_token_make_exp(const uint8_t *key, size_t keylen, const char *id, int64_t exp_s, char *out,
                  size_t cap)
{
    if (exp_s <= 0)
        return pm_token_make(key, keylen, id, out, cap);
    if (!key || !keylen || !id || !*id || !out || cap < PM_TOKEN_MAX + 1)
        return -1;
    char exp[24];
    int n = snprintf(exp, sizeof exp, "%lld", (long long) exp_s);
    uint8_t mac[32];
    s_mac(key, keylen, id, exp, (size_t) n, mac);
    memcpy(out, exp, (size_t) n);
    out[n] = '.';
    sodium_bin2base64(out + n + 1, cap - (size_t) n - 1, mac, sizeof mac,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

int
pm_token_verify(const uint8_t *key, size_t keylen, const char *id, const char *token,
                int64_t now_s, int64_t *exp_s_p)
{
    if (!key || !keylen || !id || !*id || !token)
        return PM_TOKEN_BAD;
    /* Only the shape (lengths, the expiry's digits) is checked before the
     * constant-time compare; it is public (the holder wrote it). */
    size_t tlen = strnlen(token, PM_TOKEN_MAX + 1);
    if (tlen < PM_TOKEN_LEN || tlen > PM_TOKEN_MAX)
        return PM_TOKEN_BAD;
    const char *mac_text = token;
    size_t explen = 0;
    int64_t exp_s = 0;
    if (tlen > PM_TOKEN_LEN) {
        explen = tlen - PM_TOKEN_LEN - 1;
        if (explen == 0 || explen > 18 || token[explen] != '.' || token[0] == '0')
            return PM_TOKEN_BAD;
        for (size_t i = 0; i < explen; i++) {
            if (token[i] < '0' || token[i] > '9')
                return PM_TOKEN_BAD;
            exp_s = exp_s * 10 + (token[i] - '0');
        }
        mac_text = token + explen + 1;
    }
    uint8_t got[32], want[32];
    size_t n = 0;
    if (sodium_base642bin(got, sizeof got, mac_text, PM_TOKEN_LEN, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n != sizeof got)
        return PM_TOKEN_BAD;
    s_mac(key, keylen, id, explen ? token : NULL, explen, want);
    int rc = crypto_verify_32(got, want);
    sodium_memzero(want, sizeof want);
    if (rc != 0)
        return PM_TOKEN_BAD;
    if (exp_s_p)
        *exp_s_p = exp_s;
    return explen && exp_s <= now_s ? PM_TOKEN_EXPIRED : PM_TOKEN_OK;
}

int
pm_secret_file_read(const char *path, size_t max, const char *what, uint8_t **buf_p,
                    size_t *len_p, char *err, size_t errlen)
{
    *buf_p = NULL;
    *len_p = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(max + 1);
    size_t len = 0;
    int rc = -1;
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t) n;
        if (len > max) {
            snprintf(err, errlen, "%s: larger than %zu bytes; not %s?", path, max, what);
            goto out;
        }
    }
    *buf_p = buf;
    *len_p = len;
    buf = NULL;
    rc = 0;
out:
    if (buf) {
        sodium_memzero(buf, max + 1);
        free(buf);
    }
    close(fd);
    return rc;
}

int
pm_token_load_secret(const char *path, uint8_t **key_p, size_t *len_p, char *err, size_t errlen)
{
    *key_p = NULL;
    *len_p = 0;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    uint8_t *buf;
    size_t len;
    if (pm_secret_file_read(path, PM_TOKEN_KEY_MAX, "a secret file", &buf, &len, err, errlen))
        return -1;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    if (len < PM_TOKEN_KEY_MIN) {
        snprintf(err, errlen, "%s: %zu bytes; a token secret needs at least %d", path, len,
                 PM_TOKEN_KEY_MIN);
        sodium_memzero(buf, PM_TOKEN_KEY_MAX + 1);
        free(buf);
        return -1;
    }
    *key_p = buf;
    *len_p = len;
    return 0;
}
