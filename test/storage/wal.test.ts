// The WAL controls of src/storage/store.ts, in process: automatic checkpoints on and off, a PASSIVE
// checkpoint from the writer's own connection and from a second connection (what the checkpoint
// worker holds), and what each reports.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Store, WalCheckpointConnection } from "../../src/storage/store";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-wal-store-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const commits = (store: Store, n: number, from = 0): void => {
  for (let i = from; i < from + n; i++) store.transaction(() => store.setMeta(`k${i}`, "v".repeat(300)));
};

test("automatic checkpoints: SQLite's 1,000 pages by default, 0 turns them off and lets the WAL grow", () => {
  const store = new Store(path.join(dir, "ledger.db"));
  expect(store.autoCheckpoint()).toBe(1000);
  store.setAutoCheckpoint(0);
  expect(store.autoCheckpoint()).toBe(0);
  commits(store, 1100);
  // Every frame since the start is still in the WAL: nothing checkpointed it.
  const r = store.checkpointWal();
  expect(r.busy).toBe(false);
  expect(r.walFrames).toBeGreaterThanOrEqual(1100);
  expect(r.checkpointed).toBe(r.walFrames);
  expect(() => store.setAutoCheckpoint(-1)).toThrow(/wal_autocheckpoint -1/);
  expect(() => store.setAutoCheckpoint(1.5)).toThrow(/wal_autocheckpoint 1.5/);
  store.close();
});

test("a second connection checkpoints what the writer committed; the WAL starts over at the writer's next commit", () => {
  const file = path.join(dir, "ledger.db");
  const store = new Store(file);
  store.setAutoCheckpoint(0);
  commits(store, 50);
  const other = new WalCheckpointConnection(file);
  const first = other.checkpoint();
  expect(first).toEqual({ busy: false, walFrames: first.checkpointed, checkpointed: first.walFrames });
  expect(first.walFrames).toBeGreaterThanOrEqual(50);
  commits(store, 1, 50);
  const second = other.checkpoint();
  expect(second.walFrames).toBeGreaterThan(0);
  expect(second.walFrames).toBeLessThan(first.walFrames);
  other.close();
  other.close(); // closing twice is harmless
  store.close();
  const reopened = new Store(file, { readonly: true });
  expect(reopened.getMeta("k50")).toBe("v".repeat(300));
  reopened.close();
});

test("a checkpoint connection needs the database to exist: it creates nothing", () => {
  expect(() => new WalCheckpointConnection(path.join(dir, "missing.db"))).toThrow();
  expect(fs.readdirSync(dir)).toEqual([]);
});

/** SQLite's synchronous setting on the store's writer connection: 2 is FULL, 1 NORMAL. */
const synchronous = (store: Store): number => store.db.pragma("synchronous", { simple: true }) as number;

describe("transactionUnsynced", () => {
  test("commits with synchronous=NORMAL, visible to another connection at once, then the writer is back at FULL", () => {
    const file = path.join(dir, "ledger.db");
    const store = new Store(file);
    expect(synchronous(store)).toBe(2);
    let inside = -1;
    store.transactionUnsynced(() => {
      inside = synchronous(store);
      store.setMeta("applied", "7");
    });
    expect(inside).toBe(1);
    expect(synchronous(store)).toBe(2);
    const reader = new Store(file, { readonly: true });
    expect(reader.getMeta("applied")).toBe("7");
    reader.close();
    store.close();
  });

  test("a throw rolls the transaction back and still restores FULL; it refuses to run inside a transaction", () => {
    const store = new Store(path.join(dir, "ledger.db"));
    expect(() => store.transactionUnsynced(() => {
      store.setMeta("x", "1");
      throw new Error("apply failed");
    })).toThrow("apply failed");
    expect(store.getMeta("x")).toBeUndefined();
    expect(synchronous(store)).toBe(2);
    expect(() => store.transaction(() => store.transactionUnsynced(() => undefined))).toThrow(/transactionUnsynced inside a transaction/);
    expect(synchronous(store)).toBe(2);
    store.close();
  });

  test("a synced commit after unsynced ones leaves every one of them in the database, in order", () => {
    const file = path.join(dir, "ledger.db");
    const store = new Store(file);
    for (let i = 0; i < 20; i++) store.transactionUnsynced(() => store.setMeta(`u${i}`, String(i)));
    store.transaction(() => store.setMeta("synced", "yes"));
    store.close();
    const again = new Store(file);
    expect(Array.from({ length: 20 }, (_, i) => again.getMeta(`u${i}`))).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(again.getMeta("synced")).toBe("yes");
    again.close();
  });
});

test("the writer's WAL file is cut back to 64 MiB when it starts over (journal_size_limit), a read-only store sets nothing", () => {
  const file = path.join(dir, "ledger.db");
  const store = new Store(file);
  expect(store.db.pragma("journal_size_limit", { simple: true })).toBe(64 * 1024 * 1024);
  store.close();
  const reader = new Store(file, { readonly: true });
  expect(reader.db.pragma("journal_size_limit", { simple: true })).toBe(-1);
  reader.close();
});

describe("close", () => {
  const walBytes = (file: string): number => (fs.existsSync(`${file}-wal`) ? fs.statSync(`${file}-wal`).size : 0);
  /** A writer with automatic checkpoints off (its WAL only grows) and n commits made. */
  const writer = (n: number): { file: string; store: Store } => {
    const file = path.join(dir, "ledger.db");
    const store = new Store(file);
    store.setAutoCheckpoint(0);
    commits(store, n);
    return { file, store };
  };
  /** The meta values of keys in the file, read through a fresh read-only store. */
  const metaOf = (file: string, keys: readonly string[]): Array<string | undefined> => {
    const reopened = new Store(file, { readonly: true });
    const values = keys.map((k) => reopened.getMeta(k));
    reopened.close();
    return values;
  };
  const V = "v".repeat(300);

  test("the writer's close empties the WAL into the database file even when a read-only connection closes after it", () => {
    const { file, store } = writer(0);
    const reader = new Store(file, { readonly: true });
    commits(store, 200);
    expect(walBytes(file)).toBeGreaterThan(200 * 300);
    store.close();
    // The reader is still open, so SQLite itself would have left the WAL as it was.
    expect(walBytes(file)).toBe(0);
    expect(reader.getMeta("k199")).toBe(V);
    reader.close();
    expect(metaOf(file, ["k0"])).toEqual([V]);
  });

  test("a reader inside a read transaction keeps the WAL: the close does not throw and loses nothing", () => {
    const { file, store } = writer(20);
    const reader = new Store(file, { readonly: true });
    // An iterator that has not finished holds its read transaction (and so the WAL) open.
    const rows = reader.db.prepare("SELECT key FROM meta").iterate();
    expect(rows.next().done).toBe(false);
    commits(store, 20, 20);
    expect(() => store.close()).not.toThrow();
    expect(walBytes(file)).toBeGreaterThan(0);
    rows.return?.();
    reader.close();
    expect(metaOf(file, ["k39"])).toEqual([V]);
  });

  test("a checkpoint that fails at close (the writer still inside a transaction: SQLITE_LOCKED) is not thrown; the connection closes and what was committed stays", () => {
    const { file, store } = writer(5);
    store.db.prepare("BEGIN IMMEDIATE").run();
    store.setMeta("uncommitted", "x");
    expect(() => store.close()).not.toThrow();
    expect(store.db.open).toBe(false);
    expect(metaOf(file, ["k4", "uncommitted"])).toEqual([V, undefined]);
  });

  test("a read-only store's close writes nothing", () => {
    const { file, store } = writer(20);
    const reader = new Store(file, { readonly: true });
    const before = walBytes(file);
    reader.close();
    reader.close(); // twice is harmless
    expect(walBytes(file)).toBe(before);
    store.close();
  });
});
