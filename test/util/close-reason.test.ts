import fc from "fast-check";
import { CLOSE_REASON_BYTES_MAX, closeReason } from "../../src/util/close-reason";

const seed = Number(process.env.RESONETICS_SEED ?? Date.now() % 2 ** 31);

test(`any string becomes a close reason of at most 123 UTF-8 bytes, a prefix cut at a code point (seed ${seed})`, () => {
  fc.assert(fc.property(fc.string({ unit: "grapheme", maxLength: 200 }), (s) => {
    const r = closeReason(s);
    expect(Buffer.byteLength(r)).toBeLessThanOrEqual(CLOSE_REASON_BYTES_MAX);
    expect(s.startsWith(r)).toBe(true);
    if (Buffer.byteLength(s) <= CLOSE_REASON_BYTES_MAX) expect(r).toBe(s);
    else expect(Buffer.byteLength(r)).toBeGreaterThan(CLOSE_REASON_BYTES_MAX - 4);
  }), { seed, numRuns: 1000 });
  expect(closeReason("é".repeat(100))).toBe("é".repeat(61));
  expect(closeReason("😀".repeat(40))).toBe("😀".repeat(30));
});
