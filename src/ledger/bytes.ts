/** Byte helpers shared by the ledger formats: hex, u64 big-endian, utf8, equality. */
const HEX = "0123456789abcdef";
const HEX_RE = /^(?:[0-9a-f]{2})*$/;
/** The two ASCII codes of each byte's hex, at 2b and 2b + 1. */
const HEX_CODES = new Uint8Array(512);
for (let b = 0; b < 256; b++) {
  HEX_CODES[2 * b] = HEX.charCodeAt(b >> 4);
  HEX_CODES[2 * b + 1] = HEX.charCodeAt(b & 15);
}
/**
 * Where toHex writes the ASCII of up to 2 KiB of bytes, reused call after call: building the string
 * a character at a time allocated two strings per byte (~2.5 KB per 32-byte hash, 30 KB of the
 * ~95 KB a proof request allocated, which set how often the server's young generation was collected).
 */
const HEX_SCRATCH = new Uint8Array(4096);
const ascii = new TextDecoder("utf-8");

/** Lowercase hex of bytes (the only hex form the formats use). */
export function toHex(bytes: Uint8Array): string {
  const n = 2 * bytes.length;
  const out = n <= HEX_SCRATCH.length ? HEX_SCRATCH : new Uint8Array(n);
  writeHex(bytes, out, 0);
  // decode copies what it reads into the new string before it returns: the scratch is free again.
  return ascii.decode(out.subarray(0, n));
}

/** Writes the ASCII of toHex(bytes) into out at `at` (the caller made room: 2 bytes a byte); returns where it ends. */
export function writeHex(bytes: Uint8Array, out: Uint8Array, at: number): number {
  for (let i = 0; i < bytes.length; i++) {
    const b = 2 * bytes[i];
    out[at + 2 * i] = HEX_CODES[b];
    out[at + 2 * i + 1] = HEX_CODES[b + 1];
  }
  return at + 2 * bytes.length;
}

/** The value of a lowercase hex digit's char code (the caller has checked it is one). */
const nibble = (c: number): number => (c <= 57 ? c - 48 : c - 87);

/** Parses lowercase hex; returns null for anything else (odd length, uppercase, other chars). */
export function fromHex(hex: string): Uint8Array | null {
  if (!HEX_RE.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
  return out;
}

/** Like fromHex but for values that are known to be well formed (e.g. read from our own tables). */
export function hexToBytes(hex: string): Uint8Array {
  const out = fromHex(hex);
  if (out === null) throw new Error(`not lowercase hex: ${hex.slice(0, 80)}`);
  return out;
}

/** Unsigned 64-bit big-endian encoding of a non-negative safe integer. */
export function u64be(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`u64 out of range: ${n}`);
  const out = new Uint8Array(8);
  // Byte by byte, without a DataView per call (two of these per entry hash).
  const hi = Math.floor(n / 0x1_0000_0000);
  const lo = n >>> 0;
  out[0] = hi >>> 24;
  out[1] = (hi >>> 16) & 0xff;
  out[2] = (hi >>> 8) & 0xff;
  out[3] = hi & 0xff;
  out[4] = lo >>> 24;
  out[5] = (lo >>> 16) & 0xff;
  out[6] = (lo >>> 8) & 0xff;
  out[7] = lo & 0xff;
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export const utf8 = (s: string): Uint8Array => encoder.encode(s);
/** Writes utf8(s) into out at `at`; returns where it ends, or null when it does not fit (nothing is promised of out then). */
export function writeUtf8(s: string, out: Uint8Array, at: number): number | null {
  const r = encoder.encodeInto(s, out.subarray(at));
  return r.read === s.length ? at + r.written : null;
}
/** Strict UTF-8 decode: invalid sequences throw instead of becoming U+FFFD. */
export const fromUtf8 = (b: Uint8Array): string => decoder.decode(b);

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
