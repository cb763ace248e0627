/** The v1 REST routes. Handlers parse, call the node, and shape JSON; errors go to errors.ts. */
import express, { Request, Response, Router } from "express";
import { LedgerError, notFound } from "../util/errors";
import { RaftLedgerNode } from "../node/raft-node";
import { RecordTypes } from "../node/record-types";
import { nextSubjectHead, SUBJECT_HEAD_ZERO } from "../ledger/state-machine";
import { toHex } from "../ledger/bytes";
import { requireToken } from "./auth";
import { parseIndex, parseLimit, parseOptionalIndex } from "./params";
import { entryView } from "./views";
import type { Metrics } from "./metrics";

export interface RouteDeps {
  readonly node: RaftLedgerNode;
  readonly types: RecordTypes;
  readonly adminToken: string;
  readonly bodyLimitBytes: number;
  readonly metrics?: Metrics;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

function requireJson(req: Request, _res: Response, next: () => void): void {
  if (!req.is("application/json")) {
    throw new LedgerError("unsupported_media_type", `Content-Type must be application/json, got ${JSON.stringify(req.headers["content-type"] ?? null)}`);
  }
  next();
}

/**
 * Reads are linearizable by default: the leader confirms its lead (ReadIndex) and serves once it
 * applied that far; a follower redirects. ?consistency=local reads this node's applied state as is,
 * and says so in the X-Resonetics-Consistency header.
 */
function readConsistency(node: RaftLedgerNode) {
  return async (req: Request, res: Response, next: () => void): Promise<void> => {
    const c = req.query.consistency;
    if (c !== undefined && c !== "local" && c !== "linearizable") throw new LedgerError("bad_request", "consistency must be local or linearizable");
    if (c === "local") {
      res.setHeader("X-Resonetics-Consistency", "local");
    } else {
      await node.readBarrier();
      res.setHeader("X-Resonetics-Consistency", "linearizable");
    }
    next();
  };
}

export function v1Routes(deps: RouteDeps): Router {
  const { node, types } = deps;
  const r = Router();
  const read = readConsistency(node);
  const json = express.json({ limit: deps.bodyLimitBytes, strict: false, type: () => true });

  r.post("/records", requireToken(deps.adminToken), requireJson, json, async (req, res) => {
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
      const result = await node.append(valid.record, header ?? valid.clientKey);
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
    res.json(entryView(node.entry(index), node.prevHash(index)));
  });

  r.get("/records", read, (req, res) => {
    const from = parseOptionalIndex(req.query.from, "from") ?? 1;
    const limit = parseLimit(req.query.limit, 100, 1000);
    const subject = req.query.subject;
    if (subject !== undefined && (typeof subject !== "string" || subject.length < 1 || subject.length > 200)) {
      throw new LedgerError("bad_request", "subject must be a string of 1..200 characters");
    }
    const commit = node.commitIndex();
    const indices = subject === undefined
      ? Array.from({ length: Math.max(0, Math.min(limit, commit - from + 1)) }, (_, i) => from + i)
      : node.store.subjectRecords(subject, from, limit).map((x) => x.index);
    const entries = indices.map((i) => entryView(node.entry(i), node.prevHash(i)));
    const last = indices[indices.length - 1];
    const more = subject === undefined ? last !== undefined && last < commit : indices.length === limit;
    res.json({ entries, next: more && last !== undefined ? last + 1 : null });
  });

  r.get("/subjects/:subject/history", read, (req, res) => {
    const subject = String(req.params.subject);
    const row = node.store.getSubject(subject);
    if (row === undefined) throw notFound(`no records for subject ${JSON.stringify(subject)}`);
    const cp = node.latestCheckpoint();
    let head: Uint8Array = SUBJECT_HEAD_ZERO;
    const records = node.store.subjectRecords(subject, 1, row.version).map(({ version, index }) => {
      const e = node.entry(index);
      head = nextSubjectHead(head, e.hash);
      const proof = cp !== undefined && index <= cp.size ? node.inclusion(index, cp.size) : null;
      return {
        version, subject_head: toHex(head), entry: entryView(e, node.prevHash(index)),
        inclusion: proof === null ? null : { index, size: proof.size, leaf_hash: proof.leaf_hash, path: proof.path, root: proof.root },
      };
    });
    if (toHex(head) !== toHex(row.head)) {
      throw new LedgerError("verification_failed", `subject ${JSON.stringify(subject)}: replayed head differs from the stored head`);
    }
    res.json({ subject, version: row.version, head: toHex(row.head), checkpoint: cp ?? null, records });
  });

  r.get("/proofs/inclusion/:index", read, (req, res) => {
    const index = parseIndex(req.params.index, "index");
    const size = parseOptionalIndex(req.query.size, "size");
    res.json(node.inclusion(index, size));
  });

  r.get("/proofs/consistency", read, (req, res) => {
    if (req.query.from === undefined) throw new LedgerError("bad_request", "from is required");
    const from = parseIndex(req.query.from, "from");
    const to = parseOptionalIndex(req.query.to, "to");
    res.json(node.consistency(from, to));
  });

  r.get("/checkpoints/latest", read, (_req, res) => {
    const cp = node.latestCheckpoint();
    if (cp === undefined) throw notFound("no checkpoint yet");
    res.json(cp);
  });

  r.get("/audit/verify", (req, res) => {
    const from = req.query.from ?? "genesis";
    if (from !== "genesis" && from !== "snapshot") {
      throw new LedgerError("bad_request", "from must be genesis or snapshot (verifying from an arbitrary index is not supported yet)");
    }
    const to = parseOptionalIndex(req.query.to, "to");
    const report = node.verify(to, from);
    res.status(report.ok ? 200 : 500).json({ ...report, state_root_live: to === undefined ? node.stateRoot() : undefined });
  });

  const admin = requireToken(deps.adminToken);
  r.post("/admin/members", admin, requireJson, json, async (req, res) => {
    const b = req.body as { id?: unknown; address?: unknown; public_key?: unknown };
    if (typeof b !== "object" || b === null || typeof b.id !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(b.id) ||
      typeof b.address !== "string" || !/^[^\s/]+:[0-9]{1,5}$/.test(b.address) || typeof b.public_key !== "string" || !/^[0-9a-f]{64}$/.test(b.public_key)) {
      throw new LedgerError("schema_violation", "body must be {id: [A-Za-z0-9_-]{1,64}, address: host:port, public_key: 64 lowercase hex}");
    }
    const member = { id: b.id, address: b.address, public_key: b.public_key };
    const added = await node.changeMembership({ add: member });
    // A learner votes only once it has caught up; the core refuses the promotion until then.
    const promoted = await node.promoteWhenCaughtUp(member.id);
    res.status(201).json({ id: member.id, learner_index: added.index, voter_index: promoted.index, voters: node.config().voters.map((m) => m.id) });
  });

  r.get("/admin/config", (_req, res) => {
    res.json(node.config());
  });

  r.delete("/admin/members/:id", admin, async (req, res) => {
    const removed = await node.changeMembership({ remove: String(req.params.id) });
    res.json({ id: String(req.params.id), index: removed.index, voters: node.config().voters.map((m) => m.id) });
  });

  r.get("/status", (_req, res) => {
    res.json(node.status());
  });

  return r;
}
