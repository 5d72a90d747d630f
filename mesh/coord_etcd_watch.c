/*
 * coord_etcd_watch.c - watches of the configuration store in etcd (see
 * coord_etcd.c): one long POST to /v3/watch per client, its newline-delimited
 * answers decoded into events, started again from the next revision after a
 * break, and a full list (RESYNC) when etcd compacted that revision away.
 */
#include "coord_etcd_priv.h"

/* ---- watches -------------------------------------------------------------- */

void
pm_etcd_watch_release(pm_etcd_watch_t *w)
{
    if (w->easy) {
        curl_multi_remove_handle(w->e->multi, w->easy);
        curl_easy_cleanup(w->easy);
        w->easy = NULL;
    }
    curl_slist_free_all(w->headers);
    w->headers = NULL;
    free(w->post);
    w->post = NULL;
    w->len = 0;
}

/* One whole message of the stream. 0, or -1 to tear the stream down (w->why). */
static int
s_watch_message(pm_etcd_watch_t *w, const char *line, size_t len)
{
    pm_etcd_t *e = w->e;
    json_t *o = json_loadb(line, len, 0, NULL);
    json_t *res = json_object_get(o, "result");
    int rc = -1;
    if (!json_is_object(res)) {
        json_t *err = json_object_get(o, "error");
        const char *m = json_is_object(err)   ? json_string_value(json_object_get(err, "message"))
                        : json_is_string(err) ? json_string_value(err)
                                              : NULL;
        snprintf(w->why, sizeof w->why, "watch: %s%.150s",
                 o && err ? "etcd: " : "malformed message", m ? m : "");
        if (!o || !err) {
            w->bad = 1;
            pm_log_warn("PM-COORD-BAD",
                        "configuration store: %s; restarting the watch in %" PRId64 " ms", w->why,
                        w->backoff);
            pm_coord_result_t *r = pm_coord_result_new(w->id, PM_COORD_WATCH, PM_COORD_BAD);
            if (r)
                pm_coord_result_msg(r, "%s", w->why);
            pm_etcd_deliver(e, r);
        }
        goto out;
    }
    int64_t hrev = 0, compact = 0;
    if (pm_etcd_header_rev(res, &hrev) || pm_etcd_i64(json_object_get(res, "compact_revision"), &compact)) {
        snprintf(w->why, sizeof w->why, "watch: malformed header");
        goto out;
    }
    if (json_is_true(json_object_get(res, "canceled"))) {
        if (compact > 0) {
            w->compacted = 1;
            snprintf(w->why, sizeof w->why,
                     "watch: revision %" PRId64 " compacted (now %" PRId64 ")", w->next_rev,
                     compact);
        } else {
            json_t *reason = json_object_get(res, "cancel_reason");
            snprintf(w->why, sizeof w->why, "watch canceled by etcd: %.150s",
                     json_is_string(reason) ? json_string_value(reason) : "");
        }
        goto out;
    }
    if (json_is_true(json_object_get(res, "created"))) {
        if (w->state == W_CONNECTING) {
            w->state = W_LIVE;
            w->live_since = pm_mono_ms();
            if (w->next_rev == 0)
                w->next_rev = hrev + 1;
            pm_etcd_store_up(e, w->endpoint);
            if (w->down_told)
                pm_log_info("PM-COORD-WATCH-RESUMED",
                            "configuration store watch resumed at %s "
                            "from revision %" PRId64,
                            e->endpoints[w->endpoint], w->next_rev);
            w->down_told = 0;
            w->fails = 0;
            pm_coord_result_t *r = pm_coord_result_new(w->id, PM_COORD_WATCH, PM_COORD_OK);
            if (r)
                r->revision = hrev;
            pm_etcd_deliver(e, r);
        }
    }
    json_t *events = json_object_get(res, "events");
    if (events && !json_is_array(events)) {
        snprintf(w->why, sizeof w->why, "watch: 'events' is not an array");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *ev = json_array_get(events, i);
        json_t *type = json_object_get(ev, "type");
        int deleted = json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0;
        if (type && !deleted &&
            !(json_is_string(type) && !strcmp(json_string_value(type), "PUT"))) {
            snprintf(w->why, sizeof w->why, "watch: unknown event type");
            goto out;
        }
        pm_coord_result_t *r = pm_coord_result_new(w->id, PM_COORD_EVENT, PM_COORD_OK);
        pm_coord_record_t rec;
        if (!r) {
            snprintf(w->why, sizeof w->why, "out of memory");
            goto out;
        }
        r->deleted = deleted;
        if (pm_etcd_kv(e, json_object_get(ev, "kv"), &rec, !deleted, r)) {
            /* A change we cannot read (its space, if known, is in records[0]):
             * the caller hears of it; without a revision nothing can go on. */
            int64_t mod = 0;
            if (pm_etcd_i64(json_object_get(json_object_get(ev, "kv"), "mod_revision"), &mod) ||
                mod <= 0) {
                snprintf(w->why, sizeof w->why, "watch: event without a revision");
                pm_coord_result_destroy(&r);
                goto out;
            }
            rec.revision = mod;
            r->status = PM_COORD_BAD;
            pm_log_warn("PM-COORD-BAD", "configuration store: %s", r->message);
        }
        r->revision = rec.revision;
        if (rec.revision < w->next_rev) { /* delivered before the stream restarted */
            pm_coord_result_destroy(&r);
            continue;
        }
        if (pm_coord_result_add(r, &rec)) {
            pm_coord_result_destroy(&r);
            snprintf(w->why, sizeof w->why, "out of memory");
            goto out;
        }
        w->next_rev = rec.revision + 1;
        pm_etcd_deliver(e, r);
    }
    /* A progress notification: everything up to hrev was sent. */
    if (!json_array_size(events) && w->state == W_LIVE && hrev + 1 > w->next_rev &&
        !json_is_true(json_object_get(res, "created")))
        w->next_rev = hrev + 1;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

static size_t
s_on_stream(char *data, size_t size, size_t n, void *arg)
{
    pm_etcd_watch_t *w = arg;
    size_t len = size * n;
    if (w->len + len > S_MAX_BODY) {
        snprintf(w->why, sizeof w->why, "watch: a message larger than %d bytes", S_MAX_BODY);
        return 0;
    }
    char *b = realloc(w->buf, w->len + len + 1);
    if (!b)
        return 0;
    memcpy(b + w->len, data, len);
    w->buf = b;
    w->len += len;
    size_t start = 0;
    for (size_t i = 0; i < w->len; i++) {
        if (w->buf[i] != '\n')
            continue;
        if (i > start && s_watch_message(w, w->buf + start, i - start) != 0)
            return 0; /* ends the transfer: pm_etcd_watch_done sees w->why */
        start = i + 1;
    }
    memmove(w->buf, w->buf + start, w->len - start);
    w->len -= start;
    return len;
}

void
pm_etcd_watch_start(pm_etcd_watch_t *w)
{
    pm_etcd_t *e = w->e;
    pm_etcd_watch_release(w);
    w->compacted = 0;
    w->bad = 0;
    w->why[0] = 0;
    char rev[32];
    snprintf(rev, sizeof rev, "%" PRId64, w->next_rev);
    json_t *o = json_pack("{s:{s:s, s:s, s:s}}", "create_request", "key", e->b64_key, "range_end",
                          e->b64_end, "start_revision", rev);
    w->post = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (w->post)
        w->easy = pm_etcd_easy(e, w->endpoint, "/v3/watch", w->post, &w->headers, w->errbuf);
    if (!w->easy) {
        pm_etcd_watch_fail(w, "cannot start the watch");
        return;
    }
    curl_easy_setopt(w->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) e->connect_timeout);
    curl_easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, s_on_stream);
    curl_easy_setopt(w->easy, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(w->easy, CURLOPT_PRIVATE, NULL); /* marks a watch: see pm_etcd_done */
    curl_easy_setopt(w->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    w->state = W_CONNECTING;
    w->deadline = pm_mono_ms() + e->timeout;
    if (curl_multi_add_handle(e->multi, w->easy) != CURLM_OK)
        pm_etcd_watch_fail(w, "cannot start the watch");
}

/* The stream broke (or never came up): back off and try the next endpoint;
 * once every endpoint failed in a row, tell the caller (once). */
void
pm_etcd_watch_fail(pm_etcd_watch_t *w, const char *why)
{
    pm_etcd_t *e = w->e;
    pm_etcd_watch_release(w);
    w->fails++;
    /* A stream that stayed up a while failed for a new reason: retry soon.
     * One that keeps failing right after it came up backs off. */
    if (w->state == W_LIVE && pm_mono_ms() - w->live_since >= S_BACKOFF_MAX_MS)
        w->backoff = S_BACKOFF_MIN_MS;
    if (!w->down_told && w->fails >= e->n_ep && !w->bad) {
        pm_etcd_store_down(e, why);
        pm_log_warn("PM-COORD-WATCH-BROKEN",
                    "configuration store watch broke: %s; restarting "
                    "from revision %" PRId64,
                    why, w->next_rev);
        pm_coord_result_t *r = pm_coord_result_new(w->id, PM_COORD_WATCH, PM_COORD_UNAVAILABLE);
        if (r)
            pm_coord_result_msg(r, "%s", why);
        pm_etcd_deliver(e, r);
        w->down_told = 1;
    }
    w->state = W_BACKOFF;
    w->retry_at = pm_mono_ms() + w->backoff;
    w->backoff = w->backoff * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : w->backoff * 2;
    /* The endpoint that answered last, unless that is the one that failed. */
    w->endpoint = e->cur != w->endpoint ? e->cur : (w->endpoint + 1) % e->n_ep;
}

void
pm_etcd_watch_done(pm_etcd_watch_t *w, CURLcode rc)
{
    pm_etcd_t *e = w->e;
    long status = 0;
    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
    if (w->compacted) {
        pm_etcd_watch_release(w);
        pm_etcd_op_t *op = pm_etcd_op_new(e);
        if (op) {
            op->relist_for = w;
            op->endpoint = w->endpoint;
            op->path = "/v3/kv/range";
            op->post = pm_etcd_range_all(e);
        }
        if (!op || !op->post) {
            if (op)
                pm_etcd_op_free(op);
            pm_etcd_watch_fail(w, "out of memory");
            return;
        }
        w->state = W_RELIST;
        if (pm_etcd_op_start(op) != 0)
            pm_etcd_op_unavailable(op, "cannot start the list");
        return;
    }
    char why[400];
    if (w->why[0])
        snprintf(why, sizeof why, "%s: %s", e->endpoints[w->endpoint], w->why);
    else if (rc != CURLE_OK)
        snprintf(why, sizeof why, "%s: %s", e->endpoints[w->endpoint],
                 w->errbuf[0] ? w->errbuf : curl_easy_strerror(rc));
    else
        snprintf(why, sizeof why, "%s: watch ended (HTTP %ld)", e->endpoints[w->endpoint], status);
    pm_etcd_watch_fail(w, why);
}

