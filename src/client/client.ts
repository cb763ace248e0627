/**
 * A Resonetics client: follows a follower's redirect to the leader, retries writes idempotently
 * (one Idempotency-Key per logical append) with backoff, and verifies what it is given: entry
 * hashes against the chain formula, proofs against roots, checkpoints against the node key.
 */
import { randomUUID } from "node:crypto";
import { entryHash, EntryKind, ENTRY_KIND_NAMES } from "../ledger/entry";
import { bytesEqual, fromHex, toHex } from "../ledger/bytes";
import { verifyConsistency, verifyInclusion } from "../ledger/merkle-verify";
import { Checkpoint, verifyCheckpointSignature } from "../ledger/checkpoint";
import type { RecordRequest } from "../ledger/record";
import type { EntryView } from "../api/views";
import { Fetch, fetchWith, TlsClientOptions } from "./http";

export interface ClientOptions {
  /** Base URLs of the nodes, e.g. http://127.0.0.1:8080; the first is tried first. */
  readonly urls: readonly string[];
  readonly token?: string;
  /** Per-request timeout. */
  readonly timeoutMs?: number;
  /** Attempts per call before giving up (redirects do not count). */
  readonly maxAttempts?: number;
  readonly backoffMs?: number;
  /** CA to trust and client certificate for https:// URLs (--cacert, --cert, --key). */
  readonly tls?: TlsClientOptions;
}

export interface AppendAck {
  readonly index: number;
  readonly term: number;
  readonly hash: string;
}

/** GET /v1/records/:index, the shape the server's views define. */
export type EntryJson = EntryView;

export interface InclusionJson {
  readonly index: number;
  readonly size: number;
  readonly leaf_hash: string;
  readonly path: string[];
  readonly root: string;
}

export interface ConsistencyJson {
  readonly from: number;
  readonly to: number;
  readonly path: string[];
  readonly root_from: string;
  readonly root_to: string;
}

/** An answer the server gave that is an error (status + code), or one that failed to verify. */
export class ClientError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly body?: unknown) {
    super(message);
    this.name = "ClientError";
  }
}

const RETRYABLE = new Set([502, 503, 504]);
const MAX_REDIRECTS = 5;

export class LedgerClient {
  private readonly urls: string[];
  private preferred = 0;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly fetch: Fetch;

  constructor(private readonly opts: ClientOptions) {
    if (opts.urls.length === 0) throw new TypeError("LedgerClient needs at least one URL");
    this.urls = opts.urls.map((u) => u.replace(/\/+$/, ""));
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxAttempts = opts.maxAttempts ?? 8;
    this.backoffMs = opts.backoffMs ?? 50;
    this.fetch = fetchWith(opts.tls);
  }

  /** Appends a record; retries reuse one idempotency key, so it lands at most once. */
  async append(record: RecordRequest, idempotencyKey: string = randomUUID()): Promise<AppendAck> {
    const ack = (await this.request("POST", "/v1/records", record, { "Idempotency-Key": idempotencyKey })) as AppendAck;
    if (!(Number.isSafeInteger(ack.index) && typeof ack.hash === "string")) throw new ClientError(0, "bad_answer", "append answer lacks index/hash", ack);
    return ack;
  }

  async status(): Promise<Record<string, unknown>> {
    return (await this.request("GET", "/v1/status")) as Record<string, unknown>;
  }

  /** Fetches an entry and checks its hash against prev_hash and the payload bytes. */
  async entry(index: number): Promise<EntryJson> {
    const e = (await this.request("GET", `/v1/records/${index}`)) as EntryJson;
    const kind = ENTRY_KIND_NAMES.indexOf(e.kind as (typeof ENTRY_KIND_NAMES)[number]);
    const prev = fromHex(e.prev_hash);
    if (e.index !== index || kind < 0 || prev === null) throw new ClientError(0, "verification_failed", `entry ${index} is malformed`, e);
    const h = entryHash(e.index, e.term, kind as EntryKind, prev, Buffer.from(e.payload_b64, "base64"));
    if (toHex(h) !== e.hash) throw new ClientError(0, "verification_failed", `entry ${index}: hash does not match its contents`, e);
    return e;
  }

  /** An inclusion proof for entry index, verified against the root it names. */
  async inclusion(index: number, size?: number): Promise<InclusionJson> {
    const p = (await this.request("GET", `/v1/proofs/inclusion/${index}${size === undefined ? "" : `?size=${size}`}`)) as InclusionJson;
    const e = await this.entry(index);
    const path = p.path.map((x) => fromHex(x));
    const root = fromHex(p.root);
    const ok = root !== null && path.every((x): x is Uint8Array => x !== null) &&
      verifyInclusion(index - 1, p.size, fromHex(e.hash) as Uint8Array, path as Uint8Array[], root);
    if (!ok) throw new ClientError(0, "verification_failed", `inclusion proof for ${index} in ${p.size} does not verify`, p);
    return p;
  }

  /** A consistency proof between two sizes, verified. */
  async consistency(from: number, to: number): Promise<ConsistencyJson> {
    const p = (await this.request("GET", `/v1/proofs/consistency?from=${from}&to=${to}`)) as ConsistencyJson;
    const path = p.path.map((x) => fromHex(x));
    const r1 = fromHex(p.root_from);
    const r2 = fromHex(p.root_to);
    const ok = r1 !== null && r2 !== null && path.every((x): x is Uint8Array => x !== null) &&
      verifyConsistency(from, to, path as Uint8Array[], r1, r2);
    if (!ok) throw new ClientError(0, "verification_failed", `consistency proof ${from} → ${to} does not verify`, p);
    return p;
  }

  /** The latest checkpoint, its signature checked against the signer's key as given by publicKey. */
  async latestCheckpoint(publicKeyHex: string): Promise<Checkpoint & { index: number }> {
    const cp = (await this.request("GET", "/v1/checkpoints/latest")) as Checkpoint & { index: number };
    if (!verifyCheckpointSignature(cp, publicKeyHex)) throw new ClientError(0, "verification_failed", "checkpoint signature does not verify", cp);
    return cp;
  }

  /** One logical request: redirects followed by hand (to keep the token), retries with backoff. */
  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<unknown> {
    let lastErr: unknown;
    let base = this.urls[this.preferred];
    let redirects = 0;
    for (let attempt = 0; attempt < this.maxAttempts; ) {
      let res: Response;
      try {
        res = await this.fetch(base + path, {
          method,
          redirect: "manual",
          signal: AbortSignal.timeout(this.timeoutMs),
          headers: {
            ...(body === undefined ? {} : { "Content-Type": "application/json" }),
            ...(this.opts.token === undefined ? {} : { Authorization: `Bearer ${this.opts.token}` }),
            ...headers,
          },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (err) {
        // Unreachable or timed out: the write may or may not have landed; the key makes a retry safe.
        lastErr = err;
        attempt++;
        this.preferred = (this.urls.indexOf(base) + 1) % this.urls.length;
        base = this.urls[this.preferred];
        await delay(this.backoffMs * 2 ** Math.min(attempt, 6));
        continue;
      }
      const text = await res.text();
      const json = text.length > 0 ? safeJson(text) : undefined;
      if (res.status === 307 || res.status === 308) {
        const loc = res.headers.get("location");
        if (loc !== null && redirects < MAX_REDIRECTS) {
          redirects++;
          const u = new URL(loc, base);
          base = `${u.protocol}//${u.host}`;
          const known = this.urls.indexOf(base);
          if (known >= 0) this.preferred = known;
          continue;
        }
      }
      if (res.ok) return json;
      const code = typeof (json as { error?: unknown } | undefined)?.error === "string" ? (json as { error: string }).error : "http_error";
      const message = typeof (json as { message?: unknown } | undefined)?.message === "string" ? (json as { message: string }).message : text.slice(0, 200);
      lastErr = new ClientError(res.status, code, message, json);
      if (!RETRYABLE.has(res.status) && res.status !== 307) throw lastErr;
      attempt++;
      // This node cannot serve now (no quorum, no leader yet): another one may.
      this.preferred = (this.urls.indexOf(base) + 1) % this.urls.length;
      base = this.urls[this.preferred];
      const retryAfter = Number(res.headers.get("retry-after"));
      await delay(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 2000) : this.backoffMs * 2 ** Math.min(attempt, 6));
    }
    throw lastErr instanceof Error ? lastErr : new ClientError(0, "unavailable", "no node answered");
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    // A node that answered with something other than JSON (a proxy's page): say so, do not guess.
    if (err instanceof SyntaxError) return { error: "bad_answer", message: text.slice(0, 200) };
    throw err;
  }
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** True when two hex hashes are equal (for callers comparing acknowledgements). */
export const sameHash = (a: string, b: string): boolean => {
  const x = fromHex(a);
  const y = fromHex(b);
  return x !== null && y !== null && bytesEqual(x, y);
};
