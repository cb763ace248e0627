/**
 * SHA-256, the one hash of every Resonetics format (DESIGN.md "The log"). The portable
 * implementation is noble's (it runs anywhere: a browser, any JS runtime); a host with a faster
 * one (node:crypto, ~20x faster per call than noble under a TypeScript loader) installs it with
 * useSha256. Both compute the same function; test/node/native-crypto.test.ts holds them to it.
 */
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";

export const HASH_BYTES = 32;

/** SHA-256 over the concatenation of parts, as a fresh 32-byte Uint8Array. */
export type Sha256 = (parts: readonly Uint8Array[]) => Uint8Array;

export const portableSha256: Sha256 = (parts) => {
  const h = nobleSha256.create();
  for (const p of parts) h.update(p);
  return h.digest();
};

let impl: Sha256 = portableSha256;

/** Installs the SHA-256 every format uses from now on (the composition root calls it once, at start). */
export function useSha256(next: Sha256): void {
  impl = next;
}

/** SHA-256 over the concatenation of parts, without copying them together first. */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  return impl(parts);
}
