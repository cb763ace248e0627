import { applyEntry, MemoryState, stateRoot, SUBJECT_HEAD_ZERO, nextSubjectHead, UnappliableRecord } from "../../src/ledger/state-machine";
import { chainEntry, EntryKind, genesisHash, Entry } from "../../src/ledger/entry";
import { codePoints, encodeRecord, parseRecordPayload, requestDigest, RecordPayload } from "../../src/ledger/record";
import { toHex } from "../../src/ledger/bytes";

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
