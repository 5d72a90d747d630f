'use strict';
// @pmesh/client: the Node.js SDK of pmesh. See README.md.
const {Client} = require('./client');
const {Worker} = require('./worker');
const errors = require('./errors');
const {decodeValues, decodeOutcomes, decodeFailures} = require('./fanin');
const {DEFAULT_SOCKET, callbackUrl, duration} = require('./util');

module.exports = {Client, Worker, DEFAULT_SOCKET, callbackUrl, parseDuration: duration,
                  decodeValues, decodeOutcomes, decodeFailures, ...errors};
