/**
 * Typed errors with stable codes. The api layer maps each code to an HTTP status in one place
 * (src/api/errors.ts); lower layers only say what went wrong.
 */
export type ErrorCode =
  | "bad_request"
  | "invalid_json"
  | "schema_violation"
  | "unknown_record_type"
  | "unsupported_media_type"
  | "payload_too_large"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  /** Below this node's history_from: pruned by a recorded prune, or before an installed snapshot (410). */
  | "gone"
  | "method_not_allowed"
  | "conflict"
  | "idempotency_conflict"
  | "not_leader"
  | "too_many_requests"
  | "header_fields_too_large"
  | "unavailable"
  | "verification_failed"
  | "internal";

export class LedgerError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = "LedgerError";
  }
}

export const notFound = (message: string): LedgerError => new LedgerError("not_found", message);
