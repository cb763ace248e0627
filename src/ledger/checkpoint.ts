/** Signed tree heads (CHECKPOINT entries), per DESIGN.md: body, signing message, sig. */
import { canonicalBytes, canonicalJson, decodeV1Object } from "./canonical";
import { concatBytes, fromHex, toHex, utf8 } from "./bytes";
import { sign, verifySignature } from "./keys";
import { isU64, HEX64 } from "./shapes";

export interface CheckpointBody {
  readonly v: 1;
  readonly cluster: string;
  readonly size: number;
  readonly root: string;
  readonly head: string;
  readonly term: number;
  readonly signer: string;
  readonly ts: string;
  /**
   * The subjects commitment of the state after entry `size` (src/ledger/subject-tree.ts): what
   * proves a subject's history complete. Absent in checkpoints written before it existed.
   */
  readonly subjects_root?: string;
}

export interface Checkpoint extends CheckpointBody {
  readonly sig: string;
}

const CHECKPOINT_TAG = utf8("resonetics/checkpoint/v1\n");

/** The keys of a checkpoint as the API, receipts and trust files carry it: the signed body, sig and its own log index. */
export const CHECKPOINT_VIEW_KEYS: readonly string[] = ["v", "cluster", "size", "root", "head", "term", "signer", "ts", "sig", "index"];
/** A key a checkpoint carries besides those when it has one: subjects_root (absent in checkpoints from before it). */
export const CHECKPOINT_OPTIONAL_KEYS: readonly string[] = ["subjects_root"];

/** Why a checkpoint view's keys are not CHECKPOINT_VIEW_KEYS (plus optional ones), or null. */
export function checkpointViewKeysProblem(o: Record<string, unknown>, what: string): string | null {
  for (const k of CHECKPOINT_VIEW_KEYS) if (!Object.prototype.hasOwnProperty.call(o, k)) return `${what} has no ${k}`;
  for (const k of Object.keys(o)) if (!CHECKPOINT_VIEW_KEYS.includes(k) && !CHECKPOINT_OPTIONAL_KEYS.includes(k)) return `${what} has an unexpected key ${JSON.stringify(k)}`;
  return null;
}

/** The exact bytes signed: "resonetics/checkpoint/v1\n" || canonical_json(body without sig). */
export function checkpointMessage(body: CheckpointBody): Uint8Array {
  const { v, cluster, size, root, head, term, signer, ts, subjects_root } = body;
  const signed = subjects_root === undefined ? { v, cluster, size, root, head, term, signer, ts } : { v, cluster, size, root, head, term, signer, ts, subjects_root };
  return concatBytes(CHECKPOINT_TAG, utf8(canonicalJson(signed)));
}

export function signCheckpoint(body: CheckpointBody, secretKey: Uint8Array): Checkpoint {
  return { ...body, sig: toHex(sign(checkpointMessage(body), secretKey)) };
}

export const encodeCheckpoint = (cp: Checkpoint): Uint8Array => canonicalBytes(cp);

const HEX128 = /^[0-9a-f]{128}$/;

/** Parses a CHECKPOINT payload; null when it is not well formed. */
export function decodeCheckpoint(payload: Uint8Array): Checkpoint | null {
  const c = decodeV1Object(payload);
  if (c === null) return null;
  const ok = c.v === 1 && typeof c.cluster === "string" && isU64(c.size) && typeof c.root === "string" &&
    HEX64.test(c.root) && typeof c.head === "string" && HEX64.test(c.head) && isU64(c.term) &&
    typeof c.signer === "string" && typeof c.ts === "string" && typeof c.sig === "string" && HEX128.test(c.sig) &&
    (c.subjects_root === undefined || (typeof c.subjects_root === "string" && HEX64.test(c.subjects_root)));
  return ok ? (c as unknown as Checkpoint) : null;
}

/** True when sig is the signer key's Ed25519 signature over the checkpoint message. */
export function verifyCheckpointSignature(cp: Checkpoint, publicKeyHex: string): boolean {
  const sig = fromHex(cp.sig);
  const key = fromHex(publicKeyHex);
  if (sig === null || key === null) return false;
  return verifySignature(sig, checkpointMessage(cp), key);
}
