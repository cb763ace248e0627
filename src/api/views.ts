/** JSON shapes clients rely on (DESIGN.md "REST API"). */
import { Entry, EntryKind, kindName } from "../ledger/entry";
import { toHex } from "../ledger/bytes";
import type { RecordPayload } from "../ledger/record";
import { decodeCheckpoint, Checkpoint } from "../ledger/checkpoint";
import { decodeConfig, ClusterConfig } from "../ledger/config";

export interface EntryView {
  readonly index: number;
  readonly term: number;
  readonly kind: string;
  readonly hash: string;
  readonly prev_hash: string;
  readonly payload_b64: string;
  readonly record?: RecordPayload;
  readonly checkpoint?: Checkpoint;
  readonly config?: ClusterConfig;
}

/**
 * A committed entry's payload as JSON for display. Apply checked every RECORD payload with the one
 * validation (parseRecordPayload: I-JSON, canonical, the record's fields) before it could be served,
 * so the view needs only to parse it: JSON.parse reads I-JSON exactly (no duplicate keys, numbers
 * within ±2^53 or exact doubles). A payload that is not JSON is shown without its parsed form.
 */
function parsedPayload<T>(payload: Uint8Array): T | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString("utf8"));
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as T) : null;
  } catch (err) {
    if (err instanceof SyntaxError) return null;
    throw err;
  }
}

export function entryView(e: Entry, prevHash: Uint8Array): EntryView {
  const base = {
    index: e.index, term: e.term, kind: kindName(e.kind), hash: toHex(e.hash), prev_hash: toHex(prevHash),
    payload_b64: Buffer.from(e.payload).toString("base64"),
  };
  switch (e.kind) {
    case EntryKind.Record: {
      const record = parsedPayload<RecordPayload>(e.payload);
      return record === null ? base : { ...base, record };
    }
    case EntryKind.Checkpoint: {
      const checkpoint = decodeCheckpoint(e.payload);
      return checkpoint === null ? base : { ...base, checkpoint };
    }
    case EntryKind.Config: {
      const config = decodeConfig(e.payload);
      return config === null ? base : { ...base, config };
    }
    case EntryKind.Noop:
      return base;
    default: {
      const never: never = e.kind;
      return never;
    }
  }
}
