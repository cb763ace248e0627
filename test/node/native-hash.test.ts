// The ledger's hashing port: node:crypto's SHA-256 (what a serving node and verify-chain use) and
// noble's (the portable one) are the same function, on the published vector and on random parts.
import fc from "fast-check";
import { portableSha256, sha256, useSha256 } from "../../src/ledger/hash";
import { nativeSha256 } from "../../src/node/native-hash";
import { testSeed } from "../support/independent";

const SEED = testSeed();
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

describe("SHA-256: native and portable agree", () => {
  test("FIPS 180-2 'abc' and the empty string", () => {
    const abc = new TextEncoder().encode("abc");
    for (const f of [nativeSha256, portableSha256]) {
      expect(hex(f([abc]))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
      expect(hex(f([]))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
      expect(Object.getPrototypeOf(f([abc]))).toBe(Uint8Array.prototype);
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
