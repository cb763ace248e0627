import fc from "fast-check";
import {
  CheckResult,
  KvInput,
  KvOutput,
  LogInput,
  LogOutput,
  Operation,
  UNKNOWN_OUTPUT,
  checkLinearizability,
  resolveUnknownAppends,
  kvModel,
  logModel,
} from "../../src/raft/sim/linearizability";

type KvOp = Operation<KvInput, KvOutput>;
type LogOp = Operation<LogInput, LogOutput>;

// History builders: [call, return] intervals read like a trace.
const put = (clientId: number, key: string, value: string, call: number, ret: number): KvOp => ({
  clientId,
  input: { type: "put", key, value },
  output: null,
  call,
  return: ret,
});
const get = (clientId: number, key: string, value: string | null, call: number, ret: number): KvOp => ({
  clientId,
  input: { type: "get", key },
  output: value,
  call,
  return: ret,
});
const append = (clientId: number, value: string, index: number, call: number, ret: number, requestId?: number): LogOp => ({
  clientId,
  input: requestId === undefined ? { type: "append", value } : { type: "append", value, clientId, requestId },
  output: index,
  call,
  return: ret,
});
const read = (clientId: number, index: number, value: string | null, call: number, ret: number): LogOp => ({
  clientId,
  input: { type: "read", index },
  output: value,
  call,
  return: ret,
});
const length = (clientId: number, n: number, call: number, ret: number): LogOp => ({
  clientId,
  input: { type: "length" },
  output: n,
  call,
  return: ret,
});
function unknown<I, O>(op: Operation<I, O>): Operation<I, O> {
  return { status: "unknown", clientId: op.clientId, input: op.input, call: op.call };
}
function failed<I, O>(op: Operation<I, O>): Operation<I, O> {
  return { status: "fail", clientId: op.clientId, input: op.input, call: op.call, return: op.return };
}

const kv = (history: readonly KvOp[], maxSteps?: number): CheckResult =>
  checkLinearizability(kvModel, history, maxSteps === undefined ? {} : { maxSteps });
const log = (history: readonly LogOp[], maxSteps?: number): CheckResult =>
  checkLinearizability(logModel, history, maxSteps === undefined ? {} : { maxSteps });

/** Fails with the checker's own explanation, so a broken case says why. */
function expectOk(result: CheckResult): void {
  if (result.ok !== true) throw new Error(`expected linearizable, got ${result.ok}: ${"explanation" in result ? result.explanation : result.reason}`);
}
function expectViolation(result: CheckResult): Extract<CheckResult, { ok: false }> {
  if (result.ok !== false) throw new Error(`expected a violation, got ${JSON.stringify(result)}`);
  return result;
}

describe("kv register", () => {
  test("sequential puts and gets", () => {
    expectOk(kv([get(1, "x", null, 0, 1), put(1, "x", "a", 2, 3), get(2, "x", "a", 4, 5), put(2, "x", "b", 6, 7), get(1, "x", "b", 8, 9)]));
    expectOk(kv([]));
  });

  test("stale read after a completed write", () => {
    const result = expectViolation(kv([put(1, "x", "a", 0, 1), put(1, "x", "b", 2, 3), get(2, "x", "a", 4, 5)]));
    expect(result.partition).toBe("x");
    expect(result.linearized).toEqual([0, 1]);
    expect(result.stuck.map((s) => s.index)).toEqual([2]);
    expect(result.stuck[0].stepAccepted).toBe(false);
    expect(result.explanation).toContain('get("x") -> "a"');
    expect(result.stateAfterLinearized).toBe('"b"');
  });

  test("a get concurrent with a put may see either value", () => {
    expectOk(kv([put(1, "x", "a", 0, 1), put(1, "x", "b", 2, 6), get(2, "x", "a", 3, 4)]));
    expectOk(kv([put(1, "x", "a", 0, 1), put(1, "x", "b", 2, 6), get(2, "x", "b", 3, 4)]));
  });

  test("concurrent puts ordered either way, but one way for everyone", () => {
    const puts = [put(1, "x", "a", 0, 10), put(2, "x", "b", 0, 10)];
    expectOk(kv([...puts, get(3, "x", "a", 11, 12)]));
    expectOk(kv([...puts, get(3, "x", "b", 11, 12)]));
    expectOk(kv([...puts, get(3, "x", "a", 5, 6), get(3, "x", "b", 7, 8)]));
    expectViolation(kv([...puts, get(3, "x", "a", 11, 12), get(3, "x", "b", 13, 14)]));
    // Flip-flop while both are pending: a then b then a needs one put applied twice.
    expectViolation(kv([...puts, get(3, "x", "a", 1, 2), get(3, "x", "b", 3, 4), get(3, "x", "a", 5, 6)]));
  });

  test("unknown-outcome puts that did or did not take effect", () => {
    const lost = unknown(put(1, "x", "b", 2, 3));
    expectOk(kv([put(1, "x", "a", 0, 1), lost, get(2, "x", "b", 10, 11), get(2, "x", "b", 12, 13)]));
    expectOk(kv([put(1, "x", "a", 0, 1), lost, get(2, "x", "a", 10, 11), get(2, "x", "a", 12, 13)]));
    // Took effect late is fine too; taking effect and then being undone is not.
    expectOk(kv([put(1, "x", "a", 0, 1), lost, get(2, "x", "a", 10, 11), get(2, "x", "b", 12, 13)]));
    expectViolation(kv([put(1, "x", "a", 0, 1), lost, get(2, "x", "b", 10, 11), get(2, "x", "a", 12, 13)]));
    // It cannot take effect before it was called.
    expectViolation(kv([put(1, "x", "a", 0, 1), get(2, "x", "b", 0, 1), { ...lost, call: 5 }]));
  });

  test("failed ops are dropped", () => {
    const failedPut = failed(put(1, "x", "b", 2, 3));
    expectOk(kv([put(1, "x", "a", 0, 1), failedPut, get(2, "x", "a", 10, 11)]));
    expectViolation(kv([put(1, "x", "a", 0, 1), failedPut, get(2, "x", "b", 10, 11)]));
  });

  test("keys are checked independently and the failing key is named", () => {
    const result = expectViolation(
      kv([put(1, "x", "a", 0, 1), put(1, "y", "b", 0, 1), get(2, "x", "a", 2, 3), get(2, "y", null, 2, 3)]),
    );
    expect(result.partition).toBe("y");
    expect(result.partitions).toBe(2);
    expect(result.linearized).toEqual([1]);
  });

  test("a call at the instant of a return counts as concurrent", () => {
    expectOk(kv([put(1, "x", "a", 0, 5), get(2, "x", null, 5, 6)]));
    expectViolation(kv([put(1, "x", "a", 0, 5), get(2, "x", null, 6, 7)]));
  });

  test("malformed histories are rejected loudly", () => {
    expect(() => kv([put(1, "x", "a", 5, 4)])).toThrow(/before its call/);
    expect(() => kv([put(1, "x", "a", NaN, 4)])).toThrow(/finite/);
    expect(() => kv([put(1, "x", "a", 0, NaN)])).toThrow(/must be a number/);
  });
});

describe("append-only log", () => {
  test("sequential appends, reads and length", () => {
    expectOk(
      log([
        length(1, 0, 0, 1),
        read(1, 1, null, 1, 2),
        append(1, "a", 1, 2, 3),
        append(2, "b", 2, 4, 5),
        read(1, 1, "a", 6, 7),
        read(2, 2, "b", 6, 7),
        read(2, 3, null, 8, 9),
        read(2, 0, null, 8, 9),
        length(1, 2, 10, 11),
      ]),
    );
  });

  test("two appends getting the same index", () => {
    const result = expectViolation(log([append(1, "a", 1, 0, 5), append(2, "b", 1, 1, 6)]));
    expect(result.partition).toBeNull();
    expect(result.linearized.length).toBe(1);
    expect(result.explanation).toMatch(/append\("[ab]"\) -> 1/);
  });

  test("an index that changes value", () => {
    expectViolation(log([append(1, "a", 1, 0, 1), read(2, 1, "a", 2, 3), read(2, 1, "b", 4, 5)]));
    expectViolation(log([append(1, "a", 1, 0, 10), append(2, "b", 2, 0, 10), read(3, 1, "a", 1, 2), read(3, 1, "b", 3, 4)]));
  });

  test("a lost acknowledged append", () => {
    expectViolation(log([append(1, "a", 1, 0, 1), append(1, "b", 2, 2, 3), length(2, 1, 4, 5)]));
    expectViolation(log([append(1, "a", 1, 0, 1), read(2, 1, null, 2, 3)]));
    const result = expectViolation(log([append(1, "a", 1, 0, 1), append(2, "b", 2, 2, 3), read(3, 2, null, 4, 5)]));
    expect(result.stateAfterLinearized).toBe('log of length 2, ending 1:"a" 2:"b"');
  });

  test("concurrent appends can be ordered either way", () => {
    expectOk(log([append(1, "a", 1, 0, 10), append(2, "b", 2, 1, 9), read(3, 1, "a", 11, 12)]));
    expectOk(log([append(1, "a", 2, 0, 10), append(2, "b", 1, 1, 9), read(3, 1, "b", 11, 12)]));
    expectViolation(log([append(1, "a", 2, 0, 10), append(2, "b", 1, 1, 9), read(3, 1, "a", 11, 12)]));
    // A length read while both are in flight may see 0, 1 or 2 but never shrink.
    expectOk(log([append(1, "a", 1, 0, 10), append(2, "b", 2, 0, 10), length(3, 1, 1, 2), length(3, 2, 3, 4)]));
    expectViolation(log([append(1, "a", 1, 0, 10), append(2, "b", 2, 0, 10), length(3, 2, 1, 2), length(3, 1, 3, 4)]));
  });

  test("unknown-outcome appends that did or did not take effect", () => {
    const maybe = unknown(append(1, "x", 0, 2, 3));
    // Took effect: a later read sees it at index 2.
    expectOk(log([append(1, "a", 1, 0, 1), maybe, read(2, 2, "x", 10, 11), append(2, "b", 3, 12, 13)]));
    // Did not: the next append gets index 2.
    expectOk(log([append(1, "a", 1, 0, 1), maybe, append(2, "b", 2, 10, 11), length(2, 2, 12, 13)]));
    // Took effect after a later append.
    expectOk(log([append(1, "a", 1, 0, 1), maybe, append(2, "b", 2, 10, 11), read(2, 3, "x", 12, 13)]));
    // Observed, then gone.
    expectViolation(log([append(1, "a", 1, 0, 1), maybe, read(2, 2, "x", 10, 11), length(2, 1, 12, 13)]));
    // Applied at most once.
    expectViolation(log([append(1, "a", 1, 0, 1), maybe, read(2, 2, "x", 10, 11), read(2, 3, "x", 12, 13)]));
  });

  test("a retried append with the same request id is deduplicated", () => {
    // Both tries acknowledged with the original index; the log holds it once.
    expectOk(log([append(1, "a", 1, 0, 1, 7), append(1, "a", 1, 2, 3, 7), length(2, 1, 4, 5)]));
    expectViolation(log([append(1, "a", 1, 0, 1, 7), append(1, "a", 2, 2, 3, 7)]));
    // The first try timed out but took effect: the retry returns its index, after another append.
    expectOk(
      log([unknown(append(1, "a", 0, 0, 1, 7)), append(2, "b", 2, 2, 3), append(1, "a", 1, 4, 5, 7), length(2, 2, 6, 7)]),
    );
    // The first try timed out and did not take effect: the retry appends.
    expectOk(log([unknown(append(1, "a", 0, 0, 1, 7)), append(2, "b", 1, 2, 3), append(1, "a", 2, 4, 5, 7), length(2, 2, 6, 7)]));
    // Dedup is per (client, request): another client's request 7 is a different append.
    expectOk(log([append(1, "a", 1, 0, 1, 7), append(2, "a", 2, 2, 3, 7)]));
    // Without a request id, the same value appended twice is two entries.
    expectOk(log([append(1, "a", 1, 0, 1), append(1, "a", 2, 2, 3), length(2, 2, 4, 5)]));
    expectViolation(log([append(1, "a", 1, 0, 1), append(1, "a", 1, 2, 3)]));
  });

  test("a read beyond the end returns null", () => {
    expectOk(log([append(1, "a", 1, 0, 1), read(1, 2, null, 2, 3)]));
    expectViolation(log([append(1, "a", 1, 0, 1), read(1, 2, "a", 2, 3)]));
  });

  test("wrongly typed outputs are violations, not crashes", () => {
    expectViolation(log([append(1, "a", 1, 0, 1), read(1, 1, null, 2, 3)]));
    expectViolation(log([{ clientId: 1, input: { type: "append", value: "a" }, output: "1", call: 0, return: 1 }]));
  });

  test("unknown appends settled against the final log", () => {
    const history: LogOp[] = [
      unknown(append(1, "a", 0, 0, 1)), // in the final log at 2: happened
      unknown(append(2, "b", 0, 0, 1)), // absent: never happened
      unknown(append(3, "c", 0, 0, 1, 5)), // may have placed "c" before its retry completed: stays unknown
      append(3, "c", 1, 2, 3, 5),
      unknown(append(3, "c", 0, 4, 5, 5)), // called after a try completed: could only be a duplicate
      unknown(append(4, "d", 0, 0, 1)), // two appends of "d": left unknown
      append(4, "d", 3, 0, 5),
      unknown(append(5, "e", 0, 0, 1, 8)), // two unknown tries of one request: the earliest stands for both
      unknown(append(5, "e", 0, 1, 2, 8)),
      { status: "fail", clientId: 6, input: { type: "append", value: "f" }, call: 0 },
    ];
    const settled = resolveUnknownAppends(history, ["c", "a", "d", "d", "e"]);
    expect(settled[0]).toEqual({ clientId: 1, input: { type: "append", value: "a" }, output: 2, call: 0, return: Infinity });
    expect(settled.map((op) => op.status ?? "ok")).toEqual([
      "ok", "fail", "unknown", "ok", "fail", "unknown", "ok", "ok", "fail", "fail",
    ]);
    expect(settled[7]).toMatchObject({ output: 5, return: Infinity });
    expect(settled[9]).toBe(history[9]);
    expectOk(log([...settled, read(9, 4, "d", 10, 11), length(9, 5, 12, 13)]));
    // A settled append still has to fit: "a" cannot be at 2 if another append got 2.
    expectViolation(log([...settled, append(6, "z", 2, 0, 1)]));
  });

  test("states from different checks compare by content", () => {
    const a = logModel.step(logModel.init(), { type: "append", value: "a" }, UNKNOWN_OUTPUT).next;
    const b = logModel.step(logModel.init(), { type: "append", value: "a" }, UNKNOWN_OUTPUT).next;
    const c = logModel.step(logModel.init(), { type: "append", value: "c" }, UNKNOWN_OUTPUT).next;
    expect(logModel.equal(a, b)).toBe(true);
    expect(logModel.hash(a)).toBe(logModel.hash(b));
    expect(logModel.equal(a, c)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Generated histories: a sequential execution, each op's linearization point at a distinct time,
// its interval stretched randomly around that point. Such a history is linearizable by
// construction; the mutations below each break it in a way no reordering can repair.

/** mulberry32: a small seeded PRNG so a seed reproduces a history. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n) >>> 0;
  };
}


interface GenParams {
  readonly seed: number;
  readonly ops: number;
  readonly window: number;
  readonly unknownPercent: number;
}

function stretch(rand: (n: number) => number, point: number, window: number): { call: number; ret: number } {
  return { call: point - rand(window + 1), ret: point + rand(window + 1) };
}

function generateLog(p: GenParams): { history: LogOp[]; finalLog: string[] } {
  const rand = prng(p.seed);
  const values: string[] = [];
  const dedup = new Map<string, number>();
  const sent: { clientId: number; requestId: number; value: string }[] = [];
  const history: LogOp[] = [];
  let point = 0;
  let requestId = 0;
  for (let i = 0; i < p.ops; i++) {
    point += 2 + rand(3);
    const { call, ret } = stretch(rand, point, p.window);
    const clientId = rand(5);
    const roll = rand(100);
    let input: LogInput;
    if (roll < 45 || (roll < 55 && sent.length === 0)) {
      const value = `v${i}`;
      if (rand(2) === 0) {
        requestId++;
        sent.push({ clientId, requestId, value });
        input = { type: "append", value, clientId, requestId };
      } else {
        input = { type: "append", value };
      }
    } else if (roll < 55) {
      const retry = sent[rand(sent.length)];
      input = { type: "append", value: retry.value, clientId: retry.clientId, requestId: retry.requestId };
    } else if (roll < 85) {
      input = { type: "read", index: 1 + rand(values.length + 2) };
    } else {
      input = { type: "length" };
    }
    const isUnknown = rand(100) < p.unknownPercent;
    if (isUnknown && rand(2) === 0) {
      history.push({ status: "unknown", clientId, input, call });
      continue; // never took effect
    }
    let output: LogOutput;
    switch (input.type) {
      case "append": {
        const key = input.requestId === undefined ? null : JSON.stringify([input.clientId, input.requestId]);
        const original = key === null ? undefined : dedup.get(key);
        if (original !== undefined) {
          output = original;
        } else {
          values.push(input.value);
          output = values.length;
          if (key !== null) dedup.set(key, output);
        }
        break;
      }
      case "read":
        output = input.index <= values.length ? values[input.index - 1] : null;
        break;
      case "length":
        output = values.length;
        break;
    }
    history.push(isUnknown ? { status: "unknown", clientId, input, call } : { clientId, input, output, call, return: ret });
  }
  return { history, finalLog: values };
}

/**
 * The history as a checker after a run sees it: the final log read back one index at a time once
 * everything settled, and unknown appends settled against it.
 */
function withFinalReads(history: LogOp[], finalLog: readonly string[]): LogOp[] {
  let end = 0;
  for (const op of history) end = Math.max(end, op.call, op.status === undefined ? op.return : 0);
  const reads = finalLog.map((value, i) => read(9, i + 1, value, end + 1 + 2 * i, end + 2 + 2 * i));
  const all = [...history, ...reads, length(9, finalLog.length, end + 1 + 2 * finalLog.length, end + 2 + 2 * finalLog.length)];
  return resolveUnknownAppends(all, finalLog);
}

function generateKv(p: GenParams): { history: KvOp[] } {
  const rand = prng(p.seed);
  const keys = ["a", "b", "c"];
  const store = new Map<string, string>();
  const history: KvOp[] = [];
  let point = 0;
  for (let i = 0; i < p.ops; i++) {
    point += 2 + rand(3);
    const { call, ret } = stretch(rand, point, p.window);
    const clientId = rand(5);
    const key = keys[rand(keys.length)];
    const input: KvInput = rand(2) === 0 ? { type: "put", key, value: `v${i}` } : { type: "get", key };
    const isUnknown = rand(100) < p.unknownPercent;
    if (isUnknown && rand(2) === 0) {
      history.push({ status: "unknown", clientId, input, call });
      continue;
    }
    let output: KvOutput = null;
    if (input.type === "put") store.set(key, input.value);
    else output = store.get(key) ?? null;
    history.push(isUnknown ? { status: "unknown", clientId, input, call } : { clientId, input, output, call, return: ret });
  }
  return { history };
}

type Completed<I, O> = Extract<Operation<I, O>, { output: O }>;
const isCompleted = <I, O>(op: Operation<I, O>): op is Completed<I, O> => op.status === undefined || op.status === "ok";

/** Mutations that make any generated log history non-linearizable; null when none applies. */
function mutateLog(history: readonly LogOp[], kind: number, rand: (n: number) => number): LogOp[] | null {
  const pick = <T>(items: T[]): T | null => (items.length === 0 ? null : items[rand(items.length)]);
  const indices = history.map((_, i) => i);
  const at = (i: number): Completed<LogInput, LogOutput> => history[i] as Completed<LogInput, LogOutput>;
  const copy = history.slice();
  switch (kind) {
    case 0: {
      // A read of a value nobody appended.
      const i = pick(indices.filter((j) => isCompleted(history[j]) && history[j].input.type === "read"));
      if (i === null) return null;
      copy[i] = { ...at(i), output: "bogus" };
      return copy;
    }
    case 1: {
      // Two fresh appends (no request id) acknowledged with the same index.
      const fresh = indices.filter((j) => {
        const input = history[j].input;
        return isCompleted(history[j]) && input.type === "append" && input.requestId === undefined;
      });
      if (fresh.length < 2) return null;
      const a = fresh[rand(fresh.length)];
      const b = pick(fresh.filter((j) => j !== a));
      if (b === null) return null;
      copy[b] = { ...at(b), output: at(a).output };
      return copy;
    }
    case 2: {
      // A read moved to before any append of the value it saw was even called.
      const i = pick(indices.filter((j) => isCompleted(history[j]) && history[j].input.type === "read" && at(j).output !== null));
      if (i === null) return null;
      const value = at(i).output;
      const firstCall = Math.min(
        ...history.filter((op) => op.input.type === "append" && op.input.value === value).map((op) => op.call),
      );
      copy[i] = { ...at(i), call: firstCall - 2, return: firstCall - 1 };
      return copy;
    }
    case 3: {
      // A length read that misses an append acknowledged before the read began.
      const candidates = indices.filter((j) => {
        if (!isCompleted(history[j]) || history[j].input.type !== "length") return false;
        return history.some((op) => isCompleted(op) && op.input.type === "append" && op.return < history[j].call);
      });
      const i = pick(candidates);
      if (i === null) return null;
      const acked = history.filter((op) => isCompleted(op) && op.input.type === "append" && op.return < history[i].call);
      const floor = Math.max(...acked.map((op) => (op as Completed<LogInput, LogOutput>).output as number));
      copy[i] = { ...at(i), output: floor - 1 };
      return copy;
    }
    default:
      throw new Error(`no log mutation ${kind}`);
  }
}

/** Mutations that make any generated kv history non-linearizable; null when none applies. */
function mutateKv(history: readonly KvOp[], kind: number, rand: (n: number) => number): KvOp[] | null {
  const indices = history.map((_, i) => i);
  const at = (i: number): Completed<KvInput, KvOutput> => history[i] as Completed<KvInput, KvOutput>;
  const gets = indices.filter((j) => isCompleted(history[j]) && history[j].input.type === "get");
  if (gets.length === 0) return null;
  const copy = history.slice();
  const i = gets[rand(gets.length)];
  switch (kind) {
    case 0:
      copy[i] = { ...at(i), output: "bogus" };
      return copy;
    case 1: {
      // Stale read: the value of a put p1 after a later put p2 (p1 < p2 < get in real time) completed.
      const key = history[i].input.key;
      const puts = indices.filter((j) => isCompleted(history[j]) && history[j].input.type === "put" && history[j].input.key === key);
      for (const p2 of puts) {
        if (at(p2).return >= history[i].call) continue;
        const p1 = puts.find((j) => at(j).return < at(p2).call);
        if (p1 === undefined) continue;
        const input = history[p1].input;
        if (input.type !== "put") continue;
        copy[i] = { ...at(i), output: input.value };
        return copy;
      }
      return null;
    }
    default:
      throw new Error(`no kv mutation ${kind}`);
  }
}

const genParams = (unknownMax: number, opsMax = 120) =>
  fc.record({
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
    ops: fc.integer({ min: 1, max: opsMax }),
    window: fc.integer({ min: 0, max: 10 }),
    unknownPercent: fc.integer({ min: 0, max: unknownMax }),
  });

describe("generated histories", () => {
  test("sequential executions with stretched intervals are linearizable (log)", () => {
    fc.assert(
      fc.property(genParams(5), (p) => {
        expectOk(log(generateLog(p).history));
      }),
      { numRuns: 150 },
    );
  });

  test("the same with many unknown appends, settled against the final log (log)", () => {
    fc.assert(
      fc.property(genParams(25), (p) => {
        const { history, finalLog } = generateLog(p);
        expectOk(log(withFinalReads(history, finalLog)));
      }),
      { numRuns: 150 },
    );
  });

  test("sequential executions with stretched intervals are linearizable (kv)", () => {
    fc.assert(
      fc.property(genParams(15), (p) => {
        expectOk(kv(generateKv(p).history));
      }),
      { numRuns: 150 },
    );
  });

  // A history too small for a mutation (no read to falsify, fewer than two fresh appends...) yields
  // null. Such cases are not dropped silently: each counts as "not applicable", the property still
  // runs, and at the end every mutation kind must have been applied (and caught) often enough that
  // a checker which misses it cannot pass. Measured over three runs: log kinds applied 44..94 times
  // of ~75 tries each, kv kinds 98..121 and 36..54; the floors (15) sit more than 4 sigma below.
  test("mutated log histories are reported", () => {
    const RUNS = 300;
    const applied = [0, 0, 0, 0];
    fc.assert(
      fc.property(genParams(25), fc.integer({ min: 0, max: 3 }), fc.boolean(), (p, kind, settle) => {
        const { history, finalLog } = generateLog(settle ? p : { ...p, ops: Math.min(p.ops, 60), unknownPercent: p.unknownPercent % 4 });
        const mutated = mutateLog(history, kind, prng(p.seed ^ 0x5eed));
        if (mutated === null) return;
        applied[kind]++;
        expectViolation(log(settle ? withFinalReads(mutated, finalLog) : mutated));
      }),
      { numRuns: RUNS },
    );
    expect({ applied, eachAtLeast15: applied.every((n) => n >= 15) }).toEqual({ applied, eachAtLeast15: true });
  });

  test("mutated kv histories are reported", () => {
    const RUNS = 200;
    const applied = [0, 0];
    fc.assert(
      fc.property(genParams(15), fc.integer({ min: 0, max: 1 }), (p, kind) => {
        const mutated = mutateKv(generateKv(p).history, kind, prng(p.seed ^ 0x5eed));
        if (mutated === null) return;
        applied[kind]++;
        expectViolation(kv(mutated));
      }),
      { numRuns: RUNS },
    );
    expect({ applied, eachAtLeast15: applied.every((n) => n >= 15) }).toEqual({ applied, eachAtLeast15: true });
  });

  test("a planted violation in a large valid history is found", () => {
    const { history, finalLog } = generateLog({ seed: 20261125, ops: 3000, window: 6, unknownPercent: 2 });
    const settled = withFinalReads(history, finalLog);
    expectOk(log(settled));

    // The planted op: a read that claims index 1 holds something else, late in the history.
    const planted = settled.findIndex((op, i) => i > 2200 && isCompleted(op) && op.input.type === "read");
    expect(planted).toBeGreaterThan(0);
    const mutated = settled.slice();
    mutated[planted] = { ...(settled[planted] as Completed<LogInput, LogOutput>), input: { type: "read", index: 1 }, output: "planted" };
    const result = expectViolation(log(mutated));
    expect(result.stuck.map((s) => s.index)).toContain(planted);
    expect(result.linearized).not.toContain(planted);
    expect(result.linearized.length).toBeGreaterThan(2000);
    expect(result.explanation).toContain(`#${planted} `);
  });

  test("a large kv history with unknown puts", () => {
    const { history } = generateKv({ seed: 7, ops: 4000, window: 10, unknownPercent: 5 });
    const result = kv(history);
    expectOk(result);
    expect(result.ok === true && result.partitions).toBe(3);
  });

  test("results are deterministic", () => {
    const { history } = generateLog({ seed: 99, ops: 300, window: 6, unknownPercent: 3 });
    const mutated = mutateLog(history, 0, prng(1));
    expect(mutated).not.toBeNull();
    expect(log(mutated as LogOp[])).toEqual(log(mutated as LogOp[]));
  });
});

describe("search budget", () => {
  // n concurrent puts and a get of a value none wrote: refuting it means trying every subset.
  const hard = (n: number): KvOp[] => [
    ...Array.from({ length: n }, (_, i) => put(i, "x", `v${i}`, 0, 100)),
    get(n, "x", "never-written", 0, 100),
  ];

  // The bound is a step count, not a wall-clock time: the search stops after exactly its budget
  // of steps (each step is a bounded amount of work), whatever the budget, on 2^40 candidates.
  test("an exponential refutation answers unknown instead of hanging: it stops at its step budget", () => {
    for (const budget of [1, 5_000, 20_000]) {
      const result = kv(hard(40), budget);
      expect({ budget, ok: result.ok, steps: result.steps }).toEqual({ budget, ok: "unknown", steps: budget });
      expect(result.ok === "unknown" && result.reason).toMatch(new RegExp(`budget of ${budget} steps exhausted in partition "x"`));
    }
  });

  test("the same shape, small enough, is refuted within the default budget", () => {
    expectViolation(kv(hard(8)));
  });

  test("a zero budget answers unknown for any non-empty history", () => {
    expect(kv([put(1, "x", "a", 0, 1)], 0).ok).toBe("unknown");
    expect(kv([], 0).ok).toBe(true);
  });
});
