/** Ed25519 node keys and signatures (noble: portable, the same code any verifier can run). */
import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";

ed.hashes.sha512 = sha512;

export interface KeyPair {
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

/** A new key pair from the platform CSPRNG, or deterministically from a 32-byte seed (tests). */
export function generateKeyPair(seed?: Uint8Array): KeyPair {
  const { secretKey, publicKey } = ed.keygen(seed);
  return { secretKey, publicKey };
}

export const publicKeyOf = (secretKey: Uint8Array): Uint8Array => ed.getPublicKey(secretKey);

/** Ed25519 (RFC 8032) signing and verification; a host with a native implementation installs it with useEd25519. */
export interface Ed25519 {
  sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array;
  /** False for a bad signature; may throw on malformed input (the caller turns that into false). */
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
}

/**
 * noble's, strict (zip215: false): RFC 8032's canonical encodings only, as OpenSSL checks them, so a
 * native verifier and this portable one agree on every signature an honest signer makes and refuse
 * the non-canonical ones alike.
 */
export const portableEd25519: Ed25519 = {
  sign: (message, secretKey) => ed.sign(message, secretKey),
  verify: (signature, message, publicKey) => ed.verify(signature, message, publicKey, { zip215: false }),
};

let impl: Ed25519 = portableEd25519;

/** Installs the Ed25519 every signature uses from now on (the composition root calls it once, at start). */
export function useEd25519(next: Ed25519): void {
  impl = next;
}

export const sign = (message: Uint8Array, secretKey: Uint8Array): Uint8Array => impl.sign(message, secretKey);

/** Public keys already judged (hex → acceptable); a cluster has a handful, so past this the cache starts over. */
const KEY_VERDICTS_MAX = 1024;
const keyVerdicts = new Map<string, boolean>();

/**
 * A public key any verifier may rely on: a canonical encoding of a curve point that is not of small
 * order. With a small-order key (the identity, say) OpenSSL's cofactorless check accepts a fixed
 * signature for every message while noble's refuses it: such a key is no key, for every verifier.
 */
export function acceptablePublicKey(publicKey: Uint8Array): boolean {
  if (publicKey.length !== 32) return false;
  const hex = Array.from(publicKey, (b) => b.toString(16).padStart(2, "0")).join("");
  const known = keyVerdicts.get(hex);
  if (known !== undefined) return known;
  let ok: boolean;
  try {
    const p = ed.Point.fromBytes(publicKey, false);
    ok = !p.isSmallOrder();
  } catch (err) {
    // noble throws on bytes that do not decode to a point (or not canonically): not a key.
    if (!(err instanceof Error)) throw err;
    ok = false;
  }
  if (keyVerdicts.size >= KEY_VERDICTS_MAX) keyVerdicts.clear();
  keyVerdicts.set(hex, ok);
  return ok;
}

/** How many key verdicts are cached now: never more than KEY_VERDICTS_MAX. */
export const keyVerdictsCached = (): number => keyVerdicts.size;

/** False (never a throw) for malformed keys or signatures, and for keys no verifier may rely on. */
export function verifySignature(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || !acceptablePublicKey(publicKey)) return false;
  try {
    return impl.verify(signature, message, publicKey);
  } catch (err) {
    // A point that does not decode is a bad signature, not a crash.
    if (err instanceof Error) return false;
    throw err;
  }
}
