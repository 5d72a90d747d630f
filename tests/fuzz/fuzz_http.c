/*
 * fuzz_http.c - libFuzzer target for the HTTP gateway's request handling
 * (node/http.c: pm_http_parse_request): routing by method and path, query
 * arguments, the Authorization header and its settle token, JSON bodies and
 * every limit. No sockets: the parser is a pure function.
 *
 * Input layout: one byte of policy flags, then lines separated by '\n'
 * (missing lines are empty):
 *
 *   FLAGS METHOD \n PATH \n QUERY (k=v&k2=v2, no decoding) \n AUTHORIZATION \n BODY...
 *
 * An AUTHORIZATION line "VALID" becomes "Bearer <the right token>" for the
 * id in PATH, so the fuzzer gets past the token check and into the bodies;
 * "EXPIRED" the same token expired, "LATER" one that expires later,
 * "READKEY" / "WRITEKEY" an API key of that scope; "NONE" means no header.
 * FLAGS' bits pick the policy: 1 no token secret, 2 the public listener,
 * 4 anonymous access, 8 no API keys (the seeds use '0'..'?' for 0..15). A METHOD line "KEYS" feeds
 * the body to the API keys file parser instead (apikeys.h).
 *
 * Checked beyond ASan/UBSan: a refusal always has an HTTP status from the
 * documented set, an error code and a message (401 and 403 a challenge); an
 * acceptance names a route and a caller that may take it: a token caller
 * held this promise's unexpired token, a key caller a key of enough scope,
 * an anonymous one sent no header where anonymous access is on; the public
 * listener accepts only /healthz and token callers; values never exceed the
 * policy; the error body is valid JSON.
 *
 *   make fuzz-build && build/fuzz/fuzz_http tests/fuzz/corpus/fuzz_http
 */
#include "apikeys.h"
#include "http.h"
#include "token.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t s_key[] = "fuzz-key-0123456789abcdef0123456789abcdef";
#define K_READ "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"
#define K_WRITE "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww1"
#define NOW_MS 1700000000000LL
static pm_apikeys_t *s_keys;

static void
s_fail(const char *what)
{
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
}

/* Splits off the next line of [*p, end) as a fresh C string. */
static char *
s_line(const char **p, const char *end)
{
    const char *s = *p;
    const char *nl = memchr(s, '\n', (size_t) (end - s));
    const char *e = nl ? nl : end;
    char *out = strndup(s, (size_t) (e - s));
    *p = nl ? nl + 1 : end;
    return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t flags = data[0];
    const char *p = (const char *) data + 1, *end = (const char *) data + size;
    char *method = s_line(&p, end);
    char *path = s_line(&p, end);
    char *query = s_line(&p, end);
    char *auth = s_line(&p, end);
    const char *body = p;
    size_t body_len = (size_t) (end - p);
    if (!method || !path || !query || !auth)
        goto out;
    if (!s_keys) {
        const char *text = "r read " K_READ "\nw write " K_WRITE "\n";
        char err[128];
        if (pm_apikeys_parse(text, strlen(text), "fuzz", &s_keys, err, sizeof err) != 0)
            s_fail("the fixed keys do not parse");
    }
    if (strcmp(method, "KEYS") == 0) {
        char err[256] = "";
        pm_apikeys_t *k = NULL;
        int krc = pm_apikeys_parse(body, body_len, "fuzz", &k, err, sizeof err);
        if (krc == 0 && !k)
            s_fail("keys parsed without a table");
        if (krc != 0 && (k || strncmp(err, "fuzz", 4) != 0))
            s_fail("keys refused without a reason naming the file");
        if (k && pm_apikeys_count(k) > PM_APIKEYS_MAX)
            s_fail("more keys than PM_APIKEYS_MAX");
        if (k && pm_apikeys_match(k, "", 0, NULL) != PM_SCOPE_NONE)
            s_fail("an empty key matched");
        pm_apikeys_destroy(&k);
        goto out;
    }

    pm_http_kv_t kv[16];
    size_t nkv = 0;
    for (char *save = NULL, *part = strtok_r(query, "&", &save); part && nkv < 16;
         part = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(part, '=');
        if (eq)
            *eq = 0;
        kv[nkv].key = part;
        kv[nkv].value = eq ? eq + 1 : NULL;
        nkv++;
    }

    char header[128];
    const char *authorization = auth;
    if (strcmp(auth, "NONE") == 0) {
        authorization = NULL;
    } else if (strcmp(auth, "READKEY") == 0) {
        authorization = "Bearer " K_READ;
    } else if (strcmp(auth, "WRITEKEY") == 0) {
        authorization = "Bearer " K_WRITE;
    } else if (strcmp(auth, "VALID") == 0 || strcmp(auth, "EXPIRED") == 0 ||
               strcmp(auth, "LATER") == 0) {
        const char *id = strncmp(path, "/v1/promises/", 13) == 0 ? path + 13 : "";
        char idbuf[300];
        size_t n = strcspn(id, "/");
        snprintf(idbuf, sizeof idbuf, "%.*s", (int) (n < 299 ? n : 299), id);
        int64_t exp = auth[0] == 'E' ? NOW_MS / 1000 - 1 : auth[0] == 'L' ? NOW_MS / 1000 + 9 : 0;
        char tok[PM_TOKEN_MAX + 1];
        if (pm_token_make_exp(s_key, sizeof s_key - 1, idbuf, exp, tok, sizeof tok) == 0)
            snprintf(header, sizeof header, "Bearer %s", tok);
        else
            snprintf(header, sizeof header, "Bearer x");
        authorization = header;
    }

    /* Small limits so the fuzzer reaches them. */
    pm_http_policy_t pol = {.key = s_key, .keylen = sizeof s_key - 1, .max_value_bytes = 256,
                            .max_labels = 3, .max_wait_ms = 5000, .keys = s_keys,
                            .now_ms = NOW_MS};
    if (flags & 1) {
        pol.key = NULL; /* tokens disabled */
        pol.keylen = 0;
    }
    pol.public_listener = (flags & 2) != 0;
    pol.anonymous = (flags & 4) != 0;
    if (flags & 8)
        pol.keys = NULL;
    pm_http_req_t r;
    int rc = pm_http_parse_request(method, path, kv, nkv, authorization, body, body_len, &pol, &r);
    if (rc == 0) {
        if (r.route <= PM_HTTP_ROUTE_NONE || r.route >= PM_HTTP_ROUTE_COUNT)
            s_fail("accepted without a route");
        int settle = r.route >= PM_HTTP_ROUTE_RESOLVE && r.route <= PM_HTTP_ROUTE_HEARTBEAT;
        int token_route = settle || r.route == PM_HTTP_ROUTE_GET;
        int probe = r.route == PM_HTTP_ROUTE_HEALTHZ || r.route == PM_HTTP_ROUTE_READYZ ||
                    r.route == PM_HTTP_ROUTE_METRICS;
        if (pol.public_listener && !(r.route == PM_HTTP_ROUTE_HEALTHZ ||
                                     (token_route && r.caller == PM_HTTP_CALLER_TOKEN)))
            s_fail("the public listener accepted more than /healthz and token routes");
        if (!probe && r.caller == PM_HTTP_CALLER_NONE)
            s_fail("an API route accepted without a caller");
        int needs_write = r.route == PM_HTTP_ROUTE_CREATE || settle;
        if (!probe && needs_write && r.caller == PM_HTTP_CALLER_READ)
            s_fail("a read key accepted for a write");
        if (r.caller == PM_HTTP_CALLER_TOKEN) {
            if (!token_route || !pol.key || !r.id)
                s_fail("a token caller outside its promise's routes");
            const char *t = authorization ? strchr(authorization, ' ') : NULL;
            while (t && *t == ' ')
                t++;
            char tok[PM_TOKEN_MAX + 1];
            snprintf(tok, sizeof tok, "%.*s", (int) strcspn(t ? t : "", " \t"), t ? t : "");
            if (pm_token_verify(pol.key, pol.keylen, r.id, tok, NOW_MS / 1000, NULL) !=
                PM_TOKEN_OK)
                s_fail("a token caller without this promise's valid token");
        }
        if (r.caller == PM_HTTP_CALLER_READ || r.caller == PM_HTTP_CALLER_WRITE) {
            if (pol.public_listener)
                s_fail("a client accepted on the public listener");
            int keyed = r.key_name[0] != 0;
            if (!keyed && !(pol.anonymous && !authorization))
                s_fail("a client without a key where anonymous access is off");
            if (keyed && !pol.keys)
                s_fail("a key accepted without a keys table");
        }
        if (r.value_len > pol.max_value_bytes)
            s_fail("value over max_value_bytes accepted");
        if (r.create.label_count > pol.max_labels)
            s_fail("more labels than max_labels accepted");
        if (r.wait_ms < 0 || r.wait_ms > pol.max_wait_ms)
            s_fail("wait not capped");
        if (r.route == PM_HTTP_ROUTE_RESOLVE && !r.value)
            s_fail("resolve without a value buffer");
    } else {
        static const int codes[] = {400, 401, 403, 404, 405, 413, 500};
        int known = 0;
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
            known |= r.status == codes[i];
        if (!known || !r.error || !r.refusal || !r.message[0])
            s_fail("refusal without a status, code, refusal kind or message");
        if ((r.status == 401 || r.status == 403) && !r.challenge)
            s_fail("401/403 without a WWW-Authenticate challenge");
        if (r.status == 405 && !r.allow)
            s_fail("405 without Allow");
        char *eb = pm_http_error_body(r.error, r.message);
        if (!eb)
            s_fail("no error body");
        json_t *j = json_loads(eb, 0, NULL);
        if (!j || !json_is_string(json_object_get(j, "error")))
            s_fail("error body is not {\"error\":..}");
        json_decref(j);
        free(eb);
    }
    pm_http_req_clear(&r);
out:
    free(method);
    free(path);
    free(query);
    free(auth);
    return 0;
}
