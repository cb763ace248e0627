// src/api/auth.ts, in-process: a missing or malformed Authorization is 401 (unauthorized), a token
// that is none of the accepted ones is 403 (forbidden) — a wrong token of the right length, one
// differing in a single character, a prefix or an extension of the real one included (issue 8:
// "accept any token of the right length" must fail here) — and checkBearer says which token matched.
import type { NextFunction, Request, Response } from "express";
import { LedgerError } from "../../src/util/errors";
import { checkBearer, requireToken } from "../../src/api/auth";

const ADMIN = "0123456789abcdef".repeat(4);
const AUDIT = "fedcba9876543210".repeat(4);

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof LedgerError) return `${err.code}: ${err.message}`;
    throw err;
  }
  return "accepted";
}

describe("checkBearer", () => {
  test("the exact token is accepted and its position returned", () => {
    expect(checkBearer(`Bearer ${ADMIN}`, [ADMIN])).toBe(0);
    expect(checkBearer(`Bearer ${ADMIN}`, [ADMIN, AUDIT])).toBe(0);
    expect(checkBearer(`Bearer ${AUDIT}`, [ADMIN, AUDIT])).toBe(1);
  });

  test("when two accepted tokens are equal, the first one is reported", () => {
    expect(checkBearer(`Bearer ${ADMIN}`, [AUDIT, ADMIN, ADMIN])).toBe(1);
    expect(checkBearer(`Bearer ${ADMIN}`, [ADMIN, AUDIT, ADMIN])).toBe(0);
  });

  test("no header, or one that is not exactly 'Bearer <token>', is unauthorized", () => {
    expect(codeOf(() => checkBearer(undefined, [ADMIN]))).toBe("unauthorized: missing Authorization: Bearer <token>");
    for (const h of ["", ADMIN, `bearer ${ADMIN}`, `Basic ${ADMIN}`, `Bearer  ${ADMIN}`, `Bearer ${ADMIN} `, ` Bearer ${ADMIN}`, `Bearer ${ADMIN} x`, "Bearer ", "Bearer", `Bearer\t${ADMIN}`]) {
      expect(codeOf(() => checkBearer(h, [ADMIN]))).toBe("unauthorized: Authorization must be 'Bearer <token>'");
    }
  });

  test("a wrong token is forbidden: same length, one character off, a prefix, an extension, the other ledger's", () => {
    const forbidden = "forbidden: token is not valid for this ledger";
    const oneOff = `${ADMIN.slice(0, 63)}${ADMIN[63] === "f" ? "e" : "f"}`;
    const firstOff = `${ADMIN[0] === "0" ? "1" : "0"}${ADMIN.slice(1)}`;
    for (const t of ["x".repeat(64), oneOff, firstOff, ADMIN.slice(0, 63), `${ADMIN}0`, ADMIN.toUpperCase(), AUDIT]) {
      expect(codeOf(() => checkBearer(`Bearer ${t}`, [ADMIN]))).toBe(forbidden);
    }
    expect(codeOf(() => checkBearer(`Bearer ${ADMIN}`, []))).toBe(forbidden);
  });
});

describe("requireToken", () => {
  const call = (header: string | undefined): string => {
    const req = { headers: header === undefined ? {} : { authorization: header } } as unknown as Request;
    let nexts = 0;
    const outcome = codeOf(() => requireToken(ADMIN)(req, {} as Response, (() => { nexts++; }) as NextFunction));
    return `${outcome} (next ${nexts})`;
  };

  test("passes on with the admin token, throws (and does not call next) otherwise", () => {
    expect(call(`Bearer ${ADMIN}`)).toBe("accepted (next 1)");
    expect(call(undefined)).toBe("unauthorized: missing Authorization: Bearer <token> (next 0)");
    expect(call(`Bearer ${AUDIT}`)).toBe("forbidden: token is not valid for this ledger (next 0)");
    expect(call(`Bearer ${"x".repeat(64)}`)).toBe("forbidden: token is not valid for this ledger (next 0)");
  });
});
