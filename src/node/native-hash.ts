/** node:crypto's SHA-256 for the ledger's hashing port: the same function as noble's, in native code. */
import { createHash } from "node:crypto";
import { Sha256, useSha256 } from "../ledger/hash";

export const nativeSha256: Sha256 = (parts) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  // A plain Uint8Array (not a Buffer), so the bytes compare and serialize like noble's.
  return Uint8Array.from(h.digest());
};

/** Makes every hash of this process native; called by the cli before it opens a data dir. */
export function useNativeHash(): void {
  useSha256(nativeSha256);
}
