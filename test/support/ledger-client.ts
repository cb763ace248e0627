/**
 * Client-side views of the REST shapes of DESIGN.md, plus the independent re-derivation of a
 * fetched log (hash chain from genesis, Merkle roots). Imports nothing from src/.
 */
import { CheckpointPayload, KIND_CODES, bufToHex, entryHash, genesisHash, hexToBuf, leafHash, merkleRoot, verifyCheckpointSig } from "./independent";
import { getJson, http, mapPool } from "./server";

export interface EntryView {
  index: number;
  term: number;
  kind: "noop" | "record" | "config" | "checkpoint";
  hash: string;
  prev_hash: string;
  payload_b64: string;
  record?: unknown;
}

export interface StatusView {
  node_id: string;
  public_key: string;
  role: string;
  term: number;
  leader: unknown;
  commit_index: number;
  last_applied: number;
  head: string;
  cluster: string;
}

export interface AppendAck {
  index: number;
  term: number;
  hash: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

export const isAppendAck = (v: unknown): v is AppendAck => {
  const a = v as Record<string, unknown> | null;
  return (
    a !== null &&
    typeof a === "object" &&
    Number.isSafeInteger(a.index) &&
    (a.index as number) >= 1 &&
    Number.isSafeInteger(a.term) &&
    (a.term as number) >= 0 &&
    typeof a.hash === "string" &&
    HEX64.test(a.hash)
  );
};

export const getStatus = (baseUrl: string): Promise<StatusView> => getJson<StatusView>(baseUrl, "/v1/status");

/** GET /v1/records/i for every i in 1..last (bounded concurrency), in index order. */
export async function fetchEntries(baseUrl: string, last: number, concurrency = 16): Promise<EntryView[]> {
  const indices = Array.from({ length: last }, (_, i) => i + 1);
  return mapPool(indices, concurrency, (i) => getJson<EntryView>(baseUrl, `/v1/records/${i}`));
}

/** A record POST body as the tests send it. */
export interface RecordBody {
  type: string;
  subject: string;
  data: Record<string, unknown>;
}

/** POST /v1/records with the admin token; returns the raw answer. */
export const postRecord = (baseUrl: string, token: string, body: RecordBody, idempotencyKey?: string) =>
  http(baseUrl, "POST", "/v1/records", {
    token,
    json: body,
    headers: idempotencyKey === undefined ? {} : { "idempotency-key": idempotencyKey },
  });

/**
 * Re-derives every entry hash from genesis with the independent formula and returns the list of
 * problems (empty = the chain is intact). Also the leaf hashes of the Merkle tree, leaf i-1 = entry i.
 */
export function checkChain(entries: readonly EntryView[], clusterId: string): { problems: string[]; hashes: Buffer[]; leaves: Buffer[] } {
  const problems: string[] = [];
  const hashes: Buffer[] = [];
  let prev = genesisHash(clusterId);
  entries.forEach((e, i) => {
    const where = `entry ${i + 1}`;
    if (e.index !== i + 1) problems.push(`${where}: index field is ${e.index}`);
    const code = KIND_CODES[e.kind];
    if (code === undefined) problems.push(`${where}: unknown kind ${JSON.stringify(e.kind)}`);
    if (e.prev_hash !== bufToHex(prev)) problems.push(`${where}: prev_hash ${e.prev_hash} != independent ${bufToHex(prev)}`);
    const payload = Buffer.from(e.payload_b64, "base64");
    if (payload.toString("base64") !== e.payload_b64) problems.push(`${where}: payload_b64 is not canonical base64`);
    const h = entryHash(e.index, e.term, code ?? 255, prev, payload);
    if (bufToHex(h) !== e.hash) problems.push(`${where}: hash ${e.hash} != independent ${bufToHex(h)}`);
    hashes.push(h);
    prev = h; // continue from the independent value, so one bad entry does not mask later ones
  });
  return { problems, hashes, leaves: hashes.map((h) => leafHash(h)) };
}

/** Memoized independent Merkle roots over a fixed leaf list. */
export class RootCache {
  private readonly roots = new Map<number, Buffer>();
  constructor(private readonly leaves: readonly Buffer[]) {}
  root(size: number): Buffer {
    let r = this.roots.get(size);
    if (r === undefined) {
      r = merkleRoot(this.leaves, size);
      this.roots.set(size, r);
    }
    return r;
  }
  hex(size: number): string {
    return bufToHex(this.root(size));
  }
}

/** Decodes a proof path; throws (a test failure) when the server sent something that is not hex. */
export const decodePath = (path: unknown): Buffer[] => {
  if (!Array.isArray(path)) throw new Error(`proof path is not an array: ${JSON.stringify(path)}`);
  return path.map((p) => hexToBuf(p as string));
};

/** Copies of path with byte `pos` of element `el` xor-ed with mask. */
export function flip(path: readonly Buffer[], el: number, pos: number, mask = 0x01): Buffer[] {
  const copy = path.map((p) => Buffer.from(p));
  copy[el][pos] ^= mask;
  return copy;
}

export function flipOne(b: Buffer, pos: number, mask = 0x01): Buffer {
  const c = Buffer.from(b);
  c[pos] ^= mask;
  return c;
}

/**
 * Checks every CHECKPOINT entry independently: size = its index - 1, root = root(size),
 * head = entry_hash(size), cluster, and the Ed25519 signature against publicKey (node:crypto).
 */
export function checkCheckpoints(entries: readonly EntryView[], hashes: readonly Buffer[], roots: RootCache, clusterId: string, publicKey: string): string[] {
  const problems: string[] = [];
  for (const e of entries) {
    if (e.kind !== "checkpoint") continue;
    const where = `checkpoint entry ${e.index}`;
    let cp: CheckpointPayload;
    try {
      cp = JSON.parse(Buffer.from(e.payload_b64, "base64").toString("utf8")) as CheckpointPayload;
    } catch (err) {
      problems.push(`${where}: payload is not JSON (${(err as Error).message})`);
      continue;
    }
    if (cp.v !== 1) problems.push(`${where}: v ${cp.v}`);
    if (cp.cluster !== clusterId) problems.push(`${where}: cluster ${cp.cluster} != ${clusterId}`);
    if (cp.size !== e.index - 1) {
      problems.push(`${where}: size ${cp.size}, expected the index just before (${e.index - 1})`);
      continue;
    }
    if (cp.root !== roots.hex(cp.size)) problems.push(`${where}: root ${cp.root} != independent root(${cp.size}) ${roots.hex(cp.size)}`);
    if (cp.head !== bufToHex(hashes[cp.size - 1])) problems.push(`${where}: head ${cp.head} != entry_hash(${cp.size}) ${bufToHex(hashes[cp.size - 1])}`);
    if (!verifyCheckpointSig(cp, publicKey)) problems.push(`${where}: Ed25519 signature does not verify against ${publicKey}`);
  }
  return problems;
}
