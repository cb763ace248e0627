// The I-JSON boundary's refusals, one per path through the scanner, with the exact reason, JSON
// Pointer and message (a client reads the message; the byte offset must point at the fault). The
// JSONTestSuite cases in ijson.test.ts decide accept/refuse; these pin down the why and the where.
import { checkIJson, EncodingError, IJSON_DEPTH_MAX, IJsonError, isNoncharacter, numberIsExact, numberIsInteroperable, parseIJson } from "../../src/ledger/ijson";

const bytes = (t: string | number[]): Uint8Array => (typeof t === "string" ? Buffer.from(t, "utf8") : Uint8Array.from(t));

function refusal(t: string | number[], root = "r"): { reason: string; path: string; message: string; code: string } {
  try {
    checkIJson(bytes(t), root);
  } catch (err) {
    if (err instanceof IJsonError) return { reason: err.reason, path: err.path, message: err.message, code: err.code };
    throw err;
  }
  throw new Error(`accepted: ${JSON.stringify(t)}`);
}

const syntax = (path: string, what: string) => ({ reason: "syntax", path, message: `${path}: ${what}` });

describe("syntax refusals name the fault and its byte", () => {
  test.each([
    ["", syntax("r", "no JSON value at byte 0")],
    ["  \t\n\r ", syntax("r", "no JSON value at byte 6")],
    ["1 2", syntax("r", "text after the JSON value at byte 2")],
    ["{} x", syntax("r", "text after the JSON value at byte 3")],
    ["tru", syntax("r", "not a JSON value at byte 0")],
    ["nul", syntax("r", "not a JSON value at byte 0")],
    ["fals", syntax("r", "not a JSON value at byte 0")],
    ["truex", syntax("r", "text after the JSON value at byte 4")],
    ["[nulL]", syntax("r/0", "not a JSON value at byte 1")],
    ["[x]", syntax("r/0", "not a JSON value at byte 1")],
    ["[", syntax("r/0", "unexpected end of text at byte 1")],
    ['{"a":', syntax("r/a", "unexpected end of text at byte 5")],
    ["{1:2}", syntax("r", "expected a string key at byte 1")],
    ['{"a":1,}', syntax("r", "expected a string key at byte 7")],
    ['{"a" 1}', syntax("r/a", "expected ':' at byte 5")],
    ['{"a":1 "b":2}', syntax("r", "expected ',' or '}' at byte 7")],
    ['{"a":1', syntax("r", "expected ',' or '}' at byte 6")],
    ["[1 2]", syntax("r", "expected ',' or ']' at byte 3")],
    ["[1", syntax("r", "expected ',' or ']' at byte 2")],
    ['"\\u12G4"', syntax("r", "bad \\u escape at byte 3")],
    ['"\\u12"', syntax("r", "bad \\u escape at byte 3")],
    ['"abc', syntax("r", "unterminated string at byte 4")],
    ['{"abc', syntax("r", "unterminated key at byte 5")],
    ['"a\u0001"', syntax("r", "unescaped control character in a string at byte 2")],
    ['{"a\u001f":1}', syntax("r", "unescaped control character in a key at byte 3")],
    ['"\\x"', syntax("r", "bad escape in a string at byte 1")],
    ['{"\\a":1}', syntax("r", "bad escape in a key at byte 2")],
    ["-", syntax("r", "bad number at byte 1")],
    ["-a", syntax("r", "bad number at byte 1")],
    ["1.", syntax("r", "bad number: no digits after '.' at byte 2")],
    ["1.e5", syntax("r", "bad number: no digits after '.' at byte 2")],
    ["1e", syntax("r", "bad number: no digits in the exponent at byte 2")],
    ["1E+", syntax("r", "bad number: no digits in the exponent at byte 3")],
    ["1e-x", syntax("r", "bad number: no digits in the exponent at byte 3")],
    ["01", syntax("r", "text after the JSON value at byte 1")],
    ["+1", syntax("r", "not a JSON value at byte 0")],
    [".5", syntax("r", "not a JSON value at byte 0")],
  ])("%j", (text, want) => {
    expect(refusal(text)).toEqual({ ...want, code: "invalid_json" });
  });

  test("every escape JSON has is accepted, in strings and keys", () => {
    const all = '"\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041 \\u00e9 \\uD83D\\uDE00"';
    expect(parseIJson(bytes(all))).toBe("\" \\ / \b \f \n \r \t A é 😀");
    expect(parseIJson(bytes(`{${all}:1}`))).toEqual({ "\" \\ / \b \f \n \r \t A é 😀": 1 });
    expect(parseIJson(bytes('"\\u00Ea\\u00eA"'))).toBe("êê");
  });

  test("whitespace is space, tab, LF and CR, nothing else", () => {
    expect(parseIJson(bytes(" \t\n\r[ 1 ,\t2\n]\r "))).toEqual([1, 2]);
    expect(parseIJson(bytes('{ "a" : 1 , "b" : { } , "c" : [ ] }'))).toEqual({ a: 1, b: {}, c: [] });
    expect(refusal("\u000b1")).toMatchObject({ reason: "syntax" });
    expect(refusal("\u000c1")).toMatchObject({ reason: "syntax" });
    expect(refusal([0xc2, 0xa0, 0x31])).toMatchObject({ reason: "syntax" });
  });

  test("the literals", () => {
    expect(parseIJson(bytes("[true,false,null]"))).toEqual([true, false, null]);
  });
});

describe("nesting", () => {
  test(`${IJSON_DEPTH_MAX} levels pass, one more is too deep, at the pointer of the deepest container`, () => {
    expect(IJSON_DEPTH_MAX).toBe(64);
    expect(() => checkIJson(bytes("[".repeat(64) + "]".repeat(64)))).not.toThrow();
    const deep = refusal("[".repeat(65) + "]".repeat(65));
    expect(deep).toMatchObject({ reason: "too_deep", message: `${deep.path}: nesting deeper than 64` });
    expect(deep.path).toBe(`r${"/0".repeat(64)}`);
    const objs = refusal('{"a":'.repeat(65) + "1" + "}".repeat(65));
    expect(objs).toMatchObject({ reason: "too_deep", path: `r${"/a".repeat(64)}` });
    expect(() => checkIJson(bytes('{"a":'.repeat(64) + "1" + "}".repeat(64)))).not.toThrow();
  });
});

describe("strings: surrogates, noncharacters, UTF-8", () => {
  test.each([
    ['"\\udc00"', "lone_surrogate", "string holds a lone low surrogate \\udc00"],
    ['"\\udfff"', "lone_surrogate", "string holds a lone low surrogate \\udfff"],
    ['"\\ud800"', "lone_surrogate", "string holds a lone high surrogate \\ud800"],
    ['"\\udbffx"', "lone_surrogate", "string holds a lone high surrogate \\udbff"],
    ['"\\ud800\\n"', "lone_surrogate", "string holds a lone high surrogate \\ud800"],
    ['"\\ud800\\u0041"', "lone_surrogate", "string holds a lone high surrogate \\ud800"],
    ['"\\ud800\\ue000"', "lone_surrogate", "string holds a lone high surrogate \\ud800"],
    ['"\\ud800\\udbff"', "lone_surrogate", "string holds a lone high surrogate \\ud800"],
    ['"\\ufffe"', "noncharacter", "string holds the noncharacter U+FFFE"],
    ['"\\uFDD0"', "noncharacter", "string holds the noncharacter U+FDD0"],
    ['"\\ufdef"', "noncharacter", "string holds the noncharacter U+FDEF"],
    ['"\\ud83f\\udfff"', "noncharacter", "string holds the noncharacter U+1FFFF"],
    ['"\\udbff\\udffe"', "noncharacter", "string holds the noncharacter U+10FFFE"],
    ['"\u{fdd5}"', "noncharacter", "string holds the noncharacter U+FDD5"],
    ['"\u{2fffe}"', "noncharacter", "string holds the noncharacter U+2FFFE"],
  ])("%s", (text, reason, message) => {
    expect(refusal(text)).toEqual({ reason, path: "r", message: `r: ${message}`, code: "invalid_json" });
  });

  test("the code points next to the noncharacters and surrogates pass", () => {
    for (const cp of [0xfdcf, 0xfdf0, 0xfffd, 0xd7ff, 0xe000, 0x10000, 0x1fffd, 0x10fffd]) {
      const esc = cp > 0xffff ? String.fromCodePoint(cp).split("").map((u) => `\\u${u.charCodeAt(0).toString(16)}`).join("") : `\\u${cp.toString(16)}`;
      expect(parseIJson(bytes(`"${esc}"`))).toBe(String.fromCodePoint(cp));
      expect(parseIJson(bytes(`"${String.fromCodePoint(cp)}"`))).toBe(String.fromCodePoint(cp));
    }
    expect(parseIJson(bytes('"\\ud800\\udc00"'))).toBe("\u{10000}");
    expect(parseIJson(bytes('"\\udbff\\udffd"'))).toBe("\u{10fffd}");
  });

  test("isNoncharacter: U+FDD0..U+FDEF and the last two of every plane", () => {
    for (const cp of [0xfdd0, 0xfdef, 0xfffe, 0xffff, 0x1fffe, 0x10ffff]) expect(isNoncharacter(cp)).toBe(true);
    for (const cp of [0xfdcf, 0xfdf0, 0xfffd, 0x10000, 0x1fffd, 0x41]) expect(isNoncharacter(cp)).toBe(false);
  });

  test.each([
    [[0x22, 0x80, 0x22], "invalid_utf8", "string holds the byte 0x80, which starts no UTF-8 sequence (at byte 1)"],
    [[0x22, 0xc1, 0xbf, 0x22], "invalid_utf8", "string holds the byte 0xc1, which starts no UTF-8 sequence (at byte 1)"],
    [[0x22, 0xf5, 0x80, 0x80, 0x80, 0x22], "invalid_utf8", "string holds the byte 0xf5, which starts no UTF-8 sequence (at byte 1)"],
    [[0x22, 0xff, 0x22], "invalid_utf8", "string holds the byte 0xff, which starts no UTF-8 sequence (at byte 1)"],
    [[0x22, 0x61, 0xc3, 0x22], "invalid_utf8", "string holds a truncated UTF-8 sequence at byte 2"],
    [[0x22, 0xe2, 0x82], "invalid_utf8", "string holds a truncated UTF-8 sequence at byte 1"],
    [[0x22, 0xe2, 0x82, 0xc0, 0x22], "invalid_utf8", "string holds a truncated UTF-8 sequence at byte 1"],
    [[0x22, 0xe0, 0x80, 0x80, 0x22], "invalid_utf8", "string holds an overlong UTF-8 sequence at byte 1"],
    [[0x22, 0xe0, 0x9f, 0xbf, 0x22], "invalid_utf8", "string holds an overlong UTF-8 sequence at byte 1"],
    [[0x22, 0xf0, 0x8f, 0xbf, 0xbf, 0x22], "invalid_utf8", "string holds an overlong UTF-8 sequence at byte 1"],
    [[0x22, 0xed, 0xa0, 0x80, 0x22], "lone_surrogate", "string holds a UTF-8 encoded surrogate at byte 1"],
    [[0x22, 0xed, 0xbf, 0xbf, 0x22], "lone_surrogate", "string holds a UTF-8 encoded surrogate at byte 1"],
    [[0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], "invalid_utf8", "string holds a code point above U+10FFFF at byte 1"],
  ])("UTF-8 %j", (b, reason, message) => {
    expect(refusal(b)).toEqual({ reason, path: "r", message: `r: ${message}`, code: "invalid_json" });
  });

  test("the smallest and largest sequence of each length pass", () => {
    for (const cp of [0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0x10000, 0x10fffd]) {
      expect(parseIJson(bytes(`"${String.fromCodePoint(cp)}"`))).toBe(String.fromCodePoint(cp));
    }
    expect(parseIJson(bytes('"\u007f"'))).toBe("\u007f");
  });

  test("a key that is not I-JSON is reported at its own pointer, spelled as sent, with the key's message", () => {
    expect(refusal('{"a":{"x\\ud800":1}}')).toEqual({ reason: "lone_surrogate", path: "r/a/x\\ud800", message: "r/a/x\\ud800: key holds a lone high surrogate \\ud800", code: "invalid_json" });
    expect(refusal('{"a/b~\\uffff":1}')).toMatchObject({ reason: "noncharacter", path: "r/a~1b~0\\uffff", message: "r/a~1b~0\\uffff: key holds the noncharacter U+FFFF" });
    expect(refusal([0x7b, 0x22, 0x6b, 0xff, 0x22, 0x3a, 0x31, 0x7d])).toMatchObject({ reason: "invalid_utf8", path: "r/k\ufffd" });
    expect(refusal('{"k\\"q\\udc00":1}')).toMatchObject({ reason: "lone_surrogate", path: 'r/k\\"q\\udc00' });
    // an unterminated key with a bad byte: the shown key stops at the end of the text
    expect(refusal([0x7b, 0x22, 0x6b, 0xff])).toMatchObject({ reason: "invalid_utf8", path: "r/k\ufffd" });
  });

  test("a syntax fault inside a key stays a syntax fault at the object", () => {
    expect(refusal('{"\\q":1}')).toMatchObject({ reason: "syntax", path: "r" });
  });
});

describe("keys and pointers", () => {
  test("a duplicate key, escaped or not, at its pointer", () => {
    expect(refusal('{"a":1,"a":2}')).toEqual({ reason: "duplicate_key", path: "r/a", message: 'r/a: key "a" appears more than once', code: "invalid_json" });
    expect(refusal('{"x":{"a":1,"\\u0061":2}}')).toMatchObject({ reason: "duplicate_key", path: "r/x/a" });
    expect(refusal('{"~/":1,"~/":2}')).toMatchObject({ reason: "duplicate_key", path: "r/~0~1" });
    expect(parseIJson(bytes('{"a":{"a":1},"b":{"a":2}}'))).toEqual({ a: { a: 1 }, b: { a: 2 } });
  });

  test("the root defaults to the empty pointer", () => {
    let caught: unknown;
    try {
      checkIJson(bytes("[1,]"));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(IJsonError);
    expect(caught).toMatchObject({ path: "/1", message: "/1: not a JSON value at byte 3", name: "IJsonError", details: { reason: "syntax", path: "/1" } });
  });
});

describe("numbers", () => {
  test("an inexact number, shown up to 40 characters", () => {
    expect(refusal("12345678901234567890")).toEqual({
      reason: "number_not_exact", path: "r", code: "invalid_json",
      message: "r: the number 12345678901234567890 would not keep its value in canonical JSON (RFC 8785 writes IEEE-754 doubles)",
    });
    const long = `0.${"1".repeat(60)}`;
    expect(refusal(long).message).toBe(`r: the number ${long.slice(0, 40)}… would not keep its value in canonical JSON (RFC 8785 writes IEEE-754 doubles)`);
    const forty = `0.${"1".repeat(38)}`;
    expect(refusal(forty).message).toBe(`r: the number ${forty} would not keep its value in canonical JSON (RFC 8785 writes IEEE-754 doubles)`);
  });

  test("an integer beyond 2^53 that is an exact double", () => {
    expect(refusal("[1e20]")).toEqual({
      reason: "number_not_exact", path: "r/0", code: "invalid_json",
      message: "r/0: the number 1e20 is an integer beyond ±2^53, which readers do not agree on (RFC 7493 2.2)",
    });
  });

  test("a literal longer than 400 characters is refused even when zero padding keeps it exact", () => {
    expect(() => checkIJson(bytes(`1.${"0".repeat(398)}`))).not.toThrow(); // 400 characters
    expect(refusal(`1.${"0".repeat(399)}`)).toMatchObject({ reason: "number_not_exact" }); // 401
    expect(refusal(`1.${"0".repeat(399)}`).message).toContain(`the number 1.${"0".repeat(38)}…`);
  });

  test("numberIsExact and numberIsInteroperable at their edges", () => {
    for (const t of ["0", "-0", "0.0", "0e5", "100", "1e2", "1E2", "1e+2", "10.50", "0.001", "1e-7", "-12.5e-3", "123e-2", "5e-324", "1e21", "0.1"]) expect(numberIsExact(t)).toBe(true);
    for (const t of ["1e400", "-1e400", "1e-400", "0.1000000000000000055511151231257827", "9007199254740993", "x", "1.5e"]) expect(numberIsExact(t)).toBe(false);
    expect(numberIsInteroperable(2 ** 53)).toBe(true);
    expect(numberIsInteroperable(-(2 ** 53))).toBe(true);
    expect(numberIsInteroperable(2 ** 53 + 2)).toBe(false);
    expect(numberIsInteroperable(-(2 ** 53 + 2))).toBe(false);
    expect(numberIsInteroperable(1e20)).toBe(false);
    expect(numberIsInteroperable(1e21)).toBe(true);
    expect(numberIsInteroperable(9.5e20)).toBe(false);
    expect(numberIsInteroperable(1.5)).toBe(true);
    expect(numberIsInteroperable(2 ** 60 + 0.5)).toBe(false);
  });

  test("exact numbers come through with their value", () => {
    expect(parseIJson(bytes("[-0, 0.5, 1e21, 9007199254740992, -1.25e-5, 10]"))).toEqual([-0, 0.5, 1e21, 9007199254740992, -1.25e-5, 10]);
  });
});

describe("encodings and byte-order marks", () => {
  test.each([
    [[0xfe, 0xff, 0x00, 0x5b]],
    [[0xff, 0xfe, 0x5b, 0x00]],
    [[0x00, 0x5b]],
    [[0x5b, 0x00]],
    [[0x00, 0x00, 0x00, 0x5b]],
  ])("%j is not UTF-8: a 415", (b) => {
    let caught: unknown;
    try {
      checkIJson(bytes(b));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(EncodingError);
    expect(caught).toMatchObject({ code: "unsupported_media_type", name: "EncodingError", message: "the body is not UTF-8 (it looks like UTF-16 or UTF-32); send UTF-8 JSON" });
  });

  test("a one-byte text is not judged by the NUL pattern; 0xFE or 0xFF alone is invalid UTF-8 inside a string only", () => {
    expect(refusal([0x00])).toMatchObject({ reason: "syntax" });
    expect(parseIJson(bytes("1"))).toBe(1);
    expect(refusal([0xfe, 0x31])).toMatchObject({ reason: "syntax" });
    expect(refusal([0xff, 0x31])).toMatchObject({ reason: "syntax" });
    expect(refusal([0x31, 0xff])).toMatchObject({ reason: "syntax" });
  });

  test("a UTF-8 byte-order mark is refused with its own reason; a partial one is a syntax fault", () => {
    expect(refusal([0xef, 0xbb, 0xbf, 0x31])).toEqual({ reason: "bom", path: "r", message: "r: a byte-order mark is not allowed (RFC 8259 8.1)", code: "invalid_json" });
    expect(refusal([0xef, 0xbb, 0xbf])).toMatchObject({ reason: "bom" });
    expect(refusal([0xef, 0xbb, 0x31])).toMatchObject({ reason: "syntax" });
    expect(refusal([0xef, 0x31, 0xbf])).toMatchObject({ reason: "syntax" });
    expect(refusal([0x31, 0xbb, 0xbf])).toMatchObject({ reason: "syntax" });
    expect(refusal([0xef, 0xbb])).toMatchObject({ reason: "syntax" });
  });

  test("a BOM-like sequence inside a string is a plain character (U+FEFF), accepted", () => {
    expect(parseIJson(bytes([0x22, 0xef, 0xbb, 0xbf, 0x22]))).toBe("\ufeff");
  });
});

describe("the edges of the scanner's character classes", () => {
  test("a \\u escape takes exactly the 22 hex digits 0-9 A-F a-f, with their value; every other byte is a bad escape at the escape's digits", () => {
    const hex = "0123456789abcdefABCDEF";
    for (let b = 0; b < 256; b++) {
      const text = [...bytes('"\\u00'), b, ...bytes('0"')];
      const ch = String.fromCharCode(b);
      if (hex.includes(ch)) {
        expect(parseIJson(Uint8Array.from(text))).toBe(String.fromCharCode(parseInt(`00${ch}0`, 16)));
      } else {
        expect(refusal(text)).toEqual({ ...syntax("r", "bad \\u escape at byte 3"), code: "invalid_json" });
      }
    }
  });

  test("a key spelled with a leading U+FEFF is shown with it", () => {
    // The refused key is shown as sent: a BOM-like first character of a key is part of the key.
    expect(refusal('{"\u{feff}k\\ud800":1}')).toMatchObject({ reason: "lone_surrogate", path: "r/\u{feff}k\\ud800" });
  });
});

describe("number literals at the length limit", () => {
  test("a 400-character literal is judged whole: its last digit can make it inexact", () => {
    const exact = `1.${"0".repeat(398)}`;
    const inexact = `1.${"0".repeat(397)}1`;
    expect(inexact).toHaveLength(400);
    expect(() => checkIJson(bytes(exact))).not.toThrow();
    expect(refusal(inexact)).toEqual({
      reason: "number_not_exact", path: "r", code: "invalid_json",
      message: `r: the number ${inexact.slice(0, 40)}… would not keep its value in canonical JSON (RFC 8785 writes IEEE-754 doubles)`,
    });
  });

  test("numberIsExact vouches only for JSON number literals, whatever Number() makes of other text", () => {
    // Each of these is a finite Number(), but none is a JSON literal (RFC 8259 6), so none is exact.
    for (const t of ["", " ", "+1", "+0", "5.", " 1", "1 ", "0x10", ".5", "1_0", "Infinity"]) expect(numberIsExact(t)).toBe(false);
  });
});
