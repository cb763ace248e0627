/**
 * A consistent read-only view of a node's database for audits: its own connection, inside one read
 * transaction, so every read sees the same WAL snapshot while the node's writer goes on. The api
 * layer reads through this port and never opens storage itself.
 */
import { Store } from "../storage/store";
import type { ChainSource } from "../ledger/verify";

export interface AuditSnapshot extends ChainSource {
  /** Ends the read transaction and closes the connection. Idempotent. */
  close(): void;
}

/** Opens the snapshot; the first read inside it fixes what every later read sees. */
export function openAuditSnapshot(dbPath: string): AuditSnapshot {
  return new StoreSnapshot(new Store(dbPath, { readonly: true }));
}

class StoreSnapshot implements AuditSnapshot {
  constructor(private readonly store: Store) {
    store.db.exec("BEGIN");
  }
  getMeta(key: string): string | undefined {
    return this.store.getMeta(key);
  }
  hardState(): ReturnType<ChainSource["hardState"]> {
    return this.store.hardState();
  }
  lastIndex(): number {
    return this.store.lastIndex();
  }
  entries(from: number, to: number): ReturnType<ChainSource["entries"]> {
    return this.store.entries(from, to);
  }
  findNode(level: number, index: number): Uint8Array | undefined {
    return this.store.findNode(level, index);
  }
  checkpoints(cluster: string): ReturnType<ChainSource["checkpoints"]> {
    return this.store.checkpoints(cluster);
  }
  allSubjects(): ReturnType<ChainSource["allSubjects"]> {
    return this.store.allSubjects();
  }
  allSubjectRecords(): ReturnType<ChainSource["allSubjectRecords"]> {
    return this.store.allSubjectRecords();
  }
  allDedup(): ReturnType<ChainSource["allDedup"]> {
    return this.store.allDedup();
  }
  latestSnapshotBytes(): Uint8Array | undefined {
    return this.store.latestSnapshotBytes();
  }
  snapshotIndexes(): number[] {
    return this.store.snapshotIndexes();
  }
  snapshotBytesAt(index: number): Uint8Array | undefined {
    return this.store.snapshotBytesAt(index);
  }
  anchor(): ReturnType<ChainSource["anchor"]> {
    return this.store.anchor();
  }
  close(): void {
    const db = this.store.db;
    if (!db.open) return;
    if (db.inTransaction) db.exec("ROLLBACK");
    this.store.close();
  }
}
