/*
 * test_token.c - cmocka suite for node/token.c: HMAC-SHA256 against the
 * RFC 4231 known answers, the token format, round trips, refusal of another
 * promise's token and of tampered, truncated, padded and garbage tokens,
 * secret files (too short, trailing newline, missing). Also the gateway's
 * request parser on the token paths (pm_http_parse_request: 401 / 403).
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

#include "http.h"
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
    assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7", tok), 0);
    /* Another promise's token, and this token for another promise. */
    assert_int_equal(pm_token_make(s_key, KEYLEN, "n1-abc~1.8", other, sizeof other), 0);
    assert_string_not_equal(tok, other);
    assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7", other), -1);
    assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.8", tok), -1);
    assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7x", tok), -1);
    /* Another key. */
    static const uint8_t k2[] = "0123456789abcdef0123456789abcdef-other-key";
    assert_int_equal(pm_token_check(k2, sizeof k2 - 1, "n1-abc~1.7", tok), -1);
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
            assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7", bad), -1);
        }
    }
    /* Truncated, extended, padded, standard alphabet, empty, NULL. */
    char buf[PM_TOKEN_LEN + 8];
    memcpy(buf, tok, PM_TOKEN_LEN - 1);
    buf[PM_TOKEN_LEN - 1] = 0;
    assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7", buf), -1);
    snprintf(buf, sizeof buf, "%sA", tok);
    assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7", buf), -1);
    snprintf(buf, sizeof buf, "%s=", tok);
    assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7", buf), -1);
    memcpy(buf, tok, sizeof tok);
    for (char *p = buf; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    if (strcmp(buf, tok) != 0)
        assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7", buf), -1);
    assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7", ""), -1);
    assert_int_equal(pm_token_check(s_key, KEYLEN, "n1-abc~1.7", NULL), -1);
    assert_int_equal(pm_token_check(NULL, 0, "n1-abc~1.7", tok), -1);
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

/* The gateway's parser applies the token before anything else on settle
 * routes: missing 401, wrong / another promise's 403, no secret 403. */
static void
test_parser_token_paths(void **state)
{
    (void) state;
    pm_http_policy_t pol = {.key = s_key, .keylen = KEYLEN, .max_value_bytes = 1024,
                            .max_labels = 4, .max_wait_ms = 60000};
    char tok[PM_TOKEN_LEN + 1], other[PM_TOKEN_LEN + 1], auth[128];
    pm_token_make(s_key, KEYLEN, "n1-a~1.1", tok, sizeof tok);
    pm_token_make(s_key, KEYLEN, "n1-a~1.2", other, sizeof other);
    const char *body = "{\"value\":\"v\"}";
    pm_http_req_t r;

    assert_int_equal(pm_http_parse_request("POST", "/v1/promises/n1-a~1.1/resolve", NULL, 0,
                                           NULL, body, strlen(body), &pol, &r),
                     -1);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.error, "UNAUTHORIZED");
    pm_http_req_clear(&r);

    snprintf(auth, sizeof auth, "Bearer %s", other);
    assert_int_equal(pm_http_parse_request("POST", "/v1/promises/n1-a~1.1/resolve", NULL, 0,
                                           auth, body, strlen(body), &pol, &r),
                     -1);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.refusal, "bad_token");
    pm_http_req_clear(&r);

    snprintf(auth, sizeof auth, "Basic %s", tok);
    assert_int_equal(pm_http_parse_request("POST", "/v1/promises/n1-a~1.1/cancel", NULL, 0, auth,
                                           NULL, 0, &pol, &r),
                     -1);
    assert_int_equal(r.status, 401);
    pm_http_req_clear(&r);

    snprintf(auth, sizeof auth, "bearer   %s  ", tok);
    assert_int_equal(pm_http_parse_request("POST", "/v1/promises/n1-a~1.1/resolve", NULL, 0,
                                           auth, body, strlen(body), &pol, &r),
                     0);
    assert_int_equal(r.route, PM_HTTP_ROUTE_RESOLVE);
    assert_string_equal(r.id, "n1-a~1.1");
    assert_int_equal(r.value_len, 1);
    assert_memory_equal(r.value, "v", 1);
    pm_http_req_clear(&r);

    /* Without a secret, settling is refused even with a "token". */
    pm_http_policy_t off = pol;
    off.key = NULL;
    off.keylen = 0;
    snprintf(auth, sizeof auth, "Bearer %s", tok);
    assert_int_equal(pm_http_parse_request("POST", "/v1/promises/n1-a~1.1/heartbeat", NULL, 0,
                                           auth, NULL, 0, &off, &r),
                     -1);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.refusal, "tokens_disabled");
    pm_http_req_clear(&r);

    /* Reading needs no token. */
    assert_int_equal(pm_http_parse_request("GET", "/v1/promises/n1-a~1.1", NULL, 0, NULL, NULL,
                                           0, &pol, &r),
                     0);
    assert_int_equal(r.route, PM_HTTP_ROUTE_GET);
    pm_http_req_clear(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_token_format),
        cmocka_unit_test(test_round_trip_and_refusals),
        cmocka_unit_test(test_load_secret),
        cmocka_unit_test(test_parser_token_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
