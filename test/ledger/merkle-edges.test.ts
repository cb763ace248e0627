// The edges of src/ledger/merkle.ts and merkle-verify.ts that the vector and all-sizes tests do not
// reach: argument checks, shapes of bad proofs, the compact range's bookkeeping. Expected values
// come from test/support/independent.ts (RFC 9162 written from the RFC text).
import { CompactRange, MerkleNode, consistencyProof, decompose, emptyRoot, inclusionProof, leafHash, nodeHash, rangeHash, rootAt, splitPoint } from "../../src/ledger/merkle";
import { rootFromInclusionProof, verifyConsistency, verifyInclusion } from "../../src/ledger/merkle-verify";
import { toHex } from "../../src/ledger/bytes";
import * as ind from "../support/independent";

const data = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => ind.sha256(Buffer.from(`leaf ${i}`)));

/** A node store with every perfect subtree of the tree, built independently. */
function store(n: number): { read: (level: number, index: number) => Uint8Array; leaves: Buffer[]; reads: string[] } {
  const leaves = data(n).map(ind.leafHash);
  const reads: string[] = [];
  const read = (level: number, index: number): Uint8Array => {
    const w = 2 ** level;
    if (!Number.isInteger(index) || index < 0 || (index + 1) * w > n) throw new Error(`no node ${level}/${index} in a tree of ${n}`);
    reads.push(`${level}/${index}`);
    return ind.merkleRoot(leaves.slice(index * w, (index + 1) * w));
  };
  return { read, leaves, reads };
}

describe("merkle hashing primitives", () => {
  test("leaf and node hashes are RFC 9162's, and the empty root is SHA-256 of nothing (a fresh copy each time)", () => {
    const a = ind.sha256(Buffer.from("a"));
    const b = ind.sha256(Buffer.from("b"));
    expect(toHex(leafHash(a))).toBe(ind.leafHash(a).toString("hex"));
    expect(toHex(nodeHash(a, b))).toBe(ind.nodeHash(a, b).toString("hex"));
    const e = emptyRoot();
    expect(toHex(e)).toBe(ind.sha256().toString("hex"));
    e[0] ^= 1;
    expect(toHex(emptyRoot())).toBe(ind.sha256().toString("hex"));
  });

  test("splitPoint is the largest power of two strictly below n", () => {
    expect([2, 3, 4, 5, 8, 9, 16, 17, 1000].map(splitPoint)).toEqual([1, 2, 2, 4, 4, 8, 8, 16, 512]);
    expect(() => splitPoint(1)).toThrow("splitPoint needs n >= 2, got 1");
  });

  test("decompose covers a range with aligned perfect subtrees, largest first", () => {
    expect(decompose(0, 0)).toEqual([]);
    expect(decompose(0, 1)).toEqual([{ level: 0, index: 0 }]);
    expect(decompose(0, 7)).toEqual([{ level: 2, index: 0 }, { level: 1, index: 2 }, { level: 0, index: 6 }]);
    expect(decompose(0, 8)).toEqual([{ level: 3, index: 0 }]);
    expect(decompose(8, 13)).toEqual([{ level: 2, index: 2 }, { level: 0, index: 12 }]);
    expect(decompose(4, 6)).toEqual([{ level: 1, index: 2 }]);
  });

  test("rangeHash and rootAt equal the independent MTH, with O(log N) reads", () => {
    const s = store(13);
    for (const [b, e] of [[0, 13], [0, 1], [8, 13], [12, 13], [0, 8], [4, 6]]) {
      expect(toHex(rangeHash(s.read, b, e))).toBe(ind.merkleRoot(s.leaves.slice(b, e)).toString("hex"));
    }
    s.reads.length = 0;
    expect(toHex(rootAt(s.read, 13))).toBe(ind.merkleRoot(s.leaves).toString("hex"));
    expect([...s.reads].sort()).toEqual(["0/12", "2/2", "3/0"]);
    // A range that is one perfect subtree is one read, however it could also be folded from halves.
    for (const [b, e, reads] of [[0, 8, ["3/0"]], [4, 6, ["1/2"]], [8, 12, ["2/2"]], [8, 13, ["2/2", "0/12"]]] as const) {
      s.reads.length = 0;
      rangeHash(s.read, b, e);
      expect({ range: [b, e], reads: s.reads }).toEqual({ range: [b, e], reads });
    }
    expect(toHex(rootAt(s.read, 0))).toBe(ind.sha256().toString("hex"));
    expect(() => rangeHash(s.read, 3, 3)).toThrow("empty range [3, 3)");
  });
});

describe("proof construction arguments", () => {
  const s = store(6);
  test("inclusionProof needs 0 <= leaf < size and a whole leaf index", () => {
    expect(inclusionProof(s.read, 0, 1)).toEqual([]);
    expect(inclusionProof(s.read, 5, 6).length).toBe(2);
    for (const [leaf, size] of [[-1, 6], [6, 6], [1.5, 6], [0, 0]]) {
      expect(() => inclusionProof(s.read, leaf, size)).toThrow(`leaf ${leaf} outside tree of size ${size}`);
    }
  });

  test("an inclusion proof verifies independently for each leaf of a small tree", () => {
    const root = ind.merkleRoot(s.leaves);
    for (let leaf = 0; leaf < 6; leaf++) {
      const proof = inclusionProof(s.read, leaf, 6);
      expect(ind.verifyInclusion(leaf, 6, s.leaves[leaf], proof, root)).toBe(true);
    }
  });

  test("consistencyProof needs 1 <= m <= n; m = n is the empty proof", () => {
    expect(consistencyProof(s.read, 6, 6)).toEqual([]);
    for (const [m, n] of [[0, 6], [7, 6], [1.5, 6]]) {
      expect(() => consistencyProof(s.read, m, n)).toThrow(`bad consistency sizes ${m}, ${n}`);
    }
    for (let m = 1; m < 6; m++) {
      const proof = consistencyProof(s.read, m, 6);
      expect(ind.verifyConsistency(m, 6, proof, ind.merkleRoot(s.leaves, m), ind.merkleRoot(s.leaves))).toBe(true);
    }
  });
});

describe("proof verification refuses malformed proofs", () => {
  const n = 7;
  const s = store(n);
  const leavesData = data(n);
  const root = ind.merkleRoot(s.leaves);

  test("rootFromInclusionProof: null for an index outside the tree, a path too long or too short", () => {
    const proof = inclusionProof(s.read, 2, n);
    expect(toHex(rootFromInclusionProof(2, n, s.leaves[2], proof) as Uint8Array)).toBe(root.toString("hex"));
    expect(rootFromInclusionProof(-1, n, s.leaves[2], proof)).toBeNull();
    expect(rootFromInclusionProof(n, n, s.leaves[2], proof)).toBeNull();
    expect(rootFromInclusionProof(2, n, s.leaves[2], [...proof, proof[0]])).toBeNull();
    expect(rootFromInclusionProof(2, n, s.leaves[2], proof.slice(0, -1))).toBeNull();
    expect(rootFromInclusionProof(0, 1, s.leaves[0], [])).toEqual(s.leaves[0]);
  });

  test("verifyInclusion: the right leaf data at the right index, nothing else", () => {
    for (let leaf = 0; leaf < n; leaf++) {
      const proof = inclusionProof(s.read, leaf, n);
      expect(verifyInclusion(leaf, n, leavesData[leaf], proof, root)).toBe(true);
      expect(verifyInclusion(leaf, n, leavesData[(leaf + 1) % n], proof, root)).toBe(false);
      if (leaf + 1 < n) expect(verifyInclusion(leaf + 1, n, leavesData[leaf], proof, root)).toBe(false);
      expect(verifyInclusion(leaf, n, leavesData[leaf], proof, ind.sha256())).toBe(false);
    }
    // the last leaf (index 6 = sn) exercises the fn === sn branch; a wrong size must fail
    expect(verifyInclusion(6, 8, leavesData[6], inclusionProof(s.read, 6, n), root)).toBe(false);
  });

  test("verifyConsistency: bad sizes, an equal-size proof, a power-of-two first size", () => {
    const r = (m: number) => ind.merkleRoot(s.leaves, m);
    expect(verifyConsistency(0, n, [], r(1), root)).toBe(false);
    expect(verifyConsistency(8, n, [], r(1), root)).toBe(false);
    expect(verifyConsistency(n, n, [], root, root)).toBe(true);
    expect(verifyConsistency(n, n, [root], root, root)).toBe(false);
    expect(verifyConsistency(n, n, [], r(3), root)).toBe(false);
    for (let m = 1; m < n; m++) {
      const proof = consistencyProof(s.read, m, n);
      expect(verifyConsistency(m, n, proof, r(m), root)).toBe(true);
      expect(verifyConsistency(m, n, proof, r(m), r(m))).toBe(false);
      expect(verifyConsistency(m, n, proof, root, root)).toBe(false);
      expect(verifyConsistency(m, n, [...proof, proof[0]], r(m), root)).toBe(false);
      expect(verifyConsistency(m, n, proof.slice(0, -1), r(m), root)).toBe(false);
    }
    // first not a power of two and an empty proof: nothing to start from
    expect(verifyConsistency(3, n, [], r(3), root)).toBe(false);
  });
});

describe("CompactRange bookkeeping", () => {
  test("append returns the leaf then every node it completes, with their positions", () => {
    const r = new CompactRange();
    const leaves = data(4);
    const made: MerkleNode[][] = leaves.map((d) => r.append(d));
    expect(made.map((nodes) => nodes.map((x) => `${x.level}/${x.index}`))).toEqual([["0/0"], ["0/1", "1/0"], ["0/2"], ["0/3", "1/1", "2/0"]]);
    const lh = leaves.map(ind.leafHash);
    expect(toHex(made[3][2].hash)).toBe(ind.merkleRoot(lh).toString("hex"));
    expect(toHex(made[3][1].hash)).toBe(ind.merkleRoot(lh.slice(2, 4)).toString("hex"));
    expect(r.size).toBe(4);
    expect(r.nodes().map((x) => `${x.level}/${x.index}`)).toEqual(["2/0"]);
  });

  test("the root at every size up to 20 equals the independent root; peaks are one per set bit", () => {
    const r = new CompactRange();
    const leaves = data(20);
    expect(toHex(r.root())).toBe(ind.sha256().toString("hex"));
    leaves.forEach((d, i) => {
      r.append(d);
      expect(toHex(r.root())).toBe(ind.merkleRoot(leaves.slice(0, i + 1).map(ind.leafHash)).toString("hex"));
      expect(r.nodes().length).toBe((i + 1).toString(2).split("1").length - 1);
    });
  });

  test("fromStore rebuilds the range; clone is independent of the original", () => {
    const s = store(11);
    const r = CompactRange.fromStore(s.read, 11);
    expect(r.size).toBe(11);
    expect(toHex(r.root())).toBe(ind.merkleRoot(s.leaves).toString("hex"));
    expect(CompactRange.fromStore(s.read, 0).root()).toEqual(emptyRoot());
    const c = r.clone();
    c.append(data(12)[11]);
    expect(c.size).toBe(12);
    expect(r.size).toBe(11);
    expect(toHex(r.root())).toBe(ind.merkleRoot(s.leaves).toString("hex"));
    expect(toHex(c.root())).toBe(ind.merkleRoot(data(12).map(ind.leafHash)).toString("hex"));
  });

  test("a range whose peak count does not match its size is refused", () => {
    const peak = { level: 0, index: 0, hash: new Uint8Array(32) };
    expect(() => new CompactRange(3, [peak])).toThrow("compact range of size 3 needs 2 peaks");
    expect(() => new CompactRange(0, [peak])).toThrow("compact range of size 0 needs 0 peaks");
    expect(new CompactRange(1, [peak]).size).toBe(1);
    expect(() => new CompactRange(4, [peak, peak])).toThrow("needs 1 peaks");
  });

  test("the constructor copies its peaks", () => {
    const peaks = [{ level: 0, index: 0, hash: ind.leafHash(data(1)[0]) }];
    const r = new CompactRange(1, peaks);
    peaks.pop();
    expect(r.nodes().length).toBe(1);
  });
});

describe("a proof proves one claim only: other sizes, empty or inverted ranges fail, in src and independently", () => {
  const n = 8;
  const s = store(n);
  const r = (m: number) => ind.merkleRoot(s.leaves, m);

  // The root binds the size (a proof for leaf 0 of 3 has the shape of one for leaf 0 of 4 and gives
  // root(3) either way): against the other size's root, the proof of one size never verifies.
  test("an inclusion proof for (leaf, size) does not verify against root(other) for any other size", () => {
    const wrong: string[] = [];
    for (let size = 1; size <= n; size++) {
      for (let leaf = 0; leaf < size; leaf++) {
        const proof = inclusionProof(s.read, leaf, size);
        for (let other = leaf + 1; other <= n; other++) {
          if (other === size) continue;
          if (verifyInclusion(leaf, other, data(n)[leaf], proof, r(other))) wrong.push(`src: leaf ${leaf} of ${size} as size ${other}`);
          if (ind.verifyInclusion(leaf, other, s.leaves[leaf], proof, r(other))) wrong.push(`independent: leaf ${leaf} of ${size} as size ${other}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  test("the path of a smaller tree claimed for a larger size with the smaller root (leaf 2 of 4 as size 8) fails", () => {
    const proof = inclusionProof(s.read, 2, 4);
    expect(verifyInclusion(2, 4, data(n)[2], proof, r(4))).toBe(true);
    expect(verifyInclusion(2, 8, data(n)[2], proof, r(4))).toBe(false);
    expect(rootFromInclusionProof(2, 8, s.leaves[2], proof)).toBeNull();
    expect(ind.verifyInclusion(2, 8, s.leaves[2], proof, r(4))).toBe(false);
  });

  test("a consistency proof for (m, n) does not verify against root(other) for any other second size", () => {
    const wrong: string[] = [];
    for (let second = 1; second <= n; second++) {
      for (let first = 1; first < second; first++) {
        const proof = consistencyProof(s.read, first, second);
        for (let other = first; other <= n; other++) {
          if (other === second) continue;
          if (verifyConsistency(first, other, proof, r(first), r(other))) wrong.push(`src: ${first} -> ${second} as ${first} -> ${other}`);
          if (ind.verifyConsistency(first, other, proof, r(first), r(other))) wrong.push(`independent: ${first} -> ${second} as ${first} -> ${other}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  test("the smaller tree's root passed off as a larger size (2 -> 4 claimed as 2 -> 8) fails", () => {
    const proof = consistencyProof(s.read, 2, 4);
    expect(verifyConsistency(2, 4, proof, r(2), r(4))).toBe(true);
    expect(verifyConsistency(2, 8, proof, r(2), r(4))).toBe(false);
    expect(ind.verifyConsistency(2, 8, proof, r(2), r(4))).toBe(false);
  });

  test("from size 0, or from a larger size to a smaller one, nothing is consistent (src refuses both)", () => {
    const leaf = s.leaves[0];
    // each of these would pass the RFC's loop: only the size checks refuse them
    expect(verifyConsistency(0, 1, [leaf], leaf, leaf)).toBe(false);
    expect(verifyConsistency(2, 1, [], r(2), r(2))).toBe(false);
    expect(verifyConsistency(4, 2, [], r(4), r(4))).toBe(false);
    expect(ind.verifyConsistency(2, 1, [], r(2), r(2))).toBe(false);
  });

  test("consistencyProof of equal sizes is the empty proof and reads nothing", () => {
    s.reads.length = 0;
    for (let m = 1; m <= n; m++) expect(consistencyProof(s.read, m, m)).toEqual([]);
    expect(s.reads).toEqual([]);
  });
});

describe("CompactRange invariants", () => {
  test("a range built from a peak at an odd index cannot merge it: a loud stop, not a wrong root", () => {
    const r = new CompactRange(1, [{ level: 0, index: 1, hash: ind.leafHash(data(1)[0]) }]);
    expect(() => r.append(data(2)[1])).toThrow("merged node index must be whole");
  });

  test("fromStore of size 0 reads nothing and is the empty range", () => {
    const s = store(4);
    s.reads.length = 0;
    const r = CompactRange.fromStore(s.read, 0);
    expect({ size: r.size, peaks: r.nodes().length, reads: s.reads.length }).toEqual({ size: 0, peaks: 0, reads: 0 });
    expect(toHex(r.root())).toBe(ind.sha256().toString("hex"));
  });
});
