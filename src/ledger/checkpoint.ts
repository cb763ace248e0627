/** Signed tree heads (CHECKPOINT entries), per DESIGN.md: body, signing message, sig. */
import { canonicalBytes, canonicalJson, decodeV1Object } from "./canonical";
import { concatBytes, fromHex, toHex, utf8 } from "./bytes";
import { sign, verifySignature } from "./keys";

export interface CheckpointBody {
  readonly v: 1;
  readonly cluster: string;
  readonly size: number;
  readonly root: string;
  readonly head: string;
  readonly term: number;
  readonly signer: string;
  readonly ts: string;
}

export interface Checkpoint extends CheckpointBody {
  readonly sig: string;
}

const CHECKPOINT_TAG = utf8("resonetics/checkpoint/v1\n");

/** The exact bytes signed: "resonetics/checkpoint/v1\n" || canonical_json(body without sig). */
export function checkpointMessage(body: CheckpointBody): Uint8Array {
  const { v, cluster, size, root, head, term, signer, ts } = body;
  return concatBytes(CHECKPOINT_TAG, utf8(canonicalJson({ v, cluster, size, root, head, term, signer, ts })));
}

export function signCheckpoint(body: CheckpointBody, secretKey: Uint8Array): Checkpoint {
  return { ...body, sig: toHex(sign(checkpointMessage(body), secretKey)) };
}

export const encodeCheckpoint = (cp: Checkpoint): Uint8Array => canonicalBytes(cp);

const HEX64 = /^[0-9a-f]{64}$/;
const HEX128 = /^[0-9a-f]{128}$/;
const isU64 = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;

/** Parses a CHECKPOINT payload; null when it is not well formed. */
export function decodeCheckpoint(payload: Uint8Array): Checkpoint | null {
  const c = decodeV1Object(payload);
  if (c === null) return null;
  const ok = c.v === 1 && typeof c.cluster === "string" && isU64(c.size) && typeof c.root === "string" &&
    HEX64.test(c.root) && typeof c.head === "string" && HEX64.test(c.head) && isU64(c.term) &&
    typeof c.signer === "string" && typeof c.ts === "string" && typeof c.sig === "string" && HEX128.test(c.sig);
  return ok ? (c as unknown as Checkpoint) : null;
}

/** True when sig is the signer key's Ed25519 signature over the checkpoint message. */
export function verifyCheckpointSignature(cp: Checkpoint, publicKeyHex: string): boolean {
  const sig = fromHex(cp.sig);
  const key = fromHex(publicKeyHex);
  if (sig === null || key === null) return false;
  return verifySignature(sig, checkpointMessage(cp), key);
}
