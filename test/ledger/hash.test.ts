// SHA-256, the one hash of every format (src/ledger/hash.ts): the portable implementation on the
// FIPS 180-2 vectors, parts hashed as their concatenation, and useSha256 switching what every
// format computes (the composition root installs node:crypto's; a verifier keeps noble's).
import { createHash } from "node:crypto";
import { HASH_BYTES, portableSha256, sha256, Sha256, useSha256 } from "../../src/ledger/hash";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const nodeSha256: Sha256 = (parts) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

describe("sha256", () => {
  afterEach(() => useSha256(portableSha256));

  test("the FIPS 180-2 vectors, as one part or split anywhere", () => {
    const abc = Buffer.from("abc");
    const long = Buffer.from("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
    expect(HASH_BYTES).toBe(32);
    expect(hex(sha256())).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hex(sha256(abc))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(hex(sha256(abc.subarray(0, 1), new Uint8Array(), abc.subarray(1)))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    for (let cut = 0; cut <= long.length; cut += 7) {
      expect(hex(portableSha256([long.subarray(0, cut), long.subarray(cut)]))).toBe("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }
    expect(sha256(abc)).toHaveLength(HASH_BYTES);
  });

  test("useSha256 installs what sha256 computes, given the parts as passed; portableSha256 puts noble's back", () => {
    const seen: Uint8Array[][] = [];
    useSha256((parts) => {
      seen.push([...parts]);
      return nodeSha256(parts);
    });
    const a = Uint8Array.from([1, 2]);
    const b = Uint8Array.from([3]);
    expect(hex(sha256(a, b))).toBe(createHash("sha256").update(Uint8Array.from([1, 2, 3])).digest("hex"));
    expect(seen).toEqual([[a, b]]);
    useSha256(() => new Uint8Array(32));
    expect(hex(sha256(a))).toBe("00".repeat(32));
    useSha256(portableSha256);
    expect(hex(sha256(a, b))).toBe(createHash("sha256").update(Uint8Array.from([1, 2, 3])).digest("hex"));
  });
});
