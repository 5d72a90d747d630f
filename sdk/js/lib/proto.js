'use strict';
// The wire schema, loaded at run time by protobufjs from the copy of
// proto/pmesh.proto that the prepare step puts in this package (or, in a
// checkout of the pmesh repository, the original). Nothing here is generated
// by hand; every message is encoded and decoded by protobufjs from the schema.
const fs = require('fs');
const path = require('path');
const protobuf = require('protobufjs');

const WIRE_VERSION = 1;

function schemaPath() {
  const candidates = [
    path.join(__dirname, '..', 'proto', 'pmesh.proto'),
    path.join(__dirname, '..', '..', '..', 'proto', 'pmesh.proto'),
  ];
  for (const p of candidates) if (fs.existsSync(p)) return p;
  throw new Error('@pmesh/client: pmesh.proto not found (run npm install in the package, ' +
                  'whose prepare step copies it): looked in ' + candidates.join(', '));
}

const root = protobuf.loadSync(schemaPath());
const Envelope = root.lookupType('pmesh.Envelope');

// protobufjs decodes 64-bit fields as Long objects when the long package is
// present (a global choice we leave alone for the host application). Our
// replies are decoded with a reader whose 64-bit reads give plain numbers
// (every 64-bit value on pmesh's wire, ids and unix milliseconds, is far
// below 2^53): no Long per field. num() still accepts either.
class NumberReader extends protobuf.BufferReader {
  uint64() {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.len) throw new RangeError('index out of range');
      const b = this.buf[this.pos++];
      v += (b & 0x7f) * mul;
      if (!(b & 0x80)) return v;
      mul *= 128;
    }
    throw new Error('invalid varint encoding');
  }
  int64() {
    const v = this.uint64();
    return v >= 2 ** 63 ? v - 2 ** 64 : v;
  }
  fixed64() {
    const lo = this.fixed32();
    return lo + this.fixed32() * 2 ** 32;
  }
  sfixed64() {
    const lo = this.fixed32();
    return lo + this.sfixed32() * 2 ** 32;
  }
}
NumberReader.prototype.sint64 = function sint64() {
  const v = this.uint64();
  return v % 2 ? -(v + 1) / 2 : v / 2;
};

function decode(buf) {
  return Envelope.decode(new NumberReader(buf));
}

function num(v) {
  if (v === undefined || v === null) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

const STATES = ['none', 'pending', 'resolved', 'rejected', 'canceled', 'timedout'];
const STATE = {pending: 1, resolved: 2, rejected: 3, canceled: 4, timedout: 5};

module.exports = {WIRE_VERSION, Envelope, decode, num, STATES, STATE, protobuf};
