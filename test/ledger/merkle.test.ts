import vectors from "../fixtures/rfc6962-vectors.json";
import { fromHex, toHex } from "../../src/ledger/bytes";
import {
  CompactRange,
  MerkleNode,
  consistencyProof,
  inclusionProof,
  rootAt,
} from "../../src/ledger/merkle";
import { verifyConsistency, verifyInclusion } from "../../src/ledger/merkle-verify";
import * as ind from "../support/independent";

const hex = (h: string): Uint8Array => fromHex(h) as Uint8Array;

/** An in-memory node store fed by CompactRange.append, as the SQLite store is. */
function buildTree(leaves: Uint8Array[]): { read: (l: number, i: number) => Uint8Array; roots: string[] } {
  const nodes = new Map<string, Uint8Array>();
  const range = new CompactRange();
  const roots = [toHex(range.root())];
  for (const leaf of leaves) {
    for (const n of range.append(leaf) as MerkleNode[]) nodes.set(`${n.level}/${n.index}`, n.hash);
    roots.push(toHex(range.root()));
  }
  const read = (l: number, i: number): Uint8Array => {
    const h = nodes.get(`${l}/${i}`);
    if (!h) throw new Error(`missing node ${l}/${i}`);
    return h;
  };
  return { read, roots };
}

describe("RFC 6962 / 9162 published vectors", () => {
  // Built per test (beforeEach): code run outside a test counts as Stryker static coverage.
  let leaves: Uint8Array[];
  let tree: ReturnType<typeof buildTree>;
  beforeEach(() => {
    leaves = vectors.leaves_hex.map(hex);
    tree = buildTree(leaves);
  });

  test("compact range roots equal the published root for every size 0..8", () => {
    expect(tree.roots).toEqual(vectors.roots_by_size);
  });

  test("roots recomputed from stored subtree hashes equal the published roots", () => {
    for (let n = 0; n <= 8; n++) expect(toHex(rootAt(tree.read, n))).toBe(vectors.roots_by_size[n]);
  });

  test.each(vectors.inclusion)("inclusion proof leaf $leaf_index size $size", ({ leaf_index, size, path }) => {
    const proof = inclusionProof(tree.read, leaf_index, size);
    expect(proof.map(toHex)).toEqual(path);
    expect(verifyInclusion(leaf_index, size, leaves[leaf_index], proof, hex(vectors.roots_by_size[size]))).toBe(true);
  });

  test.each(vectors.consistency)("consistency proof $from -> $to", ({ from, to, path }) => {
    const proof = consistencyProof(tree.read, from, to);
    expect(proof.map(toHex)).toEqual(path);
    const ok = verifyConsistency(from, to, proof, hex(vectors.roots_by_size[from]), hex(vectors.roots_by_size[to]));
    expect(ok).toBe(true);
  });
});

// src's roots and proofs are checked by test/support/independent.ts (RFC 9162 from its text, no
// src import) as well as by src's own verifier: a bug shared by src's prover and verifier (say,
// left and right swapped in the node hash) passes the second check and fails the first.
describe("proofs over larger trees", () => {
  const leaves = Array.from({ length: 70 }, (_, i) => new TextEncoder().encode(`leaf-${i}`));
  let tree: ReturnType<typeof buildTree>;
  beforeEach(() => { tree = buildTree(leaves); });
  const leafHashes = leaves.map((l) => ind.leafHash(l));
  const b = (x: Uint8Array): Buffer => Buffer.from(x);

  test("the compact range's root at every size equals the independent RFC 9162 root", () => {
    const want = Array.from({ length: leaves.length + 1 }, (_, n) => ind.merkleRoot(leafHashes, n).toString("hex"));
    expect(tree.roots).toEqual(want);
    for (let n = 0; n <= leaves.length; n++) expect(toHex(rootAt(tree.read, n))).toBe(want[n]);
  });

  test("every inclusion proof at every size verifies, and a flipped byte fails", () => {
    const wrong: string[] = [];
    for (let size = 1; size <= leaves.length; size++) {
      const root = hex(tree.roots[size]);
      const indRoot = ind.merkleRoot(leafHashes, size);
      for (let i = 0; i < size; i++) {
        const proof = inclusionProof(tree.read, i, size);
        if (!verifyInclusion(i, size, leaves[i], proof, root)) wrong.push(`src verifier rejects leaf ${i} size ${size}`);
        if (!ind.verifyInclusion(i, size, leafHashes[i], proof.map(b), indRoot)) wrong.push(`independent verifier rejects leaf ${i} size ${size}`);
        if (proof.length > 0) {
          const bad = proof.map((p) => p.slice());
          bad[i % bad.length][i % 32] ^= 1;
          if (verifyInclusion(i, size, leaves[i], bad, root)) wrong.push(`src verifier accepts a flipped proof, leaf ${i} size ${size}`);
          if (ind.verifyInclusion(i, size, leafHashes[i], bad.map(b), indRoot)) wrong.push(`independent verifier accepts a flipped proof, leaf ${i} size ${size}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  test("every consistency proof between sizes verifies, and a flipped byte fails", () => {
    const wrong: string[] = [];
    for (let m = 1; m <= leaves.length; m++) {
      for (let n = m; n <= leaves.length; n++) {
        const proof = consistencyProof(tree.read, m, n);
        const indM = ind.merkleRoot(leafHashes, m);
        const indN = ind.merkleRoot(leafHashes, n);
        if (!verifyConsistency(m, n, proof, hex(tree.roots[m]), hex(tree.roots[n]))) wrong.push(`src verifier rejects ${m} -> ${n}`);
        if (!ind.verifyConsistency(m, n, proof.map(b), indM, indN)) wrong.push(`independent verifier rejects ${m} -> ${n}`);
        if (proof.length > 0) {
          const bad = proof.map((p) => p.slice());
          bad[(m + n) % bad.length][n % 32] ^= 0x80;
          if (verifyConsistency(m, n, bad, hex(tree.roots[m]), hex(tree.roots[n]))) wrong.push(`src verifier accepts a flipped proof ${m} -> ${n}`);
          if (ind.verifyConsistency(m, n, bad.map(b), indM, indN)) wrong.push(`independent verifier accepts a flipped proof ${m} -> ${n}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });
});

describe("CompactRange.append with merged hashes given (verify-chain's workers hash a page's inner nodes)", () => {
  const data = (i: number): Uint8Array => ind.sha256(Buffer.from(`leaf ${i}`));

  test("the merges it is given are its nodes, the rest it hashes: the same nodes and roots as hashing all", () => {
    const plain = new CompactRange();
    const given = new CompactRange();
    for (let i = 0; i < 300; i++) {
      const want = plain.append(data(i));
      // Give the lowest merges (all of them, none, or some between), from the nodes hashed by the plain range.
      const k = i % 3 === 0 ? want.length - 1 : i % 3 === 1 ? 0 : Math.floor((want.length - 1) / 2);
      const merged = Buffer.concat(want.slice(1, 1 + k).map((n) => n.hash));
      const got = given.append(data(i), ind.leafHash(data(i)), merged);
      expect(got.map((n) => [n.level, n.index, toHex(n.hash)])).toEqual(want.map((n) => [n.level, n.index, toHex(n.hash)]));
      expect(toHex(given.root())).toBe(toHex(plain.root()));
    }
    expect(toHex(plain.root())).toBe(ind.merkleRoot(Array.from({ length: 300 }, (_, i) => ind.leafHash(data(i)))).toString("hex"));
  });

  test("a given hash is taken as it is: the caller answers for it", () => {
    const range = new CompactRange();
    range.append(data(0));
    const planted = new Uint8Array(32).fill(7);
    const [, node] = range.append(data(1), ind.leafHash(data(1)), planted);
    expect(node).toEqual({ level: 1, index: 0, hash: planted });
    expect(toHex(range.root())).toBe(toHex(planted));
  });

  test("more hashes than the append merges is a bug of the caller, and throws", () => {
    const range = new CompactRange();
    range.append(data(0));
    // Leaf 1 merges once (level 1); two hashes claim a level-2 merge it does not make.
    expect(() => range.append(data(1), ind.leafHash(data(1)), new Uint8Array(64))).toThrow("2 merged hashes given for an append that merges 1 times");
    const fresh = new CompactRange();
    expect(() => fresh.append(data(0), ind.leafHash(data(0)), new Uint8Array(32))).toThrow("1 merged hashes given for an append that merges 0 times");
  });
});
