/**
 * The durable log as the core sees it (read-only), and an in-memory implementation for tests and
 * the simulator. The node runtime implements Storage over SQLite; it is written to only by the
 * caller, from a Ready, before advance().
 */
import { chainEntry, EntryKind, genesisHash, type Entry } from "../ledger/entry";
import { assert } from "../util/assert";
import { encodeConfig, type ClusterConfig } from "./config";
import type { Anchor, HardState, Snapshot } from "./types";
import { EMPTY_HARD_STATE } from "./types";

/** What the caller must provide: its durable state, read synchronously by the core. */
export interface Storage {
  /** The hard state last made durable. */
  hardState(): HardState;
  /** The anchor the stored log follows: {0, 0, genesis hash} before any compaction. */
  anchor(): Anchor;
  /** Index of the last stored entry (anchor.index when the log is empty). */
  lastIndex(): number;
  /** Entry at i, for anchor.index < i <= lastIndex(). */
  entry(i: number): Entry;
  /** The latest snapshot (its meta equals the anchor after compaction), or null if none yet. */
  snapshot(): Snapshot | null;
  /** Indices of the CONFIG entries stored in [from, to], ascending: what the core reads at start. */
  configIndices(from: number, to: number): number[];
}

/** Rough wire size of an entry, used for batch limits (payload + fixed header and hash). */
export const entrySizeBytes = (e: Entry): number => e.payload.length + 56;

/** The first entry of every cluster: a CONFIG entry at index 1, term 1, chained to genesis. */
export function bootstrapEntry(clusterId: string, config: ClusterConfig): Entry {
  return chainEntry(1, 1, EntryKind.Config, genesisHash(clusterId), encodeConfig(config));
}

/** Storage held in memory: the simulator's "disk" and the trace tests' storage. */
export class MemoryStorage implements Storage {
  private hs: HardState = EMPTY_HARD_STATE;
  private anc: Anchor;
  private snap: Snapshot | null = null;
  private ents: Entry[] = [];

  constructor(genesis: Uint8Array) {
    this.anc = { index: 0, term: 0, hash: genesis };
  }

  /** A storage holding the bootstrap CONFIG entry, committed, as `cluster init` writes it. */
  static bootstrap(clusterId: string, config: ClusterConfig): MemoryStorage {
    const s = new MemoryStorage(genesisHash(clusterId));
    s.append([bootstrapEntry(clusterId, config)]);
    s.setHardState({ term: 1, vote: null, commit: 1 });
    return s;
  }

  hardState(): HardState {
    return this.hs;
  }
  anchor(): Anchor {
    return this.anc;
  }
  lastIndex(): number {
    return this.anc.index + this.ents.length;
  }
  entry(i: number): Entry {
    assert(i > this.anc.index && i <= this.lastIndex(), () => `storage: entry ${i} out of range`);
    return this.ents[i - this.anc.index - 1];
  }
  snapshot(): Snapshot | null {
    return this.snap;
  }

  configIndices(from: number, to: number): number[] {
    return this.ents.filter((e) => e.index >= from && e.index <= to && e.kind === EntryKind.Config).map((e) => e.index);
  }

  setHardState(hs: HardState): void {
    this.hs = hs;
  }

  /** Appends entries, first dropping any stored suffix from entries[0].index on. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0].index;
    assert(first > this.anc.index, () => `storage: append at ${first} below anchor ${this.anc.index}`);
    assert(first <= this.lastIndex() + 1, () => `storage: gap appending ${first} after ${this.lastIndex()}`);
    this.ents.length = first - this.anc.index - 1;
    for (const e of entries) this.ents.push(e);
  }

  /** Replaces everything with a received snapshot: the log restarts after its anchor. */
  applySnapshot(snap: Snapshot): void {
    this.snap = snap;
    this.anc = { index: snap.meta.index, term: snap.meta.term, hash: snap.meta.hash };
    this.ents = [];
  }

  /** Records a snapshot made locally at snap.meta.index and drops the entries it covers. */
  createSnapshot(snap: Snapshot): void {
    const i = snap.meta.index;
    assert(i > this.anc.index && i <= this.lastIndex(), () => `storage: snapshot at ${i} out of range`);
    this.snap = snap;
    this.ents = this.ents.slice(i - this.anc.index);
    this.anc = { index: snap.meta.index, term: snap.meta.term, hash: snap.meta.hash };
  }

  /** A copy sharing the immutable entries (the simulator snapshots "disk" state this way). */
  clone(): MemoryStorage {
    const c = new MemoryStorage(this.anc.hash);
    c.hs = this.hs;
    c.anc = this.anc;
    c.snap = this.snap;
    c.ents = this.ents.slice();
    return c;
  }
}
