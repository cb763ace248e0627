/**
 * The reader: every GET, the stream, history, proofs and audits go through here, on a read-only
 * SQLite connection of its own (WAL: it sees each committed transaction of the writer, never a
 * half-written one, and never blocks it). It answers from (1, last_applied], as the runtime last
 * made durable; nothing here writes.
 */
import { Entry, genesisHash } from "../ledger/entry";
import { consistencyProof, inclusionProof, leafHash, rootAt } from "../ledger/merkle";
import { toHex } from "../ledger/bytes";
import { DedupRow, stateRoot } from "../ledger/state-machine";
import { verifyChain, VerifyReport } from "../ledger/verify";
import { Store, StoredCheckpoint } from "../storage/store";
import { LedgerError, notFound } from "../util/errors";
import { AuditSnapshot, openAuditSnapshot } from "./audit-snapshot";
import type { ConsistencyView, InclusionView, LedgerReader, SubjectSummary } from "./ports";

export class Reader implements LedgerReader {
  private readonly store: Store;
  private readonly genesis: Uint8Array;

  /** `applied` is the runtime's last_applied: what this reader may serve. */
  constructor(private readonly dbPath: string, private readonly clusterId: string, private readonly applied: () => number) {
    this.store = new Store(dbPath, { readonly: true });
    this.genesis = genesisHash(clusterId);
  }

  lastApplied(): number {
    return this.applied();
  }

  entry(index: number): Entry {
    const applied = this.applied();
    const e = index <= applied ? this.store.entry(index) : undefined;
    if (e === undefined) {
      const anchor = this.store.anchor();
      if (anchor !== undefined && index <= anchor.index) throw notFound(`entry ${index} was compacted into the snapshot at ${anchor.index}`);
      throw notFound(`no committed entry at index ${index} (commit index ${applied})`);
    }
    return e;
  }

  prevHash(index: number): Uint8Array {
    if (index === 1) return this.genesis;
    const anchor = this.store.anchor();
    if (anchor !== undefined && anchor.index === index - 1) return anchor.hash;
    return this.entry(index - 1).hash;
  }

  entries(from: number, to: number): Iterable<Entry> {
    return this.store.entries(from, Math.min(to, this.applied()));
  }

  subject(subject: string): SubjectSummary | undefined {
    const row = this.store.getSubject(subject);
    return row === undefined ? undefined : { version: row.version, head: row.head, lastIndex: row.lastIndex };
  }

  subjectRecords(subject: string, from: number, limit: number): Array<{ version: number; index: number }> {
    const applied = this.applied();
    return this.store.subjectRecords(subject, from, limit).filter((r) => r.index <= applied);
  }

  subjectHashesBefore(subject: string, before: number): Iterable<Uint8Array> {
    return this.store.subjectHashesBefore(subject, before);
  }

  /** The idempotency record of a key, if an applied entry made one (writes' dedup check). */
  dedup(key: string): DedupRow | undefined {
    return this.store.getDedup(key);
  }

  latestCheckpoint(): StoredCheckpoint | undefined {
    const cp = this.store.latestCheckpoint(this.clusterId);
    return cp !== undefined && cp.index <= this.applied() ? cp : undefined;
  }

  private checkpointBySize(size: number): StoredCheckpoint | undefined {
    const cp = this.store.checkpointBySize(size, this.clusterId);
    return cp !== undefined && cp.index <= this.applied() ? cp : undefined;
  }

  private provable(size: number): void {
    const anchor = this.store.anchor();
    if (anchor !== undefined && anchor.index > 0 && this.store.latestSnapshot()?.index === anchor.index && this.store.findNode(0, 0) === undefined) {
      // A node that installed a snapshot holds only the Merkle peaks at the anchor.
      if (size < anchor.index) throw notFound(`this node's history starts at snapshot ${anchor.index}; ask a node with the full tree`);
    }
  }

  inclusion(index: number, size?: number): InclusionView {
    const commit = this.applied();
    if (index > commit) throw notFound(`no committed entry at index ${index} (commit index ${commit})`);
    let n = size;
    if (n === undefined) {
      const cp = this.store.checkpointCovering(index, this.clusterId);
      if (cp === undefined || cp.index > commit) throw notFound(`no signed checkpoint covers index ${index} yet; pass ?size=N (<= ${commit}) or retry`);
      n = cp.size;
    }
    if (n < index) throw new LedgerError("bad_request", `size ${n} is smaller than index ${index}`);
    if (n > commit) throw notFound(`size ${n} is beyond the commit index ${commit}`);
    this.provable(index);
    const leaf = leafHash(this.entry(index).hash);
    const path = inclusionProof(this.store.readNode, index - 1, n).map(toHex);
    const cp = this.checkpointBySize(n);
    return { index, size: n, leaf_hash: toHex(leaf), path, root: toHex(rootAt(this.store.readNode, n)), ...(cp ? { checkpoint: cp } : {}) };
  }

  consistency(from: number, to?: number): ConsistencyView {
    const commit = this.applied();
    let n = to;
    if (n === undefined) {
      const cp = this.latestCheckpoint();
      if (cp === undefined) throw notFound("no signed checkpoint yet; pass &to=N");
      n = cp.size;
    }
    if (from > n) throw new LedgerError("bad_request", `from ${from} is larger than to ${n}`);
    if (n > commit) throw notFound(`to ${n} is beyond the commit index ${commit}`);
    this.provable(from);
    const path = consistencyProof(this.store.readNode, from, n).map(toHex);
    const cp = this.checkpointBySize(n);
    return {
      from, to: n, path, root_from: toHex(rootAt(this.store.readNode, from)), root_to: toHex(rootAt(this.store.readNode, n)),
      ...(cp ? { checkpoint: cp } : {}),
    };
  }

  openAuditSnapshot(): AuditSnapshot {
    return openAuditSnapshot(this.dbPath);
  }

  /** The whole chain verified in one go (tests and tools; the API's audit is time-sliced). */
  verify(to?: number, from: "genesis" | "snapshot" = "genesis"): VerifyReport {
    return verifyChain(this.store, { from, ...(to === undefined ? {} : { to }) });
  }

  /** The state root of the applied state tables. */
  stateRoot(): string {
    return toHex(stateRoot(this.store.allSubjects(), this.store.allDedup()));
  }

  close(): void {
    this.store.close();
  }
}
