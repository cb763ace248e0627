/** The one place where error codes become HTTP statuses and JSON bodies. */
import type { NextFunction, Request, Response } from "express";
import type { Logger } from "pino";
import { ErrorCode, LedgerError } from "../util/errors";

export const STATUS: Readonly<Record<ErrorCode, number>> = {
  bad_request: 400,
  invalid_json: 400,
  schema_violation: 400,
  unknown_record_type: 400,
  unsupported_media_type: 415,
  payload_too_large: 413,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  gone: 410,
  method_not_allowed: 405,
  conflict: 409,
  idempotency_conflict: 409,
  not_leader: 307,
  too_many_requests: 429,
  header_fields_too_large: 431,
  unavailable: 503,
  verification_failed: 500,
  internal: 500,
};

/** Ledger errors pass through; express's own (a path parameter that does not decode) become 400; anything else is internal. */
function toLedgerError(err: unknown): LedgerError {
  if (err instanceof LedgerError) return err;
  if (err instanceof URIError) return new LedgerError("bad_request", "a path parameter is not valid percent-encoded UTF-8");
  return new LedgerError("internal", "internal error");
}

/** Express error middleware: {"error": code, "message": ...} with the mapped status. */
export function errorHandler(logger: Logger) {
  return (err: unknown, req: Request, res: Response, next: NextFunction): void => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const e = toLedgerError(err);
    const status = STATUS[e.code];
    if (status >= 500) logger.error({ err }, "request failed");
    res.setHeader("Cache-Control", "no-store");
    if (e.code === "unavailable") res.setHeader("Retry-After", "1");
    const allow = e.details?.allow;
    if (e.code === "method_not_allowed" && typeof allow === "string") res.setHeader("Allow", allow);
    if (e.code === "too_many_requests") res.setHeader("Retry-After", String(e.details?.retry_after_s ?? 1));
    const leaderAddress = e.details?.leader_address;
    if (e.code === "not_leader" && typeof leaderAddress === "string") {
      // The leader serves the scheme this node does: every node of a cluster uses TLS or none.
      res.setHeader("Location", `${req.protocol}://${leaderAddress}${req.originalUrl}`);
    }
    res.status(status).json({ error: e.code, message: e.message, ...(e.details ?? {}) });
  };
}
