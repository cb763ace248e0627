/** SHA-256, the one hash of every Resonetics format (DESIGN.md "The log"). */
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";

export const HASH_BYTES = 32;

/** SHA-256 over the concatenation of parts, without copying them together first. */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = nobleSha256.create();
  for (const p of parts) h.update(p);
  return h.digest();
}
