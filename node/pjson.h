/*
 * pjson.h - the one JSON shape of a promise.
 *
 * Shared by the `pmesh` CLI and the HTTP gateway so that both print a
 * promise the same way:
 *
 *   {"id":"..","state":"resolved","value":"..","reason":"..","created_ms":..,
 *    "settled_ms":..,"timeout_at_ms":..,"heartbeat_ms":..,"heartbeat_at_ms":..,
 *    "idempotency_key":"..","labels":{"k":"v"}}
 *
 * `value` is a JSON string when the bytes are valid UTF-8 without NUL;
 * otherwise `value` is left out and `value_b64` carries the bytes in base64.
 * Fields that are empty or zero are left out, except id and state, and except
 * the value of a resolved promise (an empty value is still a value).
 */
#ifndef PM_PJSON_H
#define PM_PJSON_H

#include <jansson.h>
#include <stdbool.h>

#include "pmesh.h"

/* The promise as one line of JSON (no trailing newline). Caller frees;
 * NULL only if memory runs out. */
char *pm_promise_to_json(const pm_promise_t *p);

/* The same as a jansson object, for callers that embed it in a larger
 * document. Caller owns the reference (json_decref). */
json_t *pm_promise_to_json_obj(const pm_promise_t *p);

/* A page of promises as one line: {"promises":[..],"cursor":".."}; cursor is
 * left out on the last page. Caller frees; NULL only if memory runs out. */
char *pm_promise_list_to_json(const pm_promise_list_t *list);

/* True if buf[0..len) is valid UTF-8 (no overlong forms, no surrogates, no
 * code point above U+10FFFF) and contains no NUL byte. */
bool pm_pjson_is_text(const void *buf, size_t len);

/* Standard base64 (RFC 4648, with padding) of buf[0..len). Caller frees. */
char *pm_pjson_base64(const void *buf, size_t len);

#endif
