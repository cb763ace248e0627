/**
 * node:crypto behind the ledger's crypto ports: the same SHA-256 and Ed25519 as noble's portable
 * code (test/node/native-crypto.test.ts holds them equal), in native code. Under a TypeScript loader
 * noble's SHA-512 (inside Ed25519) ran ~4 ms per snapshot record; OpenSSL hashes ~1 GB/s.
 */
import { createPrivateKey, createPublicKey, hash, KeyObject, sign as nodeSign, verify as nodeVerify } from "node:crypto";
import { Sha256, useSha256 } from "../ledger/hash";
import { Ed25519, useEd25519 } from "../ledger/keys";

/**
 * Where several parts are joined before they are hashed, reused call after call: Buffer.concat
 * allocated a new buffer per hash (and a new 8 KiB pool every few), ~6% of verify-chain's time.
 * Inputs past this size are joined in a buffer of their own (they are rare: payloads hash alone).
 */
const SCRATCH_BYTES = 4096;
const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);

function joined(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let length = 0;
  for (const p of parts) length += p.length;
  if (length > SCRATCH_BYTES) return Buffer.concat(parts, length);
  let off = 0;
  for (const p of parts) {
    scratch.set(p, off);
    off += p.length;
  }
  return scratch.subarray(0, length);
}

/** SHA-256's digest size in bytes. */
const DIGEST_BYTES = 32;

export const nativeSha256: Sha256 = (parts) => {
  // One call into OpenSSL over the parts joined (crypto.hash): a createHash object and its update
  // calls cost more than hashing a few hundred bytes, and a ledger hashes ~4 such inputs per entry.
  // crypto.hash reads its input before it returns, so the scratch buffer is free again after it.
  //
  // The digest comes back as a "binary" (latin1) string, one char per byte, and is copied into a
  // plain 32-byte Uint8Array, not asked for as a Buffer: each Buffer the addon returns has its own
  // external ArrayBuffer, which cost twice the hash itself to make and to collect (~1.3 µs of CPU
  // per 64-byte hash against ~0.43 µs this way; ~25% of a verify-chain replay's CPU). A short
  // string and a small typed array live on V8's young heap and die young.
  const s = hash("sha256", joined(parts), "binary");
  const out = new Uint8Array(DIGEST_BYTES);
  for (let i = 0; i < DIGEST_BYTES; i++) out[i] = s.charCodeAt(i);
  return out;
};

/** DER prefixes that wrap a raw 32-byte Ed25519 seed (PKCS #8) or public key (SPKI), RFC 8410. */
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
/** Key objects kept: a node signs with one key and verifies its cluster's members' (a handful); past this the cache starts over. */
const KEY_CACHE_MAX = 256;
const keyCache = new Map<string, KeyObject>();

function cachedKey(kind: "private" | "public", raw: Uint8Array): KeyObject {
  const id = `${kind}:${Buffer.from(raw).toString("hex")}`;
  let k = keyCache.get(id);
  if (k === undefined) {
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
    k = kind === "private"
      ? createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: "der", type: "pkcs8" })
      : createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: "der", type: "spki" });
    keyCache.set(id, k);
  }
  return k;
}

export const nativeEd25519: Ed25519 = {
  sign: (message, secretKey) => Uint8Array.from(nodeSign(null, message, cachedKey("private", secretKey))),
  verify: (signature, message, publicKey) => nodeVerify(null, message, cachedKey("public", publicKey), signature),
};

/** Makes every hash and signature of this process native; called by the cli before it opens a data dir. */
export function useNativeCrypto(): void {
  useSha256(nativeSha256);
  useEd25519(nativeEd25519);
}
