/**
 * RFC 9162 section 2.1 Merkle tree: hashing, the compact range kept on append, and proofs built
 * from stored perfect-subtree hashes in O(log N) reads. Leaf i (0-based) is entry i+1.
 */
import { sha256 } from "./hash";
import { assert } from "../util/assert";

const LEAF_PREFIX = new Uint8Array([0]);
const NODE_PREFIX = new Uint8Array([1]);
const EMPTY_ROOT = sha256();

export const leafHash = (data: Uint8Array): Uint8Array => sha256(LEAF_PREFIX, data);
export const nodeHash = (left: Uint8Array, right: Uint8Array): Uint8Array => sha256(NODE_PREFIX, left, right);
export const emptyRoot = (): Uint8Array => EMPTY_ROOT.slice();

/** A perfect subtree: leaves [index * 2^level, (index + 1) * 2^level). */
export interface MerkleNode {
  readonly level: number;
  readonly index: number;
  readonly hash: Uint8Array;
}

/** Reads stored perfect-subtree hashes; every one that lies wholly inside the tree must exist. */
export type NodeReader = (level: number, index: number) => Uint8Array;

/** Largest power of two strictly less than n (n >= 2). */
export function splitPoint(n: number): number {
  assert(n >= 2, `splitPoint needs n >= 2, got ${n}`);
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

const log2 = (powerOfTwo: number): number => Math.round(Math.log2(powerOfTwo));

/**
 * Perfect aligned subtrees covering [begin, end), largest first. begin must be aligned to a power
 * of two >= end - begin, which holds for every range the RFC recursion produces.
 */
export function decompose(begin: number, end: number): Array<{ level: number; index: number }> {
  const out: Array<{ level: number; index: number }> = [];
  let pos = begin;
  while (pos < end) {
    let size = 1;
    while (pos % (size * 2) === 0 && pos + size * 2 <= end) size *= 2;
    out.push({ level: log2(size), index: pos / size });
    pos += size;
  }
  return out;
}

/**
 * MTH(D[begin:end]) from stored nodes: O(log N) reads. The subtrees of decompose(begin, end), folded
 * from the right: a subtree's hash joins the hash of everything after it. Recursive rather than
 * through decompose's list, which allocated an object per subtree on every call (a proof makes
 * dozens of calls); the depth is at most 2 log2(end - begin) + 1.
 */
export function rangeHash(read: NodeReader, begin: number, end: number): Uint8Array {
  assert(end > begin, `empty range [${begin}, ${end})`);
  let size = 1;
  while (begin % (size * 2) === 0 && begin + size * 2 <= end) size *= 2;
  const first = read(log2(size), begin / size);
  return begin + size === end ? first : nodeHash(first, rangeHash(read, begin + size, end));
}

/** root(N) from stored nodes; the empty tree's root is SHA-256 of nothing. */
export function rootAt(read: NodeReader, size: number): Uint8Array {
  return size === 0 ? emptyRoot() : rangeHash(read, 0, size);
}

/** RFC 9162 2.1.3.1 inclusion path of leaf m in a tree of size n, bottom-up. */
export function inclusionProof(read: NodeReader, leaf: number, size: number): Uint8Array[] {
  assert(Number.isSafeInteger(leaf) && leaf >= 0 && leaf < size, `leaf ${leaf} outside tree of size ${size}`);
  const path: Uint8Array[] = [];
  // Walk down from the root recording siblings, then reverse: the RFC lists them leaf-first.
  let begin = 0;
  let end = size;
  while (end - begin > 1) {
    const k = splitPoint(end - begin);
    if (leaf - begin < k) {
      path.push(rangeHash(read, begin + k, end));
      end = begin + k;
    } else {
      path.push(rangeHash(read, begin, begin + k));
      begin = begin + k;
    }
  }
  return path.reverse();
}

/** RFC 9162 2.1.4.1 consistency proof between sizes m and n (1 <= m <= n), bottom-up. */
export function consistencyProof(read: NodeReader, m: number, n: number): Uint8Array[] {
  assert(Number.isSafeInteger(m) && m >= 1 && m <= n, `bad consistency sizes ${m}, ${n}`);
  const path: Uint8Array[] = [];
  let begin = 0;
  let end = n;
  let sub = m;
  let complete = true; // the RFC's b: whether the subtree is the old tree itself (m = n: the empty proof)
  for (;;) {
    const size = end - begin;
    if (sub === size) {
      if (!complete) path.push(rangeHash(read, begin, end));
      break;
    }
    const k = splitPoint(size);
    if (sub <= k) {
      path.push(rangeHash(read, begin + k, end));
      end = begin + k;
    } else {
      path.push(rangeHash(read, begin, begin + k));
      begin += k;
      sub -= k;
      complete = false;
    }
  }
  return path.reverse();
}

/**
 * The compact range of the prefix [0, N): one perfect-subtree hash per set bit of N, largest first.
 * Appending a leaf returns the perfect subtrees it completes, which the caller stores.
 */
export class CompactRange {
  private readonly peaks: MerkleNode[];
  private count: number;

  constructor(size = 0, peaks: MerkleNode[] = []) {
    assert(peaks.length === popcount(size), `compact range of size ${size} needs ${popcount(size)} peaks`);
    this.count = size;
    this.peaks = peaks.slice();
  }

  /** Rebuilds the range of size N from stored nodes (O(log N) reads). */
  static fromStore(read: NodeReader, size: number): CompactRange {
    const peaks = decompose(0, size).map((p) => ({ ...p, hash: read(p.level, p.index) }));
    return new CompactRange(size, peaks);
  }

  get size(): number {
    return this.count;
  }

  /**
   * Adds leaf data (an entry hash); returns every node completed, the leaf itself first. `leaf` is
   * leafHash(leafData) when the caller has it already (verify-chain hashes leaves on other threads),
   * and `merged` the hashes of the first merges this append makes, 32 bytes each, lowest level
   * first, when the caller has those (verify-chain's workers hash the nodes inside a page of
   * entries); the rest are hashed here.
   */
  append(leafData: Uint8Array, leaf: Uint8Array = leafHash(leafData), merged?: Uint8Array): MerkleNode[] {
    const created: MerkleNode[] = [];
    let node: MerkleNode = { level: 0, index: this.count, hash: leaf };
    created.push(node);
    const known = merged === undefined ? 0 : merged.length / 32;
    while (this.peaks.length > 0 && this.peaks[this.peaks.length - 1].level === node.level) {
      const left = this.peaks.pop() as MerkleNode;
      const hash = node.level < known ? (merged as Uint8Array).subarray(32 * node.level, 32 * node.level + 32) : nodeHash(left.hash, node.hash);
      node = { level: node.level + 1, index: left.index / 2, hash };
      assert(Number.isInteger(node.index), "merged node index must be whole");
      created.push(node);
    }
    assert(node.level >= known, `${known} merged hashes given for an append that merges ${node.level} times`);
    this.peaks.push(node);
    this.count += 1;
    return created;
  }

  /** root(N): the peaks folded from the right. */
  root(): Uint8Array {
    if (this.peaks.length === 0) return emptyRoot();
    let acc = this.peaks[this.peaks.length - 1].hash;
    for (let i = this.peaks.length - 2; i >= 0; i--) acc = nodeHash(this.peaks[i].hash, acc);
    return acc;
  }

  clone(): CompactRange {
    return new CompactRange(this.count, this.peaks);
  }

  /** The peaks, for snapshots. */
  nodes(): readonly MerkleNode[] {
    return this.peaks;
  }
}

function popcount(n: number): number {
  let c = 0;
  for (let x = n; x > 0; x = Math.floor(x / 2)) c += x % 2;
  return c;
}
