/*
 * coord_etcd.c - the configuration store in etcd, through its v3 JSON gateway
 * (/v3/kv/range, /v3/kv/txn, /v3/watch; keys and values base64), on a thread
 * of its own. See coord.h.
 *
 * One thread, one loop, like httpfn.c: zmq_poll over the PAIR the requests
 * come in on and the sockets libcurl asks for (CURLMOPT_SOCKETFUNCTION, so
 * any descriptor number works), with libcurl's timer as the poll timeout.
 * Requests run as libcurl multi transfers with one deadline each
 * (request_timeout_ms): a transfer that cannot connect moves on to the next
 * endpoint (the request never left, so even a write may be sent again); a
 * read also moves on after any failure; a write that may have reached the
 * store is answered UNAVAILABLE (outcome unknown), never repeated. A watch
 * is one long POST whose answer is newline-delimited JSON; when it breaks it
 * is started again after a backoff, from the revision after the last one
 * delivered, on the next endpoint; when etcd has compacted that revision
 * away, the thread lists every record and hands it over as a RESYNC.
 * Everything etcd answers is outside input: decoded and checked before use;
 * what does not fit is BAD, never a crash.
 */
#include "coord_etcd_priv.h"

/* ---- base64 and JSON helpers ---------------------------------------------- */

static char *
s_b64(const void *bin, size_t len)
{
    size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(n);
    if (out)
        sodium_bin2base64(out, n, bin, len, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

/* Decodes a base64 JSON string into a NUL-terminated buffer (caller frees).
 * NULL if v is not a string or not base64. An absent value is "". */
static char *
s_unb64(json_t *v, size_t *len_out)
{
    const char *s = v ? json_string_value(v) : "";
    if (!s)
        return NULL;
    size_t slen = strlen(s);
    char *out = malloc(slen / 4 * 3 + 4);
    size_t n = 0;
    const char *end = NULL;
    if (!out)
        return NULL;
    if (slen && (sodium_base642bin((unsigned char *) out, slen / 4 * 3 + 3, s, slen, NULL, &n, &end,
                                   sodium_base64_VARIANT_ORIGINAL) != 0 ||
                 end != s + slen)) {
        free(out);
        return NULL;
    }
    out[n] = 0;
    if (len_out)
        *len_out = n;
    return out;
}

/* An int64 the gateway sends as a decimal string (or a number); absent is
 * 0, as in proto3. -1 when present and malformed. */
int
pm_etcd_i64(json_t *v, int64_t *out)
{
    *out = 0;
    if (!v)
        return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return *out < 0 ? -1 : 0;
    }
    const char *s = json_string_value(v);
    if (!s || !*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = x;
    return 0;
}

int
pm_etcd_header_rev(json_t *o, int64_t *rev)
{
    json_t *h = json_object_get(o, "header");
    *rev = 0;
    if (h && !json_is_object(h))
        return -1;
    return pm_etcd_i64(json_object_get(h, "revision"), rev);
}

/* Decodes one etcd kv under our prefix into rec. 0; -1 with a message in r
 * (BAD). *space_out gets the space name even when the value is malformed, so
 * a caller can say which space is broken. */
int
pm_etcd_kv(pm_etcd_t *e, json_t *kv, pm_coord_record_t *rec, int want_value, pm_coord_result_t *r)
{
    memset(rec, 0, sizeof *rec);
    if (!json_is_object(kv)) {
        pm_coord_result_msg(r, "etcd: a kv is not an object");
        return -1;
    }
    size_t klen = 0;
    char *key = s_unb64(json_object_get(kv, "key"), &klen);
    int64_t mod = 0;
    int rc = -1;
    if (!key || klen != strlen(key) || klen <= e->key_prefix_len ||
        memcmp(key, e->key_prefix, e->key_prefix_len) != 0 ||
        !pm_coord_space_ok(key + e->key_prefix_len)) {
        pm_coord_result_msg(r, "etcd: a key outside %.200s or not a space name", e->key_prefix);
        goto out;
    }
    snprintf(rec->space, sizeof rec->space, "%s", key + e->key_prefix_len);
    if (pm_etcd_i64(json_object_get(kv, "mod_revision"), &mod) || mod <= 0) {
        pm_coord_result_msg(r, "etcd: space %s: bad mod_revision", rec->space);
        goto out;
    }
    if (want_value) {
        size_t vlen = 0;
        char *val = s_unb64(json_object_get(kv, "value"), &vlen);
        char err[220];
        char space[PM_COORD_NAME_MAX];
        memcpy(space, rec->space, sizeof space);
        if (!val) {
            pm_coord_result_msg(r, "etcd: space %s: value is not base64", rec->space);
            goto out;
        }
        int bad = pm_coord_record_decode(space, val, vlen, rec, err, sizeof err);
        free(val);
        if (bad) {
            memcpy(rec->space, space, sizeof space);
            pm_coord_result_msg(r, "%s", err);
            goto out;
        }
    }
    rec->revision = mod;
    rc = 0;
out:
    free(key);
    return rc;
}

/* ---- the caller's side ---------------------------------------------------- */

void
pm_etcd_deliver(pm_etcd_t *e, pm_coord_result_t *r)
{
    if (!r) {
        pm_log_error("PM-COORD-OOM", "out of memory delivering a coordination answer");
        abort();
    }
    pm_coord_deliver(e->c, r);
}

void
pm_etcd_store_up(pm_etcd_t *e, int endpoint)
{
    if (e->store_down)
        pm_log_info("PM-COORD-STORE-UP", "configuration store reachable again at %s",
                    e->endpoints[endpoint]);
    e->store_down = 0;
    if (endpoint != e->cur) {
        atomic_fetch_add(&e->c->failovers, 1);
        pm_log_warn("PM-COORD-FAILOVER", "configuration store: now using %s (was %s)",
                    e->endpoints[endpoint], e->endpoints[e->cur]);
        e->cur = endpoint;
    }
}

void
pm_etcd_store_down(pm_etcd_t *e, const char *why)
{
    if (!e->store_down)
        pm_log_warn("PM-COORD-STORE-DOWN",
                    "configuration store unavailable (%s): takeovers and in-sync changes wait",
                    why);
    e->store_down = 1;
}

/* ---- unary requests ------------------------------------------------------- */

static size_t
s_on_body(char *data, size_t size, size_t n, void *arg)
{
    pm_etcd_op_t *op = arg;
    size_t len = size * n;
    if (op->len + len > S_MAX_BODY)
        return 0;
    char *b = realloc(op->body, op->len + len + 1);
    if (!b)
        return 0;
    memcpy(b + op->len, data, len);
    op->body = b;
    op->len += len;
    op->body[op->len] = 0;
    return len;
}

CURL *
pm_etcd_easy(pm_etcd_t *e, int endpoint, const char *path, const char *post, struct curl_slist **headers,
       char *errbuf)
{
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    char url[400];
    int tls = e->ca_file[0] != 0;
    snprintf(url, sizeof url, "%s://%s%s", tls ? "https" : "http", e->endpoints[endpoint], path);
    *headers = curl_slist_append(NULL, "Content-Type: application/json");
    *headers = curl_slist_append(*headers, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, tls ? "https" : "http");
    if (tls) {
        curl_easy_setopt(h, CURLOPT_CAINFO, e->ca_file);
        if (e->cert_file[0]) {
            curl_easy_setopt(h, CURLOPT_SSLCERT, e->cert_file);
            curl_easy_setopt(h, CURLOPT_SSLKEY, e->key_file);
        }
    }
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    errbuf[0] = 0;
    return h;
}

static void
s_op_release_easy(pm_etcd_op_t *op)
{
    if (op->easy) {
        curl_multi_remove_handle(op->e->multi, op->easy);
        curl_easy_cleanup(op->easy);
        op->easy = NULL;
    }
    curl_slist_free_all(op->headers);
    op->headers = NULL;
    free(op->body);
    op->body = NULL;
    op->len = 0;
}

void
pm_etcd_op_free(pm_etcd_op_t *op)
{
    pm_etcd_t *e = op->e;
    s_op_release_easy(op);
    if (op->prev)
        op->prev->next = op->next;
    else
        e->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    free(op->req);
    free(op->post);
    free(op);
}

/* Starts (or restarts on op->endpoint) one attempt. 0, or -1. */
int
pm_etcd_op_start(pm_etcd_op_t *op)
{
    pm_etcd_t *e = op->e;
    s_op_release_easy(op);
    int64_t left = op->deadline - pm_mono_ms();
    if (left <= 0)
        return -1;
    /* A read may go on to the other endpoints: it gets its share of the
     * time left, so one hung endpoint cannot eat all of it. */
    int64_t attempt = left;
    if (!op->write && e->n_ep - op->tried > 1) {
        attempt = left / (e->n_ep - op->tried);
        if (attempt < S_MIN_ATTEMPT_MS)
            attempt = left < S_MIN_ATTEMPT_MS ? left : S_MIN_ATTEMPT_MS;
    }
    op->easy = pm_etcd_easy(e, op->endpoint, op->path, op->post, &op->headers, op->errbuf);
    if (!op->easy)
        return -1;
    curl_easy_setopt(op->easy, CURLOPT_TIMEOUT_MS, (long) attempt);
    curl_easy_setopt(op->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) (attempt < e->connect_timeout ? attempt : e->connect_timeout));
    curl_easy_setopt(op->easy, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(op->easy, CURLOPT_WRITEDATA, op);
    curl_easy_setopt(op->easy, CURLOPT_PRIVATE, op);
    if (curl_multi_add_handle(e->multi, op->easy) != CURLM_OK)
        return -1;
    return 0;
}

static void s_op_answer(pm_etcd_op_t *op, json_t *o, pm_coord_result_t *r);

/* Range over every space: the body of a list. */
char *
pm_etcd_range_all(pm_etcd_t *e)
{
    json_t *o = json_pack("{s:s, s:s}", "key", e->b64_key, "range_end", e->b64_end);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* The JSON request of a caller's request. NULL when out of memory. */
static char *
s_build(pm_etcd_t *e, const pm_coord_req_t *req, const char **path, int *write)
{
    char key[600];
    snprintf(key, sizeof key, "%s%s", e->key_prefix, req->space);
    char *k = s_b64(key, strlen(key));
    char *value = NULL, *v = NULL, *out = NULL;
    json_t *o = NULL;
    *write = 0;
    if (!k)
        goto out;
    switch (req->kind) {
    case PM_COORD_GET:
        *path = "/v3/kv/range";
        o = json_pack("{s:s}", "key", k);
        break;
    case PM_COORD_LIST:
        *path = "/v3/kv/range";
        out = pm_etcd_range_all(e);
        goto out;
    case PM_COORD_CREATE:
    case PM_COORD_CAS: {
        *path = "/v3/kv/txn";
        *write = 1;
        value = pm_coord_record_encode(&req->rec);
        v = value ? s_b64(value, strlen(value)) : NULL;
        if (!v)
            goto out;
        char rev[32];
        snprintf(rev, sizeof rev, "%" PRId64, req->kind == PM_COORD_CAS ? req->expected : 0);
        json_t *cmp = req->kind == PM_COORD_CAS
                          ? json_pack("{s:s, s:s, s:s, s:s}", "key", k, "target", "MOD", "result",
                                      "EQUAL", "mod_revision", rev)
                          : json_pack("{s:s, s:s, s:s, s:s}", "key", k, "target", "CREATE",
                                      "result", "EQUAL", "create_revision", rev);
        o = json_pack("{s:[o], s:[{s:{s:s, s:s}}], s:[{s:{s:s}}]}", "compare", cmp, "success",
                      "request_put", "key", k, "value", v, "failure", "request_range", "key", k);
        break;
    }
    case PM_COORD_DELETE: {
        /* Compare-and-delete: only at the revision the caller read. */
        *path = "/v3/kv/txn";
        *write = 1;
        char rev[32];
        snprintf(rev, sizeof rev, "%" PRId64, req->expected);
        json_t *cmp = json_pack("{s:s, s:s, s:s, s:s}", "key", k, "target", "MOD", "result",
                                "EQUAL", "mod_revision", rev);
        o = json_pack("{s:[o], s:[{s:{s:s}}], s:[{s:{s:s}}]}", "compare", cmp, "success",
                      "request_delete_range", "key", k, "failure", "request_range", "key", k);
        break;
    }
    default: goto out;
    }
    out = o ? json_dumps(o, JSON_COMPACT) : NULL;
out:
    json_decref(o);
    free(k);
    free(value);
    free(v);
    return out;
}

pm_etcd_op_t *
pm_etcd_op_new(pm_etcd_t *e)
{
    pm_etcd_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->e = e;
    op->endpoint = e->cur;
    op->deadline = pm_mono_ms() + e->timeout;
    op->next = e->ops;
    if (e->ops)
        e->ops->prev = op;
    e->ops = op;
    return op;
}

/* Answers op's caller (or its watch) with UNAVAILABLE, and frees op. */
void
pm_etcd_op_unavailable(pm_etcd_op_t *op, const char *why)
{
    pm_etcd_t *e = op->e;
    pm_etcd_store_down(e, why);
    if (op->req) {
        pm_coord_result_t *r =
            pm_coord_result_new(op->req->id, op->req->kind, PM_COORD_UNAVAILABLE);
        if (r)
            pm_coord_result_msg(r, "%s%s", why,
                                op->write ? " (the write may or may not have happened)" : "");
        pm_etcd_deliver(e, r);
    } else if (op->relist_for) {
        pm_etcd_watch_fail(op->relist_for, why);
    }
    pm_etcd_op_free(op);
}

static void
s_request(pm_etcd_t *e, pm_coord_req_t *req)
{
    if (req->kind == PM_COORD_WATCH) {
        pm_etcd_watch_t *w = calloc(1, sizeof *w);
        if (!w) {
            pm_etcd_deliver(e, pm_coord_result_new(req->id, PM_COORD_WATCH, PM_COORD_UNAVAILABLE));
            free(req);
            return;
        }
        w->e = e;
        w->id = req->id;
        w->next_rev = req->from_rev;
        w->endpoint = e->cur;
        w->backoff = S_BACKOFF_MIN_MS;
        w->next = e->watches;
        e->watches = w;
        free(req);
        pm_etcd_watch_start(w);
        return;
    }
    pm_etcd_op_t *op = pm_etcd_op_new(e);
    if (!op) {
        pm_etcd_deliver(e, pm_coord_result_new(req->id, req->kind, PM_COORD_UNAVAILABLE));
        free(req);
        return;
    }
    op->req = req;
    op->post = s_build(e, req, &op->path, &op->write);
    if (!op->post || pm_etcd_op_start(op) != 0)
        pm_etcd_op_unavailable(op, "cannot start the request");
}

/* Every watch on this endpoint is torn down: its endpoint stopped answering
 * (a stopped process keeps TCP connections open, so a watch alone would
 * never notice). */
static void
s_endpoint_suspect(pm_etcd_t *e, int endpoint, const char *why)
{
    for (pm_etcd_watch_t *w = e->watches; w; w = w->next)
        if ((w->state == W_LIVE || w->state == W_CONNECTING) && w->endpoint == endpoint)
            pm_etcd_watch_fail(w, why);
}

static void
s_op_done(pm_etcd_op_t *op, CURLcode rc)
{
    pm_etcd_t *e = op->e;
    long status = 0;
    curl_off_t connect_us = 0;
    curl_easy_getinfo(op->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(op->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
    op->tried++;
    char why[400];
    json_t *o = NULL;
    if (rc == CURLE_OK && op->body)
        o = json_loadb(op->body, op->len, 0, NULL);
    int64_t code = 0;
    if (o && json_is_object(o) && json_object_get(o, "code"))
        pm_etcd_i64(json_object_get(o, "code"), &code);
    int sent = !(rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                 (rc == CURLE_OPERATION_TIMEDOUT && connect_us == 0));
    int transient = (rc != CURLE_OK && rc != CURLE_WRITE_ERROR) || status >= 500 ||
                    code == S_GRPC_UNAVAILABLE || code == S_GRPC_DEADLINE_EXCEEDED;
    if (rc == CURLE_OK && status == 200 && o && json_is_object(o)) {
        pm_etcd_store_up(e, op->endpoint);
        pm_coord_result_t *r =
            op->req ? pm_coord_result_new(op->req->id, op->req->kind, PM_COORD_OK)
                    : pm_coord_result_new(op->relist_for->id, PM_COORD_RESYNC, PM_COORD_OK);
        if (!r) {
            json_decref(o);
            pm_etcd_op_unavailable(op, "out of memory");
            return;
        }
        s_op_answer(op, o, r);
        json_decref(o);
        return;
    }
    if (rc != CURLE_OK)
        snprintf(why, sizeof why, "%s: %s", e->endpoints[op->endpoint],
                 op->errbuf[0] ? op->errbuf : curl_easy_strerror(rc));
    else
        snprintf(why, sizeof why, "%s: HTTP %ld: %.200s", e->endpoints[op->endpoint], status,
                 op->body ? op->body : "");
    json_decref(o);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        s_endpoint_suspect(e, op->endpoint, why);
    if (!transient) {
        /* etcd refused what we sent, or answered something we cannot read. */
        pm_log_warn("PM-COORD-BAD", "configuration store: %s", why);
        if (op->req) {
            pm_coord_result_t *r = pm_coord_result_new(op->req->id, op->req->kind, PM_COORD_BAD);
            if (r)
                pm_coord_result_msg(r, "%s", why);
            pm_etcd_deliver(e, r);
        } else if (op->relist_for) {
            pm_etcd_watch_fail(op->relist_for, why);
        }
        pm_etcd_op_free(op);
        return;
    }
    /* Another endpoint, while there is one untried and time is left; a
     * write only if this one never got it. */
    if ((!op->write || !sent) && op->tried < e->n_ep && pm_mono_ms() < op->deadline) {
        pm_log_debug("PM-COORD-RETRY", "configuration store: %s; trying the next endpoint", why);
        op->endpoint = (op->endpoint + 1) % e->n_ep;
        if (pm_etcd_op_start(op) == 0)
            return;
    }
    pm_etcd_op_unavailable(op, why);
}

/* A 200 answer: the result for the caller (or the relist of a watch). */
static void
s_op_answer(pm_etcd_op_t *op, json_t *o, pm_coord_result_t *r)
{
    pm_etcd_t *e = op->e;
    pm_coord_kind_t kind = op->req ? op->req->kind : PM_COORD_RESYNC;
    pm_coord_record_t rec;
    if (pm_etcd_header_rev(o, &r->revision)) {
        r->status = PM_COORD_BAD;
        pm_coord_result_msg(r, "etcd: bad header");
        goto out;
    }
    json_t *kvs = NULL;
    if (kind == PM_COORD_GET || kind == PM_COORD_LIST || kind == PM_COORD_RESYNC) {
        kvs = json_object_get(o, "kvs");
    } else { /* txn */
        json_t *ok = json_object_get(o, "succeeded");
        if (ok && !json_is_boolean(ok)) {
            r->status = PM_COORD_BAD;
            pm_coord_result_msg(r, "etcd: txn: bad 'succeeded'");
            goto out;
        }
        if (json_is_true(ok) && kind == PM_COORD_DELETE) {
            if (r->revision <= 0) {
                r->status = PM_COORD_BAD;
                pm_coord_result_msg(r, "etcd: txn succeeded without a revision");
            }
            goto out; /* deleted: no record */
        }
        if (json_is_true(ok)) {
            rec = op->req->rec;
            rec.revision = r->revision;
            if (rec.revision <= 0) {
                r->status = PM_COORD_BAD;
                pm_coord_result_msg(r, "etcd: txn succeeded without a revision");
            } else if (pm_coord_result_add(r, &rec)) {
                r->status = PM_COORD_UNAVAILABLE;
                pm_coord_result_msg(r, "out of memory");
            }
            goto out;
        }
        json_t *resp = json_array_get(json_object_get(o, "responses"), 0);
        json_t *range = json_object_get(resp, "response_range");
        if (!json_is_object(range)) {
            r->status = PM_COORD_BAD;
            pm_coord_result_msg(r, "etcd: txn failed without the current record");
            goto out;
        }
        kvs = json_object_get(range, "kvs");
    }
    if (kvs && !json_is_array(kvs)) {
        r->status = PM_COORD_BAD;
        pm_coord_result_msg(r, "etcd: 'kvs' is not an array");
        goto out;
    }
    size_t n = kvs ? json_array_size(kvs) : 0;
    if (kind != PM_COORD_LIST && kind != PM_COORD_RESYNC && n > 1) {
        r->status = PM_COORD_BAD;
        pm_coord_result_msg(r, "etcd: %zu records for one key", n);
        goto out;
    }
    if (n == 0 && (kind == PM_COORD_GET || kind == PM_COORD_CAS || kind == PM_COORD_DELETE))
        r->status = PM_COORD_NOT_FOUND;
    if (n == 0 && kind == PM_COORD_CREATE) {
        r->status = PM_COORD_BAD;
        pm_coord_result_msg(r, "etcd: create failed but there is no record");
    }
    if (n == 1 && (kind == PM_COORD_CREATE || kind == PM_COORD_CAS || kind == PM_COORD_DELETE))
        r->status = PM_COORD_CONFLICT;
    for (size_t i = 0; i < n; i++) {
        pm_coord_result_t scratch = {0};
        if (pm_etcd_kv(e, json_array_get(kvs, i), &rec, 1, &scratch)) {
            if (r->status != PM_COORD_BAD)
                memcpy(r->message, scratch.message, sizeof r->message);
            r->status = PM_COORD_BAD;
            continue;
        }
        if (kind != PM_COORD_LIST && kind != PM_COORD_RESYNC && strcmp(rec.space, op->req->space)) {
            r->status = PM_COORD_BAD;
            pm_coord_result_msg(r, "etcd: answered for another key");
            continue;
        }
        if (pm_coord_result_add(r, &rec)) {
            r->status = PM_COORD_UNAVAILABLE;
            pm_coord_result_msg(r, "out of memory");
        }
    }
out:
    if (r->status == PM_COORD_BAD)
        pm_log_warn("PM-COORD-BAD", "configuration store: %s", r->message);
    pm_etcd_watch_t *w = op->relist_for;
    if (w) {
        if (r->status != PM_COORD_OK && r->status != PM_COORD_BAD) {
            pm_etcd_watch_fail(w, r->message);
            pm_coord_result_destroy(&r);
        } else {
            /* Whatever could be decoded replaces the caller's view; the
             * stream goes on after the revision of the list. */
            pm_log_warn("PM-COORD-RESYNC",
                        "configuration store: watch history compacted; relisted %zu spaces at "
                        "revision %" PRId64,
                        r->n_records, r->revision);
            w->next_rev = r->revision + 1;
            pm_etcd_deliver(e, r);
            w->state = W_BACKOFF;
            pm_etcd_watch_start(w);
        }
    } else {
        pm_etcd_deliver(e, r);
    }
    op->relist_for = NULL;
    pm_etcd_op_free(op);
}

/* ---- the loop ------------------------------------------------------------- */

static int
s_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void) easy;
    (void) socketp;
    pm_etcd_t *e = userp;
    size_t i = 0;
    while (i < e->n_socks && e->socks[i].fd != fd)
        i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < e->n_socks)
            e->socks[i] = e->socks[--e->n_socks];
        return 0;
    }
    if (i == e->n_socks) {
        if (e->n_socks == S_MAX_SOCKS)
            return -1; /* libcurl fails that transfer */
        e->n_socks++;
    }
    e->socks[i].fd = fd;
    e->socks[i].what = what;
    return 0;
}

static int
s_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void) multi;
    pm_etcd_t *e = userp;
    e->timer_at = timeout_ms < 0 ? -1 : pm_mono_ms() + timeout_ms;
    return 0;
}

void
pm_etcd_done(pm_etcd_t *e)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(e->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        if (priv) {
            s_op_done((pm_etcd_op_t *) priv, rc);
            continue;
        }
        for (pm_etcd_watch_t *w = e->watches; w; w = w->next)
            if (w->easy == easy) {
                pm_etcd_watch_done(w, rc);
                break;
            }
    }
}

static int64_t
s_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static void *
s_run(void *arg)
{
    pm_etcd_t *e = arg;
    zmq_pollitem_t items[1 + S_MAX_SOCKS];
    while (!e->stop) {
        int64_t now = pm_mono_ms();
        int64_t wake = now + 1000;
        for (pm_etcd_watch_t *w = e->watches; w; w = w->next) {
            if (w->state == W_BACKOFF && w->retry_at <= now)
                pm_etcd_watch_start(w);
            else if (w->state == W_CONNECTING && w->deadline <= now)
                pm_etcd_watch_fail(w, "watch not established in time");
            if (w->state == W_BACKOFF)
                wake = s_min(wake, w->retry_at);
            else if (w->state == W_CONNECTING)
                wake = s_min(wake, w->deadline);
        }
        if (e->timer_at >= 0 && e->timer_at <= now) {
            e->timer_at = -1;
            int running;
            curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
            pm_etcd_done(e);
            continue;
        }
        if (e->timer_at >= 0)
            wake = s_min(wake, e->timer_at);
        size_t n = 0;
        items[n++] = (zmq_pollitem_t){e->c->peer, 0, ZMQ_POLLIN, 0};
        for (size_t i = 0; i < e->n_socks; i++) {
            short ev = (short) (((e->socks[i].what & CURL_POLL_IN) ? ZMQ_POLLIN : 0) |
                                ((e->socks[i].what & CURL_POLL_OUT) ? ZMQ_POLLOUT : 0));
            items[n++] = (zmq_pollitem_t){NULL, e->socks[i].fd, ev, 0};
        }
        long timeout = (long) (wake - now);
        if (zmq_poll(items, (int) n, timeout < 0 ? 0 : timeout) < 0) {
            if (errno == EINTR)
                continue;
            pm_log_error("PM-COORD-POLL", "configuration store thread: %s", zmq_strerror(errno));
            break;
        }
        for (size_t i = 1; i < n; i++) {
            if (!items[i].revents)
                continue;
            int flags = ((items[i].revents & ZMQ_POLLIN) ? CURL_CSELECT_IN : 0) |
                        ((items[i].revents & ZMQ_POLLOUT) ? CURL_CSELECT_OUT : 0) |
                        ((items[i].revents & ZMQ_POLLERR) ? CURL_CSELECT_ERR : 0);
            int running;
            curl_multi_socket_action(e->multi, items[i].fd, flags, &running);
        }
        pm_etcd_done(e);
        if (items[0].revents & ZMQ_POLLIN) {
            pm_coord_req_t *req;
            while (zmq_recv(e->c->peer, &req, sizeof req, ZMQ_DONTWAIT) == (int) sizeof req) {
                if (!req) {
                    e->stop = 1;
                    break;
                }
                s_request(e, req);
            }
        }
    }
    return NULL;
}

/* ---- the backend ---------------------------------------------------------- */

/* "etcd://H:P[,H:P...]" into e->endpoints. 0, or -1 with a message. */
static int
s_parse(pm_etcd_t *e, const char *url, char *err, size_t errlen)
{
    const char *p = url + 7;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen(p);
        const char *colon = memrchr(p, ':', len);
        size_t i = colon ? (size_t) (colon - p) + 1 : 0;
        int digits = colon && i < len;
        for (size_t j = i; j < len; j++)
            digits = digits && p[j] >= '0' && p[j] <= '9';
        if (!digits || i < 2 || len >= sizeof e->endpoints[0] || memchr(p, '/', len) ||
            memchr(p, '@', len)) {
            snprintf(err, errlen,
                     "coordination: '%.200s': expected etcd://HOST:PORT[,HOST:PORT...]", url);
            return -1;
        }
        if (e->n_ep == S_MAX_ENDPOINTS) {
            snprintf(err, errlen, "coordination: at most %d etcd endpoints", S_MAX_ENDPOINTS);
            return -1;
        }
        memcpy(e->endpoints[e->n_ep], p, len);
        e->endpoints[e->n_ep++][len] = 0;
        p += len;
        if (*p == ',')
            p++;
    }
    if (!e->n_ep) {
        snprintf(err, errlen, "coordination: '%.200s': no endpoint", url);
        return -1;
    }
    return 0;
}

static void s_close(pm_coord_t *c);

static int
s_open(pm_coord_t *c, const pm_coord_config_t *cfg, char *err, size_t errlen)
{
    pm_etcd_t *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->impl = e;
    e->c = c;
    e->timer_at = -1;
    e->timeout = cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : 2000;
    e->connect_timeout = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 500;
    if (s_parse(e, cfg->url, err, errlen))
        return -1;
    const char *tls[3] = {cfg->ca_file, cfg->cert_file, cfg->key_file};
    char *dst[3] = {e->ca_file, e->cert_file, e->key_file};
    for (int i = 0; i < 3; i++) {
        if (!tls[i] || !*tls[i])
            continue;
        if (strlen(tls[i]) >= sizeof e->ca_file || access(tls[i], R_OK) != 0) {
            snprintf(err, errlen, "%s: %s", tls[i],
                     strlen(tls[i]) >= sizeof e->ca_file ? "path too long" : strerror(errno));
            return -1;
        }
        snprintf(dst[i], sizeof e->ca_file, "%s", tls[i]);
    }
    if ((e->cert_file[0] != 0) != (e->key_file[0] != 0) || (e->cert_file[0] && !e->ca_file[0])) {
        snprintf(err, errlen, "coordination TLS: give the CA file, and the client certificate "
                              "and key together");
        return -1;
    }
    snprintf(e->key_prefix, sizeof e->key_prefix, "%s/spaces/", c->prefix);
    e->key_prefix_len = strlen(e->key_prefix);
    /* The range of every key under the prefix: [P, P with its last byte + 1). */
    char end[300];
    memcpy(end, e->key_prefix, e->key_prefix_len + 1);
    end[e->key_prefix_len - 1]++; /* '/' -> '0' */
    e->b64_key = s_b64(e->key_prefix, e->key_prefix_len);
    e->b64_end = s_b64(end, e->key_prefix_len);
    if (!e->b64_key || !e->b64_end || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        !(e->multi = curl_multi_init())) {
        snprintf(err, errlen, "coordination: cannot set up libcurl");
        return -1;
    }
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, s_on_socket);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, s_on_timer);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    if (pthread_create(&e->thread, NULL, s_run, e) != 0) {
        snprintf(err, errlen, "coordination: cannot start the thread");
        return -1;
    }
    e->running = 1;
    return 0;
}

static void
s_submit(pm_coord_t *c, pm_coord_req_t *req)
{
    if (zmq_send(c->sock, &req, sizeof req, ZMQ_DONTWAIT) != (int) sizeof req)
        free(req); /* only when the context is going away */
}

static void
s_close(pm_coord_t *c)
{
    pm_etcd_t *e = c->impl;
    if (!e)
        return;
    if (e->running) {
        void *stop = NULL;
        zmq_send(c->sock, &stop, sizeof stop, 0);
        pthread_join(e->thread, NULL);
    }
    while (e->ops)
        pm_etcd_op_free(e->ops);
    while (e->watches) {
        pm_etcd_watch_t *w = e->watches;
        e->watches = w->next;
        pm_etcd_watch_release(w);
        free(w->buf);
        free(w);
    }
    if (e->multi)
        curl_multi_cleanup(e->multi);
    free(e->b64_key);
    free(e->b64_end);
    free(e);
    c->impl = NULL;
}

const pm_coord_backend_t pm_coord_etcd_backend = {s_open, s_submit, s_close};
