/**
 * Committed Merkle subtree hashes kept in memory for the reader's proofs, in one slab of bytes.
 *
 * Every proof and root the reader makes is about committed entries, whose subtree hashes never
 * change, and the proofs of one page (100 records against one checkpoint) share most of their upper
 * nodes: without a cache a page cost thousands of SQLite point reads. The cache holds no JS object
 * per hash: a hash read from SQLite came as a Buffer with an ArrayBuffer of its own, and 65,536 of
 * them kept alive were 200k objects for every old-generation collection to mark, each promoted
 * through the young generation on the way. Here a hash is 32 bytes in the slab and a small integer
 * in a Map; a hit hands out a copy (a 32-byte typed array that dies young), so what a caller holds
 * never changes under it when its slot is reused.
 */
import { assert } from "../util/assert";

/** A stored subtree hash that is not this many bytes (a damaged row) is served as read, not cached. */
const HASH_BYTES = 32;
/** Tree levels: a tree of at most 2^63 leaves has levels 0..63. */
const LEVELS = 64;

/** Reads a stored subtree hash (Store.readNode): every one inside the tree exists. */
export type NodeSource = (level: number, index: number) => Uint8Array;

export class NodeCache {
  private readonly slab: Uint8Array;
  /** Per level, subtree index → slot (indices below 2^30 are small integers: no heap number per key). */
  private readonly slots: Array<Map<number, number>> = [];
  /** What each slot holds, for its eviction: level and index. */
  private readonly heldLevel: Uint8Array;
  private readonly heldIndex: Float64Array;
  /** The slot the next hash goes to: slots are filled, then reused, in order (FIFO). */
  private next = 0;
  private filled = 0;

  constructor(private readonly source: NodeSource, readonly capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity >= 1, `node cache capacity ${capacity}`);
    this.slab = new Uint8Array(capacity * HASH_BYTES);
    this.heldLevel = new Uint8Array(capacity);
    this.heldIndex = new Float64Array(capacity);
    for (let l = 0; l < LEVELS; l++) this.slots.push(new Map());
  }

  /** The hash of subtree (level, index): a copy of the cached one, else read and cached. */
  readonly read = (level: number, index: number): Uint8Array => {
    assert(Number.isInteger(level) && level >= 0 && level < LEVELS, `tree level ${level}`);
    const slot = this.slots[level].get(index);
    if (slot !== undefined) return this.slab.slice(slot * HASH_BYTES, (slot + 1) * HASH_BYTES);
    const hash = this.source(level, index);
    if (hash.length === HASH_BYTES) this.keep(level, index, hash);
    return hash;
  };

  /** Hashes held now (at most capacity). */
  get size(): number {
    return this.filled;
  }

  private keep(level: number, index: number, hash: Uint8Array): void {
    const slot = this.next;
    if (this.filled === this.capacity) this.slots[this.heldLevel[slot]].delete(this.heldIndex[slot]);
    else this.filled++;
    this.slab.set(hash, slot * HASH_BYTES);
    this.heldLevel[slot] = level;
    this.heldIndex[slot] = index;
    this.slots[level].set(index, slot);
    this.next = slot + 1 === this.capacity ? 0 : slot + 1;
  }
}
