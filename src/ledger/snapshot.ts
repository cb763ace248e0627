/**
 * Snapshots of the ledger state at an applied index (DESIGN.md "Raft"): the anchor (index, term,
 * hash), the Merkle root and compact range there, the configuration, the full materialized state
 * and its state_root; signed by the node that made it like a checkpoint is.
 */
import { canonicalBytes, canonicalJson, decodeV1Object } from "./canonical";
import { concatBytes, fromHex, toHex, utf8 } from "./bytes";
import { sign, verifySignature } from "./keys";
import { CompactRange, MerkleNode } from "./merkle";
import { DedupRow, MemoryState, stateRoot, SubjectRow } from "./state-machine";

export interface SnapshotBody {
  readonly v: 1;
  readonly cluster: string;
  readonly index: number;
  readonly term: number;
  readonly hash: string;
  readonly root: string;
  /** The Merkle peaks of [0, index): level, index, hash. */
  readonly compact_range: ReadonlyArray<{ readonly level: number; readonly index: number; readonly hash: string }>;
  /** The CONFIG payload in force at index, base64. */
  readonly config_b64: string;
  readonly state: {
    readonly subjects: ReadonlyArray<{ subject: string; version: number; head: string; last_index: number }>;
    readonly subject_records: ReadonlyArray<{ subject: string; version: number; index: number }>;
    readonly dedup: ReadonlyArray<{ key: string; digest: string; index: number; term: number; hash: string }>;
  };
  readonly state_root: string;
  readonly signer: string;
  readonly ts: string;
}

export interface SnapshotDoc extends SnapshotBody {
  readonly sig: string;
}

const SNAPSHOT_TAG = utf8("resonetics/snapshot/v1\n");

/** The bytes signed: "resonetics/snapshot/v1\n" || canonical_json(body without sig). */
export function snapshotMessage(body: SnapshotBody): Uint8Array {
  const { sig: _omit, ...rest } = body as SnapshotDoc;
  void _omit;
  return concatBytes(SNAPSHOT_TAG, utf8(canonicalJson(rest)));
}

export interface SnapshotInput {
  readonly cluster: string;
  readonly index: number;
  readonly term: number;
  readonly hash: Uint8Array;
  readonly range: CompactRange;
  readonly config: Uint8Array;
  readonly subjects: Iterable<SubjectRow>;
  readonly subjectRecords: Iterable<{ subject: string; version: number; index: number }>;
  readonly dedup: Iterable<DedupRow>;
  readonly signer: string;
  readonly ts: string;
}

const byKey = <T>(k: (x: T) => string) => (a: T, b: T): number => (k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0);

/** Builds and signs a snapshot document (rows sorted so the bytes are deterministic). */
export function makeSnapshot(input: SnapshotInput, secretKey: Uint8Array): SnapshotDoc {
  const subjects = [...input.subjects].sort(byKey((s) => s.subject));
  const dedup = [...input.dedup].sort(byKey((d) => d.key));
  const records = [...input.subjectRecords].sort((a, b) => a.index - b.index);
  const body: SnapshotBody = {
    v: 1, cluster: input.cluster, index: input.index, term: input.term, hash: toHex(input.hash),
    root: toHex(input.range.root()),
    compact_range: input.range.nodes().map((n) => ({ level: n.level, index: n.index, hash: toHex(n.hash) })),
    config_b64: Buffer.from(input.config).toString("base64"),
    state: {
      subjects: subjects.map((s) => ({ subject: s.subject, version: s.version, head: toHex(s.head), last_index: s.lastIndex })),
      subject_records: records,
      dedup: dedup.map((d) => ({ key: d.key, digest: d.digest, index: d.index, term: d.term, hash: toHex(d.hash) })),
    },
    state_root: toHex(stateRoot(subjects, dedup)),
    signer: input.signer, ts: input.ts,
  };
  return { ...body, sig: toHex(sign(snapshotMessage(body), secretKey)) };
}

export const encodeSnapshot = (doc: SnapshotDoc): Uint8Array => canonicalBytes(doc);

/** Parses snapshot bytes; null when they are not a snapshot document. */
export function decodeSnapshot(bytes: Uint8Array): SnapshotDoc | null {
  const d = decodeV1Object(bytes);
  if (d === null) return null;
  const ok = d.v === 1 && typeof d.cluster === "string" && Number.isSafeInteger(d.index) && Number.isSafeInteger(d.term) &&
    typeof d.hash === "string" && typeof d.root === "string" && Array.isArray(d.compact_range) && typeof d.config_b64 === "string" &&
    typeof d.state === "object" && d.state !== null && typeof d.state_root === "string" && typeof d.signer === "string" &&
    typeof d.sig === "string";
  return ok ? (d as unknown as SnapshotDoc) : null;
}

/** The compact range a snapshot carries, rebuilt (its root must equal doc.root). */
export function snapshotRange(doc: SnapshotDoc): CompactRange {
  const peaks: MerkleNode[] = doc.compact_range.map((n) => ({ level: n.level, index: n.index, hash: fromHex(n.hash) ?? new Uint8Array() }));
  return new CompactRange(doc.index, peaks);
}

/** The state a snapshot carries, as a MemoryState a replay continues from. */
export function snapshotState(doc: SnapshotDoc): MemoryState {
  const s = new MemoryState();
  for (const r of doc.state.subjects) s.putSubject({ subject: r.subject, version: r.version, head: fromHex(r.head) ?? new Uint8Array(), lastIndex: r.last_index });
  for (const r of doc.state.subject_records) s.addSubjectRecord(r.subject, r.version, r.index);
  for (const r of doc.state.dedup) s.putDedup({ key: r.key, digest: r.digest, index: r.index, term: r.term, hash: fromHex(r.hash) ?? new Uint8Array() });
  return s;
}

/** Why a snapshot document is not self-consistent or not signed by signerKey, or null when it is. */
export function snapshotProblem(doc: SnapshotDoc, signerKeyHex: string): string | null {
  const key = fromHex(signerKeyHex);
  const sig = fromHex(doc.sig);
  if (key === null || sig === null || !verifySignature(sig, snapshotMessage(doc), key)) return "snapshot signature does not verify";
  let range: CompactRange;
  try {
    range = snapshotRange(doc);
  } catch (err) {
    return `snapshot compact range is malformed: ${(err as Error).message}`;
  }
  if (toHex(range.root()) !== doc.root) return "snapshot root is not the root of its compact range";
  const state = snapshotState(doc);
  if (toHex(stateRoot(state.subjects.values(), state.dedup.values())) !== doc.state_root) return "snapshot state_root does not match its state";
  return null;
}
