/**
 * Offline verification of a node's chain: every entry hash, contiguity, term monotonicity, every
 * stored Merkle node, every checkpoint (root, head, signature against the configured node keys),
 * the checkpoint index, the hard state, and the state tables against a fresh replay.
 * Reads through ChainSource, so it shares the exact hashing code with the server.
 */
import { Entry, EntryKind, entryHash, genesisHash, isEntryKind } from "./entry";
import { CompactRange, leafHash } from "./merkle";
import { bytesEqual, toHex } from "./bytes";
import { decodeCheckpoint, verifyCheckpointSignature, Checkpoint } from "./checkpoint";
import { configPayloadProblem, decodeConfig } from "./config";
import { applyRecord, DedupRow, MemoryState, RecordKeys, recordKeys, recordOf, stateRootSteps, SubjectRow, UnappliableRecord } from "./state-machine";
import { SubjectLeaf, SubjectTree, subjectTreeOf, trackSubjects } from "./subject-tree";
import { decodeSnapshot, snapshotProblem, snapshotRange, snapshotState } from "./snapshot";
import { AnchorProblem, AnchorReport, AnchorTracker } from "./anchor";
import type { PinnedCheckpoint, TrustFile } from "./trust";
import { isU64 } from "./shapes";

export interface ChainSource {
  getMeta(key: string): string | undefined;
  hardState(): { readonly commitIndex: number; readonly lastApplied: number; readonly term: number };
  lastIndex(): number;
  /** Entries from..to in index order; an entry may come with its facts computed ahead (entryFacts). */
  entries(from: number, to: number): Iterable<Entry & { readonly facts?: EntryFacts }>;
  /** A stored Merkle node, undefined when absent. */
  findNode(level: number, index: number): Uint8Array | undefined;
  checkpoints(cluster: string): Iterable<Checkpoint & { readonly index: number }>;
  allSubjects(): Iterable<SubjectRow>;
  allSubjectRecords(): Iterable<{ subject: string; version: number; index: number }>;
  allDedup(): Iterable<DedupRow>;
  /** The latest snapshot document's bytes, if the node made or received one. */
  latestSnapshotBytes(): Uint8Array | undefined;
  /** The compaction anchor, if the log was compacted. */
  anchor(): { index: number; term: number; hash: Uint8Array } | undefined;
  /** The stored snapshots' indices, newest first (absent: only the latest snapshot is known). */
  snapshotIndexes?(): number[];
  /** The snapshot document stored at index. */
  snapshotBytesAt?(index: number): Uint8Array | undefined;
  /**
   * Where the replay hands its checkpoint checks (CheckpointCheck), fresh for each verification;
   * absent: they run on this thread as the replay reaches them (InlineCheckpointChecks).
   */
  checkpointChecks?(): CheckpointChecks;
}

/**
 * The checks of a CHECKPOINT entry that nothing later in the replay depends on: its signature under
 * the signer's configured key, and its subjects_root against the replayed subject tree at its size.
 * The replay hands them over in index order. A source may run them on another thread, behind the
 * replay (verify-chain's workers, src/node/verify-pipeline.ts); the report is the same either way:
 * a failure found late is still reported at its own index, ahead of anything the replay found after it.
 */
export interface CheckpointCheck {
  /** The CHECKPOINT entry's index. */
  readonly index: number;
  readonly checkpoint: Checkpoint;
  /** The signer's public key (hex) in the configuration at that entry. */
  readonly key: string;
  /**
   * The subject leaves set since the previous check (the first check: since the start, the start's
   * tree included), each once with its latest value, in the order each was first set: a subject new
   * to the tree joins it in that order, as it joined the replayed state.
   */
  readonly changed: readonly SubjectLeaf[];
  /** Whether subjects_root is compared: the checkpoint signs one and the data dir applied that far. */
  readonly compareSubjects: boolean;
}

/** A check that failed: where, and why. */
export interface CheckpointFailure {
  readonly index: number;
  readonly reason: string;
}

/** Where checkpoint checks run; a fresh one per verification. */
export interface CheckpointChecks {
  submit(check: CheckpointCheck): void;
  /** The first failure known so far, without waiting for checks still running. */
  failed(): CheckpointFailure | null;
  /** Waits for every check submitted so far; the first failure (lowest index), or null. */
  settle(): CheckpointFailure | null;
}

/** Runs checks in index order against the subject tree it rebuilds from their changes. */
export class CheckpointChecker {
  private readonly tree = new SubjectTree();

  /** Why the check fails, or null. */
  check(c: CheckpointCheck): string | null {
    for (const s of c.changed) this.tree.set(s.subject, s.version, s.head);
    const cp = c.checkpoint;
    if (!verifyCheckpointSignature(cp, c.key)) return `checkpoint signature does not verify against ${cp.signer}'s key`;
    if (c.compareSubjects) {
      const root = toHex(this.tree.root());
      if (cp.subjects_root !== root) return `checkpoint subjects_root ${String(cp.subjects_root)} differs from the replayed state's ${root}`;
    }
    return null;
  }
}

/** Checks run on this thread as they are submitted: failed() knows at once. */
export class InlineCheckpointChecks implements CheckpointChecks {
  private readonly checker = new CheckpointChecker();
  private failure: CheckpointFailure | null = null;

  submit(check: CheckpointCheck): void {
    if (this.failure !== null) return;
    const reason = this.checker.check(check);
    if (reason !== null) this.failure = { index: check.index, reason };
  }

  failed(): CheckpointFailure | null {
    return this.failure;
  }

  settle(): CheckpointFailure | null {
    return this.failure;
  }
}

/**
 * What an entry's own bytes decide, given the stored hash of the entry before it: everything of a
 * verification that does not need the replay so far. verify-chain computes it for many entries at
 * once on worker threads (src/node/verify-pipeline.ts); verifyChainSteps uses it as it comes, or
 * computes it in place, and the report is the same either way.
 */
export interface EntryFacts {
  /**
   * entryHash(index, term, kind, prevHash, payload) equals the stored hash; undefined when the
   * index, term or kind is not of the format (the replay reports that before it hashes).
   */
  readonly hashMatches: boolean | undefined;
  /** The entry's Merkle leaf: leafHash(stored hash). */
  readonly leaf: Uint8Array;
  /** A RECORD entry's keys for apply, or why its payload does not apply (UnappliableRecord's message). */
  readonly record?: RecordKeys | { readonly problem: string };
  /**
   * The hashes of the first Merkle nodes the entry's leaf completes (CompactRange.append's
   * `merged`), when computed ahead with the entries before it: not from this entry alone.
   */
  readonly merged?: Uint8Array;
}

/** The facts of `e`, whose predecessor's stored hash is prevHash (the genesis hash, or a snapshot's head, for the first). */
export function entryFacts(e: Entry, prevHash: Uint8Array): EntryFacts {
  const hashable = isU64(e.index) && isU64(e.term) && isEntryKind(e.kind);
  const hashMatches = hashable ? bytesEqual(entryHash(e.index, e.term, e.kind, prevHash, e.payload), e.hash) : undefined;
  const leaf = leafHash(e.hash);
  if (e.kind !== EntryKind.Record) return { hashMatches, leaf };
  try {
    return { hashMatches, leaf, record: recordKeys(recordOf(e)) };
  } catch (err) {
    if (err instanceof UnappliableRecord) return { hashMatches, leaf, record: { problem: err.message } };
    throw err;
  }
}

/** Where a verification starts: genesis, the latest snapshot, or the retained snapshot at an index. */
export type VerifyStart = "genesis" | "snapshot" | number;

export interface VerifyReport {
  readonly ok: boolean;
  readonly from: VerifyStart;
  readonly entries: number;
  readonly checkpoints: number;
  readonly size: number;
  readonly head: string | null;
  readonly root: string | null;
  readonly state_root: string | null;
  readonly last_applied: number;
  /** First index at which the chain is wrong (0 when the fault is not at an entry). */
  readonly first_bad_index?: number;
  readonly reason?: string;
  /** The graded report (ledger/anchor.ts): what it is anchored to, and what is signed. Absent when nothing was read. */
  readonly anchor?: AnchorReport["anchor"];
  readonly signed_size?: number;
  readonly checkpointed_size?: number;
  readonly grades?: AnchorReport["grades"];
}

export interface VerifyOptions {
  readonly onProgress?: (done: number, total: number) => void;
  /** Stop after this index (default: the last one). */
  readonly to?: number;
  /** The auditor's trust file: the pinned cluster, genesis hash and genesis configuration (and checkpoint). */
  readonly trust?: TrustFile;
  /** A checkpoint to pin (--checkpoint), instead of the trust file's. */
  readonly pinned?: PinnedCheckpoint;
  /** Start from genesis (default), the latest snapshot anchor, or the retained snapshot at an index. */
  readonly from?: VerifyStart;
}

/** Why a data dir cannot serve a verification start: nothing is wrong with its chain, it just lacks the start. */
export interface StartProblem {
  readonly reason: string;
  /** The starts this data dir can serve, earliest first: "genesis" when its history is complete, then each snapshot anchor. */
  readonly possible: ReadonlyArray<"genesis" | number>;
}

/** meta history_from (the first index a node holds history for); 1 when absent or not a whole number >= 1. */
function historyFromOf(src: ChainSource): number {
  const n = Number(src.getMeta("history_from") ?? "1");
  return Number.isSafeInteger(n) && n >= 1 ? n : 1;
}

/** The stored snapshots' indices, newest first. */
function snapshotIndexesOf(src: ChainSource): number[] {
  if (src.snapshotIndexes !== undefined) return src.snapshotIndexes();
  const bytes = src.latestSnapshotBytes();
  const doc = bytes === undefined ? null : decodeSnapshot(bytes);
  return doc === null ? [] : [doc.index];
}

/** The snapshot document bytes a start names (undefined: none stored there). */
function startSnapshotBytes(src: ChainSource, from: "snapshot" | number): Uint8Array | undefined {
  if (from === "snapshot") return src.latestSnapshotBytes();
  if (src.snapshotBytesAt !== undefined) return src.snapshotBytesAt(from);
  return snapshotIndexesOf(src)[0] === from ? src.latestSnapshotBytes() : undefined;
}

/**
 * Null when the data dir can serve `from`; otherwise what it lacks and which starts it can serve.
 * A snapshot anchor S is a start when the log holds every entry after it (S >= the log's anchor) and
 * the history after it is held (S + 1 >= history_from); genesis, when nothing was ever cut or pruned.
 */
export function startProblem(src: ChainSource, from: VerifyStart): StartProblem | null {
  const anchor = src.anchor();
  const compactedTo = anchor !== undefined && anchor.index > 0 ? anchor.index : 0;
  const historyFrom = historyFromOf(src);
  const anchors = snapshotIndexesOf(src).filter((i) => i >= compactedTo && i + 1 >= historyFrom).sort((a, b) => a - b);
  const possible: Array<"genesis" | number> = [];
  if (compactedTo === 0 && historyFrom <= 1) possible.push("genesis");
  possible.push(...anchors);
  const instead = possible.length === 0 ? "it can serve no verification start" : `verify from=${possible.join(" or from=")}`;
  if (from === "snapshot" && anchors.length === 0) return { reason: `this node holds no snapshot to verify from; ${instead}`, possible };
  if (from === "genesis" && compactedTo > 0) return { reason: `this node's log is compacted up to ${compactedTo}, so it cannot replay from genesis; ${instead}`, possible };
  if (from === "genesis" && historyFrom > 1) return { reason: `this node's history starts at ${historyFrom} (a recorded prune), so it cannot replay from genesis; ${instead}`, possible };
  if (typeof from === "number" && !anchors.includes(from)) {
    const why = !snapshotIndexesOf(src).includes(from) ? `no snapshot is retained at ${from}`
      : from < compactedTo ? `the log before ${compactedTo} is gone, so the snapshot at ${from} cannot start a verification`
      : `history before ${historyFrom} is pruned, so the snapshot at ${from} cannot start a verification`;
    return { reason: `${why}; ${instead}`, possible };
  }
  return null;
}


class Violation extends Error {
  constructor(readonly index: number, reason: string) {
    super(reason);
  }
}

/** Verifies a chain from genesis (or a snapshot) to completion; a violation is a report with ok=false, never a throw. */
export function verifyChain(src: ChainSource, options: VerifyOptions = {}): VerifyReport {
  const steps = verifyChainSteps(src, options);
  // Ends: the steps yield once per entry or table row read, and a data dir holds finitely many.
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * verifyChain as a resumable step function: it yields after each unit of work (one entry, or one row
 * of a state table), so a server can run it in time slices without blocking its event loop. The
 * caller keeps src consistent across steps (one read transaction); the report is the return value.
 */
export function* verifyChainSteps(src: ChainSource, options: VerifyOptions = {}): Generator<void, VerifyReport, void> {
  const cluster = src.getMeta("cluster_id");
  const from = options.from ?? "genesis";
  const empty = { from, entries: 0, checkpoints: 0, size: 0, head: null, root: null, state_root: null, last_applied: 0 };
  if (cluster === undefined) return { ...empty, ok: false, first_bad_index: 0, reason: "no cluster_id in meta: not a Resonetics data dir" };
  const anchoring = new AnchorTracker(options.trust, options.pinned ?? options.trust?.checkpoint);
  const refused = anchoring.refusal(cluster, from === "genesis");
  if (refused !== null) return { ...empty, ok: false, first_bad_index: refused.index, reason: refused.reason, anchor: anchoring.report(1, 0).anchor };
  const hard = src.hardState();
  for (const [name, v] of [["term", hard.term], ["commit_index", hard.commitIndex], ["last_applied", hard.lastApplied]] as const) {
    if (!isU64(v)) return { ...empty, ok: false, first_bad_index: 0, reason: `hard_state ${name} is not a whole number: ${JSON.stringify(v)}` };
  }
  const last = Math.min(src.lastIndex(), options.to ?? Number.MAX_SAFE_INTEGER);
  let range = new CompactRange();
  let state = new MemoryState();
  const keys = new Map<string, string>();
  const derived = new Map<number, Checkpoint>();
  let prevHash = genesisHash(cluster);
  let prevTerm = 0;
  let expected = 1;
  let checkpoints = 0;
  const anchor = src.anchor();
  if (from !== "genesis") {
    const bytes = startSnapshotBytes(src, from);
    const doc = bytes === undefined ? null : decodeSnapshot(bytes);
    if (doc === null) return { ...empty, ok: false, first_bad_index: 0, reason: bytes === undefined ? "no snapshot to start from" : "snapshot does not parse" };
    if (typeof from === "number" && doc.index !== from) return { ...empty, ok: false, first_bad_index: from, reason: `the snapshot stored at ${from} is a snapshot of index ${doc.index}` };
    const cfg = decodeConfig(Buffer.from(doc.config_b64, "base64"));
    if (cfg === null) return { ...empty, ok: false, first_bad_index: doc.index, reason: "snapshot configuration does not parse" };
    for (const m of [...cfg.voters, ...cfg.learners]) keys.set(m.id, m.public_key);
    const signerKey = keys.get(doc.signer);
    const problem = doc.cluster !== cluster ? `snapshot is of cluster ${doc.cluster}`
      : signerKey === undefined ? `snapshot signer ${doc.signer} is not in its configuration` : snapshotProblem(doc, signerKey);
    if (problem !== null) return { ...empty, ok: false, first_bad_index: doc.index, reason: problem };
    if (anchor !== undefined && anchor.index > doc.index) {
      return { ...empty, ok: false, first_bad_index: anchor.index, reason: `log compacted to ${anchor.index}, past the snapshot at ${doc.index}` };
    }
    range = snapshotRange(doc);
    state = snapshotState(doc);
    prevHash = Buffer.from(doc.hash, "hex");
    prevTerm = doc.term;
    expected = doc.index + 1;
  } else if (anchor !== undefined && anchor.index > 0) {
    return { ...empty, ok: false, first_bad_index: 1, reason: `the log is compacted up to ${anchor.index}: verify with --from snapshot` };
  }
  const start = expected;
  // The subjects commitment of the replayed state: each checkpoint that signs a subjects_root must
  // sign the root of this state's subject tree at its size. The tree is kept where the checkpoint
  // checks run (CheckpointChecker), from the subjects the replay sets between two checkpoints; the
  // first check takes the start's tree with them.
  const checks = src.checkpointChecks?.() ?? new InlineCheckpointChecks();
  const changed = new Map<string, SubjectLeaf>();
  const collect = {
    set: (subject: string, version: number, head: Uint8Array): void => {
      changed.set(subject, { subject, version, head });
    },
  };
  for (const leaf of subjectTreeOf(state).leavesInOrder()) collect.set(leaf.subject, leaf.version, leaf.head);
  const tracked = trackSubjects(state, () => collect);
  anchoring.startFrom(keys);
  const anchorCheck = (p: AnchorProblem | null): void => {
    if (p !== null) throw new Violation(p.index, p.reason);
  };
  try {
    for (const e of src.entries(start, last)) {
      if (e.index !== expected) {
        throw new Violation(expected, `entry ${expected} is missing (next stored index is ${e.index})`);
      }
      if (!isU64(e.term) || e.term < 1) throw new Violation(e.index, `term ${JSON.stringify(e.term)} is not a whole number >= 1`);
      if (!isEntryKind(e.kind)) throw new Violation(e.index, `kind ${JSON.stringify(e.kind)} is not 0..3`);
      if (e.hash.length !== 32) throw new Violation(e.index, `stored hash is ${e.hash.length} bytes, not 32`);
      if (e.term < prevTerm) throw new Violation(e.index, `term ${e.term} is lower than the previous entry's ${prevTerm}`);
      // Facts computed ahead used the stored hash before this entry, which prevHash is here.
      const facts = e.facts ?? entryFacts(e, prevHash);
      if (facts.hashMatches !== true) {
        const h = entryHash(e.index, e.term, e.kind, prevHash, e.payload);
        throw new Violation(e.index, `entry hash mismatch: stored ${toHex(e.hash)}, recomputed ${toHex(h)}`);
      }
      if (e.index === 1 && e.kind !== EntryKind.Config) throw new Violation(1, "entry 1 must be the genesis CONFIG entry");
      if (e.kind === EntryKind.Config) {
        const cfg = decodeConfig(e.payload);
        if (cfg === null) throw new Violation(e.index, `CONFIG payload is not a configuration: ${configPayloadProblem(e.payload) ?? "does not parse"}`);
        keys.clear();
        for (const m of [...cfg.voters, ...cfg.learners]) keys.set(m.id, m.public_key);
        // With a trust file, entry 1 is the pinned genesis configuration byte for byte, so these keys are the pinned ones.
        anchorCheck(anchoring.config(e, keys));
      }
      let cp: Checkpoint | null = null;
      if (e.kind === EntryKind.Checkpoint) {
        const checked = checkCheckpoint(e, range, prevHash, cluster, keys);
        cp = checked.cp;
        // The state after entry size = the replay so far, when the data dir applied that far (an
        // unapplied tail after a crash is chained and signed-checked, but has no state here).
        const compareSubjects = cp.subjects_root !== undefined && cp.size <= hard.lastApplied;
        checks.submit({ index: e.index, checkpoint: cp, key: checked.key, changed: [...changed.values()], compareSubjects });
        changed.clear();
        const failure = checks.failed();
        if (failure !== null) throw new Violation(failure.index, failure.reason);
        derived.set(e.index, cp);
        anchoring.checkpoint(cp, keys);
        checkpoints++;
      }
      for (const n of range.append(e.hash, facts.leaf, facts.merged)) {
        const stored = src.findNode(n.level, n.index);
        if (stored === undefined || !bytesEqual(stored, n.hash)) {
          throw new Violation(e.index, `stored Merkle node ${n.level}/${n.index} ${stored === undefined ? "is missing" : "differs from the recomputed hash"}`);
        }
      }
      const rec = facts.record === undefined || "problem" in facts.record ? undefined : facts.record;
      anchorCheck(anchoring.appended(e, () => range.root(), cp, e.kind === EntryKind.Record ? rec?.ts : cp?.ts));
      if (e.index <= hard.lastApplied && facts.record !== undefined) {
        if ("problem" in facts.record) throw new Violation(e.index, facts.record.problem);
        applyRecord(tracked, e, facts.record);
      }
      prevHash = e.hash;
      prevTerm = e.term;
      expected++;
      if (options.onProgress !== undefined && e.index % 1024 === 0) options.onProgress(e.index, last);
      yield;
    }
    const failure = checks.settle();
    if (failure !== null) throw new Violation(failure.index, failure.reason);
    const size = expected - 1;
    if (options.to === undefined) {
      if (size < hard.commitIndex) throw new Violation(size + 1, `commit_index is ${hard.commitIndex} but the log ends at ${size}`);
      if (hard.lastApplied > hard.commitIndex) throw new Violation(0, `last_applied ${hard.lastApplied} exceeds commit_index ${hard.commitIndex}`);
      if (hard.term < prevTerm) throw new Violation(0, `hard state term ${hard.term} is lower than the last entry's term ${prevTerm}`);
      yield* checkCheckpointTable(src, cluster, derived, start);
      yield* checkState(src, state);
      anchorCheck(anchoring.finish(size));
    }
    options.onProgress?.(size, last);
    const root = yield* stateRootSteps(state.subjects.values(), state.dedup.values());
    return {
      ok: true, from, entries: size - start + 1, checkpoints, size,
      head: size > 0 ? toHex(prevHash) : null, root: toHex(range.root()),
      state_root: toHex(root), last_applied: Math.min(hard.lastApplied, size),
      ...anchoring.report(start, size),
    };
  } catch (err) {
    if (!(err instanceof Violation)) throw err;
    // A checkpoint check submitted before the violation came before it in the replay, wherever it
    // ran: the first that failed is the violation, reported as of its entry.
    const failure = checks.settle();
    if (failure !== null) {
      const before = [...derived.keys()].filter((i) => i < failure.index).length;
      return { ...empty, ok: false, entries: failure.index - start, checkpoints: before, size: failure.index - 1, first_bad_index: failure.index, reason: failure.reason, anchor: anchoring.report(start, 0).anchor };
    }
    return { ...empty, ok: false, entries: expected - start, checkpoints, size: expected - 1, first_bad_index: err.index, reason: err.message, anchor: anchoring.report(start, 0).anchor };
  }
}

/**
 * The checks of a CHECKPOINT entry that need the replay where it is (its size, root, head, term, and
 * a signer in the configuration); the checkpoint and its signer's key, for the CheckpointCheck.
 */
function checkCheckpoint(e: Entry, range: CompactRange, prevHash: Uint8Array, cluster: string, keys: Map<string, string>): { cp: Checkpoint; key: string } {
  const cp = decodeCheckpoint(e.payload);
  if (cp === null) throw new Violation(e.index, "CHECKPOINT payload does not parse");
  if (cp.size !== e.index - 1) throw new Violation(e.index, `checkpoint size ${cp.size} is not the index before it (${e.index - 1})`);
  if (cp.cluster !== cluster) throw new Violation(e.index, `checkpoint names cluster ${cp.cluster}`);
  if (cp.root !== toHex(range.root())) throw new Violation(e.index, `checkpoint root ${cp.root} is not root(${cp.size}) ${toHex(range.root())}`);
  if (cp.head !== toHex(prevHash)) throw new Violation(e.index, `checkpoint head is not entry_hash(${cp.size})`);
  if (cp.term !== e.term) throw new Violation(e.index, `checkpoint term ${cp.term} differs from its entry's term ${e.term}`);
  const key = keys.get(cp.signer);
  if (key === undefined) throw new Violation(e.index, `checkpoint signer ${cp.signer} is not in the configuration`);
  return { cp, key };
}

function* checkCheckpointTable(src: ChainSource, cluster: string, derived: Map<number, Checkpoint>, start: number): Generator<void, void, void> {
  const seen = new Set<number>();
  for (const row of src.checkpoints(cluster)) {
    if (row.index < start) continue; // before the snapshot anchor: its entry is compacted away
    const want = derived.get(row.index);
    if (want === undefined) throw new Violation(row.index, `checkpoints table has a row at ${row.index} with no CHECKPOINT entry there`);
    for (const k of ["size", "root", "head", "term", "signer", "ts", "sig"] as const) {
      if (row[k] !== want[k]) throw new Violation(row.index, `checkpoints table ${k} at ${row.index} differs from the log's checkpoint`);
    }
    seen.add(row.index);
    yield;
  }
  for (const index of derived.keys()) {
    if (!seen.has(index)) throw new Violation(index, `checkpoint entry ${index} is missing from the checkpoints table`);
  }
}

function* checkState(src: ChainSource, replay: MemoryState): Generator<void, void, void> {
  const subjects = new Map<string, SubjectRow>();
  for (const s of src.allSubjects()) {
    subjects.set(s.subject, s);
    yield;
  }
  for (const [name, want] of replay.subjects) {
    const got = subjects.get(name);
    if (got === undefined || got.version !== want.version || got.lastIndex !== want.lastIndex || !bytesEqual(got.head, want.head)) {
      throw new Violation(want.lastIndex, `state of subject ${JSON.stringify(name)} differs from a replay of the log`);
    }
    subjects.delete(name);
    yield;
  }
  for (const extra of subjects.values()) {
    throw new Violation(extra.lastIndex, `state has subject ${JSON.stringify(extra.subject)} that a replay of the log does not`);
  }
  let records = 0;
  for (const r of src.allSubjectRecords()) {
    if (replay.records.get(r.subject)?.[r.version - 1] !== r.index) {
      throw new Violation(r.index, `subject_records row (${r.subject}, v${r.version}) → ${r.index} differs from a replay`);
    }
    records++;
    yield;
  }
  let want = 0;
  for (const list of replay.records.values()) want += list.length;
  if (records !== want) throw new Violation(0, `subject_records has ${records} rows, a replay has ${want}`);
  const dedup = new Map<string, DedupRow>();
  for (const d of src.allDedup()) {
    dedup.set(d.key, d);
    yield;
  }
  if (dedup.size !== replay.dedup.size) throw new Violation(0, `dedup has ${dedup.size} rows, a replay has ${replay.dedup.size}`);
  for (const [key, w] of replay.dedup) {
    const g = dedup.get(key);
    if (g === undefined || g.digest !== w.digest || g.index !== w.index || g.term !== w.term || !bytesEqual(g.hash, w.hash)) {
      throw new Violation(w.index, `dedup row for key ${JSON.stringify(key)} differs from a replay`);
    }
    yield;
  }
}
