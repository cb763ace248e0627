/**
 * The deterministic governance state machine. apply() is a pure function of the state and the
 * entry; storage supplies the state (SQLite on a node, a Map in a verifier's replay).
 */
import { Entry, EntryKind } from "./entry";
import { parseRecordPayload, RecordPayload } from "./record";
import { assert, AssertionError } from "../util/assert";
import { LedgerError } from "../util/errors";
import { sha256 } from "./hash";
import { canonicalBytes } from "./canonical";
import { CompactRange } from "./merkle";
import { toHex, utf8 } from "./bytes";

export interface SubjectRow {
  readonly subject: string;
  readonly version: number;
  readonly head: Uint8Array;
  readonly lastIndex: number;
}

export interface DedupRow {
  readonly key: string;
  readonly digest: string;
  readonly index: number;
  readonly term: number;
  readonly hash: Uint8Array;
}

/** The state apply reads and writes. */
export interface StateStore {
  getSubject(subject: string): SubjectRow | undefined;
  putSubject(row: SubjectRow): void;
  addSubjectRecord(subject: string, version: number, index: number): void;
  getDedup(key: string): DedupRow | undefined;
  putDedup(row: DedupRow): void;
}

export type ApplyResult =
  | { readonly kind: "record"; readonly index: number; readonly term: number; readonly hash: Uint8Array; readonly version: number }
  | { readonly kind: "duplicate"; readonly original: DedupRow; readonly digest: string | undefined }
  | { readonly kind: "none" };

/** The chain of a subject starts from 32 zero bytes: subject_head = SHA-256(prev || entry_hash). */
export const SUBJECT_HEAD_ZERO = new Uint8Array(32);

export const nextSubjectHead = (prev: Uint8Array, entryHashValue: Uint8Array): Uint8Array =>
  sha256(prev, entryHashValue);

/** A committed RECORD entry that does not apply: the API validated it, so only a bug or a foreign writer gets here. */
export class UnappliableRecord extends AssertionError {
  constructor(readonly index: number, reason: string) {
    super(`RECORD entry ${index} does not apply: ${reason}`);
    this.name = "UnappliableRecord";
  }
}

/** The RECORD entry's payload as parseRecordPayload accepts it; UnappliableRecord (with why) when it does not. */
export function recordOf(entry: Entry): RecordPayload {
  try {
    return parseRecordPayload(entry.payload);
  } catch (err) {
    if (err instanceof LedgerError) throw new UnappliableRecord(entry.index, err.message);
    throw err;
  }
}

/**
 * Applies one committed entry. Only RECORD entries change state; a retried key changes nothing.
 * A RECORD entry fails the same validation the API ran before proposing only if something other
 * than an honest leader wrote it: that throws UnappliableRecord (the node halts loudly; the
 * verifier reports a violation), never a silent skip.
 */
export function applyEntry(store: StateStore, entry: Entry): ApplyResult {
  if (entry.kind !== EntryKind.Record) return { kind: "none" };
  return applyRecord(store, entry, recordOf(entry));
}

/** The fields of a RECORD payload that a replay reads (apply, and the verifier's order of time); the rest is what the log records. */
export type RecordKeys = Pick<RecordPayload, "subject" | "idempotency_key" | "request_digest" | "ts">;

/** The keys apply reads, copied out of a record that parseRecordPayload accepted (small enough to pass between threads). */
export function recordKeys(rec: RecordPayload): RecordKeys {
  return {
    subject: rec.subject,
    ts: rec.ts,
    ...(rec.idempotency_key === undefined ? {} : { idempotency_key: rec.idempotency_key }),
    ...(rec.request_digest === undefined ? {} : { request_digest: rec.request_digest }),
  };
}

/**
 * applyEntry for a RECORD entry whose payload was already checked: `rec` is what
 * parseRecordPayload(entry.payload) returned (or its recordKeys), here or on another thread.
 */
export function applyRecord(store: StateStore, entry: Entry, rec: RecordKeys): ApplyResult {
  assert(entry.kind === EntryKind.Record, `applyRecord of entry ${entry.index}, of kind ${entry.kind}`);
  if (rec.idempotency_key !== undefined) {
    const prior = store.getDedup(rec.idempotency_key);
    if (prior !== undefined) return { kind: "duplicate", original: prior, digest: rec.request_digest };
  }
  const prev = store.getSubject(rec.subject);
  const version = (prev?.version ?? 0) + 1;
  const head = nextSubjectHead(prev?.head ?? SUBJECT_HEAD_ZERO, entry.hash);
  store.putSubject({ subject: rec.subject, version, head, lastIndex: entry.index });
  store.addSubjectRecord(rec.subject, version, entry.index);
  if (rec.idempotency_key !== undefined) {
    store.putDedup({
      key: rec.idempotency_key,
      digest: rec.request_digest ?? "",
      index: entry.index,
      term: entry.term,
      hash: entry.hash,
    });
  }
  return { kind: "record", index: entry.index, term: entry.term, hash: entry.hash, version };
}

const STATE_TAG = utf8("resonetics/state/v1");

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * state_root: the RFC 9162 root over the subject rows sorted by subject (UTF-16 code-unit order),
 * then the dedup rows sorted by key; each leaf is SHA-256(tag || canonical JSON of the row).
 */
export function stateRoot(subjects: Iterable<SubjectRow>, dedup: Iterable<DedupRow>): Uint8Array {
  const steps = stateRootSteps(subjects, dedup);
  // Ends: one step per row, and the rows are finitely many.
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/** stateRoot as a resumable step function (one leaf per step): the audit worker drives it with the chain replay. */
export function* stateRootSteps(subjects: Iterable<SubjectRow>, dedup: Iterable<DedupRow>): Generator<void, Uint8Array, void> {
  const range = new CompactRange();
  for (const s of [...subjects].sort((a, b) => byString(a.subject, b.subject))) {
    const row = { t: "subject", subject: s.subject, version: s.version, head: toHex(s.head), last_index: s.lastIndex };
    range.append(sha256(STATE_TAG, canonicalBytes(row)));
    yield;
  }
  for (const d of [...dedup].sort((a, b) => byString(a.key, b.key))) {
    const row = { t: "dedup", key: d.key, digest: d.digest, index: d.index, term: d.term, hash: toHex(d.hash) };
    range.append(sha256(STATE_TAG, canonicalBytes(row)));
    yield;
  }
  return range.root();
}

/** An in-memory StateStore, for replay by verifiers. */
export class MemoryState implements StateStore {
  readonly subjects = new Map<string, SubjectRow>();
  readonly records = new Map<string, number[]>();
  readonly dedup = new Map<string, DedupRow>();

  getSubject(subject: string): SubjectRow | undefined {
    return this.subjects.get(subject);
  }
  putSubject(row: SubjectRow): void {
    this.subjects.set(row.subject, row);
  }
  addSubjectRecord(subject: string, version: number, index: number): void {
    const list = this.records.get(subject) ?? [];
    list[version - 1] = index;
    this.records.set(subject, list);
  }
  getDedup(key: string): DedupRow | undefined {
    return this.dedup.get(key);
  }
  putDedup(row: DedupRow): void {
    this.dedup.set(row.key, row);
  }

}
