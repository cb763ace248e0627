// src/api/params.ts, in-process: path and query parameters are whole decimal numbers within range,
// text of 1..max code points, or a 400 (bad_request) that says which parameter and why; the query
// parser is strict (bad percent-encoding is a 400, never kept as is) and bounded (4096 bytes, 32
// parameters: the exact limit passes, one past it is refused). DESIGN.md "Input".
import fc from "fast-check";
import { LedgerError } from "../../src/util/errors";
import { parseIndex, parseLimit, parseOptionalIndex, parseQuery, parseText } from "../../src/api/params";
import { testSeed } from "../support/independent";

const SEED = testSeed();
const reproduce = `seed ${SEED}: RESONETICS_SEED=${SEED} npx jest test/api/params.test.ts`;
/** Each case is one parse of a few dozen bytes: 200 runs take milliseconds. */
const NUM_RUNS = 200;

/** fc.check with the run's seed, and the seed in the failure message. */
function check<A, B>(arbs: [fc.Arbitrary<A>, fc.Arbitrary<B>], prop: (a: A, b: B) => boolean): void {
  const out = fc.check(fc.property(arbs[0], arbs[1], prop), { seed: SEED, numRuns: NUM_RUNS });
  if (out.failed) throw new Error(`property failed (${reproduce}) after ${out.numRuns} runs: ${String(out.errorInstance)}\ncounterexample: ${JSON.stringify(out.counterexample)}`);
}

/** The LedgerError fn throws (fails the test when it throws none, or something else). */
function thrown(fn: () => unknown): LedgerError {
  try {
    fn();
  } catch (err) {
    if (err instanceof LedgerError) return err;
    throw err;
  }
  throw new Error("expected a LedgerError, nothing was thrown");
}

describe("parseIndex", () => {
  test.each([["1", 1], ["0001", 1], ["42", 42], ["9007199254740991", Number.MAX_SAFE_INTEGER], ["1234567890123456", 1234567890123456]])("%s → %d", (raw, n) => {
    expect(parseIndex(raw, "index")).toBe(n);
  });

  test.each(["", "-1", "+1", "1.0", "1e3", " 1", "1 ", "0x10", "abc", "١"])("%j is not a whole number", (raw) => {
    const e = thrown(() => parseIndex(raw, "index"));
    expect(e.code).toBe("bad_request");
    expect(e.message).toBe(`index must be a whole number >= 1, got ${JSON.stringify(raw)}`);
  });

  test("more than 16 digits are refused before any arithmetic; 16 digits past 2^53-1 by range", () => {
    expect(thrown(() => parseIndex("12345678901234567", "from")).message).toBe('from must be a whole number >= 1, got "12345678901234567"');
    expect(thrown(() => parseIndex("9007199254740992", "from")).message).toBe(`from must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}, got 9007199254740992`);
  });

  test("non-strings (a repeated query key is an array; an absent one undefined) are refused with their JSON", () => {
    expect(thrown(() => parseIndex(["1", "2"], "size")).message).toBe('size must be a whole number >= 1, got ["1","2"]');
    expect(thrown(() => parseIndex(undefined, "size")).message).toBe("size must be a whole number >= 1, got undefined");
    expect(thrown(() => parseIndex(7, "size")).code).toBe("bad_request");
  });

  test("the minimum is inclusive: min itself passes, min - 1 is refused with the range", () => {
    expect(parseIndex("0", "to", 0)).toBe(0);
    expect(parseIndex("5", "to", 5)).toBe(5);
    expect(thrown(() => parseIndex("4", "to", 5)).message).toBe(`to must be a whole number from 5 to ${Number.MAX_SAFE_INTEGER}, got 4`);
    expect(thrown(() => parseIndex("0", "index")).message).toBe(`index must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}, got 0`);
  });

  test("any decimal string of 1..16 digits within range parses to its value (property)", () => {
    check([fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.constantFrom("i", "from")], (n, name) => parseIndex(String(n), name) === n);
  });
});

describe("parseOptionalIndex and parseLimit", () => {
  test("absent is undefined, present is parsed with the same rules", () => {
    expect(parseOptionalIndex(undefined, "from")).toBeUndefined();
    expect(parseOptionalIndex("3", "from")).toBe(3);
    expect(parseOptionalIndex("0", "from", 0)).toBe(0);
    expect(thrown(() => parseOptionalIndex("0", "from")).code).toBe("bad_request");
  });

  test("limit: the fallback when absent, the max itself passes, max + 1 and 0 are refused", () => {
    expect(parseLimit(undefined, 100, 1000)).toBe(100);
    expect(parseLimit("1", 100, 1000)).toBe(1);
    expect(parseLimit("1000", 100, 1000)).toBe(1000);
    const over = thrown(() => parseLimit("1001", 100, 1000));
    expect([over.code, over.message]).toEqual(["bad_request", "limit must be at most 1000"]);
    expect(thrown(() => parseLimit("0", 100, 1000)).message).toBe(`limit must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}, got 0`);
  });
});

describe("parseQuery", () => {
  test("empty, null and undefined are an empty object without a prototype", () => {
    for (const q of ["", null, undefined]) {
      const out = parseQuery(q);
      expect(Object.keys(out)).toEqual([]);
      expect(Object.getPrototypeOf(out)).toBeNull();
    }
    // no prototype: a key named like an Object method is just a key
    expect(Object.entries(parseQuery("constructor=1&__proto__=2"))).toEqual([["constructor", "1"], ["__proto__", "2"]]);
    expect(parseQuery("toString=x").toString).toBe("x");
  });

  test("decodes names and values; + is a space; a key without = has the empty value; empty parts are skipped", () => {
    const q = parseQuery("a=1&b=x%20y+z+w&&c&d=&%C3%A9=%E2%9C%93&e=a=b&=v&%2B=%2B");
    expect({ ...q }).toEqual({ a: "1", b: "x y z w", c: "", d: "", "é": "✓", e: "a=b", "": "v", "+": "+" });
  });

  test("a repeated key becomes an array in order", () => {
    expect({ ...parseQuery("a=1&b=2&a=3&a=4") }).toEqual({ a: ["1", "3", "4"], b: "2" });
  });

  test.each([
    ["a=%ZZ", 'query parameter "a" is not valid percent-encoded UTF-8'],
    ["a=%C3", 'query parameter "a" is not valid percent-encoded UTF-8'],
    ["a=%FF%FE", 'query parameter "a" is not valid percent-encoded UTF-8'],
    ["%ZZ=1", "a query parameter name is not valid percent-encoded UTF-8"],
    ["%E2%82", "a query parameter name is not valid percent-encoded UTF-8"],
  ])("%s is a 400: %s", (q, message) => {
    const e = thrown(() => parseQuery(q));
    expect([e.code, e.message]).toEqual(["bad_request", message]);
  });

  test("4096 bytes pass, 4097 are refused", () => {
    const at = `a=${"x".repeat(4094)}`;
    expect(at.length).toBe(4096);
    expect((parseQuery(at).a as string).length).toBe(4094);
    const e = thrown(() => parseQuery(`${at}x`));
    expect([e.code, e.message]).toEqual(["bad_request", "the query string is longer than 4096 bytes"]);
  });

  test("32 parameters pass, 33 are refused (empty parts count: the bound is on the split)", () => {
    const params = (n: number): string => Array.from({ length: n }, (_, i) => `k${i}=${i}`).join("&");
    expect(Object.keys(parseQuery(params(32)))).toHaveLength(32);
    const e = thrown(() => parseQuery(params(33)));
    expect([e.code, e.message]).toEqual(["bad_request", "more than 32 query parameters"]);
    expect(thrown(() => parseQuery(`${params(32)}&`)).message).toBe("more than 32 query parameters");
  });

  test("any encoded key and value decode back to themselves (property)", () => {
    const text = fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 });
    check([text, text], (k, v) => {
      const out = parseQuery(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
      return Object.keys(out).length === 1 && out[k] === v;
    });
  });
});

describe("parseText", () => {
  test("1..max code points pass; a surrogate pair is one code point", () => {
    expect(parseText("a", "subject", 3)).toBe("a");
    expect(parseText("abc", "subject", 3)).toBe("abc");
    expect(parseText("😀😀😀", "subject", 3)).toBe("😀😀😀"); // 6 UTF-16 units, 3 code points
  });

  test("empty and max + 1 are refused with the count; a non-string is refused as not given once", () => {
    const empty = thrown(() => parseText("", "subject", 3));
    expect([empty.code, empty.message]).toEqual(["bad_request", "subject must be 1..3 characters, has 0"]);
    expect(thrown(() => parseText("abcd", "subject", 3)).message).toBe("subject must be 1..3 characters, has 4");
    expect(thrown(() => parseText("😀😀😀😀", "id", 3)).message).toBe("id must be 1..3 characters, has 4");
    const arr = thrown(() => parseText(["a", "b"], "subject", 3));
    expect([arr.code, arr.message]).toEqual(["bad_request", "subject must be given once, as a string"]);
    expect(thrown(() => parseText(undefined, "subject", 3)).message).toBe("subject must be given once, as a string");
  });
});
