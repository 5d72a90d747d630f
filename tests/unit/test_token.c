/*
 * test_token.c - cmocka suite for node/token.c: HMAC-SHA256 against the
 * RFC 4231 known answers, the token format, round trips, refusal of another
 * promise's token and of tampered, truncated, padded and garbage tokens,
 * secret files (too short, trailing newline, missing), and tokens with an
 * expiry. The gateway's use of them is in test_http.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "token.h"

static void
s_hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* RFC 4231 section 4.2 (test case 1), 4.3 (case 2), 4.7 (case 6: a key
 * longer than the block, hashed first) and 4.8 (case 7). */
static void
test_hmac_rfc4231(void **state)
{
    (void) state;
    uint8_t mac[32];
    char hex[65];

    uint8_t k1[20];
    memset(k1, 0x0b, sizeof k1);
    pm_token_hmac(k1, sizeof k1, "Hi There", 8, mac);
    s_hex(mac, 32, hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    const char *d2 = "what do ya want for nothing?";
    pm_token_hmac((const uint8_t *) "Jefe", 4, d2, strlen(d2), mac);
    s_hex(mac, 32, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    uint8_t k6[131];
    memset(k6, 0xaa, sizeof k6);
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    pm_token_hmac(k6, sizeof k6, d6, strlen(d6), mac);
    s_hex(mac, 32, hex);
    assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    const char *d7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the HMAC "
                     "algorithm.";
    pm_token_hmac(k6, sizeof k6, d7, strlen(d7), mac);
    s_hex(mac, 32, hex);
    assert_string_equal(hex, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static const uint8_t s_key[] = "0123456789abcdef0123456789abcdef-test-key";
#define KEYLEN (sizeof s_key - 1)

/* The token is the unpadded base64url of HMAC(key, "pmesh-settle-v1:" + id). */
static void
test_token_format(void **state)
{
    (void) state;
    char tok[PM_TOKEN_LEN + 1];
    const char *id = "n1-abc~1.7";
    assert_int_equal(pm_token_make(s_key, KEYLEN, id, tok, sizeof tok), 0);
    assert_int_equal(strlen(tok), PM_TOKEN_LEN);
    assert_int_equal(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-_"),
                     PM_TOKEN_LEN);
    /* Same MAC computed by hand over the documented message. */
    uint8_t mac[32];
    char msg[64];
    snprintf(msg, sizeof msg, "pmesh-settle-v1:%s", id);
    pm_token_hmac(s_key, KEYLEN, msg, strlen(msg), mac);
    static const char b64u[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char want[PM_TOKEN_LEN + 1];
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < 32; i++) {
        acc = (acc << 8) | mac[i];
        bits += 8;
        while (bits >= 6) {
            want[o++] = b64u[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    if (bits)
        want[o++] = b64u[(acc << (6 - bits)) & 63];
    want[o] = 0;
    assert_string_equal(tok, want);
    /* Deterministic; capacity and argument checks. */
    char again[PM_TOKEN_LEN + 1];
    assert_int_equal(pm_token_make(s_key, KEYLEN, id, again, sizeof again), 0);
    assert_string_equal(tok, again);
    assert_int_equal(pm_token_make(s_key, KEYLEN, id, again, PM_TOKEN_LEN), -1);
    assert_int_equal(pm_token_make(s_key, KEYLEN, "", again, sizeof again), -1);
    assert_int_equal(pm_token_make(NULL, 0, id, again, sizeof again), -1);
}

static void
test_round_trip_and_refusals(void **state)
{
    (void) state;
    char tok[PM_TOKEN_LEN + 1], other[PM_TOKEN_LEN + 1];
    assert_int_equal(pm_token_make(s_key, KEYLEN, "n1-abc~1.7", tok, sizeof tok), 0);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7", tok, 1000, NULL), PM_TOKEN_OK);
    /* Another promise's token, and this token for another promise. */
    assert_int_equal(pm_token_make(s_key, KEYLEN, "n1-abc~1.8", other, sizeof other), 0);
    assert_string_not_equal(tok, other);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7", other, 1000, NULL), PM_TOKEN_BAD);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.8", tok, 1000, NULL), PM_TOKEN_BAD);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7x", tok, 1000, NULL), PM_TOKEN_BAD);
    /* Another key. */
    static const uint8_t k2[] = "0123456789abcdef0123456789abcdef-other-key";
    assert_int_equal(pm_token_verify(k2, sizeof k2 - 1, "n1-abc~1.7", tok, 1000, NULL), PM_TOKEN_BAD);
    /* Every single-character change anywhere is refused. */
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i < PM_TOKEN_LEN; i++) {
        for (size_t a = 0; a < sizeof alphabet - 1; a++) {
            if (alphabet[a] == tok[i])
                continue;
            char bad[PM_TOKEN_LEN + 1];
            memcpy(bad, tok, sizeof bad);
            bad[i] = alphabet[a];
            assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7", bad, 1000, NULL), PM_TOKEN_BAD);
        }
    }
    /* Truncated, extended, padded, standard alphabet, empty, NULL. */
    char buf[PM_TOKEN_LEN + 8];
    memcpy(buf, tok, PM_TOKEN_LEN - 1);
    buf[PM_TOKEN_LEN - 1] = 0;
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7", buf, 1000, NULL), PM_TOKEN_BAD);
    snprintf(buf, sizeof buf, "%sA", tok);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7", buf, 1000, NULL), PM_TOKEN_BAD);
    snprintf(buf, sizeof buf, "%s=", tok);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7", buf, 1000, NULL), PM_TOKEN_BAD);
    memcpy(buf, tok, sizeof tok);
    for (char *p = buf; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    if (strcmp(buf, tok) != 0)
        assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7", buf, 1000, NULL), PM_TOKEN_BAD);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7", "", 1000, NULL), PM_TOKEN_BAD);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.7", NULL, 1000, NULL), PM_TOKEN_BAD);
    assert_int_equal(pm_token_verify(NULL, 0, "n1-abc~1.7", tok, 1000, NULL), PM_TOKEN_BAD);
}

static char *
s_write_tmp(const void *data, size_t len)
{
    char *path = strdup("/tmp/pmesh-test-token.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t) len);
    close(fd);
    return path;
}

static void
test_load_secret(void **state)
{
    (void) state;
    char err[256];
    uint8_t *key = NULL;
    size_t len = 0;
    /* 64 hex characters and a newline: the newline is not part of the key. */
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    char *path = s_write_tmp(hex, strlen(hex));
    assert_int_equal(pm_token_load_secret(path, &key, &len, err, sizeof err), 0);
    assert_int_equal(len, 64);
    assert_memory_equal(key, hex, 64);
    free(key);
    unlink(path);
    free(path);
    /* Too short. */
    path = s_write_tmp("short-secret\n", 13);
    assert_int_equal(pm_token_load_secret(path, &key, &len, err, sizeof err), -1);
    assert_null(key);
    assert_non_null(strstr(err, "at least 32"));
    unlink(path);
    free(path);
    /* Binary bytes (NUL included) are kept as they are. */
    uint8_t bin[40];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t) (i * 7);
    path = s_write_tmp(bin, sizeof bin);
    assert_int_equal(pm_token_load_secret(path, &key, &len, err, sizeof err), 0);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(key, bin, sizeof bin);
    free(key);
    unlink(path);
    free(path);
    /* Missing. */
    assert_int_equal(pm_token_load_secret("/nonexistent/pmesh-secret", &key, &len, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "/nonexistent/pmesh-secret"));
}

/* A token with a lifetime: valid before, refused as expired from its expiry
 * on, and its expiry cannot be changed (it is inside the MAC). */
static void
test_expiry(void **state)
{
    (void) state;
    const char *id = "n1-abc~1.7";
    char tok[PM_TOKEN_MAX + 1], v1[PM_TOKEN_MAX + 1];
    assert_int_equal(pm_token_make_exp(s_key, KEYLEN, id, 2000, tok, sizeof tok), 0);
    assert_int_equal(strncmp(tok, "2000.", 5), 0);
    assert_int_equal(strlen(tok), 5 + PM_TOKEN_LEN);
    int64_t exp = 0;
    assert_int_equal(pm_token_verify(s_key, KEYLEN, id, tok, 1999, &exp), PM_TOKEN_OK);
    assert_int_equal(exp, 2000);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, id, tok, 2000, &exp), PM_TOKEN_EXPIRED);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, id, tok, 99999, NULL), PM_TOKEN_EXPIRED);
    /* Another promise: bad, never "expired" (that would confirm the MAC). */
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.8", tok, 1999, NULL), PM_TOKEN_BAD);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, "n1-abc~1.8", tok, 3000, NULL), PM_TOKEN_BAD);
    /* A changed expiry (later, earlier, leading zero) does not verify. */
    char moved[PM_TOKEN_MAX + 2];
    snprintf(moved, sizeof moved, "9000.%s", tok + 5);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, id, moved, 1999, NULL), PM_TOKEN_BAD);
    snprintf(moved, sizeof moved, "1000.%s", tok + 5);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, id, moved, 1999, NULL), PM_TOKEN_BAD);
    snprintf(moved, sizeof moved, "02000.%s", tok + 5);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, id, moved, 1999, NULL), PM_TOKEN_BAD);
    /* The MAC alone (the expiry cut off) is not the v1 token of the id. */
    assert_int_equal(pm_token_verify(s_key, KEYLEN, id, tok + 5, 1999, NULL), PM_TOKEN_BAD);
    /* And the v1 token with a made-up expiry in front is not a v2 token. */
    assert_int_equal(pm_token_make_exp(s_key, KEYLEN, id, 0, v1, sizeof v1), 0);
    assert_int_equal(strlen(v1), PM_TOKEN_LEN);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, id, v1, INT64_MAX / 2, NULL), PM_TOKEN_OK);
    snprintf(moved, sizeof moved, "2000.%s", v1);
    assert_int_equal(pm_token_verify(s_key, KEYLEN, id, moved, 1999, NULL), PM_TOKEN_BAD);
    /* Malformed expiries. */
    const char *shapes[] = {".", "a.", "1a.", "-1.", "1234567890123456789."};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        snprintf(moved, sizeof moved, "%s%s", shapes[i], tok + 5);
        assert_int_equal(pm_token_verify(s_key, KEYLEN, id, moved, 1999, NULL), PM_TOKEN_BAD);
    }
    /* Capacity: a v2 token needs PM_TOKEN_MAX + 1. */
    assert_int_equal(pm_token_make_exp(s_key, KEYLEN, id, 2000, tok, PM_TOKEN_LEN + 1), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_token_format),
        cmocka_unit_test(test_round_trip_and_refusals),
        cmocka_unit_test(test_load_secret),
        cmocka_unit_test(test_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
