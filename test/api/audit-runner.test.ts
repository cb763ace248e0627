// src/api/audit.ts in this process (test/api/audit.test.ts drives the same code inside spawned
// servers, where Stryker cannot see it): parseFrom's grammar; the runner's one-at-a-time rule and the
// Retry-After it estimates from the running audit's progress; the job it hands the reader; the time
// limit; the priority warning logged once; and handle()'s tokens, statuses, headers and a caller
// who leaves. A stand-in `start` gives each test the audit it needs; the last block runs real audits
// through the in-process app (a real node, the reader's worker thread).
import express from "express";
import pino from "pino";
import { AuditOptions, AuditResult, AuditRunner, AUDIT_TIME_MAX_MS, parseFrom } from "../../src/api/audit";
import { errorHandler } from "../../src/api/errors";
import { listen } from "../../src/api/server";
import type { AuditHandle, AuditJob } from "../../src/node/ports";
import type { VerifyReport } from "../../src/ledger/verify";
import { LedgerError } from "../../src/util/errors";
import { capturingLogger, InProcessApp, sharedInProcessApp } from "../support/in-process-app";
import { http, HttpResult } from "../support/server";

const ADMIN = "a".repeat(64);
const AUDITOR = "b".repeat(64);

const report = (ok: boolean): VerifyReport => ({
  ok, from: "genesis", entries: 7, checkpoints: 1, size: 7, head: "h", root: "r", state_root: "s", last_applied: 7, ...(ok ? {} : { first_bad_index: 3, reason: "bad hash" }),
});

/** One audit the test finishes by hand: what it was given, and how it was cancelled. */
interface Pending {
  readonly job: AuditJob;
  readonly progress: (done: number, total: number) => void;
  readonly note: (reason: string) => void;
  readonly cancels: LedgerError[];
  resolve(r: AuditResult): void;
  reject(e: unknown): void;
}

/** A stand-in for the reader's audit(): every start is kept in `started`; cancel rejects with its reason, as the worker does. */
function fakeStart(opts: { cancelRejects?: boolean } = {}): { start: AuditOptions["start"]; started: Pending[] } {
  const started: Pending[] = [];
  const start = (job: AuditJob, progress: (done: number, total: number) => void, note: (reason: string) => void): AuditHandle => {
    let resolve!: (r: AuditResult) => void;
    let reject!: (e: unknown) => void;
    const result = new Promise<AuditResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const p: Pending = { job, progress, note, cancels: [], resolve, reject };
    started.push(p);
    return {
      result,
      cancel(reason: LedgerError): void {
        p.cancels.push(reason);
        if (opts.cancelRejects !== false) reject(reason);
      },
    };
  };
  return { start, started };
}

function runner(start: AuditOptions["start"], extra: Partial<AuditOptions> = {}): { r: AuditRunner; lines: Array<Record<string, unknown>> } {
  const captured = capturingLogger();
  return { r: new AuditRunner({ start, adminToken: ADMIN, auditToken: AUDITOR, publicAudit: false, logger: captured.logger, ...extra }), lines: captured.lines };
}

const caught = async (p: Promise<unknown>): Promise<LedgerError> => {
  const e = await p.then(() => null, (err: unknown) => err);
  if (!(e instanceof LedgerError)) throw new Error(`expected a LedgerError, got ${String(e)}`);
  return e;
};

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** Loop turns until `cond` holds: at most 10,000 (a request over loopback takes a few), else a failure naming it. */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (cond()) return;
    await turn();
  }
  throw new Error(`${what}: not after 10,000 turns of the loop`);
}

afterEach(() => {
  jest.restoreAllMocks();
});

describe("parseFrom", () => {
  test("genesis (also when absent), snapshot, or a positive decimal index of at most 16 digits that is a safe integer", () => {
    expect(parseFrom(undefined)).toBe("genesis");
    expect(parseFrom("genesis")).toBe("genesis");
    expect(parseFrom("snapshot")).toBe("snapshot");
    expect(parseFrom("1")).toBe(1);
    expect(parseFrom("90")).toBe(90);
    expect(parseFrom("1234567890123456")).toBe(1234567890123456);
    expect(parseFrom("9007199254740991")).toBe(Number.MAX_SAFE_INTEGER);
  });

  test.each([
    ["0"], ["01"], ["-1"], ["1.5"], ["1e3"], [" 1"], ["1 "], ["x1"], ["1x"], ["12345678901234567"], ["9007199254740992"], ["9999999999999999"],
    [""], ["Genesis"], [["1"]], [{ a: "1" }], [1],
  ])("%j is refused with the grammar in the message", (raw) => {
    let err: unknown = null;
    try {
      parseFrom(raw);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LedgerError);
    expect((err as LedgerError).code).toBe("bad_request");
    expect((err as LedgerError).message).toBe("from must be genesis, snapshot, or the index of a retained snapshot anchor (GET /v1/snapshots)");
  });
});

describe("AuditRunner.run", () => {
  test("hands the reader the job: from alone when no `to`, from and to when given", async () => {
    const { start, started } = fakeStart();
    const { r } = runner(start);
    const a = r.run("genesis", undefined);
    expect(started[0].job).toStrictEqual({ from: "genesis" });
    expect(Object.keys(started[0].job)).toEqual(["from"]);
    started[0].resolve({ report: report(true) });
    await a;
    const b = r.run(12, 40);
    expect(started[1].job).toStrictEqual({ from: 12, to: 40 });
    started[1].resolve({ report: report(true), stateRootLive: "x" });
    expect(await b).toEqual({ report: report(true), stateRootLive: "x" });
  });

  test("one at a time: busy while one runs, a second caller gets too_many_requests; free again after success and after failure", async () => {
    const { start, started } = fakeStart();
    const { r } = runner(start);
    expect(r.busy()).toBe(false);
    const first = r.run("genesis", undefined);
    expect(r.busy()).toBe(true);
    const second = await caught(r.run("genesis", undefined));
    expect(second.code).toBe("too_many_requests");
    expect(second.message).toBe("an audit is already running on this node (one at a time); retry later");
    expect(started).toHaveLength(1);
    started[0].resolve({ report: report(true) });
    await first;
    expect(r.busy()).toBe(false);

    const failing = r.run("snapshot", undefined);
    expect(r.busy()).toBe(true);
    started[1].reject(new LedgerError("conflict", "no snapshot"));
    expect((await caught(failing)).message).toBe("no snapshot");
    expect(r.busy()).toBe(false);
    const third = r.run("genesis", undefined);
    expect(started).toHaveLength(3);
    started[2].resolve({ report: report(false) });
    expect((await third).report.ok).toBe(false);
  });

  test("Retry-After: 1 s without progress or when done; else the remaining entries at the rate so far, rounded up, at most 60 s", async () => {
    const clock = { now: 1000 };
    jest.spyOn(performance, "now").mockImplementation(() => clock.now);
    const { start, started } = fakeStart();
    const { r } = runner(start);
    const running = r.run("genesis", undefined);
    const retryAfter = async (): Promise<unknown> => (await caught(r.run("genesis", undefined))).details?.retry_after_s;

    clock.now = 3000; // 2 s in
    expect(await retryAfter()).toBe(1); // no progress yet
    started[0].progress(0, 10);
    expect(await retryAfter()).toBe(1);
    started[0].progress(10, 10);
    expect(await retryAfter()).toBe(1); // all read, finishing
    started[0].progress(11, 10);
    expect(await retryAfter()).toBe(1);
    started[0].progress(1, 5); // 4 left at 0.5 entries/s
    expect(await retryAfter()).toBe(8);
    clock.now = 2000; // 1 s in
    started[0].progress(2, 5); // 3 left at 2 entries/s: 1.5 s
    expect(await retryAfter()).toBe(2);
    started[0].progress(4, 5); // 1 left at 4 entries/s: 0.25 s, still at least 1
    expect(await retryAfter()).toBe(1);
    started[0].progress(1, 1_000_000);
    expect(await retryAfter()).toBe(60);
    started[0].resolve({ report: report(true) });
    await running;
  });

  test("logs each finished audit with what it verified and how long it took", async () => {
    const clock = { now: 500 };
    jest.spyOn(performance, "now").mockImplementation(() => clock.now);
    const { start, started } = fakeStart();
    const { r, lines } = runner(start);
    const a = r.run(3, undefined);
    clock.now = 750.4;
    started[0].resolve({ report: report(true) });
    await a;
    const b = r.run("genesis", 5);
    clock.now = 1000;
    started[1].resolve({ report: report(false) });
    await b;
    const finished = lines.filter((l) => l.msg === "audit finished");
    expect(finished.map(({ from, to, ok, entries, size, duration_ms }) => ({ from, to, ok, entries, size, duration_ms }))).toEqual([
      { from: 3, to: null, ok: true, entries: 7, size: 7, duration_ms: 250 },
      { from: "genesis", to: 5, ok: false, entries: 7, size: 7, duration_ms: 250 },
    ]);
  });

  test("the worker's note that it could not lower its priority is logged once per runner, as a warning", async () => {
    const { start, started } = fakeStart();
    const { r, lines } = runner(start);
    const a = r.run("genesis", undefined);
    started[0].note("setpriority EACCES");
    started[0].note("again");
    started[0].resolve({ report: report(true) });
    await a;
    const b = r.run("genesis", undefined);
    started[1].note("third");
    started[1].resolve({ report: report(true) });
    await b;
    const warned = lines.filter((l) => l.msg === "the audit worker could not lower its priority");
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, reason: "setpriority EACCES" });
  });

  test("an audit that runs past the time limit is cancelled with the reason, and the runner is free again", async () => {
    const { start, started } = fakeStart();
    const { r } = runner(start, { timeMaxMs: 30 });
    const err = await caught(r.run("genesis", undefined));
    expect(err.code).toBe("unavailable");
    expect(err.message).toBe("the audit ran longer than 30 ms and was stopped");
    expect(started[0].cancels.map((c) => c.message)).toEqual(["the audit ran longer than 30 ms and was stopped"]);
    expect(r.busy()).toBe(false);
  });

  test("the default limit is 30 minutes, and a finished audit's limit timer is cleared", async () => {
    expect(AUDIT_TIME_MAX_MS).toBe(30 * 60_000);
    jest.useFakeTimers();
    try {
      const { start, started } = fakeStart();
      const { r } = runner(start);
      const a = r.run("genesis", undefined);
      jest.advanceTimersByTime(AUDIT_TIME_MAX_MS - 1);
      expect(started[0].cancels).toEqual([]);
      jest.advanceTimersByTime(1);
      expect(started[0].cancels.map((c) => c.message)).toEqual([`the audit ran longer than ${AUDIT_TIME_MAX_MS} ms and was stopped`]);
      await caught(a);

      const b = r.run("genesis", undefined);
      started[1].resolve({ report: report(true) });
      await b;
      expect(jest.getTimerCount()).toBe(0);
    } finally {
      jest.useRealTimers();
    }
  });

  test("onStart gets a stop that cancels the audit as abandoned by its caller", async () => {
    const { start, started } = fakeStart();
    const { r } = runner(start);
    let stop: (() => void) | undefined;
    const a = r.run("genesis", undefined, (s) => {
      stop = s;
    });
    expect(stop).toBeDefined();
    stop?.();
    const err = await caught(a);
    expect(err.code).toBe("unavailable");
    expect(err.message).toBe("the client closed the connection; audit abandoned");
    expect(started[0].cancels).toEqual([err]);
    expect(r.busy()).toBe(false);
  });
});

/** GET /audit on a bare express app over a runner with a stand-in start, with the project's error handler (logging to `errors` when given). */
async function appOver(r: AuditRunner, errors?: Array<Record<string, unknown>>): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  app.get("/audit", (req, res) => r.handle(req, res));
  app.use(errorHandler(errors === undefined ? pino({ level: "silent" }) : pino({ level: "info" }, { write: (line: string) => void errors.push(JSON.parse(line) as Record<string, unknown>) })));
  const { server, port } = await listen(app, "127.0.0.1", 0);
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

describe("AuditRunner.handle (a bare app, a stand-in audit)", () => {
  test("the report with state_root_live: 200 when ok, 500 when the chain is wrong; never cached", async () => {
    const { start, started } = fakeStart();
    const { r } = runner(start);
    const a = await appOver(r);
    try {
      const okAnswer = http(a.url, "GET", "/audit", { token: AUDITOR });
      await until("audit 1 started", () => started.length >= 1);
      started[0].resolve({ report: report(true), stateRootLive: "live" });
      const ok = await okAnswer;
      expect(ok.status).toBe(200);
      expect(ok.json).toEqual({ ...report(true), state_root_live: "live" });
      expect(ok.headers.get("cache-control")).toBe("no-store");

      const badAnswer = http(a.url, "GET", "/audit?from=4&to=6", { token: ADMIN });
      await until("audit 2 started", () => started.length >= 2);
      expect(started[1].job).toStrictEqual({ from: 4, to: 6 });
      started[1].resolve({ report: report(false) });
      const bad = await badAnswer;
      expect(bad.status).toBe(500);
      expect(bad.json).toEqual({ ...report(false) });
      expect(bad.headers.get("cache-control")).toBe("no-store");
    } finally {
      await a.close();
    }
  });

  test("without --public-audit: no token (401) or another token (403) is refused before any audit starts; with it, none is needed", async () => {
    const { start, started } = fakeStart();
    const closed = await appOver(runner(start).r);
    const open = await appOver(runner(start, { publicAudit: true }).r);
    try {
      expect((await http(closed.url, "GET", "/audit")).status).toBe(401);
      expect((await http(closed.url, "GET", "/audit", { token: "c".repeat(64) })).status).toBe(403);
      expect((await http(closed.url, "GET", "/audit?from=zero")).status).toBe(401); // the token first
      expect(started).toHaveLength(0);
      const answer = http(open.url, "GET", "/audit");
      await until("audit 1 started", () => started.length >= 1);
      started[0].resolve({ report: report(true) });
      expect((await answer).status).toBe(200);
    } finally {
      await closed.close();
      await open.close();
    }
  });

  test("a bad from or to is a 400 with the reason; a busy runner a 429 with Retry-After", async () => {
    const { start, started } = fakeStart();
    const a = await appOver(runner(start).r);
    try {
      const from = await http(a.url, "GET", "/audit?from=0", { token: ADMIN });
      expect(from.status).toBe(400);
      expect((from.json as { message: string }).message).toMatch(/^from must be genesis/);
      const to = await http(a.url, "GET", "/audit?to=x", { token: ADMIN });
      expect(to.status).toBe(400);
      expect((to.json as { message: string }).message).toBe('to must be a whole number >= 1, got "x"');
      expect(started).toHaveLength(0);
      const running = http(a.url, "GET", "/audit", { token: ADMIN });
      await until("audit 1 started", () => started.length >= 1);
      const busy = await http(a.url, "GET", "/audit", { token: ADMIN });
      expect(busy.status).toBe(429);
      expect(busy.headers.get("retry-after")).toBe("1");
      expect((busy.json as { retry_after_s: number }).retry_after_s).toBe(1);
      started[0].resolve({ report: report(true) });
      expect((await running).status).toBe(200);
    } finally {
      await a.close();
    }
  });

  test("a caller who leaves stops the audit, and nothing is answered or logged as failed for it; one who stays to the answer never cancels it", async () => {
    const { start, started } = fakeStart();
    const { r } = runner(start);
    const errors: Array<Record<string, unknown>> = [];
    const a = await appOver(r, errors);
    try {
      const controller = new AbortController();
      const left = fetch(`${a.url}/audit`, { headers: { authorization: `Bearer ${ADMIN}` }, signal: controller.signal }).then(() => "answered", () => "aborted");
      await until("audit 1 started", () => started.length >= 1);
      controller.abort();
      expect(await left).toBe("aborted");
      await until("the audit cancelled", () => started[0].cancels.length >= 1);
      expect(started[0].cancels.map((c) => c.message)).toEqual(["the client closed the connection; audit abandoned"]);
      await until("the runner free", () => !r.busy());
      await turn();
      expect(errors).toEqual([]);

      // Connection: close, so the socket (and the response's "close") ends right after the answer.
      const stayed = http(a.url, "GET", "/audit", { token: ADMIN, headers: { connection: "close" } });
      await until("audit 2 started", () => started.length >= 2);
      started[1].resolve({ report: report(true) });
      expect((await stayed).status).toBe(200);
      await a.close(); // every socket closed: every "close" has fired
      expect(started[1].cancels).toEqual([]);
    } finally {
      await a.close();
    }
  });
});

describe("GET /v1/audit/verify on the in-process app (a real node, the reader's worker)", () => {
  const shared = sharedInProcessApp({}, async (app) => {
    for (let i = 0; i < 5; i++) {
      const r = await http(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, json: { type: "policy.set", subject: `audit-inproc-${i}`, data: { name: "n", value: i } } });
      if (r.status !== 201) throw new Error(`append ${i}: ${r.status} ${r.text}`);
    }
  });
  let app: InProcessApp;
  beforeEach(async () => {
    app = await shared.open();
  });
  afterEach(() => app.close());
  afterAll(() => shared.close());
  const audit = (query: string, token?: string): Promise<HttpResult> =>
    http(app.baseUrl, "GET", `/v1/audit/verify${query}`, { ...(token === undefined ? {} : { token }), timeoutMs: 60_000 });

  test("the auditor token and the admin token both get the full report; no token gets 401", async () => {
    for (const token of [app.auditToken, app.adminToken]) {
      const r = await audit("", token);
      expect(r.status).toBe(200);
      const body = r.json as { ok: boolean; from: string; size: number; state_root: string; state_root_live: string };
      expect(body).toMatchObject({ ok: true, from: "genesis" });
      expect(body.size).toBeGreaterThanOrEqual(6);
      expect(body.state_root_live).toBe(body.state_root);
    }
    expect((await audit("")).status).toBe(401);
  });

  test("to bounds the replay; a to beyond the log is a 404, a snapshot start without any snapshot a 409", async () => {
    const part = await audit("?to=3", app.auditToken);
    expect(part.status).toBe(200);
    expect(part.json).toMatchObject({ ok: true, size: 3 });
    expect((await audit("?to=99999", app.auditToken)).status).toBe(404);
    expect((await audit("?from=snapshot", app.auditToken)).status).toBe(409);
  });
});
