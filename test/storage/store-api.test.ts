// Every method of src/storage/store.ts against a real SQLite file in a temp dir: what goes in comes
// back out (byte for byte, in order, with the right bounds), the guards refuse, and a Store written
// through its own API verifies as a chain with the independent figures (test/support/independent.ts).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Store, StoredSnapshot } from "../../src/storage/store";
import { loadMigrations } from "../../src/storage/migrations";
import { chainEntry, Entry, EntryKind, genesisHash } from "../../src/ledger/entry";
import { CompactRange, MerkleNode } from "../../src/ledger/merkle";
import { Checkpoint } from "../../src/ledger/checkpoint";
import { verifyChain } from "../../src/ledger/verify";
import * as ind from "../support/independent";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-store-api-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (): string => path.join(dir, `s${++n}.db`);
const hex = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString("hex"));

function chain(count: number, cluster = "c", kindAt: (i: number) => EntryKind = () => EntryKind.Noop): Entry[] {
  let prev = genesisHash(cluster);
  const out: Entry[] = [];
  for (let i = 1; i <= count; i++) {
    const e = chainEntry(i, 1 + Math.floor(i / 4), kindAt(i), prev, Buffer.from(`{"i":${i}}`));
    out.push(e);
    prev = e.hash;
  }
  return out;
}

function write(store: Store, es: Entry[], range = new CompactRange()): MerkleNode[] {
  const nodes: MerkleNode[] = [];
  for (const e of es) nodes.push(...range.append(e.hash));
  store.transaction(() => store.appendEntries(es, nodes));
  return nodes;
}

const cp = (size: number, term = 1): Checkpoint => ({
  v: 1, cluster: "c", size, root: `${size}`.padStart(64, "0"), head: `${size}`.padStart(64, "1"), term, signer: "n1", ts: `t${size}`, sig: "ab".repeat(64),
});

describe("Store: meta and hard state", () => {
  test("meta is set, overwritten and read back; an absent key is undefined", () => {
    const s = new Store(file());
    expect(s.getMeta("cluster_id")).toBeUndefined();
    s.setMeta("cluster_id", "a");
    s.setMeta("other", "x");
    s.setMeta("cluster_id", "b");
    expect(s.getMeta("cluster_id")).toBe("b");
    expect(s.getMeta("other")).toBe("x");
    s.close();
    s.close(); // a second close is a no-op
  });

  test("hard state starts at zeros and round-trips every field", () => {
    const s = new Store(file());
    expect(s.hardState()).toEqual({ term: 0, votedFor: null, commitIndex: 0, lastApplied: 0 });
    s.setHardState({ term: 7, votedFor: "n2", commitIndex: 5, lastApplied: 3 });
    expect(s.hardState()).toEqual({ term: 7, votedFor: "n2", commitIndex: 5, lastApplied: 3 });
    s.setCommitIndex(9);
    s.setLastApplied(8);
    expect(s.hardState()).toEqual({ term: 7, votedFor: "n2", commitIndex: 9, lastApplied: 8 });
    s.setHardState({ term: 7, votedFor: null, commitIndex: 9, lastApplied: 9 });
    expect(s.hardState().votedFor).toBeNull();
    expect(() => s.setHardState({ term: 7, votedFor: null, commitIndex: 4, lastApplied: 5 })).toThrow("last_applied 5 > commit_index 4");
    expect(s.hardState().lastApplied).toBe(9);
    s.close();
  });

  test("the file is WAL with synchronous FULL and foreign keys on, and every migration is recorded", () => {
    const f = file();
    const s = new Store(f);
    expect(s.db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(s.db.pragma("synchronous", { simple: true })).toBe(2);
    expect(s.db.pragma("foreign_keys", { simple: true })).toBe(1);
    expect(s.readonly).toBe(false);
    const versions = (s.db.prepare("SELECT version FROM schema_migrations").all() as Array<{ version: number }>).map((r) => r.version);
    expect(versions).toEqual(loadMigrations().map((m) => m.version));
    s.close();
  });

  test("readonly: an existing file opens without writing; a missing one is refused", () => {
    const f = file();
    const w = new Store(f);
    w.setMeta("cluster_id", "ro");
    w.close();
    const r = new Store(f, { readonly: true });
    expect(r.readonly).toBe(true);
    expect(r.getMeta("cluster_id")).toBe("ro");
    expect(() => r.setMeta("x", "y")).toThrow(/readonly/i);
    r.close();
    expect(() => new Store(path.join(dir, "missing.db"), { readonly: true })).toThrow();
    expect(fs.existsSync(path.join(dir, "missing.db"))).toBe(false);
  });
});

describe("Store: the log", () => {
  test("an empty log: no entries, index 0, no first index", () => {
    const s = new Store(file());
    expect(s.lastEntry()).toBeUndefined();
    expect(s.lastIndex()).toBe(0);
    expect(s.firstIndex()).toBeUndefined();
    expect(s.entry(1)).toBeUndefined();
    expect([...s.entries(1, 10)]).toEqual([]);
    s.close();
  });

  test("entries come back byte for byte, in order, within inclusive bounds", () => {
    const s = new Store(file());
    const es = chain(9, "c", (i) => (i % 4) as EntryKind);
    write(s, es);
    expect(s.lastIndex()).toBe(9);
    expect(s.firstIndex()).toBe(1);
    const back = s.entry(6) as Entry;
    expect({ ...back, payload: hex(back.payload), hash: hex(back.hash) }).toEqual({ ...es[5], payload: hex(es[5].payload), hash: hex(es[5].hash) });
    expect(back.kind).toBe(2);
    expect(s.lastEntry()?.index).toBe(9);
    expect(hex(s.lastEntry()?.hash)).toBe(hex(es[8].hash));
    expect([...s.entries(3, 5)].map((e) => e.index)).toEqual([3, 4, 5]);
    expect([...s.entries(8, 100)].map((e) => e.index)).toEqual([8, 9]);
    expect([...s.entries(5, 4)]).toEqual([]);
    expect([...s.entries(1, 9)].map((e) => hex(e.hash))).toEqual(es.map((e) => hex(e.hash)));
    s.close();
  });

  test("a TEXT value in a BLOB column (a tampered row) reads as its UTF-8 bytes", () => {
    const s = new Store(file());
    write(s, chain(2));
    s.db.prepare("UPDATE log SET payload = 'héllo' WHERE idx = 2").run();
    expect(Buffer.from((s.entry(2) as Entry).payload).toString("utf8")).toBe("héllo");
    s.close();
  });

  test("Merkle nodes: stored, found, and a missing one is an assertion, never a zero", () => {
    const s = new Store(file());
    const es = chain(5);
    const nodes = write(s, es);
    expect(nodes.map((x) => `${x.level}/${x.index}`)).toEqual(["0/0", "0/1", "1/0", "0/2", "0/3", "1/1", "2/0", "0/4"]);
    const leaves = es.map((e) => ind.leafHash(e.hash));
    expect(hex(s.findNode(2, 0))).toBe(ind.merkleRoot(leaves.slice(0, 4)).toString("hex"));
    expect(hex(s.readNode(0, 4))).toBe(leaves[4].toString("hex"));
    expect(s.findNode(1, 2)).toBeUndefined();
    expect(() => s.readNode(1, 2)).toThrow("merkle node 1/2 missing from the store");
    s.close();
  });

  test("nodeRun: a level's nodes from..to as one run of 32-byte hashes in index order; undefined when one is missing or not 32 bytes", () => {
    const s = new Store(file());
    const es = chain(9);
    write(s, es);
    const leaves = es.map((e) => ind.leafHash(e.hash));
    expect(hex(s.nodeRun(0, 0, 8))).toBe(Buffer.concat(leaves).toString("hex"));
    expect(hex(s.nodeRun(0, 3, 5))).toBe(Buffer.concat(leaves.slice(3, 6)).toString("hex"));
    expect(hex(s.nodeRun(0, 4, 4))).toBe(leaves[4].toString("hex"));
    expect(hex(s.nodeRun(1, 0, 3))).toBe(Buffer.concat([0, 1, 2, 3].map((k) => ind.merkleRoot(leaves.slice(2 * k, 2 * k + 2)))).toString("hex"));
    // Past the last node of a level (1/4 would cover leaves 8 and 9; only 9 leaves exist), or a level with none.
    expect(s.nodeRun(1, 2, 4)).toBeUndefined();
    expect(s.nodeRun(0, 8, 9)).toBeUndefined();
    expect(s.nodeRun(5, 0, 0)).toBeUndefined();
    // A stored node that is not 32 bytes (only a damaged dir has one: the schema's CHECK is bypassed
    // here as a tamperer would) spoils the whole run, whichever it is.
    s.db.pragma("ignore_check_constraints = ON");
    s.db.prepare("UPDATE merkle_nodes SET hash = ? WHERE level = 0 AND idx = 4").run(Buffer.alloc(31));
    expect(s.nodeRun(0, 3, 5)).toBeUndefined();
    expect(s.nodeRun(0, 4, 4)).toBeUndefined();
    expect(hex(s.nodeRun(0, 5, 8))).toBe(Buffer.concat(leaves.slice(5, 9)).toString("hex"));
    s.close();
  });

  test("truncateFrom drops entries, the nodes covering them and their checkpoint rows; never at or below commit", () => {
    const s = new Store(file());
    write(s, chain(8));
    s.insertCheckpoint(4, cp(3));
    s.insertCheckpoint(7, cp(6));
    s.setCommitIndex(5);
    expect(() => s.truncateFrom(5)).toThrow("refusing to truncate at 5: commit index is 5");
    expect(() => s.truncateFrom(1)).toThrow(/refusing to truncate/);
    s.transaction(() => s.truncateFrom(6));
    expect(s.lastIndex()).toBe(5);
    expect(s.entry(6)).toBeUndefined();
    expect([...s.checkpoints("c")].map((r) => r.index)).toEqual([4]);
    const nodes = (s.db.prepare("SELECT level, idx FROM merkle_nodes ORDER BY level, idx").all() as Array<{ level: number; idx: number }>).map((r) => `${r.level}/${r.idx}`);
    expect(nodes).toEqual(["0/0", "0/1", "0/2", "0/3", "0/4", "1/0", "1/1", "2/0"]);
    s.close();
  });

  test("compactTo keeps the anchor and drops entries up to it; never past last_applied", () => {
    const s = new Store(file());
    const es = chain(6);
    write(s, es);
    s.setHardState({ term: 2, votedFor: null, commitIndex: 6, lastApplied: 4 });
    expect(s.anchor()).toBeUndefined();
    expect(() => s.compactTo({ index: 5, term: 2, hash: es[4].hash })).toThrow("refusing to compact past last_applied (5)");
    s.compactTo({ index: 4, term: es[3].term, hash: es[3].hash });
    expect(s.firstIndex()).toBe(5);
    expect(s.entry(4)).toBeUndefined();
    expect(s.anchor()).toEqual({ index: 4, term: es[3].term, hash: expect.any(Uint8Array) });
    expect(hex(s.anchor()?.hash)).toBe(hex(es[3].hash));
    s.compactTo({ index: 4, term: es[3].term, hash: es[3].hash }); // the anchor row is updated, not duplicated
    expect((s.db.prepare("SELECT COUNT(*) AS n FROM log_anchor").get() as { n: number }).n).toBe(1);
    s.close();
  });

  test("lastIndex of a log compacted to its end is the anchor's index", () => {
    const s = new Store(file());
    const es = chain(3);
    write(s, es);
    s.setHardState({ term: 1, votedFor: null, commitIndex: 3, lastApplied: 3 });
    s.compactTo({ index: 3, term: es[2].term, hash: es[2].hash });
    expect(s.lastEntry()).toBeUndefined();
    expect(s.lastIndex()).toBe(3);
    s.close();
  });

  test("resetToAnchor replaces the log and the state tables with the anchor", () => {
    const s = new Store(file());
    const es = chain(4);
    write(s, es);
    s.insertCheckpoint(3, cp(2));
    s.putSubject({ subject: "a", version: 1, head: Buffer.alloc(32, 1), lastIndex: 2 });
    s.addSubjectRecord("a", 1, 2);
    s.putDedup({ key: "k", digest: "d", index: 2, term: 1, hash: Buffer.alloc(32, 2) });
    s.resetToAnchor({ index: 10, term: 3, hash: Buffer.alloc(32, 9) });
    expect(s.lastIndex()).toBe(10);
    expect(s.firstIndex()).toBeUndefined();
    for (const t of ["log", "checkpoints", "merkle_nodes", "subjects", "subject_records", "dedup"]) {
      expect((s.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n).toBe(0);
    }
    expect(s.anchor()).toMatchObject({ index: 10, term: 3 });
    expect(s.historyFrom()).toBe(11); // this node holds history only after the installed anchor
    s.close();
  });
});

describe("Store: checkpoints", () => {
  test("latest, by size, the first covering a size, and all in index order; each carries the cluster given", () => {
    const s = new Store(file());
    expect(s.latestCheckpoint("c")).toBeUndefined();
    expect(s.checkpointBySize(3, "c")).toBeUndefined();
    expect(s.checkpointCovering(1, "c")).toBeUndefined();
    s.insertCheckpoint(11, cp(10, 2));
    s.insertCheckpoint(4, cp(3));
    s.insertCheckpoint(21, cp(20, 3));
    expect(s.latestCheckpoint("c")).toEqual({ ...cp(20, 3), index: 21 });
    expect(s.latestCheckpoint("zz")?.cluster).toBe("zz");
    expect(s.checkpointBySize(10, "c")).toEqual({ ...cp(10, 2), index: 11 });
    expect(s.checkpointBySize(11, "c")).toBeUndefined();
    expect(s.checkpointCovering(4, "c")?.size).toBe(10);
    expect(s.checkpointCovering(10, "c")?.size).toBe(10);
    expect(s.checkpointCovering(3, "c")?.size).toBe(3);
    expect(s.checkpointCovering(1, "c")?.size).toBe(3);
    expect(s.checkpointCovering(21, "c")).toBeUndefined();
    expect([...s.checkpoints("c")].map((r) => r.index)).toEqual([4, 11, 21]);
    expect([...s.checkpoints("c")][1]).toEqual({ ...cp(10, 2), index: 11 });
    s.close();
  });

  test("a checkpoint's subjects_root is stored and read back; one without it reads back without it", () => {
    const s = new Store(file());
    s.insertCheckpoint(4, cp(3));
    s.insertCheckpoint(8, { ...cp(7), subjects_root: "cd".repeat(32) });
    expect(s.latestCheckpoint("c")).toEqual({ ...cp(7), subjects_root: "cd".repeat(32), index: 8 });
    expect(s.checkpointBySize(3, "c")).toEqual({ ...cp(3), index: 4 });
    expect(s.checkpointBySize(3, "c")).not.toHaveProperty("subjects_root");
    s.close();
  });
});

describe("Store: state tables", () => {
  test("subjects, subject records and dedup rows round-trip; absent ones are undefined", () => {
    const s = new Store(file());
    expect(s.getSubject("a")).toBeUndefined();
    expect(s.getDedup("k")).toBeUndefined();
    s.putSubject({ subject: "a", version: 1, head: Buffer.alloc(32, 1), lastIndex: 2 });
    s.putSubject({ subject: "a", version: 2, head: Buffer.alloc(32, 3), lastIndex: 5 });
    s.putSubject({ subject: "b", version: 1, head: Buffer.alloc(32, 4), lastIndex: 3 });
    const a = s.getSubject("a");
    expect({ ...a, head: hex(a?.head) }).toEqual({ subject: "a", version: 2, head: "03".repeat(32), lastIndex: 5 });
    s.putDedup({ key: "k", digest: "d", index: 3, term: 2, hash: Buffer.alloc(32, 7) });
    const d = s.getDedup("k");
    expect({ ...d, hash: hex(d?.hash) }).toEqual({ key: "k", digest: "d", index: 3, term: 2, hash: "07".repeat(32) });
    expect(() => s.putDedup({ key: "k", digest: "e", index: 4, term: 2, hash: Buffer.alloc(32, 7) })).toThrow(/UNIQUE|PRIMARY/);
    const all = [...s.allSubjects()].sort((x, y) => x.subject.localeCompare(y.subject));
    expect(all.map((r) => ({ ...r, head: hex(r.head) }))).toEqual([
      { subject: "a", version: 2, head: "03".repeat(32), lastIndex: 5 },
      { subject: "b", version: 1, head: "04".repeat(32), lastIndex: 3 },
    ]);
    expect([...s.allDedup()].map((r) => ({ ...r, hash: hex(r.hash) }))).toEqual([{ key: "k", digest: "d", index: 3, term: 2, hash: "07".repeat(32) }]);
    s.close();
  });

  test("subjectsInOrder lists every subject row in the order of its first record, not by name or by insert", () => {
    const s = new Store(file());
    expect([...s.subjectsInOrder()]).toEqual([]);
    write(s, chain(9));
    // Subjects first recorded at 6 (z), 2 (m) and 4 (a); their rows are put in yet another order.
    s.addSubjectRecord("z", 1, 6);
    s.addSubjectRecord("m", 1, 2);
    s.addSubjectRecord("a", 1, 4);
    s.addSubjectRecord("z", 2, 8);
    s.putSubject({ subject: "a", version: 1, head: Buffer.alloc(32, 1), lastIndex: 4 });
    s.putSubject({ subject: "z", version: 2, head: Buffer.alloc(32, 2), lastIndex: 8 });
    s.putSubject({ subject: "m", version: 1, head: Buffer.alloc(32, 3), lastIndex: 2 });
    expect([...s.subjectsInOrder()].map((r) => ({ ...r, head: hex(r.head) }))).toEqual([
      { subject: "m", version: 1, head: "03".repeat(32) },
      { subject: "a", version: 1, head: "01".repeat(32) },
      { subject: "z", version: 2, head: "02".repeat(32) },
    ]);
    s.close();
  });

  test("subjectRecords pages from an index with a limit; subjectHashesBefore chains a subject's entry hashes in version order", () => {
    const s = new Store(file());
    const es = chain(10);
    write(s, es);
    for (const [v, idx] of [[1, 2], [2, 5], [3, 7], [4, 9]]) s.addSubjectRecord("a", v, idx);
    s.addSubjectRecord("b", 1, 3);
    expect(s.subjectRecords("a", 1, 10)).toEqual([{ version: 1, index: 2 }, { version: 2, index: 5 }, { version: 3, index: 7 }, { version: 4, index: 9 }]);
    expect(s.subjectRecords("a", 5, 2)).toEqual([{ version: 2, index: 5 }, { version: 3, index: 7 }]);
    expect(s.subjectRecords("a", 6, 10)).toEqual([{ version: 3, index: 7 }, { version: 4, index: 9 }]);
    expect(s.subjectRecords("zz", 1, 10)).toEqual([]);
    expect([...s.subjectHashesBefore("a", 7)].map(hex)).toEqual([hex(es[1].hash), hex(es[4].hash)]);
    expect([...s.subjectHashesBefore("a", 2)]).toEqual([]);
    expect([...s.allSubjectRecords()].sort((x, y) => x.index - y.index)).toEqual([
      { subject: "a", version: 1, index: 2 }, { subject: "b", version: 1, index: 3 }, { subject: "a", version: 2, index: 5 },
      { subject: "a", version: 3, index: 7 }, { subject: "a", version: 4, index: 9 },
    ]);
    s.close();
  });
});

describe("Store: snapshots and configuration", () => {
  const snap = (index: number, fill: number): StoredSnapshot => ({
    index, term: 2, hash: Buffer.alloc(32, fill), root: `r${index}`, compactRange: "[]", config: Buffer.from(`{"cfg":${index}}`),
    stateRoot: `s${index}`, data: Buffer.from(`data ${index}`), signer: "n1", sig: `sig${index}`, createdAt: `t${index}`,
  });

  test("saveSnapshot keeps every snapshot (a snapshot deletes nothing); every field round-trips", () => {
    const s = new Store(file());
    expect(s.latestSnapshot()).toBeUndefined();
    expect(s.latestSnapshotBytes()).toBeUndefined();
    s.saveSnapshot(snap(5, 1));
    s.saveSnapshot(snap(9, 2));
    const got = s.latestSnapshot() as StoredSnapshot;
    expect({ ...got, hash: hex(got.hash), config: hex(got.config), data: hex(got.data) }).toEqual({
      ...snap(9, 2), hash: "02".repeat(32), config: hex(Buffer.from('{"cfg":9}')), data: hex(Buffer.from("data 9")),
    });
    expect(Buffer.from(s.latestSnapshotBytes() as Uint8Array).toString()).toBe("data 9");
    expect(s.snapshotIndexes()).toEqual([9, 5]);
    expect(Buffer.from(s.snapshotBytesAt(5) as Uint8Array).toString()).toBe("data 5");
    expect(s.snapshotBytesAt(6)).toBeUndefined();
    s.saveSnapshot(snap(9, 3)); // the same index replaces
    expect(hex(s.latestSnapshot()?.hash)).toBe("03".repeat(32));
    expect(s.snapshotIndexes()).toEqual([9, 5]);
    s.close();
  });

  test("retainSnapshots keeps the newest K and the one at the log's anchor, whatever K", () => {
    const s = new Store(file());
    for (const i of [3, 5, 7, 9, 11]) s.saveSnapshot(snap(i, i));
    expect(s.retainSnapshots(3)).toBe(2);
    expect(s.snapshotIndexes()).toEqual([11, 9, 7]);
    expect(s.snapshotAnchors()[0]).toEqual({ index: 11, term: 2, hash: expect.any(Uint8Array), stateRoot: "s11", signer: "n1", createdAt: "t11" });
    s.resetToAnchor({ index: 7, term: 2, hash: Buffer.alloc(32, 7) }); // the log now begins at 7
    expect(s.historyFrom()).toBe(8);
    s.saveSnapshot(snap(13, 13));
    s.saveSnapshot(snap(15, 15));
    expect(s.retainSnapshots(1)).toBe(3); // 13, 11 and 9 go (resetToAnchor dropped only those below 7)
    expect(s.snapshotIndexes()).toEqual([15, 7]);
    expect(() => s.retainSnapshots(0)).toThrow(/>= 1/);
    s.close();
  });

  test("retainSnapshots keeps a pinned snapshot too (a prune on its way names it), and only that one", () => {
    const s = new Store(file());
    for (const i of [3, 5, 7, 9]) s.saveSnapshot(snap(i, i));
    expect(s.retainSnapshots(2, 3)).toBe(1); // 5 goes; 3 is pinned
    expect(s.snapshotIndexes()).toEqual([9, 7, 3]);
    expect(s.retainSnapshots(2)).toBe(1); // unpinned, 3 goes
    expect(s.snapshotIndexes()).toEqual([9, 7]);
    s.close();
  });

  test("configAt: the last CONFIG entry at or before the index, else the snapshot's if it is not later", () => {
    const s = new Store(file());
    const es = chain(8, "c", (i) => (i === 2 || i === 6 ? EntryKind.Config : EntryKind.Noop));
    write(s, es);
    expect(s.configAt(1)).toBeUndefined();
    expect(Buffer.from(s.configAt(2) as Uint8Array).toString()).toBe('{"i":2}');
    expect(Buffer.from(s.configAt(5) as Uint8Array).toString()).toBe('{"i":2}');
    expect(Buffer.from(s.configAt(6) as Uint8Array).toString()).toBe('{"i":6}');
    s.setHardState({ term: 3, votedFor: null, commitIndex: 8, lastApplied: 8 });
    s.saveSnapshot(snap(7, 1));
    s.compactTo({ index: 7, term: es[6].term, hash: es[6].hash });
    expect(Buffer.from(s.configAt(7) as Uint8Array).toString()).toBe('{"cfg":7}');
    expect(Buffer.from(s.configAt(8) as Uint8Array).toString()).toBe('{"cfg":7}');
    expect(s.configAt(6)).toBeUndefined();
    s.close();
  });
});

describe("Store as a ChainSource", () => {
  test("a chain written through the Store verifies, with the independent head and root", () => {
    const s = new Store(file());
    s.setMeta("cluster_id", "c");
    const es = chain(6); // entry 1 must be a CONFIG: rebuilt below with one
    let prev = genesisHash("c");
    const cfg = Buffer.from(ind.canonicalJson({ v: 1, voters: [{ id: "n1", address: "x", public_key: "11".repeat(32) }], learners: [] }));
    const fixed = es.map((e, i) => {
      const x = chainEntry(e.index, e.term, i === 0 ? EntryKind.Config : EntryKind.Noop, prev, i === 0 ? cfg : e.payload);
      prev = x.hash;
      return x;
    });
    write(s, fixed);
    s.setHardState({ term: fixed[5].term, votedFor: null, commitIndex: 6, lastApplied: 6 });
    const r = verifyChain(s);
    expect(r).toMatchObject({ ok: true, size: 6, head: hex(fixed[5].hash), root: ind.merkleRoot(fixed.map((e) => ind.leafHash(e.hash))).toString("hex") });
    // a raw tamper of one node row is found at the entry that completed it
    s.db.prepare("UPDATE merkle_nodes SET hash = ? WHERE level = 1 AND idx = 1").run(Buffer.alloc(32));
    expect(verifyChain(s)).toMatchObject({ ok: false, first_bad_index: 4 });
    s.close();
  });
});

describe("migrations: file discovery", () => {
  test("only NNNN_name.sql files count, in order, and a gap is refused", () => {
    const m = fs.mkdtempSync(path.join(dir, "mig-"));
    fs.writeFileSync(path.join(m, "0002_b.sql"), "CREATE TABLE b (x);");
    fs.writeFileSync(path.join(m, "0001_a.sql"), "CREATE TABLE a (x);");
    for (const ignored of ["README.md", "0003_C.sql", "003_c.sql", "0003_c.sql.bak", "x0003_c.sql", "0003-c.sql"]) fs.writeFileSync(path.join(m, ignored), "garbage");
    expect(loadMigrations(m).map((x) => [x.version, x.name, x.sql])).toEqual([[1, "0001_a.sql", "CREATE TABLE a (x);"], [2, "0002_b.sql", "CREATE TABLE b (x);"]]);
    fs.writeFileSync(path.join(m, "0004_d.sql"), "CREATE TABLE d (x);");
    expect(() => loadMigrations(m)).toThrow("migration 0004_d.sql out of sequence (expected version 3)");
  });


  test("the project's migrations create every table the Store reads", () => {
    const s = new Store(file());
    const tables = (s.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>).map((r) => r.name).sort();
    expect(tables).toEqual(expect.arrayContaining(["checkpoints", "dedup", "hard_state", "log", "log_anchor", "merkle_nodes", "meta", "schema_migrations", "snapshots", "subject_records", "subjects"]));
    s.close();
  });
});
