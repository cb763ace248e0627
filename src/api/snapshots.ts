/**
 * Retention routes (DESIGN.md "Retention: history is never lost by default"):
 *   GET  /v1/snapshots          this node's retained snapshot anchors, newest first: each one starts
 *                               a verification (verify-chain --from <index>, audit/verify?from=<index>)
 *   POST /v1/admin/prune        {"below": N} (admin token): the explicit operator act that deletes
 *                               history, recorded in the log as a resonetics.prune RECORD; once
 *                               applied, every node answers 410 Gone below N (src/node/snapshots.ts)
 */
import type { Request, Response } from "express";
import { LedgerError } from "../util/errors";
import { PRUNE_RECORD_TYPE, PRUNE_SUBJECT } from "../node/ports";
import { requireToken } from "./auth";
import { ijsonBody } from "./body";
import type { MethodRouter, RouteDeps } from "./routes";

/** {"below": N}: N a whole number >= 2 (below 1 there is nothing to prune). */
function parseBelow(body: unknown): number {
  const b = body as { below?: unknown } | null;
  if (typeof b !== "object" || b === null || Array.isArray(b) || Object.keys(b).some((k) => k !== "below") ||
    typeof b.below !== "number" || !Number.isSafeInteger(b.below) || b.below < 2) {
    throw new LedgerError("schema_violation", "body must be {\"below\": N} with N a whole number >= 2 (history starts at N afterwards)", { path: "body/below" });
  }
  return b.below;
}

export function snapshotRoutes(r: MethodRouter, deps: RouteDeps): void {
  const { reader, writes, node } = deps;

  r.get("/snapshots", (_req: Request, res: Response) => {
    res.setHeader("Cache-Control", "no-store");
    res.json(reader.snapshots());
  });

  r.post("/admin/prune", requireToken(deps.adminToken), ijsonBody(deps.bodyLimitBytes), async (req: Request, res: Response) => {
    const below = parseBelow(req.body);
    // The leader judges against its own snapshots; a follower's writes.append answers not_leader.
    let anchor = 0;
    if (node.isLeader()) {
      const historyFrom = reader.historyFrom();
      if (below <= historyFrom) throw new LedgerError("conflict", `history already starts at ${historyFrom}: nothing below ${below} to prune`, { history_from: historyFrom });
      const anchors = reader.snapshots().map((s) => s.index).sort((a, b) => a - b);
      // What is left must be verifiable: a retained snapshot at below - 1 or later starts it.
      const start = anchors.find((i) => i + 1 >= below);
      if (start === undefined) {
        throw new LedgerError("conflict", `no retained snapshot at ${below - 1} or later, so nothing could verify the history left after a prune below ${below}; retained anchors: ${anchors.length === 0 ? "none" : anchors.join(", ")} (wait for the next snapshot, or prune below one of them + 1)`, {
          snapshots: anchors,
        });
      }
      anchor = start;
    }
    const valid = deps.types.validate({ type: PRUNE_RECORD_TYPE, subject: PRUNE_SUBJECT, data: { below, snapshot: Math.max(anchor, 1) } }, true);
    const ack = await writes.append(valid.record);
    res.status(201).json({ index: ack.index, term: ack.term, hash: ack.hash, below, snapshot: anchor, history_from: reader.historyFrom() });
  });
}
