import { applyEntry, MemoryState, stateRoot, SUBJECT_HEAD_ZERO, nextSubjectHead, UnappliableRecord } from "../../src/ledger/state-machine";
import { chainEntry, EntryKind, genesisHash, Entry } from "../../src/ledger/entry";
import { codePoints, encodeRecord, parseRecordPayload, requestDigest, RecordPayload } from "../../src/ledger/record";
import { toHex } from "../../src/ledger/bytes";
import * as ind from "../support/independent";

function chain(payloads: Array<RecordPayload | null>): Entry[] {
  let prev = genesisHash("sm");
  return payloads.map((p, i) => {
    const e = p === null
      ? chainEntry(i + 1, 1, EntryKind.Noop, prev, new Uint8Array())
      : chainEntry(i + 1, 1, EntryKind.Record, prev, encodeRecord(p));
    prev = e.hash;
    return e;
  });
}

const rec = (subject: string, value: number, key?: string): RecordPayload => {
  const req = { type: "policy.set", subject, data: { name: "n", value } };
  return { v: 1, ...req, ts: "2026-01-01T00:00:00Z", ...(key ? { idempotency_key: key, request_digest: requestDigest(req) } : {}) };
};

describe("state machine", () => {
  test("records version their subject and chain its head; other kinds change nothing", () => {
    const entries = chain([null, rec("a", 1), rec("b", 2), rec("a", 3)]);
    const s = new MemoryState();
    const results = entries.map((e) => applyEntry(s, e));
    expect(results[0]).toEqual({ kind: "none" });
    expect(results.map((r) => r.kind)).toEqual(["none", "record", "record", "record"]);
    const a = s.getSubject("a");
    expect(a?.version).toBe(2);
    expect(a?.lastIndex).toBe(4);
    expect(toHex(a!.head)).toBe(toHex(nextSubjectHead(nextSubjectHead(SUBJECT_HEAD_ZERO, entries[1].hash), entries[3].hash)));
    expect(s.records.get("a")).toEqual([2, 4]);
  });

  test("a repeated idempotency key applies once and returns the original", () => {
    const entries = chain([rec("a", 1, "k"), rec("a", 1, "k")]);
    const s = new MemoryState();
    const [first, second] = entries.map((e) => applyEntry(s, e));
    expect(first.kind).toBe("record");
    expect(second.kind).toBe("duplicate");
    if (second.kind === "duplicate") expect(second.original.index).toBe(1);
    expect(s.getSubject("a")?.version).toBe(1);
  });

  test.each([
    ["no fields", "{\"v\":1}"],
    ["not canonical (key order)", '{"v":1,"type":"policy.set","subject":"a","data":1,"ts":"2026-01-01T00:00:00Z"}'],
    ["a lone surrogate in the subject", '{"data":1,"subject":"x\\ud800y","ts":"2026-01-01T00:00:00Z","type":"policy.set","v":1}'],
    ["a subject of 201 code points", JSON.stringify({ data: 1, subject: "😀".repeat(201), ts: "2026-01-01T00:00:00Z", type: "policy.set", v: 1 })],
    ["an unknown field", '{"data":1,"extra":2,"subject":"a","ts":"2026-01-01T00:00:00Z","type":"policy.set","v":1}'],
    ["a duplicate key", '{"data":1,"subject":"a","subject":"b","ts":"2026-01-01T00:00:00Z","type":"policy.set","v":1}'],
    ["a ts that is not RFC 3339 UTC", '{"data":1,"subject":"a","ts":"yesterday","type":"policy.set","v":1}'],
    ["an idempotency key without its digest", '{"data":1,"idempotency_key":"k","subject":"a","ts":"2026-01-01T00:00:00Z","type":"policy.set","v":1}'],
  ])("a RECORD entry with %s does not apply: a loud assertion, nothing changed", (_name, text) => {
    const e = chainEntry(1, 1, EntryKind.Record, genesisHash("x"), Buffer.from(text));
    const s = new MemoryState();
    expect(() => applyEntry(s, e)).toThrow(UnappliableRecord);
    expect(s.subjects.size).toBe(0);
    expect(s.dedup.size).toBe(0);
  });

  test("characters are code points, the same count as the API's schemas: 200 astral characters apply, 201 do not", () => {
    expect(codePoints("😀".repeat(150))).toBe(150);
    expect(codePoints("a😀b")).toBe(3);
    const ok = rec("😀".repeat(200), 1);
    expect(parseRecordPayload(encodeRecord(ok)).subject).toBe(ok.subject);
    const s = new MemoryState();
    expect(applyEntry(s, chain([ok])[0]).kind).toBe("record");
    expect(() => parseRecordPayload(encodeRecord(rec("😀".repeat(201), 1)))).toThrow(/201/);
  });

  test("state_root is independent of insertion order and changes with any row", () => {
    const entries = chain([rec("a", 1, "k1"), rec("b", 2), rec("c", 3, "k2")]);
    const s = new MemoryState();
    entries.forEach((e) => applyEntry(s, e));
    const root = toHex(stateRoot(s.subjects.values(), s.dedup.values()));
    const reversed = toHex(stateRoot([...s.subjects.values()].reverse(), [...s.dedup.values()].reverse()));
    expect(reversed).toBe(root);
    const changed = [...s.subjects.values()].map((r, i) => (i === 1 ? { ...r, version: r.version + 1 } : r));
    expect(toHex(stateRoot(changed, s.dedup.values()))).not.toBe(root);
  });
});

describe("apply results and rows, exactly", () => {
  test("a record's result names its index, term, hash and the subject's new version; the dedup row keeps the request digest", () => {
    const entries = chain([rec("a", 1, "k"), rec("a", 2), rec("a", 1, "k")]);
    const s = new MemoryState();
    const [first, second, retry] = entries.map((e) => applyEntry(s, e));
    expect(first).toEqual({ kind: "record", index: 1, term: 1, hash: entries[0].hash, version: 1 });
    expect(second).toEqual({ kind: "record", index: 2, term: 1, hash: entries[1].hash, version: 2 });
    const digest = requestDigest({ type: "policy.set", subject: "a", data: { name: "n", value: 1 } });
    const row = { key: "k", digest, index: 1, term: 1, hash: entries[0].hash };
    expect(s.getDedup("k")).toEqual(row);
    expect(retry).toEqual({ kind: "duplicate", original: row, digest });
    expect(s.getSubject("a")).toEqual({
      subject: "a", version: 2, lastIndex: 2, head: nextSubjectHead(nextSubjectHead(SUBJECT_HEAD_ZERO, entries[0].hash), entries[1].hash),
    });
    expect(s.records.get("a")).toEqual([1, 2]);
  });

  test("the subject chain starts from 32 zero bytes and is SHA-256(prev || entry_hash)", () => {
    expect(toHex(SUBJECT_HEAD_ZERO)).toBe("00".repeat(32));
    const e = chain([rec("a", 1)])[0];
    expect(toHex(nextSubjectHead(SUBJECT_HEAD_ZERO, e.hash))).toBe(ind.subjectHead(ind.SUBJECT_HEAD_ZERO, e.hash).toString("hex"));
  });

  test("state_root equals the independent state_root, in any insertion order; the empty state is the empty tree", () => {
    const entries = chain([rec("b", 1, "k2"), rec("\u{1F600}", 2), rec("\uFF61", 3, "k1"), rec("a", 4), rec("b", 5)]);
    const s = new MemoryState();
    entries.forEach((e) => applyEntry(s, e));
    const want = ind.stateRootOf(
      [...s.subjects.values()].map((r) => ({ ...r, head: Buffer.from(r.head) })),
      [...s.dedup.values()].map((d) => ({ ...d, hash: Buffer.from(d.hash) })),
    ).toString("hex");
    expect(toHex(stateRoot(s.subjects.values(), s.dedup.values()))).toBe(want);
    expect(toHex(stateRoot([...s.subjects.values()].reverse(), [...s.dedup.values()].reverse()))).toBe(want);
    expect(toHex(stateRoot([], []))).toBe(ind.sha256().toString("hex"));
  });
});
