/**
 * Checks of the REST API's wire shapes (DESIGN.md "REST API") against the ledger's own formulas:
 * pure functions that say why a view does not verify, or return null. LedgerClient, `resonetics
 * tail` and `history` share them, so an entry is checked one way wherever it arrives from.
 */
import { entryHash, EntryKind, EntryKindName, ENTRY_KIND_NAMES } from "../ledger/entry";
import { fromHex, fromUtf8, toHex } from "../ledger/bytes";
import { canonicalJson } from "../ledger/canonical";
import { Checkpoint, verifyCheckpointSignature } from "../ledger/checkpoint";
import type { EntryJson } from "./client";

/** A checkpoint as the API serves it: the signed body, sig, and its own log index. */
export type CheckpointJson = Checkpoint & { readonly index: number };

/** The payload bytes of an entry view; null when payload_b64 is not canonical base64 (a changed character Buffer would skip). */
export function payloadOf(e: EntryJson): Uint8Array | null {
  if (typeof e.payload_b64 !== "string") return null;
  const bytes = Buffer.from(e.payload_b64, "base64");
  return bytes.toString("base64") === e.payload_b64 ? bytes : null;
}

/**
 * Why `e` is not entry `index` with hash = the entry formula over (index, term, kind, prev_hash,
 * payload), or null. It says nothing of whether prev_hash is the hash of the entry before: that
 * is the caller's chain.
 */
export function entryProblem(e: EntryJson, index: number): string | null {
  if (typeof e !== "object" || e === null) return "not an entry object";
  if (e.index !== index) return `expected entry ${index}, got index ${JSON.stringify(e.index)}`;
  const kind = ENTRY_KIND_NAMES.indexOf(e.kind as EntryKindName);
  const prev = typeof e.prev_hash === "string" ? fromHex(e.prev_hash) : null;
  const payload = payloadOf(e);
  if (kind < 0 || prev === null || payload === null || !Number.isSafeInteger(e.term) || typeof e.hash !== "string") return "malformed (kind, term, prev_hash, hash or payload_b64)";
  if (toHex(entryHash(e.index, e.term, kind as EntryKind, prev, payload)) !== e.hash) return "hash does not match its contents (index, term, kind, prev_hash, payload)";
  return parsedCopyProblem(e as unknown as Record<string, unknown>, ENTRY_KIND_NAMES[kind], payload);
}

const ENTRY_KEYS = new Set(["index", "term", "kind", "hash", "prev_hash", "payload_b64", "record", "checkpoint", "config"]);
/** The key of the parsed copy a view may carry beside its payload, per kind (src/api/views.ts). */
const PARSED_KEYS: Readonly<Record<EntryKindName, string | null>> = { noop: null, record: "record", checkpoint: "checkpoint", config: "config" };

/**
 * No hash covers the parsed copy beside the payload (record, checkpoint, config), yet a reader
 * reads it, and json output prints it: it must be exactly the payload (a canonical JSON text, so
 * its canonical form is the payload's bytes), and no key the shape does not have may ride along.
 */
function parsedCopyProblem(e: Record<string, unknown>, kind: EntryKindName, payload: Uint8Array): string | null {
  for (const k of Object.keys(e)) {
    if (!ENTRY_KEYS.has(k)) return `an unexpected key ${JSON.stringify(k)}`;
    if (k === "record" || k === "checkpoint" || k === "config") {
      if (PARSED_KEYS[kind] !== k) return `a ${k} beside a ${kind} payload`;
      if (canonicalJson(e[k]) !== fromUtf8(payload)) return `its ${k} is not what its payload says`;
    }
  }
  return null;
}

/** Why `cp` is not signed by its signer's key among `keys` (member id → public key hex), or null. */
export function signatureProblem(cp: Checkpoint, keys: ReadonlyMap<string, string>): string | null {
  const key = keys.get(cp.signer);
  if (key === undefined) return `checkpoint signer ${JSON.stringify(cp.signer)} is not a member of the configuration (${[...keys.keys()].join(", ")})`;
  return verifyCheckpointSignature(cp, key) ? null : `checkpoint signature does not verify with ${cp.signer}'s key ${key}`;
}
