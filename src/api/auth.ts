/** Bearer-token authentication for writes (the admin token in <data-dir>/admin.token). */
import { timingSafeEqual, createHash } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import { LedgerError } from "../util/errors";

const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

export function requireToken(token: string) {
  const want = digest(token);
  return (req: Request, _res: Response, next: NextFunction): void => {
    const header = req.headers.authorization;
    if (header === undefined) throw new LedgerError("unauthorized", "missing Authorization: Bearer <token>");
    const m = /^Bearer ([^\s]+)$/.exec(header);
    if (m === null) throw new LedgerError("unauthorized", "Authorization must be 'Bearer <token>'");
    if (!timingSafeEqual(digest(m[1]), want)) throw new LedgerError("forbidden", "token is not valid for this ledger");
    next();
  };
}
