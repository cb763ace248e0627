// src/storage/store.ts, the methods store-api.test.ts leaves to the node: the exact bounds of the
// range and "at or before" queries (inclusive at both ends, one past is out), history_from's
// guards (an index >= 1 or a loud stop, in both directions), and close.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Store, StoredSnapshot, HISTORY_FROM_KEY } from "../../src/storage/store";
import { chainEntry, Entry, EntryKind, genesisHash } from "../../src/ledger/entry";
import { CompactRange, MerkleNode } from "../../src/ledger/merkle";
import { Checkpoint } from "../../src/ledger/checkpoint";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-store-bounds-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const open = (): Store => new Store(path.join(dir, `b${++n}.db`));

function write(store: Store, count: number, kindAt: (i: number) => EntryKind): Entry[] {
  let prev = genesisHash("c");
  const range = new CompactRange();
  const es: Entry[] = [];
  const nodes: MerkleNode[] = [];
  for (let i = 1; i <= count; i++) {
    const e = chainEntry(i, 1, kindAt(i), prev, Buffer.from(`{"i":${i}}`));
    es.push(e);
    nodes.push(...range.append(e.hash));
    prev = e.hash;
  }
  store.transaction(() => store.appendEntries(es, nodes));
  return es;
}

const cp = (size: number): Checkpoint => ({
  v: 1, cluster: "c", size, root: "0".repeat(64), head: "1".repeat(64), term: 1, signer: "n1", ts: `t${size}`, sig: "ab".repeat(64),
});
const snap = (index: number): StoredSnapshot => ({
  index, term: 1, hash: Buffer.alloc(32, index), root: `r${index}`, compactRange: "[]", config: Buffer.from(`{"cfg":${index}}`),
  stateRoot: `s${index}`, data: Buffer.from(`d${index}`), signer: "n1", sig: `sig${index}`, createdAt: `t${index}`,
});

describe("Store: inclusive bounds", () => {
  test("configIndices(from, to): the CONFIG entries in [from, to], both ends included, in order", () => {
    const s = open();
    write(s, 10, (i) => (i === 1 || i === 4 || i === 7 ? EntryKind.Config : EntryKind.Record));
    expect(s.configIndices(1, 10)).toEqual([1, 4, 7]);
    expect(s.configIndices(4, 7)).toEqual([4, 7]);
    expect(s.configIndices(5, 6)).toEqual([]);
    expect(s.configIndices(2, 4)).toEqual([4]);
    expect(s.configIndices(7, 7)).toEqual([7]);
    expect(s.configIndices(8, 3)).toEqual([]);
    s.close();
  });

  test("configIndices and configAt read the CONFIG entries through their index (migration 0005), not the whole log", () => {
    const s = open();
    const plan = (sql: string): string => (s.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(1, 10) as Array<{ detail: string }>).map((r) => r.detail).join("; ");
    expect(plan("SELECT idx FROM log WHERE kind = 2 AND idx >= ? AND idx <= ? ORDER BY idx")).toMatch(/USING COVERING INDEX log_config/);
    expect((s.db.prepare("EXPLAIN QUERY PLAN SELECT payload FROM log WHERE kind = 2 AND idx <= ? ORDER BY idx DESC LIMIT 1").all(5) as Array<{ detail: string }>)
      .map((r) => r.detail).join("; ")).toMatch(/USING (COVERING )?INDEX log_config/);
    s.close();
  });

  test("latestCheckpoint(cluster, upTo): the newest checkpoint entry at or before upTo", () => {
    const s = open();
    expect(s.latestCheckpoint("c", 100)).toBeUndefined();
    s.insertCheckpoint(5, cp(4));
    s.insertCheckpoint(12, cp(11));
    s.insertCheckpoint(20, cp(19));
    expect(s.latestCheckpoint("c", 12)?.index).toBe(12);
    expect(s.latestCheckpoint("c", 11)?.index).toBe(5);
    expect(s.latestCheckpoint("c", 19)?.index).toBe(12);
    expect(s.latestCheckpoint("c", 20)?.index).toBe(20);
    expect(s.latestCheckpoint("c", 4)).toBeUndefined();
    expect(s.latestCheckpoint("c", 5)).toEqual({ ...cp(4), index: 5 });
    expect(s.latestCheckpoint("c")?.index).toBe(20);
    s.close();
  });

  test("snapshotAt is exact; snapshotAtOrBefore the newest at or before; dropSnapshotsBelow keeps the bound itself", () => {
    const s = open();
    for (const i of [4, 8, 12]) s.saveSnapshot(snap(i));
    expect(s.snapshotAt(8)?.stateRoot).toBe("s8");
    expect(s.snapshotAt(9)).toBeUndefined();
    expect(s.snapshotAtOrBefore(3)).toBeUndefined();
    expect(s.snapshotAtOrBefore(4)?.index).toBe(4);
    expect(s.snapshotAtOrBefore(11)?.index).toBe(8);
    expect(s.snapshotAtOrBefore(12)?.index).toBe(12);
    expect(s.snapshotAtOrBefore(1000)?.index).toBe(12);
    const got = s.snapshotAtOrBefore(9) as StoredSnapshot;
    expect({ ...got, hash: Buffer.from(got.hash).toString("hex"), config: Buffer.from(got.config).toString(), data: Buffer.from(got.data).toString() }).toEqual({
      ...snap(8), hash: "08".repeat(32), config: '{"cfg":8}', data: "d8",
    });
    s.dropSnapshotsBelow(8);
    expect(s.snapshotIndexes()).toEqual([12, 8]);
    s.dropSnapshotsBelow(13);
    expect(s.snapshotIndexes()).toEqual([]);
    s.close();
  });

  test("retainSnapshots with no anchor keeps exactly the newest K", () => {
    const s = open();
    for (const i of [1, 2, 3, 4]) s.saveSnapshot(snap(i));
    expect(s.retainSnapshots(4)).toBe(0);
    expect(s.retainSnapshots(2)).toBe(2);
    expect(s.snapshotIndexes()).toEqual([4, 3]);
    expect(() => s.retainSnapshots(1.5)).toThrow("snapshots to keep must be >= 1, got 1.5");
    s.close();
  });
});

describe("Store: history_from", () => {
  test("absent means 1; set values read back; 1 itself is valid", () => {
    const s = open();
    expect(s.historyFrom()).toBe(1);
    s.setHistoryFrom(1);
    expect(s.getMeta(HISTORY_FROM_KEY)).toBe("1");
    expect(s.historyFrom()).toBe(1);
    s.setHistoryFrom(42);
    expect(s.historyFrom()).toBe(42);
    s.close();
  });

  test("setting anything but a safe integer >= 1 is refused and leaves the old value", () => {
    const s = open();
    s.setHistoryFrom(7);
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 53]) expect(() => s.setHistoryFrom(bad)).toThrow(`history_from ${bad} is not an index >= 1`);
    expect(s.historyFrom()).toBe(7);
    s.close();
  });

  test("a stored value that is not an index >= 1 is a loud stop naming it", () => {
    const s = open();
    for (const raw of ["0", "-3", "abc", "2.5", "", "9007199254740993"]) {
      s.setMeta(HISTORY_FROM_KEY, raw);
      expect(() => s.historyFrom()).toThrow(`meta history_from is not an index >= 1: ${JSON.stringify(raw)}`);
    }
    s.close();
  });

  test("resetToAnchor never moves history_from back: a later start already recorded stays", () => {
    const s = open();
    s.setHistoryFrom(50);
    s.resetToAnchor({ index: 10, term: 1, hash: Buffer.alloc(32, 1) });
    expect(s.historyFrom()).toBe(50);
    s.resetToAnchor({ index: 60, term: 1, hash: Buffer.alloc(32, 2) });
    expect(s.historyFrom()).toBe(61);
    s.close();
  });
});

describe("Store: readonly", () => {
  test("a readonly open runs no migration: a database one migration behind opens as it is, and stays so", () => {
    const file = path.join(dir, `b${++n}.db`);
    const w = new Store(file);
    const last = (w.db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number }).v;
    w.db.prepare("DELETE FROM schema_migrations WHERE version = ?").run(last);
    w.setMeta("cluster_id", "ro");
    w.close();
    const r = new Store(file, { readonly: true });
    expect(r.getMeta("cluster_id")).toBe("ro");
    expect((r.db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number }).v).toBe(last - 1);
    r.close();
  });
});

describe("Store: close", () => {
  test("close closes the connection, and a second close is a no-op", () => {
    const s = open();
    expect(s.db.open).toBe(true);
    s.close();
    expect(s.db.open).toBe(false);
    expect(() => s.close()).not.toThrow();
    expect(() => s.getMeta("x")).toThrow(/not open/);
  });
});
