/**
 * Linearizability checker for client histories: Wing & Gong's backtracking search with Lowe's
 * memoization of (linearized set, model state), the algorithm Porcupine uses. Pure and
 * deterministic, so the Raft simulator and the real-process cluster tests share it.
 *
 * Each operation is an interval [call, return] with an input and an output. A history is
 * linearizable when the operations can be put in one sequential order that respects real time
 * (an op that returned before another was called comes first) and in which the model accepts
 * every (input, output). Times are plain numbers: logical ticks or milliseconds. At equal times a
 * call sorts before a return, so an op called at the instant another returns counts as concurrent
 * with it (the lenient reading: it never reports a violation that depends on a tie).
 *
 * Outcome-unknown ops (client timed out or crashed) return at +infinity: they may take effect at
 * any point after their call, or never. "Never" is the same as "after every op with a known
 * outcome", so the search succeeds as soon as every known op is linearized. Failed ops (certainly
 * not applied) are dropped, and so are unknown ops the model calls read-only.
 *
 * Beyond Porcupine, three sound cuts keep unknown ops from making the search exponential in how
 * many are pending: known ops are tried before unknown ones, and unknown ones latest call first;
 * a memoized configuration also covers any later one with the same known ops and state and more
 * unknown ops applied; and an unknown op is not applied where it changes nothing, or where
 * applying it at the start of the current run of unknown ops would give the same state.
 *
 * Cost sketch: a search step is one pass of the loop: skipping a pending call, or one model.step
 * plus a cache lookup keyed by a 64-bit Zobrist hash of the linearized set and the state hash,
 * about 0.1-1 us. The cache keeps a bitset (ops/8 bytes) and a state per visited configuration:
 * near-sequential histories visit about one configuration per op (4,000 ops: ~2 MB), and the
 * search stops at maxSteps steps or maxCacheBytes of bitsets, answering "unknown" rather than
 * running on. Unknown-outcome ops are the expensive part: each stays a candidate forever; for the
 * log, settle them first with resolveUnknownAppends when the final log is known.
 */
import { assert } from "../../util/assert";

/** Marks an output that was never observed: the op's outcome is unknown. */
export const UNKNOWN_OUTPUT: unique symbol = Symbol("unknown-output");
export type UnknownOutput = typeof UNKNOWN_OUTPUT;

export type ClientId = number | string;

/** An op whose response was received. `status` may be omitted. */
export interface CompletedOperation<I, O> {
  readonly status?: "ok";
  readonly clientId: ClientId;
  readonly input: I;
  readonly output: O;
  readonly call: number;
  /** Infinity: the response was lost but the output is known otherwise (see resolveUnknownAppends). */
  readonly return: number;
}

/** An op whose outcome is unknown (timeout, crash): applied at some point after `call`, or never. */
export interface UnknownOperation<I> {
  readonly status: "unknown";
  readonly clientId: ClientId;
  readonly input: I;
  readonly call: number;
  /** Ignored: an unknown op is treated as returning at +infinity. */
  readonly return?: number;
}

/** An op known not to have taken effect; the checker drops it. */
export interface FailedOperation<I> {
  readonly status: "fail";
  readonly clientId: ClientId;
  readonly input: I;
  readonly call: number;
  readonly return?: number;
}

export type Operation<I, O> = CompletedOperation<I, O> | UnknownOperation<I> | FailedOperation<I>;

export interface StepResult<S> {
  readonly ok: boolean;
  /** The state after the op; ignored when ok is false. */
  readonly next: S;
}

/**
 * A sequential specification. States must be treated as immutable: the search keeps old states
 * to backtrack to and to memoize. equal(a, b) must imply hash(a) === hash(b).
 */
export interface Model<S, I, O> {
  readonly name: string;
  init(): S;
  /** Applies input to state; output is UNKNOWN_OUTPUT for outcome-unknown ops (accept any). */
  step(state: S, input: I, output: O | UnknownOutput): StepResult<S>;
  equal(a: S, b: S): boolean;
  hash(state: S): string;
  /** Ops with different keys touch independent state and are checked separately (P-compositionality). */
  partitionKey?(input: I): string;
  /** True if the op never changes the state: with an unknown outcome it constrains nothing and is dropped. */
  readOnly?(input: I): boolean;
  describeOperation?(input: I, output: O | UnknownOutput): string;
  describeState?(state: S): string;
}

export interface CheckOptions {
  /** Search iterations allowed over the whole history before answering "unknown". */
  readonly maxSteps?: number;
  /** Bytes of memoized configurations (bitsets plus overhead) allowed before answering "unknown". */
  readonly maxCacheBytes?: number;
}

export const DEFAULT_MAX_STEPS = 5_000_000;
export const DEFAULT_MAX_CACHE_BYTES = 256 * 1024 * 1024;
/** Rough per-entry cost of a cache entry besides its bitset: object, array slot, key share. */
const CACHE_ENTRY_OVERHEAD_BYTES = 96;

export interface CheckOk {
  readonly ok: true;
  readonly steps: number;
  readonly partitions: number;
}

/** An op that could have been linearized next after the longest prefix, and was not. */
export interface StuckOperation {
  /** Index into the history passed to the checker. */
  readonly index: number;
  /** Whether the model accepts the op right after the prefix (if so, it failed further on). */
  readonly stepAccepted: boolean;
  readonly description: string;
}

export interface CheckViolation {
  readonly ok: false;
  /** One line. */
  readonly reason: string;
  /** Several lines: the end of the longest prefix, the state after it, the stuck ops. */
  readonly explanation: string;
  /** The partition key that failed; null when the model is not partitioned. */
  readonly partition: string | null;
  /** History indices of the longest linearizable prefix found, in linearization order. */
  readonly linearized: readonly number[];
  /** The ops that were candidates to go next after that prefix; none leads to a full order. */
  readonly stuck: readonly StuckOperation[];
  readonly stateAfterLinearized: string;
  readonly steps: number;
  readonly partitions: number;
}

export interface CheckUnknown {
  readonly ok: "unknown";
  readonly reason: string;
  readonly partition: string | null;
  readonly steps: number;
  readonly partitions: number;
}

export type CheckResult = CheckOk | CheckViolation | CheckUnknown;

/** Checks that history is linearizable with respect to model, within the step budget. */
export function checkLinearizability<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  options: CheckOptions = {},
): CheckResult {
  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  const maxCacheBytes = options.maxCacheBytes ?? DEFAULT_MAX_CACHE_BYTES;
  assert(Number.isSafeInteger(maxSteps) && maxSteps >= 0, `maxSteps must be a non-negative integer, got ${maxSteps}`);
  assert(maxCacheBytes > 0, `maxCacheBytes must be positive, got ${maxCacheBytes}`);

  // Partitions in order of first appearance, so results do not depend on Map iteration quirks.
  const partitions = new Map<string, number[]>();
  for (let index = 0; index < history.length; index++) {
    const op = history[index];
    validateOperation(op, index);
    if (op.status === "fail") continue;
    // Left in, it would stay a candidate to the end and every scan of the pending calls would pass it.
    if (op.status === "unknown" && model.readOnly?.(op.input) === true) continue;
    const key = model.partitionKey ? model.partitionKey(op.input) : "";
    let members = partitions.get(key);
    if (members === undefined) {
      members = [];
      partitions.set(key, members);
    }
    members.push(index);
  }

  let steps = 0;
  for (const [key, members] of partitions) {
    const partition = model.partitionKey ? key : null;
    const search = searchPartition(model, history, members, maxSteps - steps, maxCacheBytes);
    steps += search.steps;
    assert(steps <= maxSteps, "search overran its step budget");
    switch (search.kind) {
      case "ok":
        break;
      case "budget":
      case "memory":
        return {
          ok: "unknown",
          reason:
            (search.kind === "budget"
              ? `search budget of ${maxSteps} steps exhausted`
              : `search cache reached ${maxCacheBytes} bytes after ${steps} steps`) +
            (partition === null ? "" : ` in partition ${JSON.stringify(partition)}`) +
            ` (${members.length} ops); raise ${search.kind === "budget" ? "maxSteps" : "maxCacheBytes"} or shorten the history`,
          partition,
          steps,
          partitions: partitions.size,
        };
      case "violation":
        return violation(model, history, members, partition, search.longest, steps, partitions.size);
      default: {
        const never: never = search;
        throw new Error(`unhandled search result ${JSON.stringify(never)}`);
      }
    }
  }
  return { ok: true, steps, partitions: partitions.size };
}

function validateOperation<I, O>(op: Operation<I, O>, index: number): void {
  assert(Number.isFinite(op.call), `op ${index}: call time must be a finite number, got ${op.call}`);
  switch (op.status) {
    case undefined:
    case "ok":
      assert(typeof op.return === "number" && !Number.isNaN(op.return), `op ${index}: return time must be a number, got ${op.return}`);
      assert(op.return >= op.call, `op ${index}: returns at ${op.return} before its call at ${op.call}`);
      return;
    case "unknown":
    case "fail":
      return;
    default: {
      const never: never = op;
      assert(false, `op ${index}: unknown status ${JSON.stringify((never as { status: unknown }).status)}`);
    }
  }
}

type SearchOutcome =
  | { readonly kind: "ok"; readonly steps: number }
  | { readonly kind: "budget"; readonly steps: number }
  | { readonly kind: "memory"; readonly steps: number }
  | { readonly kind: "violation"; readonly steps: number; readonly longest: readonly number[] };

interface CacheEntry<S> {
  readonly bits: Uint32Array;
  readonly state: S;
}

interface Frame<S> {
  readonly node: number;
  /** The state before this op. */
  readonly state: S;
  /** For an unknown op: the state before the run of consecutive unknown ops it ends. */
  readonly runStart: S | null;
}

const NONE = -1;
const HEAD = 0;

/**
 * Wing & Gong over one partition. Events live in a doubly linked list (node 0 is a head
 * sentinel); linearizing an op unlinks its call and return, backtracking relinks them in LIFO
 * order. `longest` holds local op numbers (positions in members).
 */
function searchPartition<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  members: readonly number[],
  maxSteps: number,
  maxCacheBytes: number,
): SearchOutcome {
  const opCount = members.length;
  const known = new Uint8Array(opCount);
  let knownRemaining = 0;
  let hasUnknown = false;

  // Event e (0-based) becomes node e + 1 once sorted.
  const eventOp = new Int32Array(2 * opCount);
  const eventIsCall = new Uint8Array(2 * opCount);
  const eventTime = new Float64Array(2 * opCount);
  for (let local = 0; local < opCount; local++) {
    const op = history[members[local]];
    const isKnown = op.status !== "unknown";
    known[local] = isKnown ? 1 : 0;
    if (isKnown) knownRemaining++;
    else hasUnknown = true;
    eventOp[2 * local] = local;
    eventIsCall[2 * local] = 1;
    eventTime[2 * local] = op.call;
    eventOp[2 * local + 1] = local;
    eventIsCall[2 * local + 1] = 0;
    eventTime[2 * local + 1] = op.status === "unknown" || op.status === "fail" ? Infinity : op.return;
  }
  const order = Array.from({ length: 2 * opCount }, (_, e) => e);
  // By time (Infinity - Infinity is NaN, which falls through), calls first at a tie, then op order.
  order.sort((a, b) => eventTime[a] - eventTime[b] || eventIsCall[b] - eventIsCall[a] || eventOp[a] - eventOp[b]);

  const nodeCount = 2 * opCount + 1;
  const next = new Int32Array(nodeCount);
  const prev = new Int32Array(nodeCount);
  const nodeOp = new Int32Array(nodeCount).fill(NONE);
  const nodeIsCall = new Uint8Array(nodeCount);
  const match = new Int32Array(nodeCount).fill(NONE);
  const returnNode = new Int32Array(opCount).fill(NONE);
  for (let node = 0; node < nodeCount; node++) {
    next[node] = node + 1 < nodeCount ? node + 1 : NONE;
    prev[node] = node - 1;
  }
  for (let position = 0; position < order.length; position++) {
    const node = position + 1;
    nodeOp[node] = eventOp[order[position]];
    nodeIsCall[node] = eventIsCall[order[position]];
    if (!nodeIsCall[node]) returnNode[nodeOp[node]] = node;
  }
  for (let node = 1; node < nodeCount; node++) {
    if (nodeIsCall[node]) {
      match[node] = returnNode[nodeOp[node]];
      assert(match[node] > node, "a call must sort before its return");
    }
  }

  const lift = (call: number): void => {
    const ret = match[call];
    next[prev[call]] = next[call];
    prev[next[call]] = prev[call];
    next[prev[ret]] = next[ret];
    if (next[ret] !== NONE) prev[next[ret]] = prev[ret];
  };
  const unlift = (call: number): void => {
    const ret = match[call];
    next[prev[ret]] = ret;
    if (next[ret] !== NONE) prev[next[ret]] = ret;
    next[prev[call]] = call;
    prev[next[call]] = call;
  };

  // Linearized set as a bitset plus an incrementally maintained 64-bit Zobrist hash.
  const bits = new Uint32Array(Math.ceil(opCount / 32));
  const zobristLow = new Int32Array(opCount);
  const zobristHigh = new Int32Array(opCount);
  for (let local = 0; local < opCount; local++) {
    zobristLow[local] = mix32(2 * local + 1);
    zobristHigh[local] = mix32(2 * local + 2 + 0x5bd1e995);
  }
  let hashLow = 0;
  let hashHigh = 0;
  const unknownMask = new Uint32Array(bits.length);
  for (let local = 0; local < opCount; local++) if (!known[local]) unknownMask[local >>> 5] |= 1 << (local & 31);
  // The hash covers only ops with known outcomes: entries with the same known set and state share
  // a bucket, and one with fewer unknown ops applied subsumes the others (see dominates).
  const toggle = (local: number): void => {
    bits[local >>> 5] ^= 1 << (local & 31);
    if (!known[local]) return;
    hashLow ^= zobristLow[local];
    hashHigh ^= zobristHigh[local];
  };
  const cache = new Map<string, CacheEntry<S>[]>();
  const cacheEntryBytes = bits.byteLength + CACHE_ENTRY_OVERHEAD_BYTES;
  let cacheBytes = 0;

  const inputs = members.map((index) => history[index].input);
  const outputs = members.map((index): O | UnknownOutput => {
    const op = history[index];
    return op.status === "unknown" || op.status === "fail" ? UNKNOWN_OUTPUT : op.output;
  });

  const stack: Frame<S>[] = [];
  /**
   * Cuts for an unknown op, both sound because an unknown op may be left unapplied. It is
   * redundant if it leaves the state as it is (it can as well never have happened), or if it
   * ends a run of unknown ops and applying it first in that run gives the same state: that
   * configuration has fewer unknown ops applied and is explored from the run's start. For the
   * register, a run of unknown puts collapses to its last put instead of every subset.
   */
  const redundantUnknown = (local: number, after: S): boolean => {
    if (model.equal(after, state)) return true;
    const start = runStartOf(stack, known, nodeOp);
    if (start === null) return false;
    const direct = model.step(start, inputs[local], outputs[local]);
    return direct.ok && model.equal(direct.next, after);
  };
  let longest: number[] = [];
  let state = model.init();
  let steps = 0;
  let entry = next[HEAD];
  // Pass 0 walks forward over the pending calls trying ops with known outcomes; pass 1 then walks
  // back over them trying unknown ones, latest call first. An unknown op still pending long after
  // its call most likely never happened, and trying it first sends the search down dead ends.
  let pass = 0;

  while (knownRemaining > 0) {
    if (steps >= maxSteps) return { kind: "budget", steps };
    steps++;
    assert(entry !== NONE, "ran off the event list while known ops remain unlinearized");
    if (entry !== HEAD && nodeIsCall[entry]) {
      const local = nodeOp[entry];
      if ((pass === 0) === (known[local] === 1)) {
        const result = model.step(state, inputs[local], outputs[local]);
        if (result.ok && (pass === 0 || !redundantUnknown(local, result.next))) {
          toggle(local);
          const key = `${hashLow >>> 0}.${hashHigh >>> 0}.${model.hash(result.next)}`;
          let bucket = cache.get(key);
          const seen =
            bucket !== undefined && bucket.some((c) => dominates(c.bits, bits, unknownMask) && model.equal(c.state, result.next));
          if (!seen) {
            if (bucket === undefined) {
              bucket = [];
              cache.set(key, bucket);
            }
            if (cacheBytes + cacheEntryBytes > maxCacheBytes) return { kind: "memory", steps };
            cacheBytes += cacheEntryBytes;
            bucket.push({ bits: bits.slice(), state: result.next });
            stack.push({ node: entry, state, runStart: known[local] ? null : runStartOf(stack, known, nodeOp) ?? state });
            state = result.next;
            lift(entry);
            if (known[local]) knownRemaining--;
            entry = next[HEAD];
            pass = 0;
            continue;
          }
          toggle(local);
        }
      }
      entry = pass === 0 ? next[entry] : prev[entry];
      continue;
    }
    // At the earliest pending return (pass 0) or back at the head (pass 1): every candidate was tried.
    if (pass === 0 && hasUnknown) {
      pass = 1;
      entry = prev[entry];
      continue;
    }
    if (stack.length === 0) return { kind: "violation", steps, longest };
    if (stack.length > longest.length) longest = stack.map((frame) => nodeOp[frame.node]);
    const top = stack.pop() as Frame<S>;
    state = top.state;
    const local = nodeOp[top.node];
    toggle(local);
    unlift(top.node);
    if (known[local]) knownRemaining++;
    pass = known[local] ? 0 : 1;
    entry = pass === 0 ? next[top.node] : prev[top.node];
  }
  return { kind: "ok", steps };
}

/** The state before the run of unknown ops on top of the stack, or null if the top op is known. */
function runStartOf<S>(stack: readonly Frame<S>[], known: Uint8Array, nodeOp: Int32Array): S | null {
  const top = stack[stack.length - 1];
  if (top === undefined || known[nodeOp[top.node]]) return null;
  return top.runStart;
}

/**
 * Whether a visited configuration (same state) makes the current one redundant: the same ops with
 * known outcomes linearized, and a subset of the unknown ones. An unknown op left unapplied can
 * still be applied later or never, so the visited one has every completion the current one has.
 * Cutting the current one is then sound: with exact matches alone, every subset of pending
 * unknown ops would be a separate configuration and the search exponential in their number.
 */
function dominates(visited: Uint32Array, current: Uint32Array, unknownMask: Uint32Array): boolean {
  for (let i = 0; i < visited.length; i++) {
    if ((visited[i] & ~current[i]) !== 0 || (current[i] & ~visited[i] & ~unknownMask[i]) !== 0) return false;
  }
  return true;
}

/** A 32-bit integer finalizer (murmur3 fmix32). */
function mix32(x: number): number {
  let h = x | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** FNV-1a over a string's UTF-16 code units, continuing from seed. */
function fnv1a(text: string, seed = 0x811c9dc5): number {
  let h = seed | 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const WITNESS_PREFIX_SHOWN = 10;
const WITNESS_STUCK_SHOWN = 20;

/** Builds the witness: the longest prefix, the state after it, and which ops could not go next. */
function violation<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  members: readonly number[],
  partition: string | null,
  longest: readonly number[],
  steps: number,
  partitionCount: number,
): CheckViolation {
  const describeOp = (index: number): string => {
    const op = history[index];
    const output = op.status === "unknown" || op.status === "fail" ? UNKNOWN_OUTPUT : op.output;
    const text = model.describeOperation ? model.describeOperation(op.input, output) : defaultDescribeOperation(op.input, output);
    const end = op.status === "unknown" ? "?" : String(op.return);
    return `#${index} client ${String(op.clientId)} [${op.call}, ${end}] ${text}`;
  };
  const describeState = (s: S): string => (model.describeState ? model.describeState(s) : describeValue(s));

  let state = model.init();
  const inPrefix = new Uint8Array(members.length);
  for (const local of longest) {
    const op = history[members[local]];
    const output = op.status === "unknown" || op.status === "fail" ? UNKNOWN_OUTPUT : op.output;
    const result = model.step(state, op.input, output);
    assert(result.ok, "replaying the longest linearizable prefix must succeed: is model.step deterministic?");
    state = result.next;
    inPrefix[local] = 1;
  }

  // The ops that could go next: every remaining op called no later than the earliest remaining return.
  let earliestReturn = Infinity;
  for (let local = 0; local < members.length; local++) {
    const op = history[members[local]];
    if (!inPrefix[local] && (op.status === undefined || op.status === "ok")) earliestReturn = Math.min(earliestReturn, op.return);
  }
  const stuck: StuckOperation[] = [];
  for (let local = 0; local < members.length; local++) {
    const index = members[local];
    const op = history[index];
    if (inPrefix[local] || op.call > earliestReturn) continue;
    const output = op.status === "unknown" || op.status === "fail" ? UNKNOWN_OUTPUT : op.output;
    stuck.push({ index, stepAccepted: model.step(state, op.input, output).ok, description: describeOp(index) });
  }

  const linearized = longest.map((local) => members[local]);
  const where = partition === null ? "" : ` in partition ${JSON.stringify(partition)}`;
  const reason =
    `not linearizable under ${model.name}${where}: longest linearizable prefix has ` +
    `${linearized.length} of ${members.length} ops`;
  const shownPrefix = linearized.slice(-WITNESS_PREFIX_SHOWN);
  const lines = [
    reason,
    `end of the longest linearizable prefix (${shownPrefix.length} of ${linearized.length}):`,
    ...shownPrefix.map((index) => `  ${describeOp(index)}`),
    `state after it: ${describeState(state)}`,
    `none of these can be linearized next (rejected: the model refuses the output; accepted: ` +
      `it leads to a dead end later):`,
    ...stuck.slice(0, WITNESS_STUCK_SHOWN).map((s) => `  ${s.stepAccepted ? "accepted" : "rejected"} ${s.description}`),
  ];
  if (stuck.length > WITNESS_STUCK_SHOWN) lines.push(`  ... and ${stuck.length - WITNESS_STUCK_SHOWN} more`);
  return {
    ok: false,
    reason,
    explanation: lines.join("\n"),
    partition,
    linearized,
    stuck,
    stateAfterLinearized: describeState(state),
    steps,
    partitions: partitionCount,
  };
}

function describeValue(value: unknown): string {
  if (value === UNKNOWN_OUTPUT) return "?";
  if (value === undefined) return "undefined";
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol") return value.toString();
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text;
}

function defaultDescribeOperation(input: unknown, output: unknown): string {
  return `${describeValue(input)} -> ${describeValue(output)}`;
}

// ---------------------------------------------------------------------------------------------
// Key-value register: put/get per key, each key checked on its own.

export type KvInput =
  | { readonly type: "put"; readonly key: string; readonly value: string }
  | { readonly type: "get"; readonly key: string };
/** get: the value read, null if the key was never written. put: ignored (record null). */
export type KvOutput = string | null;
/** The value of the one key in a partition. */
export type KvState = string | null;

/** A register per key; partitioned by key, so a partition's state is a single value. */
export const kvModel: Model<KvState, KvInput, KvOutput> = {
  name: "kv-register",
  init: () => null,
  step(state, input, output) {
    switch (input.type) {
      case "put":
        return { ok: true, next: input.value };
      case "get":
        return { ok: output === UNKNOWN_OUTPUT || output === state, next: state };
      default: {
        const never: never = input;
        throw new Error(`unhandled kv input ${JSON.stringify(never)}`);
      }
    }
  },
  equal: (a, b) => a === b,
  hash: (state) => (state === null ? "-" : `=${state}`),
  partitionKey: (input) => input.key,
  readOnly: (input) => input.type === "get",
  describeOperation(input, output) {
    switch (input.type) {
      case "put":
        return `put(${JSON.stringify(input.key)}, ${JSON.stringify(input.value)})${output === UNKNOWN_OUTPUT ? " -> ?" : ""}`;
      case "get":
        return `get(${JSON.stringify(input.key)}) -> ${describeValue(output)}`;
      default: {
        const never: never = input;
        throw new Error(`unhandled kv input ${JSON.stringify(never)}`);
      }
    }
  },
  describeState: (state) => (state === null ? "(unset)" : JSON.stringify(state)),
};

// ---------------------------------------------------------------------------------------------
// Append-only log: the ledger's own model.

export type LogInput =
  /** Dedup: a retry with the same (clientId, requestId) returns the original index, appends nothing. */
  | {
      readonly type: "append";
      readonly value: string;
      readonly clientId?: ClientId;
      readonly requestId?: string | number;
    }
  /** 1-based; returns the value or null when beyond the end. */
  | { readonly type: "read"; readonly index: number }
  | { readonly type: "length" };
/** append: the 1-based index placed at. read: the value or null. length: the entry count. */
export type LogOutput = number | string | null;

/**
 * A log state is a node in a tree of logs sharing prefixes: entry `length` with a pointer to the
 * log without it. Nodes are interned (one object per distinct log under a root), so equality under
 * one root is identity; skew-binary jump pointers make read(i) O(log n).
 */
export interface LogState {
  readonly length: number;
  readonly value: string;
  /** Dedup key of the append that created this entry; null when it had none. */
  readonly dedupKey: string | null;
  readonly parent: LogState | null;
  /** Rolling hash of every (value, dedupKey) up to here. */
  readonly digest: number;
}

class LogNode implements LogState {
  readonly root: LogRoot;
  readonly jump: LogNode;
  private children: Map<string, LogNode> | null = null;

  constructor(
    readonly length: number,
    readonly value: string,
    readonly dedupKey: string | null,
    readonly parent: LogNode | null,
    readonly digest: number,
    root: LogRoot | null,
  ) {
    this.root = root ?? (this as unknown as LogRoot);
    if (parent === null) {
      this.jump = this;
    } else {
      const p = parent;
      this.jump = p.length - p.jump.length === p.jump.length - p.jump.jump.length ? p.jump.jump : p;
    }
  }

  /** The interned log with one more entry. */
  child(value: string, dedupKey: string | null): LogNode {
    const key = dedupKey === null ? `-${value}` : `${dedupKey.length}:${dedupKey}${value}`;
    if (this.children === null) this.children = new Map();
    let node = this.children.get(key);
    if (node === undefined) {
      const digest = fnv1a(dedupKey ?? "", fnv1a(value, Math.imul(this.digest ^ (dedupKey === null ? 1 : 2), 0x9e3779b1)));
      node = new LogNode(this.length + 1, value, dedupKey, this, digest, this.root);
      this.children.set(key, node);
      if (dedupKey !== null) this.root.register(dedupKey, node);
    }
    return node;
  }

  /** The prefix of this log with `length` entries. */
  ancestorAt(length: number): LogNode {
    assert(length >= 0 && length <= this.length, `ancestorAt(${length}) outside 0..${this.length}`);
    let node: LogNode = this;
    while (node.length > length) {
      if (node.jump.length >= length) node = node.jump;
      else node = node.parent as LogNode;
    }
    return node;
  }
}

/** The empty log; holds, for each dedup key, every node ever created with it under this root. */
class LogRoot extends LogNode {
  private readonly byDedupKey = new Map<string, LogNode[]>();

  constructor() {
    super(0, "", null, null, 0x811c9dc5, null);
  }

  register(dedupKey: string, node: LogNode): void {
    const nodes = this.byDedupKey.get(dedupKey);
    if (nodes === undefined) this.byDedupKey.set(dedupKey, [node]);
    else nodes.push(node);
  }

  /** The index at which log already holds an append with dedupKey, or 0. */
  findDedup(log: LogNode, dedupKey: string): number {
    for (const node of this.byDedupKey.get(dedupKey) ?? []) {
      if (node.length <= log.length && log.ancestorAt(node.length) === node) return node.length;
    }
    return 0;
  }
}

function asLogNode(state: LogState): LogNode {
  assert(state instanceof LogNode, "log states must come from logModel");
  return state;
}

function logDedupKey(input: { readonly clientId?: ClientId; readonly requestId?: string | number }): string | null {
  if (input.requestId === undefined) return null;
  assert(input.clientId !== undefined, "an append with a requestId needs a clientId");
  return JSON.stringify([input.clientId, input.requestId]);
}

/** The ledger's append-only log with retry dedup; not partitioned (one log). */
export const logModel: Model<LogState, LogInput, LogOutput> = {
  name: "append-only-log",
  init: () => new LogRoot(),
  step(state, input, output) {
    const log = asLogNode(state);
    switch (input.type) {
      case "append": {
        const dedupKey = logDedupKey(input);
        const original = dedupKey === null ? 0 : log.root.findDedup(log, dedupKey);
        if (original > 0) return { ok: output === UNKNOWN_OUTPUT || output === original, next: log };
        const next = log.child(input.value, dedupKey);
        return { ok: output === UNKNOWN_OUTPUT || output === next.length, next };
      }
      case "read": {
        const inRange = Number.isInteger(input.index) && input.index >= 1 && input.index <= log.length;
        const expected = inRange ? log.ancestorAt(input.index).value : null;
        return { ok: output === UNKNOWN_OUTPUT || output === expected, next: log };
      }
      case "length":
        return { ok: output === UNKNOWN_OUTPUT || output === log.length, next: log };
      default: {
        const never: never = input;
        throw new Error(`unhandled log input ${JSON.stringify(never)}`);
      }
    }
  },
  equal(a, b) {
    if (a === b) return true;
    let x = asLogNode(a);
    let y = asLogNode(b);
    if (x.root === y.root || x.length !== y.length || x.digest !== y.digest) return false;
    // Different roots (states from two checks): compare entry by entry.
    while (x.length > 0) {
      if (x.value !== y.value || x.dedupKey !== y.dedupKey) return false;
      x = x.parent as LogNode;
      y = y.parent as LogNode;
    }
    return true;
  },
  hash: (state) => `${state.length}:${state.digest}`,
  readOnly: (input) => input.type !== "append",
  describeOperation(input, output) {
    const out = describeValue(output);
    switch (input.type) {
      case "append": {
        const dedup = input.requestId === undefined ? "" : `, ${String(input.clientId)}/${String(input.requestId)}`;
        return `append(${JSON.stringify(input.value)}${dedup}) -> ${out}`;
      }
      case "read":
        return `read(${input.index}) -> ${out}`;
      case "length":
        return `length() -> ${out}`;
      default: {
        const never: never = input;
        throw new Error(`unhandled log input ${JSON.stringify(never)}`);
      }
    }
  },
  describeState(state) {
    const log = asLogNode(state);
    const tail: string[] = [];
    for (let node: LogNode | null = log; node !== null && node.length > 0 && tail.length < 5; node = node.parent) {
      tail.unshift(`${node.length}:${JSON.stringify(node.value)}`);
    }
    return `log of length ${log.length}${log.length > 0 ? `, ending ${tail.join(" ")}` : ""}`;
  },
};

type LogOperation = Operation<LogInput, LogOutput>;

/**
 * Settles unknown-outcome appends from the log's final contents (read once the cluster has
 * healed), which keeps the search from guessing which pending append filled which slot. Only a
 * value that identifies one logical append is settled: carried by one append, or by tries that
 * share one (clientId, requestId). If the value is not in the log, its unknown tries never took
 * effect and become failed. If it sits at exactly one index i: tries of one request are
 * interchangeable (whichever took effect first, the earliest-called one could have), so the
 * earliest unknown try is kept and later unknown tries become failed (they could only have been
 * deduplicated), as does one called after a try of the same request completed; and if no try of it completed, that earliest try becomes a completed op with
 * output i and return +infinity (it happened, when is unknown). Put the final reads in the history
 * too, so a final log that lost an acknowledged append is still caught.
 */
export function resolveUnknownAppends(history: readonly LogOperation[], finalLog: readonly string[]): LogOperation[] {
  const slots = new Map<string, number[]>();
  finalLog.forEach((value, i) => {
    const list = slots.get(value);
    if (list === undefined) slots.set(value, [i + 1]);
    else list.push(i + 1);
  });
  interface Carriers {
    keys: Set<string>;
    /** The earliest return among completed tries; Infinity if none returned. */
    firstReturn: number;
    completed: boolean;
    earliestUnknown: number;
  }
  const carriers = new Map<string, Carriers>();
  history.forEach((op, index) => {
    if (op.input.type !== "append" || op.status === "fail") return;
    let entry = carriers.get(op.input.value);
    if (entry === undefined) {
      entry = { keys: new Set(), firstReturn: Infinity, completed: false, earliestUnknown: -1 };
      carriers.set(op.input.value, entry);
    }
    entry.keys.add(logDedupKey(op.input) ?? `#${index}`);
    if (op.status !== "unknown") {
      entry.completed = true;
      entry.firstReturn = Math.min(entry.firstReturn, op.return);
    }
    else if (entry.earliestUnknown === -1 || op.call < history[entry.earliestUnknown].call) entry.earliestUnknown = index;
  });
  return history.map((op, index): LogOperation => {
    if (op.status !== "unknown" || op.input.type !== "append") return op;
    const carrier = carriers.get(op.input.value);
    assert(carrier !== undefined, "every append in the history was counted");
    if (carrier.keys.size !== 1) return op;
    const at = slots.get(op.input.value) ?? [];
    const failed: LogOperation = { status: "fail", clientId: op.clientId, input: op.input, call: op.call };
    if (at.length === 0) return failed;
    if (at.length > 1) return op;
    if (index !== carrier.earliestUnknown || op.call > carrier.firstReturn) return failed;
    if (carrier.completed) return op;
    return { clientId: op.clientId, input: op.input, output: at[0], call: op.call, return: Infinity };
  });
}
