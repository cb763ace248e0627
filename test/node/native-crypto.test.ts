// The ledger's crypto ports: node:crypto's SHA-256 and Ed25519 (what a serving node and verify-chain use) and
// noble's (the portable one) are the same function, on the published vector and on random parts.
import fc from "fast-check";
import { portableSha256, sha256, useSha256 } from "../../src/ledger/hash";
import { nativeEd25519, nativeSha256 } from "../../src/node/native-crypto";
import { acceptablePublicKey, generateKeyPair, portableEd25519, sign, useEd25519, verifySignature } from "../../src/ledger/keys";
import { testSeed } from "../support/independent";

const SEED = testSeed();
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

describe("SHA-256: native and portable agree", () => {
  test("FIPS 180-2 'abc' and the empty string", () => {
    const abc = new TextEncoder().encode("abc");
    for (const f of [nativeSha256, portableSha256]) {
      expect(hex(f([abc]))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
      expect(hex(f([]))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
      for (const parts of [[abc], [abc, abc], []]) expect(Object.getPrototypeOf(f(parts))).toBe(Uint8Array.prototype);
    }
  });

  test(`random parts hash the same either way (seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }), (parts) => {
        expect(hex(nativeSha256(parts))).toBe(hex(portableSha256(parts)));
        expect(hex(nativeSha256(parts))).toBe(hex(portableSha256([Uint8Array.from(parts.flatMap((p) => [...p]))])));
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  test("parts joined past the scratch buffer, and a digest kept while the next is computed, are right", () => {
    // 5,000 bytes: the parts no longer fit the reused scratch buffer and are joined in one of their own.
    const big = [Uint8Array.from({ length: 3000 }, (_, i) => i % 251), Uint8Array.from({ length: 2000 }, (_, i) => (i * 7) % 256)];
    const first = nativeSha256(big);
    const kept = hex(first);
    expect(kept).toBe(hex(portableSha256([Uint8Array.from([...big[0], ...big[1]])])));
    // Every byte value comes out of the latin1 copy as itself: 256 digests cover 0x00..0xff at each of the first positions many times over.
    const seen = new Set<number>();
    for (let i = 0; i < 256; i++) {
      const d = nativeSha256([new Uint8Array([i]), big[1]]);
      expect(hex(d)).toBe(hex(portableSha256([new Uint8Array([i]), big[1]])));
      for (const b of d) seen.add(b);
    }
    expect(seen.size).toBe(256);
    expect(hex(first)).toBe(kept);
  });

  test("useSha256 switches what sha256 computes, and back", () => {
    const parts = [new Uint8Array([1, 2, 3])];
    try {
      useSha256(() => new Uint8Array(32));
      expect(hex(sha256(...parts))).toBe("00".repeat(32));
      useSha256(nativeSha256);
      expect(hex(sha256(...parts))).toBe(hex(portableSha256(parts)));
    } finally {
      useSha256(portableSha256);
    }
  });
});

describe("Ed25519: native and portable agree", () => {
  test(`deterministic signatures are byte-equal, and each verifies the other's (seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 2000 }), (seed, message) => {
        const k = generateKeyPair(seed);
        const a = nativeEd25519.sign(message, k.secretKey);
        const b = portableEd25519.sign(message, k.secretKey);
        expect(hex(a)).toBe(hex(b));
        expect(nativeEd25519.verify(b, message, k.publicKey)).toBe(true);
        expect(portableEd25519.verify(a, message, k.publicKey)).toBe(true);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  test(`a flipped bit of the signature or the message fails both (seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat(), (seed, message, at) => {
        const k = generateKeyPair(seed);
        const sig = portableEd25519.sign(message, k.secretKey);
        const badSig = Uint8Array.from(sig);
        badSig[at % 64] ^= 1 << (at % 8);
        const badMsg = Uint8Array.from(message);
        badMsg[at % message.length] ^= 1;
        for (const impl of [nativeEd25519, portableEd25519]) {
          useEd25519(impl);
          expect(verifySignature(badSig, message, k.publicKey)).toBe(false);
          expect(verifySignature(sig, badMsg, k.publicKey)).toBe(false);
          expect(verifySignature(sig, message, k.publicKey)).toBe(true);
        }
        useEd25519(portableEd25519);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  test("a public key that is not a curve point, or of the wrong size, is false on both (never a throw)", () => {
    const k = generateKeyPair(new Uint8Array(32).fill(7));
    const sig = sign(new Uint8Array([1]), k.secretKey);
    // y = 2 is not on the curve (no x satisfies the equation); all-0xff is not canonical.
    const notAPoint = new Uint8Array(32);
    notAPoint[0] = 2;
    for (const impl of [nativeEd25519, portableEd25519]) {
      useEd25519(impl);
      try {
        expect(verifySignature(sig, new Uint8Array([1]), notAPoint)).toBe(false);
        expect(verifySignature(sig, new Uint8Array([1]), new Uint8Array(32).fill(0xff))).toBe(false);
        expect(verifySignature(sig, new Uint8Array([1]), new Uint8Array(31))).toBe(false);
      } finally {
        useEd25519(portableEd25519);
      }
    }
  });
});

describe("small-order public keys are no keys, for either implementation", () => {
  // The identity point (y = 1): OpenSSL's cofactorless check accepts R = B, s = 1 for every message.
  const identity = new Uint8Array(32);
  identity[0] = 1;
  const basePoint = Buffer.from("5866666666666666666666666666666666666666666666666666666666666666", "hex");
  const forged = Uint8Array.from([...basePoint, 1, ...new Uint8Array(31)]);

  test("the forgery that node:crypto alone would accept is refused by verifySignature with either", () => {
    // What the port guards against: the raw native call says yes.
    expect(nativeEd25519.verify(forged, new Uint8Array([1, 2, 3]), identity)).toBe(true);
    for (const impl of [nativeEd25519, portableEd25519]) {
      useEd25519(impl);
      try {
        expect(acceptablePublicKey(identity)).toBe(false);
        for (const m of [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(100).fill(9)]) {
          expect(verifySignature(forged, m, identity)).toBe(false);
        }
      } finally {
        useEd25519(portableEd25519);
      }
    }
  });

  test("every small-order point of the curve is refused; a real key is accepted", () => {
    // The eight points of order dividing 8 (RFC 8032 / ZIP-215 test vectors' canonical encodings).
    const small = [
      "0100000000000000000000000000000000000000000000000000000000000000",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0000000000000000000000000000000000000000000000000000000000000080",
      "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
      "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
      "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
      "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    ];
    for (const h of small) expect({ h, ok: acceptablePublicKey(Buffer.from(h, "hex")) }).toEqual({ h, ok: false });
    expect(acceptablePublicKey(generateKeyPair(new Uint8Array(32).fill(3)).publicKey)).toBe(true);
  });
});
