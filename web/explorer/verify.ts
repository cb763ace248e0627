/**
 * What the audit explorer checks, as plain functions over what a server sent (parsed JSON of
 * unknown shape) and the trust file the auditor pinned. No DOM, no network: the same hashing,
 * proof and signature code as the ledger (src/ledger, noble underneath), so the page and
 * `resonetics verify-chain` can never disagree on a format. Every check gives a Verdict with its
 * reason; nothing here takes the server's word (its leaf_hash, root, `record` or `checkpoint`
 * fields) for anything: hashes are recomputed from the payload bytes it served.
 */
import { ENTRY_KIND_NAMES, EntryKind, EntryKindName, entryHash, genesisHash } from "../../src/ledger/entry";
import { bytesEqual, fromHex, toHex } from "../../src/ledger/bytes";
import { leafHash } from "../../src/ledger/merkle";
import { rootFromInclusionProof, verifyConsistency } from "../../src/ledger/merkle-verify";
import { decodeCheckpoint, verifyCheckpointSignature } from "../../src/ledger/checkpoint";
import { decodeV1Object } from "../../src/ledger/canonical";
import { decodeConfig } from "../../src/ledger/config";
import { checkpointFromValue, genesisConfigPayload, genesisKeys, PinnedCheckpoint, TrustFile } from "../../src/ledger/trust";
import { nextSubjectHead } from "../../src/ledger/state-machine";
import { subjectLeafData } from "../../src/ledger/subject-tree";
import { isObj, isU64, HEX64, B64, PROOF_PATH_MAX as PATH_MAX } from "../../src/ledger/shapes";

export type VerdictState = "verified" | "failed" | "unverifiable";

/** A check's outcome and, always, its reason: what was verified, why it failed, or why it could not be checked. */
export interface Verdict {
  readonly state: VerdictState;
  readonly text: string;
}

export const verified = (text: string): Verdict => ({ state: "verified", text });
export const failed = (text: string): Verdict => ({ state: "failed", text });
export const unverifiable = (text: string): Verdict => ({ state: "unverifiable", text });

/** One verdict for an item made of several checks: failed beats unverifiable beats verified, and the texts that decided it are kept. */
export function combine(parts: readonly Verdict[]): Verdict {
  for (const state of ["failed", "unverifiable"] as const) {
    const hits = parts.filter((p) => p.state === state);
    if (hits.length > 0) return { state, text: hits.map((p) => p.text).join("; ") };
  }
  return verified(parts.map((p) => p.text).join("; "));
}


/** The first 12 hex digits: enough to tell two hashes apart on screen. */
export const short = (hex: string): string => (hex.length > 12 ? `${hex.slice(0, 12)}…` : hex);

function hex32(v: unknown): Uint8Array | null {
  return typeof v === "string" && HEX64.test(v) ? fromHex(v) : null;
}

/** Base64 to bytes, only in its one canonical spelling (the spare bits of the last character could hide a second one). */
function fromBase64(s: string): Uint8Array | null {
  if (!B64.test(s)) return null;
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  let again = "";
  for (let i = 0; i < out.length; i++) again += String.fromCharCode(out[i]);
  return btoa(again) === s ? out : null;
}

/** A hex path of at most PATH_MAX hashes, or why not. */
function parsePath(v: unknown, what: string): Uint8Array[] | string {
  if (!Array.isArray(v) || v.length > PATH_MAX) return `${what}.path is not a list of at most ${PATH_MAX} hashes`;
  const out: Uint8Array[] = [];
  for (const h of v) {
    const b = hex32(h);
    if (b === null) return `${what}.path holds ${JSON.stringify(h)?.slice(0, 80)}, not 64 lowercase hex digits`;
    out.push(b);
  }
  return out;
}

// ---------------------------------------------------------------- entries

/** An entry as GET /v1/records serves it, parsed; `hash` is the served one, `computed` the one recomputed here. */
export interface ServedEntry {
  readonly index: number;
  readonly term: number;
  readonly kind: EntryKind;
  readonly kindName: EntryKindName;
  readonly prevHash: Uint8Array;
  readonly hash: Uint8Array;
  readonly payload: Uint8Array;
  readonly computed: Uint8Array;
}

/** Parses a served entry view {index, term, kind, hash, prev_hash, payload_b64} and recomputes its hash, or gives why it cannot. */
export function parseEntry(v: unknown): ServedEntry | string {
  if (!isObj(v)) return "the entry is not a JSON object";
  if (!isU64(v.index) || v.index < 1) return "the entry's index is not a whole number >= 1";
  if (!isU64(v.term)) return `entry ${v.index}: term is not a whole number`;
  const kind = ENTRY_KIND_NAMES.indexOf(v.kind as EntryKindName);
  if (kind < 0) return `entry ${v.index}: kind ${JSON.stringify(v.kind)} is not one of ${ENTRY_KIND_NAMES.join(", ")}`;
  const prevHash = hex32(v.prev_hash);
  const hash = hex32(v.hash);
  if (prevHash === null || hash === null) return `entry ${v.index}: hash or prev_hash is not 64 lowercase hex digits`;
  const payload = typeof v.payload_b64 === "string" ? fromBase64(v.payload_b64) : null;
  if (payload === null) return `entry ${v.index}: payload_b64 is not canonical base64`;
  const k = kind as EntryKind;
  return { index: v.index, term: v.term, kind: k, kindName: ENTRY_KIND_NAMES[k], prevHash, hash, payload, computed: entryHash(v.index, v.term, k, prevHash, payload) };
}

/**
 * The hash chain of one entry: its hash is the entry hash of its contents, and its prev_hash is the
 * recomputed hash of the entry before it when that one is shown too (`before`), or the pinned
 * genesis hash for entry 1, whose payload must be the pinned genesis configuration.
 */
export function checkChain(e: ServedEntry, before: ServedEntry | null, trust: TrustFile | null): Verdict {
  if (!bytesEqual(e.computed, e.hash)) return failed(`hash ${short(toHex(e.hash))} is not the entry hash of its contents (${short(toHex(e.computed))})`);
  if (e.index === 1) {
    if (trust === null) return verified("hash recomputed (no trust file: the genesis is not checked)");
    if (!bytesEqual(e.prevHash, genesisHash(trust.cluster))) return failed(`prev_hash is not the genesis hash of the pinned cluster ${trust.cluster}`);
    if (e.kind !== EntryKind.Config || !bytesEqual(e.payload, genesisConfigPayload(trust))) return failed("entry 1 is not the pinned genesis configuration");
    return verified("hash recomputed; chained to the pinned genesis; the pinned genesis configuration");
  }
  if (before === null || before.index !== e.index - 1) return verified(`hash recomputed (entry ${e.index - 1} not shown: the inclusion proof binds prev_hash)`);
  if (!bytesEqual(e.prevHash, before.computed)) return failed(`prev_hash ${short(toHex(e.prevHash))} does not chain to entry ${before.index} (${short(toHex(before.computed))})`);
  return verified(`hash recomputed; chained to entry ${before.index}`);
}

/** One line about what an entry says, read from its verified payload bytes (never from the server's parsed `record`). */
export function entrySummary(e: ServedEntry): string {
  switch (e.kind) {
    case EntryKind.Noop:
      return "a new leader's first entry";
    case EntryKind.Record: {
      const r = decodeV1Object(e.payload);
      return r === null ? "(payload is not a record)" : `${String(r.type)} · ${String(r.subject)}`;
    }
    case EntryKind.Config: {
      const c = decodeConfig(e.payload);
      return c === null ? "(payload is not a configuration)" : `voters ${c.voters.map((m) => m.id).join(", ")}${c.learners.length > 0 ? `; learners ${c.learners.map((m) => m.id).join(", ")}` : ""}`;
    }
    case EntryKind.Checkpoint: {
      const c = decodeCheckpoint(e.payload);
      return c === null ? "(payload is not a checkpoint)" : `checkpoint of size ${c.size} by ${c.signer}`;
    }
    default: {
      const never: never = e.kind;
      return never;
    }
  }
}

// ---------------------------------------------------------------- checkpoints

/** A checkpoint and what its check found; `cp` is set when it parsed, but only a verified one may anchor anything. */
export interface CheckedCheckpoint {
  readonly cp: PinnedCheckpoint | null;
  readonly verdict: Verdict;
}

/**
 * A checkpoint view {v, cluster, size, root, head, term, signer, ts, sig, index}: of the pinned
 * cluster, signed by a member of the pinned genesis configuration under the key that configuration
 * gives it. A signer outside it is an unknown signer: not verified, whatever the server says.
 */
export function checkCheckpoint(value: unknown, trust: TrustFile): CheckedCheckpoint {
  const cp = checkpointFromValue(value, trust.cluster);
  if (typeof cp === "string") return { cp: null, verdict: failed(cp) };
  const key = genesisKeys(trust).get(cp.signer);
  if (key === undefined) {
    return { cp, verdict: unverifiable(`unknown signer ${JSON.stringify(cp.signer)}: not a member of the pinned genesis configuration (the explorer does not follow later membership changes; use verify-receipt's signer_chain)`) };
  }
  if (!verifyCheckpointSignature(cp, key)) return { cp, verdict: failed(`the signature is not ${cp.signer}'s Ed25519 signature over this checkpoint`) };
  return { cp, verdict: verified(`size ${cp.size}, signed by ${cp.signer} (key from the pinned genesis configuration)`) };
}

/** The checkpoint a CHECKPOINT entry's verified payload holds, checked like any other. */
export function checkCheckpointEntry(e: ServedEntry, trust: TrustFile): CheckedCheckpoint {
  const c = decodeCheckpoint(e.payload);
  if (c === null) return { cp: null, verdict: failed(`entry ${e.index}'s payload is not a signed checkpoint`) };
  return checkCheckpoint({ ...c, index: e.index }, trust);
}

/** The signed head: entry `size`'s recomputed hash must be the checkpoint's head. */
export function checkHead(e: ServedEntry, cp: PinnedCheckpoint): Verdict {
  return toHex(e.computed) === cp.head ? verified(`the signed head of checkpoint ${cp.index}`) : failed(`hash ${short(toHex(e.computed))} is not the head ${short(cp.head)} checkpoint ${cp.index} signs`);
}

// ---------------------------------------------------------------- proofs

/**
 * An inclusion proof {index, size, path} of an entry against a verified checkpoint: the leaf is the
 * entry hash recomputed here, the root is the signed one (the proof's own leaf_hash and root are
 * ignored: they are the server's word).
 */
export function checkInclusion(e: ServedEntry, value: unknown, cp: PinnedCheckpoint): Verdict {
  if (!isObj(value)) return failed("the inclusion proof is not a JSON object");
  if (value.index !== e.index) return failed(`the inclusion proof is for index ${JSON.stringify(value.index)}, not ${e.index}`);
  if (value.size !== cp.size) return failed(`the inclusion proof is for size ${JSON.stringify(value.size)}, not the checkpoint's ${cp.size}`);
  return checkPath(e.index - 1, cp.size, leafHash(e.computed), value.path, cp.root, `checkpoint ${cp.index}`, "inclusion proof");
}

/** RFC 9162 inclusion of one leaf hash under a signed root, with the reason when it is not. */
function checkPath(leafIndex: number, size: number, leaf: Uint8Array, rawPath: unknown, rootHex: string, signedBy: string, what: string): Verdict {
  const path = parsePath(rawPath, `the ${what}`);
  if (typeof path === "string") return failed(path);
  const root = rootFromInclusionProof(leafIndex, size, leaf, path);
  if (root === null) return failed(`the ${what}'s path (${path.length} hashes) does not fit leaf ${leafIndex} of a tree of ${size}`);
  if (toHex(root) !== rootHex) return failed(`the ${what} leads to root ${short(toHex(root))}, not ${short(rootHex)} signed in ${signedBy}`);
  return verified(`included under the root signed in ${signedBy} (size ${size})`);
}

/**
 * That `older` (a checkpoint's size and root) is a prefix of the verified `newer`: equal roots at
 * equal sizes, else `value`, an RFC 9162 consistency proof {from, to, path} (unused, and may be
 * undefined, when the sizes are equal).
 */
export function checkConsistency(older: { readonly size: number; readonly root: string }, newer: PinnedCheckpoint, value: unknown): Verdict {
  if (older.size > newer.size) return failed(`size ${older.size} is beyond the latest checkpoint's ${newer.size}: a rolled-back or lagging log`);
  if (older.size === newer.size) {
    return older.root === newer.root ? verified(`the same root as the latest checkpoint (size ${newer.size})`) : failed(`a different root at the same size ${newer.size}: a fork`);
  }
  if (older.size === 0) return verified("the empty tree is a prefix of every tree");
  if (!isObj(value)) return failed("the consistency proof is not a JSON object");
  if (value.from !== older.size || value.to !== newer.size) return failed(`the consistency proof is from ${JSON.stringify(value.from)} to ${JSON.stringify(value.to)}, not ${older.size} to ${newer.size}`);
  const path = parsePath(value.path, "the consistency proof");
  if (typeof path === "string") return failed(path);
  const ok = verifyConsistency(older.size, newer.size, path, fromHex(older.root) ?? new Uint8Array(), fromHex(newer.root) ?? new Uint8Array());
  return ok ? verified(`a prefix of the latest checkpoint (size ${newer.size})`) : failed(`the consistency proof does not show root(${older.size}) is a prefix of root(${newer.size}): a fork or a rewrite`);
}

// ---------------------------------------------------------------- a subject's history

/** One record of a history page, checked. */
export interface HistoryRecordCheck {
  readonly index: number;
  readonly version: number;
  readonly summary: string;
  readonly hash: string;
  readonly subjectHead: Uint8Array;
  readonly verdict: Verdict;
}

/**
 * One record of GET /v1/subjects/:s/history: {version, subject_head, entry, inclusion}. Its entry
 * hash is recomputed; its payload is a record of this subject; its version follows the one before;
 * its subject_head = SHA-256(prev head || entry hash); and its inclusion proof is against the page's
 * checkpoint, when that one verified (null inclusion: after it, chained only).
 */
export function checkHistoryRecord(subject: string, v: unknown, prevHead: Uint8Array, prevVersion: number, cp: CheckedCheckpoint): HistoryRecordCheck | string {
  if (!isObj(v)) return "a history record is not a JSON object";
  const e = parseEntry(v.entry);
  if (typeof e === "string") return e;
  const head = nextSubjectHead(prevHead, e.computed);
  const parts: Verdict[] = [];
  parts.push(bytesEqual(e.computed, e.hash) ? verified("hash recomputed") : failed(`hash ${short(toHex(e.hash))} is not the entry hash of its contents (${short(toHex(e.computed))})`));
  const r = e.kind === EntryKind.Record ? decodeV1Object(e.payload) : null;
  parts.push(r !== null && r.subject === subject ? verified(`a record of ${subject}`) : failed(`entry ${e.index} is not a record of subject ${JSON.stringify(subject)}`));
  parts.push(v.version === prevVersion + 1 ? verified(`version ${prevVersion + 1}`) : failed(`version ${JSON.stringify(v.version)} where ${prevVersion + 1} follows`));
  parts.push(v.subject_head === toHex(head) ? verified("subject head chained") : failed(`subject_head ${short(String(v.subject_head))} is not SHA-256(previous head || entry hash) = ${short(toHex(head))}`));
  if (cp.cp === null) parts.push(unverifiable(`no checkpoint to prove it against: ${cp.verdict.text}`));
  else if (v.inclusion === null) parts.push(e.index > cp.cp.size ? unverifiable(`after checkpoint ${cp.cp.index} (size ${cp.cp.size}): chained, not yet signed`) : failed(`no inclusion proof although checkpoint ${cp.cp.index} covers index ${e.index}`));
  else if (cp.verdict.state !== "verified") parts.push(unverifiable(`the page's checkpoint is not verified: ${cp.verdict.text}`));
  else parts.push(checkInclusion(e, v.inclusion, cp.cp));
  return { index: e.index, version: prevVersion + 1, summary: entrySummary(e), hash: toHex(e.computed), subjectHead: head, verdict: combine(parts) };
}

/**
 * That the history is complete up to a verified checkpoint (README "Checking that a subject's
 * history is complete"): the signed subjects_root holds the leaf {head, subject, version}, and the
 * records up to the checkpoint's size, chained from 32 zero bytes, are exactly `version` of them
 * ending at `head`. `counted` is that chain as the page walk found it.
 */
export function checkCompleteness(subject: string, value: unknown, cp: CheckedCheckpoint, counted: { readonly version: number; readonly head: Uint8Array }): Verdict {
  if (cp.cp === null || cp.verdict.state !== "verified") return unverifiable(`the checkpoint is not verified: ${cp.verdict.text}`);
  if (value === null) return unverifiable("the server gave no completeness proof (none yet for this checkpoint, or the subject is newer than it)");
  if (!isObj(value)) return failed("the completeness proof is not a JSON object");
  const root = cp.cp.subjects_root;
  if (root === undefined) return unverifiable(`checkpoint ${cp.cp.index} signs no subjects_root`);
  const head = hex32(value.head);
  if (!isU64(value.version) || head === null || !isU64(value.leaf_index) || !isU64(value.tree_size)) return failed("the completeness proof is not {version, head, leaf_index, tree_size, path}");
  const leaf = leafHash(subjectLeafData(subject, value.version, head));
  const path = checkPath(value.leaf_index, value.tree_size, leaf, value.path, root, `checkpoint ${cp.cp.index}'s subjects_root`, "completeness proof");
  if (path.state !== "verified") return path;
  if (counted.version !== value.version) return failed(`the history shows ${counted.version} records up to size ${cp.cp.size}, the signed state has ${value.version}: records are missing or added`);
  if (!bytesEqual(counted.head, head)) return failed(`the history's subject head up to size ${cp.cp.size} is not the signed one: a record left out, swapped or reordered`);
  return verified(`complete up to size ${cp.cp.size}: ${value.version} records, head signed in checkpoint ${cp.cp.index}`);
}

// ---------------------------------------------------------------- snapshots

/** A snapshot anchor {index, term, hash, state_root, signer, ts} as GET /v1/snapshots lists it. */
export interface SnapshotAnchor {
  readonly index: number;
  readonly term: number;
  readonly hash: string;
  readonly state_root: string;
  readonly signer: string;
  readonly ts: string;
}

/** Parses one listed snapshot anchor, or gives why not. */
export function parseSnapshot(v: unknown): SnapshotAnchor | string {
  if (!isObj(v)) return "a snapshot is not a JSON object";
  if (!isU64(v.index) || v.index < 1 || !isU64(v.term)) return "a snapshot's index or term is not a whole number";
  if (typeof v.hash !== "string" || !HEX64.test(v.hash) || typeof v.state_root !== "string" || !HEX64.test(v.state_root)) return `snapshot ${v.index}: hash or state_root is not 64 lowercase hex digits`;
  return { index: v.index, term: v.term, hash: v.hash, state_root: v.state_root, signer: String(v.signer), ts: String(v.ts) };
}

/** A snapshot's anchor is the entry at its index: same term, and the hash recomputed from that entry's contents. */
export function checkSnapshotAnchor(s: SnapshotAnchor, e: ServedEntry): Verdict {
  if (e.index !== s.index) return failed(`the entry served for snapshot ${s.index} is entry ${e.index}`);
  if (!bytesEqual(e.computed, e.hash)) return failed(`entry ${e.index}'s hash is not the entry hash of its contents`);
  if (toHex(e.computed) !== s.hash || e.term !== s.term) return failed(`the anchor (hash ${short(s.hash)}, term ${s.term}) is not entry ${s.index} (hash ${short(toHex(e.computed))}, term ${e.term})`);
  return verified(`anchored at entry ${s.index}`);
}
