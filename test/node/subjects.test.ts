// src/node/subjects.ts on a real SQLite store: the tree a node keeps as it applies, the copy it
// freezes at each checkpoint (and the mismatch it reports), the root a leader signs over its durable
// tail before applying it, and the tree rebuilt at start, which re-chains the subjects that got
// records after the latest checkpoint, and gives up (no proof until the next checkpoint) when their
// early records are no longer in the log. Expected roots come from test/support/independent.ts.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Entry, EntryKind, entryHash, genesisHash } from "../../src/ledger/entry";
import { canonicalJson } from "../../src/ledger/canonical";
import { applyEntry } from "../../src/ledger/state-machine";
import { utf8 } from "../../src/ledger/bytes";
import { Store } from "../../src/storage/store";
import { SubjectCommitments } from "../../src/node/subjects";
import * as ind from "../support/independent";

const CLUSTER = "subjects-test";
const TS = "2026-01-01T00:00:00Z";
let dir = "";
let store: Store;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-subjects-"));
  store = new Store(path.join(dir, "ledger.db"));
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

type Spec = { record: string; key?: string } | { checkpoint: string | "right" };

/** Entries from specs, chained from the genesis hash; a checkpoint's subjects_root is given or "right" (the independent one). */
function chain(specs: readonly Spec[]): Entry[] {
  const out: Entry[] = [];
  let prev = genesisHash(CLUSTER);
  specs.forEach((s, i) => {
    const index = i + 1;
    let kind = EntryKind.Record;
    let text: string;
    if ("record" in s) {
      text = canonicalJson({ v: 1, type: "policy.set", subject: s.record, data: { i }, ts: TS, ...(s.key === undefined ? {} : { idempotency_key: s.key, request_digest: "ab".repeat(32) }) });
    } else {
      kind = EntryKind.Checkpoint;
      const rows = out.map((e) => ({ idx: e.index, term: e.term, kind: e.kind, payload: e.payload, hash: e.hash }));
      const root = s.checkpoint === "right" ? ind.subjectsRootOfState(ind.replayLog(rows, CLUSTER)).toString("hex") : s.checkpoint;
      text = canonicalJson({ v: 1, cluster: CLUSTER, size: index - 1, root: "00".repeat(32), head: "00".repeat(32), term: 1, signer: "n1", ts: TS, subjects_root: root, sig: "00".repeat(64) });
    }
    const payload = utf8(text);
    const hash = entryHash(index, 1, kind, prev, payload);
    out.push({ index, term: 1, kind, payload, hash });
    prev = hash;
  });
  return out;
}

/** Stores and applies entries as the runtime does: through the tracking store, then applied(). */
function applyAll(c: SubjectCommitments, entries: readonly Entry[]): Array<string | null> {
  const state = c.tracking(store);
  return store.transaction(() => {
    store.appendEntries(entries, []);
    return entries.map((e) => {
      applyEntry(state, e);
      return c.applied(e);
    });
  });
}

const rootAt = (entries: readonly Entry[], size: number): string =>
  ind.subjectsRootOfState(ind.replayLog(entries.slice(0, size).map((e) => ({ idx: e.index, term: e.term, kind: e.kind, payload: e.payload, hash: e.hash })), CLUSTER)).toString("hex");

const SPECS: Spec[] = [
  { record: "a" }, { record: "b" }, { record: "a", key: "k" }, { record: "c", key: "k" }, // 4: a retry of k: no change
  { checkpoint: "right" }, // 5
  { record: "b" }, { record: "d" }, { record: "a" },
];

test("a checkpoint freezes the tree of the state after its size; its proofs sit under the signed root", () => {
  const c = new SubjectCommitments(store);
  const entries = chain(SPECS);
  expect(applyAll(c, entries)).toEqual(entries.map(() => null));
  const frozen = c.atCheckpoint();
  expect({ index: frozen?.index, size: frozen?.size }).toEqual({ index: 5, size: 4 });
  expect(Buffer.from(frozen?.tree.root() ?? []).toString("hex")).toBe(rootAt(entries, 4));
  // Later records changed the live tree, not the frozen one: b has 1 record there, d none.
  expect(c.proof("b")?.proof?.version).toBe(1);
  expect(c.proof("d")?.proof).toBeUndefined();
  expect(c.proof("c")?.proof).toBeUndefined(); // the retry applied nothing
  const p = c.proof("a")?.proof;
  expect(p).toMatchObject({ subject: "a", version: 2, leaf_index: 0, size: 2 });
  if (p === undefined) return;
  const leaf = ind.subjectLeafHash("a", p.version, Buffer.from(p.head));
  expect(ind.verifyInclusion(p.leaf_index, p.size, leaf, p.path.map((x) => Buffer.from(x)), Buffer.from(rootAt(entries, 4), "hex"))).toBe(true);
});

test("a checkpoint that signs another subjects_root is reported at apply, naming both", () => {
  const c = new SubjectCommitments(store);
  const entries = chain([{ record: "a" }, { checkpoint: "ab".repeat(32) }]);
  const problems = applyAll(c, entries);
  expect(problems[0]).toBeNull();
  expect(problems[1]).toBe(`checkpoint at 2 signs subjects_root ${"ab".repeat(32)}, but the state after 1 has ${rootAt(entries, 1)}`);
});

test("the leader's root over its durable tail is the root after the tail is applied, and applying nothing of it", () => {
  const c = new SubjectCommitments(store);
  const entries = chain(SPECS);
  applyAll(c, entries.slice(0, 5));
  const tail = entries.slice(5);
  store.transaction(() => store.appendEntries(tail, []));
  expect(c.rootAfter(tail)).toBe(rootAt(entries, 8));
  // The copy took the tail; the live tree and the store did not.
  expect(store.getSubject("d")).toBeUndefined();
  expect(c.rootAfter([])).toBe(rootAt(entries, 5));
});

test("at start: the tree of the latest checkpoint is rebuilt by re-chaining the subjects with later records", () => {
  const entries = chain(SPECS);
  applyAll(new SubjectCommitments(store), entries);
  store.setHardState({ term: 1, votedFor: null, commitIndex: 8, lastApplied: 8 });
  const latest = { v: 1 as const, cluster: CLUSTER, size: 4, root: "", head: "", term: 1, signer: "n1", ts: TS, subjects_root: rootAt(entries, 4), sig: "", index: 5 };
  const again = new SubjectCommitments(store);
  expect(again.load(8, latest)).toBeNull();
  expect(Buffer.from(again.atCheckpoint()?.tree.root() ?? []).toString("hex")).toBe(rootAt(entries, 4));
  expect(again.rootAfter([])).toBe(rootAt(entries, 8));
  // A signed root the rebuilt tree does not have is reported.
  expect(again.load(8, { ...latest, subjects_root: "00".repeat(32) })).toMatch(/^checkpoint at 5 signs subjects_root 0{64}, but the state after 4 has /);
});

test("at start, with the early records of such a subject gone from the log, there is no frozen tree until the next checkpoint", () => {
  const entries = chain(SPECS);
  applyAll(new SubjectCommitments(store), entries);
  // A prune's log cut: entries 1..2 (a's and b's first records) are no longer in the log.
  store.setHardState({ term: 1, votedFor: null, commitIndex: 8, lastApplied: 8 });
  store.transaction(() => store.compactTo({ index: 2, term: 1, hash: entries[1].hash }));
  const latest = { v: 1 as const, cluster: CLUSTER, size: 4, root: "", head: "", term: 1, signer: "n1", ts: TS, subjects_root: rootAt(entries, 4), sig: "", index: 5 };
  const again = new SubjectCommitments(store);
  expect(again.load(8, latest)).toBeNull();
  expect(again.atCheckpoint()).toBeNull();
  expect(again.proof("a")).toBeNull();
  // The live tree is whole (it comes from the state tables): the next checkpoint freezes it.
  expect(again.rootAfter([])).toBe(rootAt(entries, 8));
});
