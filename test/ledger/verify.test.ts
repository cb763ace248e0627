// In-process verifyChain / verifyChainSteps on crafted ChainSources. The chain, its Merkle nodes,
// its checkpoints (signed with node:crypto), its state tables and every expected value are built
// with test/support/independent.ts and node:crypto, not with src: a bug shared by the writer and
// the verifier cannot make these pass. Each tamper case must give ok:false, the exact first bad
// index and a reason naming the fault; the intact chain must give exactly the independent figures.
import { createPrivateKey, createPublicKey, sign as cryptoSign, KeyObject } from "node:crypto";
import type { Entry } from "../../src/ledger/entry";
import { ChainSource, VerifyOptions, VerifyReport, startProblem, verifyChain as verifyOnThisThread, verifyChainSteps } from "../../src/ledger/verify";
import { InThreadPages, PagedChainSource, ParallelChainSource } from "../../src/node/verify-pipeline";
import type { HexLogRow } from "../../src/storage/store";
import { CompactRange } from "../../src/ledger/merkle";
import { encodeSnapshot, makeSnapshot, SnapshotDoc } from "../../src/ledger/snapshot";
import type { Checkpoint } from "../../src/ledger/checkpoint";
import type { DedupRow, SubjectRow } from "../../src/ledger/state-machine";
import type { PinnedCheckpoint, TrustFile } from "../../src/ledger/trust";
import * as ind from "../support/independent";

const CLUSTER = "verify-test";
const TS = "2026-01-01T00:00:00Z";

// ---------------------------------------------------------------- keys, with node:crypto only

interface Node {
  readonly id: string;
  readonly seed: Buffer;
  readonly priv: KeyObject;
  readonly pubHex: string;
}

function node(id: string, fill: number): Node {
  const seed = Buffer.alloc(32, fill);
  const priv = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(priv).export({ format: "der", type: "spki" });
  return { id, seed, priv, pubHex: spki.subarray(spki.length - 32).toString("hex") };
}

const N1 = node("n1", 1);
const N2 = node("n2", 2);
const N3 = node("n3", 3);
const NODES = new Map([N1, N2, N3].map((n) => [n.id, n]));

// ---------------------------------------------------------------- chain specs and the builder

type Spec =
  | { kind: "noop"; term: number }
  | { kind: "record"; term: number; subject: string; key?: string; raw?: string }
  | { kind: "config"; term: number; voters: Node[]; learners?: Node[]; raw?: string }
  | { kind: "checkpoint"; term: number; signer: Node; patch?: Partial<ind.CheckpointPayload>; signWith?: Node; raw?: string; subjects?: boolean };

const KIND = { noop: 0, record: 1, config: 2, checkpoint: 3 } as const;

const member = (n: Node) => ({ id: n.id, address: `127.0.0.1:${7000 + n.seed[0]}`, public_key: n.pubHex });

/** Every perfect subtree (level/index) that lies inside [0, n), hashed independently. */
function perfectNodes(leafHashes: Buffer[]): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (let level = 0; 2 ** level <= leafHashes.length; level++) {
    const width = 2 ** level;
    for (let i = 0; (i + 1) * width <= leafHashes.length; i++) {
      out.set(`${level}/${i}`, ind.merkleRoot(leafHashes.slice(i * width, (i + 1) * width)));
    }
  }
  return out;
}

interface Chain {
  entries: Entry[];
  nodes: Map<string, Buffer>;
  checkpointRows: Array<Checkpoint & { index: number }>;
  subjects: SubjectRow[];
  subjectRecords: Array<{ subject: string; version: number; index: number }>;
  dedup: DedupRow[];
  hard: { commitIndex: number; lastApplied: number; term: number };
  meta: Map<string, string>;
  snapshot?: Uint8Array;
  /** Retained snapshots by index: when set, the source lists them (snapshotIndexes, snapshotBytesAt), as the store does. */
  snapshots?: Map<number, Uint8Array>;
  anchor?: { index: number; term: number; hash: Uint8Array };
  /** The independent figures for the intact chain. */
  expect: { size: number; head: string; root: string; stateRoot: string; checkpoints: number; leafHashes: Buffer[] };
}

function recordPayload(subject: string, key?: string): string {
  const rec: Record<string, unknown> = { v: 1, type: "policy.set", subject, data: { subject, n: subject.length }, ts: TS };
  if (key !== undefined) {
    rec.idempotency_key = key;
    rec.request_digest = ind.sha256(Buffer.from(`${key}/${subject}`)).toString("hex");
  }
  return ind.canonicalJson(rec);
}

/** Builds entries from specs with independent hashing; the state tables come from the independent replay. */
function build(specs: Spec[], opts: { lastApplied?: number } = {}): Chain {
  const entries: Entry[] = [];
  const leafHashes: Buffer[] = [];
  const checkpointRows: Array<Checkpoint & { index: number }> = [];
  let prev: Buffer = ind.genesisHash(CLUSTER);
  specs.forEach((s, i) => {
    const index = i + 1;
    let text = "";
    if (s.kind === "record") text = s.raw ?? recordPayload(s.subject, s.key);
    if (s.kind === "config") {
      text = s.raw ?? ind.canonicalJson({ v: 1, voters: s.voters.map(member), learners: (s.learners ?? []).map(member) });
    }
    if (s.kind === "checkpoint") {
      const body = {
        v: 1, cluster: CLUSTER, size: index - 1, root: ind.merkleRoot(leafHashes).toString("hex"), head: prev.toString("hex"),
        term: s.term, signer: s.signer.id, ts: TS,
        // subjects: sign the independent subjects_root of the state after the entries before it.
        ...(s.subjects === true ? { subjects_root: ind.subjectsRootOfState(ind.replayLog(entries.map((e) => ({ idx: e.index, term: e.term, kind: e.kind, payload: e.payload, hash: e.hash })), CLUSTER)).toString("hex") } : {}),
        ...s.patch,
      };
      const sig = cryptoSign(null, ind.checkpointMessage({ ...body, sig: "" }), (s.signWith ?? s.signer).priv).toString("hex");
      const cp = { ...body, sig, ...(s.patch?.sig === undefined ? {} : { sig: s.patch.sig }) };
      text = s.raw ?? ind.canonicalJson(cp);
      checkpointRows.push({ ...(cp as Checkpoint), index });
    }
    const payload = Buffer.from(text, "utf8");
    const hash = ind.entryHash(index, s.term, KIND[s.kind], prev, payload);
    entries.push({ index, term: s.term, kind: KIND[s.kind], payload, hash });
    leafHashes.push(ind.leafHash(hash));
    prev = hash;
  });
  const lastApplied = opts.lastApplied ?? entries.length;
  const rows: ind.RawLogRow[] = entries.slice(0, lastApplied).map((e) => ({ idx: e.index, term: e.term, kind: e.kind, payload: e.payload, hash: e.hash }));
  const state = ind.replayLog(rows, CLUSTER);
  const subjectRecords = [...state.records].flatMap(([subject, list]) => list.map((index, v) => ({ subject, version: v + 1, index })));
  return {
    entries,
    nodes: perfectNodes(leafHashes),
    checkpointRows,
    subjects: [...state.subjects.values()],
    subjectRecords,
    dedup: [...state.dedup.values()],
    hard: { commitIndex: entries.length, lastApplied, term: entries.length === 0 ? 0 : entries[entries.length - 1].term },
    meta: new Map([["cluster_id", CLUSTER]]),
    expect: {
      size: entries.length,
      head: prev.toString("hex"),
      root: ind.merkleRoot(leafHashes).toString("hex"),
      stateRoot: ind.stateRootOfState(state).toString("hex"),
      checkpoints: checkpointRows.length,
      leafHashes,
    },
  };
}

function source(c: Chain): ChainSource {
  return {
    getMeta: (key) => c.meta.get(key),
    hardState: () => c.hard,
    lastIndex: () => (c.entries.length === 0 ? 0 : c.entries[c.entries.length - 1].index),
    entries: (from, to) => c.entries.filter((e) => e.index >= from && e.index <= to),
    findNode: (level, index) => c.nodes.get(`${level}/${index}`),
    checkpoints: () => c.checkpointRows,
    allSubjects: () => c.subjects,
    allSubjectRecords: () => c.subjectRecords,
    allDedup: () => c.dedup,
    latestSnapshotBytes: () => c.snapshot,
    anchor: () => c.anchor,
    ...(c.snapshots === undefined ? {} : {
      snapshotIndexes: () => [...(c.snapshots as Map<number, Uint8Array>).keys()].sort((a, b) => b - a),
      snapshotBytesAt: (index: number) => c.snapshots?.get(index),
    }),
  };
}

// ---------------------------------------------------------------- every verification twice

/** Pages this small put page edges (a first entry without facts, a predecessor from the page before) all through these chains. */
const PAGE_ENTRIES = 3;

/** The source with the one extra read the pipeline needs: a run of a level's stored nodes, as Store.nodeRun answers. */
function paged(src: ChainSource): PagedChainSource {
  const nodeRun = (level: number, from: number, to: number): Uint8Array | undefined => {
    const hashes: Uint8Array[] = [];
    for (let index = from; index <= to; index++) {
      const hash = src.findNode(level, index);
      if (hash === undefined || hash.length !== 32) return undefined;
      hashes.push(hash);
    }
    return Buffer.concat(hashes);
  };
  // As SQLite's hex() gives them: a row's payload and hash as (uppercase) hex text.
  const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex").toUpperCase();
  function* logRowsHex(from: number, to: number): IterableIterator<HexLogRow> {
    for (const e of src.entries(from, to)) yield [e.index, e.term, e.kind, hex(e.payload), hex(e.hash)];
  }
  return Object.assign(Object.create(src) as ChainSource, { nodeRun, logRowsHex });
}

/**
 * verifyChain as it is, and again with every entry's facts (its hash, leaf and record checks)
 * computed ahead a page at a time, as verify-chain's worker threads do (here on this thread, so
 * the mutation runs see it: test/node/verify-pipeline.test.ts and test/verify/tamper.test.ts run
 * the threads): the two reports must be equal, so every case of this file holds for both ways.
 */
function verifyChain(src: ChainSource, options: VerifyOptions = {}): VerifyReport {
  const here = verifyOnThisThread(src, options);
  const { onProgress: _progress, ...rest } = options;
  expect(verifyOnThisThread(new ParallelChainSource(paged(src), new InThreadPages(), PAGE_ENTRIES), rest)).toEqual(here);
  return here;
}

/** The base chain: two configs' worth of keys, records with and without keys, a duplicate, two checkpoints (one by a learner). */
const BASE: Spec[] = [
  { kind: "config", term: 1, voters: [N1], learners: [N2] }, // 1
  { kind: "record", term: 1, subject: "a" }, // 2
  { kind: "record", term: 1, subject: "b", key: "k1" }, // 3
  { kind: "noop", term: 2 }, // 4
  { kind: "checkpoint", term: 2, signer: N1 }, // 5
  { kind: "record", term: 2, subject: "a" }, // 6
  { kind: "record", term: 2, subject: "c", key: "k1" }, // 7: a retry of k1, changes nothing
  { kind: "record", term: 2, subject: "b", key: "k2" }, // 8
  { kind: "checkpoint", term: 2, signer: N2 }, // 9: a learner's key is a configured key
  { kind: "record", term: 3, subject: "a" }, // 10
];

const base = (): Chain => build(BASE);
const withSpec = (i: number, s: Spec): Spec[] => BASE.map((x, j) => (j === i - 1 ? s : x));

function expectBad(r: VerifyReport, index: number, reason: RegExp): void {
  expect({ ok: r.ok, first_bad_index: r.first_bad_index }).toEqual({ ok: false, first_bad_index: index });
  expect(r.reason).toMatch(reason);
  expect(r).toMatchObject({ head: null, root: null, state_root: null, last_applied: 0 });
}

describe("verifyChain on an intact chain", () => {
  test("reports exactly the independent size, head, Merkle root and state_root", () => {
    const c = base();
    const r = verifyChain(source(c));
    expect(r).toEqual({
      ok: true, from: "genesis", entries: 10, checkpoints: 2, size: 10,
      head: c.expect.head, root: c.expect.root, state_root: c.expect.stateRoot, last_applied: 10,
      // Without a trust file nothing is "signed": the whole chain is graded self-consistent only.
      anchor: "self-consistent, not anchored", signed_size: 0, checkpointed_size: 8, grades: [{ from: 1, to: 10, grade: "self-consistent, not anchored" }],
    });
    expect(c.expect.checkpoints).toBe(2);
  });

  test("verifyChainSteps yields at least once per entry and returns the same report", () => {
    const c = base();
    const steps = verifyChainSteps(source(c));
    let yields = 0;
    let r = steps.next();
    for (let guard = 0; r.done !== true && guard < 10_000; guard++) {
      yields++;
      r = steps.next();
    }
    expect(r.done).toBe(true);
    expect(yields).toBeGreaterThanOrEqual(10);
    expect(r.value).toEqual(verifyChain(source(c)));
  });

  test("`to` stops early: size, head and root are those of the prefix, and the end-of-log checks are skipped", () => {
    const c = base();
    c.hard = { ...c.hard, commitIndex: 99, lastApplied: 10 }; // would be a violation without `to`
    const r = verifyChain(source(c), { to: 6 });
    expect(r).toMatchObject({
      ok: true, entries: 6, checkpoints: 1, size: 6, last_applied: 6,
      head: Buffer.from(c.entries[5].hash).toString("hex"),
      root: ind.merkleRoot(c.expect.leafHashes, 6).toString("hex"),
    });
  });

  test("last_applied below the log end: only applied records are in the state, and last_applied is reported", () => {
    const c = build(BASE, { lastApplied: 7 });
    const r = verifyChain(source(c));
    expect(r).toMatchObject({ ok: true, size: 10, last_applied: 7, state_root: c.expect.stateRoot });
    expect(c.expect.stateRoot).not.toBe(base().expect.stateRoot);
  });

  test("an empty log with a cluster id verifies as the empty tree", () => {
    const c = build([]);
    expect(verifyChain(source(c))).toEqual({
      ok: true, from: "genesis", entries: 0, checkpoints: 0, size: 0, head: null,
      root: ind.sha256().toString("hex"), state_root: ind.sha256().toString("hex"), last_applied: 0,
      anchor: "self-consistent, not anchored", signed_size: 0, checkpointed_size: 0, grades: [],
    });
  });

  test("progress is reported every 1024 entries and once at the end", () => {
    const specs: Spec[] = [{ kind: "config", term: 1, voters: [N1] }, ...Array.from({ length: 1029 }, () => ({ kind: "noop" as const, term: 1 }))];
    const c = build(specs);
    const calls: Array<[number, number]> = [];
    const r = verifyChain(source(c), { onProgress: (done, total) => calls.push([done, total]) });
    expect(r.ok).toBe(true);
    expect(calls).toEqual([[1024, 1030], [1030, 1030]]);
  });

  test("a checkpoint signed by a key that a later CONFIG adds verifies", () => {
    const specs: Spec[] = [...BASE, { kind: "config", term: 3, voters: [N3] }, { kind: "checkpoint", term: 3, signer: N3 }];
    expect(verifyChain(source(build(specs)))).toMatchObject({ ok: true, checkpoints: 3, size: 12 });
  });
});

describe("verifyChain refuses a broken data dir: ok false, the first bad index, and why", () => {
  test("no cluster_id", () => {
    const c = base();
    c.meta.clear();
    const r = verifyChain(source(c));
    expectBad(r, 0, /no cluster_id in meta/);
    expect(r).toMatchObject({ entries: 0, checkpoints: 0, size: 0 });
  });

  test.each([
    ["term", { term: 1.5 }, /hard_state term is not a whole number: 1\.5/],
    ["commit_index", { commitIndex: -1 }, /hard_state commit_index is not a whole number: -1/],
    ["last_applied", { lastApplied: Number.NaN }, /hard_state last_applied is not a whole number: null/],
    ["last_applied (a string)", { lastApplied: "3" as unknown as number }, /hard_state last_applied is not a whole number: "3"/],
    ["term (beyond 2^53)", { term: 2 ** 53 }, /hard_state term is not a whole number/],
  ])("hard state %s that is not a whole number", (_name, patch, reason) => {
    const c = base();
    c.hard = { ...c.hard, ...patch };
    expectBad(verifyChain(source(c)), 0, reason);
  });

  test("a hard state of zeros is a whole number (the check is >= 0)", () => {
    const c = build([]);
    c.hard = { commitIndex: 0, lastApplied: 0, term: 0 };
    expect(verifyChain(source(c)).ok).toBe(true);
  });

  test("a missing entry", () => {
    const c = base();
    c.entries = c.entries.filter((e) => e.index !== 4);
    const r = verifyChain(source(c));
    expectBad(r, 4, /^entry 4 is missing \(next stored index is 5\)$/);
    expect(r).toMatchObject({ entries: 3, size: 3, checkpoints: 0 });
  });

  test.each([
    ["0", 0, /^term 0 is not a whole number >= 1$/],
    ["1.5", 1.5, /^term 1\.5 is not a whole number >= 1$/],
    ["-1", -1, /^term -1 is not a whole number >= 1$/],
    // A damaged row can hold any SQLite value: the report shows it as read, through the pipeline too.
    ["text", "2" as unknown as number, /^term "2" is not a whole number >= 1$/],
    ["NULL", null as unknown as number, /^term null is not a whole number >= 1$/],
  ])("an entry with term %s", (_name, term, reason) => {
    const c = base();
    c.entries[5] = { ...c.entries[5], term };
    expectBad(verifyChain(source(c)), 6, reason);
  });

  test("an entry whose kind or index is text, as a damaged row can hold", () => {
    const kind = base();
    kind.entries[3] = { ...kind.entries[3], kind: "0" as unknown as number };
    expectBad(verifyChain(source(kind)), 4, /^kind "0" is not 0\.\.3$/);
    const index = base();
    index.entries[3] = { ...index.entries[3], index: "4" as unknown as number };
    expectBad(verifyChain(source(index)), 4, /^entry 4 is missing \(next stored index is 4\)$/);
  });

  test.each([[4], [-1], [1.5]])("an entry of kind %p", (kind) => {
    const c = base();
    c.entries[3] = { ...c.entries[3], kind };
    expectBad(verifyChain(source(c)), 4, new RegExp(`^kind ${kind} is not 0\\.\\.3$`));
  });

  test("a stored hash that is not 32 bytes", () => {
    const c = base();
    c.entries[2] = { ...c.entries[2], hash: c.entries[2].hash.subarray(0, 31) };
    expectBad(verifyChain(source(c)), 3, /^stored hash is 31 bytes, not 32$/);
  });

  test("a term lower than the previous entry's (the chain itself is well hashed)", () => {
    const c = build(withSpec(6, { kind: "record", term: 1, subject: "a" }));
    expectBad(verifyChain(source(c)), 6, /^term 1 is lower than the previous entry's 2$/);
  });

  test("an equal term is not lower", () => {
    expect(verifyChain(source(build(withSpec(6, { kind: "record", term: 2, subject: "a" })))).ok).toBe(true);
  });

  test("a changed payload byte is a hash mismatch naming both hashes", () => {
    const c = base();
    const payload = Buffer.from(c.entries[5].payload);
    payload[payload.length - 2] ^= 1;
    c.entries[5] = { ...c.entries[5], payload };
    const recomputed = ind.entryHash(6, 2, 1, c.entries[4].hash, payload).toString("hex");
    expectBad(verifyChain(source(c)), 6, new RegExp(`^entry hash mismatch: stored ${Buffer.from(c.entries[5].hash).toString("hex")}, recomputed ${recomputed}$`));
  });

  test("a changed term, kind or index in the hash preimage is a hash mismatch", () => {
    for (const patch of [{ term: 3 }, { kind: 0 }]) {
      const c = base();
      c.entries[5] = { ...c.entries[5], ...patch };
      expectBad(verifyChain(source(c)), 6, /^entry hash mismatch/);
    }
  });

  test("entry 1 that is not a CONFIG entry", () => {
    expectBad(verifyChain(source(build(withSpec(1, { kind: "noop", term: 1 })))), 1, /^entry 1 must be the genesis CONFIG entry$/);
  });

  test.each([
    ["not JSON", "not json", /^CONFIG payload is not a configuration: not I-JSON: .+/],
    ["another version", ind.canonicalJson({ v: 2, voters: [member(N1)], learners: [] }), /^CONFIG payload is not a configuration: unsupported version 2$/],
    ["a member without a key", ind.canonicalJson({ v: 1, voters: [{ id: "n1", address: "x" }], learners: [] }), /^CONFIG payload is not a configuration: voters\[0\] has no public_key$/],
    ["learners missing", ind.canonicalJson({ v: 1, voters: [member(N1)] }), /^CONFIG payload is not a configuration: config has no learners$/],
  ])("a CONFIG payload that does not parse, with the reason: %s", (_name, raw, reason) => {
    expectBad(verifyChain(source(build(withSpec(1, { kind: "config", term: 1, voters: [], raw })))), 1, reason);
  });

  test("a CHECKPOINT payload that does not parse", () => {
    const c = build(withSpec(5, { kind: "checkpoint", term: 2, signer: N1, raw: ind.canonicalJson({ v: 1 }) }));
    expectBad(verifyChain(source(c)), 5, /^CHECKPOINT payload does not parse$/);
  });

  test.each([
    ["size", { size: 3 }, /^checkpoint size 3 is not the index before it \(4\)$/],
    ["size (one more)", { size: 5 }, /^checkpoint size 5 is not the index before it \(4\)$/],
    ["cluster", { cluster: "other" }, /^checkpoint names cluster other$/],
    ["root", { root: "00".repeat(32) }, new RegExp(`^checkpoint root ${"00".repeat(32)} is not root\\(4\\) [0-9a-f]{64}$`)],
    ["head", { head: "11".repeat(32) }, /^checkpoint head is not entry_hash\(4\)$/],
    ["term", { term: 1 }, /^checkpoint term 1 differs from its entry's term 2$/],
    ["signer", { signer: "n9" }, /^checkpoint signer n9 is not in the configuration$/],
  ])("a checkpoint with a wrong %s (correctly signed)", (_name, patch, reason) => {
    const c = build(withSpec(5, { kind: "checkpoint", term: 2, signer: N1, patch }));
    const r = verifyChain(source(c));
    expectBad(r, 5, reason);
    expect(r).toMatchObject({ entries: 4, size: 4, checkpoints: 0 });
  });

  test("the root a checkpoint must carry is the independent root(4)", () => {
    const c = build(withSpec(5, { kind: "checkpoint", term: 2, signer: N1, patch: { root: "00".repeat(32) } }));
    expect(verifyChain(source(c)).reason).toContain(ind.merkleRoot(c.expect.leafHashes, 4).toString("hex"));
  });

  test("a checkpoint signed by another configured node's key", () => {
    const c = build(withSpec(5, { kind: "checkpoint", term: 2, signer: N1, signWith: N2 }));
    expectBad(verifyChain(source(c)), 5, /^checkpoint signature does not verify against n1's key$/);
  });

  test("a checkpoint with one signature bit flipped", () => {
    const good = build(BASE).checkpointRows[0].sig;
    const flipped = Buffer.from(good, "hex");
    flipped[10] ^= 0x20;
    const c = build(withSpec(5, { kind: "checkpoint", term: 2, signer: N1, patch: { sig: flipped.toString("hex") } }));
    expectBad(verifyChain(source(c)), 5, /^checkpoint signature does not verify against n1's key$/);
  });

  test("a bad signature is the violation, with the figures as of its entry, though a later entry is wrong too", () => {
    // The signature is checked behind the replay in the pipeline (InThreadPages: only at the end),
    // after the replay has met the wrong root at 9; the report must still be the signature's.
    const specs = withSpec(5, { kind: "checkpoint", term: 2, signer: N1, signWith: N2 });
    const c = build(specs.map((x, j) => (j === 8 ? { kind: "checkpoint", term: 2, signer: N2, patch: { root: "00".repeat(32) } } : x)));
    const r = verifyChain(source(c));
    expectBad(r, 5, /^checkpoint signature does not verify against n1's key$/);
    expect(r).toMatchObject({ entries: 4, size: 4, checkpoints: 0 });
  });

  test("a checkpoint by a node that a later CONFIG removed", () => {
    const specs: Spec[] = [...BASE, { kind: "config", term: 3, voters: [N3] }, { kind: "checkpoint", term: 3, signer: N1 }];
    expectBad(verifyChain(source(build(specs))), 12, /^checkpoint signer n1 is not in the configuration$/);
  });

  test("a checkpoint by a node that no CONFIG ever named", () => {
    const specs: Spec[] = [...BASE, { kind: "checkpoint", term: 3, signer: N3 }];
    expectBad(verifyChain(source(build(specs))), 11, /^checkpoint signer n3 is not in the configuration$/);
  });

  test.each([
    ["leaf of entry 2", "0/1", 2],
    ["pair of entries 1-2", "1/0", 2],
    ["four of entries 1-4", "2/0", 4],
    ["eight of entries 1-8", "3/0", 8],
    ["pair of entries 9-10", "1/4", 10],
  ])("a missing stored Merkle node: %s", (_name, key, index) => {
    const c = base();
    c.nodes.delete(key);
    expectBad(verifyChain(source(c)), index, new RegExp(`^stored Merkle node ${key} is missing$`));
  });

  test.each([["0/0", 1], ["1/1", 4], ["3/0", 8]])("a stored Merkle node %s that differs", (key, index) => {
    const c = base();
    const h = Buffer.from(c.nodes.get(key) as Buffer);
    h[31] ^= 1;
    c.nodes.set(key, h);
    expectBad(verifyChain(source(c)), index, new RegExp(`^stored Merkle node ${key} differs from the recomputed hash$`));
  });

  test("an applied RECORD that does not apply (not canonical JSON)", () => {
    const raw = JSON.stringify({ v: 1, type: "t", subject: "a", data: 1, ts: TS });
    const c = build(withSpec(6, { kind: "record", term: 2, subject: "a", raw }), { lastApplied: 5 });
    c.hard = { ...c.hard, lastApplied: 10 };
    expectBad(verifyChain(source(c)), 6, /^RECORD entry 6 does not apply: payload is not in canonical form/);
  });

  test("a RECORD that does not apply but lies beyond last_applied is not replayed", () => {
    const raw = JSON.stringify({ v: 1, type: "t", subject: "a", data: 1, ts: TS });
    const c = build(withSpec(10, { kind: "record", term: 3, subject: "a", raw }), { lastApplied: 9 });
    expect(verifyChain(source(c))).toMatchObject({ ok: true, last_applied: 9, state_root: c.expect.stateRoot });
  });

  test("commit_index past the log end", () => {
    const c = base();
    c.hard = { ...c.hard, commitIndex: 11, lastApplied: 10 };
    const r = verifyChain(source(c));
    expectBad(r, 11, /^commit_index is 11 but the log ends at 10$/);
    expect(r).toMatchObject({ entries: 10, size: 10, checkpoints: 2 });
  });

  test("commit_index equal to the log end is fine, last_applied past commit_index is not", () => {
    const c = base();
    c.hard = { ...c.hard, commitIndex: 9, lastApplied: 10 };
    expectBad(verifyChain(source(c)), 0, /^last_applied 10 exceeds commit_index 9$/);
  });

  test("a hard state term below the last entry's term", () => {
    const c = base();
    c.hard = { ...c.hard, term: 2 };
    expectBad(verifyChain(source(c)), 0, /^hard state term 2 is lower than the last entry's term 3$/);
  });

  test("a hard state term above the last entry's is fine", () => {
    const c = base();
    c.hard = { ...c.hard, term: 7 };
    expect(verifyChain(source(c)).ok).toBe(true);
  });
});

describe("subjects_root: a checkpoint that signs one must sign the replayed state's", () => {
  // BASE with both checkpoints signing the independent subjects_root (the retry at 7 changes nothing).
  const SIGNED = BASE.map((x) => (x.kind === "checkpoint" ? { ...x, subjects: true } : x));

  test("the independent roots verify, from genesis and from a snapshot, and they differ between the two checkpoints", () => {
    const c = build(SIGNED);
    const roots = c.checkpointRows.map((cp) => cp.subjects_root);
    expect(roots.every((r) => typeof r === "string" && /^[0-9a-f]{64}$/.test(r))).toBe(true);
    expect(new Set(roots).size).toBe(2);
    expect(verifyChain(source(c))).toMatchObject({ ok: true, checkpoints: 2 });
    const fromSnap = compacted(6, N1, {}, build(SIGNED));
    expect(verifyChain(source(fromSnap), { from: "snapshot" })).toMatchObject({ ok: true, checkpoints: 1 });
  });

  test("a stale or foreign subjects_root, properly signed, is a violation at the checkpoint naming the replayed root", () => {
    const first = build(SIGNED).checkpointRows[0].subjects_root as string;
    const c = build(withSpec(9, { kind: "checkpoint", term: 2, signer: N2, patch: { subjects_root: first } }));
    // The state after 8 of this chain (its entry 5 signs no subjects_root, so its hashes differ from SIGNED's).
    const right = build(withSpec(9, { kind: "checkpoint", term: 2, signer: N2, subjects: true })).checkpointRows[1].subjects_root as string;
    expectBad(verifyChain(source(c)), 9, new RegExp(`^checkpoint subjects_root ${first} differs from the replayed state's ${right}$`));
  });

  test("a checkpoint past last_applied is not held to a state this data dir has not applied", () => {
    const c = build(withSpec(9, { kind: "checkpoint", term: 2, signer: N2, patch: { subjects_root: "00".repeat(32) } }), { lastApplied: 7 });
    expect(verifyChain(source(c))).toMatchObject({ ok: true, last_applied: 7 });
  });

  test("a wrong subjects_root is the violation, with the figures as of its entry, though a later entry is wrong too", () => {
    const specs = withSpec(9, { kind: "checkpoint", term: 2, signer: N2, patch: { subjects_root: "00".repeat(32) } });
    const c = build([...specs, { kind: "record", term: 2, subject: "d" }]);
    c.entries[10] = { ...c.entries[10], term: 1 }; // entry 11: a term lower than the one before
    const r = verifyChain(source(c));
    expectBad(r, 9, new RegExp(`^checkpoint subjects_root ${"00".repeat(32)} differs from the replayed state's [0-9a-f]{64}$`));
    expect(r).toMatchObject({ entries: 8, size: 8, checkpoints: 1 });
  });

  test("a checkpoint of exactly what was applied is held to it", () => {
    const c = build(withSpec(9, { kind: "checkpoint", term: 2, signer: N2, patch: { subjects_root: "00".repeat(32) } }), { lastApplied: 8 });
    expectBad(verifyChain(source(c)), 9, new RegExp(`^checkpoint subjects_root ${"00".repeat(32)} differs from the replayed state's [0-9a-f]{64}$`));
  });
});

describe("the checkpoints table must equal the log's CHECKPOINT entries", () => {
  test("a row at an index with no CHECKPOINT entry", () => {
    const c = base();
    c.checkpointRows.push({ ...c.checkpointRows[0], index: 6 });
    expectBad(verifyChain(source(c)), 6, /^checkpoints table has a row at 6 with no CHECKPOINT entry there$/);
  });

  test.each(["size", "root", "head", "term", "signer", "ts", "sig"] as const)("a row whose %s differs", (k) => {
    const c = base();
    const row = c.checkpointRows[1];
    c.checkpointRows[1] = { ...row, [k]: typeof row[k] === "number" ? (row[k] as number) + 1 : `${String(row[k])}x` };
    expectBad(verifyChain(source(c)), 9, new RegExp(`^checkpoints table ${k} at 9 differs from the log's checkpoint$`));
  });

  test("a CHECKPOINT entry with no row", () => {
    const c = base();
    c.checkpointRows = c.checkpointRows.filter((r) => r.index !== 5);
    expectBad(verifyChain(source(c)), 5, /^checkpoint entry 5 is missing from the checkpoints table$/);
  });
});

describe("the state tables must equal a replay of the log", () => {
  const subjectIndex = (c: Chain, s: string): number => c.subjects.findIndex((r) => r.subject === s);

  test.each([
    ["version", (r: SubjectRow) => ({ ...r, version: r.version + 1 })],
    ["last index", (r: SubjectRow) => ({ ...r, lastIndex: r.lastIndex - 1 })],
    ["head", (r: SubjectRow) => ({ ...r, head: Buffer.alloc(32, 9) })],
  ])("a subject row whose %s differs", (_name, change) => {
    const c = base();
    const i = subjectIndex(c, "a");
    c.subjects[i] = change(c.subjects[i]);
    expectBad(verifyChain(source(c)), 10, /^state of subject "a" differs from a replay of the log$/);
  });

  test("a subject the replay has but the table lacks", () => {
    const c = base();
    c.subjects = c.subjects.filter((r) => r.subject !== "b");
    expectBad(verifyChain(source(c)), 8, /^state of subject "b" differs from a replay of the log$/);
  });

  test("a subject the table has but the replay does not", () => {
    const c = base();
    c.subjects.push({ subject: "zz", version: 1, head: Buffer.alloc(32), lastIndex: 7 });
    expectBad(verifyChain(source(c)), 7, /^state has subject "zz" that a replay of the log does not$/);
  });

  test("a subject_records row pointing at another index", () => {
    const c = base();
    const i = c.subjectRecords.findIndex((r) => r.subject === "a" && r.version === 2);
    c.subjectRecords[i] = { ...c.subjectRecords[i], index: 7 };
    expectBad(verifyChain(source(c)), 7, /^subject_records row \(a, v2\) → 7 differs from a replay$/);
  });

  test("a subject_records row of an unknown subject", () => {
    const c = base();
    c.subjectRecords.push({ subject: "zz", version: 1, index: 4 });
    expectBad(verifyChain(source(c)), 4, /^subject_records row \(zz, v1\) → 4 differs from a replay$/);
  });

  test("a missing subject_records row", () => {
    const c = base();
    const want = c.subjectRecords.length;
    c.subjectRecords = c.subjectRecords.filter((r) => !(r.subject === "a" && r.version === 3));
    expectBad(verifyChain(source(c)), 0, new RegExp(`^subject_records has ${want - 1} rows, a replay has ${want}$`));
  });

  test("a missing dedup row", () => {
    const c = base();
    c.dedup = c.dedup.filter((d) => d.key !== "k2");
    expectBad(verifyChain(source(c)), 0, /^dedup has 1 rows, a replay has 2$/);
  });

  test("an extra dedup row", () => {
    const c = base();
    c.dedup.push({ ...c.dedup[0], key: "k9" });
    expectBad(verifyChain(source(c)), 0, /^dedup has 3 rows, a replay has 2$/);
  });

  test("a dedup row under another key", () => {
    const c = base();
    const i = c.dedup.findIndex((d) => d.key === "k2");
    c.dedup[i] = { ...c.dedup[i], key: "k3" };
    expectBad(verifyChain(source(c)), 8, /^dedup row for key "k2" differs from a replay$/);
  });

  test.each([
    ["digest", (d: DedupRow) => ({ ...d, digest: "0".repeat(64) })],
    ["index", (d: DedupRow) => ({ ...d, index: d.index + 1 })],
    ["term", (d: DedupRow) => ({ ...d, term: d.term + 1 })],
    ["hash", (d: DedupRow) => ({ ...d, hash: Buffer.alloc(32, 5) })],
  ])("a dedup row whose %s differs", (_name, change) => {
    const c = base();
    const i = c.dedup.findIndex((d) => d.key === "k1");
    c.dedup[i] = change(c.dedup[i]);
    expectBad(verifyChain(source(c)), 3, /^dedup row for key "k1" differs from a replay$/);
  });
});

// ---------------------------------------------------------------- from a snapshot

/** A snapshot at `at` made by src's makeSnapshot (the format under test elsewhere), from the independent state. */
function snapshotAt(c: Chain, at: number, signer: Node = N1, overrides: Partial<SnapshotDoc> = {}): { doc: SnapshotDoc; bytes: Uint8Array } {
  const range = new CompactRange();
  for (const e of c.entries.slice(0, at)) range.append(e.hash);
  const rows: ind.RawLogRow[] = c.entries.slice(0, at).map((e) => ({ idx: e.index, term: e.term, kind: e.kind, payload: e.payload, hash: e.hash }));
  const state = ind.replayLog(rows, CLUSTER);
  const config = c.entries[0].payload;
  const doc = makeSnapshot(
    {
      cluster: CLUSTER, index: at, term: c.entries[at - 1].term, hash: c.entries[at - 1].hash, range, config,
      subjects: state.subjects.values(),
      subjectRecords: [...state.records].flatMap(([subject, list]) => list.map((index, v) => ({ subject, version: v + 1, index }))),
      dedup: state.dedup.values(), signer: signer.id, ts: TS,
    },
    signer.seed,
  );
  const patched = { ...doc, ...overrides };
  return { doc: patched, bytes: Buffer.from(ind.canonicalJson(patched)) };
}

/** The chain compacted to `at`: entries up to it gone, the snapshot and anchor in place. */
function compacted(at: number, signer: Node = N1, overrides: Partial<SnapshotDoc> = {}, c: Chain = base()): Chain {
  const snap = snapshotAt(c, at, signer, overrides);
  c.snapshot = snap.bytes;
  c.anchor = { index: at, term: c.entries[at - 1].term, hash: c.entries[at - 1].hash };
  c.entries = c.entries.slice(at);
  return c;
}

describe("verifyChain from a snapshot", () => {
  test("verifies the tail after the snapshot and reports the same head, root and state_root as from genesis", () => {
    const c = compacted(6);
    const r = verifyChain(source(c), { from: "snapshot" });
    const full = base().expect;
    expect(r).toEqual({
      ok: true, from: "snapshot", entries: 4, checkpoints: 1, size: 10,
      head: full.head, root: full.root, state_root: full.stateRoot, last_applied: 10,
      anchor: "self-consistent, not anchored", signed_size: 0, checkpointed_size: 8, grades: [{ from: 7, to: 10, grade: "self-consistent, not anchored" }],
    });
  });

  test("the snapshot document verifies the same when encoded by src", () => {
    const c = compacted(6);
    const snap = snapshotAt(base(), 6);
    expect(Buffer.from(encodeSnapshot(snap.doc)).toString("utf8")).toBe(Buffer.from(snap.bytes).toString("utf8"));
    expect(verifyChain(source(c), { from: "snapshot" }).ok).toBe(true);
  });

  test("a snapshot signed by a learner verifies", () => {
    expect(verifyChain(source(compacted(6, N2)), { from: "snapshot" }).ok).toBe(true);
  });

  test("no snapshot", () => {
    expectBad(verifyChain(source(base()), { from: "snapshot" }), 0, /^no snapshot to start from$/);
  });

  test("snapshot bytes that do not parse", () => {
    const c = base();
    c.snapshot = Buffer.from("{}");
    const r = verifyChain(source(c), { from: "snapshot" });
    expectBad(r, 0, /^snapshot does not parse$/);
    expect(r.from).toBe("snapshot");
  });

  test("a snapshot whose configuration does not parse", () => {
    const c = compacted(6, N1, { config_b64: Buffer.from("nope").toString("base64") });
    expectBad(verifyChain(source(c), { from: "snapshot" }), 6, /^snapshot configuration does not parse$/);
  });

  test("a snapshot of another cluster", () => {
    const c = compacted(6, N1, { cluster: "elsewhere" });
    expectBad(verifyChain(source(c), { from: "snapshot" }), 6, /^snapshot is of cluster elsewhere$/);
  });

  test("a snapshot signer that its configuration does not name", () => {
    const c = compacted(6, N3);
    expectBad(verifyChain(source(c), { from: "snapshot" }), 6, /^snapshot signer n3 is not in its configuration$/);
  });

  test("a snapshot whose signature does not verify", () => {
    const c = compacted(6, N1, { ts: "2026-02-02T00:00:00Z" });
    expectBad(verifyChain(source(c), { from: "snapshot" }), 6, /^snapshot signature does not verify$/);
  });

  test("a log compacted past the snapshot", () => {
    const c = compacted(6);
    c.anchor = { index: 7, term: 2, hash: c.entries[0].hash };
    c.entries = c.entries.slice(1);
    expectBad(verifyChain(source(c), { from: "snapshot" }), 7, /^log compacted to 7, past the snapshot at 6$/);
  });

  test("an anchor at the snapshot itself is fine", () => {
    const c = compacted(6);
    expect(c.anchor?.index).toBe(6);
    expect(verifyChain(source(c), { from: "snapshot" }).ok).toBe(true);
  });

  test("the tail after a snapshot is checked: a hash mismatch right after it", () => {
    const c = compacted(6);
    c.entries[0] = { ...c.entries[0], hash: Buffer.alloc(32, 3) };
    const r = verifyChain(source(c), { from: "snapshot" });
    expectBad(r, 7, /^entry hash mismatch/);
    expect(r).toMatchObject({ entries: 0, size: 6 });
  });

  test("a missing entry right after the snapshot", () => {
    const c = compacted(6);
    c.entries = c.entries.slice(1);
    expectBad(verifyChain(source(c), { from: "snapshot" }), 7, /^entry 7 is missing \(next stored index is 8\)$/);
  });

  test("a checkpoint table row before the snapshot is not checked; one after it is", () => {
    const c = compacted(6);
    c.checkpointRows[0] = { ...c.checkpointRows[0], ts: "changed" }; // index 5: compacted away
    expect(verifyChain(source(c), { from: "snapshot" }).ok).toBe(true);
    c.checkpointRows[1] = { ...c.checkpointRows[1], ts: "changed" };
    expectBad(verifyChain(source(c), { from: "snapshot" }), 9, /^checkpoints table ts at 9 differs/);
  });

  test("from genesis on a compacted log", () => {
    const c = compacted(6);
    expectBad(verifyChain(source(c)), 1, /^the log is compacted up to 6: verify with --from snapshot$/);
  });

  test("from genesis with an anchor at 0 is a plain genesis verification", () => {
    const c = base();
    c.anchor = { index: 0, term: 0, hash: ind.genesisHash(CLUSTER) };
    expect(verifyChain(source(c)).ok).toBe(true);
  });
});

describe("startProblem: which starts a data dir can serve", () => {
  test("an uncompacted log without a snapshot serves genesis only", () => {
    const src = source(base());
    expect(startProblem(src, "genesis")).toBeNull();
    expect(startProblem(src, "snapshot")).toEqual({
      reason: "this node holds no snapshot to verify from; verify from=genesis", possible: ["genesis"],
    });
  });

  test("an uncompacted log with a snapshot serves both", () => {
    const c = base();
    c.snapshot = snapshotAt(c, 6).bytes;
    expect(startProblem(source(c), "genesis")).toBeNull();
    expect(startProblem(source(c), "snapshot")).toBeNull();
    c.anchor = { index: 0, term: 0, hash: ind.genesisHash(CLUSTER) };
    expect(startProblem(source(c), "genesis")).toBeNull();
  });

  test("a compacted log serves the snapshot only, named by its anchor index", () => {
    const src = source(compacted(6));
    expect(startProblem(src, "snapshot")).toBeNull();
    expect(startProblem(src, 6)).toBeNull();
    expect(startProblem(src, "genesis")).toEqual({
      reason: "this node's log is compacted up to 6, so it cannot replay from genesis; verify from=6", possible: [6],
    });
    expect(startProblem(src, 5)).toEqual({ reason: "no snapshot is retained at 5; verify from=6", possible: [6] });
  });

  test("a compacted log whose snapshot is gone serves nothing", () => {
    const c = compacted(6);
    c.snapshot = undefined;
    const none = "it can serve no verification start";
    expect(startProblem(source(c), "genesis")).toEqual({ reason: `this node's log is compacted up to 6, so it cannot replay from genesis; ${none}`, possible: [] });
    expect(startProblem(source(c), "snapshot")).toEqual({ reason: `this node holds no snapshot to verify from; ${none}`, possible: [] });
  });
});

// ---------------------------------------------------------------- more starts, a trust file, a pin

describe("startProblem and verifyChain with retained snapshots listed, history_from and unreadable snapshots", () => {
  test("snapshots listed newest first are offered earliest first; a snapshot before the compaction point cannot start", () => {
    const c = compacted(6);
    c.snapshots = new Map([[6, c.snapshot as Uint8Array], [5, snapshotAt(base(), 5).bytes], [9, snapshotAt(base(), 9).bytes]]);
    expect(startProblem(source(c), 5)).toEqual({
      reason: "the log before 6 is gone, so the snapshot at 5 cannot start a verification; verify from=6 or from=9", possible: [6, 9],
    });
    expect(startProblem(source(c), 9)).toBeNull();
    expect(verifyChain(source(c), { from: 9 })).toMatchObject({ ok: true, from: 9, entries: 1, size: 10 });
    expect(verifyChain(source(c), { from: 6 })).toMatchObject({ ok: true, from: 6, entries: 4, size: 10 });
  });

  test("history_from: a snapshot at history_from - 1 still starts a verification, one below it does not", () => {
    const c = base();
    c.snapshots = new Map([[5, snapshotAt(c, 5).bytes], [6, snapshotAt(c, 6).bytes]]);
    c.meta.set("history_from", "7");
    expect(startProblem(source(c), 6)).toBeNull();
    expect(startProblem(source(c), 5)).toEqual({
      reason: "history before 7 is pruned, so the snapshot at 5 cannot start a verification; verify from=6", possible: [6],
    });
    expect(startProblem(source(c), "genesis")).toEqual({
      reason: "this node's history starts at 7 (a recorded prune), so it cannot replay from genesis; verify from=6", possible: [6],
    });
    c.meta.set("history_from", "1");
    expect(startProblem(source(c), "genesis")).toBeNull();
    expect(startProblem(source(c), 5)).toBeNull();
  });

  test.each(["0", "-3", "2.5", "x", ""])("a history_from of %p is read as 1 (the whole history)", (value) => {
    const c = base();
    c.meta.set("history_from", value);
    expect(startProblem(source(c), "genesis")).toBeNull();
  });

  test("without a listing, a latest snapshot that does not parse is no start; a number not the latest's index is none", () => {
    const c = compacted(6);
    expect(verifyChain(source(c), { from: 6 })).toMatchObject({ ok: true, from: 6 });
    expectBad(verifyChain(source(c), { from: 5 }), 0, /^no snapshot to start from$/);
    c.snapshot = Buffer.from("{}");
    expect(startProblem(source(c), "snapshot")).toEqual({ reason: "this node holds no snapshot to verify from; it can serve no verification start", possible: [] });
  });
});

describe("verifyChain anchored to a trust file and a pinned checkpoint", () => {
  const trust = (over: Partial<TrustFile> = {}): TrustFile => ({
    v: 1, cluster: CLUSTER, genesis_hash: ind.genesisHash(CLUSTER).toString("hex"),
    genesis_config: { voters: [member(N1)], learners: [member(N2)] }, ...over,
  });
  const pinOf = (c: Chain, index: number, patch: Partial<PinnedCheckpoint> = {}): PinnedCheckpoint =>
    ({ ...(c.checkpointRows.find((r) => r.index === index) as PinnedCheckpoint), ...patch });

  test("an intact chain under its trust file: signed up to the last checkpoint, chained after it", () => {
    const c = base();
    expect(verifyChain(source(c), { trust: trust() })).toEqual({
      ok: true, from: "genesis", entries: 10, checkpoints: 2, size: 10,
      head: c.expect.head, root: c.expect.root, state_root: c.expect.stateRoot, last_applied: 10,
      anchor: "trust file", signed_size: 8, checkpointed_size: 8,
      grades: [{ from: 1, to: 8, grade: "signed" }, { from: 9, to: 10, grade: "chained, not yet signed" }],
    });
  });

  test("a trust file of another cluster is refused before any entry", () => {
    const r = verifyChain(source(base()), { trust: trust({ cluster: "other", genesis_hash: ind.genesisHash("other").toString("hex") }) });
    expectBad(r, 0, /^genesis differs from the trust file: this data dir is of cluster verify-test, the trust file pins other$/);
    expect(r).toMatchObject({ anchor: "trust file", entries: 0, size: 0 });
  });

  test("a trust file anchors a verification from genesis only", () => {
    const r = verifyChain(source(compacted(6)), { from: "snapshot", trust: trust() });
    expectBad(r, 0, /^a trust file anchors a verification from genesis only/);
    expect(r.from).toBe("snapshot");
  });

  test("a genesis CONFIG other than the pinned one is a violation at 1", () => {
    const r = verifyChain(source(base()), { trust: trust({ genesis_config: { voters: [{ ...member(N1), public_key: N3.pubHex }], learners: [member(N2)] } }) });
    expectBad(r, 1, /^genesis CONFIG differs from the trust file's genesis_config \(other members or keys\)$/);
    expect(r).toMatchObject({ anchor: "trust file", entries: 0 });
  });

  test("a pinned checkpoint that the log holds verifies; its root, head and entry are checked", () => {
    const c = base();
    expect(verifyChain(source(c), { pinned: pinOf(c, 9) })).toMatchObject({ ok: true, anchor: "self-consistent, not anchored", checkpointed_size: 8 });
    expect(verifyChain(source(c), { trust: { ...trust(), checkpoint: pinOf(c, 9) } })).toMatchObject({ ok: true, signed_size: 8 });
    const r = verifyChain(source(c), { pinned: pinOf(c, 9, { root: "00".repeat(32) }) });
    expectBad(r, 8, new RegExp(`^root\\(8\\) is ${ind.merkleRoot(c.expect.leafHashes, 8).toString("hex")}, not the pinned checkpoint's root ${"00".repeat(32)}`));
    expect(r).toMatchObject({ anchor: "self-consistent, not anchored", entries: 7, size: 7 });
    expectBad(verifyChain(source(c), { pinned: pinOf(c, 9, { ts: "2026-01-01T00:00:01Z" }) }), 9, /^entry 9 is not the pinned checkpoint$/);
  });

  test("--checkpoint overrides the trust file's pin", () => {
    const c = base();
    const bad = pinOf(c, 9, { root: "00".repeat(32) });
    expect(verifyChain(source(c), { trust: { ...trust(), checkpoint: bad }, pinned: pinOf(c, 9) }).ok).toBe(true);
    expectBad(verifyChain(source(c), { trust: { ...trust(), checkpoint: bad } }), 8, /^root\(8\) is /);
  });

  test("a pinned checkpoint of another cluster is refused; a log cut back before the pin is a violation past its end", () => {
    const c = base();
    expectBad(verifyChain(source(c), { pinned: pinOf(c, 9, { cluster: "x" }) }), 0, /^the pinned checkpoint is of cluster x, this data dir of verify-test$/);
    const cut = build(BASE.slice(0, 7));
    expectBad(verifyChain(source(cut), { pinned: pinOf(c, 9) }), 8, /^the log ends at 7, before the pinned checkpoint's size 8: this history was cut back/);
    // with `to`, the end-of-log checks (this one among them) are not made
    expect(verifyChain(source(c), { pinned: pinOf(c, 9), to: 6 }).ok).toBe(true);
  });

  test("time running backwards along the log is a violation at the entry, anchored or not", () => {
    const raw = ind.canonicalJson({ v: 1, type: "policy.set", subject: "a", data: 1, ts: "2025-12-31T23:59:59Z" });
    const c = build(withSpec(6, { kind: "record", term: 2, subject: "a", raw }));
    const r = verifyChain(source(c));
    expectBad(r, 6, /^ts 2025-12-31T23:59:59Z is earlier than 2026-01-01T00:00:00\.000Z at index 5: time in the log runs backwards$/);
    expect(r).toMatchObject({ anchor: "self-consistent, not anchored", entries: 5, checkpoints: 1 });
  });
});

describe("the replay applies exactly the entries up to last_applied", () => {
  test.each([[6], [5], [2], [1]])("last_applied %i: the state_root is the independent one of that prefix", (lastApplied) => {
    const c = build(BASE, { lastApplied });
    expect(verifyChain(source(c))).toMatchObject({ ok: true, size: 10, last_applied: lastApplied, state_root: c.expect.stateRoot });
  });
});
