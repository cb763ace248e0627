/**
 * Shape checks for JSON that arrives from outside (a peer's frame, a receipt, a trust file, a state
 * file, a server's answer in the explorer): one definition of each, so every reader means the same.
 */

export type Obj = Record<string, unknown>;

/** A JSON object (not null, not an array). */
export const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** A whole number 0..2^53-1: an index, a term, a size, an id. */
export const isU64 = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** 32 bytes in lowercase hex: a hash or an Ed25519 public key. */
export const HEX64 = /^[0-9a-f]{64}$/;

/** Canonical padded base64 (RFC 4648 section 4). */
export const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A proof path in a tree of up to 2^64 leaves has at most 64 hashes. */
export const PROOF_PATH_MAX = 64;
