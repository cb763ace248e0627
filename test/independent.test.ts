// The acceptance tests' independent verifier, checked against published vectors and against
// known answers computed with a third implementation (Python hashlib), never against src/.
import { generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import vectors from "./fixtures/rfc6962-vectors.json";
import {
  CheckpointPayload,
  bufToHex,
  canonicalJson,
  checkpointMessage,
  entryHash,
  genesisHash,
  hexToBuf,
  leafHash,
  merkleRoot,
  nodeHash,
  prng,
  sha256,
  verifyCheckpointSig,
  verifyConsistency,
  verifyEd25519,
  verifyInclusion,
} from "./support/independent";

const leaves = vectors.leaves_hex.map(hexToBuf);
const leafHashes = leaves.map(leafHash);
const roots = vectors.roots_by_size.map(hexToBuf);

/** Every copy of `path` with one byte of one element changed (all 32 positions, one xor mask). */
function flippedPaths(path: Buffer[], mask: number): Buffer[][] {
  const out: Buffer[][] = [];
  path.forEach((el, i) => {
    for (let pos = 0; pos < el.length; pos++) {
      const copy = path.map((p) => Buffer.from(p));
      copy[i][pos] ^= mask;
      out.push(copy);
    }
  });
  return out;
}

describe("RFC 9162 hashing against the published vectors", () => {
  test("leaf hashes", () => {
    expect(leafHashes.map(bufToHex)).toEqual(vectors.leaf_hashes);
  });

  test("roots for every size 0..8", () => {
    for (let n = 0; n <= 8; n++) expect(bufToHex(merkleRoot(leafHashes, n))).toBe(vectors.roots_by_size[n]);
  });

  test("node hash is SHA-256(0x01 || l || r)", () => {
    expect(bufToHex(nodeHash(leafHashes[0], leafHashes[1]))).toBe(vectors.roots_by_size[2]);
  });
});

describe("RFC 9162 2.1.3.2 inclusion verification", () => {
  test.each(vectors.inclusion)("vector leaf $leaf_index size $size verifies", ({ leaf_index, size, path }) => {
    const p = path.map(hexToBuf);
    expect(verifyInclusion(leaf_index, size, leafHashes[leaf_index], p, roots[size])).toBe(true);
  });

  test.each(vectors.inclusion)("vector leaf $leaf_index size $size: every mutation fails", ({ leaf_index, size, path }) => {
    const p = path.map(hexToBuf);
    for (const bad of flippedPaths(p, 0x01)) expect(verifyInclusion(leaf_index, size, leafHashes[leaf_index], bad, roots[size])).toBe(false);
    for (const bad of flippedPaths(p, 0x80)) expect(verifyInclusion(leaf_index, size, leafHashes[leaf_index], bad, roots[size])).toBe(false);
    const badLeaf = Buffer.from(leafHashes[leaf_index]);
    badLeaf[7] ^= 0x10;
    expect(verifyInclusion(leaf_index, size, badLeaf, p, roots[size])).toBe(false);
    const badRoot = Buffer.from(roots[size]);
    badRoot[31] ^= 0x01;
    expect(verifyInclusion(leaf_index, size, leafHashes[leaf_index], p, badRoot)).toBe(false);
    // wrong position, wrong size, truncated and extended paths
    if (size > 1) expect(verifyInclusion((leaf_index + 1) % size, size, leafHashes[leaf_index], p, roots[size])).toBe(false);
    if (size < 8) expect(verifyInclusion(leaf_index, size + 1, leafHashes[leaf_index], p, roots[size + 1])).toBe(false);
    expect(verifyInclusion(size, size, leafHashes[leaf_index], p, roots[size])).toBe(false);
    expect(verifyInclusion(-1, size, leafHashes[leaf_index], p, roots[size])).toBe(false);
    if (p.length > 0) expect(verifyInclusion(leaf_index, size, leafHashes[leaf_index], p.slice(0, -1), roots[size])).toBe(false);
    expect(verifyInclusion(leaf_index, size, leafHashes[leaf_index], [...p, roots[size]], roots[size])).toBe(false);
  });
});

describe("RFC 9162 2.1.4.2 consistency verification", () => {
  test.each(vectors.consistency)("vector $from -> $to verifies", ({ from, to, path }) => {
    expect(verifyConsistency(from, to, path.map(hexToBuf), roots[from], roots[to])).toBe(true);
  });

  test.each(vectors.consistency)("vector $from -> $to: every mutation fails", ({ from, to, path }) => {
    const p = path.map(hexToBuf);
    for (const bad of flippedPaths(p, 0x01)) expect(verifyConsistency(from, to, bad, roots[from], roots[to])).toBe(false);
    for (const bad of flippedPaths(p, 0x40)) expect(verifyConsistency(from, to, bad, roots[from], roots[to])).toBe(false);
    const badFrom = Buffer.from(roots[from]);
    badFrom[0] ^= 0x01;
    const badTo = Buffer.from(roots[to]);
    badTo[16] ^= 0x01;
    expect(verifyConsistency(from, to, p, badFrom, roots[to])).toBe(false);
    expect(verifyConsistency(from, to, p, roots[from], badTo)).toBe(false);
    if (p.length > 0) expect(verifyConsistency(from, to, p.slice(1), roots[from], roots[to])).toBe(false);
    if (to < 8) expect(verifyConsistency(from, to + 1, p, roots[from], roots[to + 1])).toBe(false);
    expect(verifyConsistency(to, from === to ? to : from, p, roots[to], roots[from])).toBe(from === to && p.length === 0);
  });

  test("a tree is consistent with itself only through an empty proof", () => {
    expect(verifyConsistency(5, 5, [], roots[5], roots[5])).toBe(true);
    expect(verifyConsistency(5, 5, [roots[5]], roots[5], roots[5])).toBe(false);
    expect(verifyConsistency(5, 5, [], roots[5], roots[6])).toBe(false);
  });
});

describe("proofs built by an independent prover on larger trees", () => {
  // A tiny reference prover from the RFC 9162 2.1.3.1 / 2.1.4.1 definitions (PATH and SUBPROOF).
  const N = 70;
  const big = Array.from({ length: N }, (_, i) => leafHash(Buffer.from(`leaf-${i}`)));
  const k = (n: number): number => {
    let p = 1;
    while (p * 2 < n) p *= 2;
    return p;
  };
  const pathOf = (m: number, d: Buffer[]): Buffer[] => {
    if (d.length <= 1) return [];
    const s = k(d.length);
    return m < s ? [...pathOf(m, d.slice(0, s)), merkleRoot(d.slice(s))] : [...pathOf(m - s, d.slice(s)), merkleRoot(d.slice(0, s))];
  };
  const subproof = (m: number, d: Buffer[], b: boolean): Buffer[] => {
    const n = d.length;
    if (m === n) return b ? [] : [merkleRoot(d)];
    const s = k(n);
    return m <= s
      ? [...subproof(m, d.slice(0, s), b), merkleRoot(d.slice(s))]
      : [...subproof(m - s, d.slice(s), false), merkleRoot(d.slice(0, s))];
  };
  const rnd = prng(20261125);

  test("every inclusion proof of every size up to 70 verifies, and a flipped byte fails", () => {
    for (let size = 1; size <= N; size++) {
      const d = big.slice(0, size);
      const root = merkleRoot(d);
      for (let m = 0; m < size; m++) {
        const p = pathOf(m, d);
        expect(verifyInclusion(m, size, d[m], p, root)).toBe(true);
        if (p.length > 0) {
          const bad = p.map((x) => Buffer.from(x));
          bad[Math.floor(rnd() * bad.length)][Math.floor(rnd() * 32)] ^= 1 << Math.floor(rnd() * 8);
          expect(verifyInclusion(m, size, d[m], bad, root)).toBe(false);
        }
      }
    }
  });

  test("every consistency proof between sizes up to 70 verifies, and a flipped byte fails", () => {
    for (let to = 1; to <= N; to++) {
      const d = big.slice(0, to);
      const rootTo = merkleRoot(d);
      for (let from = 1; from < to; from++) {
        const p = subproof(from, d, true);
        const rootFrom = merkleRoot(big, from);
        expect(verifyConsistency(from, to, p, rootFrom, rootTo)).toBe(true);
        const bad = p.map((x) => Buffer.from(x));
        bad[Math.floor(rnd() * bad.length)][Math.floor(rnd() * 32)] ^= 1 << Math.floor(rnd() * 8);
        expect(verifyConsistency(from, to, bad, rootFrom, rootTo)).toBe(false);
      }
    }
  });
});

describe("DESIGN.md entry hash (known answers from Python hashlib)", () => {
  test("genesis hash and a short chain", () => {
    const g = genesisHash("clüster-1");
    expect(bufToHex(g)).toBe("51d493a6a52e432c05c8dec3d542e7722013efddee22012ef9b00f4e221053aa");
    const e1 = entryHash(1, 1, 2, g, Buffer.from('{"a":1}'));
    expect(bufToHex(e1)).toBe("f9af0590a29da3bc86fabc8f3fac379741135819bc1d473afc43e23a805d7482");
    const e2 = entryHash(2, 7, 1, e1, Buffer.alloc(0));
    expect(bufToHex(e2)).toBe("83ed1f4a92814593d46b8333d45b4e4a112ae6c5703ec66e61b2e8b0810f9378");
    const e3 = entryHash(2 ** 53 - 1, 2 ** 32 + 5, 3, e2, Buffer.from("x"));
    expect(bufToHex(e3)).toBe("ff69469fcd6208bd4f263293d344cb5e0388a5dab5d1afa4defeced9e9e8ea9f");
  });

  test("sha256 of nothing is the empty-tree root", () => {
    expect(bufToHex(sha256())).toBe(vectors.roots_by_size[0]);
  });
});

describe("canonical JSON and Ed25519 checkpoint signatures", () => {
  test("canonical JSON sorts keys and drops whitespace", () => {
    expect(canonicalJson({ b: 1, a: [true, null, "x\n"], c: { z: 1.5, y: -0 } })).toBe('{"a":[true,null,"x\\n"],"b":1,"c":{"y":0,"z":1.5}}');
    expect(canonicalJson({ "\u00e9": 1, z: 2, A: 3 })).toBe('{"A":3,"z":2,"\u00e9":1}');
  });

  test("RFC 8032 test 1 verifies with node:crypto from the raw key", () => {
    const pub = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const sig =
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    expect(verifyEd25519(pub, Buffer.alloc(0), sig)).toBe(true);
    expect(verifyEd25519(pub, Buffer.from([0]), sig)).toBe(false);
    expect(verifyEd25519(pub, Buffer.alloc(0), sig.slice(0, -2) + "0c")).toBe(false);
    expect(verifyEd25519(pub, Buffer.alloc(0), "zz")).toBe(false);
  });

  test("a checkpoint signed over the DESIGN.md message verifies; any change to the body fails", () => {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
    const body = {
      v: 1,
      cluster: "c-1",
      size: 8,
      root: vectors.roots_by_size[8],
      head: vectors.leaf_hashes[7],
      term: 3,
      signer: "n1",
      ts: "2026-11-25T13:00:00.000Z",
    };
    const msg = Buffer.concat([Buffer.from("resonetics/checkpoint/v1\n"), Buffer.from(JSON.stringify(body, Object.keys(body).sort()))]);
    expect(checkpointMessage({ ...body, sig: "" }).equals(msg)).toBe(true);
    const cp: CheckpointPayload = { ...body, sig: cryptoSign(null, msg, privateKey).toString("hex") };
    expect(verifyCheckpointSig(cp, bufToHex(raw))).toBe(true);
    expect(verifyCheckpointSig({ ...cp, size: 9 }, bufToHex(raw))).toBe(false);
    expect(verifyCheckpointSig({ ...cp, ts: cp.ts.replace("13:", "14:") }, bufToHex(raw))).toBe(false);
    const other = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" }).subarray(-32);
    expect(verifyCheckpointSig(cp, bufToHex(other))).toBe(false);
  });
});
