/*
 * test_http.c - the gateway's request router (pm_http_parse_request): who
 * may do what. Every route with no credential, this promise's settle token,
 * another promise's, an expired one, a read key, a write key and a wrong
 * key; the public listener; anonymous access without keys; malformed
 * Authorization headers. (The same over real sockets: test_http_auth.sh.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikeys.h"
#include "http.h"
#include "token.h"

static const uint8_t s_secret[] = "0123456789abcdef0123456789abcdef";
#define SECRET_LEN (sizeof s_secret - 1)
#define K_READ "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"
#define K_WRITE "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww1"
#define NOW 1000000
#define ID "n1-a~1.1"
#define OTHER "n1-a~1.2"

static pm_apikeys_t *s_keys;

static int
s_setup(void **state)
{
    (void) state;
    const char *text = "dash read " K_READ "\nfn write " K_WRITE "\n";
    char err[128];
    return pm_apikeys_parse(text, strlen(text), "keys", &s_keys, err, sizeof err);
}

static int
s_teardown(void **state)
{
    (void) state;
    pm_apikeys_destroy(&s_keys);
    return 0;
}

static pm_http_policy_t
s_policy(int with_keys, int anonymous, int public_listener)
{
    return (pm_http_policy_t){.key = s_secret, .keylen = SECRET_LEN, .max_value_bytes = 1024,
                              .max_labels = 4, .max_wait_ms = 60000,
                              .keys = with_keys ? s_keys : NULL, .anonymous = anonymous,
                              .public_listener = public_listener, .now_ms = NOW * 1000LL};
}

/* The request of each route, on promise ID. */
typedef struct s_route {
    const char *method, *path, *body;
    pm_http_route_t route;
    int writes;    /* needs scope write */
    int tokenable; /* a settle token of ID grants it */
} s_route_t;

static const s_route_t s_routes[] = {
    {"POST", "/v1/promises", "{}", PM_HTTP_ROUTE_CREATE, 1, 0},
    {"GET", "/v1/promises", NULL, PM_HTTP_ROUTE_LIST, 0, 0},
    {"GET", "/v1/promises/" ID, NULL, PM_HTTP_ROUTE_GET, 0, 1},
    {"POST", "/v1/promises/" ID "/resolve", "{\"value\":\"v\"}", PM_HTTP_ROUTE_RESOLVE, 1, 1},
    {"POST", "/v1/promises/" ID "/reject", "{\"reason\":\"r\"}", PM_HTTP_ROUTE_REJECT, 1, 1},
    {"POST", "/v1/promises/" ID "/cancel", "{}", PM_HTTP_ROUTE_CANCEL, 1, 1},
    {"POST", "/v1/promises/" ID "/heartbeat", "{}", PM_HTTP_ROUTE_HEARTBEAT, 1, 1},
    /* Combinators: a new promise, like a create; no settle token grants them
     * (not even one of an input). */
    {"POST", "/v1/promises/all", "{\"ids\":[\"" ID "\"]}", PM_HTTP_ROUTE_COMBINE, 1, 0},
    {"POST", "/v1/promises/any", "{\"ids\":[\"" ID "\"]}", PM_HTTP_ROUTE_COMBINE, 1, 0},
    {"POST", "/v1/promises/race", "{\"ids\":[\"" ID "\",\"" ID "\"]}", PM_HTTP_ROUTE_COMBINE, 1, 0},
    {"POST", "/v1/promises/all-settled", "{\"ids\":[\"" ID "\"],\"timeout\":\"30s\"}",
     PM_HTTP_ROUTE_COMBINE, 1, 0},
};
#define NROUTES (sizeof s_routes / sizeof s_routes[0])

/* Parses route i with Authorization auth (NULL: none); returns the status
 * (200 for accepted) and leaves the request in *r (caller clears). */
static int
s_try(size_t i, const char *auth, const pm_http_policy_t *pol, pm_http_req_t *r)
{
    const s_route_t *rt = &s_routes[i];
    int rc = pm_http_parse_request(rt->method, rt->path, NULL, 0, auth, rt->body,
                                   rt->body ? strlen(rt->body) : 0, pol, r);
    if (rc == 0) {
        assert_int_equal(r->route, rt->route);
        return 200;
    }
    return r->status;
}

static void
s_expect(size_t i, const char *auth, const pm_http_policy_t *pol, int status, const char *refusal,
         pm_http_caller_t caller)
{
    pm_http_req_t r;
    int got = s_try(i, auth, pol, &r);
    if (got != status)
        fail_msg("%s %s with '%s': %d (%s: %s), want %d", s_routes[i].method, s_routes[i].path,
                 auth ? auth : "(none)", got, r.refusal ? r.refusal : "", r.message, status);
    if (refusal)
        assert_string_equal(r.refusal, refusal);
    if (status == 200)
        assert_int_equal(r.caller, caller);
    if (status == 401 || status == 403)
        assert_non_null(r.challenge); /* WWW-Authenticate */
    pm_http_req_clear(&r);
}

static void
test_matrix_full_listener_with_keys(void **state)
{
    (void) state;
    pm_http_policy_t pol = s_policy(1, 0, 0);
    char tok[PM_TOKEN_MAX + 1], other[PM_TOKEN_MAX + 1], expired[PM_TOKEN_MAX + 1],
        later[PM_TOKEN_MAX + 1];
    pm_token_make(s_secret, SECRET_LEN, ID, tok, sizeof tok);
    pm_token_make(s_secret, SECRET_LEN, OTHER, other, sizeof other);
    pm_token_make_exp(s_secret, SECRET_LEN, ID, NOW - 1, expired, sizeof expired);
    pm_token_make_exp(s_secret, SECRET_LEN, ID, NOW + 60, later, sizeof later);
    char a_tok[128], a_other[128], a_expired[128], a_later[128];
    snprintf(a_tok, sizeof a_tok, "Bearer %s", tok);
    snprintf(a_other, sizeof a_other, "Bearer %s", other);
    snprintf(a_expired, sizeof a_expired, "Bearer %s", expired);
    snprintf(a_later, sizeof a_later, "Bearer %s", later);
    for (size_t i = 0; i < NROUTES; i++) {
        const s_route_t *rt = &s_routes[i];
        s_expect(i, NULL, &pol, 401, "no_credential", 0);
        s_expect(i, "Basic dXNlcjpwYXNz", &pol, 401, "no_credential", 0);
        s_expect(i, "Bearer ", &pol, 401, "no_credential", 0);
        s_expect(i, "Bearer a b", &pol, 401, "no_credential", 0);
        s_expect(i, "Bearer " K_READ "x", &pol, 403, "bad_credential", 0);
        s_expect(i, a_other, &pol, 403, "bad_credential", 0);
        if (rt->tokenable) {
            s_expect(i, a_tok, &pol, 200, NULL, PM_HTTP_CALLER_TOKEN);
            s_expect(i, a_later, &pol, 200, NULL, PM_HTTP_CALLER_TOKEN);
            s_expect(i, a_expired, &pol, 403, "token_expired", 0);
        } else {
            /* A token grants nothing but its own promise's routes. */
            s_expect(i, a_tok, &pol, 403, "bad_credential", 0);
        }
        s_expect(i, "Bearer " K_WRITE, &pol, 200, NULL, PM_HTTP_CALLER_WRITE);
        s_expect(i, "bearer  " K_WRITE "  ", &pol, 200, NULL, PM_HTTP_CALLER_WRITE);
        if (rt->writes)
            s_expect(i, "Bearer " K_READ, &pol, 403, "wrong_scope", 0);
        else
            s_expect(i, "Bearer " K_READ, &pol, 200, NULL, PM_HTTP_CALLER_READ);
    }
    /* The probes need nothing; /metrics and /readyz are on the full listener. */
    pm_http_req_t r;
    assert_int_equal(pm_http_parse_request("GET", "/healthz", NULL, 0, NULL, NULL, 0, &pol, &r), 0);
    pm_http_req_clear(&r);
    assert_int_equal(pm_http_parse_request("GET", "/metrics", NULL, 0, NULL, NULL, 0, &pol, &r), 0);
    assert_int_equal(r.route, PM_HTTP_ROUTE_METRICS);
    pm_http_req_clear(&r);
}

/* A token for a missing promise and a wrong token for an existing one are
 * indistinguishable: the parser decides before any lookup, from the id and
 * the token alone, so the answer cannot depend on existence. Checked here
 * as: the same refusal, byte for byte, for any id. */
static void
test_refusal_reveals_nothing(void **state)
{
    (void) state;
    pm_http_policy_t pol = s_policy(1, 0, 1);
    char other[PM_TOKEN_MAX + 1], auth[128];
    pm_token_make(s_secret, SECRET_LEN, "n9-zz~9.9", other, sizeof other);
    snprintf(auth, sizeof auth, "Bearer %s", other);
    pm_http_req_t a, b;
    assert_int_equal(pm_http_parse_request("GET", "/v1/promises/" ID, NULL, 0, auth, NULL, 0,
                                           &pol, &a),
                     -1);
    assert_int_equal(pm_http_parse_request("GET", "/v1/promises/n7-none~4.4", NULL, 0, auth,
                                           NULL, 0, &pol, &b),
                     -1);
    assert_int_equal(a.status, b.status);
    assert_string_equal(a.error, b.error);
    assert_string_equal(a.message, b.message);
    pm_http_req_clear(&a);
    pm_http_req_clear(&b);
}

static void
test_public_listener(void **state)
{
    (void) state;
    pm_http_policy_t pol = s_policy(1, 1, 1); /* keys and anonymous: neither counts here */
    char tok[PM_TOKEN_MAX + 1], a_tok[128];
    pm_token_make(s_secret, SECRET_LEN, ID, tok, sizeof tok);
    snprintf(a_tok, sizeof a_tok, "Bearer %s", tok);
    for (size_t i = 0; i < NROUTES; i++) {
        if (s_routes[i].tokenable) {
            s_expect(i, a_tok, &pol, 200, NULL, PM_HTTP_CALLER_TOKEN);
            s_expect(i, NULL, &pol, 401, "no_credential", 0);
            /* API keys are for the internal listener only. */
            s_expect(i, "Bearer " K_WRITE, &pol, 403, "bad_credential", 0);
        } else {
            s_expect(i, "Bearer " K_WRITE, &pol, 404, "public_route", 0);
            s_expect(i, a_tok, &pol, 404, "public_route", 0);
        }
    }
    pm_http_req_t r;
    assert_int_equal(pm_http_parse_request("GET", "/healthz", NULL, 0, NULL, NULL, 0, &pol, &r), 0);
    pm_http_req_clear(&r);
    const char *internal[] = {"/metrics", "/readyz"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(
            pm_http_parse_request("GET", internal[i], NULL, 0, NULL, NULL, 0, &pol, &r), -1);
        assert_int_equal(r.status, 404);
        assert_string_equal(r.refusal, "public_route");
        pm_http_req_clear(&r);
    }
}

static void
test_anonymous_and_no_secret(void **state)
{
    (void) state;
    /* No keys, loopback: no credential is a write client; a presented
     * credential is still checked. */
    pm_http_policy_t pol = s_policy(0, 1, 0);
    char other[PM_TOKEN_MAX + 1], a_other[128];
    pm_token_make(s_secret, SECRET_LEN, OTHER, other, sizeof other);
    snprintf(a_other, sizeof a_other, "Bearer %s", other);
    for (size_t i = 0; i < NROUTES; i++) {
        s_expect(i, NULL, &pol, 200, NULL, PM_HTTP_CALLER_WRITE);
        s_expect(i, a_other, &pol, 403, "bad_credential", 0);
        s_expect(i, "Bearer " K_WRITE, &pol, 403, "bad_credential", 0);
    }
    /* No token secret: a token cannot be checked. */
    pm_http_policy_t off = s_policy(1, 0, 1);
    off.key = NULL;
    off.keylen = 0;
    s_expect(3, a_other, &off, 403, "tokens_disabled", 0);
}

static void
test_create_token_ttl(void **state)
{
    (void) state;
    pm_http_policy_t pol = s_policy(1, 0, 0);
    const char *body = "{\"timeout\":\"1m\",\"token_ttl\":\"1500ms\"}";
    pol.now_ms += 600; /* 1000000.6 s + 1.5 s = 1000002.1 s: the token lasts to 1000003 */
    pm_http_req_t r;
    assert_int_equal(pm_http_parse_request("POST", "/v1/promises", NULL, 0, "Bearer " K_WRITE,
                                           body, strlen(body), &pol, &r),
                     0);
    assert_int_equal(r.token_exp_s, NOW + 3); /* rounded up: never shorter than asked */
    assert_string_equal(r.key_name, "fn");
    pm_http_req_clear(&r);
    body = "{\"token_ttl\":\"soon\"}";
    assert_int_equal(pm_http_parse_request("POST", "/v1/promises", NULL, 0, "Bearer " K_WRITE,
                                           body, strlen(body), &pol, &r),
                     -1);
    assert_int_equal(r.status, 400);
    pm_http_req_clear(&r);
}

/* The combinator routes: kind, inputs in order (duplicates kept), timeout;
 * malformed bodies, wrong methods, aliases that are not routes; a settle
 * token (even one minted for the path's name) never grants them. */
static void
test_combine(void **state)
{
    (void) state;
    pm_http_policy_t pol = s_policy(1, 0, 0);
    pm_http_req_t r;
    const char *body = "{\"ids\":[\"" ID "\",\"" OTHER "\",\"" ID "\"],\"timeout\":\"2m\"}";
    static const struct {
        const char *path;
        int kind;
    } kinds[] = {{"/v1/promises/all", PM_COMBINE_ALL},
                 {"/v1/promises/any", PM_COMBINE_ANY},
                 {"/v1/promises/race", PM_COMBINE_RACE},
                 {"/v1/promises/all-settled", PM_COMBINE_ALL_SETTLED}};
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(pm_http_parse_request("POST", kinds[k].path, NULL, 0, "Bearer " K_WRITE,
                                               body, strlen(body), &pol, &r),
                         0);
        assert_int_equal(r.route, PM_HTTP_ROUTE_COMBINE);
        assert_int_equal(r.combine_kind, kinds[k].kind);
        assert_int_equal(r.id_count, 3);
        assert_string_equal(r.ids[0], ID);
        assert_string_equal(r.ids[1], OTHER);
        assert_string_equal(r.ids[2], ID);
        assert_int_equal(r.create.timeout_ms, 120000);
        assert_null(r.id);
        pm_http_req_clear(&r);
        /* GET is not a read of a promise named "all": the path takes POST. */
        assert_int_equal(pm_http_parse_request("GET", kinds[k].path, NULL, 0, "Bearer " K_WRITE,
                                               NULL, 0, &pol, &r),
                         -1);
        assert_int_equal(r.status, 405);
        assert_string_equal(r.allow, "POST");
        pm_http_req_clear(&r);
    }
    static const char *const bad[] = {
        "{}",
        "{\"ids\":[]}",
        "{\"ids\":\"" ID "\"}",
        "{\"ids\":[1]}",
        "{\"ids\":[\"bad id\"]}",
        "{\"ids\":[\"" ID "\"],\"timeout\":\"soon\"}",
        "{\"ids\":[\"" ID "\"],\"labels\":{}}",
        "[\"" ID "\"]",
        "{\"ids\":[\"" ID "\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (pm_http_parse_request("POST", "/v1/promises/all", NULL, 0, "Bearer " K_WRITE, bad[i],
                                  strlen(bad[i]), &pol, &r) != -1 ||
            r.status != 400)
            fail_msg("body %s: want 400, got %d", bad[i], r.status);
        pm_http_req_clear(&r);
    }
    /* Only the canonical names; an alias is a (missing) promise id. */
    body = "{\"ids\":[\"" ID "\"]}";
    assert_int_equal(pm_http_parse_request("POST", "/v1/promises/allSettled", NULL, 0,
                                           "Bearer " K_WRITE, body, strlen(body), &pol, &r),
                     -1);
    assert_int_equal(r.status, 405);
    pm_http_req_clear(&r);
    /* A token minted for the name "all" is no credential for a combinator. */
    char tok[PM_TOKEN_MAX + 1], auth[128];
    pm_token_make(s_secret, SECRET_LEN, "all", tok, sizeof tok);
    snprintf(auth, sizeof auth, "Bearer %s", tok);
    assert_int_equal(pm_http_parse_request("POST", "/v1/promises/all", NULL, 0, auth, body,
                                           strlen(body), &pol, &r),
                     -1);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.refusal, "bad_credential");
    pm_http_req_clear(&r);
    /* A query is refused like on every POST. */
    pm_http_kv_t q = {"wait", "1s"};
    assert_int_equal(pm_http_parse_request("POST", "/v1/promises/all", &q, 1, "Bearer " K_WRITE,
                                           body, strlen(body), &pol, &r),
                     -1);
    assert_int_equal(r.status, 400);
    pm_http_req_clear(&r);
    /* A combinator answers NOT_SETTLEABLE to a settle: 409, like a conflict. */
    assert_int_equal(pm_http_status_of(PM_ERR_NOT_SETTLEABLE), 409);
    assert_string_equal(pm_http_route_name(PM_HTTP_ROUTE_COMBINE), "combine");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix_full_listener_with_keys),
        cmocka_unit_test(test_refusal_reveals_nothing),
        cmocka_unit_test(test_public_listener),
        cmocka_unit_test(test_anonymous_and_no_secret),
        cmocka_unit_test(test_create_token_ttl),
        cmocka_unit_test(test_combine),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
