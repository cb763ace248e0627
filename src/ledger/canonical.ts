/** RFC 8785 canonical JSON: the exact payload bytes any verifier can rebuild. */
import canonicalizeJson from "canonicalize";
import { utf8 } from "./bytes";

/** Canonical JSON text of a value (throws on values JSON cannot carry). */
export function canonicalJson(value: unknown): string {
  const text = canonicalizeJson(value);
  if (text === undefined) throw new TypeError("value has no JSON form");
  return text;
}

export const canonicalBytes = (value: unknown): Uint8Array => utf8(canonicalJson(value));
