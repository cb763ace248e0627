/**
 * Snapshots and retention (DESIGN.md "Retention: history is never lost by default"). A snapshot
 * compresses recovery (fast restart, InstallSnapshot for a lagging follower), never history: making
 * one deletes no entry. History goes only through a prune, an explicit operator act recorded in the
 * log as a RECORD of the reserved type resonetics.prune; applying it is deterministic on every node:
 *
 *   1. in the apply transaction, history_from := max(history_from, data.below): from then on every
 *      node answers 410 Gone below it, whatever it still holds on disk;
 *   2. after the apply, a node that holds no snapshot at history_from - 1 or later (a verification
 *      start for what is left) makes one at its applied index;
 *   3. it deletes its log up to its newest snapshot at or before history_from - 1: that snapshot
 *      becomes the log's anchor (the Raft core needs the snapshot at its anchor: the configuration
 *      in force there, and what it sends a follower that needs entries before it).
 *
 * Snapshot indices differ between nodes (each makes its own every --snapshot-every applied
 * entries), so step 3 may keep a few entries below history_from on one node and not on another;
 * what each node serves and verifies from is the same. Pick below = anchor + 1 to keep nothing.
 */
import { Entry, EntryKind } from "../ledger/entry";
import { Store, StoredSnapshot } from "../storage/store";
import { CompactRange } from "../ledger/merkle";
import { encodeSnapshot, makeSnapshot, SnapshotDoc } from "../ledger/snapshot";
import { decodeRecord, RecordRequest } from "../ledger/record";
import { assert } from "../util/assert";

/** The reserved record type of a prune, and its subject (DESIGN.md: pruning is recorded in the log). */
export const PRUNE_RECORD_TYPE = "resonetics.prune";
export const PRUNE_SUBJECT = "ledger";
/** Snapshots a node keeps by default (--snapshots-keep): each one is a verification start. */
export const SNAPSHOTS_KEEP_DEFAULT = 3;

export interface PruneData {
  /** History starts here after the prune: indices below it answer 410. */
  readonly below: number;
  /** The leader's snapshot anchor (>= below - 1) that a verification of what is left starts from. */
  readonly snapshot: number;
}

export interface SnapshotSigner {
  readonly cluster: string;
  readonly nodeId: string;
  readonly secretKey: Uint8Array;
  readonly now: () => Date;
}

/** Snapshots the state at last_applied and stores it (the log is untouched). */
export function createSnapshot(store: Store, signer: SnapshotSigner): { row: StoredSnapshot; doc: SnapshotDoc } {
  const made = buildSnapshot(store, signer);
  store.transaction(() => store.saveSnapshot(made.row));
  return made;
}

/**
 * The signed snapshot of the state at last_applied, as the store shows it (the caller holds one
 * read transaction when the store is being written meanwhile: src/node/snapshot-worker.ts).
 */
export function buildSnapshot(store: Store, signer: SnapshotSigner): { row: StoredSnapshot; doc: SnapshotDoc } {
  const index = store.hardState().lastApplied;
  const e = store.entry(index);
  const prior = store.snapshotAt(index);
  assert(e !== undefined || prior !== undefined, `no entry at last_applied ${index} to snapshot`);
  const term = e?.term ?? (prior as StoredSnapshot).term;
  const hash = e?.hash ?? (prior as StoredSnapshot).hash;
  const config = store.configAt(index);
  assert(config !== undefined, `no configuration in force at ${index}`);
  const doc = makeSnapshot({
    cluster: signer.cluster, index, term, hash, range: CompactRange.fromStore(store.readNode, index), config,
    subjects: store.allSubjects(), subjectRecords: store.allSubjectRecords(), dedup: store.allDedup(),
    signer: signer.nodeId, ts: signer.now().toISOString(),
  }, signer.secretKey);
  const row: StoredSnapshot = {
    index, term, hash, root: doc.root, compactRange: JSON.stringify(doc.compact_range), config, stateRoot: doc.state_root,
    data: encodeSnapshot(doc), signer: doc.signer, sig: doc.sig, createdAt: doc.ts,
  };
  return { row, doc };
}

const isIndex = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 1;

/**
 * The prune an entry records, or null when it is not one. A resonetics.prune record whose data is
 * not {below, snapshot} with 1 <= below <= its own index prunes nothing, on every node alike (the
 * API never proposes one; only a foreign writer could).
 */
export function pruneOf(e: Entry): PruneData | null {
  if (e.kind !== EntryKind.Record) return null;
  const rec = decodeRecord(e.payload);
  if (rec === null || rec.type !== PRUNE_RECORD_TYPE || rec.subject !== PRUNE_SUBJECT) return null;
  const d = rec.data as { below?: unknown; snapshot?: unknown } | null;
  if (typeof d !== "object" || d === null || !isIndex(d.below) || !isIndex(d.snapshot) || d.below > e.index) return null;
  return { below: d.below, snapshot: d.snapshot };
}

/** The snapshot a prune request names as the start of what it leaves; null when the record is no prune. */
export function pruneAnchorOf(record: RecordRequest): number | null {
  if (record.type !== PRUNE_RECORD_TYPE || record.subject !== PRUNE_SUBJECT) return null;
  const d = record.data as { snapshot?: unknown } | null;
  return typeof d === "object" && d !== null && isIndex(d.snapshot) ? d.snapshot : null;
}

/** Step 1, inside the apply transaction: a prune entry moves history_from. True when e was a prune. */
export function markPruned(store: Store, e: Entry): boolean {
  const p = pruneOf(e);
  if (p === null) return false;
  if (p.below > store.historyFrom()) store.setHistoryFrom(p.below);
  return true;
}

/** True when the node holds a snapshot that can start a verification of its retained history. */
export function hasRetainedStart(store: Store): boolean {
  const latest = store.latestSnapshot();
  return latest !== undefined && latest.index + 1 >= store.historyFrom();
}

/**
 * Step 3: deletes the log up to the newest snapshot at or before history_from - 1, and the snapshots
 * before it. Idempotent (a restart after a crash between the apply and this redoes it). Returns the
 * new anchor index, or null when nothing was deleted.
 */
export function cutPrunedHistory(store: Store): number | null {
  const historyFrom = store.historyFrom();
  if (historyFrom <= 1) return null;
  const cut = store.snapshotAtOrBefore(historyFrom - 1);
  const anchor = store.anchor()?.index ?? 0;
  if (cut === undefined || cut.index <= anchor) return null;
  assert(cut.index <= store.hardState().lastApplied, `prune cut ${cut.index} beyond last_applied`);
  store.transaction(() => {
    store.compactTo({ index: cut.index, term: cut.term, hash: cut.hash });
    store.dropSnapshotsBelow(cut.index);
  });
  return cut.index;
}
