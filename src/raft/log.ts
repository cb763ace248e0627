/**
 * The core's view of the log: what Storage holds durably plus the unstable tail (entries and a
 * received snapshot) that the next Ready hands to the caller to persist.
 */
import type { Entry } from "../ledger/entry";
import { assert } from "../util/assert";
import { entrySizeBytes, type Storage } from "./storage";
import type { Anchor, Snapshot } from "./types";

export class RaftLog {
  /** Entries not yet persisted; unstable[i].index === offset + i. They shadow storage from offset on. */
  private unstable: Entry[] = [];
  private offset: number;
  private unstableSnapshot: Snapshot | null = null;
  committed: number;
  applied: number;

  constructor(
    readonly storage: Storage,
    applied: number,
  ) {
    this.offset = storage.lastIndex() + 1;
    this.committed = storage.hardState().commit;
    const anchor = storage.anchor();
    this.committed = Math.max(this.committed, anchor.index);
    this.applied = Math.max(applied, anchor.index);
    assert(this.committed <= this.lastIndex(), () => `log: commit ${this.committed} beyond last ${this.lastIndex()}`);
    assert(this.applied <= this.committed, () => `log: applied ${this.applied} beyond commit ${this.committed}`);
  }

  anchor(): Anchor {
    const s = this.unstableSnapshot;
    return s !== null ? s.meta : this.storage.anchor();
  }
  firstIndex(): number {
    return this.anchor().index + 1;
  }
  lastIndex(): number {
    if (this.unstable.length > 0) return this.offset + this.unstable.length - 1;
    if (this.unstableSnapshot !== null) return this.unstableSnapshot.meta.index;
    return this.storage.lastIndex();
  }
  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== null, "log: last term unknown");
    return t;
  }

  /** Entry at i or null when compacted or beyond the end. */
  entry(i: number): Entry | null {
    if (i > this.lastIndex() || i <= this.anchor().index) return null;
    if (i >= this.offset) return this.unstable[i - this.offset];
    return this.storage.entry(i);
  }
  /** Term at i (the anchor's term at the anchor), or null when unknown. */
  term(i: number): number | null {
    const a = this.anchor();
    if (i === a.index) return a.term;
    const e = this.entry(i);
    return e === null ? null : e.term;
  }
  /** Hash at i (the anchor's hash at the anchor), or null when unknown. */
  hash(i: number): Uint8Array | null {
    const a = this.anchor();
    if (i === a.index) return a.hash;
    const e = this.entry(i);
    return e === null ? null : e.hash;
  }
  matchTerm(i: number, term: number): boolean {
    return this.term(i) === term;
  }

  /** Entries [lo, hi) up to maxBytes (always at least one when lo < hi). */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(lo > this.anchor().index && hi <= this.lastIndex() + 1, () => `log: slice [${lo},${hi}) out of range`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.entry(i) as Entry;
      bytes += entrySizeBytes(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** The up-to-date check of Raft 5.4.1. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /** First index in entries whose term differs from ours (or that we lack), 0 if none. */
  findConflict(entries: readonly Entry[]): number {
    for (const e of entries) if (!this.matchTerm(e.index, e.term)) return e.index;
    return 0;
  }

  /**
   * Fast-backtracking hint: the largest index <= index whose term is <= term, so the leader can skip
   * every entry of a conflicting term in one round trip.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    const floor = this.anchor().index;
    for (; i > floor; i--) {
      const t = this.term(i) as number;
      if (t <= term) return { index: i, term: t };
    }
    return { index: floor, term: this.anchor().term };
  }

  /** Appends (truncating any conflicting suffix); the caller has checked it is above commit. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0].index;
    assert(first > this.committed, () => `log: refusing to truncate at ${first}, below or at commit ${this.committed}`);
    assert(first > this.anchor().index, () => `log: append at ${first} at or below anchor`);
    assert(first <= this.lastIndex() + 1, () => `log: gap appending ${first} after ${this.lastIndex()}`);
    if (first >= this.offset) {
      this.unstable.length = first - this.offset;
    } else {
      this.unstable = [];
      this.offset = first;
    }
    for (const e of entries) this.unstable.push(e);
  }

  /** Drops the log and restarts it after the snapshot's anchor (InstallSnapshot). */
  restore(snap: Snapshot): void {
    assert(snap.meta.index > this.committed, "log: restoring a snapshot at or below commit");
    this.unstableSnapshot = snap;
    this.unstable = [];
    this.offset = snap.meta.index + 1;
    this.committed = snap.meta.index;
  }

  commitTo(i: number): void {
    if (i <= this.committed) return;
    assert(i <= this.lastIndex(), () => `log: commit ${i} beyond last index ${this.lastIndex()}`);
    this.committed = i;
  }

  unstableEntries(): readonly Entry[] {
    return this.unstable;
  }
  pendingSnapshot(): Snapshot | null {
    return this.unstableSnapshot;
  }

  /** Committed entries not yet applied (above any pending snapshot), up to maxBytes. */
  nextCommitted(maxBytes: number): Entry[] {
    const lo = Math.max(this.applied, this.anchor().index) + 1;
    if (lo > this.committed) return [];
    return this.slice(lo, this.committed + 1, maxBytes);
  }
  hasNextCommitted(): boolean {
    return Math.max(this.applied, this.anchor().index) < this.committed;
  }

  /** The caller persisted entries up to index (of the given term). */
  stableTo(index: number, term: number): void {
    if (index < this.offset || this.unstable.length === 0) return;
    const k = index - this.offset;
    if (k >= this.unstable.length || this.unstable[k].term !== term) return;
    this.unstable = this.unstable.slice(k + 1);
    this.offset = index + 1;
  }
  stableSnapTo(index: number): void {
    if (this.unstableSnapshot !== null && this.unstableSnapshot.meta.index === index) this.unstableSnapshot = null;
  }
  appliedTo(i: number): void {
    assert(i <= this.committed, () => `log: applied ${i} beyond commit ${this.committed}`);
    if (i > this.applied) this.applied = i;
  }
  /** Last index that is durable in storage (what this node may count as its own match). */
  stableLastIndex(): number {
    if (this.unstableSnapshot !== null) return this.unstableSnapshot.meta.index - 1;
    return Math.min(this.storage.lastIndex(), this.offset - 1);
  }
}
