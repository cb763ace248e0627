/** Log entries and the hash chain, exactly as DESIGN.md "The log" defines them. */
import { sha256 } from "./hash";
import { u64be, utf8 } from "./bytes";

export enum EntryKind {
  Noop = 0,
  Record = 1,
  Config = 2,
  Checkpoint = 3,
}

export const ENTRY_KIND_NAMES = ["noop", "record", "config", "checkpoint"] as const;
export type EntryKindName = (typeof ENTRY_KIND_NAMES)[number];

export const kindName = (kind: EntryKind): EntryKindName => ENTRY_KIND_NAMES[kind];
export const isEntryKind = (k: number): k is EntryKind => Number.isInteger(k) && k >= 0 && k <= 3;

/** One log entry; hash chains it to its predecessor. */
export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly kind: EntryKind;
  readonly payload: Uint8Array;
  readonly hash: Uint8Array;
}

const GENESIS_TAG = utf8("resonetics/genesis/v1");
const ENTRY_TAG = utf8("resonetics/entry/v1");
const ZERO = new Uint8Array([0]);

/** genesis_hash = SHA-256("resonetics/genesis/v1" || 0x00 || utf8(cluster_id)) = entry_hash(0). */
export function genesisHash(clusterId: string): Uint8Array {
  return sha256(GENESIS_TAG, ZERO, utf8(clusterId));
}

/** entry_hash(i) = SHA-256(tag || 0x00 || u64be(index) || u64be(term) || u8(kind) || prev || SHA-256(payload)). */
export function entryHash(
  index: number,
  term: number,
  kind: EntryKind,
  prevHash: Uint8Array,
  payload: Uint8Array,
): Uint8Array {
  return sha256(ENTRY_TAG, ZERO, u64be(index), u64be(term), new Uint8Array([kind]), prevHash, sha256(payload));
}

/** Builds the next entry of a chain whose last hash is prevHash. */
export function chainEntry(
  index: number,
  term: number,
  kind: EntryKind,
  prevHash: Uint8Array,
  payload: Uint8Array,
): Entry {
  return { index, term, kind, payload, hash: entryHash(index, term, kind, prevHash, payload) };
}
