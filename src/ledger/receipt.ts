/**
 * Receipts (DESIGN.md "Offline verification"): one entry, its inclusion proof against a signed
 * checkpoint, and the chain of CONFIG entries that carries the signer's key from the pinned genesis
 * configuration; a third party checks it with the trust file and no server. Pure: no I/O, noble only.
 *
 * The signer chain: the trusted keys start as the genesis configuration's. Each link is a CONFIG
 * entry with an inclusion proof against a checkpoint signed by a member of the configuration
 * before it (trusted so far); once it verifies, that CONFIG's members are the trusted keys. The
 * receipt's checkpoint must then be signed by a member of the last configuration reached, under
 * the key that configuration gives it.
 */
import { Entry, ENTRY_KIND_NAMES, EntryKind, EntryKindName, entryHash, genesisHash, kindName } from "./entry";
import { bytesEqual, fromHex, fromUtf8, toHex } from "./bytes";
import { Checkpoint, checkpointViewKeysProblem, decodeCheckpoint, verifyCheckpointSignature } from "./checkpoint";
import { canonicalBytes, canonicalJson } from "./canonical";
import { parseIJson } from "./ijson";
import { LedgerError } from "../util/errors";
import { decodeConfig } from "./config";
import { verifyInclusion } from "./merkle-verify";
import { genesisKeys, PinnedCheckpoint, TrustFile } from "./trust";
import { type Obj, isObj, isU64, HEX64, B64, PROOF_PATH_MAX as PATH_MAX } from "./shapes";

export const RECEIPT_TYPE = "resonetics/receipt/v1";

export interface ReceiptEntry {
  readonly index: number;
  readonly term: number;
  readonly kind: EntryKindName;
  readonly payload_b64: string;
  readonly prev_hash: string;
  readonly hash: string;
}

export interface ReceiptInclusion {
  readonly size: number;
  readonly path: readonly string[];
}

export interface SignerLink {
  readonly config: ReceiptEntry;
  readonly inclusion: ReceiptInclusion;
  readonly checkpoint: PinnedCheckpoint;
}

export interface Receipt {
  readonly v: 1;
  readonly type: typeof RECEIPT_TYPE;
  readonly cluster: string;
  readonly entry: ReceiptEntry;
  readonly inclusion: ReceiptInclusion;
  readonly checkpoint: PinnedCheckpoint;
  readonly signer_key: string;
  readonly signer_chain: readonly SignerLink[];
}

/** An entry as a receipt carries it: the exact payload bytes and both hashes. */
export function receiptEntry(e: Entry, prevHash: Uint8Array): ReceiptEntry {
  return {
    index: e.index, term: e.term, kind: kindName(e.kind), payload_b64: Buffer.from(e.payload).toString("base64"),
    prev_hash: toHex(prevHash), hash: toHex(e.hash),
  };
}

export type ReceiptResult =
  | { readonly ok: true; readonly index: number; readonly size: number; readonly signer: string; readonly chain: number }
  | { readonly ok: false; readonly reason: string };

/** Thrown inside verification only, to carry the reason out; never escapes verifyReceipt. */
class Bad extends Error {}

/** Links per signer chain: one per membership change since genesis; 10,000 is decades of changes. */
const CHAIN_MAX = 10_000;
const RECEIPT_KEYS = ["v", "type", "cluster", "entry", "inclusion", "checkpoint", "signer_key", "signer_chain"];

function need(cond: boolean, reason: string): asserts cond {
  if (!cond) throw new Bad(reason);
}

function exactKeys(o: Obj, keys: readonly string[], what: string): void {
  for (const k of keys) need(Object.prototype.hasOwnProperty.call(o, k), `${what} has no ${k}`);
  for (const k of Object.keys(o)) need(keys.includes(k), `${what} has an unexpected key ${JSON.stringify(k)}`);
}

const hex32 = (v: unknown, what: string): Uint8Array => {
  need(typeof v === "string" && HEX64.test(v), `${what} is not 64 lowercase hex digits`);
  return fromHex(v) as Uint8Array;
};

/** A receipt entry: its hash recomputed from (index, term, kind, prev_hash, payload). */
function checkEntry(v: unknown, what: string): { index: number; kind: EntryKind; payload: Uint8Array; hash: Uint8Array; prev: Uint8Array } {
  need(isObj(v), `${what} is not an object`);
  exactKeys(v, ["index", "term", "kind", "payload_b64", "prev_hash", "hash"], what);
  need(isU64(v.index) && v.index >= 1, `${what}.index is not a whole number >= 1`);
  need(isU64(v.term) && v.term >= 1, `${what}.term is not a whole number >= 1`);
  const kind = ENTRY_KIND_NAMES.indexOf(v.kind as EntryKindName);
  need(kind >= 0, `${what}.kind is not one of ${ENTRY_KIND_NAMES.join(", ")}`);
  need(typeof v.payload_b64 === "string" && B64.test(v.payload_b64), `${what}.payload_b64 is not base64`);
  const payload = new Uint8Array(Buffer.from(v.payload_b64, "base64"));
  // Base64 has spare bits in its last character: only the one canonical spelling of the bytes counts.
  need(Buffer.from(payload).toString("base64") === v.payload_b64, `${what}.payload_b64 is not in canonical base64`);
  const prev = hex32(v.prev_hash, `${what}.prev_hash`);
  const hash = hex32(v.hash, `${what}.hash`);
  const h = entryHash(v.index, v.term, kind as EntryKind, prev, payload);
  need(bytesEqual(h, hash), `${what} ${v.index}: hash ${v.hash} is not the entry hash of its contents (${toHex(h)})`);
  return { index: v.index, kind: kind as EntryKind, payload, hash, prev };
}

/** A checkpoint as a receipt carries it (with its index), well formed and of this cluster. */
function checkCheckpointShape(v: unknown, cluster: string, what: string): PinnedCheckpoint {
  need(isObj(v), `${what} is not an object`);
  const keys = checkpointViewKeysProblem(v, what);
  need(keys === null, keys ?? "");
  const { index, ...body } = v;
  const cp = decodeCheckpoint(canonicalBytes(body));
  need(cp !== null, `${what} is not a well-formed signed checkpoint`);
  need(cp.cluster === cluster, `${what} is of cluster ${cp.cluster}, the trust file pins ${cluster}`);
  need(isU64(index) && index === cp.size + 1, `${what}.index must be its size + 1`);
  return { ...cp, index };
}

/** The inclusion of leaf `index` (1-based entry index) in root(size) of cp. */
function checkInclusion(v: unknown, leafIndex: number, leaf: Uint8Array, cp: Checkpoint, what: string): void {
  need(isObj(v), `${what} is not an object`);
  exactKeys(v, ["size", "path"], what);
  need(v.size === cp.size, `${what}.size ${String(v.size)} is not the checkpoint's size ${cp.size}`);
  need(leafIndex <= cp.size, `entry ${leafIndex} is not covered by a checkpoint of size ${cp.size}`);
  need(Array.isArray(v.path) && v.path.length <= PATH_MAX, `${what}.path is not a list of at most ${PATH_MAX} hashes`);
  const path = (v.path as unknown[]).map((p, i) => hex32(p, `${what}.path[${i}]`));
  const ok = verifyInclusion(leafIndex - 1, cp.size, leaf, path, fromHex(cp.root) as Uint8Array);
  need(ok, `${what}: entry ${leafIndex} is not in root(${cp.size}) ${cp.root}`);
}

/** The checkpoint's signature under the key `keys` gives its signer. */
function checkSigned(cp: Checkpoint, keys: ReadonlyMap<string, string>, what: string, by: string): string {
  const key = keys.get(cp.signer);
  need(key !== undefined, `${what}: signer ${cp.signer} is not a member of ${by}`);
  need(verifyCheckpointSignature(cp, key), `${what}: the signature does not verify under ${cp.signer}'s key in ${by}`);
  return key;
}

/** Verifies a receipt offline against a trust file; the reason when it does not verify. Never throws on bad input. */
export function verifyReceipt(receipt: unknown, trust: TrustFile): ReceiptResult {
  try {
    return check(receipt, trust);
  } catch (err) {
    if (err instanceof Bad) return { ok: false, reason: err.message };
    throw err;
  }
}

/** The bytes of a receipt as served: canonical JSON (RFC 8785), optionally with one trailing newline. */
export const encodeReceipt = (r: Receipt): string => canonicalJson(r);

/**
 * Verifies a receipt file's bytes: they must be the receipt's canonical JSON (one trailing newline
 * allowed), so that no byte of it can change without the check failing, then verifyReceipt.
 */
export function verifyReceiptBytes(bytes: Uint8Array, trust: TrustFile): ReceiptResult {
  const body = bytes.length > 0 && bytes[bytes.length - 1] === 0x0a ? bytes.subarray(0, bytes.length - 1) : bytes;
  let value: unknown;
  try {
    value = parseIJson(body);
  } catch (err) {
    if (err instanceof LedgerError) return { ok: false, reason: `the receipt is not I-JSON: ${err.message}` };
    throw err;
  }
  if (canonicalJson(value) !== fromUtf8(body)) return { ok: false, reason: "the receipt is not in canonical form (RFC 8785): it was changed after it was served" };
  return verifyReceipt(value, trust);
}

function check(r: unknown, trust: TrustFile): ReceiptResult {
  need(isObj(r), "the receipt is not a JSON object");
  exactKeys(r, RECEIPT_KEYS, "the receipt");
  need(r.v === 1 && r.type === RECEIPT_TYPE, `the receipt is not a ${RECEIPT_TYPE} document`);
  need(r.cluster === trust.cluster, `the receipt is of cluster ${String(r.cluster)}, the trust file pins ${trust.cluster}`);
  need(trust.genesis_hash === toHex(genesisHash(trust.cluster)), "the trust file's genesis_hash is not its cluster's");
  const cluster = trust.cluster;
  const entry = checkEntry(r.entry, "entry");
  if (entry.index === 1) need(bytesEqual(entry.prev, genesisHash(cluster)), "entry 1 does not chain to the genesis hash");
  const cp = checkCheckpointShape(r.checkpoint, cluster, "checkpoint");
  checkInclusion(r.inclusion, entry.index, entry.hash, cp, "inclusion");

  // The signer's key, carried from the pinned genesis configuration through signer_chain.
  need(Array.isArray(r.signer_chain) && r.signer_chain.length <= CHAIN_MAX, `signer_chain is not a list of at most ${CHAIN_MAX} links`);
  let keys: ReadonlyMap<string, string> = genesisKeys(trust);
  let by = "the pinned genesis configuration";
  let lastConfig = 1;
  (r.signer_chain as unknown[]).forEach((link, i) => {
    const what = `signer_chain[${i}]`;
    need(isObj(link), `${what} is not an object`);
    exactKeys(link, ["config", "inclusion", "checkpoint"], what);
    const c = checkEntry(link.config, `${what}.config`);
    need(c.kind === EntryKind.Config, `${what}.config is a ${kindName(c.kind)} entry, not a config`);
    need(c.index > lastConfig, `${what}.config is at ${c.index}, not after the previous configuration (${lastConfig})`);
    const cfg = decodeConfig(c.payload);
    need(cfg !== null, `${what}.config's payload is not a configuration`);
    const lcp = checkCheckpointShape(link.checkpoint, cluster, `${what}.checkpoint`);
    checkSigned(lcp, keys, `${what}.checkpoint`, by);
    checkInclusion(link.inclusion, c.index, c.hash, lcp, `${what}.inclusion`);
    keys = new Map([...cfg.voters, ...cfg.learners].map((m) => [m.id, m.public_key]));
    by = `the configuration at ${c.index}`;
    lastConfig = c.index;
  });
  need(typeof r.signer_key === "string" && HEX64.test(r.signer_key), "signer_key is not 64 lowercase hex digits");
  const key = checkSigned(cp, keys, "checkpoint", by);
  need(key === r.signer_key, `signer_key is not ${cp.signer}'s key in ${by}`);
  return { ok: true, index: entry.index, size: cp.size, signer: cp.signer, chain: r.signer_chain.length };
}
