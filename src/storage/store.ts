/**
 * The node's SQLite database: log, Merkle subtree hashes, hard state, checkpoints and the state
 * tables. WAL with synchronous=FULL, so a committed transaction is fsync'd before it returns.
 */
import Database from "better-sqlite3";
import type { Database as Db, Statement } from "better-sqlite3";
import { Entry, EntryKind } from "../ledger/entry";
import { MerkleNode, NodeReader } from "../ledger/merkle";
import { Checkpoint } from "../ledger/checkpoint";
import { DedupRow, StateStore, SubjectRow } from "../ledger/state-machine";
import { assert } from "../util/assert";
import { migrate } from "./migrations";
import type { ChainSource } from "../ledger/verify";

export interface HardState {
  readonly term: number;
  readonly votedFor: string | null;
  readonly commitIndex: number;
  readonly lastApplied: number;
}

export interface StoredCheckpoint extends Checkpoint {
  /** The checkpoint entry's own log index. */
  readonly index: number;
}

/** A snapshot row; compactRange is JSON of the Merkle peaks at index, data the encoded state. */
export interface StoredSnapshot {
  readonly index: number;
  readonly term: number;
  readonly hash: Uint8Array;
  readonly root: string;
  readonly compactRange: string;
  readonly config: Uint8Array;
  readonly stateRoot: string;
  readonly data: Uint8Array;
  readonly signer: string;
  readonly sig: string;
  readonly createdAt: string;
}

/** A retained snapshot anchor without its (large) state: what GET /v1/snapshots lists. */
export interface SnapshotAnchor {
  readonly index: number;
  readonly term: number;
  readonly hash: Uint8Array;
  readonly stateRoot: string;
  readonly signer: string;
  readonly createdAt: string;
}

/** meta key: the first index this node holds history for (1 = complete; moved by a prune or an installed snapshot). */
export const HISTORY_FROM_KEY = "history_from";

interface SnapshotRow {
  idx: number;
  term: number;
  hash: Buffer;
  root: string;
  compact_range: string;
  config: Buffer;
  state_root: string;
  data: Buffer;
  signer: string;
  sig: string;
  created_at: string;
}

function toSnapshot(r: SnapshotRow): StoredSnapshot {
  return {
    index: r.idx, term: r.term, hash: u8(r.hash), root: r.root, compactRange: r.compact_range, config: u8(r.config),
    stateRoot: r.state_root, data: u8(r.data), signer: r.signer, sig: r.sig, createdAt: r.created_at,
  };
}

interface LogRow {
  idx: number;
  term: number;
  kind: number;
  payload: Buffer;
  hash: Buffer;
}

/**
 * A log row as stored, with its payload and hash as hex text (SQLite's hex(): a BLOB's bytes, a
 * TEXT's UTF-8 bytes, '' for NULL): index, term, kind, payload, hash.
 */
export type HexLogRow = readonly [unknown, unknown, unknown, string, string];

interface CheckpointRow {
  idx: number;
  size: number;
  root: string;
  head: string;
  term: number;
  signer: string;
  ts: string;
  sig: string;
  /** Absent (no column) in a data dir from before migration 0004; null for a checkpoint without it. */
  subjects_root?: string | null;
}

/** Bytes from a BLOB column; a TEXT value (a tampered row) is taken as its UTF-8 bytes. */
const u8 = (b: Buffer | string): Uint8Array => {
  if (typeof b === "string") return new TextEncoder().encode(b);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
};

/**
 * A log row as stored. Values are passed through as read (a tampered row may hold a REAL term or a
 * kind out of range); the verifier judges them, the node asserts on them before use.
 */
function toEntry(r: LogRow): Entry {
  return { index: r.idx, term: r.term, kind: r.kind as EntryKind, payload: u8(r.payload), hash: u8(r.hash) };
}

function toCheckpoint(r: CheckpointRow, cluster: string): StoredCheckpoint {
  const base = { v: 1 as const, cluster, size: r.size, root: r.root, head: r.head, term: r.term, signer: r.signer, ts: r.ts };
  return typeof r.subjects_root === "string" ? { ...base, subjects_root: r.subjects_root, sig: r.sig, index: r.idx } : { ...base, sig: r.sig, index: r.idx };
}

/** The WAL file's size kept when it starts over (SQLite's journal_size_limit): 64 MiB, four times its usual size. */
const WAL_FILE_BYTES_KEPT = 64 << 20;

/** What a PASSIVE checkpoint did: frames in the WAL, how many of them are now in the database file. */
export interface WalCheckpoint {
  /** True when it could not run (another checkpoint, or a recovery, held the lock). */
  readonly busy: boolean;
  readonly walFrames: number;
  readonly checkpointed: number;
}

function passiveCheckpoint(db: Db): WalCheckpoint {
  const [r] = db.pragma("wal_checkpoint(PASSIVE)") as Array<{ busy: number; log: number; checkpointed: number }>;
  return { busy: r.busy !== 0, walFrames: r.log, checkpointed: r.checkpointed };
}

/**
 * A connection that only checkpoints the WAL of a node's ledger.db, for a thread other than the
 * writer's: the copy of WAL pages into the database file and its fsync then block that thread, not
 * the one committing. PASSIVE: it never waits for the writer or for readers, and does what it can.
 */
export class WalCheckpointConnection {
  private readonly db: Db;

  constructor(file: string) {
    this.db = new Database(file, { fileMustExist: true });
  }

  checkpoint(): WalCheckpoint {
    return passiveCheckpoint(this.db);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

export interface StoreOptions {
  /** Open without writing anything (verify-chain): no migrations, no pragmas that write. */
  readonly readonly?: boolean;
}

/** Storage for one node. Synchronous: better-sqlite3 runs on the caller's thread. */
export class Store implements StateStore, ChainSource {
  readonly db: Db;
  readonly readonly: boolean;
  private readonly s: Record<string, Statement>;
  private cpInsert: Statement | undefined;

  constructor(file: string, options: StoreOptions = {}) {
    this.readonly = options.readonly === true;
    this.db = new Database(file, { readonly: this.readonly, fileMustExist: this.readonly });
    if (!this.readonly) {
      this.db.pragma("journal_mode = WAL");
      this.db.pragma("synchronous = FULL");
      // When the WAL starts over, a file that grew past this (a long audit held an old snapshot) is
      // cut back to it: the WAL's usual size is up to ~16 MiB (src/node/wal-checkpointer.ts).
      this.db.pragma(`journal_size_limit = ${WAL_FILE_BYTES_KEPT}`);
      this.db.pragma("foreign_keys = ON");
      migrate(this.db);
    }
    this.db.defaultSafeIntegers(false);
    const p = (sql: string): Statement => this.db.prepare(sql);
    this.s = {
      metaGet: p("SELECT value FROM meta WHERE key = ?"),
      metaSet: p("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
      hardGet: p("SELECT term, voted_for, commit_index, last_applied FROM hard_state WHERE id = 1"),
      hardSet: p("UPDATE hard_state SET term = ?, voted_for = ?, commit_index = ?, last_applied = ? WHERE id = 1"),
      lastApplied: p("UPDATE hard_state SET last_applied = ? WHERE id = 1"),
      commitIndex: p("UPDATE hard_state SET commit_index = ? WHERE id = 1"),
      logLast: p("SELECT idx, term, kind, payload, hash FROM log ORDER BY idx DESC LIMIT 1"),
      logFirst: p("SELECT idx FROM log ORDER BY idx ASC LIMIT 1"),
      logGet: p("SELECT idx, term, kind, payload, hash FROM log WHERE idx = ?"),
      logRange: p("SELECT idx, term, kind, payload, hash FROM log WHERE idx >= ? AND idx <= ? ORDER BY idx"),
      logRangeHex: p("SELECT idx, term, kind, hex(payload), hex(hash) FROM log WHERE idx >= ? AND idx <= ? ORDER BY idx").raw(true),
      logInsert: p("INSERT INTO log (idx, term, kind, payload, hash) VALUES (?, ?, ?, ?, ?)"),
      anchorGet: p("SELECT idx, term, hash FROM log_anchor WHERE id = 1"),
      nodeGet: p("SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?"),
      // One row for a run of nodes: how many, how many are 32 bytes, and their hashes in index order as hex.
      nodeRun: p("SELECT count(*) AS n, sum(length(hash) = 32) AS whole, group_concat(hex(hash), '' ORDER BY idx) AS hashes FROM merkle_nodes WHERE level = ? AND idx >= ? AND idx <= ?"),
      nodePut: p("INSERT OR REPLACE INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)"),
      cpLatest: p("SELECT * FROM checkpoints ORDER BY idx DESC LIMIT 1"),
      cpLatestUpTo: p("SELECT * FROM checkpoints WHERE idx <= ? ORDER BY idx DESC LIMIT 1"),
      cpBySize: p("SELECT * FROM checkpoints WHERE size = ?"),
      cpAtLeast: p("SELECT * FROM checkpoints WHERE size >= ? ORDER BY size ASC LIMIT 1"),
      cpAll: p("SELECT * FROM checkpoints ORDER BY idx"),
      subjGet: p("SELECT subject, version, head, last_index FROM subjects WHERE subject = ?"),
      subjPut: p("INSERT INTO subjects (subject, version, head, last_index) VALUES (?, ?, ?, ?) ON CONFLICT(subject) DO UPDATE SET version = excluded.version, head = excluded.head, last_index = excluded.last_index"),
      subjAll: p("SELECT subject, version, head, last_index FROM subjects"),
      srecPut: p("INSERT INTO subject_records (subject, version, idx) VALUES (?, ?, ?)"),
      srecList: p("SELECT version, idx FROM subject_records WHERE subject = ? AND idx >= ? ORDER BY version LIMIT ?"),
      srecAll: p("SELECT subject, version, idx FROM subject_records"),
      subjInOrder: p("SELECT s.subject AS subject, s.version AS version, s.head AS head FROM subjects s JOIN subject_records r ON r.subject = s.subject AND r.version = 1 ORDER BY r.idx"),
      srecBetween: p("SELECT subject, version, idx FROM subject_records WHERE idx > ? AND idx <= ? ORDER BY idx"),
      srecHashesBefore: p("SELECT l.hash AS hash FROM subject_records s JOIN log l ON l.idx = s.idx WHERE s.subject = ? AND s.idx < ? ORDER BY s.version"),
      dedupGet: p("SELECT key, digest, idx, term, hash FROM dedup WHERE key = ?"),
      dedupPut: p("INSERT INTO dedup (key, digest, idx, term, hash) VALUES (?, ?, ?, ?, ?)"),
      dedupAll: p("SELECT key, digest, idx, term, hash FROM dedup"),
      logTruncate: p("DELETE FROM log WHERE idx >= ?"),
      nodesTruncate: p("DELETE FROM merkle_nodes WHERE ((idx + 1) << level) > ?"),
      cpTruncate: p("DELETE FROM checkpoints WHERE idx >= ?"),
      logCompact: p("DELETE FROM log WHERE idx <= ?"),
      anchorSet: p("INSERT INTO log_anchor (id, idx, term, hash) VALUES (1, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET idx = excluded.idx, term = excluded.term, hash = excluded.hash"),
      snapPut: p("INSERT OR REPLACE INTO snapshots (idx, term, hash, root, compact_range, config, state_root, data, signer, sig, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
      snapLatest: p("SELECT * FROM snapshots ORDER BY idx DESC LIMIT 1"),
      snapAt: p("SELECT * FROM snapshots WHERE idx = ?"),
      snapAtOrBefore: p("SELECT * FROM snapshots WHERE idx <= ? ORDER BY idx DESC LIMIT 1"),
      snapList: p("SELECT idx, term, hash, state_root, signer, created_at FROM snapshots ORDER BY idx DESC"),
      snapBelow: p("DELETE FROM snapshots WHERE idx < ?"),
      // The newest `keep` rows stay, and the row at the log's anchor (the log begins there: Raft's base).
      snapRetain: p("DELETE FROM snapshots WHERE idx NOT IN (SELECT idx FROM snapshots ORDER BY idx DESC LIMIT ?) AND idx <> ? AND idx <> ?"),
      configAt: p("SELECT payload FROM log WHERE kind = 2 AND idx <= ? ORDER BY idx DESC LIMIT 1"),
      configIndices: p("SELECT idx FROM log WHERE kind = 2 AND idx >= ? AND idx <= ? ORDER BY idx"),
    };
  }

  /**
   * Closes the connection. A writer first empties the WAL into the database file and cuts it to zero
   * bytes (TRUNCATE): SQLite does that by itself only when the last connection to the file closes,
   * and a node's read-only connections (the reader, an audit's snapshot) may close after the writer.
   * Without it a clean stop left up to 64 MiB of WAL that the next start read through (3.3 s to
   * /ready after a 1,000,000-entry build). The WAL holds only committed transactions, so a checkpoint
   * that cannot run or fails here (busy: a reader inside a read transaction; a full disk) loses
   * nothing: the next start reads the WAL, as after a crash. Such a failure is not thrown.
   */
  close(): void {
    if (!this.db.open) return;
    try {
      if (!this.readonly) {
        // No wait for readers (the connection's default is 5 s): an audit's read transaction lasts
        // until the audit ends, and a stop must not wait for it.
        this.db.pragma("busy_timeout = 0");
        this.db.pragma("wal_checkpoint(TRUNCATE)");
      }
    } catch (err) {
      // By its code, as src/storage/dir-lock.ts explains (instanceof fails where modules load again).
      const code = (err as { code?: unknown } | null)?.code;
      if (typeof code !== "string" || !code.startsWith("SQLITE_")) throw err;
    } finally {
      this.db.close();
    }
  }

  /**
   * SQLite's automatic WAL checkpoint on this connection: every `pages` WAL pages (1,000 by default),
   * 0 for never. Off, some other connection must checkpoint (src/node/wal-checkpointer.ts).
   */
  setAutoCheckpoint(pages: number): void {
    assert(Number.isSafeInteger(pages) && pages >= 0, `wal_autocheckpoint ${pages}`);
    this.db.pragma(`wal_autocheckpoint = ${pages}`);
  }

  /** The automatic checkpoint's threshold in pages (0: off). */
  autoCheckpoint(): number {
    return this.db.pragma("wal_autocheckpoint", { simple: true }) as number;
  }

  /** A PASSIVE checkpoint on this connection: never waits for readers or the writer. */
  checkpointWal(): WalCheckpoint {
    return passiveCheckpoint(this.db);
  }

  /** Runs fn in one SQLite transaction (one fsync at commit). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /**
   * Runs fn in one SQLite transaction committed without an fsync (synchronous=NORMAL for this commit
   * only). In WAL mode the commit is atomic and survives a crash of the process (its pages are in
   * the WAL, in the OS's cache); only a crash of the machine before the next fsync can lose it, and
   * then whole, never in part. The WAL is a sequence: the next transaction() (FULL) or checkpoint
   * fsyncs it and makes every earlier commit durable with it. For writes that can be redone from
   * what is durable (the apply of committed entries: src/node/raft-storage.ts).
   */
  transactionUnsynced<T>(fn: () => T): T {
    assert(!this.db.inTransaction, "transactionUnsynced inside a transaction");
    this.db.pragma("synchronous = NORMAL");
    try {
      return this.db.transaction(fn)();
    } finally {
      this.db.pragma("synchronous = FULL");
    }
  }

  getMeta(key: string): string | undefined {
    return (this.s.metaGet.get(key) as { value: string } | undefined)?.value;
  }

  setMeta(key: string, value: string): void {
    this.s.metaSet.run(key, value);
  }

  hardState(): HardState {
    const r = this.s.hardGet.get() as { term: number; voted_for: string | null; commit_index: number; last_applied: number };
    return { term: r.term, votedFor: r.voted_for, commitIndex: r.commit_index, lastApplied: r.last_applied };
  }

  setHardState(h: HardState): void {
    assert(h.lastApplied <= h.commitIndex, `last_applied ${h.lastApplied} > commit_index ${h.commitIndex}`);
    this.s.hardSet.run(h.term, h.votedFor, h.commitIndex, h.lastApplied);
  }

  setCommitIndex(index: number): void {
    this.s.commitIndex.run(index);
  }

  setLastApplied(index: number): void {
    this.s.lastApplied.run(index);
  }

  lastEntry(): Entry | undefined {
    const r = this.s.logLast.get() as LogRow | undefined;
    return r === undefined ? undefined : toEntry(r);
  }

  lastIndex(): number {
    return this.lastEntry()?.index ?? this.anchor()?.index ?? 0;
  }

  firstIndex(): number | undefined {
    return (this.s.logFirst.get() as { idx: number } | undefined)?.idx;
  }

  anchor(): { index: number; term: number; hash: Uint8Array } | undefined {
    const r = this.s.anchorGet.get() as { idx: number; term: number; hash: Buffer } | undefined;
    return r === undefined ? undefined : { index: r.idx, term: r.term, hash: u8(r.hash) };
  }

  entry(index: number): Entry | undefined {
    const r = this.s.logGet.get(index) as LogRow | undefined;
    return r === undefined ? undefined : toEntry(r);
  }

  /** Entries from..to inclusive, in index order, read lazily. */
  *entries(from: number, to: number): IterableIterator<Entry> {
    for (const r of this.s.logRange.iterate(from, to) as IterableIterator<LogRow>) yield toEntry(r);
  }

  /**
   * The log rows from..to as stored, in index order, payload and hash as hex (HexLogRow), read as
   * iterated: verify-chain's pipeline packs them into its pages. A Buffer per BLOB, as entries()
   * reads them, cost ~40% more a row (each a native allocation with an ArrayBuffer of its own,
   * which every young-generation collection sweeps). Finish or return() the iterator: an open
   * read keeps the connection busy.
   */
  logRowsHex(from: number, to: number): IterableIterator<HexLogRow> {
    return this.s.logRangeHex.iterate(from, to) as IterableIterator<HexLogRow>;
  }

  /** Appends entries and the Merkle nodes they complete; the caller wraps it in a transaction. */
  appendEntries(entries: readonly Entry[], nodes: readonly MerkleNode[]): void {
    for (const e of entries) this.s.logInsert.run(e.index, e.term, e.kind, e.payload, e.hash);
    for (const n of nodes) this.s.nodePut.run(n.level, n.index, n.hash);
  }

  /**
   * Drops the log suffix from index on (Raft: an uncommitted suffix that conflicts with the
   * leader's), with the Merkle nodes and checkpoint rows that covered it.
   */
  truncateFrom(index: number): void {
    assert(index > this.hardState().commitIndex, `refusing to truncate at ${index}: commit index is ${this.hardState().commitIndex}`);
    this.s.logTruncate.run(index);
    this.s.cpTruncate.run(index);
    // Leaf i is entry i+1: entries < index keep leaves < index-1; a node covering any later leaf goes.
    this.s.nodesTruncate.run(index - 1);
  }

  /**
   * Removes entries up to anchor.index; the anchor row keeps (index, term, hash). Only a recorded
   * prune calls this on a node (src/node/snapshots.ts): a snapshot never deletes history by itself.
   */
  compactTo(anchor: { index: number; term: number; hash: Uint8Array }): void {
    assert(anchor.index <= this.hardState().lastApplied, `refusing to compact past last_applied (${anchor.index})`);
    this.s.anchorSet.run(anchor.index, anchor.term, anchor.hash);
    this.s.logCompact.run(anchor.index);
  }

  /**
   * Installs a received snapshot's anchor: the whole log is replaced by it, older snapshots go (their
   * history is not here to verify from), and this node's history starts after the anchor.
   */
  resetToAnchor(anchor: { index: number; term: number; hash: Uint8Array }): void {
    this.s.anchorSet.run(anchor.index, anchor.term, anchor.hash);
    this.db.exec("DELETE FROM log; DELETE FROM checkpoints; DELETE FROM merkle_nodes; DELETE FROM subjects; DELETE FROM subject_records; DELETE FROM dedup;");
    this.s.snapBelow.run(anchor.index);
    this.setHistoryFrom(Math.max(this.historyFrom(), anchor.index + 1));
  }

  /** The first index whose history this node holds and serves (1 unless pruned or installed from a snapshot). */
  historyFrom(): number {
    const raw = this.getMeta(HISTORY_FROM_KEY);
    if (raw === undefined) return 1;
    const n = Number(raw);
    assert(Number.isSafeInteger(n) && n >= 1, `meta ${HISTORY_FROM_KEY} is not an index >= 1: ${JSON.stringify(raw)}`);
    return n;
  }

  setHistoryFrom(index: number): void {
    assert(Number.isSafeInteger(index) && index >= 1, `history_from ${index} is not an index >= 1`);
    this.setMeta(HISTORY_FROM_KEY, String(index));
  }

  /** Stores a snapshot (the same index replaces); older ones stay until retainSnapshots. */
  saveSnapshot(s: StoredSnapshot): void {
    this.s.snapPut.run(s.index, s.term, s.hash, s.root, s.compactRange, s.config, s.stateRoot, s.data, s.signer, s.sig, s.createdAt);
  }

  /**
   * Deletes all but the newest `keep` snapshots, never the one at the log's anchor nor the one at
   * `pinned` (a prune on its way names it as what starts the history it leaves). Returns how many went.
   */
  retainSnapshots(keep: number, pinned = 0): number {
    assert(Number.isSafeInteger(keep) && keep >= 1, `snapshots to keep must be >= 1, got ${keep}`);
    return this.s.snapRetain.run(keep, this.anchor()?.index ?? 0, pinned).changes;
  }

  /** Deletes the snapshots before index (a prune: their history is gone, they can no longer start a verification). */
  dropSnapshotsBelow(index: number): void {
    this.s.snapBelow.run(index);
  }

  latestSnapshot(): StoredSnapshot | undefined {
    const r = this.s.snapLatest.get() as SnapshotRow | undefined;
    return r === undefined ? undefined : toSnapshot(r);
  }

  snapshotAt(index: number): StoredSnapshot | undefined {
    const r = this.s.snapAt.get(index) as SnapshotRow | undefined;
    return r === undefined ? undefined : toSnapshot(r);
  }

  /** The newest snapshot at or before index. */
  snapshotAtOrBefore(index: number): StoredSnapshot | undefined {
    const r = this.s.snapAtOrBefore.get(index) as SnapshotRow | undefined;
    return r === undefined ? undefined : toSnapshot(r);
  }

  /** Every stored snapshot, newest first, without its state. At most snapshots-keep + 1 rows (retainSnapshots). */
  snapshotAnchors(): SnapshotAnchor[] {
    return (this.s.snapList.all() as Array<{ idx: number; term: number; hash: Buffer; state_root: string; signer: string; created_at: string }>).map((r) => ({
      index: r.idx, term: r.term, hash: u8(r.hash), stateRoot: r.state_root, signer: r.signer, createdAt: r.created_at,
    }));
  }

  /** ChainSource: the snapshot indices stored, newest first. */
  snapshotIndexes(): number[] {
    return this.snapshotAnchors().map((a) => a.index);
  }

  /** ChainSource: the snapshot document at index. */
  snapshotBytesAt(index: number): Uint8Array | undefined {
    return this.snapshotAt(index)?.data;
  }

  /** The CONFIG payload in force at index: the last CONFIG entry at or before it, else the newest snapshot's at or before it. */
  /** The indices of the CONFIG entries in [from, to], in order (no index on kind: a scan of that range). */
  configIndices(from: number, to: number): number[] {
    return (this.s.configIndices.all(from, to) as Array<{ idx: number }>).map((r) => r.idx);
  }

  configAt(index: number): Uint8Array | undefined {
    const r = this.s.configAt.get(index) as { payload: Buffer } | undefined;
    if (r !== undefined) return u8(r.payload);
    return this.snapshotAtOrBefore(index)?.config;
  }

  latestSnapshotBytes(): Uint8Array | undefined {
    return this.latestSnapshot()?.data;
  }

  /** Stored perfect-subtree hash; a missing one is corruption (or a bug), never a silent zero. */
  readonly readNode: NodeReader = (level, index) => {
    const hash = this.findNode(level, index);
    assert(hash !== undefined, `merkle node ${level}/${index} missing from the store`);
    return hash;
  };

  findNode(level: number, index: number): Uint8Array | undefined {
    const r = this.s.nodeGet.get(level, index) as { hash: Buffer } | undefined;
    return r === undefined ? undefined : u8(r.hash);
  }

  /**
   * The hashes of nodes from..to of one level, 32 bytes each in index order, in one query (a
   * verification reads ~2 nodes per entry; one query each cost more than hashing them); undefined
   * unless every one of them is stored and 32 bytes long.
   */
  nodeRun(level: number, from: number, to: number): Uint8Array | undefined {
    const r = this.s.nodeRun.get(level, from, to) as { n: number; whole: number | null; hashes: string | null };
    const count = to - from + 1;
    if (r.n !== count || r.whole !== count || r.hashes === null) return undefined;
    return u8(Buffer.from(r.hashes, "hex"));
  }

  insertCheckpoint(index: number, cp: Checkpoint): void {
    // Prepared on first use: a read-only opener (verify-chain years later) may hold a data dir from
    // before migration 0004, whose checkpoints table has no subjects_root column to name.
    this.cpInsert ??= this.db.prepare("INSERT INTO checkpoints (idx, size, root, head, term, signer, ts, sig, subjects_root) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    this.cpInsert.run(index, cp.size, cp.root, cp.head, cp.term, cp.signer, cp.ts, cp.sig, cp.subjects_root ?? null);
  }

  /** The latest checkpoint entry at or before log index `upTo` (default: any). */
  latestCheckpoint(cluster: string, upTo?: number): StoredCheckpoint | undefined {
    const r = (upTo === undefined ? this.s.cpLatest.get() : this.s.cpLatestUpTo.get(upTo)) as CheckpointRow | undefined;
    return r === undefined ? undefined : toCheckpoint(r, cluster);
  }

  checkpointBySize(size: number, cluster: string): StoredCheckpoint | undefined {
    const r = this.s.cpBySize.get(size) as CheckpointRow | undefined;
    return r === undefined ? undefined : toCheckpoint(r, cluster);
  }

  /** The first checkpoint covering at least size entries. */
  checkpointCovering(size: number, cluster: string): StoredCheckpoint | undefined {
    const r = this.s.cpAtLeast.get(size) as CheckpointRow | undefined;
    return r === undefined ? undefined : toCheckpoint(r, cluster);
  }

  *checkpoints(cluster: string): IterableIterator<StoredCheckpoint> {
    for (const r of this.s.cpAll.iterate() as IterableIterator<CheckpointRow>) yield toCheckpoint(r, cluster);
  }

  // StateStore: read and written only by apply.
  getSubject(subject: string): SubjectRow | undefined {
    const r = this.s.subjGet.get(subject) as { subject: string; version: number; head: Buffer; last_index: number } | undefined;
    return r === undefined ? undefined : { subject: r.subject, version: r.version, head: u8(r.head), lastIndex: r.last_index };
  }
  putSubject(row: SubjectRow): void {
    this.s.subjPut.run(row.subject, row.version, row.head, row.lastIndex);
  }
  addSubjectRecord(subject: string, version: number, index: number): void {
    this.s.srecPut.run(subject, version, index);
  }
  getDedup(key: string): DedupRow | undefined {
    const r = this.s.dedupGet.get(key) as { key: string; digest: string; idx: number; term: number; hash: Buffer } | undefined;
    return r === undefined ? undefined : { key: r.key, digest: r.digest, index: r.idx, term: r.term, hash: u8(r.hash) };
  }
  putDedup(row: DedupRow): void {
    this.s.dedupPut.run(row.key, row.digest, row.index, row.term, row.hash);
  }

  *allSubjects(): IterableIterator<SubjectRow> {
    for (const r of this.s.subjAll.iterate() as IterableIterator<{ subject: string; version: number; head: Buffer; last_index: number }>) {
      yield { subject: r.subject, version: r.version, head: u8(r.head), lastIndex: r.last_index };
    }
  }

  *allDedup(): IterableIterator<DedupRow> {
    for (const r of this.s.dedupAll.iterate() as IterableIterator<{ key: string; digest: string; idx: number; term: number; hash: Buffer }>) {
      yield { key: r.key, digest: r.digest, index: r.idx, term: r.term, hash: u8(r.hash) };
    }
  }

  *allSubjectRecords(): IterableIterator<{ subject: string; version: number; index: number }> {
    for (const r of this.s.srecAll.iterate() as IterableIterator<{ subject: string; version: number; idx: number }>) {
      yield { subject: r.subject, version: r.version, index: r.idx };
    }
  }

  /** The entry hashes of a subject's records before a log index, in version order (to chain its subject heads). */
  *subjectHashesBefore(subject: string, beforeIndex: number): IterableIterator<Uint8Array> {
    for (const r of this.s.srecHashesBefore.iterate(subject, beforeIndex) as IterableIterator<{ hash: Buffer }>) yield u8(r.hash);
  }

  /** Every subject row in the order of its first record (subjects_root's leaf order). */
  *subjectsInOrder(): IterableIterator<{ subject: string; version: number; head: Uint8Array }> {
    for (const r of this.s.subjInOrder.iterate() as IterableIterator<{ subject: string; version: number; head: Buffer }>) {
      yield { subject: r.subject, version: r.version, head: u8(r.head) };
    }
  }

  /** The records (subject, version, index) applied at log indices in (after, upTo], in index order. */
  subjectRecordsBetween(after: number, upTo: number): Array<{ subject: string; version: number; index: number }> {
    return (this.s.srecBetween.all(after, upTo) as Array<{ subject: string; version: number; idx: number }>).map((r) => ({ subject: r.subject, version: r.version, index: r.idx }));
  }

  /** A subject's records (version, index) from a log index on, at most limit. */
  subjectRecords(subject: string, fromIndex: number, limit: number): Array<{ version: number; index: number }> {
    return (this.s.srecList.all(subject, fromIndex, limit) as Array<{ version: number; idx: number }>).map((r) => ({ version: r.version, index: r.idx }));
  }
}
