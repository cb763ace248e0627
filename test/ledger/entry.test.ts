import { createHash } from "node:crypto";
import { EntryKind, chainEntry, entryHash, genesisHash } from "../../src/ledger/entry";
import { toHex, u64be, fromHex } from "../../src/ledger/bytes";

// An independent statement of DESIGN.md's formulas with node:crypto.
const sha = (...parts: Buffer[]): Buffer => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};
const be64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};

describe("entry hash chain", () => {
  test("genesis hash is SHA-256(tag || 0x00 || cluster id)", () => {
    const want = sha(Buffer.from("resonetics/genesis/v1"), Buffer.from([0]), Buffer.from("c-1", "utf8"));
    expect(toHex(genesisHash("c-1"))).toBe(want.toString("hex"));
  });

  test("entry hash matches the formula for every kind and large indices", () => {
    const prev = genesisHash("cluster");
    for (const kind of [EntryKind.Noop, EntryKind.Record, EntryKind.Config, EntryKind.Checkpoint]) {
      for (const [index, term] of [[1, 1], [2 ** 32 + 5, 7], [Number.MAX_SAFE_INTEGER, 2 ** 40]]) {
        const payload = Buffer.from(`{"k":${kind}}`);
        const want = sha(
          Buffer.from("resonetics/entry/v1"), Buffer.from([0]), be64(BigInt(index)), be64(BigInt(term)),
          Buffer.from([kind]), Buffer.from(prev), sha(payload),
        );
        expect(toHex(entryHash(index, term, kind, prev, payload))).toBe(want.toString("hex"));
      }
    }
  });

  test("each entry chains to its predecessor: changing any input changes the hash", () => {
    const g = genesisHash("x");
    const a = chainEntry(1, 1, EntryKind.Config, g, Buffer.from("{}"));
    const variants = [
      entryHash(2, 1, EntryKind.Config, g, Buffer.from("{}")),
      entryHash(1, 2, EntryKind.Config, g, Buffer.from("{}")),
      entryHash(1, 1, EntryKind.Record, g, Buffer.from("{}")),
      entryHash(1, 1, EntryKind.Config, genesisHash("y"), Buffer.from("{}")),
      entryHash(1, 1, EntryKind.Config, g, Buffer.from("{ }")),
    ];
    for (const v of variants) expect(toHex(v)).not.toBe(toHex(a.hash));
  });

  test("u64be rejects values that are not unsigned safe integers", () => {
    expect(toHex(u64be(0))).toBe("0000000000000000");
    expect(toHex(u64be(2 ** 53 - 1))).toBe("001fffffffffffff");
    // A different value in every byte, and each byte's top bit set somewhere: each lands in its place.
    expect(toHex(u64be(0x001e2d3c_4b5a6978))).toBe("001e2d3c4b5a6978");
    expect(toHex(u64be(0x0010_8090_a0b0_c0d0))).toBe("00108090a0b0c0d0");
    expect(toHex(u64be(0xffff_ffff))).toBe("00000000ffffffff");
    expect(toHex(u64be(0x1_0000_0000))).toBe("0000000100000000");
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN]) expect(() => u64be(bad)).toThrow(RangeError);
  });

  test("fromHex accepts only lowercase even-length hex", () => {
    expect(fromHex("00ff")).toEqual(new Uint8Array([0, 255]));
    for (const bad of ["0", "GG", "00FF", "0x00", " 00"]) expect(fromHex(bad)).toBeNull();
  });
});
