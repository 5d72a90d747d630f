/*
 * httpfn.c - see httpfn.h.
 *
 * One thread, one loop: zmq_poll over every function's worker socket, the
 * sockets libcurl is using (from curl_multi_fdset) and a stop pipe; libcurl
 * moves every transfer forward in curl_multi_perform. A call that fails with
 * a 5xx or a connection error waits out its backoff in a list ordered by
 * time and is started again.
 */
#include "clock.h"
#include "httpfn.h"

#include "log.h"
#include "pmesh.h"
#include "rand.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* First retry after ~200 ms, doubling, never more than 10 s apart. */
#define S_BACKOFF_BASE_MS 200
#define S_BACKOFF_CAP_MS 10000
/* Bodies beyond the largest value the agent accepts are cut off: the result
 * would be refused anyway. */
#define S_MAX_BODY (64 * 1024 * 1024)

typedef struct s_fn {
    pm_httpfn_spec_t spec;
    pm_worker_t *worker;
    int inflight;
    int concurrency;
} s_fn_t;

typedef struct s_call {
    s_fn_t *fn;
    pm_invocation_t *inv;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    int attempt;        /* 1-based */
    int64_t retry_at;   /* monotonic ms; 0: not waiting */
    char error[CURL_ERROR_SIZE];
    struct s_call *next;            /* the backoff list */
    struct s_call *a_next, *a_prev; /* every call not yet finished */
} s_call_t;

struct pm_httpfn {
    s_fn_t *fns;
    size_t n_fns;
    int64_t default_timeout;
    int default_retries;
    char *socket_path;
    CURLM *multi;
    int stop_pipe[2];
    pthread_t thread;
    int running;
    s_call_t *waiting; /* calls in backoff, earliest first */
    s_call_t *active;  /* every call not yet answered */
    uint64_t calls, ok, failed, retries;
};

int64_t
pm_httpfn_backoff(int n, int64_t base_ms, int64_t cap_ms, double r)
{
    int64_t d = base_ms;
    for (int i = 1; i < n && d < cap_ms; i++)
        d *= 2;
    if (d > cap_ms)
        d = cap_ms;
    /* "Equal jitter": half fixed, half random, so retries of many calls
     * that failed together spread out but none retries at once. */
    return d / 2 + (int64_t) ((double) (d - d / 2) * r);
}

int
pm_httpfn_parse(const char *text, pm_httpfn_spec_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->retries = -1;
    char buf[4096];
    if (strlen(text) >= sizeof buf) {
        snprintf(err, errlen, "http function spec is too long");
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    char *first = strtok_r(buf, " \t", &save);
    char *eq = first ? strchr(first, '=') : NULL;
    if (!eq || eq == first || !eq[1]) {
        snprintf(err, errlen, "'%s': expected NAME=URL [timeout=DUR] [retries=N]", text);
        return -1;
    }
    *eq = 0;
    if (strlen(first) >= sizeof out->name || strlen(eq + 1) >= sizeof out->url) {
        snprintf(err, errlen, "'%s': name or URL too long", text);
        return -1;
    }
    if (strncmp(eq + 1, "http://", 7) != 0 && strncmp(eq + 1, "https://", 8) != 0) {
        snprintf(err, errlen, "'%s': the URL must start with http:// or https://", text);
        return -1;
    }
    snprintf(out->name, sizeof out->name, "%s", first);
    snprintf(out->url, sizeof out->url, "%s", eq + 1);
    for (char *opt; (opt = strtok_r(NULL, " \t", &save));) {
        if (strncmp(opt, "timeout=", 8) == 0) {
            if (pm_parse_duration(opt + 8, &out->timeout_ms) != 0 || out->timeout_ms <= 0) {
                snprintf(err, errlen, "'%s': bad timeout '%s'", text, opt + 8);
                return -1;
            }
        } else if (strncmp(opt, "retries=", 8) == 0) {
            char *end;
            long r = strtol(opt + 8, &end, 10);
            if (*end || r < 0 || r > 20) {
                snprintf(err, errlen, "'%s': retries must be 0..20", text);
                return -1;
            }
            out->retries = (int) r;
        } else {
            snprintf(err, errlen, "'%s': unknown option '%s'", text, opt);
            return -1;
        }
    }
    return 0;
}

/* ---- calls ---------------------------------------------------------------- */

static size_t
s_on_body(char *data, size_t size, size_t n, void *arg)
{
    s_call_t *c = arg;
    size_t len = size * n;
    if (c->body_len + len > S_MAX_BODY)
        return 0; /* aborts the transfer: too large */
    char *b = realloc(c->body, c->body_len + len + 1);
    if (!b)
        return 0;
    memcpy(b + c->body_len, data, len);
    c->body = b;
    c->body_len += len;
    c->body[c->body_len] = 0;
    return len;
}

static void
s_call_free(s_call_t *c)
{
    if (c->easy)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    free(c->body);
    pm_invocation_destroy(&c->inv);
    free(c);
}

static int
s_start(pm_httpfn_t *self, s_call_t *c)
{
    if (c->easy) {
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
    }
    curl_slist_free_all(c->headers);
    c->headers = NULL;
    free(c->body);
    c->body = NULL;
    c->body_len = 0;
    c->error[0] = 0;
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    char h[512];
    c->headers = curl_slist_append(c->headers, "Content-Type: application/octet-stream");
    snprintf(h, sizeof h, "X-Pmesh-Invocation: %s", c->inv->invocation_id);
    c->headers = curl_slist_append(c->headers, h);
    snprintf(h, sizeof h, "X-Pmesh-Target: %s", c->inv->target_id);
    c->headers = curl_slist_append(c->headers, h);
    snprintf(h, sizeof h, "X-Pmesh-Attempt: %d", c->attempt);
    c->headers = curl_slist_append(c->headers, h);
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */
    int64_t timeout = c->fn->spec.timeout_ms ? c->fn->spec.timeout_ms : self->default_timeout;
    curl_easy_setopt(e, CURLOPT_URL, c->fn->spec.url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *) c->inv->input);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) c->inv->input_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (timeout < 10000 ? timeout : 10000));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "pmesh/" PMESH_VERSION);
    c->easy = e;
    if (curl_multi_add_handle(self->multi, e) != CURLM_OK)
        return -1;
    return 0;
}

static void
s_unlink_active(pm_httpfn_t *self, s_call_t *c)
{
    if (c->a_prev)
        c->a_prev->a_next = c->a_next;
    else
        self->active = c->a_next;
    if (c->a_next)
        c->a_next->a_prev = c->a_prev;
}

static void
s_finish(pm_httpfn_t *self, s_call_t *c, int ok, const char *reason)
{
    s_unlink_active(self, c);
    s_fn_t *fn = c->fn;
    int err = ok ? pm_worker_complete(fn->worker, c->inv, c->body ? c->body : "", c->body_len)
                 : pm_worker_fail(fn->worker, c->inv, reason);
    if (ok)
        self->ok++;
    else
        self->failed++;
    if (err != PM_OK && err != PM_ERR_NOT_HOLDER)
        pm_log(PM_LOG_WARN, "PM-HTTPFN-ANSWER", c->inv->target_id, "%s: %s", fn->spec.name,
               pm_err_name(err));
    fn->inflight--;
    s_call_free(c);
}

static void
s_schedule_retry(pm_httpfn_t *self, s_call_t *c)
{
    uint32_t rnd = (uint32_t) pm_rand_u64();
    c->retry_at = pm_mono_ms() + pm_httpfn_backoff(c->attempt, S_BACKOFF_BASE_MS, S_BACKOFF_CAP_MS,
                                              (double) rnd / 4294967296.0);
    c->attempt++;
    self->retries++;
    s_call_t **at = &self->waiting;
    while (*at && (*at)->retry_at <= c->retry_at)
        at = &(*at)->next;
    c->next = *at;
    *at = c;
}

/* A transfer ended: success, a final failure, or a retry. */
static void
s_done(pm_httpfn_t *self, s_call_t *c, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(self->multi, c->easy);
    int retries = c->fn->spec.retries >= 0 ? c->fn->spec.retries : self->default_retries;
    if (rc == CURLE_OK && status >= 200 && status < 300) {
        s_finish(self, c, 1, NULL);
        return;
    }
    int transient = rc != CURLE_OK || status >= 500;
    char why[1400];
    if (rc != CURLE_OK)
        snprintf(why, sizeof why, "%.128s: %s (after %d attempt%s)", c->fn->spec.name,
                 c->error[0] ? c->error : curl_easy_strerror(rc), c->attempt,
                 c->attempt == 1 ? "" : "s");
    else
        snprintf(why, sizeof why, "%.128s: HTTP %ld: %.900s", c->fn->spec.name, status,
                 c->body ? c->body : "");
    if (transient && c->attempt <= retries) {
        pm_log(PM_LOG_INFO, "PM-HTTPFN-RETRY", c->inv->target_id, "%s; retrying", why);
        s_schedule_retry(self, c);
        return;
    }
    pm_log(PM_LOG_INFO, "PM-HTTPFN-FAILED", c->inv->target_id, "%s", why);
    s_finish(self, c, 0, why);
}

/* ---- the loop ------------------------------------------------------------- */

static void
s_take_work(pm_httpfn_t *self)
{
    for (size_t i = 0; i < self->n_fns; i++) {
        s_fn_t *fn = &self->fns[i];
        while (fn->inflight < fn->concurrency) {
            pm_invocation_t *inv = NULL;
            if (pm_worker_next(fn->worker, 0, &inv) != PM_OK)
                break;
            s_call_t *c = calloc(1, sizeof *c);
            if (!c) {
                pm_worker_fail(fn->worker, inv, "out of memory");
                pm_invocation_destroy(&inv);
                continue;
            }
            c->fn = fn;
            c->inv = inv;
            c->attempt = 1;
            c->a_next = self->active;
            if (self->active)
                self->active->a_prev = c;
            self->active = c;
            fn->inflight++;
            self->calls++;
            if (s_start(self, c) != 0)
                s_finish(self, c, 0, "cannot start the HTTP call");
        }
    }
}

static void *
s_run(void *arg)
{
    pm_httpfn_t *self = arg;
    for (size_t i = 0; i < self->n_fns; i++) {
        const char *names[1] = {self->fns[i].spec.name};
        int err = pm_worker_new(self->socket_path, names, 1, self->fns[i].concurrency,
                                &self->fns[i].worker);
        if (err) {
            pm_log_error("PM-HTTPFN-REGISTER", "cannot register %s with the agent: %s",
                         names[0], pm_err_name(err));
            return NULL;
        }
        pm_log_info("PM-HTTPFN-SERVING", "function %s -> %s", names[0], self->fns[i].spec.url);
    }
    size_t cap = self->n_fns + 2 + FD_SETSIZE;
    zmq_pollitem_t *items = calloc(cap, sizeof *items);
    if (!items)
        return NULL;
    for (;;) {
        s_take_work(self);
        int64_t now = pm_mono_ms();
        while (self->waiting && self->waiting->retry_at <= now) {
            s_call_t *c = self->waiting;
            self->waiting = c->next;
            c->retry_at = 0;
            if (s_start(self, c) != 0)
                s_finish(self, c, 0, "cannot restart the HTTP call");
        }
        int running = 0;
        curl_multi_perform(self->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(self->multi, &left)))
            if (msg->msg == CURLMSG_DONE) {
                s_call_t *c = NULL;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &c);
                s_done(self, c, msg->data.result);
            }
        /* Poll: stop pipe, worker sockets, curl's sockets. */
        size_t n = 0;
        items[n++] = (zmq_pollitem_t){NULL, self->stop_pipe[0], ZMQ_POLLIN, 0};
        for (size_t i = 0; i < self->n_fns; i++)
            items[n++] = (zmq_pollitem_t){pm_worker_socket(self->fns[i].worker), 0, ZMQ_POLLIN, 0};
        fd_set r, w, x;
        FD_ZERO(&r);
        FD_ZERO(&w);
        FD_ZERO(&x);
        int maxfd = -1;
        curl_multi_fdset(self->multi, &r, &w, &x, &maxfd);
        for (int fd = 0; fd <= maxfd && n < cap; fd++) {
            short ev = (short) ((FD_ISSET(fd, &r) ? ZMQ_POLLIN : 0) |
                                (FD_ISSET(fd, &w) ? ZMQ_POLLOUT : 0) |
                                (FD_ISSET(fd, &x) ? ZMQ_POLLERR : 0));
            if (ev)
                items[n++] = (zmq_pollitem_t){NULL, fd, ev, 0};
        }
        long timeout = 1000;
        curl_multi_timeout(self->multi, &timeout);
        if (timeout < 0 || timeout > 1000)
            timeout = 1000; /* also the pace at which queued invocations are noticed */
        if (maxfd < 0 && running && timeout > 10)
            timeout = 10; /* curl is resolving or waiting without a socket to show */
        if (self->waiting) {
            int64_t until = self->waiting->retry_at - pm_mono_ms();
            if (until < timeout)
                timeout = until < 0 ? 0 : (long) until;
        }
        if (zmq_poll(items, (int) n, timeout) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            break;
    }
    free(items);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

pm_httpfn_t *
pm_httpfn_start(const pm_config_t *cfg, const char *socket_path, char *err, size_t errlen)
{
    if (!cfg->http_functions.len) {
        snprintf(err, errlen, "no http_functions configured");
        return NULL;
    }
    pm_httpfn_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->stop_pipe[0] = self->stop_pipe[1] = -1;
    self->fns = calloc(cfg->http_functions.len, sizeof *self->fns);
    self->socket_path = strdup(socket_path);
    self->default_timeout = cfg->http_function_timeout;
    self->default_retries = (int) cfg->http_function_retries;
    if (!self->fns || !self->socket_path)
        goto fail;
    for (size_t i = 0; i < cfg->http_functions.len; i++) {
        if (pm_httpfn_parse(cfg->http_functions.items[i], &self->fns[i].spec, err, errlen))
            goto fail_quiet;
        self->fns[i].concurrency = (int) cfg->http_function_concurrency;
        self->n_fns++;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(self->multi = curl_multi_init()))
        goto fail;
    if (pipe(self->stop_pipe) != 0)
        goto fail;
    if (pthread_create(&self->thread, NULL, s_run, self) != 0)
        goto fail;
    self->running = 1;
    return self;
fail:
    snprintf(err, errlen, "cannot start the HTTP function thread");
fail_quiet:
    pm_httpfn_stop(&self);
    return NULL;
}

void
pm_httpfn_stop(pm_httpfn_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_httpfn_t *self = *self_p;
    if (self->running) {
        ssize_t w = write(self->stop_pipe[1], "x", 1);
        (void) w;
        pthread_join(self->thread, NULL);
    }
    /* Calls still in flight or in backoff are abandoned: the agent gives
     * their invocations to another worker when this one's session closes. */
    while (self->active) {
        s_call_t *c = self->active;
        s_unlink_active(self, c);
        if (c->easy && !c->retry_at)
            curl_multi_remove_handle(self->multi, c->easy);
        s_call_free(c);
    }
    self->waiting = NULL;
    if (self->multi)
        curl_multi_cleanup(self->multi);
    for (size_t i = 0; i < self->n_fns; i++)
        pm_worker_destroy(&self->fns[i].worker);
    for (int i = 0; i < 2; i++)
        if (self->stop_pipe[i] >= 0)
            close(self->stop_pipe[i]);
    free(self->fns);
    free(self->socket_path);
    free(self);
    *self_p = NULL;
}
