// src/node/node-cache.ts: the reader's cache of committed Merkle subtree hashes. It must answer
// exactly what the source holds, read the source once per hash while it is held, evict the oldest
// first, hand out copies a caller may keep (or scribble on), and pass a damaged row (not 32 bytes)
// through without caching it. The property test checks it against a model (a FIFO list) with
// random reads. Reproduce a failure with RESONETICS_SEED=<seed printed> npx jest test/node/node-cache.test.ts.
import fc from "fast-check";
import { NodeCache } from "../../src/node/node-cache";
import { testSeed } from "../support/independent";

const SEED = testSeed();

/** A source whose hash of (level, index) is distinct per key, counting its reads. */
function counted(lengthOf: (level: number, index: number) => number = () => 32) {
  const reads: string[] = [];
  const source = (level: number, index: number): Uint8Array => {
    reads.push(`${level}/${index}`);
    const out = new Uint8Array(lengthOf(level, index));
    const view = new DataView(out.buffer);
    if (out.length >= 16) {
      view.setUint32(0, level);
      view.setFloat64(4, index);
      out.fill(0xa5, 12);
    }
    return out;
  };
  return { reads, source };
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

describe("NodeCache", () => {
  test("a held hash is read from the source once, and every answer equals the source's", () => {
    const { reads, source } = counted();
    const cache = new NodeCache(source, 8);
    const first = cache.read(3, 5);
    const again = cache.read(3, 5);
    expect(hex(again)).toBe(hex(source(3, 5)));
    expect(hex(first)).toBe(hex(again));
    expect(reads).toEqual(["3/5", "3/5"]); // the second "3/5" is this test's own call above
    expect(cache.size).toBe(1);
  });

  test("level and index are one key: (0, 1) and (1, 0) are different hashes, indices past 2^32 too", () => {
    const { reads, source } = counted();
    const cache = new NodeCache(source, 8);
    const big = 2 ** 40 + 3;
    const answers = [cache.read(0, 1), cache.read(1, 0), cache.read(63, 0), cache.read(0, big), cache.read(0, big + 1)];
    expect(new Set(answers.map(hex)).size).toBe(5);
    expect(answers.map(hex)).toEqual([source(0, 1), source(1, 0), source(63, 0), source(0, big), source(0, big + 1)].map(hex));
    reads.length = 0;
    cache.read(0, 1);
    cache.read(1, 0);
    cache.read(0, big);
    expect(reads).toEqual([]);
  });

  test("a hit is a copy: changing what was handed out changes nothing held, and a reused slot does not change it", () => {
    const { source } = counted();
    const cache = new NodeCache(source, 2);
    const a = cache.read(0, 1);
    const held = cache.read(0, 1);
    held.fill(0);
    expect(hex(cache.read(0, 1))).toBe(hex(source(0, 1)));
    const kept = cache.read(0, 1);
    // Two more keys take both slots, so (0, 1)'s bytes in the slab are overwritten.
    cache.read(0, 2);
    cache.read(0, 3);
    expect(hex(kept)).toBe(hex(source(0, 1)));
    expect(hex(a)).toBe(hex(source(0, 1)));
  });

  test("full, the oldest hash goes first and is read again when asked for", () => {
    const { reads, source } = counted();
    const cache = new NodeCache(source, 3);
    for (const i of [1, 2, 3]) cache.read(0, i);
    cache.read(0, 1); // a hit does not renew: eviction is first in, first out
    cache.read(0, 4); // evicts (0, 1)
    expect(cache.size).toBe(3);
    reads.length = 0;
    cache.read(0, 2);
    cache.read(0, 3);
    cache.read(0, 4);
    expect(reads).toEqual([]);
    cache.read(0, 1);
    expect(reads).toEqual(["0/1"]);
  });

  test("a damaged row (not 32 bytes) is passed through as read, every time, and takes no slot", () => {
    const { reads, source } = counted((level, index) => (index === 7 ? 31 : index === 8 ? 40 : 32));
    const cache = new NodeCache(source, 4);
    expect(cache.read(0, 7).length).toBe(31);
    expect(cache.read(0, 7).length).toBe(31);
    expect(cache.read(0, 8).length).toBe(40);
    expect(cache.size).toBe(0);
    expect(reads).toEqual(["0/7", "0/7", "0/8"]);
  });

  test("a level outside 0..63 or a capacity below 1 is refused", () => {
    const { source } = counted();
    expect(() => new NodeCache(source, 0)).toThrow(/capacity/);
    const cache = new NodeCache(source, 2);
    expect(() => cache.read(64, 0)).toThrow(/level/);
    expect(() => cache.read(-1, 0)).toThrow(/level/);
  });

  test("property: against a FIFO model, every answer is the source's and the source is read exactly on a miss", () => {
    const key = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 12 }));
    const result = fc.check(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(key, { maxLength: 200 }), (capacity, asks) => {
        const { reads, source } = counted();
        const cache = new NodeCache(source, capacity);
        const model: string[] = []; // held keys, oldest first
        for (const [level, index] of asks) {
          const k = `${level}/${index}`;
          const before = reads.length;
          const got = cache.read(level, index);
          const missed = !model.includes(k);
          expect(reads.length - before).toBe(missed ? 1 : 0);
          if (missed) {
            model.push(k);
            if (model.length > capacity) model.shift();
          }
          expect(hex(got)).toBe(hex(source(level, index)));
          reads.pop(); // the check's own read
          expect(cache.size).toBe(model.length);
        }
      }),
      { seed: SEED, numRuns: 300 },
    );
    if (result.failed) throw new Error(`seed ${SEED}: RESONETICS_SEED=${SEED} npx jest test/node/node-cache.test.ts\n${fc.defaultReportMessage(result)}`);
  });
});
