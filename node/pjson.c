/*
 * pjson.c - the one JSON shape of a promise (see pjson.h).
 *
 * Owns nothing: every function builds a fresh document from a borrowed
 * promise and hands it to the caller.
 */
#include "pjson.h"

#include <stdlib.h>
#include <string.h>

bool
pm_pjson_is_text(const void *buf, size_t len)
{
    const unsigned char *s = buf;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        uint32_t min;
        if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else
            return false;
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

char *
pm_pjson_base64(const void *buf, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = buf;
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8 | s[i + 2];
        *o++ = alphabet[v >> 18 & 0x3F];
        *o++ = alphabet[v >> 12 & 0x3F];
        *o++ = alphabet[v >> 6 & 0x3F];
        *o++ = alphabet[v & 0x3F];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t) s[i] << 16;
        *o++ = alphabet[v >> 18 & 0x3F];
        *o++ = alphabet[v >> 12 & 0x3F];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8;
        *o++ = alphabet[v >> 18 & 0x3F];
        *o++ = alphabet[v >> 12 & 0x3F];
        *o++ = alphabet[v >> 6 & 0x3F];
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* A JSON string of s[0..len). jansson refuses invalid UTF-8, and labels,
 * keys and reasons come from clients, so bytes that are not UTF-8 (or NUL)
 * become U+FFFD rather than losing the whole document. */
static json_t *
s_text(const char *s, size_t len)
{
    if (pm_pjson_is_text(s, len))
        return json_stringn(s, len);
    char *clean = malloc(len * 3 + 1);
    if (!clean)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = 1;
        unsigned char c = (unsigned char) s[i];
        if (c >= 0xC0)
            n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (n <= len - i && pm_pjson_is_text(s + i, n)) {
            memcpy(clean + o, s + i, n);
            o += n;
            i += n;
        } else {
            memcpy(clean + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *str = json_stringn(clean, o);
    free(clean);
    return str;
}

/* Sets key to a string unless it is NULL or empty. Returns -1 on failure. */
static int
s_set_str(json_t *obj, const char *key, const char *value)
{
    if (!value || !*value)
        return 0;
    return json_object_set_new(obj, key, s_text(value, strlen(value)));
}

/* Sets key to an integer unless it is zero. Returns -1 on failure. */
static int
s_set_int(json_t *obj, const char *key, int64_t value)
{
    if (value == 0)
        return 0;
    return json_object_set_new(obj, key, json_integer((json_int_t) value));
}

json_t *
pm_promise_to_json_obj(const pm_promise_t *p)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    const char *id = p->id ? p->id : "";
    int rc = 0;
    rc |= json_object_set_new(obj, "id", s_text(id, strlen(id)));
    rc |= json_object_set_new(obj, "state", json_string(pm_state_name(p->state)));
    const uint8_t *value = p->value ? p->value : (const uint8_t *) "";
    size_t value_len = p->value ? p->value_len : 0;
    if (value_len > 0 || p->state == PM_STATE_RESOLVED) {
        if (pm_pjson_is_text(value, value_len))
            rc |= json_object_set_new(obj, "value",
                                      json_stringn((const char *) value, value_len));
        else {
            char *b64 = pm_pjson_base64(value, value_len);
            rc |= b64 ? json_object_set_new(obj, "value_b64", json_string(b64)) : -1;
            free(b64);
        }
    }
    rc |= s_set_str(obj, "reason", p->reason);
    rc |= s_set_int(obj, "created_ms", p->created_ms);
    rc |= s_set_int(obj, "settled_ms", p->settled_ms);
    rc |= s_set_int(obj, "timeout_at_ms", p->timeout_at_ms);
    rc |= s_set_int(obj, "heartbeat_ms", p->heartbeat_ms);
    rc |= s_set_int(obj, "heartbeat_at_ms", p->heartbeat_at_ms);
    rc |= s_set_str(obj, "idempotency_key", p->idempotency_key);
    if (p->label_count > 0) {
        json_t *labels = json_object();
        rc |= json_object_set_new(obj, "labels", labels);
        for (size_t i = 0; labels && i < p->label_count; i++) {
            const char *k = p->labels[i].key ? p->labels[i].key : "";
            const char *v = p->labels[i].value ? p->labels[i].value : "";
            json_t *key = s_text(k, strlen(k));
            rc |= key ? json_object_set_new(labels, json_string_value(key),
                                            s_text(v, strlen(v)))
                      : -1;
            json_decref(key);
        }
    }
    if (rc != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

char *
pm_promise_to_json(const pm_promise_t *p)
{
    json_t *obj = pm_promise_to_json_obj(p);
    if (!obj)
        return NULL;
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return text;
}

char *
pm_promise_list_to_json(const pm_promise_list_t *list)
{
    json_t *doc = json_object();
    json_t *items = json_array();
    char *text = NULL;
    if (!doc || !items)
        goto out;
    for (size_t i = 0; i < list->count; i++) {
        json_t *obj = pm_promise_to_json_obj(list->items[i]);
        if (!obj || json_array_append_new(items, obj) != 0)
            goto out;
    }
    if (json_object_set(doc, "promises", items) != 0)
        goto out;
    if (s_set_str(doc, "cursor", list->cursor) != 0)
        goto out;
    text = json_dumps(doc, JSON_COMPACT);
out:
    json_decref(items);
    json_decref(doc);
    return text;
}
