/** RECORD entry payloads: a governance record as the leader wrote it, in canonical JSON. */
import { canonicalBytes, canonicalJson } from "./canonical";
import { toHex, utf8 } from "./bytes";
import { parseIJsonCanonical } from "./ijson";
import { LedgerError } from "../util/errors";
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

/** Unicode code points: how the API's JSON Schemas (ajv) and apply both count "characters". */
export function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // A high surrogate followed by a low one is one code point (I-JSON text has no lone ones).
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** type, subject and actor: 1..200 characters (DESIGN.md "State machine"). */
export const RECORD_TEXT_MAX = 200;
/** An idempotency key is a header (<= 200) or client_id ":" request_id (each <= 200). */
const IDEMPOTENCY_KEY_MAX = 2 * RECORD_TEXT_MAX + 1;
const TS = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?Z$/;

/**
 * An RFC 3339 UTC time as the leader writes it (YYYY-MM-DDTHH:MM:SS[.fraction]Z) that names a real
 * instant: month 01-12, a day the month has, hour 00-23, minute and second 00-59 (no leap second:
 * a leader's clock never writes one). The pattern alone let "2026-13-01" or "2026-02-30" in, which
 * Date.parse refuses or silently moves to March.
 */
export function isUtcTimestamp(ts: string): boolean {
  const m = TS.exec(ts);
  if (m === null) return false;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (month < 1 || month > 12) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0); // proleptic Gregorian, as RFC 3339
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  return day >= 1 && day <= daysInMonth && Number(m[4]) <= 23 && Number(m[5]) <= 59 && Number(m[6]) <= 59;
}
const DIGEST = /^[0-9a-f]{64}$/;
const PAYLOAD_KEYS = new Set(["v", "type", "subject", "data", "actor", "ts", "idempotency_key", "request_digest"]);

const problem = (path: string, message: string): LedgerError =>
  new LedgerError("schema_violation", `${path} ${message}`, { path });

function checkText(r: Record<string, unknown>, key: string, max: number, optional: boolean): void {
  const v = r[key];
  if (v === undefined && optional) return;
  if (typeof v !== "string") throw problem(`payload/${key}`, "must be a string");
  const n = codePoints(v);
  if (n < 1 || n > max) throw problem(`payload/${key}`, `must be 1..${max} characters (code points), has ${n}`);
}

/**
 * The one validation of a RECORD payload: the API runs it on the exact bytes it is about to propose,
 * and apply runs it on every committed RECORD entry, so an entry that reaches the log always
 * applies. The payload must be I-JSON in canonical form (RFC 8785) with exactly the record's fields.
 * data is any I-JSON value here; its record type's schema is the API's concern (schemas can change,
 * replay must not).
 */
export function parseRecordPayload(payload: Uint8Array): RecordPayload {
  // The leader checks the exact bytes before it proposes them and applies the same array once
  // committed: the second check of the same (never mutated) array is the first one's answer.
  const known = checked.get(payload);
  if (known !== undefined) return known;
  const r = checkRecordPayload(payload);
  checked.set(payload, r);
  return r;
}

/** Payload arrays that passed parseRecordPayload; weak, so an entry's bytes go when the entry does. */
const checked = new WeakMap<Uint8Array, RecordPayload>();

function checkRecordPayload(payload: Uint8Array): RecordPayload {
  const { value, canonical } = parseIJsonCanonical(payload, "payload");
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw problem("payload", "must be an object");
  if (!canonical) throw problem("payload", "is not in canonical form (RFC 8785)");
  const r = value as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!PAYLOAD_KEYS.has(k)) throw problem(`payload/${k}`, "is not a field of a record");
  if (r.v !== 1) throw problem("payload/v", "must be 1");
  checkText(r, "type", RECORD_TEXT_MAX, false);
  checkText(r, "subject", RECORD_TEXT_MAX, false);
  checkText(r, "actor", RECORD_TEXT_MAX, true);
  if (!("data" in r)) throw problem("payload/data", "is required");
  if (typeof r.ts !== "string" || !isUtcTimestamp(r.ts)) throw problem("payload/ts", "must be an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SS[.fraction]Z)");
  checkText(r, "idempotency_key", IDEMPOTENCY_KEY_MAX, true);
  if ((r.idempotency_key === undefined) !== (r.request_digest === undefined)) throw problem("payload/request_digest", "goes with idempotency_key");
  if (r.request_digest !== undefined && (typeof r.request_digest !== "string" || !DIGEST.test(r.request_digest))) {
    throw problem("payload/request_digest", "must be 64 lowercase hex digits");
  }
  return r as unknown as RecordPayload;
}

/** A RECORD payload for display; null when it is not one (parseRecordPayload says why). */
export function decodeRecord(payload: Uint8Array): RecordPayload | null {
  try {
    return parseRecordPayload(payload);
  } catch (err) {
    if (err instanceof LedgerError) return null;
    throw err;
  }
}
