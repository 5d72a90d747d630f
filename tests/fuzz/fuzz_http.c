/*
 * fuzz_http.c - libFuzzer target for the HTTP gateway's request handling
 * (node/http.c: pm_http_parse_request): routing by method and path, query
 * arguments, the Authorization header and its settle token, JSON bodies and
 * every limit. No sockets: the parser is a pure function.
 *
 * Input layout, lines separated by '\n' (missing lines are empty):
 *
 *   METHOD \n PATH \n QUERY (k=v&k2=v2, no decoding) \n AUTHORIZATION \n BODY...
 *
 * An AUTHORIZATION line "VALID" becomes "Bearer <the right token>" for the
 * id in PATH, so the fuzzer gets past the token check and into the bodies;
 * "NONE" means no header at all.
 *
 * Checked beyond ASan/UBSan: a refusal always has an HTTP status from the
 * documented set, an error code and a message; an acceptance names a route,
 * and a settle route always had the right token; values never exceed the
 * policy; the error body is valid JSON.
 *
 *   make fuzz-build && build/fuzz/fuzz_http tests/fuzz/corpus/fuzz_http
 */
#include "http.h"
#include "token.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t s_key[] = "fuzz-key-0123456789abcdef0123456789abcdef";

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
    const char *p = (const char *) data, *end = p + size;
    char *method = s_line(&p, end);
    char *path = s_line(&p, end);
    char *query = s_line(&p, end);
    char *auth = s_line(&p, end);
    const char *body = p;
    size_t body_len = (size_t) (end - p);
    if (!method || !path || !query || !auth)
        goto out;

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
    } else if (strcmp(auth, "VALID") == 0) {
        const char *id = strncmp(path, "/v1/promises/", 13) == 0 ? path + 13 : "";
        char idbuf[300];
        size_t n = strcspn(id, "/");
        snprintf(idbuf, sizeof idbuf, "%.*s", (int) (n < 299 ? n : 299), id);
        char tok[PM_TOKEN_LEN + 1];
        if (pm_token_make(s_key, sizeof s_key - 1, idbuf, tok, sizeof tok) == 0)
            snprintf(header, sizeof header, "Bearer %s", tok);
        else
            snprintf(header, sizeof header, "Bearer x");
        authorization = header;
    }

    /* Small limits so the fuzzer reaches them. */
    pm_http_policy_t pol = {.key = s_key, .keylen = sizeof s_key - 1, .max_value_bytes = 256,
                            .max_labels = 3, .max_wait_ms = 5000};
    if (size && (data[0] & 1)) {
        pol.key = NULL; /* tokens disabled */
        pol.keylen = 0;
    }
    pm_http_req_t r;
    int rc = pm_http_parse_request(method, path, kv, nkv, authorization, body, body_len, &pol, &r);
    if (rc == 0) {
        if (r.route <= PM_HTTP_ROUTE_NONE || r.route >= PM_HTTP_ROUTE_COUNT)
            s_fail("accepted without a route");
        int settle = r.route >= PM_HTTP_ROUTE_RESOLVE && r.route <= PM_HTTP_ROUTE_HEARTBEAT;
        if (settle) {
            if (!pol.key || !r.id)
                s_fail("settle accepted without a secret or an id");
            const char *t = authorization ? strchr(authorization, ' ') : NULL;
            while (t && *t == ' ')
                t++;
            char tok[PM_TOKEN_LEN + 1];
            pm_token_make(pol.key, pol.keylen, r.id, tok, sizeof tok);
            if (!t || strncmp(t, tok, PM_TOKEN_LEN) != 0)
                s_fail("settle accepted with a token that is not the promise's");
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
