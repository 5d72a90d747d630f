// ESM entry of @pmesh/client: the same objects as the CommonJS entry (loaded
// through require, so that both entries share one instance of the library).
import {createRequire} from 'node:module';

const pmesh = createRequire(import.meta.url)('./lib/index.js');

export const {
  Client, Worker, DEFAULT_SOCKET, callbackUrl, parseDuration, errorFor,
  decodeValues, decodeOutcomes, decodeFailures, NotSettleable, Unavailable,
  PmeshError, ProtocolError, Rejected, Internal, NotFound, AlreadySettled, TimedOut,
  ValueTooLarge, BadRequest, AgentShuttingDown, WaitTimeout, Unreachable, BadVersion,
  NotHolder, LimitReached, Limit, OwnerLost, NoSession,
} = pmesh;
export default pmesh;
