/**
 * A Resonetics client: follows a follower's redirect to the leader, retries writes idempotently
 * (one Idempotency-Key per logical append) with backoff, and verifies what it is given: entry
 * hashes against the chain formula, proofs against roots, checkpoints against the node key.
 * With a state file (or a trust file) it also pins the last checkpoint it verified and checks every
 * later checkpoint and read against it (checkpoint-guard.ts; docs/client.md).
 */
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import { bytesEqual, fromHex, toHex } from "../ledger/bytes";
import { verifyConsistency, verifyInclusion } from "../ledger/merkle-verify";
import { Checkpoint, verifyCheckpointSignature } from "../ledger/checkpoint";
import type { RecordRequest } from "../ledger/record";
import type { EntryView } from "../api/views";
import { Fetch, fetchWith, TlsClientOptions } from "./http";
// client commands (issue 13):
import { ClusterConfig, configProblem, memberKeys } from "../ledger/config";
import { decodeRecord } from "../ledger/record";
import { SUBJECT_HEAD_ZERO } from "../ledger/state-machine";
import { CheckpointJson, entryProblem, payloadOf, signatureProblem } from "./checks";
import { Completeness, HistoryChain, HistoryJson, HistoryRecordJson } from "./history-chain";
import { parseTrustFile, PinnedCheckpoint, TrustFile } from "../ledger/trust";
import { ClientError } from "./errors";
import { parseUrl } from "../util/url";
import { CheckpointGuard } from "./checkpoint-guard";
import { ClientState, MemoryState } from "./state";

export { ClientError, ForkError, RollbackError, StateFileError } from "./errors";

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
  /**
   * A JSON file (created 0600 if absent) where the client keeps, per cluster, the last checkpoint it
   * verified; every later checkpoint must extend it and every read is checked against it, across
   * restarts of the client. Without it (but with `trust`) the pins last as long as this object.
   */
  readonly stateFile?: string;
  /**
   * Whose signer keys count: a trust file (`resonetics trust export`), as a path or parsed. Without
   * it, the genesis configuration the cluster serves the first time is trusted (trust on first
   * use, recorded in the state file).
   */
  readonly trust?: string | TrustFile;
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

const RETRYABLE = new Set([502, 503, 504]);
const MAX_REDIRECTS = 5;

export class LedgerClient {
  private readonly urls: string[];
  private preferred = 0;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly fetch: Fetch;
  /** Pinned checkpoints and the checks against them; null without stateFile and trust (no pinning). */
  private readonly guard: CheckpointGuard | null;

  constructor(private readonly opts: ClientOptions) {
    if (opts.urls.length === 0) throw new TypeError("LedgerClient needs at least one URL");
    this.urls = opts.urls.map((u) => u.replace(/\/+$/, ""));
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxAttempts = opts.maxAttempts ?? 8;
    this.backoffMs = opts.backoffMs ?? 50;
    this.fetch = fetchWith(opts.tls);
    this.guard = opts.stateFile === undefined && opts.trust === undefined ? null : new CheckpointGuard(
      opts.stateFile === undefined ? new MemoryState() : new ClientState(opts.stateFile),
      opts.trust === undefined ? undefined : loadTrust(opts.trust),
      { get: (p) => this.request("GET", p), entry: (i) => this.fetchEntry(i), url: () => this.urls[this.preferred] },
    );
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

  /**
   * Fetches an entry and checks its hash against prev_hash and the payload bytes. With pinning, the
   * node's latest checkpoint is accepted first (a rollback or fork throws) and an entry it covers
   * must be in its root; one after it is returned chained but not yet signed.
   */
  async entry(index: number): Promise<EntryJson> {
    if (this.guard === null) return this.fetchEntry(index);
    const pin = await this.guard.sync();
    const e = await this.fetchEntry(index);
    await this.guard.proveEntry(pin, index, e.hash);
    return e;
  }

  private async fetchEntry(index: number): Promise<EntryJson> {
    const e = (await this.request("GET", `/v1/records/${index}`)) as EntryJson;
    const problem = entryProblem(e, index);
    if (problem !== null) throw new ClientError(0, "verification_failed", `entry ${index}: ${problem}`, e);
    return e;
  }

  /** An inclusion proof for entry index, verified against the root it names. */
  async inclusion(index: number, size?: number): Promise<InclusionJson> {
    const pin = this.guard === null ? null : await this.guard.sync();
    const p = (await this.request("GET", `/v1/proofs/inclusion/${index}${size === undefined ? "" : `?size=${size}`}`)) as InclusionJson;
    const e = await this.fetchEntry(index);
    const path = p.path.map((x) => fromHex(x));
    const root = fromHex(p.root);
    const ok = root !== null && path.every((x): x is Uint8Array => x !== null) &&
      verifyInclusion(index - 1, p.size, fromHex(e.hash) as Uint8Array, path as Uint8Array[], root);
    if (!ok) throw new ClientError(0, "verification_failed", `inclusion proof for ${index} in ${p.size} does not verify`, p);
    if (this.guard !== null) await this.guard.proveRoot(pin, p.size, p.root);
    return p;
  }

  /** A consistency proof between two sizes, verified. */
  async consistency(from: number, to: number): Promise<ConsistencyJson> {
    const pin = this.guard === null ? null : await this.guard.sync();
    const p = (await this.request("GET", `/v1/proofs/consistency?from=${from}&to=${to}`)) as ConsistencyJson;
    const path = p.path.map((x) => fromHex(x));
    const r1 = fromHex(p.root_from);
    const r2 = fromHex(p.root_to);
    const ok = r1 !== null && r2 !== null && path.every((x): x is Uint8Array => x !== null) &&
      verifyConsistency(from, to, path as Uint8Array[], r1, r2);
    if (!ok) throw new ClientError(0, "verification_failed", `consistency proof ${from} → ${to} does not verify`, p);
    if (this.guard !== null) await this.guard.proveRoot(pin, p.to, p.root_to);
    return p;
  }

  /** The latest checkpoint, its signature checked against the signer's key as given by publicKey. */
  async latestCheckpoint(publicKeyHex: string): Promise<Checkpoint & { index: number }> {
    const cp = (await this.request("GET", "/v1/checkpoints/latest")) as Checkpoint & { index: number };
    if (!verifyCheckpointSignature(cp, publicKeyHex)) throw new ClientError(0, "verification_failed", "checkpoint signature does not verify", cp);
    if (this.guard !== null) await this.guard.observe(cp);
    return cp;
  }

  /** The node's latest checkpoint, accepted against the pinned one (needs stateFile or trust); the pin afterwards. */
  async checkpoint(): Promise<PinnedCheckpoint> {
    const pin = await this.pinning().sync();
    if (pin === null) throw new ClientError(404, "not_found", "the node has signed no checkpoint yet");
    return pin;
  }

  /** A checkpoint another answer carried as the node's latest (a subject's history): accepted like checkpoint()'s. */
  async observeCheckpoint(value: unknown): Promise<PinnedCheckpoint> {
    return this.pinning().observe(value);
  }

  /** The last verified checkpoint of this client's cluster (from the state file), if any yet. */
  pinnedCheckpoint(): PinnedCheckpoint | undefined {
    return this.guard?.pinned();
  }

  private pinning(): CheckpointGuard {
    if (this.guard === null) throw new ClientError(0, "no_state", "this client pins nothing: give it stateFile or trust");
    return this.guard;
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
          const u = parseUrl(loc, base);
          if (u === null) throw new ClientError(res.status, "bad_redirect", `${base} redirected to ${JSON.stringify(loc.slice(0, 200))}, which is no URL`);
          // The token goes with the request: never to another scheme than the cluster's (an https
          // node that points at http:// would send it in clear) nor to anything but http(s).
          if (u.protocol !== new URL(base).protocol) {
            throw new ClientError(res.status, "bad_redirect", `${base} redirected to ${u.protocol}//${u.host}, another scheme; not following it with the token`);
          }
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

  // ================================================================ client commands (issue 13)
  // What `resonetics members|list|history|checkpoint|proof` read, each verified before it is
  // returned (src/client/checks.ts, history-chain.ts). Kept in this one block, apart from the
  // methods above, which others extend at the same time.

  /** GET /v1/admin/config: the configuration the node applies, each member's address and Ed25519 key. */
  async members(): Promise<ClusterConfig> {
    const c = await this.request("GET", "/v1/admin/config");
    const bad = configProblem(c);
    if (bad !== null) throw new ClientError(0, "bad_answer", `the configuration does not parse: ${bad}`, c);
    return c as ClusterConfig;
  }

  /** A page of GET /v1/records (by index, or a subject's), every entry's hash recomputed, consecutive ones chained. */
  async records(q: RecordsQuery): Promise<RecordsPage> {
    const params = new URLSearchParams();
    if (q.subject !== undefined) params.set("subject", q.subject);
    if (q.from !== undefined) params.set("from", String(q.from));
    if (q.limit !== undefined) params.set("limit", String(q.limit));
    const query = params.toString();
    const page = (await this.request("GET", `/v1/records${query === "" ? "" : `?${query}`}`)) as RecordsPage;
    let prev: EntryJson | undefined;
    for (const e of page.entries) {
      const payload = payloadOf(e);
      const bad = entryProblem(e, e.index) ??
        (prev !== undefined && !(e.index > prev.index) ? `listed after entry ${prev.index}` : null) ??
        // Without a subject the page is a run of the log: no index may be left out.
        (q.subject === undefined && prev !== undefined && e.index !== prev.index + 1 ? `listed after entry ${prev.index}, leaving out ${prev.index + 1}` : null) ??
        (prev !== undefined && e.index === prev.index + 1 && e.prev_hash !== prev.hash ? `prev_hash is not the hash of entry ${prev.index}` : null) ??
        (q.subject !== undefined && (payload === null || decodeRecord(payload)?.subject !== q.subject) ? `not a record of subject ${JSON.stringify(q.subject)}` : null);
      if (bad !== null) throw new ClientError(0, "verification_failed", `entry ${e.index}: ${bad}`, e);
      prev = e;
    }
    return page;
  }

  /** GET /v1/checkpoints/latest, its signature checked with the signer's key in the configuration. */
  async signedCheckpoint(): Promise<CheckpointJson> {
    const cp = (await this.request("GET", "/v1/checkpoints/latest")) as CheckpointJson;
    // Pinning: the signer's key from the trust (not the node's word) and consistency with the pin.
    if (this.guard !== null) await this.guard.observe(cp);
    const bad = signatureProblem(cp, memberKeys(await this.members()));
    if (bad !== null) throw new ClientError(0, "verification_failed", `the latest checkpoint (index ${cp.index}): ${bad}`, cp);
    return cp;
  }

  /** inclusion(), and the checkpoint the node attaches when one signs root(size): signed by a member, over that root. */
  async signedInclusion(index: number, size?: number): Promise<InclusionJson & Signed> {
    const p = (await this.inclusion(index, size)) as InclusionJson & Signed;
    if (p.checkpoint !== undefined) await this.checkSigns(p.checkpoint, p.size, p.root);
    return p;
  }

  /** consistency(), and the checkpoint the node attaches when one signs root(to), checked the same way. */
  async signedConsistency(from: number, to: number): Promise<ConsistencyJson & Signed> {
    const p = (await this.consistency(from, to)) as ConsistencyJson & Signed;
    if (p.checkpoint !== undefined) await this.checkSigns(p.checkpoint, p.to, p.root_to);
    return p;
  }

  /**
   * A subject's whole history, every page, verified (src/client/history-chain.ts): one answer of
   * GET /v1/subjects/:subject/history holding every record, and up to where it is proven complete.
   */
  async history(subject: string): Promise<VerifiedHistory> {
    const chain = new HistoryChain(subject, memberKeys(await this.members()));
    const records: HistoryRecordJson[] = [];
    let page: HistoryJson | undefined;
    for (let n = 0; page === undefined || page.next !== null; n++) {
      if (n === HISTORY_PAGES_MAX) throw new ClientError(0, "too_large", `the history of ${JSON.stringify(subject)} has more than ${HISTORY_PAGES_MAX * HISTORY_PAGE_LIMIT} records: verify a data dir offline (verify-chain) instead`);
      const more = page === undefined ? "" : `&from=${page.next}&head=${chain.head}`;
      page = (await this.request("GET", `/v1/subjects/${encodeURIComponent(subject)}/history?limit=${HISTORY_PAGE_LIMIT}${more}`)) as HistoryJson;
      const bad = chain.page(page);
      if (bad !== null) throw new ClientError(0, "verification_failed", `history of ${JSON.stringify(subject)}: ${bad}`, page);
      records.push(...page.records);
    }
    if (this.guard !== null && page.checkpoint !== undefined && page.checkpoint !== null) await this.guard.observe(page.checkpoint);
    const complete = chain.completeness(page);
    if (typeof complete === "string") throw new ClientError(0, "verification_failed", `history of ${JSON.stringify(subject)}: ${complete}`, page);
    return { history: { ...page, prev_subject_head: toHex(SUBJECT_HEAD_ZERO), records }, complete };
  }

  private async checkSigns(cp: CheckpointJson, size: number, root: string): Promise<void> {
    if (this.guard !== null) await this.guard.observe(cp);
    const bad = signatureProblem(cp, memberKeys(await this.members())) ??
      (cp.size !== size || cp.root !== root ? `it signs root(${cp.size}) ${cp.root}, not root(${size}) ${root}` : null);
    if (bad !== null) throw new ClientError(0, "verification_failed", `the checkpoint at index ${cp.index}: ${bad}`, cp);
  }
  // ============================================================ end of client commands (issue 13)
}

/** A trust file from a path or as given; one that does not parse is a ClientError, before any request. */
function loadTrust(t: string | TrustFile): TrustFile {
  if (typeof t !== "string") return t;
  const parsed = parseTrustFile(fs.readFileSync(t, "utf8"));
  if (typeof parsed === "string") throw new ClientError(0, "bad_trust_file", `${t}: ${parsed}`);
  return parsed;
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

// ================================================================ client commands (issue 13): shapes

export type { CheckpointJson } from "./checks";
export type { Completeness, HistoryJson, HistoryRecordJson } from "./history-chain";

export interface RecordsQuery {
  readonly subject?: string;
  readonly from?: number;
  readonly limit?: number;
}

/** GET /v1/records: a page of entries, and the `from` of the next page (null: none). */
export interface RecordsPage {
  readonly entries: EntryJson[];
  readonly next: number | null;
}

/** A proof answer's checkpoint, present when one signs the proof's (larger) root. */
export interface Signed {
  readonly checkpoint?: CheckpointJson;
}

export interface VerifiedHistory {
  /** Every page's records in one answer of the server's shape (the last page's checkpoint and completeness). */
  readonly history: HistoryJson;
  /** Up to which entry no record of the subject can be missing; null while no checkpoint proves it. */
  readonly complete: Completeness | null;
}

/** History pages asked for: the server's largest (500), the fewest round trips. */
const HISTORY_PAGE_LIMIT = 500;
/** 200 pages = 100,000 records, ~100 MB of JSON held at once; a subject larger than that is verify-chain's job. */
const HISTORY_PAGES_MAX = 200;
