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

// uint64 fields decode as Long objects when the long package is present
// (protobufjs decides that globally; we do not change it for the host
// application): every 64-bit number is read through num().
function num(v) {
  if (v === undefined || v === null) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

const STATES = ['none', 'pending', 'resolved', 'rejected', 'canceled', 'timedout'];
const STATE = {pending: 1, resolved: 2, rejected: 3, canceled: 4, timedout: 5};

module.exports = {WIRE_VERSION, Envelope, num, STATES, STATE, protobuf};
