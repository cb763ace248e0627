/** JSON shapes clients rely on (DESIGN.md "REST API"). */
import { Entry, EntryKind, kindName } from "../ledger/entry";
import { toHex } from "../ledger/bytes";
import { decodeRecord, RecordPayload } from "../ledger/record";
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

export function entryView(e: Entry, prevHash: Uint8Array): EntryView {
  const base = {
    index: e.index, term: e.term, kind: kindName(e.kind), hash: toHex(e.hash), prev_hash: toHex(prevHash),
    payload_b64: Buffer.from(e.payload).toString("base64"),
  };
  switch (e.kind) {
    case EntryKind.Record: {
      const record = decodeRecord(e.payload);
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
