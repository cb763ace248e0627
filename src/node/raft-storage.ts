/**
 * The Raft core's Storage over the node's SQLite store, and the writer that makes a Ready's
 * snapshot, entries and hard state durable in one transaction (one fsync: group commit).
 * It also keeps the Merkle compact range of the stored log, and checks what it is asked to store:
 * a CHECKPOINT entry must carry this log's root and head, and a snapshot must verify.
 */
import type { Logger } from "pino";
import type { Entry } from "../ledger/entry";
import { EntryKind, genesisHash } from "../ledger/entry";
import { CompactRange, MerkleNode } from "../ledger/merkle";
import { bytesEqual, toHex } from "../ledger/bytes";
import { Checkpoint, decodeCheckpoint, verifyCheckpointSignature } from "../ledger/checkpoint";
import { decodeConfig, encodeConfig } from "../ledger/config";
import { decodeSnapshot, SnapshotDoc, snapshotProblem, snapshotRange } from "../ledger/snapshot";
import type { Anchor, ClusterConfig, HardState, Ready, Snapshot, Storage } from "../raft";
import type { HardState as DurableHard, Store } from "../storage/store";
import { assert } from "../util/assert";

/** Recent entries kept in memory: replication reads the tail of the log over and over... */
const TAIL_CACHE_MAX = 8192;
/** ...and at most this many payload bytes of them: 8,192 entries of up to 1 MiB would be 8 GiB; 64 MiB holds ~200k typical records' worth of replication backlog. */
const TAIL_CACHE_BYTES_MAX = 64 << 20;

export class VerificationFailure extends Error {
  constructor(readonly index: number, message: string) {
    super(message);
    this.name = "VerificationFailure";
  }
}

/**
 * Member id → Ed25519 key: of `config` when given, else of the configuration in effect at index
 * `at` (the latest CONFIG entry at or before it), else of the latest configuration.
 */
export type MemberKeys = (config: ClusterConfig | null, at?: number) => Map<string, string>;

export class RaftStorage implements Storage {
  private range: CompactRange;
  private readonly tail = new Map<number, Entry>();
  private tailBytes = 0;
  private readonly genesis: Uint8Array;
  // The core asks for these on nearly every step; they change only through this class.
  private cachedAnchor!: Anchor;
  private cachedLast!: number;
  /** The hard state as last committed: read from SQLite once, then kept here (this class writes it). */
  private hard: DurableHard;
  /** The hard state the open transaction writes; it becomes `hard` only when the transaction commits. */
  private txnHard: DurableHard | null = null;

  constructor(readonly store: Store, readonly clusterId: string, private readonly log: Logger) {
    this.genesis = genesisHash(clusterId);
    this.hard = store.hardState();
    this.refresh();
    this.range = CompactRange.fromStore(store.readNode, this.lastIndex());
  }

  /** Re-reads the anchor and last index after the store changed (persist, compaction, install). */
  private refresh(): void {
    this.cachedAnchor = this.store.anchor() ?? { index: 0, term: 0, hash: this.genesis };
    this.cachedLast = this.store.lastIndex();
  }

  hardState(): HardState {
    const h = this.hard;
    return { term: h.term, vote: h.votedFor, commit: h.commitIndex };
  }

  /**
   * Term, vote, commit index and last_applied as last committed (never what an open transaction
   * wrote). Term and vote are fsync'd; commit index and last_applied may trail on disk by the apply
   * transactions persist() commits without an fsync, which a restart redoes (see there).
   */
  durable(): Readonly<DurableHard> {
    return this.hard;
  }

  /** Runs fn in one transaction (fsync'd unless `synced` is false); the cached hard state follows only if it commits. */
  transaction(fn: () => void, synced = true): void {
    assert(this.txnHard === null, "nested storage transaction");
    this.txnHard = { ...this.hard };
    try {
      if (synced) this.store.transaction(fn);
      else this.store.transactionUnsynced(fn);
      this.hard = this.txnHard;
    } finally {
      this.txnHard = null;
    }
  }

  /** Inside transaction(): entries up to `index` are applied (commit_index follows if it trailed). */
  markApplied(index: number): void {
    const t = this.txnHard;
    assert(t !== null, "markApplied outside a storage transaction");
    this.txnHard = { ...t, lastApplied: index, commitIndex: Math.max(t.commitIndex, index) };
    this.store.setHardState(this.txnHard);
  }

  anchor(): Anchor {
    return this.cachedAnchor;
  }

  lastIndex(): number {
    return this.cachedLast;
  }

  entry(i: number): Entry {
    const cached = this.tail.get(i);
    if (cached !== undefined) return cached;
    const e = this.store.entry(i);
    assert(e !== undefined, () => `storage: no entry ${i} (anchor ${this.anchor().index}, last ${this.lastIndex()})`);
    return e;
  }

  configIndices(from: number, to: number): number[] {
    return this.store.configIndices(from, to);
  }

  snapshot(): Snapshot | null {
    // The core needs the snapshot its log follows (the configuration there): the anchor's, once the log was cut.
    const at = this.anchor().index;
    const s = at > 0 ? this.store.snapshotAt(at) : this.store.latestSnapshot();
    if (s === undefined) return null;
    const config = decodeConfig(s.config);
    assert(config !== null, `stored snapshot at ${s.index} has an unreadable configuration`);
    return { meta: { index: s.index, term: s.term, hash: s.hash, config }, data: s.data };
  }

  /** Root of the stored log, and the hash of its last entry: what a new checkpoint signs. */
  treeHead(): { size: number; root: Uint8Array; head: Uint8Array } {
    const size = this.lastIndex();
    const head = size === this.anchor().index ? this.anchor().hash : this.entry(size).hash;
    return { size, root: this.range.root(), head };
  }

  /**
   * Makes rd's snapshot, entries and hard state durable in one transaction, with alsoInTxn (the
   * apply of committed entries) at its end: at most one fsync per Ready. Throws
   * VerificationFailure (and writes nothing) when what the leader sent does not check out.
   *
   * A Ready that brings no snapshot, no entry and no new term or vote (on a leader, the one that
   * applies what followers just acknowledged) is committed without an fsync (Store.transactionUnsynced).
   * What it writes, the commit index, last_applied and the applied state, is redone from what is
   * durable if a machine crash loses it: the entries are fsync'd on a majority before they commit;
   * Raft's commit index is volatile (a restarted node learns it again from the leader, or as leader by
   * committing its NOOP); and the start-up replay applies (last_applied, commit_index] again, the same
   * entries to the same state, in order (runtime.ts applyFromStore). etcd applies the same way.
   */
  persist(rd: Ready, keys: MemberKeys, alsoInTxn: (() => void) | null = null): void {
    if (rd.snapshot === null && rd.entries.length === 0 && rd.hardState === null) {
      if (alsoInTxn !== null) this.transaction(alsoInTxn, false);
      return;
    }
    const termOrVote = rd.hardState !== null && (rd.hardState.term !== this.hard.term || rd.hardState.vote !== this.hard.votedFor);
    const synced = rd.snapshot !== null || rd.entries.length > 0 || termOrVote;
    let range = this.range;
    const nodes: MerkleNode[] = [];
    const checkpoints: Array<{ index: number; cp: Checkpoint }> = [];
    let truncateAt: number | null = null;
    let installed: { snap: Snapshot; doc: SnapshotDoc; range: CompactRange } | null = null;
    if (rd.snapshot !== null) installed = { snap: rd.snapshot, ...this.checkSnapshot(rd.snapshot, keys) };
    if (rd.entries.length > 0) {
      const first = rd.entries[0].index;
      const base = installed !== null ? installed.snap.meta.index : this.lastIndex();
      assert(first <= base + 1, `entries start at ${first}, after a gap from ${base}`);
      if (installed !== null) range = installed.range.clone();
      else if (first <= base) {
        truncateAt = first;
        range = CompactRange.fromStore(this.store.readNode, first - 1);
      } else range = range.clone();
      let prevHash = first - 1 === this.anchor().index && installed === null ? this.anchor().hash
        : installed !== null && first - 1 === installed.snap.meta.index ? installed.snap.meta.hash
        : this.entry(first - 1).hash;
      for (const e of rd.entries) {
        // Signed by a member of the configuration in effect before it, as verify-chain holds it: a
        // CONFIG entry earlier in this same batch counts, a later one does not.
        if (e.kind === EntryKind.Checkpoint) checkpoints.push({ index: e.index, cp: this.checkCheckpoint(e, range, prevHash, keys(null, e.index - 1)) });
        nodes.push(...range.append(e.hash));
        prevHash = e.hash;
      }
    }
    this.transaction(() => {
      if (installed !== null) this.install(installed.snap, installed.doc, installed.range);
      if (truncateAt !== null) this.store.truncateFrom(truncateAt);
      this.store.appendEntries(rd.entries, nodes);
      for (const c of checkpoints) this.store.insertCheckpoint(c.index, c.cp);
      const cur = this.txnHard as DurableHard;
      if (rd.hardState !== null) {
        const lastApplied = installed !== null ? installed.snap.meta.index : cur.lastApplied;
        this.txnHard = { term: rd.hardState.term, votedFor: rd.hardState.vote, commitIndex: Math.max(rd.hardState.commit, lastApplied), lastApplied };
        this.store.setHardState(this.txnHard);
      } else if (installed !== null) {
        const at = installed.snap.meta.index;
        this.txnHard = { ...cur, commitIndex: Math.max(cur.commitIndex, at), lastApplied: at };
        this.store.setHardState(this.txnHard);
      }
      alsoInTxn?.();
    }, synced);
    // Committed: now the caches follow.
    this.refresh();
    if (installed !== null || truncateAt !== null) this.forgetTail(() => true);
    this.range = rd.entries.length > 0 ? range : installed !== null ? installed.range : this.range;
    for (const e of rd.entries) {
      const old = this.tail.get(e.index);
      if (old !== undefined) this.tailBytes -= old.payload.length;
      this.tail.set(e.index, e);
      this.tailBytes += e.payload.length;
    }
    while (this.tail.size > 0 && (this.tail.size > TAIL_CACHE_MAX || this.tailBytes > TAIL_CACHE_BYTES_MAX)) {
      const oldest = this.tail.keys().next().value as number;
      this.tailBytes -= (this.tail.get(oldest) as Entry).payload.length;
      this.tail.delete(oldest);
    }
  }

  /** Drops cached entries whose index matches, keeping the byte count right. */
  private forgetTail(match: (index: number) => boolean): void {
    for (const [i, e] of this.tail) {
      if (!match(i)) continue;
      this.tail.delete(i);
      this.tailBytes -= e.payload.length;
    }
  }

  /** After compaction the cache must not serve entries the store no longer has. */
  forgetUpTo(index: number): void {
    this.forgetTail((i) => i <= index);
    this.refresh();
  }

  /** The checkpoint an entry carries, once it checks out against this log (else VerificationFailure). */
  private checkCheckpoint(e: Entry, range: CompactRange, prevHash: Uint8Array, keys: Map<string, string>): Checkpoint {
    const cp = decodeCheckpoint(e.payload);
    if (cp === null) throw new VerificationFailure(e.index, `checkpoint entry ${e.index} does not parse`);
    const problem = cp.size !== e.index - 1 ? `size ${cp.size} is not ${e.index - 1}`
      : cp.cluster !== this.clusterId ? `cluster ${cp.cluster}`
      : cp.root !== toHex(range.root()) ? `root ${cp.root} is not this log's root(${cp.size}) ${toHex(range.root())}`
      : cp.head !== toHex(prevHash) ? "head is not this log's entry hash there"
      : cp.term !== e.term ? `term ${cp.term} is not the entry's ${e.term}`
      : keys.get(cp.signer) === undefined ? `signer ${cp.signer} is not a member`
      : !verifyCheckpointSignature(cp, keys.get(cp.signer) as string) ? "signature does not verify" : null;
    if (problem !== null) throw new VerificationFailure(e.index, `checkpoint at ${e.index}: ${problem}`);
    return cp;
  }

  /** The snapshot's document and Merkle range, once it verifies (else VerificationFailure). */
  private checkSnapshot(snap: Snapshot, keys: MemberKeys): { doc: SnapshotDoc; range: CompactRange } {
    const doc = decodeSnapshot(snap.data);
    const at = snap.meta.index;
    if (doc === null) throw new VerificationFailure(at, "received snapshot does not parse");
    if (doc.index !== at || doc.term !== snap.meta.term || doc.hash !== toHex(snap.meta.hash) || doc.cluster !== this.clusterId) {
      throw new VerificationFailure(at, "received snapshot does not match its metadata");
    }
    const docConfig = decodeConfig(Buffer.from(doc.config_b64, "base64"));
    if (docConfig === null || !bytesEqual(encodeConfig(docConfig), encodeConfig(snap.meta.config))) {
      throw new VerificationFailure(at, "received snapshot's configuration differs from its metadata");
    }
    const key = keys(snap.meta.config).get(doc.signer);
    const problem = key === undefined ? `signer ${doc.signer} is not a member` : snapshotProblem(doc, key);
    if (problem !== null) throw new VerificationFailure(at, `received snapshot: ${problem}`);
    return { doc, range: snapshotRange(doc) };
  }

  /** Replaces log, Merkle nodes and state with a verified snapshot. */
  private install(snap: Snapshot, doc: SnapshotDoc, range: CompactRange): void {
    this.store.resetToAnchor({ index: snap.meta.index, term: snap.meta.term, hash: snap.meta.hash });
    this.store.appendEntries([], range.nodes());
    for (const s of doc.state.subjects) this.store.putSubject({ subject: s.subject, version: s.version, head: Buffer.from(s.head, "hex"), lastIndex: s.last_index });
    for (const r of doc.state.subject_records) this.store.addSubjectRecord(r.subject, r.version, r.index);
    for (const d of doc.state.dedup) this.store.putDedup({ key: d.key, digest: d.digest, index: d.index, term: d.term, hash: Buffer.from(d.hash, "hex") });
    this.store.saveSnapshot({
      index: doc.index, term: doc.term, hash: snap.meta.hash, root: doc.root, compactRange: JSON.stringify(doc.compact_range),
      config: Buffer.from(doc.config_b64, "base64"), stateRoot: doc.state_root, data: snap.data, signer: doc.signer, sig: doc.sig, createdAt: doc.ts,
    });
    this.log.info({ index: doc.index, signer: doc.signer }, "installed snapshot");
  }
}
