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

export const sign = (message: Uint8Array, secretKey: Uint8Array): Uint8Array => ed.sign(message, secretKey);

/** False (never a throw) for malformed keys or signatures. */
export function verifySignature(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return ed.verify(signature, message, publicKey);
  } catch {
    // noble throws on points that do not decode: that is a bad signature, not a crash.
    return false;
  }
}
