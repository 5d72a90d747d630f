'use strict';
const errors = require('./errors');

const DEFAULT_SOCKET = '/run/pmesh/agent.sock';

function socketPath(socket) {
  return socket || process.env.PMESH_SOCKET || DEFAULT_SOCKET;
}

const parsed = new Map(); // the few duration strings a program uses
const UNITS = {ms: 1, s: 1000, m: 60000, h: 3600000};

// A duration in milliseconds: a number (milliseconds) or a string like
// "250ms", "30s", "5m", "2h" (a bare number string is milliseconds, as in
// the C library's pm_parse_duration).
function duration(v, what) {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw new errors.BadRequest(`${what}: not a duration: ${v}`);
    return Math.round(v);
  }
  let ms = parsed.get(v);
  if (ms === undefined) {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(String(v));
    if (!m) throw new errors.BadRequest(`${what}: not a duration: ${JSON.stringify(v)}`);
    ms = Math.round(parseFloat(m[1]) * UNITS[m[2] || 'ms']);
    if (parsed.size < 1024) parsed.set(v, ms);
  }
  return ms;
}

// A value as bytes: a Buffer, any ArrayBufferView / ArrayBuffer, or a
// string (sent as UTF-8). null / undefined: empty.
function bytes(v, what) {
  if (v === undefined || v === null) return EMPTY;
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  throw new errors.BadRequest(`${what}: a value is a Buffer, a Uint8Array or a string, not ${typeof v}`);
}
const EMPTY = Buffer.alloc(0);

// A decoded bytes field as a Buffer of the caller's own: decoded fields are
// views into the buffer their message was read into, which small messages
// share (a read holds many), so a small value is copied rather than keep
// that whole buffer alive; a large one (a frame of its own) is not.
function ownBytes(v) {
  if (!v || v.length === 0) return Buffer.alloc(0);
  if (v.length * 2 >= v.buffer.byteLength) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.length);
  return Buffer.from(v);
}

function labelList(labels) {
  if (!labels) return [];
  const items = labels instanceof Map ? [...labels] : Array.isArray(labels) ? labels : Object.entries(labels);
  return items.map(([key, value]) => ({key: String(key), value: String(value)}));
}

// Base URL + id: where an outside system POSTs {"value": ...} (with
// Authorization: Bearer <token>) to resolve a promise through an agent's HTTP
// gateway. base is the agent's http_public_url (default $PMESH_HTTP_URL).
function callbackUrl(base, id) {
  const b = base || process.env.PMESH_HTTP_URL;
  if (!b) throw new TypeError("no base URL: pass the gateway's http_public_url or set $PMESH_HTTP_URL");
  return `${b.replace(/\/+$/, '')}/v1/promises/${id}/resolve`;
}

module.exports = {DEFAULT_SOCKET, socketPath, duration, bytes, labelList, callbackUrl, EMPTY, ownBytes};
