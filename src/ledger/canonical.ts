/** RFC 8785 canonical JSON: the exact payload bytes any verifier can rebuild. */
import canonicalizeJson from "canonicalize";
import { utf8 } from "./bytes";
import { parseIJson } from "./ijson";
import { LedgerError } from "../util/errors";

/** Canonical JSON text of a value (throws on values JSON cannot carry). */
export function canonicalJson(value: unknown): string {
  const text = canonicalizeJson(value);
  if (text === undefined) throw new TypeError("value has no JSON form");
  return text;
}

export const canonicalBytes = (value: unknown): Uint8Array => utf8(canonicalJson(value));

/**
 * A payload's JSON object (version field v === 1), or null for anything else: bytes that are not
 * I-JSON (the one parser of the boundary, so a duplicate key or an inexact number in a peer's
 * payload is refused as it would be from a client), non-objects, other versions.
 */
export function decodeV1Object(payload: Uint8Array): Record<string, unknown> | null {
  let v: unknown;
  try {
    v = parseIJson(payload);
  } catch (err) {
    if (err instanceof LedgerError) return null; // not I-JSON: not a payload of ours
    throw err;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  return o.v === 1 ? o : null;
}
