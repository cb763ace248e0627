/**
 * subjects_root: the commitment to every subject's chain head that a checkpoint signs, so a
 * subject's history can be proved complete ("no record of it was left out") as of that checkpoint.
 *
 * An RFC 9162 tree (the log's hashing, so any RFC 9162 verifier checks its proofs) whose leaf i is
 * the i-th subject in the order of its first record in the log. That order only ever appends: a new
 * subject is a new leaf at the end, a new record of a known subject changes that subject's leaf in
 * place. So a node keeps the tree as it applies, and a verifier rebuilds it in replay order.
 *
 *   leaf data = "resonetics/subject/v1" || canonical_json({head, subject, version})
 *   leaf hash = SHA-256(0x00 || leaf data)        node = SHA-256(0x01 || left || right)
 *
 * where head is the subject_head (hex) after its version-th record. A client holding a signed
 * checkpoint with subjects_root checks the leaf's path, then chains the subject's records from 32
 * zero bytes: after `version` records of index <= the checkpoint's size it must reach `head`.
 *
 * Leaf hashes are computed when asked for (root or proof), not per record: a replay of many records
 * of one subject hashes its leaf once per checkpoint, and each perfect subtree above a changed leaf
 * is rehashed once however many of its leaves changed.
 */
import { concatBytes, toHex, utf8, writeHex, writeUtf8 } from "./bytes";
import { emptyRoot, inclusionProof, leafHash, nodeHash, rootAt } from "./merkle";
import { assert } from "../util/assert";
import type { MemoryState, StateStore } from "./state-machine";

const SUBJECT_TAG = utf8("resonetics/subject/v1");

/** The leaf data of a subject with `version` records whose chain reached `head`. */
export function subjectLeafData(subject: string, version: number, head: Uint8Array): Uint8Array {
  assert(Number.isSafeInteger(version) && version >= 1, `subject version ${version}`);
  // canonical_json({head, subject, version}) spelled out: the keys in RFC 8785's order, the subject
  // as JSON.stringify writes a string (RFC 8785's string form; subjects are I-JSON, so no lone
  // surrogate), the version as a whole number. A replay builds one per changed subject per
  // checkpoint; the generic serializer cost more than the hash. test/ledger/subject-tree.test.ts
  // holds it to canonicalBytes.
  return concatBytes(SUBJECT_TAG, utf8(`{"head":"${toHex(head)}","subject":${JSON.stringify(subject)},"version":${version}}`));
}

/**
 * Where subjectLeafHash writes a leaf's data, reused call after call: 4 KiB holds any subject of up
 * to 200 code points (at most 6 bytes each in JSON: \uXXXX) with room to spare; a longer one is
 * built by subjectLeafData instead.
 */
const LEAF_SCRATCH = new Uint8Array(4096);
/** The leaf data up to the head's hex: the tag, then the JSON's first key. */
const LEAF_OPEN = concatBytes(SUBJECT_TAG, utf8('{"head":"'));
const SUBJECT_OPEN = utf8('","subject":');

/**
 * leafHash(subjectLeafData(subject, version, head)), the data written into one reused buffer: a
 * replay hashes a leaf for each subject changed between two checkpoints (hundreds, on a log of a
 * thousand subjects), and building each one's data from strings (hex, text, UTF-8, a join) cost
 * as much as hashing it. test/ledger/subject-tree.test.ts holds the two equal.
 */
export function subjectLeafHash(subject: string, version: number, head: Uint8Array): Uint8Array {
  assert(Number.isSafeInteger(version) && version >= 1, `subject version ${version}`);
  // A head is a SHA-256 (32 bytes); anything else is built the long way, which has no size to outgrow.
  if (head.length !== 32) return leafHash(subjectLeafData(subject, version, head));
  const out = LEAF_SCRATCH;
  out.set(LEAF_OPEN, 0);
  let at: number | null = writeHex(head, out, LEAF_OPEN.length);
  out.set(SUBJECT_OPEN, at);
  at = writeUtf8(`${JSON.stringify(subject)},"version":${version}}`, out, at + SUBJECT_OPEN.length);
  // The hash reads the scratch before it returns (every SHA-256 port does), so it is free again after.
  return at === null ? leafHash(subjectLeafData(subject, version, head)) : leafHash(out.subarray(0, at));
}

/** What a leaf says about its subject. */
export interface SubjectLeaf {
  readonly subject: string;
  readonly version: number;
  readonly head: Uint8Array;
}

/** A subject's leaf with its inclusion path in the tree of `size` leaves (RFC 9162, bottom-up). */
export interface SubjectProof extends SubjectLeaf {
  readonly leaf_index: number;
  readonly size: number;
  readonly path: Uint8Array[];
}

export class SubjectTree {
  /** Leaf position of each subject (the order of its first record). */
  private readonly position: Map<string, number>;
  /** Per leaf: its subject, version and head; the leaf hash when known, else null (changed since). */
  private readonly leaves: Array<{ leaf: SubjectLeaf; hash: Uint8Array | null }>;
  /**
   * levels[l][i]: the hash of the perfect subtree of leaves [i * 2^l, (i + 1) * 2^l) at level l >= 1,
   * or null when a leaf under it changed since it was hashed. Only subtrees lying wholly inside
   * the tree have a slot.
   */
  private readonly levels: Array<Array<Uint8Array | null>>;

  constructor(from?: SubjectTree) {
    this.position = new Map(from?.position);
    this.leaves = from === undefined ? [] : from.leaves.map((x) => ({ leaf: x.leaf, hash: x.hash }));
    this.levels = from === undefined ? [] : from.levels.map((l) => l.slice());
  }

  /** A copy that later changes to either do not reach: O(subjects) references copied, no hashing. */
  clone(): SubjectTree {
    return new SubjectTree(this);
  }

  get size(): number {
    return this.leaves.length;
  }

  /** Records that `subject` now has `version` records with chain head `head` (a new subject is appended). */
  set(subject: string, version: number, head: Uint8Array): void {
    const leaf = { subject, version, head };
    const at = this.position.get(subject);
    if (at === undefined) {
      const pos = this.leaves.length;
      this.position.set(subject, pos);
      this.leaves.push({ leaf, hash: null });
      // Every perfect subtree this leaf completes gets its (not yet computed) slot.
      for (let level = 1; (pos + 1) % 2 ** level === 0; level++) {
        if (this.levels.length < level) this.levels.push([]);
        this.levels[level - 1].push(null);
      }
      return;
    }
    this.leaves[at] = { leaf, hash: null };
    for (let level = 1; level <= this.levels.length; level++) {
      const slots = this.levels[level - 1];
      const i = Math.floor(at / 2 ** level);
      if (i >= slots.length) break; // no complete subtree above this leaf at this level or higher
      slots[i] = null;
    }
  }

  /** The subject's leaf as the tree holds it, or undefined for a subject without records. */
  get(subject: string): SubjectLeaf | undefined {
    const at = this.position.get(subject);
    return at === undefined ? undefined : this.leaves[at].leaf;
  }

  /** The leaves in tree order (the order of each subject's first record). */
  *leavesInOrder(): IterableIterator<SubjectLeaf> {
    for (const x of this.leaves) yield x.leaf;
  }

  /** subjects_root: the RFC 9162 root over the leaves (the empty tree's root when there are none). */
  root(): Uint8Array {
    return this.leaves.length === 0 ? emptyRoot() : rootAt((level, index) => this.node(level, index), this.leaves.length);
  }

  /** The inclusion proof of the subject's leaf, or undefined for a subject without records. */
  proof(subject: string): SubjectProof | undefined {
    const at = this.position.get(subject);
    if (at === undefined) return undefined;
    const path = inclusionProof((level, index) => this.node(level, index), at, this.leaves.length);
    return { ...this.leaves[at].leaf, leaf_index: at, size: this.leaves.length, path };
  }

  /** The hash of a perfect subtree inside the tree, computed (and kept) when not known. */
  private node(level: number, index: number): Uint8Array {
    if (level === 0) {
      const x = this.leaves[index];
      assert(x !== undefined, `subject leaf ${index} outside a tree of ${this.leaves.length}`);
      x.hash ??= subjectLeafHash(x.leaf.subject, x.leaf.version, x.leaf.head);
      return x.hash;
    }
    const slots = this.levels[level - 1];
    assert(slots !== undefined && index < slots.length, `subject subtree ${level}/${index} is not complete`);
    const known = slots[index];
    if (known !== null) return known;
    const hash = nodeHash(this.node(level - 1, 2 * index), this.node(level - 1, 2 * index + 1));
    slots[index] = hash;
    return hash;
  }
}

/**
 * A StateStore that passes everything to `inner` and keeps the tree `tree()` names at the state it
 * holds (or anything else that takes a tree's set calls: verify-chain collects them for a tree kept
 * on another thread).
 */
export function trackSubjects(inner: StateStore, tree: () => Pick<SubjectTree, "set">): StateStore {
  return {
    getSubject: (subject) => inner.getSubject(subject),
    putSubject: (row) => {
      inner.putSubject(row);
      tree().set(row.subject, row.version, row.head);
    },
    addSubjectRecord: (subject, version, index) => inner.addSubjectRecord(subject, version, index),
    getDedup: (key) => inner.getDedup(key),
    putDedup: (row) => inner.putDedup(row),
  };
}

/** The tree of a replayed state: its subjects in the order of their first record (MemoryState keeps each one's record indices). */
export function subjectTreeOf(state: MemoryState): SubjectTree {
  const first = (subject: string): number => state.records.get(subject)?.[0] ?? Number.MAX_SAFE_INTEGER;
  const tree = new SubjectTree();
  for (const row of [...state.subjects.values()].sort((a, b) => first(a.subject) - first(b.subject))) tree.set(row.subject, row.version, row.head);
  return tree;
}
