/** Strict parsing of path and query numbers: whole decimal numbers within range, or a 400. */
import { LedgerError } from "../util/errors";

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
