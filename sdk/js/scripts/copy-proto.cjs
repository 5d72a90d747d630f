#!/usr/bin/env node
// prepare step: copies the wire schema (proto/pmesh.proto at the top of the
// pmesh repository, the only source of truth) into this package, so that a
// packed or installed @pmesh/client carries the exact schema it was built
// from. lib/proto.js loads it at run time with protobufjs. Never edit the copy.
'use strict';
const fs = require('fs');
const path = require('path');

const here = path.resolve(__dirname, '..');
const src = path.resolve(here, '..', '..', 'proto', 'pmesh.proto');
const dst = path.join(here, 'proto', 'pmesh.proto');

if (fs.existsSync(src)) {
  fs.mkdirSync(path.dirname(dst), {recursive: true});
  const text = fs.readFileSync(src);
  if (!fs.existsSync(dst) || !fs.readFileSync(dst).equals(text)) fs.writeFileSync(dst, text);
} else if (!fs.existsSync(dst)) {
  console.error(`copy-proto: neither ${src} nor ${dst} exists`);
  process.exit(1);
}
