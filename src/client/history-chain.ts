/**
 * A subject's history checked page by page, as README "Checking that a subject's history is
 * complete" tells a client to: every entry's hash recomputed, the subject's records chained
 * head = SHA-256(head || entry_hash) from 32 zero bytes, each inclusion proof against its page's
 * checkpoint, that checkpoint's signature, and at the end the completeness proof: the subject's
 * leaf {head, subject, version} under the signed subjects_root, with exactly `version` records up
 * to the checkpoint's size chaining to `head`.
 */
import { fromHex, toHex } from "../ledger/bytes";
import { verifyInclusion } from "../ledger/merkle-verify";
import { decodeRecord } from "../ledger/record";
import { nextSubjectHead, SUBJECT_HEAD_ZERO } from "../ledger/state-machine";
import { subjectLeafData } from "../ledger/subject-tree";
import type { EntryJson, InclusionJson } from "./client";
import { CheckpointJson, entryProblem, payloadOf, signatureProblem } from "./checks";
import { proofPath } from "./checkpoint-guard";

export interface HistoryRecordJson {
  readonly version: number;
  readonly subject_head: string;
  readonly entry: EntryJson;
  readonly inclusion: InclusionJson | null;
}

export interface CompletenessJson {
  readonly version: number;
  readonly head: string;
  readonly leaf_index: number;
  readonly tree_size: number;
  readonly path: string[];
}

/** GET /v1/subjects/:subject/history, one page. */
export interface HistoryJson {
  readonly subject: string;
  readonly version: number;
  readonly head: string;
  readonly checkpoint: CheckpointJson | null;
  readonly prev_subject_head: string;
  readonly records: HistoryRecordJson[];
  readonly next: number | null;
  readonly completeness: CompletenessJson | null;
}

/** What the completeness proof established: the history is complete up to entry `size`. */
export interface Completeness {
  readonly size: number;
  /** The checkpoint that signs subjects_root, and its signer. */
  readonly checkpointIndex: number;
  readonly signer: string;
}

export class HistoryChain {
  private headBytes: Uint8Array = SUBJECT_HEAD_ZERO;
  private lastIndex = 0;
  /** Per version v (at v - 1): the record's log index and the subject head after it, for the completeness check. */
  private readonly indices: number[] = [];
  private readonly heads: string[] = [];
  /** Checkpoints whose signature was checked already (by index): pages share one. */
  private readonly signed = new Set<number>();

  constructor(readonly subject: string, private readonly keys: ReadonlyMap<string, string>) {}

  /** The subject head after the last record checked (a next page's head=). */
  get head(): string {
    return toHex(this.headBytes);
  }

  /** Checks one page, the one after those already checked; why it does not verify, or null. */
  page(p: HistoryJson): string | null {
    if (p.subject !== this.subject) return `the page is of subject ${JSON.stringify(p.subject)}`;
    if (p.prev_subject_head !== this.head) return `the page starts from subject head ${p.prev_subject_head}, not ${this.head}`;
    const cp = p.checkpoint;
    if (cp !== null && !this.signed.has(cp.index)) {
      const bad = signatureProblem(cp, this.keys);
      if (bad !== null) return `the checkpoint at index ${cp.index}: ${bad}`;
      this.signed.add(cp.index);
    }
    for (const r of p.records) {
      const bad = this.record(r, cp);
      if (bad !== null) return `version ${this.indices.length + 1} (entry ${r.entry?.index}): ${bad}`;
    }
    if (p.next === null && (this.indices.length !== p.version || this.head !== p.head)) {
      return `the last page ends at version ${this.indices.length} head ${this.head}, the node says version ${p.version} head ${p.head}`;
    }
    return null;
  }

  private record(r: HistoryRecordJson, cp: CheckpointJson | null): string | null {
    const e = r.entry;
    if (r.version !== this.indices.length + 1) return `out of order: version ${r.version}`;
    if (typeof e !== "object" || e === null || !(e.index > this.lastIndex)) return "entries out of log order";
    const bad = entryProblem(e, e.index);
    if (bad !== null) return bad;
    const payload = payloadOf(e);
    if (payload === null || decodeRecord(payload)?.subject !== this.subject) return `not a record of subject ${JSON.stringify(this.subject)}`;
    this.headBytes = nextSubjectHead(this.headBytes, fromHex(e.hash) as Uint8Array);
    if (r.subject_head !== this.head) return `subject_head ${r.subject_head}, but the chain gives ${this.head}`;
    const covered = cp !== null && e.index <= cp.size;
    if (covered !== (r.inclusion !== null)) return covered ? "no inclusion proof, though the checkpoint covers it" : "an inclusion proof no checkpoint of the page covers";
    if (cp !== null && r.inclusion !== null) {
      const path = proofPath(r.inclusion.path);
      const root = fromHex(cp.root);
      if (r.inclusion.size !== cp.size || r.inclusion.root !== cp.root || path === null || root === null ||
        !verifyInclusion(e.index - 1, cp.size, fromHex(e.hash) as Uint8Array, path, root)) {
        return `the inclusion proof does not verify against the checkpoint at index ${cp.index} (root(${cp.size}) ${cp.root})`;
      }
    }
    this.lastIndex = e.index;
    this.indices.push(e.index);
    this.heads.push(this.head);
    return null;
  }

  /**
   * After the last page (its answer as `last`): up to which entry the history is proven complete,
   * null when the node has no proof for it yet, or why the proof does not verify.
   */
  completeness(last: HistoryJson): Completeness | null | string {
    const c = last.completeness;
    const cp = last.checkpoint;
    if (c === null) return null;
    if (cp === null || cp.subjects_root === undefined) return "a completeness proof without a checkpoint that signs a subjects_root";
    const head = fromHex(c.head);
    const root = fromHex(cp.subjects_root);
    const path = proofPath(c.path);
    if (head === null || root === null || path === null || !Number.isSafeInteger(c.version) || c.version < 1 ||
      !verifyInclusion(c.leaf_index, c.tree_size, subjectLeafData(this.subject, c.version, head), path, root)) {
      return `the completeness proof (version ${c.version}, head ${c.head}) is not under subjects_root ${cp.subjects_root} of the checkpoint at index ${cp.index}`;
    }
    // Exactly `version` records with an index up to the checkpoint's size, and they chain to `head`.
    const upTo = this.indices.filter((i) => i <= cp.size).length;
    if (upTo !== c.version || this.heads[c.version - 1] !== c.head) {
      return `the signed subjects_root says ${c.version} records up to entry ${cp.size} chaining to ${c.head}; the history has ${upTo}${upTo > 0 ? ` chaining to ${this.heads[upTo - 1]}` : ""}`;
    }
    return { size: cp.size, checkpointIndex: cp.index, signer: cp.signer };
  }
}
