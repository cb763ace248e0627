// Issue 7, "expensive reads": GET /v1/audit/verify against real `resonetics serve` processes. It
// needs the admin token or the read-only auditor token (<data-dir>/audit.token) unless
// --public-audit; the auditor token can never write; one audit runs at a time per node (a second
// caller gets 429 with Retry-After); /health answers while an audit runs; a start the data dir
// cannot serve is a 4xx JSON error, never a report that looks like a chain violation; a real
// violation stays a 500 ok:false report. In-process: the step function the server drives gives
// the same report as the offline verifier, and the runner verifies in a worker thread (never on
// the thread that ticks Raft), stops it when asked, and frees itself after an error.
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import Database from "better-sqlite3";
import pino from "pino";
import { testSeed } from "../support/independent";
import { getStatus, postRecord } from "../support/ledger-client";
import { HttpResult, Server, cleanupAll, http, makeTempDir, mapPool, pollUntil, runCli, startServer, withFailureContext } from "../support/server";
import { Store } from "../../src/storage/store";
import * as verifyModule from "../../src/ledger/verify";
import { verifyChain, verifyChainSteps } from "../../src/ledger/verify";
import { AuditRunner } from "../../src/api/audit";
import { auditInWorker } from "../../src/node/audit-worker";
import { LedgerError } from "../../src/util/errors";

/**
 * Records in the shared log: enough that a full audit takes many slices (each entry costs a few
 * hashes and an apply), so a second caller reliably arrives while the first one runs.
 */
const RECORDS = 3000;
const CONCURRENCY = 16;
const SUBJECTS = 50;
/** Rounds of "start an audit, probe it" before giving up on ever catching it running. */
const OVERLAP_ROUNDS_MAX = 3;
/** Probes per round while the first audit runs (each probe is one request, answered in order). */
const PROBES_MAX = 500;
const SEED = testSeed();

let dir = "";
let server: Server | undefined;
let auditToken = "";

const context = (): string =>
  `RESONETICS_SEED=${SEED} npx jest test/api/audit.test.ts; data dir ${dir}\n` + (server ? server.output() : "(no server)");
const guarded = (fn: () => Promise<void>) => (): Promise<void> => withFailureContext(context, dir === "" ? [] : [dir], fn);
const srv = (): Server => {
  if (server === undefined) throw new Error("server did not start");
  return server;
};
const audit = (query = "", token?: string, headers: Record<string, string> = {}): Promise<HttpResult> =>
  http(srv().baseUrl, "GET", `/v1/audit/verify${query}`, { ...(token === undefined ? {} : { token }), headers, timeoutMs: 120_000 });
const mode = (file: string): number => fs.statSync(file).mode & 0o777;
const errorOf = (r: HttpResult): unknown => (r.json as { error?: unknown } | undefined)?.error;

beforeAll(
  guarded(async () => {
    dir = makeTempDir();
    // RESONETICS_PUBLIC_AUDIT=0 must mean "not public" (commander alone would read any value as true).
    server = await startServer(dir, { env: { RESONETICS_PUBLIC_AUDIT: "0" } });
    const s = server;
    const bodies = Array.from({ length: RECORDS }, (_, i) => ({ type: "policy.set", subject: `audit-${i % SUBJECTS}`, data: { name: `n${i}`, value: i } }));
    const answers = await mapPool(bodies, CONCURRENCY, (body, i) => postRecord(s.baseUrl, s.token, body, i % 10 === 0 ? `key-${SEED}-${i}` : undefined));
    const bad = answers.filter((a) => a.status !== 201);
    if (bad.length > 0) throw new Error(`${bad.length} appends failed, first: ${bad[0].status} ${bad[0].text.slice(0, 300)}`);
    auditToken = fs.readFileSync(path.join(dir, "audit.token"), "utf8").trim();
  }),
  240_000,
);

afterAll(async () => {
  await server?.stop();
  await cleanupAll();
});

describe("tokens", () => {
  test("audit.token: 0600, 64 hex characters, not the admin token", guarded(async () => {
    const file = path.join(dir, "audit.token");
    expect(mode(file)).toBe(0o600);
    expect(auditToken).toMatch(/^[0-9a-f]{64}$/);
    expect(auditToken).not.toBe(srv().token);
  }));

  test("401 without a token or with a malformed header, 403 with a wrong one (also of the right length)", guarded(async () => {
    const none = await audit();
    expect({ status: none.status, error: errorOf(none) }).toEqual({ status: 401, error: "unauthorized" });
    const basic = await audit("", undefined, { authorization: `Basic ${Buffer.from(`x:${auditToken}`).toString("base64")}` });
    expect({ status: basic.status, error: errorOf(basic) }).toEqual({ status: 401, error: "unauthorized" });
    const sameLength = randomBytes(32).toString("hex");
    expect(sameLength.length).toBe(auditToken.length);
    for (const wrong of [sameLength, "nope", `${auditToken}0`, auditToken.slice(0, -1), auditToken.toUpperCase()]) {
      const r = await audit("", wrong);
      expect({ wrong: wrong.slice(0, 8), status: r.status, error: errorOf(r) }).toEqual({ wrong: wrong.slice(0, 8), status: 403, error: "forbidden" });
    }
  }));

  test("the admin token and the auditor token each run the audit: 200, ok, the whole log", guarded(async () => {
    const status = await getStatus(srv().baseUrl);
    for (const token of [srv().token, auditToken]) {
      const r = await audit("", token);
      const body = r.json as { ok?: unknown; size?: unknown; state_root?: unknown; state_root_live?: unknown };
      expect({ status: r.status, ok: body.ok }).toEqual({ status: 200, ok: true });
      expect(body.size).toBeGreaterThanOrEqual(status.commit_index);
      expect(body.state_root_live).toBe(body.state_root);
      expect(r.headers.get("cache-control")).toBe("no-store");
    }
  }));

  test("the auditor token can never write: POST /v1/records and admin routes answer 403, the log does not grow", guarded(async () => {
    const before = await getStatus(srv().baseUrl);
    const post = await postRecord(srv().baseUrl, auditToken, { type: "policy.set", subject: "auditor-write", data: { name: "x", value: 1 } });
    expect({ status: post.status, error: errorOf(post) }).toEqual({ status: 403, error: "forbidden" });
    const keyed = await postRecord(srv().baseUrl, auditToken, { type: "policy.set", subject: "auditor-write", data: { name: "x", value: 1 } }, "auditor-key");
    expect(keyed.status).toBe(403);
    const member = await http(srv().baseUrl, "POST", "/v1/admin/members", {
      token: auditToken, json: { id: "n9", address: "127.0.0.1:1", public_key: "00".repeat(32) },
    });
    expect(member.status).toBe(403);
    const remove = await http(srv().baseUrl, "DELETE", "/v1/admin/members/n1", { token: auditToken });
    expect(remove.status).toBe(403);
    // The node appends signed checkpoints on its own (every second with new entries, or every
    // 1,000): one may land between the two reads (a ten-run caught 3006 -> 3007). Whatever came
    // after `before` must be checkpoints only: no record and no configuration change.
    const after = await getStatus(srv().baseUrl);
    expect(after.commit_index).toBeGreaterThanOrEqual(before.commit_index);
    const since = await http(srv().baseUrl, "GET", `/v1/records?from=${before.commit_index + 1}&limit=1000`);
    expect(since.status).toBe(200);
    const kinds = (since.json as { entries: Array<{ index: number; kind: string }> }).entries.filter((e) => e.index <= after.commit_index).map((e) => e.kind);
    expect({ appended: after.commit_index - before.commit_index, kinds }).toEqual({ appended: kinds.length, kinds: kinds.map(() => "checkpoint") });
    const history = await http(srv().baseUrl, "GET", "/v1/subjects/auditor-write/history");
    expect(history.status).toBe(404);
  }));
});

describe("parameters", () => {
  test("from=snapshot without a snapshot: 409 JSON saying what is possible, not a violation report", guarded(async () => {
    const r = await audit("?from=snapshot", auditToken);
    expect(r.status).toBe(409);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    const body = r.json as Record<string, unknown>;
    expect(body).toMatchObject({ error: "conflict", from: "snapshot", possible: ["genesis"] });
    expect(String(body.message)).toMatch(/no snapshot.*from=genesis/);
    expect(body).not.toHaveProperty("ok");
    expect(body).not.toHaveProperty("first_bad_index");
  }));

  test("to=N verifies the prefix of N entries; from=genesis is the default; an unknown from is 400, an index that is no anchor 409", guarded(async () => {
    const r = await audit("?from=genesis&to=10", auditToken);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ ok: true, from: "genesis", entries: 10, size: 10 });
    expect(r.json).not.toHaveProperty("state_root_live");
    for (const q of ["?from=yesterday", "?from=", "?from=0", "?from=05", "?to=0", "?to=x"]) {
      const bad = await audit(q, auditToken);
      expect({ q, status: bad.status, error: errorOf(bad) }).toEqual({ q, status: 400, error: "bad_request" });
    }
    // An index is a start only when a retained snapshot is there: 409 naming the possible starts.
    const notAnchor = await audit("?from=5", auditToken);
    expect({ status: notAnchor.status, body: notAnchor.json }).toMatchObject({ status: 409, body: { error: "conflict", from: 5, possible: expect.arrayContaining(["genesis"]) } });
    // A size beyond the log is not verified as a shorter one.
    const beyond = await audit("?to=999999", auditToken);
    expect({ status: beyond.status, error: errorOf(beyond) }).toEqual({ status: 404, error: "not_found" });
  }));
});

describe("one audit at a time, and the node keeps answering", () => {
  test("a second caller gets 429 with Retry-After while an audit runs, and /health answers 200 meanwhile", guarded(async () => {
    // Overlap is proven, not timed: a 429 can only come while another audit holds the runner, and a
    // /health answer bracketed by two 429s came while that audit ran.
    let seen429: HttpResult | undefined;
    let healthDuringAudit = false;
    const firsts: HttpResult[] = [];
    for (let round = 0; round < OVERLAP_ROUNDS_MAX && !healthDuringAudit; round++) {
      let firstDone = false;
      const first = audit("", auditToken).then((r) => {
        firstDone = true;
        return r;
      });
      for (let probe = 0; probe < PROBES_MAX && !firstDone && !healthDuringAudit; probe++) {
        const second = await audit("", srv().token);
        if (second.status !== 429) {
          // The first audit finished before this probe began: the probe ran an audit of its own.
          expect({ status: second.status, ok: (second.json as { ok?: unknown }).ok }).toEqual({ status: 200, ok: true });
          continue;
        }
        seen429 = second;
        const health = await http(srv().baseUrl, "GET", "/health");
        expect(health.status).toBe(200);
        const third = await audit("", auditToken);
        if (third.status === 429) healthDuringAudit = true;
      }
      firsts.push(await first);
    }
    for (const f of firsts) expect({ status: f.status, ok: (f.json as { ok?: unknown }).ok }).toEqual({ status: 200, ok: true });
    expect(seen429).toBeDefined();
    expect(healthDuringAudit).toBe(true);
    const r = seen429 as HttpResult;
    expect(r.json).toMatchObject({ error: "too_many_requests" });
    expect(r.headers.get("retry-after")).toMatch(/^[1-9][0-9]*$/);
    // The runner is free again once the audit is over.
    const after = await audit("?to=5", auditToken);
    expect(after.status).toBe(200);
  }), 240_000);
});

describe("other data dirs", () => {
  test("--public-audit needs no token; audit.token is created on start for a dir without one; a real violation stays 500 ok:false", async () => {
    const d = makeTempDir();
    let s: Server | undefined;
    await withFailureContext(() => `data dir ${d}\n${s?.output() ?? ""}`, [d], async () => {
      s = await startServer(d, { env: { RESONETICS_PUBLIC_AUDIT: "0" } });
      for (let i = 0; i < 5; i++) expect((await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: "p", data: { name: "n", value: i } })).status).toBe(201);
      expect((await http(s.baseUrl, "GET", "/v1/audit/verify")).status).toBe(401);
      await s.stop();
      // A data dir from before audit.token existed.
      fs.rmSync(path.join(d, "audit.token"));
      s = await startServer(d, { extraArgs: ["--public-audit"] });
      const file = path.join(d, "audit.token");
      expect(fs.existsSync(file)).toBe(true);
      expect(mode(file)).toBe(0o600);
      const open = await http(s.baseUrl, "GET", "/v1/audit/verify");
      expect({ status: open.status, ok: (open.json as { ok?: unknown }).ok }).toEqual({ status: 200, ok: true });
      await s.stop();
      // Tamper with a stored Merkle node the node itself never reads again (leaf 0, not a peak).
      const db = new Database(path.join(d, "ledger.db"));
      try {
        const changed = db.prepare("UPDATE merkle_nodes SET hash = ? WHERE level = 0 AND idx = 0").run(randomBytes(32)).changes;
        expect(changed).toBe(1);
      } finally {
        db.close();
      }
      s = await startServer(d, { env: { RESONETICS_PUBLIC_AUDIT: "1" } });
      const bad = await http(s.baseUrl, "GET", "/v1/audit/verify");
      expect(bad.status).toBe(500);
      expect(bad.json).toMatchObject({ ok: false, first_bad_index: 1 });
      expect(String((bad.json as { reason?: unknown }).reason)).toMatch(/Merkle node 0\/0/);
      // A missing start is still a 4xx, violation or not.
      expect((await http(s.baseUrl, "GET", "/v1/audit/verify?from=snapshot")).status).toBe(409);
      await s.stop();
    });
  }, 120_000);

  test("snapshots delete no history: from=genesis, from=snapshot and from=<each anchor> verify; a start that is no anchor is 409 naming the possible ones", async () => {
    const d = makeTempDir();
    let s: Server | undefined;
    await withFailureContext(() => `data dir ${d}\n${s?.output() ?? ""}`, [d], async () => {
      s = await startServer(d, { extraArgs: ["--snapshot-every", "50"] });
      const srv2 = s;
      const write = async (from: number, n: number): Promise<void> => {
        const answers = await mapPool(Array.from({ length: n }, (_, i) => from + i), 8, (i) =>
          postRecord(srv2.baseUrl, srv2.token, { type: "policy.set", subject: `c-${i % 5}`, data: { name: "n", value: i } }));
        expect(answers.filter((a) => a.status !== 201).map((a) => a.status)).toEqual([]);
      };
      const snapshotRows = (): number[] => {
        const db = new Database(path.join(d, "ledger.db"), { readonly: true, fileMustExist: true });
        try {
          expect(db.prepare("SELECT idx FROM log_anchor WHERE id = 1").get()).toBeUndefined(); // nothing compacted
          return (db.prepare("SELECT idx FROM snapshots ORDER BY idx").all() as Array<{ idx: number }>).map((r) => r.idx);
        } finally {
          db.close();
        }
      };
      // Snapshots are made in a worker, at whatever last_applied is when it starts: write, wait for
      // one, write past the next snapshot point, wait for the second.
      await write(0, 60);
      await pollUntil("a first snapshot", async () => (snapshotRows().length >= 1 ? true : undefined));
      await write(60, 60);
      const anchors = await pollUntil("two snapshots", async () => {
        const rows = snapshotRows();
        return rows.length >= 2 ? rows : undefined;
      });
      const genesis = await http(s.baseUrl, "GET", "/v1/audit/verify?from=genesis", { token: s.token });
      expect({ status: genesis.status, body: genesis.json }).toMatchObject({ status: 200, body: { ok: true, from: "genesis" } });
      const fromSnap = await http(s.baseUrl, "GET", "/v1/audit/verify?from=snapshot", { token: s.token });
      expect({ status: fromSnap.status, body: fromSnap.json }).toMatchObject({ status: 200, body: { ok: true, from: "snapshot" } });
      expect((fromSnap.json as { size: number }).size).toBeGreaterThanOrEqual(anchors[anchors.length - 1]);
      for (const a of anchors) {
        const r = await http(s.baseUrl, "GET", `/v1/audit/verify?from=${a}`, { token: s.token });
        // The log may have grown since the genesis audit (a checkpoint entry): each report's own size counts.
        const size = (r.json as { size?: number } | undefined)?.size ?? -1;
        expect(size).toBeGreaterThanOrEqual((genesis.json as { size: number }).size);
        expect({ a, status: r.status, body: r.json }).toMatchObject({ a, status: 200, body: { ok: true, from: a, entries: size - a } });
      }
      const notAnchor = await http(s.baseUrl, "GET", `/v1/audit/verify?from=${anchors[0] + 1}`, { token: s.token });
      expect(notAnchor.status).toBe(409);
      expect(notAnchor.json).toMatchObject({ error: "conflict", from: anchors[0] + 1, possible: ["genesis", ...anchors] });
      expect(notAnchor.json).not.toHaveProperty("ok");
      for (const bad of ["0", "-1", "1.5", "x", "01"]) {
        expect({ bad, status: (await http(s.baseUrl, "GET", `/v1/audit/verify?from=${bad}`, { token: s.token })).status }).toEqual({ bad, status: 400 });
      }
      await s.stop();
    });
  }, 120_000);

  test("RESONETICS_PUBLIC_AUDIT takes 1/true/yes or 0/false/no; anything else is a usage error (exit 2), not an open audit", async () => {
    const d = makeTempDir();
    await expect(startServer(d, { env: { RESONETICS_PUBLIC_AUDIT: "maybe" } })).rejects.toThrow(/exited \(code 2,.*RESONETICS_PUBLIC_AUDIT must be/s);
  });

  test("cluster init writes one audit token per cluster, 0600 on every node, not the admin token", async () => {
    const root = makeTempDir();
    const r = await runCli(["cluster", "init", "--dir", root, "--nodes", "3", "--base-port", "47101"]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const tokens = ["n1", "n2", "n3"].map((n) => {
      const f = path.join(root, n, "audit.token");
      expect(mode(f)).toBe(0o600);
      return fs.readFileSync(f, "utf8").trim();
    });
    expect(new Set(tokens).size).toBe(1);
    expect(tokens[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(tokens[0]).not.toBe(fs.readFileSync(path.join(root, "n1", "admin.token"), "utf8").trim());
  });
});

describe("in process", () => {
  test("the step function gives the offline verifier's report, one step per entry at least", guarded(async () => {
    const store = new Store(path.join(dir, "ledger.db"), { readonly: true });
    try {
      store.db.exec("BEGIN");
      const whole = verifyChain(store);
      const steps = verifyChainSteps(store);
      let count = 0;
      let r = steps.next();
      // Bounded: a few steps per entry and per state row; far more means the steps never end.
      const countMax = 10 * (whole.size + RECORDS);
      while (r.done !== true && count < countMax) {
        count++;
        r = steps.next();
      }
      expect(r.done).toBe(true);
      expect(r.value).toEqual(whole);
      expect(whole.ok).toBe(true);
      expect(count).toBeGreaterThanOrEqual(whole.entries);
    } finally {
      if (store.db.inTransaction) store.db.exec("ROLLBACK");
      store.close();
    }
  }));

  test("the runner verifies in a worker thread, not on this one, and reports progress", guarded(async () => {
    // The worker loads its own copy of the verifier: this thread's copy is never called.
    const steps = jest.spyOn(verifyModule, "verifyChainSteps");
    const whole = jest.spyOn(verifyModule, "verifyChain");
    const progress: Array<[number, number]> = [];
    try {
      const handle = auditInWorker(path.join(dir, "ledger.db"), { from: "genesis" }, (done, total) => progress.push([done, total]), () => undefined);
      const result = await handle.result;
      const store = new Store(path.join(dir, "ledger.db"), { readonly: true });
      const size = store.lastIndex();
      store.close();
      expect(result.report).toMatchObject({ ok: true, size, entries: size });
      expect(result.stateRootLive).toMatch(/^[0-9a-f]{64}$/);
      expect(steps).not.toHaveBeenCalled();
      expect(whole).not.toHaveBeenCalled();
      // Progress, when any arrived, counts up to the size and never past it.
      for (const [done, total] of progress) expect(done).toBeLessThanOrEqual(total);
    } finally {
      steps.mockRestore();
      whole.mockRestore();
    }
  }));

  test("a cancelled audit rejects with the reason at once, and the runner is free again", guarded(async () => {
    const runner = new AuditRunner({
      start: (job, onProgress, onNote) => auditInWorker(path.join(dir, "ledger.db"), job, onProgress, onNote), adminToken: "a".repeat(64), auditToken: "b".repeat(64), publicAudit: false,
      logger: pino({ level: "silent" }),
    });
    const running = runner.run("genesis", undefined, (stop) => stop());
    await expect(running).rejects.toMatchObject({ code: "unavailable", message: expect.stringMatching(/abandoned/) });
    expect(runner.busy()).toBe(false);
    // Too long: the time bound cancels it the same way.
    const slow = new AuditRunner({
      start: (job, onProgress, onNote) => auditInWorker(path.join(dir, "ledger.db"), job, onProgress, onNote), adminToken: "a".repeat(64), auditToken: "b".repeat(64), publicAudit: false,
      logger: pino({ level: "silent" }), timeMaxMs: 0,
    });
    await expect(slow.run("genesis", undefined)).rejects.toEqual(expect.any(LedgerError));
    await expect(slow.run("genesis", undefined)).rejects.toMatchObject({ code: "unavailable", message: expect.stringMatching(/longer than 0 ms/) });
    expect(slow.busy()).toBe(false);
  }));

  test("the runner refuses a second audit while one runs (429) and frees itself after an error", guarded(async () => {
    const runner = new AuditRunner({
      start: (job, onProgress, onNote) => auditInWorker(path.join(dir, "ledger.db"), job, onProgress, onNote), adminToken: "a".repeat(64), auditToken: "b".repeat(64), publicAudit: false,
      logger: pino({ level: "silent" }),
    });
    const first = runner.run("genesis", undefined);
    expect(runner.busy()).toBe(true);
    await expect(runner.run("genesis", 5)).rejects.toMatchObject({ code: "too_many_requests" });
    const report = await first;
    expect(report.report.ok).toBe(true);
    expect(runner.busy()).toBe(false);
    await expect(runner.run("snapshot", undefined)).rejects.toMatchObject({ code: "conflict" });
    expect(runner.busy()).toBe(false);
    expect((await runner.run("genesis", 3)).report).toMatchObject({ ok: true, size: 3 });
  }));
});
