import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { checkIJson, EncodingError, IJSON_DEPTH_MAX, IJsonError, isNoncharacter, numberIsExact, numberIsInteroperable, parseIJson, parseIJsonCanonical } from "../../src/ledger/ijson";
import { canonicalJson } from "../../src/ledger/canonical";
import { testSeed } from "../support/independent";

const SUITE = path.join(__dirname, "..", "fixtures", "json-test-suite", "test_parsing");
const files = fs.readdirSync(SUITE).filter((f) => f.endsWith(".json")).sort();
const bytesOf = (f: string): Uint8Array => new Uint8Array(fs.readFileSync(path.join(SUITE, f)));
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** What the boundary answers for a text: "accept", or the refusal's reason ("encoding" for a 415). */
function answer(b: Uint8Array): string {
  try {
    checkIJson(b);
    return "accept";
  } catch (err) {
    if (err instanceof IJsonError) return err.reason;
    if (err instanceof EncodingError) return "encoding";
    throw err;
  }
}

// Valid JSON that is not I-JSON (the suite's README asks each to be named, with why).
const Y_REFUSED: Record<string, string> = {
  "y_object_duplicated_key.json": "duplicate_key", // RFC 7493 2.3: member names must be unique
  "y_object_duplicated_key_and_value.json": "duplicate_key",
  "y_string_escaped_noncharacter.json": "noncharacter", // \uFFFF: RFC 7493 2.1
  "y_string_last_surrogates_1_and_2.json": "noncharacter", // \uDBFF\uDFFF is U+10FFFF
  "y_string_nonCharacterInUTF-8_U+10FFFF.json": "noncharacter",
  "y_string_nonCharacterInUTF-8_U+FFFF.json": "noncharacter",
  "y_string_unicode_U+10FFFE_nonchar.json": "noncharacter",
  "y_string_unicode_U+1FFFE_nonchar.json": "noncharacter",
  "y_string_unicode_U+FDD0_nonchar.json": "noncharacter",
  "y_string_unicode_U+FFFE_nonchar.json": "noncharacter",
};
// Every i_ file is refused. One needs more than exactness: 100000000000000000000 is exactly 1e20,
// a double, but an integer beyond 2^53, which RFC 7493 2.2 calls not interoperable; it is refused
// with the same reason (see numberIsInteroperable).
const I_ACCEPTED: Record<string, string> = {};

describe("the I-JSON boundary on JSONTestSuite's 318 parsing cases", () => {
  test("the suite is all there", () => {
    expect(files).toHaveLength(318);
    expect(files.filter((f) => f.startsWith("y_"))).toHaveLength(95);
    expect(files.filter((f) => f.startsWith("n_"))).toHaveLength(188);
    expect(files.filter((f) => f.startsWith("i_"))).toHaveLength(35);
  });

  test.each(files.filter((f) => f.startsWith("n_")))("refuses %s", (f) => {
    expect(answer(bytesOf(f))).not.toBe("accept");
  });

  test.each(files.filter((f) => f.startsWith("i_")))("decides %s as DESIGN.md says", (f) => {
    const got = answer(bytesOf(f));
    if (f in I_ACCEPTED) expect(got).toBe("accept");
    else expect(got).not.toBe("accept");
  });

  test.each(files.filter((f) => f.startsWith("y_")))("accepts %s unless it is valid JSON but not I-JSON", (f) => {
    const b = bytesOf(f);
    const got = answer(b);
    if (f in Y_REFUSED) {
      expect(got).toBe(Y_REFUSED[f]);
      return;
    }
    expect(got).toBe("accept");
    // What the boundary accepts is exactly what JSON.parse reads, and canonicalizes to text it accepts again.
    const v = parseIJson(b);
    expect(v).toEqual(JSON.parse(Buffer.from(b).toString("utf8")));
    expect(answer(enc(canonicalJson(v)))).toBe("accept");
  });

  test("the reasons of the i_ classes are the specific ones", () => {
    expect(answer(bytesOf("i_string_UTF-16LE_with_BOM.json"))).toBe("encoding");
    expect(answer(bytesOf("i_string_utf16BE_no_BOM.json"))).toBe("encoding");
    expect(answer(bytesOf("i_structure_UTF-8_BOM_empty_object.json"))).toBe("bom");
    expect(answer(bytesOf("i_structure_500_nested_arrays.json"))).toBe("too_deep");
    expect(answer(bytesOf("i_string_invalid_lonely_surrogate.json"))).toBe("lone_surrogate");
    expect(answer(bytesOf("i_string_UTF8_surrogate_U+D800.json"))).toBe("lone_surrogate");
    expect(answer(bytesOf("i_string_overlong_sequence_2_bytes.json"))).toBe("invalid_utf8");
    expect(answer(bytesOf("i_string_iso_latin_1.json"))).toBe("invalid_utf8");
    expect(answer(bytesOf("i_number_huge_exp.json"))).toBe("number_not_exact");
    expect(answer(bytesOf("i_number_real_underflow.json"))).toBe("number_not_exact");
    expect(answer(bytesOf("i_number_very_big_negative_int.json"))).toBe("number_not_exact");
    expect(answer(bytesOf("i_number_too_big_pos_int.json"))).toBe("number_not_exact");
  });
});

describe("the issue's cases, with the path of the offending value", () => {
  const refusal = (text: string | Uint8Array): IJsonError => {
    try {
      checkIJson(typeof text === "string" ? enc(text) : text, "body");
    } catch (err) {
      if (err instanceof IJsonError) return err;
      throw err;
    }
    throw new Error(`accepted: ${String(text)}`);
  };

  test("a lone surrogate, escaped or UTF-8 encoded, in a value or a key", () => {
    expect(refusal('{"subject":"x\\ud800y"}')).toMatchObject({ reason: "lone_surrogate", path: "body/subject" });
    expect(refusal('{"a":["\\udc00"]}')).toMatchObject({ reason: "lone_surrogate", path: "body/a/0" });
    expect(refusal('{"a":"\\ud800\\u0041"}')).toMatchObject({ reason: "lone_surrogate" });
    expect(refusal(new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22]))).toMatchObject({ reason: "lone_surrogate" });
    expect(refusal('{"k\\udfff":1}')).toMatchObject({ reason: "lone_surrogate", path: "body/k\\udfff" });
    expect(refusal('{"a":{"x/\\ufdd0":1}}')).toMatchObject({ reason: "noncharacter", path: "body/a/x~1\\ufdd0" });
  });

  test("numbers whose canonical form would change are refused; exact ones pass", () => {
    for (const n of ["12345678901234567890", "3.14159265358979323846", "1e-400", "1e400", "-1e400", "9007199254740993", "0.30000000000000000001",
      "9007199254740994", "100000000000000000000", "1e20", "-1.5e20", "999999999999999868928"]) {
      expect(refusal(`{"data":{"v":${n}}}`)).toMatchObject({ reason: "number_not_exact", path: "body/data/v" });
    }
    for (const n of ["0.1", "1e21", "9007199254740992", "-9007199254740992", "1.5e300", "123456789012345.5", "-0", "0", "1.0", "1E2", "100", "123.456e78", "5e-324", "1.7976931348623157e308", "0e99999999999999999999"]) {
      expect(() => checkIJson(enc(`[${n}]`))).not.toThrow();
    }
  });

  test("duplicate keys are refused, with the key's path", () => {
    expect(refusal('{"subject":"a","subject":"b"}')).toMatchObject({ reason: "duplicate_key", path: "body/subject" });
    expect(refusal('{"d":{"a/b~":1,"a/b~":2}}')).toMatchObject({ reason: "duplicate_key", path: "body/d/a~1b~0" });
    // Escapes that decode to the same key are the same key.
    expect(refusal('{"a":1,"\\u0061":2}')).toMatchObject({ reason: "duplicate_key" });
    // However far apart, before or after the keys stop ascending, ASCII or not, short or long.
    expect(refusal('{"a":1,"b":2,"c":3,"a":4}')).toMatchObject({ reason: "duplicate_key", path: "body/a" });
    expect(refusal('{"c":1,"a":2,"b":3,"c":4}')).toMatchObject({ reason: "duplicate_key", path: "body/c" });
    expect(refusal('{"a":1,"b":2,"a":3}')).toMatchObject({ reason: "duplicate_key", path: "body/a" });
    expect(refusal('{"é":1,"😀":2,"é":3}')).toMatchObject({ reason: "duplicate_key", path: "body/é" });
    const long = "k".repeat(100);
    expect(refusal(`{"${long}":1,"z":2,"${long}":3}`)).toMatchObject({ reason: "duplicate_key", path: `body/${long}` });
    expect(() => checkIJson(enc(`{"${long}":1,"${long}j":2}`))).not.toThrow();
  });

  test(`nesting: ${IJSON_DEPTH_MAX} levels pass, one more is refused, 3,000 never overflow the stack`, () => {
    const nest = (n: number): string => "[".repeat(n) + "]".repeat(n);
    expect(() => checkIJson(enc(nest(IJSON_DEPTH_MAX)))).not.toThrow();
    expect(refusal(nest(IJSON_DEPTH_MAX + 1))).toMatchObject({ reason: "too_deep" });
    expect(refusal(nest(3000))).toMatchObject({ reason: "too_deep" });
    expect(refusal('{"a":'.repeat(100000) + "1" + "}".repeat(100000))).toMatchObject({ reason: "too_deep" });
  });

  test("invalid UTF-8 is refused, never turned into U+FFFD", () => {
    expect(refusal(new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]))).toMatchObject({ reason: "invalid_utf8", path: "body/a" });
    expect(refusal(new Uint8Array([0x22, 0xc0, 0xaf, 0x22]))).toMatchObject({ reason: "invalid_utf8" });
    expect(refusal(new Uint8Array([0x22, 0xf4, 0x90, 0x80, 0x80, 0x22]))).toMatchObject({ reason: "invalid_utf8" });
    expect(refusal(new Uint8Array([0x22, 0xe2, 0x82, 0x22]))).toMatchObject({ reason: "invalid_utf8" });
  });

  test("noncharacters, escaped or raw; reserved but assigned-able code points pass", () => {
    expect(refusal('["\\uFDD0"]')).toMatchObject({ reason: "noncharacter", path: "body/0" });
    expect(refusal('["\\ufdef"]')).toMatchObject({ reason: "noncharacter" });
    expect(refusal('["\\ud83f\\udffe"]')).toMatchObject({ reason: "noncharacter" }); // U+1FFFE
    expect(refusal(enc('["\u{10FFFF}"]'))).toMatchObject({ reason: "noncharacter" });
    expect(() => checkIJson(enc('["\\uFDCF\\uFDF0\\uFFFD\u{1BFFF}😀"]'))).not.toThrow();
  });

  test("syntax: empty, trailing text, a BOM", () => {
    expect(refusal("")).toMatchObject({ reason: "syntax" });
    expect(refusal("{} {}")).toMatchObject({ reason: "syntax" });
    expect(refusal(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]))).toMatchObject({ reason: "bom" });
  });

  test("-0 passes and is recorded as 0: the one number whose canonical text differs from what may be sent (same value)", () => {
    expect(canonicalJson(parseIJson(enc('{"v":-0,"w":-0.0,"x":-0e5}')))).toBe('{"v":0,"w":0,"x":0}');
  });

  test("__proto__ is an own key like any other", () => {
    const v = parseIJson(enc('{"__proto__":{"x":1}}')) as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
  });
});

describe("properties (fast-check; the seed is printed on failure)", () => {
  const seed = testSeed(); // RESONETICS_SEED=<the seed in a failing test's name> reproduces it
  const params = { seed, numRuns: 500 };

  test(`every double's JSON form is exact, and the boundary agrees with RFC 8785 (seed ${seed})`, () => {
    fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (d) => {
      expect(numberIsExact(JSON.stringify(d))).toBe(true);
      expect(numberIsExact(canonicalJson(d))).toBe(true);
    }), params);
  });

  test(`canonical JSON of any value without noncharacters is accepted and parses back equal (seed ${seed})`, () => {
    const noNonchar = (s: string): boolean => ![...s].some((c) => isNoncharacter(c.codePointAt(0) as number));
    const interoperable = (v: unknown): boolean =>
      typeof v === "number" ? numberIsInteroperable(v) : typeof v === "object" && v !== null ? Object.values(v).every(interoperable) : true;
    const value = fc.jsonValue({ maxDepth: 6, stringUnit: "grapheme" }).filter((v) => noNonchar(JSON.stringify(v)) && interoperable(v));
    fc.assert(fc.property(value, (v) => {
      const text = canonicalJson(v);
      expect(parseIJson(enc(text))).toEqual(JSON.parse(text));
    }), params);
  });

  // The scanner's canonical flag against the definition: the text is what canonicalJson (the
  // canonicalize package, RFC 8785) writes for the value JSON.parse reads from it.
  const canonicalByDefinition = (text: string): boolean => canonicalJson(JSON.parse(text)) === text;
  const noNoncharacter = (s: string): boolean => ![...s].some((c) => isNoncharacter(c.codePointAt(0) as number));
  const interoperableValue = (v: unknown): boolean =>
    typeof v === "number" ? numberIsInteroperable(v) : typeof v === "object" && v !== null ? Object.values(v).every(interoperableValue) : true;
  const ijsonValue = fc.jsonValue({ maxDepth: 5, stringUnit: "grapheme" }).filter((v) => noNoncharacter(JSON.stringify(v)) && interoperableValue(v));
  /** The flag for a text that is I-JSON; undefined for one the boundary refuses (no flag to compare). */
  const flag = (text: string): boolean | undefined => {
    try {
      return parseIJsonCanonical(enc(text)).canonical;
    } catch (err) {
      if (err instanceof IJsonError) return undefined;
      throw err;
    }
  };

  test(`the canonical flag: a value's canonical text is canonical; its other spellings are exactly when canonicalize agrees (seed ${seed})`, () => {
    const spellings = (v: unknown): string[] => [
      JSON.stringify(v), // keys in insertion order
      JSON.stringify(v, null, 1),
      ` ${canonicalJson(v)}`,
      `${canonicalJson(v)}\n`,
      canonicalJson(v).replace(/\//g, "\\/"),
      canonicalJson(v).replace(/"([^"\\]*)"/, (_m, body: string) => `"${[...body].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`).join("")}"`),
      canonicalJson(v).replace(/"([^"\\]*)"/, (_m, body: string) => `"${[...body].map((c) => `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`).join("")}"`),
      canonicalJson(v).replace(/([0-9])([,}\]]|$)/, "$1.0$2"),
      canonicalJson(v).replace(/([0-9])([,}\]]|$)/, "$1e0$2"),
      canonicalJson(v).replace(/(^|[[:,])0/, "$1-0"),
    ];
    fc.assert(fc.property(ijsonValue, (v) => {
      expect(flag(canonicalJson(v))).toBe(true);
      for (const text of spellings(v)) {
        const got = flag(text);
        if (got !== undefined) expect({ text, canonical: got }).toEqual({ text, canonical: canonicalByDefinition(text) });
      }
    }), params);
  });

  test(`the canonical flag on strings spelled with every kind of escape, as values and as keys (seed ${seed})`, () => {
    const piece = fc.oneof(
      fc.constantFrom("a", "é", "😀", "/", "\u007f", "\u2028"),
      fc.constantFrom("\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"),
      fc.tuple(fc.integer({ min: 0, max: 0x7f }), fc.boolean()).map(([u, upper]) => `\\u${(upper ? u.toString(16).toUpperCase() : u.toString(16)).padStart(4, "0")}`),
      fc.constantFrom("\\u00e9", "\\u00E9", "\\ud83d\\ude00", "\\u2028"),
    );
    fc.assert(fc.property(fc.array(piece, { maxLength: 8 }), fc.array(piece, { maxLength: 4 }), (value, key) => {
      for (const text of [`"${value.join("")}"`, `{"${key.join("")}":"${value.join("")}"}`, `{"${key.join("")}":1,"~":[2]}`, `["${value.join("")}",{"${key.join("")}":null}]`]) {
        const got = flag(text);
        if (got !== undefined) expect({ text, canonical: got }).toEqual({ text, canonical: canonicalByDefinition(text) });
      }
    }), { seed, numRuns: 2000 });
  });

  test(`keys in any order, repeated or not, spelled plainly or escaped: refused exactly when two are the same key (seed ${seed})`, () => {
    // Each spelling with the key it means: escapes, non-ASCII, and ASCII keys on both sides of the
    // length the scanner builds a char at a time.
    const spelled: Array<[string, string]> = [
      ["a", "a"], ["\\u0061", "a"], ["b", "b"], ["B", "B"], ["é", "é"], ["\\u00e9", "é"], ["😀", "😀"], ["ﬀ", "ﬀ"],
      ["10", "10"], ["9", "9"], ["", ""], ["k".repeat(64), "k".repeat(64)], ["k".repeat(65), "k".repeat(65)], ["k".repeat(64) + "é", "k".repeat(64) + "é"],
    ];
    fc.assert(fc.property(fc.array(fc.constantFrom(...spelled), { maxLength: 7 }), (members) => {
      const text = `{${members.map(([k], i) => `"${k}":${i}`).join(",")}}`;
      const meant = members.map(([, m]) => m);
      const repeats = new Set(meant).size !== meant.length;
      const got = flag(text);
      expect({ text, refused: got === undefined }).toEqual({ text, refused: repeats });
      if (got !== undefined) expect({ text, canonical: got }).toEqual({ text, canonical: canonicalByDefinition(text) });
    }), { seed, numRuns: 2000 });
  });

  test(`the canonical flag of decimals with and without an exponent, short and long (seed ${seed})`, () => {
    const digits = (min: number, max: number): fc.Arbitrary<string> => fc.array(fc.constantFrom(..."0123456789"), { minLength: min, maxLength: max }).map((d) => d.join(""));
    const literal = fc.tuple(fc.boolean(), fc.oneof(fc.constant("0"), fc.tuple(fc.constantFrom(..."123456789"), digits(0, 12)).map(([a, b]) => a + b)), digits(1, 12), fc.option(fc.integer({ min: -30, max: 30 })))
      .map(([neg, int, frac, exp]) => `${neg ? "-" : ""}${int}.${frac}${exp === null ? "" : `e${exp}`}`);
    fc.assert(fc.property(literal, (n) => {
      const text = `[${n}]`;
      const got = flag(text);
      if (got !== undefined) expect({ text, canonical: got }).toEqual({ text, canonical: canonicalByDefinition(text) });
    }), { seed, numRuns: 3000 });
    // Hand-picked: trailing zeros, the exponent forms Number writes below 1e-6, -0 spelled as a decimal, 15 and 16 digits.
    for (const [n, canonical] of [["1.50", false], ["250.5", true], ["0.000001", true], ["0.0000001", false], ["-0.0", false], ["0.5", true],
      ["12345678901234.5", true], ["123456789012345.5", true], ["1234567890123.450", false], ["-99999999999999.9", true],
      ["-0", false], ["0", true], ["-1", true], ["-10", true], ["-0.5", true]] as const) {
      expect({ n, canonical: flag(`[${n}]`) }).toEqual({ n, canonical });
    }
  });

  test("the canonical flag of every \\u escape of U+0000..U+007F, lower and upper case, in a value and in a key", () => {
    for (let u = 0; u < 0x80; u++) {
      for (const hex of [u.toString(16).padStart(4, "0"), u.toString(16).toUpperCase().padStart(4, "0")]) {
        for (const text of [`"\\u${hex}"`, `{"\\u${hex}":0}`]) {
          expect({ text, canonical: flag(text) }).toEqual({ text, canonical: canonicalByDefinition(text) });
        }
      }
    }
  });

  test(`the canonical flag on objects whose keys come in any order (seed ${seed})`, () => {
    const key = fc.constantFrom("a", "b", "B", "aa", "é", "😀", "ﬀ", "10", "9", "", "~", "_");
    fc.assert(fc.property(fc.uniqueArray(key, { maxLength: 6 }), (keys) => {
      const text = `{${keys.map((k, i) => `"${k}":${i}`).join(",")}}`;
      expect({ text, canonical: flag(text) }).toEqual({ text, canonical: canonicalByDefinition(text) });
    }), params);
  });

  test(`random bytes: only a typed refusal, and what is accepted is strict UTF-8 JSON (seed ${seed})`, () => {
    const alphabet = fc.constantFrom(..."{}[]\":,\\ truefalsnul0123456789.eE+-u".split("").map((c) => c.charCodeAt(0)), 0xed, 0xa0, 0x80, 0xc0, 0xff, 0xef, 0xbb, 0xbf, 0xf0, 0x9f, 0x98, 0x80, 0x00);
    fc.assert(fc.property(fc.array(alphabet, { maxLength: 40 }), (arr) => {
      const b = new Uint8Array(arr);
      const got = answer(b);
      if (got === "accept") {
        const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(b);
        expect(() => JSON.parse(text)).not.toThrow();
        expect({ text, canonical: parseIJsonCanonical(b).canonical }).toEqual({ text, canonical: canonicalByDefinition(text) });
      }
    }), { seed, numRuns: 3000 });
  });

  test(`strings with lone surrogates are always refused, never stored changed (seed ${seed})`, () => {
    fc.assert(fc.property(fc.string({ unit: "binary" }), (s) => {
      const text = JSON.stringify({ s });
      const lone = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
      const nonchar = [...s].some((c) => isNoncharacter(c.codePointAt(0) as number));
      const got = answer(enc(text.replace(/[\ud800-\udfff]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`)));
      if (lone && nonchar) expect(["lone_surrogate", "noncharacter"]).toContain(got);
      else if (lone) expect(got).toBe("lone_surrogate");
      else if (nonchar) expect(got).toBe("noncharacter");
      else expect(got).toBe("accept");
    }), params);
  });
});
