import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Store } from "../../src/storage/store";
import { chainEntry, EntryKind, genesisHash, Entry } from "../../src/ledger/entry";
import { CompactRange, MerkleNode, rootAt } from "../../src/ledger/merkle";
import { toHex } from "../../src/ledger/bytes";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-store-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function entries(n: number, term = 1, salt = ""): Entry[] {
  let prev = genesisHash("c");
  const out: Entry[] = [];
  for (let i = 1; i <= n; i++) {
    const e = chainEntry(i, term, EntryKind.Record, prev, Buffer.from(`{"i":${i}${salt}}`));
    out.push(e);
    prev = e.hash;
  }
  return out;
}

function write(store: Store, es: Entry[], range: CompactRange): void {
  const nodes: MerkleNode[] = [];
  for (const e of es) nodes.push(...range.append(e.hash));
  store.transaction(() => store.appendEntries(es, nodes));
}

describe("Store", () => {
  test("truncating an uncommitted suffix drops its entries and Merkle nodes, and the tree regrows", () => {
    const store = new Store(path.join(dir, "t.db"));
    const a = entries(20);
    write(store, a, new CompactRange());
    store.setCommitIndex(12);
    store.transaction(() => store.truncateFrom(13));
    expect(store.lastIndex()).toBe(12);
    // No stored node may cover leaf 12 (entry 13) or later.
    const rows = store.db.prepare("SELECT level, idx FROM merkle_nodes").all() as Array<{ level: number; idx: number }>;
    for (const r of rows) expect((r.idx + 1) * 2 ** r.level).toBeLessThanOrEqual(12);
    const fresh = new CompactRange();
    a.slice(0, 12).forEach((e) => fresh.append(e.hash));
    expect(toHex(rootAt(store.readNode, 12))).toBe(toHex(fresh.root()));
    // A different suffix (another term) appends on top and every root matches a fresh build.
    const b = entries(30, 2, ",\"b\":1").slice(12).map((e, i) => (i === 0 ? e : e));
    let prev = a[11].hash;
    const rechained = b.map((e) => {
      const x = chainEntry(e.index, 2, e.kind, prev, e.payload);
      prev = x.hash;
      return x;
    });
    const range = CompactRange.fromStore(store.readNode, 12);
    write(store, rechained, range);
    rechained.forEach((e) => fresh.append(e.hash));
    expect(toHex(rootAt(store.readNode, 30))).toBe(toHex(fresh.root()));
    store.close();
  });

  test("refuses to truncate at or below the commit index", () => {
    const store = new Store(path.join(dir, "u.db"));
    write(store, entries(5), new CompactRange());
    store.setCommitIndex(4);
    expect(() => store.truncateFrom(4)).toThrow(/refusing to truncate/);
    store.close();
  });
});
