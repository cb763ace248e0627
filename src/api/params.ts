/** Strict parsing of path and query parameters: whole decimal numbers within range, decodable text, or a 400. */
import { LedgerError } from "../util/errors";
import { codePoints } from "../ledger/record";

const DIGITS = /^[0-9]{1,16}$/;

/** A positive safe integer from a path or query string; 400 for anything else. */
export function parseIndex(raw: unknown, name: string, min = 1): number {
  if (typeof raw !== "string" || !DIGITS.test(raw)) {
    throw new LedgerError("bad_request", `${name} must be a whole number >= ${min}, got ${JSON.stringify(raw)}`);
  }
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new LedgerError("bad_request", `${name} must be a whole number from ${min} to ${Number.MAX_SAFE_INTEGER}, got ${raw}`);
  }
  return n;
}

export function parseOptionalIndex(raw: unknown, name: string, min = 1): number | undefined {
  return raw === undefined ? undefined : parseIndex(raw, name, min);
}

export function parseLimit(raw: unknown, fallback: number, max: number): number {
  const n = parseOptionalIndex(raw, "limit") ?? fallback;
  if (n > max) throw new LedgerError("bad_request", `limit must be at most ${max}`);
  return n;
}

/** Query strings longer than this are refused: every parameter we take fits in a few hundred bytes. */
const QUERY_BYTES_MAX = 4096;
/** More parameters than this are refused; no route takes more than four. */
const QUERY_PARAMS_MAX = 32;

function decodeComponent(raw: string, what: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "));
  } catch (err) {
    if (err instanceof URIError) throw new LedgerError("bad_request", `${what} is not valid percent-encoded UTF-8`);
    throw err;
  }
}

/**
 * express's "query parser": strict, unlike querystring (which keeps "%ZZ" as is and turns invalid
 * UTF-8 into U+FFFD). A repeated key becomes an array, which every route refuses as not a string.
 */
export function parseQuery(query: string | null | undefined): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  if (query === null || query === undefined || query === "") return out;
  if (query.length > QUERY_BYTES_MAX) throw new LedgerError("bad_request", `the query string is longer than ${QUERY_BYTES_MAX} bytes`);
  const parts = query.split("&");
  if (parts.length > QUERY_PARAMS_MAX) throw new LedgerError("bad_request", `more than ${QUERY_PARAMS_MAX} query parameters`);
  for (const part of parts) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const key = decodeComponent(eq < 0 ? part : part.slice(0, eq), "a query parameter name");
    const value = decodeComponent(eq < 0 ? "" : part.slice(eq + 1), `query parameter ${JSON.stringify(key)}`);
    const prior = out[key];
    out[key] = prior === undefined ? value : Array.isArray(prior) ? [...prior, value] : [prior, value];
  }
  return out;
}

/** A text path or query parameter of 1..max code points (subjects, member ids). */
export function parseText(raw: unknown, name: string, max: number): string {
  if (typeof raw !== "string") throw new LedgerError("bad_request", `${name} must be given once, as a string`);
  const n = codePoints(raw);
  if (n < 1 || n > max) throw new LedgerError("bad_request", `${name} must be 1..${max} characters, has ${n}`);
  return raw;
}
