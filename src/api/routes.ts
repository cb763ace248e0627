/** The v1 REST routes. Handlers parse, call the node, and shape JSON; errors go to errors.ts. */
import { Request, RequestHandler, Response, Router } from "express";
import { LedgerError, notFound } from "../util/errors";
import type { LedgerReader, LedgerWrites, NodeInfo } from "../node/ports";
import { Slicer } from "./loop-share";
import { RecordTypes } from "../node/record-types";
import { nextSubjectHead, SUBJECT_HEAD_ZERO } from "../ledger/state-machine";
import { toHex } from "../ledger/bytes";
import { acceptablePublicKey } from "../ledger/keys";
import { requireToken } from "./auth";
import { parseIndex, parseLimit, parseOptionalIndex, parseText } from "./params";
import { ijsonBody } from "./body";
import { RECORD_TEXT_MAX } from "../ledger/record";
import { EntryView, entryView } from "./views";
import type { Metrics } from "./metrics";
import type { AuditRunner } from "./audit";
import { snapshotRoutes } from "./snapshots";
import { receiptRoutes } from "./receipts";
import { openApiRoute } from "./openapi";

export interface RouteDeps {
  /** What the node says of itself (status, health, metrics). */
  readonly node: NodeInfo;
  readonly writes: LedgerWrites;
  readonly reader: LedgerReader;
  readonly types: RecordTypes;
  readonly adminToken: string;
  readonly bodyLimitBytes: number;
  readonly metrics?: Metrics;
  /** GET /v1/audit/verify: token check, one at a time, run by the reader in a worker thread (src/api/audit.ts). */
  readonly audit: AuditRunner;
}

/** History pages: 100 records with proofs is ~100 KB of JSON; 500 bounds one answer's work and size. */
const HISTORY_PAGE_DEFAULT = 100;
const HISTORY_PAGE_MAX = 500;
/** Records replayed to find a page's starting head when the client does not pass it: ~1,000 SHA-256 of 64 B, a few ms. */
const HISTORY_REPLAY_MAX = 1000;
const HEX32 = /^[0-9a-f]{64}$/;

function parseHex32(raw: unknown, name: string): Uint8Array {
  if (typeof raw !== "string" || !HEX32.test(raw)) throw new LedgerError("bad_request", `${name} must be 64 lowercase hex digits`);
  return Buffer.from(raw, "hex");
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/** Content that never changes once served: an entry at an index, a proof between fixed sizes. */
const IMMUTABLE = "public, max-age=31536000, immutable";

/**
 * A router that remembers which methods each path takes, so a known path asked with another method
 * answers 405 with Allow instead of 404 (call allowOthers() after the last route).
 */
export class MethodRouter {
  readonly router = Router();
  private readonly methods = new Map<string, Set<string>>();

  private add(method: string, path: string, handlers: RequestHandler[]): void {
    const set = this.methods.get(path) ?? new Set<string>();
    set.add(method);
    if (method === "GET") set.add("HEAD");
    this.methods.set(path, set);
    const route = this.router.route(path);
    if (method === "GET") route.get(...handlers);
    else if (method === "POST") route.post(...handlers);
    else route.delete(...handlers);
  }

  get(path: string, ...handlers: RequestHandler[]): void {
    this.add("GET", path, handlers);
  }
  post(path: string, ...handlers: RequestHandler[]): void {
    this.add("POST", path, handlers);
  }
  delete(path: string, ...handlers: RequestHandler[]): void {
    this.add("DELETE", path, handlers);
  }

  /** Every other method on a known path: 405 with the Allow header. */
  allowOthers(): Router {
    for (const [path, set] of this.methods) {
      const allow = [...set].sort().join(", ");
      this.router.all(path, () => {
        throw new LedgerError("method_not_allowed", `this route takes ${allow}`, { allow });
      });
    }
    return this.router;
  }
}

/**
 * Reads are linearizable by default: the leader confirms its lead (ReadIndex) and serves once it
 * applied that far; a follower redirects. ?consistency=local reads this node's applied state as is,
 * and says so in the X-Resonetics-Consistency header.
 */
function readConsistency(writes: LedgerWrites) {
  return async (req: Request, res: Response, next: () => void): Promise<void> => {
    const c = req.query.consistency;
    if (c !== undefined && c !== "local" && c !== "linearizable") throw new LedgerError("bad_request", "consistency must be local or linearizable");
    if (c === "local") {
      res.setHeader("X-Resonetics-Consistency", "local");
    } else {
      await writes.readBarrier();
      res.setHeader("X-Resonetics-Consistency", "linearizable");
    }
    next();
  };
}

/** Entry views of ascending indices; a run of consecutive ones reads each entry once (its hash is the next one's prev). */
async function viewsOf(reader: LedgerReader, node: NodeInfo, indices: readonly number[]): Promise<EntryView[]> {
  const out: EntryView[] = [];
  const slicer = new Slicer(node);
  let prev: { index: number; hash: Uint8Array } | null = null;
  for (const i of indices) {
    await slicer.pause();
    const e = reader.entry(i);
    out.push(entryView(e, prev !== null && prev.index === i - 1 ? prev.hash : reader.prevHash(i)));
    prev = { index: i, hash: e.hash };
  }
  return out;
}

export function v1Routes(deps: RouteDeps): Router {
  const { node, writes, reader, types } = deps;
  const r = new MethodRouter();
  const read = readConsistency(writes);
  const json = ijsonBody(deps.bodyLimitBytes);

  r.post("/records", requireToken(deps.adminToken), json, async (req, res) => {
    const header = req.get("Idempotency-Key");
    if (header !== undefined && !IDEMPOTENCY_KEY.test(header)) {
      throw new LedgerError("bad_request", "Idempotency-Key must be 1..200 visible ASCII characters");
    }
    const valid = types.validate(req.body);
    if (header !== undefined && valid.clientKey !== undefined) {
      throw new LedgerError("bad_request", "give either an Idempotency-Key header or client_id/request_id, not both");
    }
    const stopTimer = deps.metrics?.appendSeconds.startTimer();
    try {
      // Any node takes a write: a follower forwards it to the leader, or with ?redirect=1 answers 307.
      const result = await writes.appendOrForward(valid.record, header ?? valid.clientKey, req.query.redirect === "1");
      deps.metrics?.appends.inc({ result: result.duplicate ? "duplicate" : "created" });
      res.status(result.duplicate ? 200 : 201).json({ index: result.index, term: result.term, hash: result.hash });
    } catch (err) {
      deps.metrics?.appends.inc({ result: err instanceof LedgerError ? err.code : "internal" });
      throw err;
    } finally {
      stopTimer?.();
    }
  });

  r.get("/records/:index", read, (req, res) => {
    const index = parseIndex(req.params.index, "index");
    const entry = entryView(reader.entry(index), reader.prevHash(index));
    res.setHeader("Cache-Control", IMMUTABLE);
    res.json(entry);
  });

  r.get("/records", read, async (req, res) => {
    const from = parseOptionalIndex(req.query.from, "from") ?? 1;
    const limit = parseLimit(req.query.limit, 100, 1000);
    const subject = req.query.subject === undefined ? undefined : parseText(req.query.subject, "subject", RECORD_TEXT_MAX);
    const commit = reader.lastApplied();
    const indices = subject === undefined
      ? Array.from({ length: Math.max(0, Math.min(limit, commit - from + 1)) }, (_, i) => from + i)
      : reader.subjectRecords(subject, from, limit).map((x) => x.index);
    const entries = await viewsOf(reader, deps.node, indices);
    const last = indices[indices.length - 1];
    const more = subject === undefined ? last !== undefined && last < commit : indices.length === limit;
    res.json({ entries, next: more && last !== undefined ? last + 1 : null });
  });

  // A page of a subject's history: records from log index `from` on, each with its subject head
  // (SHA-256(prev head || entry hash), from 32 zero bytes) and an inclusion proof against the latest
  // checkpoint. `next` is the from of the following page; a client chains heads across pages.
  r.get("/subjects/:subject/history", read, async (req, res) => {
    const subject = parseText(req.params.subject, "subject", RECORD_TEXT_MAX);
    const from = parseOptionalIndex(req.query.from, "from") ?? 1;
    const limit = parseLimit(req.query.limit, HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX);
    const row = reader.subject(subject);
    if (row === undefined) throw notFound(`no records for subject ${JSON.stringify(subject)}`);
    const cp = reader.latestCheckpoint();
    const page = reader.subjectRecords(subject, from, limit);
    const firstVersion = page[0]?.version ?? row.version + 1;
    // The head before this page: given by the client (the last subject_head of the page before,
    // which it checks anyway), or replayed here, at most HISTORY_REPLAY_MAX records.
    const given = req.query.head === undefined ? undefined : parseHex32(req.query.head, "head");
    let head: Uint8Array = given ?? SUBJECT_HEAD_ZERO;
    if (given === undefined && firstVersion > 1) {
      if (firstVersion - 1 > HISTORY_REPLAY_MAX) {
        throw new LedgerError("bad_request", `this page starts after ${firstVersion - 1} records: pass head=<the subject_head of the record before it> (replayed here only up to ${HISTORY_REPLAY_MAX})`);
      }
      let before = 0;
      for (const h of reader.subjectHashesBefore(subject, page[0]?.index ?? row.lastIndex + 1)) {
        head = nextSubjectHead(head, h);
        before++;
      }
      if (before !== firstVersion - 1) throw notFound(`records of subject ${JSON.stringify(subject)} before version ${firstVersion} are not in this node's log`);
    }
    const prevHead = toHex(head);
    const records = [];
    const slicer = new Slicer(deps.node);
    for (const { version, index } of page) {
      await slicer.pause();
      const e = reader.entry(index);
      head = nextSubjectHead(head, e.hash);
      const proof = cp !== undefined && index <= cp.size ? reader.inclusion(index, cp.size) : null;
      records.push({
        version, subject_head: toHex(head), entry: entryView(e, reader.prevHash(index)),
        inclusion: proof === null ? null : { index, size: proof.size, leaf_hash: proof.leaf_hash, path: proof.path, root: proof.root },
      });
    }
    const last = page[page.length - 1];
    if (given === undefined && last !== undefined && last.version === row.version && toHex(head) !== toHex(row.head)) {
      throw new LedgerError("verification_failed", `subject ${JSON.stringify(subject)}: replayed head differs from the stored head`);
    }
    const next = last !== undefined && last.version < row.version ? last.index + 1 : null;
    // The proof that no record is left out up to the checkpoint: against the same checkpoint as the records' proofs.
    const c = reader.completeness(subject);
    const completeness = c !== null && c.checkpoint.index === cp?.index ? { version: c.version, head: c.head, leaf_index: c.leaf_index, tree_size: c.tree_size, path: c.path } : null;
    res.json({ subject, version: row.version, head: toHex(row.head), checkpoint: cp ?? null, prev_subject_head: prevHead, records, next, completeness });
  });

  r.get("/proofs/inclusion/:index", read, (req, res) => {
    const index = parseIndex(req.params.index, "index");
    const size = parseOptionalIndex(req.query.size, "size");
    const proof = reader.inclusion(index, size);
    if (size !== undefined) res.setHeader("Cache-Control", IMMUTABLE);
    res.json(proof);
  });

  r.get("/proofs/consistency", read, (req, res) => {
    if (req.query.from === undefined) throw new LedgerError("bad_request", "from is required");
    const from = parseIndex(req.query.from, "from");
    const to = parseOptionalIndex(req.query.to, "to");
    const proof = reader.consistency(from, to);
    if (to !== undefined) res.setHeader("Cache-Control", IMMUTABLE);
    res.json(proof);
  });

  r.get("/checkpoints/latest", read, (_req, res) => {
    const cp = reader.latestCheckpoint();
    if (cp === undefined) throw notFound("no checkpoint yet");
    res.json(cp);
  });

  receiptRoutes(r, reader, read);

  r.get("/audit/verify", (req, res) => deps.audit.handle(req, res));
  snapshotRoutes(r, deps);

  const admin = requireToken(deps.adminToken);
  r.post("/admin/members", admin, json, async (req, res) => {
    const b = req.body as { id?: unknown; address?: unknown; public_key?: unknown };
    if (typeof b !== "object" || b === null || typeof b.id !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(b.id) ||
      typeof b.address !== "string" || !/^[^\s/]+:[0-9]{1,5}$/.test(b.address) || typeof b.public_key !== "string" || !/^[0-9a-f]{64}$/.test(b.public_key)) {
      throw new LedgerError("schema_violation", "body must be {id: [A-Za-z0-9_-]{1,64}, address: host:port, public_key: 64 lowercase hex}");
    }
    if (!acceptablePublicKey(Buffer.from(b.public_key, "hex"))) {
      throw new LedgerError("schema_violation", "public_key is not an Ed25519 public key any verifier accepts (not a point, or of small order)", { path: "body/public_key" });
    }
    const member = { id: b.id, address: b.address, public_key: b.public_key };
    const added = await writes.addMember(member);
    // A learner votes only once it has caught up; the core refuses the promotion until then.
    const promoted = await writes.promoteWhenCaughtUp(member.id);
    res.status(201).json({ id: member.id, learner_index: added.index, voter_index: promoted.index, voters: node.config().voters.map((m) => m.id) });
  });

  r.get("/admin/config", (_req, res) => {
    res.json(node.config());
  });

  r.delete("/admin/members/:id", admin, async (req, res) => {
    const id = parseText(req.params.id, "id", 64);
    const removed = await writes.removeMember(id);
    res.json({ id, index: removed.index, voters: node.config().voters.map((m) => m.id) });
  });

  r.get("/status", (_req, res) => {
    res.json(node.status());
  });

  r.get("/stream", () => {
    throw new LedgerError("bad_request", "WS /v1/stream takes a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)");
  });

  // This API's OpenAPI 3.1 document (src/api/openapi.ts): the one serve built at start (else built on the first request), since only a build changes it.
  r.get("/openapi.json", openApiRoute());

  return r.allowOthers();
}
