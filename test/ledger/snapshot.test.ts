// Snapshot documents (src/ledger/snapshot.ts): the signed bytes, the sorted rows, the parse, and
// every reason snapshotProblem gives. Signatures are checked with node:crypto and roots with
// test/support/independent.ts.
import { CompactRange } from "../../src/ledger/merkle";
import { sign } from "../../src/ledger/keys";
import { toHex } from "../../src/ledger/bytes";
import {
  decodeSnapshot, encodeSnapshot, makeSnapshot, snapshotMessage, snapshotProblem, snapshotRange, snapshotState, SnapshotDoc, SnapshotInput,
} from "../../src/ledger/snapshot";
import * as ind from "../support/independent";

// Keys from node:crypto (independent.ts): module scope must not reach src (Stryker static mutants).
const KEY = ind.keyPair(new Uint8Array(32).fill(5));
const OTHER = ind.keyPair(new Uint8Array(32).fill(6));
const PUB = KEY.publicKey.toString("hex");
const TS = "2026-01-01T00:00:00Z";
const h = (s: string): Buffer => ind.sha256(Buffer.from(s));

function input(size = 5): SnapshotInput {
  const range = new CompactRange();
  for (let i = 0; i < size; i++) range.append(h(`e${i}`));
  return {
    cluster: "snap", index: size, term: 3, hash: h("head"), range, config: Buffer.from('{"v":1}'),
    subjects: [
      { subject: "b", version: 2, head: h("hb"), lastIndex: 4 },
      { subject: "a", version: 1, head: h("ha"), lastIndex: 2 },
      { subject: "c", version: 1, head: h("hc"), lastIndex: 5 },
    ],
    subjectRecords: [{ subject: "b", version: 2, index: 4 }, { subject: "a", version: 1, index: 2 }, { subject: "b", version: 1, index: 3 }, { subject: "c", version: 1, index: 5 }],
    dedup: [
      { key: "k2", digest: "d2", index: 4, term: 3, hash: h("x4") },
      { key: "k1", digest: "d1", index: 3, term: 2, hash: h("x3") },
    ],
    signer: "n1", ts: TS,
  };
}

const reSign = (doc: SnapshotDoc, patch: Partial<SnapshotDoc>): SnapshotDoc => {
  const { sig: _sig, ...body } = { ...doc, ...patch };
  return makeSignedLike(body);
};
function makeSignedLike(body: Omit<SnapshotDoc, "sig">): SnapshotDoc {
  return { ...body, sig: toHex(sign(snapshotMessage(body), KEY.secretKey)) } as SnapshotDoc;
}

describe("makeSnapshot", () => {
  let doc: SnapshotDoc;
  beforeEach(() => { doc = makeSnapshot(input(), KEY.secretKey); });

  test("the body: anchor, root, peaks, config, rows sorted, state_root, signer", () => {
    expect(doc).toMatchObject({
      v: 1, cluster: "snap", index: 5, term: 3, hash: h("head").toString("hex"), config_b64: Buffer.from('{"v":1}').toString("base64"),
      signer: "n1", ts: TS,
    });
    expect(doc.root).toBe(ind.merkleRoot([0, 1, 2, 3, 4].map((i) => ind.leafHash(h(`e${i}`)))).toString("hex"));
    expect(doc.compact_range).toEqual([
      { level: 2, index: 0, hash: ind.merkleRoot([0, 1, 2, 3].map((i) => ind.leafHash(h(`e${i}`)))).toString("hex") },
      { level: 0, index: 4, hash: ind.leafHash(h("e4")).toString("hex") },
    ]);
    expect(doc.state.subjects.map((s) => s.subject)).toEqual(["a", "b", "c"]);
    expect(doc.state.subjects[1]).toEqual({ subject: "b", version: 2, head: h("hb").toString("hex"), last_index: 4 });
    expect(doc.state.subject_records.map((r) => r.index)).toEqual([2, 3, 4, 5]);
    expect(doc.state.dedup).toEqual([
      { key: "k1", digest: "d1", index: 3, term: 2, hash: h("x3").toString("hex") },
      { key: "k2", digest: "d2", index: 4, term: 3, hash: h("x4").toString("hex") },
    ]);
    const i = input();
    expect(doc.state_root).toBe(ind.stateRootOf(
      [...i.subjects].map((s) => ({ ...s, head: Buffer.from(s.head) })),
      [...i.dedup].map((d) => ({ ...d, hash: Buffer.from(d.hash) })),
    ).toString("hex"));
  });

  test("equal subject keys keep their order (the comparator says 0)", () => {
    const i = input();
    const twice = makeSnapshot({ ...i, subjects: [{ subject: "a", version: 9, head: h("1"), lastIndex: 1 }, { subject: "a", version: 8, head: h("2"), lastIndex: 2 }] }, KEY.secretKey);
    expect(twice.state.subjects.map((s) => s.version)).toEqual([9, 8]);
  });

  test("the signed message is the tag and canonical JSON of the body without sig; node:crypto verifies it", () => {
    const { sig, ...body } = doc;
    const want = Buffer.concat([Buffer.from("resonetics/snapshot/v1\n"), Buffer.from(ind.canonicalJson(body))]);
    expect(Buffer.from(snapshotMessage(doc)).toString("utf8")).toBe(want.toString("utf8"));
    expect(Buffer.from(snapshotMessage(body)).toString("utf8")).toBe(want.toString("utf8"));
    expect(ind.verifyEd25519(PUB, want, sig)).toBe(true);
  });

  test("encode and decode round-trip; the encoding is canonical JSON", () => {
    const bytes = encodeSnapshot(doc);
    expect(Buffer.from(bytes).toString("utf8")).toBe(ind.canonicalJson(doc));
    expect(decodeSnapshot(bytes)).toEqual(doc);
    expect(snapshotProblem(doc, PUB)).toBeNull();
  });

  test.each([
    ["v", 2], ["cluster", 1], ["index", 1.5], ["index", "5"], ["term", null], ["hash", 1], ["root", 1], ["compact_range", {}],
    ["config_b64", 1], ["state", null], ["state", "s"], ["state_root", 1], ["signer", 1], ["sig", 1],
  ])("decodeSnapshot refuses %s = %p", (key, value) => {
    expect(decodeSnapshot(Buffer.from(ind.canonicalJson({ ...doc, [key]: value })))).toBeNull();
  });

  test("decodeSnapshot refuses what is not a v1 object", () => {
    expect(decodeSnapshot(Buffer.from("[]"))).toBeNull();
    expect(decodeSnapshot(Buffer.from("not json"))).toBeNull();
  });
});

describe("snapshotRange and snapshotState", () => {
  let doc: SnapshotDoc;
  beforeEach(() => { doc = makeSnapshot(input(6), KEY.secretKey); });

  test("the range continues exactly where the log left off", () => {
    const r = snapshotRange(doc);
    expect(r.size).toBe(6);
    expect(toHex(r.root())).toBe(doc.root);
    r.append(h("e6"));
    expect(toHex(r.root())).toBe(ind.merkleRoot([0, 1, 2, 3, 4, 5, 6].map((i) => ind.leafHash(h(`e${i}`)))).toString("hex"));
  });

  test("the state holds every row the document carries", () => {
    const s = snapshotState(doc);
    expect([...s.subjects.keys()].sort()).toEqual(["a", "b", "c"]);
    expect(toHex(s.subjects.get("b")!.head)).toBe(h("hb").toString("hex"));
    expect(s.subjects.get("b")).toMatchObject({ version: 2, lastIndex: 4 });
    expect(s.records.get("b")).toEqual([3, 4]);
    expect(s.dedup.get("k1")).toMatchObject({ digest: "d1", index: 3, term: 2 });
    expect(toHex(s.dedup.get("k1")!.hash)).toBe(h("x3").toString("hex"));
  });

  test("malformed hex in a row becomes empty bytes, which no longer match the state_root", () => {
    const bad = reSign(doc, { state: { ...doc.state, subjects: doc.state.subjects.map((s, i) => (i === 0 ? { ...s, head: "XY" } : s)) } });
    expect(snapshotState(bad).subjects.get("a")!.head.length).toBe(0);
    expect(snapshotProblem(bad, PUB)).toBe("snapshot state_root does not match its state");
    const badDedup = reSign(doc, { state: { ...doc.state, dedup: doc.state.dedup.map((d, i) => (i === 0 ? { ...d, hash: "XY" } : d)) } });
    expect(snapshotState(badDedup).dedup.get("k1")!.hash.length).toBe(0);
    expect(snapshotProblem(badDedup, PUB)).toBe("snapshot state_root does not match its state");
    const badPeak = reSign(doc, { compact_range: doc.compact_range.map((n, i) => (i === 0 ? { ...n, hash: "XY" } : n)) });
    expect(snapshotRange(badPeak).nodes()[0].hash.length).toBe(0);
  });
});

describe("snapshotProblem", () => {
  let doc: SnapshotDoc;
  beforeEach(() => { doc = makeSnapshot(input(6), KEY.secretKey); });

  test("a signature by another key, a key or signature that is not hex, a changed field", () => {
    expect(snapshotProblem(doc, toHex(OTHER.publicKey))).toBe("snapshot signature does not verify");
    expect(snapshotProblem(doc, "nothex")).toBe("snapshot signature does not verify");
    expect(snapshotProblem({ ...doc, sig: "XY" }, PUB)).toBe("snapshot signature does not verify");
    expect(snapshotProblem({ ...doc, term: 4 }, PUB)).toBe("snapshot signature does not verify");
  });

  test("a compact range that does not fit the index", () => {
    const bad = reSign(doc, { compact_range: doc.compact_range.slice(1) });
    expect(snapshotProblem(bad, PUB)).toBe("snapshot compact range is malformed: compact range of size 6 needs 2 peaks");
  });

  test("a root that is not the compact range's", () => {
    const bad = reSign(doc, { root: "00".repeat(32) });
    expect(snapshotProblem(bad, PUB)).toBe("snapshot root is not the root of its compact range");
  });

  test("a state_root that is not the state's", () => {
    const bad = reSign(doc, { state_root: "00".repeat(32) });
    expect(snapshotProblem(bad, PUB)).toBe("snapshot state_root does not match its state");
  });

  test("a dedup row changed (and re-signed) changes the state_root", () => {
    const bad = reSign(doc, { state: { ...doc.state, dedup: doc.state.dedup.map((d) => ({ ...d, term: d.term + 1 })) } });
    expect(snapshotProblem(bad, PUB)).toBe("snapshot state_root does not match its state");
  });
});
