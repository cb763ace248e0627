/**
 * GET /v1/receipts/:index — the offline receipt of one entry (202 + Retry-After until a checkpoint
 * covers it), and GET /v1/checkpoint — the latest checkpoint as a C2SP signed note, signed by this
 * node's own key (DESIGN.md "Offline verification"). Both read this node's applied state.
 */
import type { RequestHandler } from "express";
import type { LedgerReader } from "../node/ports";
import type { MethodRouter } from "./routes";
import { parseIndex } from "./params";
import { encodeReceipt } from "../ledger/receipt";

/**
 * Retry-After (s) for a receipt not covered yet: the leader signs a checkpoint after at most
 * --checkpoint-interval-ms (1 s by default) of activity, so a second later it usually is.
 */
const RECEIPT_RETRY_AFTER_S = 1;

/** A receipt never changes once made (committed entries and signed checkpoints are immutable). */
const IMMUTABLE = "public, max-age=31536000, immutable";

/** Adds the two routes to the v1 router; `read` is its read-consistency middleware. */
export function receiptRoutes(r: MethodRouter, reader: LedgerReader, read: RequestHandler): void {
  r.get("/receipts/:index", read, (req, res) => {
    const index = parseIndex(req.params.index, "index");
    const answer = reader.receipt(index);
    if (!answer.ready) {
      res.setHeader("Retry-After", String(RECEIPT_RETRY_AFTER_S));
      res.status(202).json({ status: "pending", index, message: answer.reason, retry_after_s: RECEIPT_RETRY_AFTER_S });
      return;
    }
    res.setHeader("Cache-Control", IMMUTABLE);
    res.type("application/json").send(encodeReceipt(answer.receipt));
  });

  r.get("/checkpoint", read, (_req, res) => {
    res.type("text/plain; charset=utf-8").send(reader.checkpointNote());
  });
}
