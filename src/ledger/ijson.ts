/**
 * The input boundary: I-JSON (RFC 7493) and nothing else, because only I-JSON has one canonical
 * form (RFC 8785) that every verifier rebuilds byte for byte. A text is accepted only when it is
 * valid UTF-8 (no byte-order mark), every string and key is free of surrogates and noncharacters
 * (RFC 7493 2.1, escaped or not), no object repeats a key, every number keeps its exact value
 * through the canonical form, and nesting is at most IJSON_DEPTH_MAX deep.
 *
 * Why a tokenizer of our own rather than a library: JSON.parse (and every JSON parser on npm we
 * looked at) silently keeps the last duplicate key, rounds 12345678901234567890, turns 1e400 into
 * Infinity and invalid UTF-8 into U+FFFD: each a silent change of what the client sent. This pass
 * checks the bytes in one linear scan and only then lets JSON.parse build the value, which is then
 * exactly the text's meaning (no duplicates, no rounding left to hide).
 */
import { LedgerError } from "../util/errors";

/** Nesting limit: a record body is an object holding data; 64 levels is far beyond any governance record and keeps recursion shallow. */
export const IJSON_DEPTH_MAX = 64;

export type IJsonReason =
  | "syntax"
  | "invalid_utf8"
  | "bom"
  | "lone_surrogate"
  | "noncharacter"
  | "duplicate_key"
  | "number_not_exact"
  | "too_deep";

/** A text that is not I-JSON: a stable reason and where: `root` followed by the JSON Pointer (RFC 6901) of the value or key, e.g. "body/data/x". */
export class IJsonError extends LedgerError {
  constructor(readonly reason: IJsonReason, readonly path: string, message: string) {
    super("invalid_json", `${path}: ${message}`, { reason, path });
    this.name = "IJsonError";
  }
}

/** A text in another encoding than UTF-8 (UTF-16/32, by BOM or NUL pattern): a media type matter, 415. */
export class EncodingError extends LedgerError {
  constructor(message: string) {
    super("unsupported_media_type", message);
    this.name = "EncodingError";
  }
}

/** Only ever given bytes the scanner validated; fatal, so a bug there would throw rather than substitute U+FFFD. */
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** For showing a refused key as it was sent, never for a value the ledger keeps. */
const LENIENT = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

const pointerToken = (key: string): string => key.replace(/~/g, "~0").replace(/\//g, "~1");

/** U+FDD0..U+FDEF and the last two code points of every plane (RFC 7493 2.1, Unicode's noncharacters). */
export const isNoncharacter = (cp: number): boolean => (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;

/**
 * The decimal magnitude of a JSON number literal, normalized: "" for zero, else digits (no leading or
 * trailing zeros) + "e" + exponent. No sign: a nonzero literal and its double always share it.
 */
function decimalKey(text: string): string {
  const m = /^-?([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/.exec(text);
  if (m === null) return "?";
  const frac = m[2] ?? "";
  let digits = (m[1] + frac).replace(/^0+/, "");
  if (digits === "") return "";
  let exp = Number(m[3] ?? "0") - frac.length;
  const trimmed = digits.replace(/0+$/, "");
  exp += digits.length - trimmed.length;
  digits = trimmed;
  return `${digits}e${exp}`;
}

/**
 * True when the literal's decimal value is the value of its IEEE-754 double's shortest round-trip
 * form, which is what RFC 8785 writes: 0.1, 1e21 and 9007199254740992 pass;
 * 12345678901234567890, 1e400 and 1e-400 do not.
 */
export function numberIsExact(text: string): boolean {
  const v = Number(text);
  if (!Number.isFinite(v)) return false;
  return decimalKey(text) === decimalKey(String(v).replace("e+", "e"));
}

/** 2^53: integers beyond it are not interoperable (RFC 7493 2.2), though some are exact doubles. */
const INTEGER_INTEROPERABLE_MAX = 2 ** 53;
/** RFC 8785 writes doubles from 1e21 up in exponent form, which no reader takes for an integer. */
const CANONICAL_DIGITS_BELOW = 1e21;

/**
 * False for a value whose canonical form is an integer literal beyond ±2^53: RFC 7493 2.2 says such
 * integers are not interoperable (a reader with 64-bit integers parses 100000000000000000000 to
 * something else), so the ledger refuses them however they are written (1e20 too: its canonical
 * form is those 21 digits). 9007199254740992 and 1e21 (written "1e+21") pass.
 */
export function numberIsInteroperable(v: number): boolean {
  const a = Math.abs(v);
  return !(Number.isInteger(a) && a > INTEGER_INTEROPERABLE_MAX && a < CANONICAL_DIGITS_BELOW);
}

class Scanner {
  private pos = 0;
  /**
   * The keys and array indices from the root to where the scan is: the JSON Pointer of an error is
   * built from them only when one is thrown (building it for every key and element cost more than
   * the rest of the scan of a typical record).
   */
  private readonly segments: Array<string | number> = [];
  /**
   * Whether the text is, so far, in the canonical form of RFC 8785 (as JSON.stringify with sorted
   * keys writes it): no whitespace between tokens, each object's keys in ascending UTF-16 order,
   * only the escapes JSON.stringify writes, numbers as Number's toString writes them.
   */
  canonical = true;
  constructor(private readonly b: Uint8Array, private readonly root: string) {}

  /** root followed by the JSON Pointer (RFC 6901) of the value the scan is in, or of `extra` inside it. */
  private path(extra?: string): string {
    let p = this.root;
    for (const s of this.segments) p += `/${typeof s === "number" ? s : pointerToken(s)}`;
    return extra === undefined ? p : `${p}/${pointerToken(extra)}`;
  }

  run(): void {
    const b = this.b;
    if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) {
      throw new IJsonError("bom", this.root, "a byte-order mark is not allowed (RFC 8259 8.1)");
    }
    this.ws();
    if (this.pos >= b.length) throw this.syntax("no JSON value");
    this.value(0);
    this.ws();
    if (this.pos < b.length) throw this.syntax("text after the JSON value");
  }

  /** A syntax error at the value the scan is in. */
  private syntax(what: string): IJsonError {
    return new IJsonError("syntax", this.path(), `${what} at byte ${this.pos}`);
  }

  private ws(): void {
    const b = this.b;
    while (this.pos < b.length) {
      const c = b[this.pos];
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.canonical = false;
      this.pos++;
    }
  }

  private expectLiteral(word: string): void {
    for (let i = 0; i < word.length; i++) {
      if (this.b[this.pos + i] !== word.charCodeAt(i)) throw this.syntax("not a JSON value");
    }
    this.pos += word.length;
  }

  private value(depth: number): void {
    const c = this.b[this.pos];
    switch (c) {
      case 0x7b: // {
        this.object(depth + 1);
        return;
      case 0x5b: // [
        this.array(depth + 1);
        return;
      case 0x22: // "
        this.string("string");
        return;
      case 0x74:
        this.expectLiteral("true");
        return;
      case 0x66:
        this.expectLiteral("false");
        return;
      case 0x6e:
        this.expectLiteral("null");
        return;
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
          this.number();
          return;
        }
        throw this.syntax(c === undefined ? "unexpected end of text" : "not a JSON value");
    }
  }

  private enter(depth: number): void {
    if (depth > IJSON_DEPTH_MAX) throw new IJsonError("too_deep", this.path(), `nesting deeper than ${IJSON_DEPTH_MAX}`);
    this.pos++;
    this.ws();
  }

  private object(depth: number): void {
    this.enter(depth);
    if (this.b[this.pos] === 0x7d) {
      this.pos++;
      return;
    }
    // While the keys strictly ascend (always, in canonical text), a key above the one before it is
    // above all before it, so it cannot repeat one: the set of keys is built only once they do not.
    const ascending: string[] = [];
    let keys: Set<string> | undefined;
    for (;;) {
      if (this.b[this.pos] !== 0x22) throw this.syntax("expected a string key");
      const key = this.key();
      this.segments.push(key);
      if (keys === undefined) {
        const previous = ascending.length === 0 ? undefined : ascending[ascending.length - 1];
        // Canonical keys ascend by UTF-16 code units, which is how JavaScript compares strings.
        if (previous === undefined || key > previous) {
          ascending.push(key);
        } else {
          this.canonical = false;
          keys = new Set(ascending);
        }
      }
      if (keys !== undefined) {
        if (keys.has(key)) throw new IJsonError("duplicate_key", this.path(), `key ${JSON.stringify(key)} appears more than once`);
        keys.add(key);
      }
      this.ws();
      if (this.b[this.pos] !== 0x3a) throw this.syntax("expected ':'");
      this.pos++;
      this.ws();
      this.value(depth);
      this.segments.pop();
      this.ws();
      const c = this.b[this.pos];
      if (c === 0x7d) {
        this.pos++;
        return;
      }
      if (c !== 0x2c) throw this.syntax("expected ',' or '}'");
      this.pos++;
      this.ws();
    }
  }

  private array(depth: number): void {
    this.enter(depth);
    if (this.b[this.pos] === 0x5d) {
      this.pos++;
      return;
    }
    for (let i = 0; ; i++) {
      this.segments.push(i);
      this.value(depth);
      this.segments.pop();
      this.ws();
      const c = this.b[this.pos];
      if (c === 0x5d) {
        this.pos++;
        return;
      }
      if (c !== 0x2c) throw this.syntax("expected ',' or ']'");
      this.pos++;
      this.ws();
    }
  }

  /**
   * At the four hex digits of a \u escape: whether JSON.stringify would write this escape, which it
   * does only for the control characters without a short form (U+0000..U+001F but for \b \t \n
   * \f \r), with lowercase hex. Anything else it writes as the character itself.
   */
  private canonicalUnicodeEscape(): boolean {
    const b = this.b;
    const p = this.pos;
    if (b[p] !== 0x30 || b[p + 1] !== 0x30 || (b[p + 2] !== 0x30 && b[p + 2] !== 0x31)) return false;
    const last = b[p + 3];
    const low = last >= 0x30 && last <= 0x39 ? last - 0x30 : last >= 0x61 && last <= 0x66 ? last - 0x57 : -1;
    if (low < 0) return false;
    const unit = (b[p + 2] - 0x30) * 16 + low;
    return unit !== 0x08 && unit !== 0x09 && unit !== 0x0a && unit !== 0x0c && unit !== 0x0d;
  }

  private hex4(): number {
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.b[this.pos + i];
      const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
      if (d < 0) throw this.syntax("bad \\u escape");
      v = v * 16 + d;
    }
    this.pos += 4;
    return v;
  }

  private checkCodePoint(cp: number, what: string): void {
    if (isNoncharacter(cp)) {
      // The smallest noncharacter is U+FDD0, so the hex always has the four digits U+ notation wants.
      throw new IJsonError("noncharacter", this.path(), `${what} holds the noncharacter U+${cp.toString(16).toUpperCase()}`);
    }
  }

  /** Scans a key; a key that is not I-JSON is reported at its own pointer, spelled as it was sent. */
  private key(): string {
    const start = this.pos;
    try {
      return this.string("key");
    } catch (err) {
      if (!(err instanceof IJsonError) || err.reason === "syntax") throw err;
      // Up to the closing quote (bounded by the text): the key as sent, with bad bytes shown as U+FFFD.
      let end = start + 1;
      while (end < this.b.length && this.b[end] !== 0x22) end += this.b[end] === 0x5c ? 2 : 1;
      const sent = LENIENT.decode(this.b.subarray(start + 1, end)); // subarray stops at the text's end
      throw new IJsonError(err.reason, this.path(sent), err.message.slice(err.path.length + 2));
    }
  }

  /** Scans a string token; returns its value only for keys (values are built by JSON.parse later). */
  private string(what: "key" | "string"): string {
    const b = this.b;
    const start = this.pos;
    let escaped = false;
    let ascii = true;
    this.pos++;
    for (;;) {
      // Printable ASCII but the quote and the backslash: most of any text, one test a byte.
      let p = this.pos;
      let c = b[p];
      while (c >= 0x20 && c < 0x80 && c !== 0x22 && c !== 0x5c) c = b[++p];
      this.pos = p;
      if (c === undefined) throw this.syntax(`unterminated ${what}`);
      if (c === 0x22) {
        this.pos++;
        break;
      }
      if (c < 0x20) throw this.syntax(`unescaped control character in a ${what}`);
      if (c === 0x5c) {
        escaped = true;
        const e = b[this.pos + 1];
        this.pos += 2;
        if (e === 0x75) {
          if (!this.canonicalUnicodeEscape()) this.canonical = false;
          const unit = this.hex4();
          if (unit >= 0xdc00 && unit <= 0xdfff) throw new IJsonError("lone_surrogate", this.path(), `${what} holds a lone low surrogate \\u${unit.toString(16)}`);
          if (unit >= 0xd800 && unit <= 0xdbff) {
            if (b[this.pos] !== 0x5c || b[this.pos + 1] !== 0x75) throw new IJsonError("lone_surrogate", this.path(), `${what} holds a lone high surrogate \\u${unit.toString(16)}`);
            this.pos += 2;
            const low = this.hex4();
            if (low < 0xdc00 || low > 0xdfff) throw new IJsonError("lone_surrogate", this.path(), `${what} holds a lone high surrogate \\u${unit.toString(16)}`);
            this.checkCodePoint(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00), what);
          } else {
            this.checkCodePoint(unit, what);
          }
        } else if (e !== 0x22 && e !== 0x5c && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e && e !== 0x72 && e !== 0x74) {
          this.pos -= 2;
          throw this.syntax(`bad escape in a ${what}`);
        } else if (e === 0x2f) {
          this.canonical = false; // JSON.stringify writes "/" as it is
        }
        continue;
      }
      ascii = false;
      this.checkCodePoint(this.utf8(what), what);
    }
    if (what === "string") return "";
    if (escaped) return JSON.parse(UTF8.decode(b.subarray(start, this.pos))) as string;
    // Without escapes a key is its bytes between the quotes (already checked to be UTF-8); an ASCII
    // one is its bytes as char codes (a TextDecoder call cost more than the rest of a key's scan).
    if (ascii && this.pos - start - 2 <= ASCII_KEY_CHARS_MAX) return asciiText(b, start + 1, this.pos - 1);
    return UTF8.decode(b.subarray(start + 1, this.pos - 1));
  }

  /** Decodes one multi-byte UTF-8 sequence strictly (no overlong forms, no surrogates, at most U+10FFFF). */
  private utf8(what: string): number {
    const b = this.b;
    const c = b[this.pos];
    let n: number;
    let cp: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) [n, cp, min] = [1, c & 0x1f, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [n, cp, min] = [2, c & 0x0f, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [n, cp, min] = [3, c & 0x07, 0x10000];
    else throw new IJsonError("invalid_utf8", this.path(), `${what} holds the byte 0x${c.toString(16)}, which starts no UTF-8 sequence (at byte ${this.pos})`);
    for (let i = 1; i <= n; i++) {
      const k = b[this.pos + i];
      if (k === undefined || (k & 0xc0) !== 0x80) throw new IJsonError("invalid_utf8", this.path(), `${what} holds a truncated UTF-8 sequence at byte ${this.pos}`);
      cp = (cp << 6) | (k & 0x3f);
    }
    if (cp < min) throw new IJsonError("invalid_utf8", this.path(), `${what} holds an overlong UTF-8 sequence at byte ${this.pos}`);
    if (cp >= 0xd800 && cp <= 0xdfff) throw new IJsonError("lone_surrogate", this.path(), `${what} holds a UTF-8 encoded surrogate at byte ${this.pos}`);
    if (cp > 0x10ffff) throw new IJsonError("invalid_utf8", this.path(), `${what} holds a code point above U+10FFFF at byte ${this.pos}`);
    this.pos += n + 1;
    return cp;
  }

  private number(): void {
    const b = this.b;
    const start = this.pos;
    const digits = (): number => {
      const from = this.pos;
      while (b[this.pos] >= 0x30 && b[this.pos] <= 0x39) this.pos++;
      return this.pos - from;
    };
    if (b[this.pos] === 0x2d) this.pos++;
    let fraction = false;
    let exponent = false;
    if (b[this.pos] === 0x30) this.pos++;
    else if (digits() === 0) throw this.syntax("bad number");
    if (b[this.pos] === 0x2e) {
      fraction = true;
      this.pos++;
      if (digits() === 0) throw this.syntax("bad number: no digits after '.'");
    }
    if (b[this.pos] === 0x65 || b[this.pos] === 0x45) {
      exponent = true;
      this.pos++;
      if (b[this.pos] === 0x2b || b[this.pos] === 0x2d) this.pos++;
      if (digits() === 0) throw this.syntax("bad number: no digits in the exponent");
    }
    const digitCount = this.pos - start - (b[start] === 0x2d ? 1 : 0) - (fraction ? 1 : 0);
    if (!exponent && digitCount <= SHORT_NUMBER_DIGITS_MAX) {
      // An integer of at most 15 digits is below 2^53 in magnitude: an exact, interoperable double,
      // written canonically as it is (JSON has no leading zeros) unless it is -0 (canonical: 0).
      if (!fraction) {
        if (b[start] === 0x2d && b[start + 1] === 0x30) this.canonical = false;
        return;
      }
      // A decimal of at most 15 digits (DBL_DIG) comes back from its double as the same decimal,
      // and lies between 1e-14 and 1e15, far from overflow and subnormals: exact and interoperable.
      // Canonical exactly when Number's shortest form writes it back the same (not 1.50, not 0.0000001).
      const text = asciiText(b, start, this.pos);
      if (String(Number(text)) !== text) this.canonical = false;
      return;
    }
    const text = String.fromCharCode(...b.subarray(start, Math.min(this.pos, start + NUMBER_TEXT_MAX + 1)));
    const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
    if (this.pos - start > NUMBER_TEXT_MAX || !numberIsExact(text)) {
      throw new IJsonError("number_not_exact", this.path(), `the number ${shown} would not keep its value in canonical JSON (RFC 8785 writes IEEE-754 doubles)`);
    }
    if (!numberIsInteroperable(Number(text))) {
      throw new IJsonError("number_not_exact", this.path(), `the number ${shown} is an integer beyond ±2^53, which readers do not agree on (RFC 7493 2.2)`);
    }
    if (String(Number(text)) !== text) this.canonical = false;
  }
}

/**
 * 10^15 < 2^53 and 15 = DBL_DIG: every integer literal of this many digits or fewer is exact and
 * interoperable, and so is every decimal of this many digits without an exponent, so they skip the checks.
 */
const SHORT_NUMBER_DIGITS_MAX = 15;

/**
 * Longest ASCII key built a char at a time (asciiText): keys are short names; a long one goes
 * through the TextDecoder, whose one call costs less than the string built char by char.
 */
const ASCII_KEY_CHARS_MAX = 64;

/** The string of ASCII bytes b[from..to): for a few chars, far cheaper than a TextDecoder call. */
function asciiText(b: Uint8Array, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i++) s += String.fromCharCode(b[i]);
  return s;
}

/**
 * Longest number literal accepted: a double's shortest form has at most 17 significant digits and a
 * 3-digit exponent, so 400 characters leaves ample room for zero padding and bounds the work per number.
 */
const NUMBER_TEXT_MAX = 400;

/** Checks that bytes are an I-JSON text; throws IJsonError (400) or EncodingError (415) saying why and where. */
export function checkIJson(bytes: Uint8Array, root = ""): void {
  checkedScanner(bytes, root);
}

function checkedScanner(bytes: Uint8Array, root: string): Scanner {
  if (bytes.length >= 2 && ((bytes[0] === 0xfe && bytes[1] === 0xff) || (bytes[0] === 0xff && bytes[1] === 0xfe) || bytes[0] === 0 || bytes[1] === 0)) {
    throw new EncodingError("the body is not UTF-8 (it looks like UTF-16 or UTF-32); send UTF-8 JSON");
  }
  const scanner = new Scanner(bytes, root);
  scanner.run();
  return scanner;
}

/** Parses an I-JSON text (see checkIJson); the value is exactly what the text says. */
export function parseIJson(bytes: Uint8Array, root = ""): unknown {
  return parseIJsonCanonical(bytes, root).value;
}

/**
 * parseIJson, and whether the text is the value's RFC 8785 canonical form byte for byte (what
 * canonicalJson(value) would write), found in the same scan: no second serialization to compare.
 */
export function parseIJsonCanonical(bytes: Uint8Array, root = ""): { readonly value: unknown; readonly canonical: boolean } {
  const scanner = checkedScanner(bytes, root);
  return { value: JSON.parse(UTF8.decode(bytes)) as unknown, canonical: scanner.canonical };
}
