/** RFC 9162 2.1.3.2 and 2.1.4.2 proof verification: pure, for clients and the audit API. */
import { bytesEqual } from "./bytes";
import { leafHash, nodeHash } from "./merkle";

/** Root implied by an inclusion proof, or null when the proof has the wrong shape. */
export function rootFromInclusionProof(
  leafIndex: number,
  treeSize: number,
  leafHashValue: Uint8Array,
  path: readonly Uint8Array[],
): Uint8Array | null {
  if (!(leafIndex >= 0 && leafIndex < treeSize)) return null;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leafHashValue;
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      // RFC: "if LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0".
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

/** True when path proves the leaf data (an entry hash) at leafIndex is in the tree with root. */
export function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  leafData: Uint8Array,
  path: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const r = rootFromInclusionProof(leafIndex, treeSize, leafHash(leafData), path);
  return r !== null && bytesEqual(r, root);
}

/** True when path proves the tree of size first (root1) is a prefix of the tree of size second (root2). */
export function verifyConsistency(
  first: number,
  second: number,
  path: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): boolean {
  if (!(first >= 1 && first <= second)) return false;
  if (first === second) return path.length === 0 && bytesEqual(root1, root2);
  let proof = path.slice();
  if (isPowerOfTwo(first)) proof = [root1, ...proof];
  if (proof.length === 0) return false;
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = proof[0];
  let sr = proof[0];
  for (const c of proof.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return bytesEqual(fr, root1) && bytesEqual(sr, root2) && sn === 0;
}

/** False for 0 and below too: log2 is -Infinity or NaN there. */
const isPowerOfTwo = (n: number): boolean => Number.isInteger(Math.log2(n));
