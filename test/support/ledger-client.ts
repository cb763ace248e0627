/**
 * Client-side views of the REST shapes of DESIGN.md, plus the independent re-derivation of a
 * fetched log (hash chain from genesis, Merkle roots). Imports nothing from src/.
 */
import { CheckpointPayload, KIND_CODES, bufToHex, entryHash, genesisHash, hexToBuf, leafHash, merkleRoot, verifyCheckpointSig } from "./independent";
import { createHash } from "node:crypto";
import * as net from "node:net";
import * as path from "node:path";
import Database from "better-sqlite3";
import { HttpResult, getJson, http, mapPool, pollUntil } from "./server";
import { ClientError } from "../../src/client/client";

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

// ---------------------------------------------------------------- the input boundary (issue 7)

/** The raw log table of a data dir, read read-only with better-sqlite3 (the server may be running). */
export interface LogSnapshot {
  /** SHA-256 over every row (idx, term, kind, payload, hash) in index order. */
  readonly digest: string;
  readonly rows: number;
  readonly lastIndex: number;
  readonly records: number;
}

/** Reads `SELECT idx, term, kind, payload, hash FROM log` and digests it, so two reads compare byte for byte. */
export function readLogSnapshot(dir: string): LogSnapshot {
  const db = new Database(path.join(dir, "ledger.db"), { readonly: true, fileMustExist: true });
  try {
    const h = createHash("sha256");
    let rows = 0;
    let lastIndex = 0;
    let records = 0;
    const stmt = db.prepare("SELECT idx, term, kind, payload, hash FROM log ORDER BY idx");
    for (const row of stmt.iterate() as Iterable<{ idx: number; term: number; kind: number; payload: Buffer; hash: Buffer }>) {
      const head = Buffer.alloc(17);
      head.writeBigUInt64BE(BigInt(row.idx), 0);
      head.writeBigUInt64BE(BigInt(row.term), 8);
      head.writeUInt8(row.kind, 16);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(row.payload.length, 0);
      h.update(head).update(len).update(row.payload).update(row.hash);
      rows++;
      lastIndex = row.idx;
      if (row.kind === 1) records++;
    }
    return { digest: h.digest("hex"), rows, lastIndex, records };
  } finally {
    db.close();
  }
}

/**
 * Waits until the log is quiet: its last entry is a checkpoint of everything before it, so no
 * timer-driven checkpoint can land while a refused request is sent (that legitimate append would
 * read as damage in a byte-identical comparison).
 */
export async function waitQuiescent(baseUrl: string, attempts = 300): Promise<StatusView> {
  return pollUntil(
    "the last entry is a checkpoint covering everything before it",
    async () => {
      const st = await getStatus(baseUrl);
      if (st.commit_index !== st.last_applied) return undefined;
      const e = await getJson<EntryView>(baseUrl, `/v1/records/${st.commit_index}`);
      if (e.kind !== "checkpoint") return undefined;
      const cp = JSON.parse(Buffer.from(e.payload_b64, "base64").toString("utf8")) as { size: number };
      return cp.size === st.commit_index - 1 ? st : undefined;
    },
    attempts,
    100,
  );
}

/** Null when r is an error answer of the contract ({error, message} JSON, nosniff); else what is wrong. */
export function errorShapeProblem(r: HttpResult | RawAnswer): string | null {
  const header = (name: string): string | null => r.headers.get(name) ?? null;
  const body = r.json as Record<string, unknown> | undefined;
  const ct = header("content-type") ?? "";
  if (!ct.toLowerCase().startsWith("application/json")) return `Content-Type ${JSON.stringify(ct)}, not application/json`;
  if (body === undefined || body === null || typeof body !== "object" || Array.isArray(body)) return `body is not a JSON object: ${r.text.slice(0, 300)}`;
  if (typeof body.error !== "string" || body.error.length === 0) return `no string "error" in ${r.text.slice(0, 300)}`;
  if (typeof body.message !== "string" || body.message.length === 0) return `no string "message" in ${r.text.slice(0, 300)}`;
  if (header("x-content-type-options") !== "nosniff") return `X-Content-Type-Options ${JSON.stringify(header("x-content-type-options"))}`;
  return null;
}

/** A raw HTTP/1.1 answer: status, lower-cased headers, body bytes (de-chunked). */
export interface RawAnswer {
  readonly status: number;
  readonly headers: Map<string, string>;
  readonly body: Buffer;
  readonly text: string;
  readonly json: unknown;
}

/** The largest raw answer read: an error body is small, an entry list at most a few MB. */
const RAW_ANSWER_BYTES_MAX = 8 << 20;

/**
 * Sends exact request bytes over a TCP socket (what fetch refuses to send: a wrong Content-Length,
 * raw non-ASCII in the target, bad header bytes) and reads one answer. Resolves with null when the
 * server closed without answering; rejects on timeout.
 */
export function rawHttp(port: number, request: Uint8Array, timeoutMs = 10_000, opts: { halfClose?: boolean } = {}): Promise<RawAnswer | null> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (f: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      f();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`no answer within ${timeoutMs} ms to ${JSON.stringify(Buffer.from(request).subarray(0, 120).toString("latin1"))}`))), timeoutMs);
    const tryParse = (final: boolean): void => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf("\r\n\r\n");
      if (end < 0) {
        if (final) finish(() => (all.length === 0 ? resolve(null) : reject(new Error(`truncated answer: ${all.subarray(0, 200).toString("latin1")}`))));
        return;
      }
      const head = all.subarray(0, end).toString("latin1").split("\r\n");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
      if (m === null) {
        finish(() => reject(new Error(`not an HTTP answer: ${head[0]}`)));
        return;
      }
      const headers = new Map<string, string>();
      for (const l of head.slice(1)) {
        const c = l.indexOf(":");
        if (c > 0) headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim());
      }
      let rest = all.subarray(end + 4);
      let body: Buffer | undefined;
      const status = Number(m[1]);
      if (headers.has("content-length")) {
        const n = Number(headers.get("content-length"));
        if (rest.length >= n) body = rest.subarray(0, n);
      } else if ((headers.get("transfer-encoding") ?? "").toLowerCase() === "chunked") {
        const parts: Buffer[] = [];
        for (let i = 0; i < 10_000; i++) {
          const nl = rest.indexOf("\r\n");
          if (nl < 0) break;
          const n = parseInt(rest.subarray(0, nl).toString("latin1"), 16);
          if (!Number.isFinite(n)) break;
          if (n === 0) {
            body = Buffer.concat(parts);
            break;
          }
          if (rest.length < nl + 2 + n + 2) break;
          parts.push(rest.subarray(nl + 2, nl + 2 + n));
          rest = rest.subarray(nl + 2 + n + 2);
        }
      } else if (status === 204 || status === 304) {
        body = Buffer.alloc(0);
      } else if (final) {
        body = rest;
      }
      if (body === undefined) {
        if (final) finish(() => reject(new Error(`truncated answer body (status ${status})`)));
        return;
      }
      const text = body.toString("utf8");
      let json: unknown;
      try {
        json = text === "" ? undefined : JSON.parse(text);
      } catch {
        json = undefined; // not JSON: the caller's assertion shows text
      }
      const b = body;
      finish(() => resolve({ status, headers, body: b, text, json }));
    };
    sock.on("data", (b: Buffer) => {
      size += b.length;
      if (size > RAW_ANSWER_BYTES_MAX) {
        finish(() => reject(new Error(`answer over ${RAW_ANSWER_BYTES_MAX} bytes`)));
        return;
      }
      chunks.push(b);
      tryParse(false);
    });
    sock.on("end", () => tryParse(true));
    sock.on("close", () => tryParse(true));
    sock.on("error", (e: NodeJS.ErrnoException) => {
      // A reset after the server answered and closed still leaves the answer in chunks.
      if (e.code === "ECONNRESET" || e.code === "EPIPE") tryParse(true);
      else finish(() => reject(e));
    });
    sock.write(request);
    // halfClose: "this is all I send" (e.g. a body shorter than its Content-Length), so the server sees EOF.
    if (opts.halfClose === true) sock.end();
  });
}

/** Pages one history request may follow: 200 pages of up to 500 records is far more than any test writes. */
const HISTORY_PAGES_MAX = 200;

/**
 * GET /v1/subjects/:subject/history, every page (following `next` at the largest page size), as one
 * answer whose json holds all records. Checks that each page chains to the one before it (its
 * prev_subject_head is the last subject_head of the previous page); a break throws.
 */
export async function historyAll(baseUrl: string, subject: string, query = ""): Promise<HttpResult> {
  const base = `/v1/subjects/${encodeURIComponent(subject)}/history?limit=500${query === "" ? "" : `&${query}`}`;
  const first = await http(baseUrl, "GET", base);
  if (first.status !== 200) return first;
  type Page = { records: Array<{ subject_head: string }>; next: number | null; prev_subject_head: string };
  const records: unknown[] = [];
  let page = first.json as Page;
  let head = "0".repeat(64);
  for (let n = 0; ; n++) {
    if (page.prev_subject_head !== head) throw new Error(`history of ${subject}: page ${n} starts from ${page.prev_subject_head}, the page before ended at ${head}`);
    records.push(...page.records);
    head = page.records[page.records.length - 1]?.subject_head ?? head;
    if (page.next === null) break;
    if (n + 1 >= HISTORY_PAGES_MAX) throw new Error(`history of ${subject}: more than ${HISTORY_PAGES_MAX} pages`);
    const r = await http(baseUrl, "GET", `${base}&from=${page.next}&head=${head}`);
    if (r.status !== 200) return r;
    page = r.json as Page;
  }
  const json = { ...(first.json as Record<string, unknown>), records, next: null };
  return { ...first, json, text: JSON.stringify(json) };
}

/** A fault symptom a writer under injected faults may give up on (network, timeout, 502/503/504, a redirect mid-election): outcome unknown, not a bug. */
export function isFaultSymptom(err: unknown): boolean {
  if (err instanceof ClientError) return err.status === 0 ? err.code === "unavailable" : [502, 503, 504, 307].includes(err.status);
  return err instanceof Error; // fetch's TypeError (connection refused/reset) or a timeout's DOMException
}
