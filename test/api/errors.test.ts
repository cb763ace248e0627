// src/api/errors.ts, in-process: one express app whose routes throw, behind errorHandler. Every
// error is {"error": code, "message": ..., ...details} with the mapped status; 503 and 429 carry
// Retry-After, 405 carries Allow, a not_leader with an address redirects (307 + Location of the
// leader with the original URL); a URIError (a path parameter that does not decode) is a 400; any
// other throw is a 500 "internal error" that hides the message and is logged (4xx are not).
import * as http from "node:http";
import express from "express";
import { ErrorCode, LedgerError } from "../../src/util/errors";
import { errorHandler, STATUS } from "../../src/api/errors";
import { listen } from "../../src/api/server";
import { capturingLogger } from "../support/in-process-app";
import { HttpResult, http as request } from "../support/server";

const captured = capturingLogger();
let server: http.Server;
let base = "";

/** What the next request to /throw throws. */
let toThrow: unknown = null;

// A new server per test: its setup (src code) then runs inside the test (Stryker counts code run in
// beforeAll as "static", run against every test).
beforeEach(async () => {
  const app = express();
  app.get("/throw/:p", (req) => {
    // express decodes params lazily: reading one that does not decode throws its URIError here
    void req.params.p;
    throw toThrow;
  });
  app.get("/sent", (_req, res, next) => {
    res.status(200).write("partial");
    next(new LedgerError("internal", "after the headers"));
  });
  app.use(errorHandler(captured.logger));
  const bound = await listen(app, "127.0.0.1", 0);
  server = bound.server;
  base = `http://127.0.0.1:${bound.port}`;
});
afterEach(async () => {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
});

async function answer(err: unknown, url = "/throw/x?q=1"): Promise<HttpResult> {
  toThrow = err;
  captured.lines.length = 0;
  return request(base, "GET", url);
}

describe("errorHandler", () => {
  test("every code answers its status with {error, message, ...details} and no-store", async () => {
    const codes = Object.keys(STATUS) as ErrorCode[];
    for (const code of codes.filter((c) => c !== "not_leader" && c !== "internal")) {
      const r = await answer(new LedgerError(code, `m-${code}`, { extra: 7 }));
      expect({ code, status: r.status, json: r.json }).toEqual({ code, status: STATUS[code], json: { error: code, message: `m-${code}`, extra: 7 } });
      expect(r.headers.get("cache-control")).toBe("no-store");
    }
  });

  test("the published statuses (DESIGN.md REST API: 400/413/415, 401/403, 404, 410, 409, 429, 503)", () => {
    expect(STATUS).toMatchObject({
      bad_request: 400, invalid_json: 400, schema_violation: 400, unknown_record_type: 400, unsupported_media_type: 415,
      payload_too_large: 413, unauthorized: 401, forbidden: 403, not_found: 404, gone: 410, method_not_allowed: 405,
      conflict: 409, idempotency_conflict: 409, not_leader: 307, too_many_requests: 429, header_fields_too_large: 431,
      unavailable: 503, verification_failed: 500, internal: 500,
    });
  });

  test("unavailable carries Retry-After 1; other codes carry none", async () => {
    expect((await answer(new LedgerError("unavailable", "no quorum"))).headers.get("retry-after")).toBe("1");
    expect((await answer(new LedgerError("conflict", "x"))).headers.get("retry-after")).toBeNull();
    expect((await answer(new LedgerError("bad_request", "x", { retry_after_s: 9 }))).headers.get("retry-after")).toBeNull();
  });

  test("too_many_requests carries Retry-After from details.retry_after_s, else 1", async () => {
    expect((await answer(new LedgerError("too_many_requests", "busy", { retry_after_s: 17 }))).headers.get("retry-after")).toBe("17");
    expect((await answer(new LedgerError("too_many_requests", "busy"))).headers.get("retry-after")).toBe("1");
  });

  test("method_not_allowed sets Allow only from a string details.allow", async () => {
    expect((await answer(new LedgerError("method_not_allowed", "no", { allow: "GET, HEAD" }))).headers.get("allow")).toBe("GET, HEAD");
    expect((await answer(new LedgerError("method_not_allowed", "no", { allow: 5 }))).headers.get("allow")).toBeNull();
    expect((await answer(new LedgerError("conflict", "no", { allow: "GET" }))).headers.get("allow")).toBeNull();
  });

  test("not_leader with a leader address is a 307 to the leader with the original URL; without one no Location", async () => {
    toThrow = new LedgerError("not_leader", "ask the leader", { leader: "n2", leader_address: "10.0.0.2:7000" });
    const res = await fetch(`${base}/throw/x?q=1&redirect=1`, { redirect: "manual" });
    expect(res.status).toBe(307);
    expect(res.headers.get("location")).toBe("http://10.0.0.2:7000/throw/x?q=1&redirect=1");
    expect(await res.json()).toEqual({ error: "not_leader", message: "ask the leader", leader: "n2", leader_address: "10.0.0.2:7000" });
    toThrow = new LedgerError("not_leader", "no leader known", { leader: null, leader_address: null });
    const none = await fetch(`${base}/throw/x`, { redirect: "manual" });
    expect([none.status, none.headers.get("location")]).toEqual([307, null]);
    toThrow = new LedgerError("conflict", "x", { leader_address: "10.0.0.2:7000" });
    expect((await fetch(`${base}/throw/x`, { redirect: "manual" })).headers.get("location")).toBeNull();
  });

  test("a path parameter that does not decode is a 400, not a 500", async () => {
    const r = await answer(new LedgerError("conflict", "not reached"), "/throw/%E0%A4%A");
    expect({ status: r.status, json: r.json }).toEqual({ status: 400, json: { error: "bad_request", message: "a path parameter is not valid percent-encoded UTF-8" } });
    expect(captured.lines.filter((l) => l.msg === "request failed")).toHaveLength(0);
  });

  test("anything that is not a LedgerError is a 500 internal whose message is hidden, and is logged", async () => {
    const r = await answer(new Error("secret detail of a bug"));
    expect({ status: r.status, json: r.json }).toEqual({ status: 500, json: { error: "internal", message: "internal error" } });
    expect(r.text).not.toContain("secret detail");
    const logged = captured.lines.filter((l) => l.msg === "request failed");
    expect(logged).toHaveLength(1);
    expect(logged[0].level).toBe(50);
    expect(JSON.stringify(logged[0])).toContain("secret detail of a bug");
  });

  test("a 5xx LedgerError is logged; a 4xx is not", async () => {
    await answer(new LedgerError("verification_failed", "bad chain"));
    expect(captured.lines.filter((l) => l.msg === "request failed")).toHaveLength(1);
    await answer(new LedgerError("unavailable", "no quorum"));
    expect(captured.lines.filter((l) => l.msg === "request failed")).toHaveLength(1);
    await answer(new LedgerError("not_found", "x"));
    await answer(new LedgerError("too_many_requests", "x"));
    expect(captured.lines.filter((l) => l.msg === "request failed")).toHaveLength(0);
  });

  test("after the headers went out, the error goes to express (the connection is cut), not a second answer", async () => {
    await expect(request(base, "GET", "/sent")).rejects.toThrow();
  });
});
