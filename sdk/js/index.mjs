// ESM entry of @pmesh/client: the same objects as the CommonJS entry.
import pmesh from './lib/index.js';

export const {
  Client, Worker, DEFAULT_SOCKET, callbackUrl, parseDuration, errorFor,
  PmeshError, ProtocolError, Rejected, Internal, NotFound, AlreadySettled, TimedOut,
  ValueTooLarge, BadRequest, AgentShuttingDown, WaitTimeout, Unreachable, BadVersion,
  NotHolder, LimitReached, Limit, OwnerLost, NoSession,
} = pmesh;
export default pmesh;
