/**
 * An independent implementation of the DESIGN.md formulas, for acceptance tests.
 * It imports nothing from src/ on purpose: a bug shared by the server and its own verifier
 * would otherwise pass unnoticed. Written from DESIGN.md "The log" and RFC 9162 2.1 text.
 */
import { createHash, createPrivateKey, createPublicKey, verify as cryptoVerify } from "node:crypto";

/** SHA-256 of the concatenation of the parts. */
export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Lowercase hex only (the formats never use uppercase); throws otherwise. */
export function hexToBuf(hex: string): Buffer {
  if (typeof hex !== "string" || !/^(?:[0-9a-f]{2})*$/.test(hex)) {
    throw new Error(`not lowercase hex: ${String(hex).slice(0, 80)}`);
  }
  return Buffer.from(hex, "hex");
}

export const bufToHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function u64be(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a u64: ${n}`);
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(n));
  return out;
}

export const KIND_CODES: Readonly<Record<string, number>> = { noop: 0, record: 1, config: 2, checkpoint: 3 };

/** genesis_hash = SHA-256("resonetics/genesis/v1" || 0x00 || utf8(cluster_id)). */
export function genesisHash(clusterId: string): Buffer {
  return sha256(Buffer.from("resonetics/genesis/v1", "utf8"), Buffer.from([0]), Buffer.from(clusterId, "utf8"));
}

/** entry_hash(i) = SHA-256("resonetics/entry/v1" || 0x00 || u64be(i) || u64be(term) || u8(kind) || prev || SHA-256(payload)). */
export function entryHash(index: number, term: number, kind: number, prev: Uint8Array, payload: Uint8Array): Buffer {
  if (!Number.isInteger(kind) || kind < 0 || kind > 255) throw new RangeError(`not a u8 kind: ${kind}`);
  if (prev.length !== 32) throw new RangeError(`prev hash must be 32 bytes, got ${prev.length}`);
  return sha256(
    Buffer.from("resonetics/entry/v1", "utf8"),
    Buffer.from([0]),
    u64be(index),
    u64be(term),
    Buffer.from([kind]),
    prev,
    sha256(payload),
  );
}

// ---------------------------------------------------------------- RFC 9162 2.1 Merkle tree

/** RFC 9162 leaf hash: SHA-256(0x00 || data). */
export const leafHash = (data: Uint8Array): Buffer => sha256(Buffer.from([0]), data);

/** RFC 9162 interior node: SHA-256(0x01 || left || right). */
export const nodeHash = (left: Uint8Array, right: Uint8Array): Buffer => sha256(Buffer.from([1]), left, right);

/** Largest power of two strictly smaller than n (n >= 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[lo:hi]) over leaf hashes, straight from the RFC's recursive definition. */
function mth(leafHashes: readonly Uint8Array[], lo: number, hi: number): Buffer {
  const n = hi - lo;
  if (n === 1) return Buffer.from(leafHashes[lo]);
  const k = splitPoint(n);
  return nodeHash(mth(leafHashes, lo, lo + k), mth(leafHashes, lo + k, hi));
}

/** Merkle tree head of the first `size` leaves (given as leaf hashes); size 0 = SHA-256(""). */
export function merkleRoot(leafHashes: readonly Uint8Array[], size: number = leafHashes.length): Buffer {
  if (!Number.isInteger(size) || size < 0 || size > leafHashes.length) {
    throw new RangeError(`size ${size} outside 0..${leafHashes.length}`);
  }
  return size === 0 ? sha256() : mth(leafHashes, 0, size);
}

const isSet = (n: number): boolean => n % 2 === 1;

function isPowerOfTwo(n: number): boolean {
  let m = n;
  while (m > 1 && m % 2 === 0) m /= 2;
  return m === 1;
}
const half = (n: number): number => Math.floor(n / 2);

/**
 * RFC 9162 2.1.3.2: verify that `leaf` (a leaf hash) sits at 0-based `leafIndex` in the tree of
 * `treeSize` leaves whose head is `root`. Never throws; any malformed input is a failed proof.
 */
export function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  leaf: Uint8Array,
  path: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(leafIndex) || !Number.isSafeInteger(treeSize) || leafIndex < 0) return false;
  if (leafIndex >= treeSize) return false; // step 1
  if (leaf.length !== 32 || root.length !== 32 || path.some((p) => p.length !== 32)) return false;
  let fn = leafIndex; // step 2
  let sn = treeSize - 1;
  let r: Buffer = Buffer.from(leaf); // step 3
  for (const p of path) {
    // step 4
    if (sn === 0) return false; // 4a
    if (isSet(fn) || fn === sn) {
      r = nodeHash(p, r); // 4b.i
      if (!isSet(fn)) {
        while (!isSet(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn); // 4c
    sn = half(sn);
  }
  return sn === 0 && r.equals(root); // step 5
}

/**
 * RFC 9162 2.1.4.2: verify that the tree of size `first` with head `firstRoot` is a prefix of the
 * tree of size `second` with head `secondRoot`. Sizes equal: consistent iff the path is empty and
 * the heads are equal. first = 0: consistent iff the path is empty (the empty tree is a prefix of all).
 */
export function verifyConsistency(
  first: number,
  second: number,
  path: readonly Uint8Array[],
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 0 || first > second) return false;
  if (firstRoot.length !== 32 || secondRoot.length !== 32 || path.some((p) => p.length !== 32)) return false;
  if (first === second) return path.length === 0 && Buffer.from(firstRoot).equals(secondRoot);
  if (first === 0) return path.length === 0;
  if (path.length === 0) return false; // step 1
  const nodes: Uint8Array[] = [...path];
  if (isPowerOfTwo(first)) nodes.unshift(firstRoot); // step 2
  let fn = first - 1; // step 3
  let sn = second - 1;
  while (isSet(fn)) {
    // step 4
    fn = half(fn);
    sn = half(sn);
  }
  let fr: Buffer = Buffer.from(nodes[0]); // step 5
  let sr: Buffer = Buffer.from(nodes[0]);
  for (const c of nodes.slice(1)) {
    // step 6
    if (sn === 0) return false; // 6a
    if (isSet(fn) || fn === sn) {
      fr = nodeHash(c, fr); // 6b.i
      sr = nodeHash(c, sr); // 6b.ii
      if (!isSet(fn)) {
        while (!isSet(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c); // 6b otherwise
    }
    fn = half(fn); // 6c
    sn = half(sn);
  }
  return fr.equals(firstRoot) && sr.equals(secondRoot) && sn === 0; // step 7
}

// ---------------------------------------------------------------- canonical JSON and checkpoints

/**
 * RFC 8785 canonical JSON for plain JSON values: object keys sorted by UTF-16 code units, no
 * whitespace, ECMAScript number and string serialization (which is what JSON.stringify emits).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError("non-finite number has no JSON form");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort(); // default sort compares UTF-16 code units, as RFC 8785 3.2.3 requires
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
  }
  throw new TypeError(`${typeof value} has no JSON form`);
}

export interface CheckpointPayload {
  v: number;
  cluster: string;
  size: number;
  root: string;
  head: string;
  term: number;
  signer: string;
  ts: string;
  sig: string;
  /** The subjects commitment after entry size; absent in checkpoints from before it. */
  subjects_root?: string;
}

/**
 * The exact signed bytes: "resonetics/checkpoint/v1\n" || canonical_json(body without sig), the
 * body being the payload's fields (the API's `index` is the entry's place in the log, not signed).
 */
export function checkpointMessage(cp: CheckpointPayload): Buffer {
  const { v, cluster, size, root, head, term, signer, ts, subjects_root } = cp;
  const body = subjects_root === undefined ? { v, cluster, size, root, head, term, signer, ts } : { v, cluster, size, root, head, term, signer, ts, subjects_root };
  return Buffer.concat([Buffer.from("resonetics/checkpoint/v1\n", "utf8"), Buffer.from(canonicalJson(body), "utf8")]);
}

const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** Ed25519 verification with node:crypto from a raw 32-byte public key (hex). Never throws. */
export function verifyEd25519(publicKeyHex: string, message: Uint8Array, signatureHex: string): boolean {
  let key: Buffer;
  let sig: Buffer;
  try {
    key = hexToBuf(publicKeyHex);
    sig = hexToBuf(signatureHex);
  } catch {
    return false; // malformed hex is a failed verification, reported by the caller's assertion
  }
  if (key.length !== 32 || sig.length !== 64) return false;
  const spki = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, key]), format: "der", type: "spki" });
  return cryptoVerify(null, message, spki, sig);
}

const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * An Ed25519 key pair from a 32-byte seed (RFC 8032 5.1.5), derived with node:crypto: the shape of
 * src's KeyPair (secretKey is the seed), for fixtures built outside a test without calling src.
 */
export function keyPair(seed: Uint8Array): { secretKey: Buffer; publicKey: Buffer } {
  const secretKey = Buffer.from(seed);
  const priv = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, secretKey]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(priv).export({ format: "der", type: "spki" });
  return { secretKey, publicKey: spki.subarray(spki.length - 32) };
}

/** A checkpoint payload's signature, checked against the given raw public key. */
export const verifyCheckpointSig = (cp: CheckpointPayload, publicKeyHex: string): boolean =>
  verifyEd25519(publicKeyHex, checkpointMessage(cp), cp.sig);

// ---------------------------------------------------------------- state machine and state_root

/** A subject's row of the materialized state (DESIGN.md "State machine"). */
export interface IndSubjectRow {
  readonly subject: string;
  readonly version: number;
  readonly head: Buffer;
  readonly lastIndex: number;
}

/** A client dedup row: the idempotency key, its request digest, and the original result. */
export interface IndDedupRow {
  readonly key: string;
  readonly digest: string;
  readonly index: number;
  readonly term: number;
  readonly hash: Buffer;
}

/** The state a replay rebuilds: subject rows, each subject's record indices by version, dedup rows. */
export interface IndState {
  readonly subjects: Map<string, IndSubjectRow>;
  readonly records: Map<string, number[]>;
  readonly dedup: Map<string, IndDedupRow>;
}

/** A row of the log table as it is on disk: (idx, term, kind, payload, hash). */
export interface RawLogRow {
  readonly idx: number;
  readonly term: number;
  readonly kind: number;
  readonly payload: Uint8Array;
  readonly hash: Uint8Array;
}

/** "A subject's chain starts from 32 zero bytes." */
export const SUBJECT_HEAD_ZERO: Buffer = Buffer.alloc(32);

/** subject_head = SHA-256(prev subject_head || entry_hash). */
export const subjectHead = (prev: Uint8Array, entryHashValue: Uint8Array): Buffer => sha256(prev, entryHashValue);

/** UTF-16 code-unit order, as "sorted by subject" / "sorted by key" means for JavaScript strings. */
const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

const STATE_TAG = Buffer.from("resonetics/state/v1", "utf8");

/** The canonical JSON of a subject row, as it is hashed into the state root. */
export const subjectRowJson = (s: IndSubjectRow): string =>
  canonicalJson({ t: "subject", subject: s.subject, version: s.version, head: bufToHex(s.head), last_index: s.lastIndex });

/** The canonical JSON of a dedup row, as it is hashed into the state root. */
export const dedupRowJson = (d: IndDedupRow): string =>
  canonicalJson({ t: "dedup", key: d.key, digest: d.digest, index: d.index, term: d.term, hash: bufToHex(d.hash) });

/**
 * state_root = the RFC 9162 root over the subject rows sorted by subject, then the dedup rows
 * sorted by key; leaf data = SHA-256("resonetics/state/v1" || canonical row), so each tree leaf is
 * SHA-256(0x00 || that digest). No rows: the empty tree's root, SHA-256("").
 */
export function stateRootOf(subjects: Iterable<IndSubjectRow>, dedup: Iterable<IndDedupRow>): Buffer {
  const rows = [
    ...[...subjects].sort((a, b) => byCodeUnits(a.subject, b.subject)).map(subjectRowJson),
    ...[...dedup].sort((a, b) => byCodeUnits(a.key, b.key)).map(dedupRowJson),
  ];
  return merkleRoot(rows.map((row) => leafHash(sha256(STATE_TAG, Buffer.from(row, "utf8")))));
}

/**
 * subjects_root (DESIGN.md "State machine", as built): the RFC 9162 root over one leaf per subject,
 * in the order of each subject's first record in the log; leaf data = "resonetics/subject/v1" ||
 * canonical_json({head, subject, version}), the tree leaf SHA-256(0x00 || leaf data).
 */
export const subjectLeafHash = (subject: string, version: number, head: Uint8Array): Buffer =>
  leafHash(Buffer.concat([Buffer.from("resonetics/subject/v1", "utf8"), Buffer.from(canonicalJson({ head: bufToHex(head), subject, version }), "utf8")]));

/** subjects_root of a replayed state: its subjects in the order of their first record (their first index). */
export function subjectsRootOfState(s: IndState): Buffer {
  const first = (subject: string): number => (s.records.get(subject) ?? [])[0] ?? Number.MAX_SAFE_INTEGER;
  const rows = [...s.subjects.values()].sort((a, b) => first(a.subject) - first(b.subject));
  return merkleRoot(rows.map((r) => subjectLeafHash(r.subject, r.version, r.head)));
}

/** state_root of a replayed state. */
export const stateRootOfState = (s: IndState): Buffer => stateRootOf(s.subjects.values(), s.dedup.values());

/**
 * Replays raw log rows from genesis: checks index contiguity from 1 and every entry hash (so the
 * rows are the chain of clusterId), then applies each RECORD: a record whose idempotency_key was
 * already seen changes nothing; otherwise its subject's version goes up by one and its head chains
 * the entry hash. Other kinds change nothing. Throws on anything that is not a well-formed chain
 * or record: a replay never skips.
 */
export function replayLog(rows: Iterable<RawLogRow>, clusterId: string): IndState {
  const state: IndState = { subjects: new Map(), records: new Map(), dedup: new Map() };
  let prev: Buffer = genesisHash(clusterId);
  let expected = 1;
  for (const row of rows) {
    if (row.idx !== expected) throw new Error(`replay: log row ${row.idx} where ${expected} was expected`);
    const h = entryHash(row.idx, row.term, row.kind, prev, row.payload);
    if (!h.equals(Buffer.from(row.hash))) throw new Error(`replay: entry ${row.idx} hash ${bufToHex(row.hash)} != recomputed ${bufToHex(h)}`);
    prev = h;
    expected++;
    if (row.kind !== KIND_CODES.record) continue;
    const text = Buffer.from(row.payload).toString("utf8");
    const rec = JSON.parse(text) as { subject?: unknown; idempotency_key?: unknown; request_digest?: unknown };
    if (typeof rec.subject !== "string") throw new Error(`replay: RECORD ${row.idx} has no subject: ${text.slice(0, 200)}`);
    const key = rec.idempotency_key;
    if (key !== undefined && typeof key !== "string") throw new Error(`replay: RECORD ${row.idx} has a non-string idempotency_key`);
    if (key !== undefined && state.dedup.has(key)) continue;
    const before = state.subjects.get(rec.subject);
    const version = (before?.version ?? 0) + 1;
    state.subjects.set(rec.subject, {
      subject: rec.subject,
      version,
      head: subjectHead(before?.head ?? SUBJECT_HEAD_ZERO, h),
      lastIndex: row.idx,
    });
    const list = state.records.get(rec.subject) ?? [];
    list.push(row.idx);
    state.records.set(rec.subject, list);
    if (key !== undefined) {
      const digest = rec.request_digest ?? "";
      if (typeof digest !== "string") throw new Error(`replay: RECORD ${row.idx} has a non-string request_digest`);
      state.dedup.set(key, { key, digest, index: row.idx, term: row.term, hash: h });
    }
  }
  return state;
}

// ---------------------------------------------------------------- seeded randomness

/** mulberry32: a small seeded PRNG, so every random choice in a test can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed for this run: RESONETICS_SEED when set (to reproduce), else a fresh one. */
export function testSeed(): number {
  const env = process.env.RESONETICS_SEED;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isSafeInteger(n)) throw new Error(`RESONETICS_SEED must be an integer, got ${env}`);
    return n >>> 0;
  }
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}
