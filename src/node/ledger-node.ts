/**
 * The node runtime on one node: propose → commit → apply, with group commit (one fsync per batch)
 * and signed checkpoints every K entries or T ms. On one node an entry commits once it is durable;
 * the Raft core replaces that step in a cluster without changing the shape.
 */
import type { Logger } from "pino";
import { Entry, EntryKind, chainEntry, genesisHash as genesisOf } from "../ledger/entry";
import { CompactRange, MerkleNode, consistencyProof, inclusionProof, leafHash, rootAt } from "../ledger/merkle";
import { encodeRecord, RecordPayload, RecordRequest, requestDigest } from "../ledger/record";
import { encodeCheckpoint, signCheckpoint, Checkpoint } from "../ledger/checkpoint";
import { applyEntry, ApplyResult, stateRoot } from "../ledger/state-machine";
import { toHex } from "../ledger/bytes";
import { verifyChain, VerifyReport } from "../ledger/verify";
import { Store, StoredCheckpoint } from "../storage/store";
import { DataDir } from "./data-dir";
import { LedgerError, notFound } from "../util/errors";
import { assert } from "../util/assert";

export interface NodeOptions {
  /** A checkpoint after this many entries since the last one. */
  readonly checkpointEvery: number;
  /** ...or after this long with uncheckpointed entries. */
  readonly checkpointIntervalMs: number;
  /** Most entries written in one transaction. */
  readonly batchMax: number;
  /** Clock, injected so tests and replay can fix it. */
  readonly now: () => Date;
  readonly logger: Logger;
}

export interface AppendResult {
  readonly index: number;
  readonly term: number;
  readonly hash: string;
  /** True when an earlier request with the same idempotency key made this record. */
  readonly duplicate: boolean;
}

export interface NodeStatus {
  readonly node_id: string;
  readonly public_key: string;
  readonly role: "leader" | "follower" | "candidate";
  readonly term: number;
  readonly leader: string | null;
  readonly commit_index: number;
  readonly last_applied: number;
  readonly head: string;
  readonly cluster: string;
}

const APPLY_CHUNK = 1024;

type BatchItem = { readonly kind: EntryKind.Record | EntryKind.Noop; readonly payload: Uint8Array } | { readonly kind: "checkpoint" };

interface Pending {
  readonly payload: Uint8Array;
  readonly key?: string;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: Error) => void;
}

export class LedgerNode {
  readonly store: Store;
  readonly nodeId: string;
  readonly clusterId: string;
  readonly publicKey: string;
  private readonly secretKey: Uint8Array;
  private readonly log: Logger;
  private term: number;
  private range: CompactRange;
  private lastHash: Uint8Array;
  private lastIndex: number;
  private sinceCheckpoint = 0;
  private firstUncheckpointedAt = 0;
  private readonly queue: Pending[] = [];
  private readonly inflight = new Map<string, { digest: string; done: Promise<AppendResult> }>();
  private flushScheduled = false;
  private closed = false;
  /** Why the node stopped taking writes, when it did. */
  private halted: string | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(dd: DataDir, private readonly opts: NodeOptions) {
    assert(opts.checkpointEvery >= 1 && opts.batchMax >= 1, "checkpointEvery and batchMax must be >= 1");
    this.store = dd.store;
    this.nodeId = dd.nodeId;
    this.clusterId = dd.clusterId;
    this.publicKey = toHex(dd.key.publicKey);
    this.secretKey = dd.key.secretKey;
    const last = this.store.lastEntry();
    assert(last !== undefined, "an initialized ledger has at least its genesis entry");
    this.lastIndex = last.index;
    this.lastHash = last.hash;
    this.range = CompactRange.fromStore(this.store.readNode, this.lastIndex);
    const hard = this.store.hardState();
    // One node: every durable entry was committed in the transaction that wrote it.
    assert(hard.commitIndex === this.lastIndex, `commit_index ${hard.commitIndex} != last index ${this.lastIndex} on a single node`);
    this.applyCommitted();
    // Each start is a new leadership term whose first entry is a NOOP (as a Raft leader's is).
    this.term = Math.max(hard.term, last.term) + 1;
    this.log = opts.logger.child({ node_id: this.nodeId, term: this.term });
    this.store.transaction(() => this.store.setHardState({ ...this.store.hardState(), term: this.term, votedFor: this.nodeId }));
    const cp = this.store.latestCheckpoint(this.clusterId);
    this.sinceCheckpoint = this.lastIndex - (cp?.index ?? 0);
    this.firstUncheckpointedAt = this.sinceCheckpoint > 0 ? this.opts.now().getTime() : 0;
    this.writeBatch([{ kind: EntryKind.Noop, payload: new Uint8Array() }]);
    this.timer = setInterval(() => this.checkpointTick(), Math.max(10, Math.floor(opts.checkpointIntervalMs / 2)));
    this.timer.unref();
    this.log.info({ last_index: this.lastIndex, last_applied: this.store.hardState().lastApplied }, "node ready");
  }

  currentTerm(): number {
    return this.term;
  }

  status(): NodeStatus {
    const hard = this.store.hardState();
    return {
      node_id: this.nodeId, public_key: this.publicKey, role: "leader", term: this.term, leader: this.nodeId,
      commit_index: hard.commitIndex, last_applied: hard.lastApplied, head: toHex(this.lastHash), cluster: this.clusterId,
    };
  }

  /** Appends a validated record; resolves only after it is committed and applied. */
  async append(record: RecordRequest, idempotencyKey?: string): Promise<AppendResult> {
    if (this.closed) throw new LedgerError("unavailable", "node is shutting down");
    if (this.halted !== undefined) throw new LedgerError("unavailable", `node halted: ${this.halted}`);
    const digest = requestDigest(record);
    if (idempotencyKey !== undefined) {
      const prior = this.store.getDedup(idempotencyKey);
      if (prior !== undefined) {
        if (prior.digest !== digest) throw idempotencyConflict(idempotencyKey);
        return { index: prior.index, term: prior.term, hash: toHex(prior.hash), duplicate: true };
      }
      const running = this.inflight.get(idempotencyKey);
      if (running !== undefined) {
        if (running.digest !== digest) throw idempotencyConflict(idempotencyKey);
        return { ...(await running.done), duplicate: true };
      }
    }
    const payload: RecordPayload = {
      v: 1, ...record, ts: this.opts.now().toISOString(),
      ...(idempotencyKey === undefined ? {} : { idempotency_key: idempotencyKey, request_digest: digest }),
    };
    const done = new Promise<AppendResult>((resolve, reject) => {
      this.queue.push({ payload: encodeRecord(payload), key: idempotencyKey, resolve, reject });
    });
    if (idempotencyKey !== undefined) {
      this.inflight.set(idempotencyKey, { digest, done });
      done.then(
        () => this.inflight.delete(idempotencyKey),
        () => this.inflight.delete(idempotencyKey),
      );
    }
    this.scheduleFlush();
    return done;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate lets every request that arrived in this turn join the batch: group commit.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.batchMax);
      try {
        const results = this.writeBatch(batch.map((p) => ({ kind: EntryKind.Record, payload: p.payload })));
        batch.forEach((p, i) => {
          const r = results[i];
          if (r.kind === "record") p.resolve({ index: r.index, term: r.term, hash: toHex(r.hash), duplicate: false });
          else if (r.kind === "duplicate") p.resolve({ index: r.original.index, term: r.original.term, hash: toHex(r.original.hash), duplicate: true });
          else p.reject(new LedgerError("internal", `entry was not applied as a record (${r.kind})`));
        });
      } catch (err) {
        this.log.error({ err }, "batch write failed; nothing in it was acknowledged");
        for (const p of batch) p.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  /**
   * Writes entries (and a checkpoint when one is due) in one transaction, marks them committed,
   * then applies them in a second transaction with last_applied. Returns one result per item.
   */
  private writeBatch(items: readonly BatchItem[]): ApplyResult[] {
    const range = this.range.clone();
    let prev = this.lastHash;
    let index = this.lastIndex;
    let since = this.sinceCheckpoint;
    const entries: Entry[] = [];
    const nodes: MerkleNode[] = [];
    const checkpoints: Array<{ index: number; cp: Checkpoint }> = [];
    const positions: number[] = [];
    const push = (kind: EntryKind, payload: Uint8Array): void => {
      index += 1;
      const e = chainEntry(index, this.term, kind, prev, payload);
      entries.push(e);
      nodes.push(...range.append(e.hash));
      prev = e.hash;
    };
    const checkpoint = (): void => {
      const cp = this.makeCheckpoint(index, range.root(), prev);
      push(EntryKind.Checkpoint, encodeCheckpoint(cp));
      checkpoints.push({ index, cp });
      since = 0;
    };
    for (const it of items) {
      positions.push(entries.length);
      if (it.kind === "checkpoint") {
        checkpoint();
        continue;
      }
      push(it.kind, it.payload);
      since += 1;
      if (since >= this.opts.checkpointEvery) checkpoint();
    }
    const first = this.lastIndex + 1;
    this.store.transaction(() => {
      this.store.appendEntries(entries, nodes);
      for (const c of checkpoints) this.store.insertCheckpoint(c.index, c.cp);
      this.store.setCommitIndex(index);
    });
    // Durable and committed: only now does in-memory state move on.
    this.range = range;
    this.lastHash = prev;
    this.lastIndex = index;
    if (this.sinceCheckpoint === 0 && since > 0) this.firstUncheckpointedAt = this.opts.now().getTime();
    this.sinceCheckpoint = since;
    let results: Map<number, ApplyResult>;
    try {
      results = this.applyCommitted();
    } catch (err) {
      // Committed but not applied: state can no longer be trusted to move forward. Stop writes.
      this.halted = `apply failed after index ${first - 1}: ${(err as Error).message}`;
      this.log.fatal({ err }, "apply failed; node halted for writes");
      throw err;
    }
    return positions.map((p) => {
      const r = results.get(first + p);
      assert(r !== undefined, `entry ${first + p} was committed but not applied`);
      return r;
    });
  }

  /**
   * Applies every committed entry after last_applied, in chunks, each chunk in one transaction
   * with last_applied. Returns the results by index.
   */
  private applyCommitted(): Map<number, ApplyResult> {
    const out = new Map<number, ApplyResult>();
    const hard = this.store.hardState();
    for (let from = hard.lastApplied + 1; from <= hard.commitIndex; from += APPLY_CHUNK) {
      const to = Math.min(hard.commitIndex, from + APPLY_CHUNK - 1);
      // Read first: better-sqlite3 cannot write while a read cursor is open on the connection.
      const entries = [...this.store.entries(from, to)];
      assert(entries.length === to - from + 1, `expected ${to - from + 1} committed entries from ${from}, read ${entries.length}`);
      this.store.transaction(() => {
        for (const e of entries) out.set(e.index, applyEntry(this.store, e));
        this.store.setLastApplied(to);
      });
    }
    return out;
  }

  private makeCheckpoint(size: number, root: Uint8Array, head: Uint8Array): Checkpoint {
    return signCheckpoint({
      v: 1, cluster: this.clusterId, size, root: toHex(root), head: toHex(head), term: this.term,
      signer: this.nodeId, ts: this.opts.now().toISOString(),
    }, this.secretKey);
  }

  private checkpointTick(): void {
    if (this.closed || this.sinceCheckpoint === 0 || this.queue.length > 0) return;
    if (this.opts.now().getTime() - this.firstUncheckpointedAt < this.opts.checkpointIntervalMs) return;
    try {
      this.writeBatch([{ kind: "checkpoint" }]);
    } catch (err) {
      this.log.error({ err }, "checkpoint write failed");
    }
  }

  // Reads.

  commitIndex(): number {
    return this.store.hardState().commitIndex;
  }

  entry(index: number): Entry {
    const e = index <= this.commitIndex() ? this.store.entry(index) : undefined;
    if (e === undefined) throw notFound(`no committed entry at index ${index} (commit index ${this.commitIndex()})`);
    return e;
  }

  /** prev_hash of entry index: the hash of index-1, or the genesis hash for entry 1. */
  prevHash(index: number): Uint8Array {
    return index === 1 ? genesisOf(this.clusterId) : this.entry(index - 1).hash;
  }

  latestCheckpoint(): StoredCheckpoint | undefined {
    return this.store.latestCheckpoint(this.clusterId);
  }

  checkpointBySize(size: number): StoredCheckpoint | undefined {
    return this.store.checkpointBySize(size, this.clusterId);
  }

  /** Inclusion proof of entry index in the tree of size; size defaults to the latest checkpoint's. */
  inclusion(index: number, size?: number): { index: number; size: number; leaf_hash: string; path: string[]; root: string; checkpoint?: StoredCheckpoint } {
    const commit = this.commitIndex();
    if (index > commit) throw notFound(`no committed entry at index ${index} (commit index ${commit})`);
    let n = size;
    if (n === undefined) {
      const cp = this.store.checkpointCovering(index, this.clusterId);
      if (cp === undefined) throw notFound(`no signed checkpoint covers index ${index} yet; pass ?size=N (<= ${commit}) or retry`);
      n = cp.size;
    }
    if (n < index) throw new LedgerError("bad_request", `size ${n} is smaller than index ${index}`);
    if (n > commit) throw notFound(`size ${n} is beyond the commit index ${commit}`);
    const leaf = leafHash(this.entry(index).hash);
    const path = inclusionProof(this.store.readNode, index - 1, n).map(toHex);
    const cp = this.checkpointBySize(n);
    return { index, size: n, leaf_hash: toHex(leaf), path, root: toHex(rootAt(this.store.readNode, n)), ...(cp ? { checkpoint: cp } : {}) };
  }

  /** Consistency proof between sizes from and to; to defaults to the latest checkpoint's size. */
  consistency(from: number, to?: number): { from: number; to: number; path: string[]; root_from: string; root_to: string; checkpoint?: StoredCheckpoint } {
    const commit = this.commitIndex();
    let n = to;
    if (n === undefined) {
      const cp = this.latestCheckpoint();
      if (cp === undefined) throw notFound("no signed checkpoint yet; pass &to=N");
      n = cp.size;
    }
    if (from > n) throw new LedgerError("bad_request", `from ${from} is larger than to ${n}`);
    if (n > commit) throw notFound(`to ${n} is beyond the commit index ${commit}`);
    const path = consistencyProof(this.store.readNode, from, n).map(toHex);
    const cp = this.checkpointBySize(n);
    return {
      from, to: n, path, root_from: toHex(rootAt(this.store.readNode, from)), root_to: toHex(rootAt(this.store.readNode, n)),
      ...(cp ? { checkpoint: cp } : {}),
    };
  }

  /** Replays and verifies the chain from genesis (to an index), comparing state to the replay. */
  verify(to?: number): VerifyReport {
    return verifyChain(this.store, to === undefined ? {} : { to });
  }

  stateRoot(): string {
    return toHex(stateRoot(this.store.allSubjects(), this.store.allDedup()));
  }

  /** Stops taking writes, finishes the queued ones, and closes the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.flush();
    this.store.close();
    this.log.info("node closed");
  }
}

const idempotencyConflict = (key: string): LedgerError =>
  new LedgerError("idempotency_conflict", `Idempotency-Key ${JSON.stringify(key)} was used with a different request body`);
