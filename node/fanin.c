/*
 * fanin.c - see fanin.h.
 */
#include "fanin.h"

#include "base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
pm_fanin_check(int kind, size_t n, size_t max)
{
    if (kind < PM_COMBINE_ALL || kind > PM_COMBINE_ALL_SETTLED || n == 0)
        return PM_ERR_BAD_REQUEST;
    return n > max ? PM_ERR_LIMIT : PM_OK;
}

pm_fanin_t *
pm_fanin_new(int kind, const char *const *ids, size_t n, size_t max_value)
{
    pm_fanin_t *self = pm_xcalloc(1, sizeof *self, "combinator");
    self->kind = kind;
    self->n = n;
    self->max_value = max_value;
    self->ids = pm_xcalloc(n ? n : 1, sizeof *self->ids, "combinator inputs");
    self->in = pm_xcalloc(n ? n : 1, sizeof *self->in, "combinator inputs");
    for (size_t i = 0; i < n; i++)
        self->ids[i] = pm_xstrdup(ids[i], "combinator input");
    return self;
}

pm_fanin_t *
pm_fanin_clone(const pm_fanin_t *self)
{
    pm_fanin_t *c = pm_fanin_new(self->kind, (const char *const *) self->ids, self->n,
                                 self->max_value);
    for (size_t i = 0; i < self->n; i++) {
        const pm_fanin_input_t *in = &self->in[i];
        c->in[i].state = in->state;
        c->in[i].len = in->len;
        if (in->data) {
            c->in[i].data = pm_xmalloc(in->len + 1, "combinator input outcome");
            memcpy(c->in[i].data, in->data, in->len + 1);
        }
    }
    c->heard = self->heard;
    c->resolved = self->resolved;
    c->failed = self->failed;
    c->done = self->done;
    return c;
}

void
pm_fanin_destroy(pm_fanin_t **self_p)
{
    pm_fanin_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n; i++) {
        free(self->ids[i]);
        free(self->in[i].data);
    }
    free(self->ids);
    free(self->in);
    free(self);
    *self_p = NULL;
}

/* ---- JSON ------------------------------------------------------------------ */

static int
s_grow(char **buf, size_t *len, size_t *cap, size_t more)
{
    if (*len + more + 1 <= *cap)
        return 0;
    size_t want = *cap ? *cap : 64;
    while (want < *len + more + 1)
        want *= 2;
    char *b = realloc(*buf, want);
    if (!b)
        return -1;
    *buf = b;
    *cap = want;
    return 0;
}

static int
s_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (s_grow(buf, len, cap, n) != 0)
        return -1;
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

static int
s_puts(char **buf, size_t *len, size_t *cap, const char *s)
{
    return s_put(buf, len, cap, s, strlen(s));
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, at most U+10FFFF. */
static int
s_utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i - 1 < k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int
pm_fanin_json_bytes(char **buf, size_t *len, size_t *cap, const void *data, size_t n)
{
    const uint8_t *s = data;
    if (!s)
        n = 0;
    if (!s_utf8_ok(s, n)) {
        if (s_puts(buf, len, cap, "{\"base64\":\"") != 0 ||
            s_grow(buf, len, cap, (n + 2) / 3 * 4 + 2) != 0)
            return -1;
        char *o = *buf + *len;
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t) s[i] << 16;
            if (i + 1 < n)
                v |= (uint32_t) s[i + 1] << 8;
            if (i + 2 < n)
                v |= s[i + 2];
            *o++ = s_b64[(v >> 18) & 63];
            *o++ = s_b64[(v >> 12) & 63];
            *o++ = i + 1 < n ? s_b64[(v >> 6) & 63] : '=';
            *o++ = i + 2 < n ? s_b64[v & 63] : '=';
        }
        *len = (size_t) (o - *buf);
        (*buf)[*len] = 0;
        return s_puts(buf, len, cap, "\"}");
    }
    if (s_grow(buf, len, cap, n * 6 + 2) != 0)
        return -1;
    char *o = *buf + *len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char) c;
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else if (c == '\r') {
            *o++ = '\\';
            *o++ = 'r';
        } else if (c < 0x20 || c == 0x7F) {
            o += sprintf(o, "\\u%04x", c);
        } else {
            *o++ = (char) c;
        }
    }
    *o++ = '"';
    *len = (size_t) (o - *buf);
    (*buf)[*len] = 0;
    return 0;
}

/* {"id":ID,"state":S,"reason":R} of input i. */
static int
s_failure_json(const pm_fanin_t *self, size_t i, char **buf, size_t *len, size_t *cap)
{
    const pm_fanin_input_t *in = &self->in[i];
    return s_puts(buf, len, cap, "{\"id\":") ||
           pm_fanin_json_bytes(buf, len, cap, self->ids[i], strlen(self->ids[i])) ||
           s_puts(buf, len, cap, ",\"state\":\"") ||
           s_puts(buf, len, cap, pm_state_name(in->state)) ||
           s_puts(buf, len, cap, "\",\"reason\":") ||
           pm_fanin_json_bytes(buf, len, cap, in->data, in->len) || s_puts(buf, len, cap, "}");
}

/* The JSON list the kind settles with: values (all), failures (any) or
 * outcomes (all-settled), in input order. */
static int
s_list_json(const pm_fanin_t *self, char **buf, size_t *len, size_t *cap)
{
    if (s_puts(buf, len, cap, "["))
        return -1;
    for (size_t i = 0; i < self->n; i++) {
        const pm_fanin_input_t *in = &self->in[i];
        if (i && s_puts(buf, len, cap, ","))
            return -1;
        int err;
        if (self->kind == PM_COMBINE_ALL)
            err = pm_fanin_json_bytes(buf, len, cap, in->data, in->len);
        else if (self->kind == PM_COMBINE_ANY)
            err = s_failure_json(self, i, buf, len, cap);
        else if (in->state == PM_STATE_RESOLVED)
            err = s_puts(buf, len, cap, "{\"state\":\"resolved\",\"value\":") ||
                  pm_fanin_json_bytes(buf, len, cap, in->data, in->len) ||
                  s_puts(buf, len, cap, "}");
        else
            err = s_puts(buf, len, cap, "{\"state\":\"") ||
                  s_puts(buf, len, cap, pm_state_name(in->state)) ||
                  s_puts(buf, len, cap, "\",\"reason\":") ||
                  pm_fanin_json_bytes(buf, len, cap, in->data, in->len) ||
                  s_puts(buf, len, cap, "}");
        if (err)
            return -1;
    }
    return s_puts(buf, len, cap, "]");
}

static void
s_copy_out(pm_fanin_outcome_t *out, int state, const void *data, size_t len)
{
    out->state = state;
    out->len = len;
    out->data = NULL;
    if (data && len) {
        out->data = pm_xmalloc(len + 1, "combinator outcome");
        memcpy(out->data, data, len);
        out->data[len] = 0;
    }
}

/* Settles with a JSON text built by the kind (list, or one failure). */
static int
s_settle_json(pm_fanin_t *self, int state, long failed, pm_fanin_outcome_t *out)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int err = failed >= 0 ? s_failure_json(self, (size_t) failed, &buf, &len, &cap)
                          : s_list_json(self, &buf, &len, &cap);
    if (err)
        pm_oom("a combinator's value");
    self->done = 1;
    if (self->max_value && len > self->max_value) {
        char why[160];
        int n = snprintf(why, sizeof why,
                         "VALUE_TOO_LARGE: the combined value is %zu bytes, over the %zu the agent "
                         "accepts",
                         len, self->max_value);
        free(buf);
        s_copy_out(out, PM_STATE_REJECTED, why, (size_t) n);
        return 1;
    }
    out->state = state;
    out->data = buf;
    out->len = len;
    return 1;
}

int
pm_fanin_hear(pm_fanin_t *self, size_t i, int state, const void *data, size_t len,
              pm_fanin_outcome_t *out)
{
    if (i >= self->n || state < PM_STATE_RESOLVED || state > PM_STATE_TIMEDOUT)
        return -1;
    pm_fanin_input_t *in = &self->in[i];
    if (self->done || in->state)
        return 0; /* heard before, or nothing more to decide */
    in->state = state;
    if (data && len) {
        in->data = pm_xmalloc(len + 1, "combinator input outcome");
        memcpy(in->data, data, len);
        in->data[len] = 0;
        in->len = len;
    }
    self->heard++;
    int ok = state == PM_STATE_RESOLVED;
    if (ok)
        self->resolved++;
    else
        self->failed++;
    switch (self->kind) {
    case PM_COMBINE_ALL:
        if (!ok)
            return s_settle_json(self, PM_STATE_REJECTED, (long) i, out);
        if (self->resolved == self->n)
            return s_settle_json(self, PM_STATE_RESOLVED, -1, out);
        return 0;
    case PM_COMBINE_ANY:
        if (ok) {
            self->done = 1;
            s_copy_out(out, PM_STATE_RESOLVED, in->data, in->len);
            return 1;
        }
        if (self->failed == self->n)
            return s_settle_json(self, PM_STATE_REJECTED, -1, out);
        return 0;
    case PM_COMBINE_RACE:
        self->done = 1;
        s_copy_out(out, state, in->data, in->len);
        return 1;
    case PM_COMBINE_ALL_SETTLED:
        if (self->heard == self->n)
            return s_settle_json(self, PM_STATE_RESOLVED, -1, out);
        return 0;
    }
    return -1;
}

unsigned
pm_fanin_decides(int kind)
{
    switch (kind) {
    case PM_COMBINE_ALL:
        return PM_FANIN_FAILURES;
    case PM_COMBINE_ANY:
        return 1u << PM_STATE_RESOLVED;
    case PM_COMBINE_RACE:
        return PM_FANIN_EVERY;
    default:
        return 0;
    }
}

long
pm_fanin_last_pending(const pm_fanin_t *self)
{
    if (self->done || self->heard >= self->n || self->n - self->heard > PM_FANIN_LAST_SCAN)
        return -1;
    long first = -1;
    for (size_t i = 0; i < self->n; i++) {
        if (self->in[i].state)
            continue;
        if (first < 0)
            first = (long) i;
        else if (strcmp(self->ids[i], self->ids[first]) != 0)
            return -1;
    }
    return first;
}
