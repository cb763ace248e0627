/**
 * The explorer's audit runs: what to fetch from the node and which check of verify.ts judges each
 * answer. The network is a port (Get), so the page runs these over fetch and the tests over
 * anything (a tampering wrapper, a recorded answer). No DOM here.
 */
import type { PinnedCheckpoint, TrustFile } from "../../src/ledger/trust";
import { toHex } from "../../src/ledger/bytes";
import { SUBJECT_HEAD_ZERO } from "../../src/ledger/state-machine";
import {
  checkChain, checkCheckpoint, checkCheckpointEntry, CheckedCheckpoint, checkCompleteness, checkConsistency, checkHead, checkHistoryRecord,
  checkInclusion, checkSnapshotAnchor, combine, entrySummary, failed, parseEntry, parseSnapshot, ServedEntry, unverifiable, verified, Verdict,
} from "./verify";

/** What one GET gave: a status and its JSON body (undefined when it was not JSON), or why there was no answer. */
export type Answer =
  | { readonly ok: true; readonly status: number; readonly body: unknown }
  | { readonly ok: false; readonly reason: string };

/** One GET of a path under the node's origin (e.g. "/v1/status"). */
export type Get = (path: string) => Promise<Answer>;

/**
 * Requests in flight at once: a browser opens at most 6 HTTP/1.1 connections per host, so more
 * would only queue; 6 proofs at a time keep a page of 25 entries under a second on a LAN.
 */
export const CONCURRENCY = 6;
/** Entries per page by default: one screen, one proof request each. */
export const ENTRIES_DEFAULT = 25;
/** Entries per page at most: 200 proofs are a few seconds of requests; more is verify-chain's job. */
export const ENTRIES_MAX = 200;
/** Records per history page: the server's default page (100 records with proofs is ~100 KB). */
const HISTORY_PAGE = 100;
/** History pages followed at most: 1,000 records (20,000 SHA-256 in noble, well under a second); more is verify-chain's job. */
const HISTORY_PAGES_MAX = 10;
/** Snapshot anchors checked at most: a node keeps 3 by default; each costs two requests. */
const SNAPSHOTS_MAX = 20;

/** Why a GET gave no usable 200 answer. */
class NoAnswer {
  constructor(readonly reason: string) {}
}

/** The server's own {"error", "message"} of a non-200 answer, for the reason text. */
function errorOf(body: unknown): string {
  const b = body as { error?: unknown; message?: unknown } | null | undefined;
  return typeof b === "object" && b !== null && typeof b.message === "string" ? `: ${b.message.slice(0, 200)}` : "";
}

async function get200(get: Get, path: string): Promise<unknown> {
  const a = await get(path);
  if (!a.ok) return new NoAnswer(`GET ${path}: ${a.reason}`);
  if (a.status !== 200) return new NoAnswer(`GET ${path} answered ${a.status}${errorOf(a.body)}`);
  if (a.body === undefined) return new NoAnswer(`GET ${path} answered something that is not JSON`);
  return a.body;
}

/** Maps items with at most CONCURRENCY calls in flight; results keep the input order. */
async function mapPool<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, () => worker()));
  return out;
}

const prefixed = (prefix: string, v: Verdict): Verdict => ({ state: v.state, text: `${prefix}${v.text}` });

// ---------------------------------------------------------------- checkpoints

/** A checkpoint as the page lists it. */
export interface CheckpointItem {
  /** "latest", or the log index of a CHECKPOINT entry. */
  readonly key: string;
  readonly index: number | null;
  readonly size: number | null;
  readonly signer: string | null;
  readonly root: string | null;
  readonly verdict: Verdict;
}

/** The anchor every inclusion proof is checked against: the latest checkpoint when it verified, else why there is none. */
export type Anchor = { readonly cp: PinnedCheckpoint } | { readonly cp: null; readonly why: string };

const itemOf = (key: string, c: CheckedCheckpoint, verdict: Verdict): CheckpointItem => ({
  key, index: c.cp?.index ?? null, size: c.cp?.size ?? null, signer: c.cp?.signer ?? null, root: c.cp?.root ?? null, verdict,
});

/** `older` against the verified anchor: a prefix of it, by consistency proof. */
async function prefixOfAnchor(get: Get, older: { readonly size: number; readonly root: string }, anchor: PinnedCheckpoint): Promise<Verdict> {
  if (older.size >= anchor.size || older.size === 0) return checkConsistency(older, anchor, undefined);
  const proof = await get200(get, `/v1/proofs/consistency?from=${older.size}&to=${anchor.size}`);
  return proof instanceof NoAnswer ? unverifiable(proof.reason) : checkConsistency(older, anchor, proof);
}

/**
 * GET /v1/checkpoints/latest: signed by a member of the pinned genesis configuration; with a
 * checkpoint pinned in the trust file, that one's signature too, and that it is a prefix of the
 * latest (a node that forked or rolled back the log since the auditor pinned it fails here).
 */
export async function auditLatestCheckpoint(get: Get, trust: TrustFile): Promise<{ item: CheckpointItem; anchor: Anchor }> {
  const body = await get200(get, "/v1/checkpoints/latest");
  if (body instanceof NoAnswer) {
    return { item: { key: "latest", index: null, size: null, signer: null, root: null, verdict: unverifiable(body.reason) }, anchor: { cp: null, why: body.reason } };
  }
  const c = checkCheckpoint(body, trust);
  const parts = [c.verdict];
  if (trust.checkpoint !== undefined && c.cp !== null && c.verdict.state === "verified") {
    const pinned = checkCheckpoint(trust.checkpoint, trust);
    parts.push(prefixed(`pinned checkpoint ${trust.checkpoint.index}: `, pinned.verdict));
    if (pinned.verdict.state === "verified") parts.push(prefixed("pinned checkpoint: ", await prefixOfAnchor(get, trust.checkpoint, c.cp)));
  }
  const verdict = combine(parts);
  const anchor: Anchor = c.cp !== null && verdict.state === "verified" ? { cp: c.cp } : { cp: null, why: `the latest checkpoint is ${verdict.state}: ${verdict.text}` };
  return { item: itemOf("latest", c, verdict), anchor };
}

// ---------------------------------------------------------------- entries

/** An entry as the page lists it: what it is, and its chain and proof verdicts. */
export interface EntryItem {
  readonly index: number;
  readonly term: number | null;
  readonly kind: string;
  readonly hash: string;
  readonly summary: string;
  readonly chain: Verdict;
  readonly proof: Verdict;
  readonly verdict: Verdict;
}

export interface EntriesResult {
  readonly entries: readonly EntryItem[];
  /** The CHECKPOINT entries among them, each checked. */
  readonly checkpoints: readonly CheckpointItem[];
  /** Why no entry could be listed (the page request failed), or null. */
  readonly problem: string | null;
}

/** Why nothing anchors an entry's hash, or null when the anchor covers index. */
function uncovered(index: number, trust: TrustFile | null, anchor: Anchor): Verdict | null {
  if (trust === null) return unverifiable("no trust file pinned: nothing anchors this hash");
  if (anchor.cp === null) return unverifiable(`no verified checkpoint: ${anchor.why}`);
  if (index > anchor.cp.size) return unverifiable(`after the latest verified checkpoint (size ${anchor.cp.size}): chained, not yet signed`);
  return null;
}

/** The proof verdict of one parsed entry: its inclusion under the anchor (and the signed head, for entry `size`). */
async function entryProof(get: Get, e: ServedEntry, trust: TrustFile | null, anchor: Anchor): Promise<Verdict> {
  const none = uncovered(e.index, trust, anchor);
  if (none !== null || anchor.cp === null) return none ?? unverifiable("no anchor");
  const proof = await get200(get, `/v1/proofs/inclusion/${e.index}?size=${anchor.cp.size}`);
  const inclusion = proof instanceof NoAnswer ? unverifiable(proof.reason) : checkInclusion(e, proof, anchor.cp);
  return e.index === anchor.cp.size ? combine([inclusion, checkHead(e, anchor.cp)]) : inclusion;
}

/**
 * GET /v1/records?from=&limit=: each entry's hash recomputed and chained to the one before it, the
 * page checked to hold exactly the indices asked for, each entry's inclusion proven under the
 * anchor, and each CHECKPOINT entry's signature and prefix of the anchor checked.
 */
export async function auditEntries(get: Get, trust: TrustFile | null, anchor: Anchor, from: number, limit: number): Promise<EntriesResult> {
  const body = await get200(get, `/v1/records?from=${from}&limit=${limit}`);
  if (body instanceof NoAnswer) return { entries: [], checkpoints: [], problem: body.reason };
  const raw = (body as { entries?: unknown }).entries;
  if (!Array.isArray(raw)) return { entries: [], checkpoints: [], problem: "the records page has no entries list" };
  const parsed = raw.slice(0, limit).map((v, i) => {
    const e = parseEntry(v);
    if (typeof e === "string") return e;
    return e.index === from + i ? e : `the page holds entry ${e.index} where entry ${from + i} belongs: an entry is missing or out of order`;
  });
  const entries = await mapPool(parsed.map((e, i) => ({ e, before: i > 0 ? parsed[i - 1] : null, index: from + i })), async ({ e, before, index }): Promise<EntryItem> => {
    if (typeof e === "string") {
      const v = failed(e);
      return { index, term: null, kind: "?", hash: "", summary: "", chain: v, proof: v, verdict: v };
    }
    const chain = checkChain(e, typeof before === "string" ? null : before, trust);
    const proof = await entryProof(get, e, trust, anchor);
    return { index: e.index, term: e.term, kind: e.kindName, hash: toHex(e.hash), summary: entrySummary(e), chain, proof, verdict: combine([chain, proof]) };
  });
  const checkpointEntries = parsed.filter((e): e is ServedEntry => typeof e !== "string" && e.kindName === "checkpoint");
  const checkpoints = trust === null ? [] : await mapPool(checkpointEntries, async (e) => {
    const c = checkCheckpointEntry(e, trust);
    const parts = [c.verdict];
    if (c.cp !== null && c.verdict.state === "verified") {
      parts.push(anchor.cp === null ? unverifiable(`no verified latest checkpoint to compare with: ${anchor.why}`) : await prefixOfAnchor(get, c.cp, anchor.cp));
    }
    return itemOf(String(e.index), c, combine(parts));
  });
  return { entries, checkpoints, problem: null };
}

// ---------------------------------------------------------------- snapshots

/** A snapshot anchor as the page lists it. */
export interface SnapshotItem {
  readonly index: number;
  readonly term: number | null;
  readonly hash: string;
  readonly signer: string;
  readonly ts: string;
  readonly verdict: Verdict;
}

/**
 * GET /v1/snapshots, newest first as served: each anchor must be the entry at its index (fetched,
 * its hash recomputed) and that entry included under the anchor checkpoint. A snapshot's
 * state_root needs a replay of the log, which is verify-chain's job, not a browser's.
 */
export async function auditSnapshots(get: Get, trust: TrustFile | null, anchor: Anchor): Promise<{ items: readonly SnapshotItem[]; problem: string | null }> {
  const body = await get200(get, "/v1/snapshots");
  if (body instanceof NoAnswer) return { items: [], problem: body.reason };
  if (!Array.isArray(body)) return { items: [], problem: "GET /v1/snapshots is not a list" };
  const shown = body.slice(0, SNAPSHOTS_MAX);
  const items = await mapPool(shown, async (v): Promise<SnapshotItem> => {
    const s = parseSnapshot(v);
    if (typeof s === "string") return { index: 0, term: null, hash: "", signer: "", ts: "", verdict: failed(s) };
    const entry = await get200(get, `/v1/records/${s.index}`);
    const e = entry instanceof NoAnswer ? entry.reason : parseEntry(entry);
    const anchored = typeof e === "string" ? unverifiable(e) : checkSnapshotAnchor(s, e);
    const proof = typeof e === "string" ? unverifiable("no entry to prove") : await entryProof(get, e, trust, anchor);
    // What "verified" covers for a snapshot is its anchor; the rest is said to be the node's claim.
    const replay = verified(`the anchor only: state_root ${s.state_root.slice(0, 12)}…, signer and ts are as the node claims them, not checked here (resonetics verify-chain --from ${s.index} replays and checks them)`);
    return { index: s.index, term: s.term, hash: s.hash, signer: s.signer, ts: s.ts, verdict: combine([anchored, proof, replay]) };
  });
  const more = body.length - shown.length;
  return { items, problem: more > 0 ? `${more} older snapshots not checked (the first ${SNAPSHOTS_MAX} are)` : null };
}

// ---------------------------------------------------------------- a subject's history

/** A record of a subject's history as the page lists it. */
export interface HistoryRecordItem {
  readonly index: number;
  readonly version: number;
  readonly summary: string;
  readonly hash: string;
  readonly verdict: Verdict;
}

export interface HistoryResult {
  readonly subject: string;
  readonly records: readonly HistoryRecordItem[];
  /** The checkpoint of the last page, checked. */
  readonly checkpoint: Verdict;
  /** Whether the records shown are every record of the subject up to that checkpoint. */
  readonly completeness: Verdict;
  readonly problem: string | null;
}

/** The checkpoint a history page is proven against, checked (null on the page: the node has none yet). */
function pageCheckpoint(value: unknown, trust: TrustFile | null, seen: Map<string, CheckedCheckpoint>): CheckedCheckpoint {
  if (value === null || value === undefined) return { cp: null, verdict: unverifiable("the node has no checkpoint yet") };
  if (trust === null) return { cp: null, verdict: unverifiable("no trust file pinned") };
  // Pages fetched in a row usually share one checkpoint: verify its signature once.
  const key = JSON.stringify(value);
  const known = seen.get(key);
  if (known !== undefined) return known;
  const c = checkCheckpoint(value, trust);
  seen.set(key, c);
  return c;
}

/**
 * GET /v1/subjects/:s/history, page after page (each `from` the next, `head` the last subject head
 * verified): every record checked by checkHistoryRecord, then, against the last page's checkpoint,
 * that no record up to its size is left out (checkCompleteness).
 */
export async function auditHistory(get: Get, trust: TrustFile | null, subject: string): Promise<HistoryResult> {
  const records: HistoryRecordItem[] = [];
  const seen = new Map<string, CheckedCheckpoint>();
  /** The chain after each record, to find where it stood at the checkpoint's size. */
  const chain: { index: number; version: number; head: Uint8Array }[] = [];
  let head: Uint8Array = SUBJECT_HEAD_ZERO;
  let version = 0;
  let from: number | null = 1;
  let last: { cp: CheckedCheckpoint; completeness: unknown } | null = null;
  const result = (problem: string | null, completeness: Verdict): HistoryResult =>
    ({ subject, records, checkpoint: last?.cp.verdict ?? unverifiable("no page was read"), completeness, problem });
  for (let page = 0; page < HISTORY_PAGES_MAX && from !== null; page++) {
    const q = `?limit=${HISTORY_PAGE}${page === 0 ? "" : `&from=${from}&head=${toHex(head)}`}`;
    const body = await get200(get, `/v1/subjects/${encodeURIComponent(subject)}/history${q}`);
    if (body instanceof NoAnswer) return result(body.reason, unverifiable(body.reason));
    const p = body as { subject?: unknown; prev_subject_head?: unknown; records?: unknown; next?: unknown; checkpoint?: unknown; completeness?: unknown };
    if (p.subject !== subject) return result(`the page is about subject ${JSON.stringify(p.subject)}`, failed("the node answered for another subject"));
    if (p.prev_subject_head !== toHex(head)) return result(null, failed(`page ${page + 1} starts after head ${String(p.prev_subject_head).slice(0, 12)}…, not the verified ${toHex(head).slice(0, 12)}…`));
    if (!Array.isArray(p.records)) return result("a history page has no records list", failed("a history page has no records list"));
    const cp = pageCheckpoint(p.checkpoint, trust, seen);
    for (const r of p.records.slice(0, HISTORY_PAGE)) {
      const c = checkHistoryRecord(subject, r, head, version, cp);
      if (typeof c === "string") return result(c, failed(c));
      records.push({ index: c.index, version: c.version, summary: c.summary, hash: c.hash, verdict: c.verdict });
      head = c.subjectHead;
      version = c.version;
      chain.push({ index: c.index, version, head });
    }
    last = { cp, completeness: p.completeness ?? null };
    const next = p.next;
    if (next !== null && (typeof next !== "number" || !Number.isSafeInteger(next) || next <= (chain[chain.length - 1]?.index ?? 0))) {
      return result(null, failed(`the page's next (${JSON.stringify(next)}) does not move past the records it holds`));
    }
    from = next;
  }
  if (last === null) return result("no page was read", unverifiable("no page was read"));
  if (from !== null) return result(null, unverifiable(`only the first ${records.length} records were checked (${HISTORY_PAGES_MAX} pages); verify-chain checks all`));
  const size = last.cp.cp?.size ?? 0;
  const upTo = chain.filter((c) => c.index <= size);
  const at = upTo[upTo.length - 1];
  return result(null, checkCompleteness(subject, last.completeness, last.cp, { version: at?.version ?? 0, head: at?.head ?? SUBJECT_HEAD_ZERO }));
}
