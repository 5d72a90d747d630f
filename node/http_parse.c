/*
 * http_parse.c - the gateway's request router (see http.h): a request's
 * method, path, query, Authorization and body become a pm_http_req_t or a
 * typed refusal. Routing, JSON, the limits (max_value_bytes, max_labels,
 * http_max_wait), the settle token and the API key are all checked here,
 * before anything reaches the agent.
 *
 * Pure: no I/O, no clock (policy->now_ms is passed in), no globals; the
 * MHD threads call it concurrently. Its unit suite is tests/unit/test_http.c.
 */
#include "http_priv.h"

#include "log.h"
#include "pjson.h"
#include "token.h"
#include "wire.h"

#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
pm_http_route_name(pm_http_route_t route)
{
    static const char *names[] = {"none",   "healthz", "readyz",  "metrics", "create",   "list",
                                  "get",    "resolve", "reject",  "cancel",  "heartbeat", "combine"};
    _Static_assert(sizeof names / sizeof names[0] == PM_HTTP_ROUTE_COUNT, "route names");
    return route >= 0 && route < PM_HTTP_ROUTE_COUNT ? names[route] : "none";
}

int
pm_http_status_of(int err)
{
    switch (err) {
    case PM_OK:
        return 200;
    case PM_ERR_NOT_FOUND:
        return 404;
    case PM_ERR_ALREADY_SETTLED:
    case PM_ERR_NOT_HOLDER:
    case PM_ERR_NOT_SETTLEABLE:
        return 409;
    case PM_ERR_TIMED_OUT:
        return 410;
    case PM_ERR_VALUE_TOO_LARGE:
        return 413;
    case PM_ERR_BAD_REQUEST:
        return 400;
    case PM_ERR_LIMIT:
        return 429;
    case PM_ERR_WAIT_TIMEOUT:
        return 504;
    case PM_ERR_AGENT_SHUTTING_DOWN:
    case PM_ERR_UNREACHABLE:
    case PM_ERR_OWNER_LOST:
    case PM_ERR_NO_SESSION:
    case PM_ERR_UNAVAILABLE:
        return 503;
    default:
        return 500;
    }
}

/* A JSON string of s; bytes that would make it invalid UTF-8 (messages can
 * quote a client's input) become '?'. */
static json_t *
s_safe_string(const char *s)
{
    size_t len = strlen(s);
    if (pm_pjson_is_text(s, len))
        return json_stringn(s, len);
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char) *p >= 0x80)
            *p = '?';
    json_t *j = json_string(copy);
    free(copy);
    return j;
}

char *
pm_http_error_body(const char *code, const char *message)
{
    json_t *o = json_object();
    char *text = NULL;
    if (o && json_object_set_new(o, "error", s_safe_string(code ? code : "INTERNAL")) == 0 &&
        json_object_set_new(o, "message", s_safe_string(message ? message : "")) == 0)
        text = pm_http_json_line(o);
    json_decref(o);
    return text;
}

char *
pm_http_json_line(json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = 0;
    return out;
}

void
pm_http_req_clear(pm_http_req_t *r)
{
    if (!r)
        return;
    free(r->id);
    free((char *) r->create.idempotency_key);
    for (size_t i = 0; i < r->create.label_count; i++) {
        free((char *) r->create.labels[i].key);
        free((char *) r->create.labels[i].value);
    }
    free((pm_label_t *) r->create.labels);
    free((char *) r->list.prefix);
    free((char *) r->list.label_key);
    free((char *) r->list.label_value);
    free((char *) r->list.cursor);
    free(r->value);
    free(r->reason);
    for (size_t i = 0; i < r->id_count; i++)
        free(r->ids[i]);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

int
pm_http_refuse(pm_http_req_t *r, int status, const char *error, const char *refusal,
               const char *fmt, ...)
{
    r->status = status;
    r->error = error;
    r->refusal = refusal;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Promise ids are made of node names ([A-Za-z0-9._-]), '~' and base36: any
 * other byte means the id cannot exist, and keeps junk out of logs. */
static int
s_valid_id(const char *s, size_t len)
{
    if (len == 0 || len > PM_WIRE_MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '~'))
            return 0;
    }
    return 1;
}

/* A JSON string field as a C string without NUL bytes, at most max bytes. */
static int
s_json_text(pm_http_req_t *r, json_t *v, const char *field, size_t max, char **out)
{
    if (!json_is_string(v))
        return PM_HTTP_BAD(r, "field \"%s\" must be a string", field);
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (memchr(s, '\0', len))
        return PM_HTTP_BAD(r, "field \"%s\" must not contain NUL", field);
    if (len > max)
        return PM_HTTP_BAD(r, "field \"%s\" is longer than %zu bytes", field, max);
    *out = strdup(s);
    return *out ? 0 : pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
}

static int
s_json_duration(pm_http_req_t *r, json_t *v, const char *field, int64_t *ms)
{
    if (!json_is_string(v) || pm_parse_duration(json_string_value(v), ms) != 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return PM_HTTP_BAD(r, "field \"%s\" must be a duration such as \"250ms\", \"60s\", \"5m\", "
                        "\"2h\"",
                     field);
    return 0;
}

/* The body as a JSON object; an empty (or all-blank) body is {}. NULL with
 * the refusal set on error. Caller owns the reference. */
static json_t *
s_body_object(pm_http_req_t *r, const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len) {
        json_t *o = json_object();
        if (!o)
            pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
        return o;
    }
    json_error_t jerr;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!o) {
        PM_HTTP_BAD(r, "malformed JSON body: %s (line %d, column %d)", jerr.text, jerr.line,
              jerr.column);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        PM_HTTP_BAD(r, "the body must be a JSON object");
        return NULL;
    }
    return o;
}

/* Refuses any key of o not in allowed (NULL-terminated). */
static int
s_only_keys(pm_http_req_t *r, json_t *o, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        int known = 0;
        for (size_t i = 0; allowed[i] && !known; i++)
            known = strcmp(k, allowed[i]) == 0;
        if (!known) {
            char shown[64];
            snprintf(shown, sizeof shown, "%s", k);
            for (char *p = shown; *p; p++)
                if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                    *p = '?';
            return PM_HTTP_BAD(r, "unknown field \"%s\"", shown);
        }
    }
    return 0;
}

static int
s_parse_create(pm_http_req_t *r, json_t *o, const pm_http_policy_t *policy)
{
    static const char *const keys[] = {"timeout",   "heartbeat", "idempotency_key",
                                       "labels",    "token_ttl", NULL};
    if (s_only_keys(r, o, keys))
        return -1;
    json_t *v;
    int64_t ttl = 0;
    if ((v = json_object_get(o, "token_ttl")) && s_json_duration(r, v, "token_ttl", &ttl))
        return -1;
    r->token_exp_s = pm_token_expiry_s(policy->now_ms, ttl);
    if ((v = json_object_get(o, "timeout")) && s_json_duration(r, v, "timeout", &r->create.timeout_ms))
        return -1;
    if ((v = json_object_get(o, "heartbeat")) &&
        s_json_duration(r, v, "heartbeat", &r->create.heartbeat_ms))
        return -1;
    if ((v = json_object_get(o, "idempotency_key"))) {
        char *key = NULL;
        if (s_json_text(r, v, "idempotency_key", PM_WIRE_MAX_NAME, &key))
            return -1;
        if (*key)
            r->create.idempotency_key = key;
        else
            free(key);
    }
    if ((v = json_object_get(o, "labels"))) {
        if (!json_is_object(v))
            return PM_HTTP_BAD(r, "field \"labels\" must be an object of strings");
        size_t n = json_object_size(v);
        if (n > policy->max_labels)
            return pm_http_refuse(r, 400, "BAD_REQUEST", "too_many_labels",
                            "%zu labels; the agent takes at most %zu", n, policy->max_labels);
        pm_label_t *labels = calloc(n ? n : 1, sizeof *labels);
        if (!labels)
            return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
        r->create.labels = labels;
        const char *k;
        json_t *lv;
        json_object_foreach(v, k, lv)
        {
            size_t klen = strlen(k);
            if (klen == 0 || klen > PM_WIRE_MAX_NAME)
                return PM_HTTP_BAD(r, "a label key must be 1 to %d bytes", PM_WIRE_MAX_NAME);
            char *value = NULL;
            if (s_json_text(r, lv, "labels.*", PM_WIRE_MAX_NAME, &value))
                return -1;
            labels[r->create.label_count].value = value;
            labels[r->create.label_count].key = strdup(k);
            r->create.label_count++;
            if (!labels[r->create.label_count - 1].key)
                return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
        }
    }
    return 0;
}

/* A combinator's inputs can be at most this many whatever the agent's
 * max_fanin_inputs (its own limit, 1..65536, answers 429 LIMIT). */
#define S_MAX_COMBINE_IDS 65536

/* {"ids": [ID, ...], "timeout": "30s"}: a combinator's inputs, in order,
 * duplicates allowed. */
static int
s_parse_combine(pm_http_req_t *r, json_t *o)
{
    static const char *const keys[] = {"ids", "timeout", NULL};
    if (s_only_keys(r, o, keys))
        return -1;
    json_t *v;
    if ((v = json_object_get(o, "timeout")) && s_json_duration(r, v, "timeout", &r->create.timeout_ms))
        return -1;
    json_t *ids = json_object_get(o, "ids");
    if (!json_is_array(ids) || json_array_size(ids) == 0)
        return PM_HTTP_BAD(r, "field \"ids\" must be a non-empty array of promise ids");
    size_t n = json_array_size(ids);
    if (n > S_MAX_COMBINE_IDS)
        return PM_HTTP_BAD(r, "%zu ids; at most %d", n, S_MAX_COMBINE_IDS);
    if (!(r->ids = calloc(n, sizeof *r->ids)))
        return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(ids, i);
        if (!json_is_string(e) || !s_valid_id(json_string_value(e), json_string_length(e)) ||
            strlen(json_string_value(e)) != json_string_length(e))
            return PM_HTTP_BAD(r, "ids[%zu] is not a promise id", i);
        if (!(r->ids[i] = strdup(json_string_value(e))))
            return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
        r->id_count++;
    }
    return 0;
}

static int
s_parse_resolve(pm_http_req_t *r, json_t *o, const pm_http_policy_t *policy)
{
    static const char *const keys[] = {"value", "value_b64", NULL};
    if (s_only_keys(r, o, keys))
        return -1;
    json_t *text = json_object_get(o, "value");
    json_t *b64 = json_object_get(o, "value_b64");
    if (!text == !b64)
        return PM_HTTP_BAD(r, "give exactly one of \"value\" (a string) and \"value_b64\" (base64)");
    if (text) {
        if (!json_is_string(text))
            return PM_HTTP_BAD(r, "field \"value\" must be a string (use value_b64 for bytes)");
        size_t len = json_string_length(text);
        if (len > policy->max_value_bytes)
            return pm_http_refuse(r, 413, "VALUE_TOO_LARGE", "value_too_large",
                            "value is %zu bytes; the agent takes at most %zu", len,
                            policy->max_value_bytes);
        r->value = malloc(len + 1);
        if (!r->value)
            return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
        memcpy(r->value, json_string_value(text), len);
        r->value[len] = 0;
        r->value_len = len;
        return 0;
    }
    if (!json_is_string(b64))
        return PM_HTTP_BAD(r, "field \"value_b64\" must be a base64 string");
    const char *s = json_string_value(b64);
    size_t slen = json_string_length(b64);
    size_t cap = slen / 4 * 3 + 3;
    if (cap - 3 > policy->max_value_bytes + 3)
        return pm_http_refuse(r, 413, "VALUE_TOO_LARGE", "value_too_large",
                        "value is over %zu bytes; the agent takes at most that",
                        policy->max_value_bytes);
    r->value = malloc(cap + 1);
    if (!r->value)
        return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    size_t n = 0;
    if (memchr(s, '\0', slen) ||
        (sodium_base642bin(r->value, cap, s, slen, NULL, &n, NULL,
                           sodium_base64_VARIANT_ORIGINAL) != 0 &&
         sodium_base642bin(r->value, cap, s, slen, NULL, &n, NULL,
                           sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0))
        return PM_HTTP_BAD(r, "field \"value_b64\" is not valid base64 (RFC 4648, standard alphabet)");
    if (n > policy->max_value_bytes)
        return pm_http_refuse(r, 413, "VALUE_TOO_LARGE", "value_too_large",
                        "value is %zu bytes; the agent takes at most %zu", n,
                        policy->max_value_bytes);
    r->value[n] = 0;
    r->value_len = n;
    return 0;
}

/* RFC 6750 challenges: no credential, a wrong one, not enough scope. */
#define S_CHALLENGE "Bearer realm=\"pmesh\""
#define S_CHALLENGE_BAD "Bearer realm=\"pmesh\", error=\"invalid_token\""
#define S_CHALLENGE_SCOPE "Bearer realm=\"pmesh\", error=\"insufficient_scope\""

/* The credential of `Authorization: Bearer X`: *cred and *len, or 0 with
 * none (no header), or -1 with a malformed header. */
static int
s_bearer(const char *a, const char **cred, size_t *len)
{
    *cred = NULL;
    *len = 0;
    if (!a)
        return 0;
    if (strncasecmp(a, "Bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t'))
        return -1;
    a += 6;
    while (*a == ' ' || *a == '\t')
        a++;
    size_t n = 0;
    while (a[n] && a[n] != ' ' && a[n] != '\t')
        n++;
    const char *rest = a + n;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (n == 0 || *rest)
        return -1;
    *cred = a;
    *len = n;
    return 1;
}

/* Who may do what (see http.h): decides r->caller from the Authorization
 * header before anything about the promise is looked up, so a refusal says
 * nothing about whether it exists. */
static int
s_authorize(pm_http_req_t *r, const char *authorization, const pm_http_policy_t *policy)
{
    int token_route = r->route == PM_HTTP_ROUTE_GET ||
                      (r->route >= PM_HTTP_ROUTE_RESOLVE && r->route <= PM_HTTP_ROUTE_HEARTBEAT);
    pm_scope_t need = r->route == PM_HTTP_ROUTE_GET || r->route == PM_HTTP_ROUTE_LIST
                          ? PM_SCOPE_READ
                          : PM_SCOPE_WRITE;
    const char *cred;
    size_t len;
    int has = s_bearer(authorization, &cred, &len);
    if (has < 0) {
        r->challenge = S_CHALLENGE;
        return pm_http_refuse(r, 401, "UNAUTHORIZED", "no_credential",
                        "the Authorization header must be 'Bearer <credential>'");
    }
    if (has == 0) {
        if (policy->anonymous && !policy->public_listener) {
            r->caller = PM_HTTP_CALLER_WRITE;
            return 0;
        }
        r->challenge = S_CHALLENGE;
        return pm_http_refuse(r, 401, "UNAUTHORIZED", "no_credential",
                        token_route && policy->public_listener
                            ? "this needs 'Authorization: Bearer <settle_token>' of the promise"
                        : token_route
                            ? "this needs 'Authorization: Bearer <settle_token or API key>'"
                            : "this needs 'Authorization: Bearer <API key>'");
    }
    /* An API key (never on the public listener). */
    if (!policy->public_listener && policy->keys) {
        const char *name = NULL;
        pm_scope_t scope = pm_apikeys_match(policy->keys, cred, len, &name);
        if (scope != PM_SCOPE_NONE) {
            snprintf(r->key_name, sizeof r->key_name, "%s", name ? name : "");
            if (scope < need) {
                r->challenge = S_CHALLENGE_SCOPE;
                return pm_http_refuse(r, 403, "FORBIDDEN", "wrong_scope",
                                "the API key %s has scope %s; this needs %s", r->key_name,
                                pm_scope_name(scope), pm_scope_name(need));
            }
            r->caller = scope == PM_SCOPE_WRITE ? PM_HTTP_CALLER_WRITE : PM_HTTP_CALLER_READ;
            return 0;
        }
    }
    /* The settle token of this promise. */
    if (token_route && !policy->key) {
        r->challenge = S_CHALLENGE_BAD;
        return pm_http_refuse(r, 403, "FORBIDDEN", "tokens_disabled",
                        "settle tokens are disabled: this agent has no token_secret_file");
    }
    if (token_route && len <= PM_TOKEN_MAX) {
        char token[PM_TOKEN_MAX + 1];
        memcpy(token, cred, len);
        token[len] = 0;
        int64_t exp = 0;
        int64_t now_s = policy->now_ms / 1000;
        int v = pm_token_verify(policy->key, policy->keylen, r->id, token, now_s, &exp);
        if (v == PM_TOKEN_OK) {
            r->caller = PM_HTTP_CALLER_TOKEN;
            return 0;
        }
        if (v == PM_TOKEN_EXPIRED) {
            r->challenge = S_CHALLENGE_BAD;
            return pm_http_refuse(r, 403, "TOKEN_EXPIRED", "token_expired",
                            "the settle token expired %lld s ago (at unix time %lld); ask its "
                            "issuer for a new one",
                            (long long) (now_s - exp), (long long) exp);
        }
    }
    r->challenge = S_CHALLENGE_BAD;
    return pm_http_refuse(r, 403, "FORBIDDEN", "bad_credential",
                    token_route ? "the credential does not grant this request on this promise"
                                : "the credential does not grant this request");
}

static const char *
s_query(const pm_http_kv_t *query, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (query[i].key && strcmp(query[i].key, key) == 0)
            return query[i].value ? query[i].value : "";
    return NULL;
}

/* Every query key must be in allowed and appear once. */
static int
s_check_query(pm_http_req_t *r, const pm_http_kv_t *query, size_t n, const char *const *allowed)
{
    for (size_t i = 0; i < n; i++) {
        const char *k = query[i].key ? query[i].key : "";
        int known = 0;
        for (size_t a = 0; allowed[a] && !known; a++)
            known = strcmp(k, allowed[a]) == 0;
        if (!known) {
            char takes[96] = "";
            for (size_t a = 0; allowed[a]; a++)
                snprintf(takes + strlen(takes), sizeof takes - strlen(takes), "%s%s",
                         a ? ", " : "", allowed[a]);
            return PM_HTTP_BAD(r, "unknown query parameter (this path takes %s)",
                         *takes ? takes : "none");
        }
        for (size_t j = 0; j < i; j++)
            if (query[j].key && strcmp(query[j].key, k) == 0)
                return PM_HTTP_BAD(r, "a query parameter is given twice");
    }
    return 0;
}

static int
s_parse_list(pm_http_req_t *r, const pm_http_kv_t *query, size_t n)
{
    static const char *const keys[] = {"state", "prefix", "label", "limit", "cursor", NULL};
    if (s_check_query(r, query, n, keys))
        return -1;
    const char *v;
    if ((v = s_query(query, n, "state")) && *v) {
        r->list.state = pm_state_parse(v);
        if (!r->list.state)
            return PM_HTTP_BAD(r, "state must be pending, resolved, rejected, canceled or timedout");
    }
    if ((v = s_query(query, n, "prefix")) && *v) {
        if (strlen(v) > PM_WIRE_MAX_NAME)
            return PM_HTTP_BAD(r, "prefix is longer than %d bytes", PM_WIRE_MAX_NAME);
        if (!(r->list.prefix = strdup(v)))
            return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    }
    if ((v = s_query(query, n, "label")) && *v) {
        const char *eq = strchr(v, '=');
        size_t klen = eq ? (size_t) (eq - v) : strlen(v);
        if (klen == 0 || klen > PM_WIRE_MAX_NAME || (eq && strlen(eq + 1) > PM_WIRE_MAX_NAME))
            return PM_HTTP_BAD(r, "label must be KEY or KEY=VALUE (each 1 to %d bytes)",
                         PM_WIRE_MAX_NAME);
        r->list.label_key = strndup(v, klen);
        r->list.label_value = eq ? strdup(eq + 1) : NULL;
        if (!r->list.label_key || (eq && !r->list.label_value))
            return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    }
    if ((v = s_query(query, n, "limit"))) {
        char *end;
        errno = 0;
        long lim = strtol(v, &end, 10);
        if (!*v || *end || errno || lim < 1 || lim > 10000 || *v == '+' || *v == ' ')
            return PM_HTTP_BAD(r, "limit must be an integer from 1 to 10000");
        r->list.limit = (uint32_t) lim;
    }
    if ((v = s_query(query, n, "cursor")) && *v) {
        if (strlen(v) > 2 * PM_WIRE_MAX_NAME)
            return PM_HTTP_BAD(r, "cursor is too long");
        if (!(r->list.cursor = strdup(v)))
            return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    }
    return 0;
}

int
pm_http_parse_request(const char *method, const char *path, const pm_http_kv_t *query,
                      size_t nquery, const char *authorization, const char *body,
                      size_t body_len, const pm_http_policy_t *policy, pm_http_req_t *r)
{
    memset(r, 0, sizeof *r);
    if (!method || !path)
        return PM_HTTP_BAD(r, "no method or path");
    if (!body)
        body_len = 0;
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int is_post = strcmp(method, "POST") == 0;

    /* Routing: fixed paths, then /v1/promises[/{id}[/{action}]]. */
    static const struct {
        const char *path;
        pm_http_route_t route;
    } fixed[] = {{"/healthz", PM_HTTP_ROUTE_HEALTHZ},
                 {"/readyz", PM_HTTP_ROUTE_READYZ},
                 {"/metrics", PM_HTTP_ROUTE_METRICS}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (strcmp(path, fixed[i].path) != 0)
            continue;
        if (policy->public_listener && fixed[i].route != PM_HTTP_ROUTE_HEALTHZ)
            return pm_http_refuse(r, 404, "NOT_FOUND", "public_route",
                            "this listener serves only /healthz and a promise's own routes");
        if (!is_get) {
            r->allow = "GET, HEAD";
            return pm_http_refuse(r, 405, "METHOD_NOT_ALLOWED", "bad_method", "%s takes GET",
                            fixed[i].path);
        }
        r->route = fixed[i].route;
        return 0; /* query arguments of probes and scrapers are ignored */
    }
    static const char base[] = "/v1/promises";
    if (strncmp(path, base, sizeof base - 1) != 0 ||
        (path[sizeof base - 1] != '\0' && path[sizeof base - 1] != '/'))
        return pm_http_refuse(r, 404, "NOT_FOUND", "no_route", "no such path");
    const char *rest = path + sizeof base - 1;
    if (*rest == '\0' && policy->public_listener)
        return pm_http_refuse(r, 404, "NOT_FOUND", "public_route",
                        "this listener serves only /healthz and a promise's own routes "
                        "(/v1/promises/{id}...)");
    if (*rest == '\0') {
        if (is_post)
            r->route = PM_HTTP_ROUTE_CREATE;
        else if (is_get)
            r->route = PM_HTTP_ROUTE_LIST;
        else {
            r->allow = "GET, HEAD, POST";
            return pm_http_refuse(r, 405, "METHOD_NOT_ALLOWED", "bad_method",
                            "/v1/promises takes GET (list) and POST (create)");
        }
    } else {
        rest++; /* the '/' */
        const char *slash = strchr(rest, '/');
        size_t idlen = slash ? (size_t) (slash - rest) : strlen(rest);
        if (idlen == 0)
            return pm_http_refuse(r, 404, "NOT_FOUND", "no_route", "no such path");
        /* /v1/promises/all, /any, /race, /all-settled: a new combinator (no
         * promise id has these names: ids hold a '~'). */
        int kind = slash ? 0 : pm_combinator_parse(rest);
        if (kind && strcmp(rest, pm_combinator_name(kind)) != 0)
            kind = 0; /* only the canonical names: all, any, race, all-settled */
        if (kind && policy->public_listener)
            return pm_http_refuse(r, 404, "NOT_FOUND", "public_route",
                            "this listener serves only /healthz and a promise's own routes");
        if (kind && !is_post) {
            r->allow = "POST";
            return pm_http_refuse(r, 405, "METHOD_NOT_ALLOWED", "bad_method",
                            "/v1/promises/%s takes POST (a new combinator)", rest);
        }
        if (kind) {
            r->route = PM_HTTP_ROUTE_COMBINE;
            r->combine_kind = kind;
        } else if (!slash) {
            if (!is_get) {
                r->allow = "GET, HEAD";
                return pm_http_refuse(r, 405, "METHOD_NOT_ALLOWED", "bad_method",
                                "a promise takes GET; settle it with POST .../resolve, "
                                ".../reject, .../cancel");
            }
            r->route = PM_HTTP_ROUTE_GET;
        } else {
            static const struct {
                const char *name;
                pm_http_route_t route;
            } actions[] = {{"resolve", PM_HTTP_ROUTE_RESOLVE},
                           {"reject", PM_HTTP_ROUTE_REJECT},
                           {"cancel", PM_HTTP_ROUTE_CANCEL},
                           {"heartbeat", PM_HTTP_ROUTE_HEARTBEAT}};
            for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
                if (strcmp(slash + 1, actions[i].name) == 0)
                    r->route = actions[i].route;
            if (!r->route)
                return pm_http_refuse(r, 404, "NOT_FOUND", "no_route", "no such path");
            if (!is_post) {
                r->route = PM_HTTP_ROUTE_NONE;
                r->allow = "POST";
                return pm_http_refuse(r, 405, "METHOD_NOT_ALLOWED", "bad_method",
                                "settling takes POST");
            }
        }
        if (!kind && !s_valid_id(rest, idlen)) {
            r->route = PM_HTTP_ROUTE_NONE;
            return PM_HTTP_BAD(r, "malformed promise id");
        }
        if (!kind && !(r->id = strndup(rest, idlen)))
            return pm_http_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    }

    /* The credential first, so nothing else is revealed without it. */
    if (s_authorize(r, authorization, policy))
        return -1;
    if (body_len > policy->max_value_bytes + PM_HTTP_BODY_SLACK)
        return pm_http_refuse(r, 413, "VALUE_TOO_LARGE", "body_too_large",
                        "body is over %zu bytes (max_value_bytes + 64 KiB)",
                        policy->max_value_bytes + PM_HTTP_BODY_SLACK);

    static const char *const none[] = {NULL};
    switch (r->route) {
    case PM_HTTP_ROUTE_LIST:
        return s_parse_list(r, query, nquery);
    case PM_HTTP_ROUTE_GET: {
        static const char *const keys[] = {"wait", NULL};
        if (s_check_query(r, query, nquery, keys))
            return -1;
        const char *w = s_query(query, nquery, "wait");
        if (w) {
            int64_t ms;
            if (pm_parse_duration(w, &ms) != 0)
                return PM_HTTP_BAD(r, "wait must be a duration such as \"30s\"");
            r->wait_ms = ms < policy->max_wait_ms ? ms : policy->max_wait_ms;
        }
        return 0;
    }
    default:
        break;
    }
    /* The POST routes: no query, a JSON object body. */
    if (s_check_query(r, query, nquery, none))
        return -1;
    json_t *o = s_body_object(r, body, body_len);
    if (!o)
        return -1;
    int rc = 0;
    switch (r->route) {
    case PM_HTTP_ROUTE_CREATE:
        rc = s_parse_create(r, o, policy);
        break;
    case PM_HTTP_ROUTE_RESOLVE:
        rc = s_parse_resolve(r, o, policy);
        break;
    case PM_HTTP_ROUTE_COMBINE:
        rc = s_parse_combine(r, o);
        break;
    case PM_HTTP_ROUTE_REJECT: {
        static const char *const keys[] = {"reason", NULL};
        json_t *v;
        rc = s_only_keys(r, o, keys);
        if (!rc && (v = json_object_get(o, "reason"))) {
            rc = s_json_text(r, v, "reason", policy->max_value_bytes, &r->reason);
            if (rc && r->status == 400 && json_is_string(v) &&
                json_string_length(v) > policy->max_value_bytes)
                rc = pm_http_refuse(r, 413, "VALUE_TOO_LARGE", "value_too_large",
                              "reason is over %zu bytes", policy->max_value_bytes);
        }
        break;
    }
    default: /* cancel, heartbeat: nothing to say */
        rc = s_only_keys(r, o, none);
        break;
    }
    json_decref(o);
    return rc;
}

