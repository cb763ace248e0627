/**
 * subjects_root on a node (src/ledger/subject-tree.ts): the tree of the applied state, kept as
 * entries apply; a copy frozen at the latest applied checkpoint, which history answers prove
 * against; and, on the leader, the root a new checkpoint signs.
 *
 * A checkpoint at log index N + 1 covers size N. Entries apply in order, so when any node applies it,
 * its state is the state after N: that is the moment to freeze the tree and to check the root the
 * leader signed (a mismatch is a verification failure, like a bad entry hash). The leader signs
 * before its tail is applied: it replays the durable entries after last_applied on a copy.
 */
import { Entry, EntryKind } from "../ledger/entry";
import { decodeCheckpoint } from "../ledger/checkpoint";
import { toHex } from "../ledger/bytes";
import { applyEntry, DedupRow, nextSubjectHead, StateStore, SUBJECT_HEAD_ZERO, SubjectRow } from "../ledger/state-machine";
import { SubjectProof, SubjectTree, trackSubjects } from "../ledger/subject-tree";
import type { Store, StoredCheckpoint } from "../storage/store";

/**
 * Record hashes re-chained at start-up to rebuild the tree of the latest checkpoint when records
 * applied after it (a subject's head before them is not stored, only its latest). Why 1,000,000:
 * about a second of SHA-256 once per start; past it, proofs wait for the next checkpoint.
 */
const RESTART_REHASH_MAX = 1_000_000;

/** The tree as of one applied checkpoint. */
export interface FrozenSubjects {
  /** The checkpoint's own log index. */
  readonly index: number;
  /** Its size: the tree is the state after this entry. */
  readonly size: number;
  readonly tree: SubjectTree;
}

export class SubjectCommitments {
  private live = new SubjectTree();
  private frozen: FrozenSubjects | null = null;

  constructor(private readonly store: Store) {}

  /**
   * A StateStore over `inner` whose subject writes also reach the live tree (what apply must use).
   * It follows the live tree through load(), which replaces it.
   */
  tracking(inner: StateStore): StateStore {
    return trackSubjects(inner, () => this.live);
  }

  /**
   * Rebuilds the live tree from the store's state and the tree of the latest checkpoint applied
   * (start-up, an installed snapshot). Returns why the checkpoint's subjects_root does not match,
   * or null.
   */
  load(lastApplied: number, latest: StoredCheckpoint | undefined): string | null {
    this.live = new SubjectTree();
    for (const r of this.store.subjectsInOrder()) this.live.set(r.subject, r.version, r.head);
    this.frozen = null;
    if (latest === undefined || latest.index > lastApplied) return null;
    const tree = this.treeAt(latest.size, lastApplied);
    if (tree === null) return null;
    return this.freeze(latest.index, latest.size, latest.subjects_root, tree);
  }

  /**
   * After entry e applied (all before it did): a checkpoint freezes the tree. Returns why its
   * subjects_root is not the root of the state after its size, or null.
   */
  applied(e: Entry): string | null {
    if (e.kind !== EntryKind.Checkpoint) return null;
    const cp = decodeCheckpoint(e.payload);
    if (cp === null) return null; // persist refused malformed checkpoints; nothing to freeze against
    return this.freeze(e.index, cp.size, cp.subjects_root, this.live);
  }

  /** The subjects_root after the entries of `tail` (the durable ones after last_applied, in order) apply on top. */
  rootAfter(tail: Iterable<Entry>): string {
    this.live.root(); // hashes what changed here once, so the copy does not redo it
    const tree = this.live.clone();
    const overlay = new Overlay(this.store);
    const state = trackSubjects(overlay, () => tree);
    for (const e of tail) applyEntry(state, e);
    return toHex(tree.root());
  }

  /** The frozen tree (null before the first checkpoint applied since start, or when it could not be rebuilt). */
  atCheckpoint(): FrozenSubjects | null {
    return this.frozen;
  }

  /** The subject's leaf and path in the frozen tree; undefined when it had no record by then. */
  proof(subject: string): { readonly frozen: FrozenSubjects; readonly proof: SubjectProof | undefined } | null {
    return this.frozen === null ? null : { frozen: this.frozen, proof: this.frozen.tree.proof(subject) };
  }

  private freeze(index: number, size: number, signed: string | undefined, tree: SubjectTree): string | null {
    const root = toHex(tree.root());
    this.frozen = { index, size, tree: tree === this.live ? tree.clone() : tree };
    if (signed !== undefined && signed !== root) return `checkpoint at ${index} signs subjects_root ${signed}, but the state after ${size} has ${root}`;
    return null;
  }

  /**
   * The tree of the state after entry `size` (< lastApplied): the live one with each subject that
   * got records after `size` set back to its head then, re-chained from its records. Null when that
   * history is not here (pruned, a snapshot) or is too long to re-chain now.
   */
  private treeAt(size: number, lastApplied: number): SubjectTree | null {
    const later = new Map<string, { version: number; index: number }>();
    for (const r of this.store.subjectRecordsBetween(size, lastApplied)) if (!later.has(r.subject)) later.set(r.subject, r);
    if (later.size === 0) return this.live;
    const tree = new SubjectTree();
    let hashed = 0;
    // The live tree's leaves, in first-record order: no second scan of the subjects table.
    for (const r of this.live.leavesInOrder()) {
      const first = later.get(r.subject);
      // Its first record came after `size`: so did every later leaf's (leaf order is first-record order).
      if (first?.version === 1) break;
      if (first === undefined) {
        tree.set(r.subject, r.version, r.head);
        continue;
      }
      let head: Uint8Array = SUBJECT_HEAD_ZERO;
      let version = 0;
      for (const h of this.store.subjectHashesBefore(r.subject, first.index)) {
        if (++hashed > RESTART_REHASH_MAX) return null;
        head = nextSubjectHead(head, h);
        version++;
      }
      if (version !== first.version - 1) return null; // its early records are not in this log
      tree.set(r.subject, version, head);
    }
    return tree;
  }
}

/** The store's state seen through the changes of a speculative replay, which never reach the store. */
class Overlay implements StateStore {
  private readonly subjects = new Map<string, SubjectRow>();
  private readonly dedup = new Map<string, DedupRow>();
  constructor(private readonly store: Store) {}
  getSubject(subject: string): SubjectRow | undefined {
    return this.subjects.get(subject) ?? this.store.getSubject(subject);
  }
  putSubject(row: SubjectRow): void {
    this.subjects.set(row.subject, row);
  }
  addSubjectRecord(): void {
    // Record indices are not part of subjects_root.
  }
  getDedup(key: string): DedupRow | undefined {
    return this.dedup.get(key) ?? this.store.getDedup(key);
  }
  putDedup(row: DedupRow): void {
    this.dedup.set(row.key, row);
  }
}
