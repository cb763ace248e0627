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
  conflict: 409,
  idempotency_conflict: 409,
  not_leader: 307,
  unavailable: 503,
  verification_failed: 500,
  internal: 500,
};

/** Maps body-parser's errors (they carry a `type`) to ledger errors; anything else is internal. */
function toLedgerError(err: unknown): LedgerError {
  if (err instanceof LedgerError) return err;
  const type = (err as { type?: unknown } | null)?.type;
  if (type === "entity.parse.failed") return new LedgerError("invalid_json", "request body is not valid JSON");
  if (type === "entity.too.large") {
    const limit = (err as { limit?: number }).limit;
    return new LedgerError("payload_too_large", `request body exceeds ${limit ?? "the"} bytes`);
  }
  if (type === "encoding.unsupported" || type === "charset.unsupported") {
    return new LedgerError("unsupported_media_type", "request body must be UTF-8 JSON");
  }
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
    if (e.code === "unavailable") res.setHeader("Retry-After", "1");
    const leaderAddress = e.details?.leader_address;
    if (e.code === "not_leader" && typeof leaderAddress === "string") {
      res.setHeader("Location", `http://${leaderAddress}${req.originalUrl}`);
    }
    res.status(status).json({ error: e.code, message: e.message, ...(e.details ?? {}) });
  };
}
