/** RECORD entry payloads: a governance record as the leader wrote it, in canonical JSON. */
import { canonicalBytes, canonicalJson, decodeV1Object } from "./canonical";
import { toHex, utf8 } from "./bytes";
import { sha256 } from "./hash";

/** What a client submits. */
export interface RecordRequest {
  readonly type: string;
  readonly subject: string;
  readonly data: unknown;
  readonly actor?: string;
}

/** What the log holds: the request plus the leader's timestamp and the client's dedup key. */
export interface RecordPayload extends RecordRequest {
  readonly v: 1;
  readonly ts: string;
  readonly idempotency_key?: string;
  readonly request_digest?: string;
}

/** Digest of a request's meaning (canonical JSON), to tell a retry from a reused key. */
export function requestDigest(req: RecordRequest): string {
  const body: Record<string, unknown> = { type: req.type, subject: req.subject, data: req.data };
  if (req.actor !== undefined) body.actor = req.actor;
  return toHex(sha256(utf8(canonicalJson(body))));
}

export function encodeRecord(payload: RecordPayload): Uint8Array {
  return canonicalBytes(payload);
}

const isNonEmpty = (s: unknown, max: number): s is string => typeof s === "string" && s.length >= 1 && s.length <= max;

/** Parses a RECORD payload; null when it is not well formed. */
export function decodeRecord(payload: Uint8Array): RecordPayload | null {
  const r = decodeV1Object(payload);
  if (r === null) return null;
  if (r.v !== 1 || !isNonEmpty(r.type, 200) || !isNonEmpty(r.subject, 200) || !("data" in r)) return null;
  if (typeof r.ts !== "string") return null;
  if (r.actor !== undefined && typeof r.actor !== "string") return null;
  if (r.idempotency_key !== undefined && typeof r.idempotency_key !== "string") return null;
  if (r.request_digest !== undefined && typeof r.request_digest !== "string") return null;
  return r as unknown as RecordPayload;
}
