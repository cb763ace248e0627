// Writes forwarded from a follower to the leader (src/node/forward.ts), with a fake link: what goes
// out, which answers count, how the leader's refusals reach the client, and the bounds.
import { Forwarder, ForwardAppend, ForwardMessage, FORWARD_MARGIN_MS, isForwardMessage } from "../../src/node/forward";
import { decodeFrame, encodeFrame } from "../../src/node/peer-codec";
import { LedgerError } from "../../src/util/errors";
import type { AppendResult } from "../../src/node/ports";

const record = { type: "policy.set", subject: "s", data: { name: "n", value: 1 } };
const bytesOf = (v: unknown): Uint8Array => new Uint8Array(Buffer.from(JSON.stringify(v), "utf8"));
const recordBytes = bytesOf(record);
const ok: AppendResult = { index: 7, term: 2, hash: "ab".repeat(32), duplicate: false };

function pair(local: (r: unknown, k: string | undefined) => Promise<AppendResult> = async () => ok, opts = { writeTimeoutMs: 1000, maxPending: 4, maxBytes: 1 << 20 }) {
  const sent: ForwardMessage[] = [];
  const f = new Forwarder({ nodeId: "n2", leader: () => "n1", send: (m) => sent.push(m) }, local, opts);
  return { f, sent };
}

const answer = (id: number, from: string, body: Partial<Pick<Extract<ForwardMessage, { type: "ForwardAnswer" }>, "ok" | "error">>): ForwardMessage =>
  ({ type: "ForwardAnswer", from, to: "n2", id, ok: null, error: null, ...body });

afterEach(() => jest.useRealTimers());

describe("isForwardMessage", () => {
  test("takes the two message shapes and nothing else", () => {
    expect(isForwardMessage({ type: "ForwardAppend", from: "a", to: "b", id: 1, record: recordBytes, key: null })).toBe(true);
    expect(isForwardMessage({ type: "ForwardAppend", from: "a", to: "b", id: 1, record: recordBytes, key: "k-1" })).toBe(true);
    // client_id:request_id keys: any Unicode, spaces too, up to 200 code points each.
    expect(isForwardMessage({ type: "ForwardAppend", from: "a", to: "b", id: 1, record: recordBytes, key: "billing service:é 1" })).toBe(true);
    expect(isForwardMessage({ type: "ForwardAppend", from: "a", to: "b", id: 1, record: recordBytes, key: `${"😀".repeat(200)}:${"😀".repeat(200)}` })).toBe(true);
    expect(isForwardMessage(answer(1, "n1", { ok }))).toBe(true);
    expect(isForwardMessage(answer(1, "n1", { error: { code: "unavailable", message: "m", details: { reason: "overloaded" } } }))).toBe(true);
    const bad: unknown[] = [
      null, [], { type: "ForwardAppend", from: "a", to: "b", id: -1, record: recordBytes, key: null },
      { type: "ForwardAppend", from: "a", to: "b", id: 1, record: "x", key: null },
      { type: "ForwardAppend", from: "a", to: "b", id: 1, record, key: null }, // a parsed object, not bytes
      { type: "ForwardAppend", from: "a", to: "b", id: 1, record: recordBytes, key: "" },
      { type: "ForwardAppend", from: "a", to: "b", id: 1, record: recordBytes, key: "k".repeat(803) },
      { type: "ForwardAppend", from: 1, to: "b", id: 1, record: recordBytes, key: null },
      answer(1, "n1", {}), // neither ok nor error
      answer(1, "n1", { ok, error: { code: "unavailable", message: "m" } }), // both
      answer(1, "n1", { ok: { ...ok, hash: "xyz" } }),
      answer(1, "n1", { error: { code: "unavailable", message: "m".repeat(1001) } }),
      answer(1, "n1", { error: { code: "unavailable", message: "m", details: { nested: { a: 1 } } as unknown as Record<string, string> } }),
      { type: "Other", from: "a", to: "b", id: 1 },
    ];
    for (const v of bad) expect({ v, ok: isForwardMessage(v) }).toEqual({ v, ok: false });
  });
});

describe("Forwarder, the follower's side", () => {
  test("sends the record's bytes and key to the leader and resolves with the leader's answer", async () => {
    const { f, sent } = pair();
    const p = f.forward("n1", record, "key-1");
    const id = (sent[0] as ForwardAppend).id;
    expect(sent).toEqual([{ type: "ForwardAppend", from: "n2", to: "n1", id, record: recordBytes, key: "key-1" }]);
    f.receive(answer(id, "n1", { ok }));
    await expect(p).resolves.toEqual(ok);
    expect(f.figures()).toEqual({ forwarding: 0, serving: 0 });
  });

  test("an answer from a node other than the one asked, or for an unknown id, is dropped", async () => {
    jest.useFakeTimers();
    const { f, sent } = pair();
    const p = f.forward("n1", record, undefined);
    const id = (sent[0] as ForwardAppend).id;
    f.receive(answer(id, "n3", { ok: { ...ok, index: 99 } }));
    f.receive(answer(id + 1, "n1", { ok: { ...ok, index: 98 } }));
    expect(f.figures().forwarding).toBe(1);
    f.receive(answer(id, "n1", { ok }));
    await expect(p).resolves.toEqual(ok);
  });

  test.each([
    { code: "schema_violation", status: "schema_violation" },
    { code: "idempotency_conflict", status: "idempotency_conflict" },
    { code: "unavailable", status: "unavailable" },
    { code: "not_leader", status: "unavailable" }, // leadership moved: retry, never a 307 to a stale address
    { code: "internal", status: "unavailable" },
    { code: "made_up", status: "unavailable" },
  ])("the leader's $code reaches the client as $status", async ({ code, status }) => {
    const { f, sent } = pair();
    const p = f.forward("n1", record, undefined);
    f.receive(answer((sent[0] as ForwardAppend).id, "n1", { error: { code: code as "internal", message: "why", details: { reason: "overloaded" } } }));
    const e = await p.then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(LedgerError);
    expect((e as LedgerError).code).toBe(status);
    if (status === code) expect([(e as LedgerError).message, (e as LedgerError).details]).toEqual(["why", { reason: "overloaded" }]);
  });

  test("no answer within the write timeout plus the margin: 503, and the slot is free again", async () => {
    jest.useFakeTimers();
    const { f } = pair();
    const p = f.forward("n1", record, "k");
    const settled = p.then(() => "resolved", (e: LedgerError) => e.code);
    jest.advanceTimersByTime(1000 + FORWARD_MARGIN_MS - 1);
    expect(f.figures().forwarding).toBe(1);
    jest.advanceTimersByTime(1);
    await expect(settled).resolves.toBe("unavailable");
    expect(f.figures().forwarding).toBe(0);
  });

  test("at most maxPending forwarded writes wait: one more is refused at once, overloaded", async () => {
    const { f, sent } = pair();
    const waiting = Array.from({ length: 4 }, () => f.forward("n1", record, undefined));
    const e = await f.forward("n1", record, undefined).then(() => null, (err: unknown) => err as LedgerError);
    expect([e?.code, e?.details]).toEqual(["unavailable", { reason: "overloaded" }]);
    expect(sent.length).toBe(4);
    // Two forwarders started apart pick ids far apart: a restarted node does not reuse its ids.
    const other = pair();
    void other.f.forward("n1", record, undefined).catch(() => undefined);
    expect((other.sent[0] as ForwardAppend).id).not.toBe((sent[0] as ForwardAppend).id);
    other.f.stopped("done");
    f.stopped("node is shutting down");
    for (const w of waiting) await expect(w).rejects.toThrow("node is shutting down");
  });
});

describe("Forwarder, the leader's side", () => {
  test("appends a forwarded record as its own write and answers the sender", async () => {
    const calls: Array<[unknown, string | undefined]> = [];
    const { f, sent } = pair(async (r, k) => {
      calls.push([r, k]);
      return ok;
    });
    f.receive({ type: "ForwardAppend", from: "n3", to: "n2", id: 5, record: recordBytes, key: "k" });
    f.receive({ type: "ForwardAppend", from: "n3", to: "n2", id: 6, record: recordBytes, key: null });
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([[record, "k"], [record, undefined]]);
    expect(sent).toEqual([
      { type: "ForwardAnswer", from: "n2", to: "n3", id: 5, ok, error: null },
      { type: "ForwardAnswer", from: "n2", to: "n3", id: 6, ok, error: null },
    ]);
  });

  test("a refusal is answered with its code and message; a bug is answered as internal without its text", async () => {
    let n = 0;
    const { f, sent } = pair(async () => {
      n++;
      if (n === 1) throw new LedgerError("schema_violation", "data.name is required", { path: "/data/name" });
      throw new TypeError("secret internals");
    });
    f.receive({ type: "ForwardAppend", from: "n3", to: "n2", id: 1, record: recordBytes, key: null });
    f.receive({ type: "ForwardAppend", from: "n3", to: "n2", id: 2, record: recordBytes, key: null });
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(sent).toEqual([
      { type: "ForwardAnswer", from: "n2", to: "n3", id: 1, ok: null, error: { code: "schema_violation", message: "data.name is required", details: { path: "/data/name" } } },
      { type: "ForwardAnswer", from: "n2", to: "n3", id: 2, ok: null, error: { code: "internal", message: "the leader failed the forwarded write" } },
    ]);
    expect(f.figures().serving).toBe(0);
  });

  test("a record whose validation throws at once, or whose bytes are not I-JSON, is still answered (a refusal, never a dropped link)", async () => {
    const { f, sent } = pair((r) => {
      throw new LedgerError("unknown_record_type", `no schema for ${(r as { type: string }).type}`);
    });
    f.receive({ type: "ForwardAppend", from: "n3", to: "n2", id: 1, record: bytesOf({ ...record, type: "x.new" }), key: null });
    f.receive({ type: "ForwardAppend", from: "n3", to: "n2", id: 2, record: new Uint8Array(Buffer.from('{"a":1,"a":2}')), key: null });
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(sent.map((m) => [m.id, (m as Extract<ForwardMessage, { type: "ForwardAnswer" }>).error?.code])).toEqual([[1, "unknown_record_type"], [2, "invalid_json"]]);
    expect(f.figures().serving).toBe(0);
  });
});

describe("through the real peer codec", () => {
  test("a record whose data looks like the codec's byte marker arrives exactly as the client sent it", async () => {
    const tricky = { type: "policy.set", subject: "s", data: { name: "n", value: { $b: "aGk=" }, bad: { $b: "a" } } };
    const follower = pair();
    void follower.f.forward("n1", tricky, "client a:1").catch(() => undefined);
    const wire = decodeFrame(encodeFrame(follower.sent[0]));
    expect(isForwardMessage(wire)).toBe(true);
    const got: unknown[] = [];
    const leader = pair(async (r) => {
      got.push(r);
      return ok;
    });
    leader.f.receive(wire as ForwardMessage);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual([tricky]);
    follower.f.stopped("done");
  });
});
