// Type declarations of @pmesh/client (hand-written: the library is plain
// JavaScript; the wire code is protobufjs reading proto/pmesh.proto).
/// <reference types="node" />
import {EventEmitter} from 'events';

/** A duration: milliseconds, or a string such as "250ms", "30s", "5m", "2h". */
export type Duration = number | string;
/** A value: bytes, or a string sent as UTF-8. */
export type Value = Buffer | Uint8Array | ArrayBuffer | string;
export type State = 'pending' | 'resolved' | 'rejected' | 'canceled' | 'timedout';
export type Labels = Record<string, string> | Map<string, string> | Array<[string, string]>;
/** A promise id, or what create() / then() returned (usable before it resolves). */
export type IdRef = string | PromiseLike<string>;

export const DEFAULT_SOCKET: string;
export function callbackUrl(base: string | undefined | null, id: string): string;
export function parseDuration(v: Duration | undefined | null, what?: string): number | undefined;

export interface PromiseInfo {
  id: string;
  state: State | 'unknown';
  value: Buffer;
  reason: string;
  createdMs: number;
  settledMs: number;
  timeoutAtMs: number;
  heartbeatMs: number;
  heartbeatAtMs: number;
  labels: Record<string, string>;
  idempotencyKey: string;
}

export interface ClientOptions {
  /** The agent's socket path; default $PMESH_SOCKET, then /run/pmesh/agent.sock. */
  socket?: string;
  /** How long a call waits for its reply before the agent counts as unreachable (default 30 s). */
  callTimeout?: Duration;
  /** How long connecting waits for the agent's hello reply (default 3 s). */
  connectTimeout?: Duration;
  /** An idle connection is closed after this long (default 2 s; 0: never), so a client does not keep the process alive; the next call reconnects. */
  idleTimeout?: Duration;
  name?: string;
}

export interface CreateOptions {
  timeout?: Duration;
  heartbeat?: Duration;
  idempotencyKey?: string;
  labels?: Labels;
  token?: boolean;
}

export interface Created {
  id: string;
  /** The settle token for an outside system; null when the agent has no token secret. */
  token: string | null;
  /** false when an idempotency key matched an existing promise. */
  created: boolean;
}

export interface ListOptions {
  state?: State;
  prefix?: string;
  label?: Labels | [string, string];
  limit?: number;
  cursor?: string;
}

export interface PromisePage {
  promises: PromiseInfo[];
  /** Pass to the next list() for the next page; "" on the last page. */
  cursor: string;
}

export class Client {
  constructor(opts?: ClientOptions);
  readonly socket: string;
  /** The agent's node name once connected. */
  readonly node: string;
  /** The largest value the agent accepts (0 before connecting). */
  readonly maxValue: number;
  /** Opens the session now (calls do it by themselves); resolves to nothing. */
  connect(): Promise<void>;
  create(opts: CreateOptions & {token: true}): Promise<Created>;
  create(opts?: CreateOptions): Promise<string>;
  resolve(id: IdRef, value?: Value | null): Promise<void>;
  reject(id: IdRef, reason?: string): Promise<void>;
  cancel(id: IdRef, reason?: string): Promise<void>;
  heartbeat(id: IdRef): Promise<void>;
  get(id: IdRef): Promise<PromiseInfo>;
  /** Resolves to the value; rejects with Rejected, WaitTimeout, NotFound, Unreachable, ... */
  wait(id: IdRef, opts?: {timeout?: Duration}): Promise<Buffer>;
  /** opts.onReject: a function run with the promise's reason when it fails; its answer settles the new promise (a catch). */
  then(id: IdRef, fn: string, opts?: {timeout?: Duration; onReject?: string}): Promise<string>;
  /** A new promise resolved with every input's value once all resolved (waitAll() decodes it); rejected at the first failure. Resolves to its id, usable at once. */
  all(ids: Iterable<IdRef>, opts?: {timeout?: Duration}): Promise<string>;
  /** A new promise resolved with the first input to resolve; rejected when every input failed. */
  any(ids: Iterable<IdRef>, opts?: {timeout?: Duration}): Promise<string>;
  /** A new promise that settles as the first input to settle. */
  race(ids: Iterable<IdRef>, opts?: {timeout?: Duration}): Promise<string>;
  /** A new promise resolved with every input's outcome once all settled (waitAllSettled() decodes it). */
  allSettled(ids: Iterable<IdRef>, opts?: {timeout?: Duration}): Promise<string>;
  /** An all()'s values: strings for values that are UTF-8, Buffers for the others. */
  waitAll(id: IdRef, opts?: {timeout?: Duration}): Promise<Array<string | Buffer>>;
  /** An allSettled()'s outcomes. */
  waitAllSettled(id: IdRef, opts?: {timeout?: Duration}): Promise<Outcome[]>;
  list(opts?: ListOptions): Promise<PromisePage>;
  status(): Promise<Record<string, any>>;
  members(): Promise<Array<Record<string, any>>>;
  close(): Promise<void>;
}

/** One input's outcome in allSettled(). */
export type Outcome =
  | {state: 'resolved'; value: string | Buffer}
  | {state: 'rejected' | 'canceled' | 'timedout'; reason: string | Buffer};

/** A failed input of a rejected all() or any(). */
export interface Failure {
  id: string;
  state: 'rejected' | 'canceled' | 'timedout';
  reason: string | Buffer;
}

export function decodeValues(data: Buffer | string): Array<string | Buffer>;
export function decodeOutcomes(data: Buffer | string): Outcome[];
export function decodeFailures(reason: string): Failure[];

export interface Invocation {
  function: string;
  targetId: string;
  invocationId: string;
  attempt: number;
}

export type Handler = (input: Buffer, info: Invocation) =>
  Value | null | undefined | void | Promise<Value | null | undefined | void>;

export interface WorkerOptions {
  socket?: string;
  /** Invocations in flight at once in this process (default 1). */
  concurrency?: number;
  name?: string;
  callTimeout?: Duration;
  /** Reconnect backoff: first try at once, then capped exponential with jitter (default 50 ms .. 2 s). */
  backoff?: {initial?: Duration; max?: Duration};
}

export class Worker extends EventEmitter {
  constructor(opts?: WorkerOptions);
  readonly socket: string;
  readonly concurrency: number;
  readonly node: string;
  /** Invocations in flight now. */
  readonly running: number;
  /** Sessions opened (registrations) so far. */
  readonly sessions: number;
  function(name: string, fn: Handler): this;
  run(): Promise<void>;
  close(opts?: {grace?: Duration}): Promise<void>;
  on(event: 'registered', listener: (info: {node: string; session: number}) => void): this;
  on(event: 'disconnected' | 'retry' | 'warning', listener: (err: Error) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export class PmeshError extends Error {
  /** The negative pm_err number of node/pmesh.h (0 for Rejected). */
  readonly code: number;
  /** Its stable name: "NOT_FOUND", ... */
  readonly errorName: string;
}
export class Internal extends PmeshError {}
export class NotFound extends PmeshError {}
export class AlreadySettled extends PmeshError {}
export class TimedOut extends PmeshError {}
export class ValueTooLarge extends PmeshError {}
export class BadRequest extends PmeshError {}
export class AgentShuttingDown extends PmeshError {}
export class WaitTimeout extends PmeshError {}
export class Unreachable extends PmeshError {}
export class BadVersion extends PmeshError {}
export class NotHolder extends PmeshError {}
export class LimitReached extends PmeshError {}
export {LimitReached as Limit};
export class OwnerLost extends PmeshError {}
export class NoSession extends PmeshError {}
/** -15: the id space's in-sync copies cannot be reached, or too few are in sync to write. */
export class Unavailable extends PmeshError {}
/** -16: settling a combinator (only its inputs settle it). */
export class NotSettleable extends PmeshError {}
/** The agent's answer did not decode: not pmesh's wire format. */
export class ProtocolError extends Unreachable {}
/** wait() on a promise that was rejected, canceled or timed out. */
export class Rejected extends PmeshError {
  readonly state: State;
  readonly reason: string;
  readonly promise: PromiseInfo;
  /** The failed inputs of a rejected all() or any(); [] otherwise. */
  readonly failures: Failure[];
}
export function errorFor(code: number, message?: string): PmeshError;

declare const pmesh: {
  Client: typeof Client;
  Worker: typeof Worker;
  DEFAULT_SOCKET: string;
  callbackUrl: typeof callbackUrl;
  parseDuration: typeof parseDuration;
  errorFor: typeof errorFor;
  PmeshError: typeof PmeshError;
  ProtocolError: typeof ProtocolError;
  Rejected: typeof Rejected;
  Internal: typeof Internal;
  NotFound: typeof NotFound;
  AlreadySettled: typeof AlreadySettled;
  TimedOut: typeof TimedOut;
  ValueTooLarge: typeof ValueTooLarge;
  BadRequest: typeof BadRequest;
  AgentShuttingDown: typeof AgentShuttingDown;
  WaitTimeout: typeof WaitTimeout;
  Unreachable: typeof Unreachable;
  BadVersion: typeof BadVersion;
  NotHolder: typeof NotHolder;
  LimitReached: typeof LimitReached;
  Limit: typeof LimitReached;
  OwnerLost: typeof OwnerLost;
  NoSession: typeof NoSession;
  Unavailable: typeof Unavailable;
  NotSettleable: typeof NotSettleable;
  decodeValues: typeof decodeValues;
  decodeOutcomes: typeof decodeOutcomes;
  decodeFailures: typeof decodeFailures;
};
export default pmesh;
