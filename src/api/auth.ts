/**
 * Bearer-token authentication: writes need the admin token (<data-dir>/admin.token); the audit
 * accepts the admin token or the read-only auditor token (<data-dir>/audit.token).
 */
import { timingSafeEqual, createHash } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import { LedgerError } from "../util/errors";

// Compared as SHA-256 digests: equal lengths for timingSafeEqual, and no length leak.
const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

/**
 * Throws unauthorized (no or malformed Authorization) or forbidden (a token that is none of
 * tokens); returns which of tokens matched. Every token is compared, so the time says nothing
 * about which one came close.
 */
export function checkBearer(header: string | undefined, tokens: readonly string[]): number {
  if (header === undefined) throw new LedgerError("unauthorized", "missing Authorization: Bearer <token>");
  const m = /^Bearer ([^\s]+)$/.exec(header);
  if (m === null) throw new LedgerError("unauthorized", "Authorization must be 'Bearer <token>'");
  const got = digest(m[1]);
  let match = -1;
  tokens.forEach((t, i) => {
    if (timingSafeEqual(got, digest(t)) && match < 0) match = i;
  });
  if (match < 0) throw new LedgerError("forbidden", "token is not valid for this ledger");
  return match;
}

/** Middleware: the request must carry this exact token (the admin token: writes and admin). */
export function requireToken(token: string) {
  return (req: Request, _res: Response, next: NextFunction): void => {
    checkBearer(req.headers.authorization, [token]);
    next();
  };
}
