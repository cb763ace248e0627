/**
 * The reader: every GET, the stream, history, proofs and audits go through here, on a read-only
 * SQLite connection of its own (WAL: it sees each committed transaction of the writer, never a
 * half-written one, and never blocks it). It answers from (1, last_applied], as the runtime last
 * made durable; nothing here writes.
 */
import { Entry, genesisHash } from "../ledger/entry";
import { decodeConfig } from "../ledger/config";
import type { KeyPair } from "../ledger/keys";
import { checkpointNoteBody, noteOrigin, signNote } from "../ledger/note";
import { RECEIPT_TYPE, receiptEntry, SignerLink } from "../ledger/receipt";
import { consistencyProof, inclusionProof, leafHash, rootAt } from "../ledger/merkle";
import { toHex } from "../ledger/bytes";
import { DedupRow, stateRoot } from "../ledger/state-machine";
import { verifyChain, VerifyReport, VerifyStart } from "../ledger/verify";
import { Store, StoredCheckpoint } from "../storage/store";
import { LedgerError, notFound } from "../util/errors";
import { AuditHandle, AuditJob, auditInWorker } from "./audit-worker";
import { NodeCache, NodeSource } from "./node-cache";
import type { SubjectCommitments } from "./subjects";
import type { CompletenessView, ConsistencyView, InclusionView, LedgerReader, ReceiptAnswer, SnapshotView, SubjectSummary } from "./ports";

/**
 * Checkpoints looked at to find one that links a CONFIG entry to the configuration before it: with
 * one membership change at a time the leader that appended it (a member of both) signs the next
 * checkpoint, so the first one or two do; past 1,000 the answer is "not yet", not a long scan.
 */
const LINK_SCAN_MAX = 1000;

/**
 * Merkle subtree hashes kept in memory (src/node/node-cache.ts). Why 65,536: 2 MiB of slab plus a
 * Map slot each, the upper 16 levels of a tree far past 10^9 entries plus the leaves and low nodes of
 * a few busy pages; FIFO eviction keeps it at that.
 */
const NODE_CACHE_MAX = 65_536;

interface ConfigEntry {
  readonly entry: Entry;
  /** Member id → public key. */
  readonly keys: ReadonlyMap<string, string>;
}

export class Reader implements LedgerReader {
  private readonly store: Store;
  private readonly genesis: Uint8Array;
  /** The last root computed: a page of proofs is made against one size (a committed root never changes). */
  private lastRoot: { size: number; root: string } | null = null;

  /** CONFIG entries of the applied log, in order: committed entries never change, so this only grows. */
  private readonly configs: ConfigEntry[] = [];
  private configsScannedTo = 0;
  /** Signer-chain links found so far, by CONFIG index (immutable once found). */
  private readonly links = new Map<number, SignerLink>();
  private note: { readonly index: number; readonly text: string } | null = null;
  private readonly nodes: NodeCache;
  private readonly readNode: NodeSource;

  /**
   * `applied` is the runtime's last_applied: what this reader may serve. `noteKey` is the node's own
   * key pair, which signs the C2SP note of GET /v1/checkpoint (and nothing else here).
   */
  constructor(
    private readonly dbPath: string, private readonly clusterId: string, private readonly applied: () => number, private readonly noteKey?: KeyPair,
    private readonly subjects?: SubjectCommitments,
  ) {
    this.store = new Store(dbPath, { readonly: true });
    this.genesis = genesisHash(clusterId);
    this.nodes = new NodeCache(this.store.readNode, NODE_CACHE_MAX);
    this.readNode = this.nodes.read;
  }

  lastApplied(): number {
    return this.applied();
  }

  entry(index: number): Entry {
    const applied = this.applied();
    this.mustHoldHistory(index);
    const e = index <= applied ? this.store.entry(index) : undefined;
    if (e === undefined) {
      // A prune may have moved history_from between the check above and the read.
      this.mustHoldHistory(index);
      throw notFound(`no committed entry at index ${index} (commit index ${applied})`);
    }
    return e;
  }

  /** 410 Gone below history_from: pruned by a recorded operator act, or before an installed snapshot. */
  private mustHoldHistory(index: number): void {
    const from = this.store.historyFrom();
    if (index >= from) return;
    const anchors = this.snapshots().map((s) => s.index);
    throw new LedgerError("gone", `entry ${index} is not held here: this node's history starts at ${from} (pruned by a recorded prune, or joined from a snapshot); verify from a snapshot anchor (${anchors.length === 0 ? "none retained" : anchors.join(", ")})`, {
      history_from: from,
    });
  }

  historyFrom(): number {
    return this.store.historyFrom();
  }

  /** Retained snapshots that start a verification of the history held here (index + 1 >= history_from), newest first. */
  snapshots(): SnapshotView[] {
    const from = this.store.historyFrom();
    return this.store.snapshotAnchors().filter((a) => a.index + 1 >= from).map((a) => ({
      index: a.index, term: a.term, hash: toHex(a.hash), state_root: a.stateRoot, signer: a.signer, ts: a.createdAt,
    }));
  }

  prevHash(index: number): Uint8Array {
    if (index === 1) return this.genesis;
    const anchor = this.store.anchor();
    if (anchor !== undefined && anchor.index === index - 1) return anchor.hash;
    // The entry at history_from - 1 may still be on disk (a prune keeps back to a snapshot): it only gives its hash.
    return this.store.entry(index - 1)?.hash ?? this.entry(index - 1).hash;
  }

  entries(from: number, to: number): Iterable<Entry> {
    return this.store.entries(Math.max(from, this.store.historyFrom()), Math.min(to, this.applied()));
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
    // Records below history_from are gone: the chain of heads up to them cannot be replayed here.
    const from = this.store.historyFrom();
    const first = from > 1 ? this.store.subjectRecords(subject, 1, 1)[0] : undefined;
    if (first !== undefined && first.index < from && first.index < before) {
      throw new LedgerError("gone", `records of subject ${JSON.stringify(subject)} before ${from} are pruned here: pass head=<the subject_head before the page> to read on`, { history_from: from });
    }
    return this.store.subjectHashesBefore(subject, before);
  }

  /** The idempotency record of a key, if an applied entry made one (writes' dedup check). */
  dedup(key: string): DedupRow | undefined {
    return this.store.getDedup(key);
  }

  /** The latest applied checkpoint (a newer one may be stored and not applied yet: it is not served). */
  latestCheckpoint(): StoredCheckpoint | undefined {
    return this.store.latestCheckpoint(this.clusterId, this.applied());
  }

  completeness(subject: string): CompletenessView | null {
    const p = this.subjects?.proof(subject) ?? null;
    if (p === null || p.proof === undefined) return null;
    const cp = this.store.latestCheckpoint(this.clusterId, p.frozen.index);
    // Only a checkpoint that signs subjects_root proves anything (older ones predate it).
    if (cp === undefined || cp.index !== p.frozen.index || cp.subjects_root === undefined) return null;
    const { version, head, leaf_index, size, path } = p.proof;
    return { checkpoint: cp, version, head: toHex(head), leaf_index, tree_size: size, path: path.map(toHex) };
  }

  private checkpointBySize(size: number): StoredCheckpoint | undefined {
    const cp = this.store.checkpointBySize(size, this.clusterId);
    return cp !== undefined && cp.index <= this.applied() ? cp : undefined;
  }

  /**
   * A proof about the tree of `size` entries needs history up to it: below history_from (a prune, or
   * an installed snapshot, which leaves only the Merkle peaks at its anchor) it is 410 Gone.
   */
  private provable(size: number): void {
    const from = this.store.historyFrom();
    if (size + 1 < from) {
      throw new LedgerError("gone", `this node's history starts at ${from}: no proof about size ${size} here; ask a node with the full tree`, { history_from: from });
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
    const path = inclusionProof(this.readNode, index - 1, n).map(toHex);
    const cp = this.checkpointBySize(n);
    return { index, size: n, leaf_hash: toHex(leaf), path, root: this.root(n), ...(cp ? { checkpoint: cp } : {}) };
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
    const path = consistencyProof(this.readNode, from, n).map(toHex);
    const cp = this.checkpointBySize(n);
    return {
      from, to: n, path, root_from: this.root(from), root_to: this.root(n),
      ...(cp ? { checkpoint: cp } : {}),
    };
  }

  /** root(size) of the committed tree, hex; size <= last_applied. */
  private root(size: number): string {
    if (this.lastRoot?.size !== size) this.lastRoot = { size, root: toHex(rootAt(this.readNode, size)) };
    return this.lastRoot.root;
  }

  audit(job: AuditJob, onProgress: (done: number, total: number) => void, onNote: (reason: string) => void): AuditHandle {
    return auditInWorker(this.dbPath, job, onProgress, onNote);
  }

  /** The applied CONFIG entries, scanning only what was applied since the last call. */
  private configEntries(): readonly ConfigEntry[] {
    const applied = this.applied();
    if (applied > this.configsScannedTo) {
      // The log has no index on kind: this scans, but only the entries applied since the last call.
      for (const idx of this.store.configIndices(this.configsScannedTo + 1, applied)) {
        const entry = this.entry(idx);
        const cfg = decodeConfig(entry.payload);
        if (cfg === null) throw new LedgerError("verification_failed", `the CONFIG entry at ${idx} does not decode`);
        this.configs.push({ entry, keys: new Map([...cfg.voters, ...cfg.learners].map((m) => [m.id, m.public_key])) });
      }
      this.configsScannedTo = applied;
    }
    return this.configs;
  }

  /** The configuration in force at log index `index` (the last CONFIG entry before it). */
  private configBefore(configs: readonly ConfigEntry[], index: number): ConfigEntry | undefined {
    let lo = 0;
    let hi = configs.length - 1;
    let found: ConfigEntry | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (configs[mid].entry.index < index) {
        found = configs[mid];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  private inclusionPath(index: number, size: number): string[] {
    this.provable(index);
    return inclusionProof(this.readNode, index - 1, size).map(toHex);
  }

  /**
   * The link for configs[t]: its inclusion against the first checkpoint after it that a member of
   * configs[t-1] signed, under the key configs[t-1] gives it. Null while there is none yet.
   */
  private link(configs: readonly ConfigEntry[], t: number): SignerLink | null {
    const c = configs[t];
    const known = this.links.get(c.entry.index);
    if (known !== undefined) return known;
    const prev = configs[t - 1];
    const applied = this.applied();
    let size = c.entry.index;
    for (let scanned = 0; scanned < LINK_SCAN_MAX; scanned++) {
      const cp = this.store.checkpointCovering(size, this.clusterId);
      if (cp === undefined || cp.index > applied) return null;
      const key = this.configBefore(configs, cp.index)?.keys.get(cp.signer);
      if (key !== undefined && prev.keys.get(cp.signer) === key) {
        const { index: _i, ...body } = cp;
        const link: SignerLink = {
          config: receiptEntry(c.entry, this.prevHash(c.entry.index)),
          inclusion: { size: cp.size, path: this.inclusionPath(c.entry.index, cp.size) },
          checkpoint: { ...body, index: cp.index },
        };
        this.links.set(c.entry.index, link);
        return link;
      }
      size = cp.size + 1;
    }
    return null;
  }

  receipt(index: number): ReceiptAnswer {
    const entry = this.entry(index);
    const applied = this.applied();
    const cp = this.store.checkpointCovering(index, this.clusterId);
    if (cp === undefined || cp.index > applied) return { ready: false, reason: `no signed checkpoint covers index ${index} yet` };
    const configs = this.configEntries();
    if (configs.length === 0 || configs[0].entry.index !== 1) {
      throw notFound("this node does not hold the genesis CONFIG entry, which a receipt's signer chain starts from");
    }
    const signerKey = this.configBefore(configs, cp.index)?.keys.get(cp.signer);
    if (signerKey === undefined) throw new LedgerError("verification_failed", `checkpoint ${cp.index}'s signer ${cp.signer} is not in its configuration`);
    // The chain ends at the first configuration that gives the signer this key (none: it is in genesis).
    const last = configs.findIndex((c) => c.entry.index < cp.index && c.keys.get(cp.signer) === signerKey);
    const chain: SignerLink[] = [];
    for (let t = 1; t <= last; t++) {
      const l = this.link(configs, t);
      if (l === null) return { ready: false, reason: `no checkpoint yet links the CONFIG entry at ${configs[t].entry.index} to a signer of the configuration before it` };
      chain.push(l);
    }
    const { index: cpIndex, ...body } = cp;
    return {
      ready: true,
      receipt: {
        v: 1, type: RECEIPT_TYPE, cluster: this.clusterId,
        entry: receiptEntry(entry, this.prevHash(index)),
        inclusion: { size: cp.size, path: this.inclusionPath(index, cp.size) },
        checkpoint: { ...body, index: cpIndex },
        signer_key: signerKey,
        signer_chain: chain,
      },
    };
  }

  checkpointNote(): string {
    const cp = this.latestCheckpoint();
    if (cp === undefined) throw notFound("no checkpoint yet");
    if (this.noteKey === undefined) throw new LedgerError("unavailable", "this node's reader holds no key to sign notes with");
    if (this.note === null || this.note.index !== cp.index) {
      const origin = noteOrigin(this.clusterId);
      this.note = { index: cp.index, text: signNote(checkpointNoteBody(origin, cp.size, cp.root), origin, this.noteKey.secretKey, this.noteKey.publicKey) };
    }
    return this.note.text;
  }

  /** The whole chain verified in one go (tests and tools; the API's audit runs in a worker: audit()). */
  verify(to?: number, from: VerifyStart = "genesis"): VerifyReport {
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
