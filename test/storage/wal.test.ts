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
