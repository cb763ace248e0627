// Ed25519 keys as every verifier must judge them (src/ledger/keys.ts): small-order and
// non-canonical public keys are no keys, a verdict depends on the key alone, and the installed
// implementation is the one every signature goes through, its throws turned into "false".
import { createPrivateKey, sign as cryptoSign } from "node:crypto";
import { acceptablePublicKey, Ed25519, generateKeyPair, portableEd25519, sign, useEd25519, verifySignature } from "../../src/ledger/keys";

type KeysModule = typeof import("../../src/ledger/keys");

/** The keys module with its verdict cache empty: a fresh instance, as a new process has it. */
function freshKeys(): KeysModule {
  let mod: KeysModule | undefined;
  jest.isolateModules(() => {
    mod = jest.requireActual<KeysModule>("../../src/ledger/keys");
  });
  if (mod === undefined) throw new Error("keys module did not load");
  return mod;
}

const hexBytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, "hex"));

// The eight points of small order (the torsion subgroup), in canonical encoding.
const SMALL_ORDER = [
  "0100000000000000000000000000000000000000000000000000000000000000", // identity
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2 (y = -1)
  "0000000000000000000000000000000000000000000000000000000000000000", // order 4 (y = 0)
  "0000000000000000000000000000000000000000000000000000000000000080", // order 4, the other x
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

describe("acceptablePublicKey", () => {
  test("a key from a seed is acceptable; the eight small-order points and non-canonical encodings are not", () => {
    for (let s = 0; s < 4; s++) expect(acceptablePublicKey(generateKeyPair(new Uint8Array(32).fill(s)).publicKey)).toBe(true);
    for (const h of SMALL_ORDER) expect(acceptablePublicKey(hexBytes(h))).toBe(false);
    // y = p (2^255 - 19) encodes y = 0 non-canonically; y = 2^255 - 1 is beyond p too.
    expect(acceptablePublicKey(hexBytes(`ed${"ff".repeat(30)}7f`))).toBe(false);
    expect(acceptablePublicKey(hexBytes(`${"ff".repeat(31)}7f`))).toBe(false);
    expect(acceptablePublicKey(new Uint8Array(31))).toBe(false);
    expect(acceptablePublicKey(new Uint8Array(33))).toBe(false);
  });

  test("a verdict depends on the key alone, not on the keys judged before it", () => {
    // Keys whose hex, written without each byte's leading zero, reads the same: [x, y] and
    // [x<<4 | y>>4, y & 15] for 1 <= x < 16 <= y. A cache keyed that loosely would hand one key
    // the other's verdict; find (deterministically) such a pair where one is a key and one is not.
    let pair: [Uint8Array, Uint8Array] | undefined;
    for (let s = 0; pair === undefined && s < 64; s++) {
      const good = generateKeyPair(new Uint8Array(32).fill(s + 1)).publicKey;
      for (let i = 0; i + 1 < 32 && pair === undefined; i++) {
        const x = good[i];
        const y = good[i + 1];
        if (x < 1 || x >= 16 || y < 16 || i + 1 === 31) continue; // byte 31 holds the sign bit: leave it
        const other = Uint8Array.from(good);
        other[i] = (x << 4) | (y >> 4);
        other[i + 1] = y & 15;
        if (!freshKeys().acceptablePublicKey(other)) pair = [good, other];
      }
    }
    if (pair === undefined) throw new Error("no colliding pair among 64 seeded keys");
    const [good, bad] = pair;
    const a = freshKeys();
    expect([a.acceptablePublicKey(good), a.acceptablePublicKey(bad)]).toEqual([true, false]);
    const b = freshKeys();
    expect([b.acceptablePublicKey(bad), b.acceptablePublicKey(good)]).toEqual([false, true]);
  });
});

describe("verifySignature and the installed implementation", () => {
  const seed = Buffer.alloc(32, 9);
  let kp: ReturnType<typeof generateKeyPair>;
  beforeEach(() => { kp = generateKeyPair(seed); });
  const msg = Buffer.from("resonetics/checkpoint/v1\n{}");
  const nodePriv = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
  afterEach(() => useEd25519(portableEd25519));

  test("a good signature verifies; a small-order key never does, even with the signature that fools a cofactorless check", () => {
    expect(verifySignature(cryptoSign(null, msg, nodePriv), msg, kp.publicKey)).toBe(true);
    const basePoint = hexBytes("5866666666666666666666666666666666666666666666666666666666666666");
    const forged = Uint8Array.from([...basePoint, 1, ...new Uint8Array(31)]); // R = B, s = 1
    const always: Ed25519 = { sign: portableEd25519.sign, verify: () => true };
    useEd25519(always);
    for (const h of SMALL_ORDER) expect(verifySignature(forged, msg, hexBytes(h))).toBe(false);
    // The size check comes before the implementation is asked.
    expect(verifySignature(forged.subarray(0, 63), msg, kp.publicKey)).toBe(false);
    expect(verifySignature(Uint8Array.from([...forged, 0]), msg, kp.publicKey)).toBe(false);
    expect(verifySignature(forged, msg, kp.publicKey)).toBe(true); // the installed one decides the rest
  });

  test("sign and verify go through the installed implementation", () => {
    const calls: string[] = [];
    const spy: Ed25519 = {
      sign: (m, k) => { calls.push("sign"); return portableEd25519.sign(m, k); },
      verify: (s, m, k) => { calls.push("verify"); return portableEd25519.verify(s, m, k); },
    };
    useEd25519(spy);
    const sig = sign(msg, kp.secretKey);
    expect(Buffer.from(sig).toString("hex")).toBe(cryptoSign(null, msg, nodePriv).toString("hex"));
    expect(verifySignature(sig, msg, kp.publicKey)).toBe(true);
    expect(calls).toEqual(["sign", "verify"]);
  });

  test("an implementation that throws an Error is a false; anything else thrown is a bug and goes on up", () => {
    useEd25519({ sign: portableEd25519.sign, verify: () => { throw new RangeError("bad point"); } });
    expect(verifySignature(new Uint8Array(64), msg, kp.publicKey)).toBe(false);
    useEd25519({ sign: portableEd25519.sign, verify: () => { throw "not an Error"; } });
    expect(() => verifySignature(new Uint8Array(64), msg, kp.publicKey)).toThrow("not an Error");
  });
});
