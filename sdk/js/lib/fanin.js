'use strict';
// The list results of combinators (proto/PROTOCOL.md, section 5a) decoded
// into native arrays. Inside the JSON, a value or reason is a JSON string
// when its bytes were valid UTF-8 (a string here) and {"base64": "..."}
// otherwise (a Buffer here), so arbitrary bytes round-trip.

// The Combinator enum of proto/pmesh.proto.
const COMBINATORS = {all: 1, any: 2, race: 3, allSettled: 4};

function protocolError(msg) {
  const {ProtocolError} = require('./errors');
  return new ProtocolError(msg);
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function item(v) {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 &&
      typeof v.base64 === 'string' && v.base64.length % 4 === 0 && B64.test(v.base64)) {
    return Buffer.from(v.base64, 'base64');
  }
  throw protocolError(`not a combinator's value: ${JSON.stringify(v)}`);
}

function jsonList(data) {
  let out;
  try {
    out = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : String(data));
  } catch (e) {
    out = null;
  }
  if (!Array.isArray(out)) throw protocolError("a combinator's result is not a JSON array");
  return out;
}

// all()'s value: an array of strings (values that were UTF-8) and Buffers.
function decodeValues(data) {
  return jsonList(data).map(item);
}

// allSettled()'s value: [{state: 'resolved', value} | {state, reason}].
function decodeOutcomes(data) {
  return jsonList(data).map((o) => {
    if (!o || typeof o !== 'object' || typeof o.state !== 'string') {
      throw protocolError(`not an outcome: ${JSON.stringify(o)}`);
    }
    return o.state === 'resolved' ? {state: 'resolved', value: item(o.value === undefined ? '' : o.value)}
                                  : {state: o.state, reason: item(o.reason === undefined ? '' : o.reason)};
  });
}

// The failed inputs in the reason of a rejected all() (one) or any() (all):
// [{id, state, reason}]; [] for any other reason (e.g. the combinator's own
// timeout).
function decodeFailures(reason) {
  let v;
  try {
    v = JSON.parse(reason);
  } catch (e) {
    return [];
  }
  const items = Array.isArray(v) ? v : [v];
  const out = [];
  for (const f of items) {
    if (!f || typeof f !== 'object' || typeof f.id !== 'string' || typeof f.state !== 'string') return [];
    try {
      out.push({id: f.id, state: f.state, reason: item(f.reason === undefined ? '' : f.reason)});
    } catch (e) {
      return [];
    }
  }
  return out;
}

module.exports = {COMBINATORS, decodeValues, decodeOutcomes, decodeFailures};
