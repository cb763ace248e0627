// Issue 8, "promised and never exercised": the flags of `resonetics serve` and the environment
// variable each one reads (README "Configuration", DESIGN.md "Command line"), against real processes:
// - `npm start` = serve with the defaults (./data, 127.0.0.1, 8080);
// - each variable takes effect, and the flag wins over it (--data-dir, --host, --port, --body-limit,
//   --checkpoint-every, --checkpoint-interval-ms, --snapshot-every, --tick-ms, --write-timeout-ms,
//   --peers, --log-level, --public-audit, --cors-origin);
// - --body-limit: one byte over is 413 payload_too_large, exactly at it is accepted, with and
//   without Content-Length;
// - a 503 carries Retry-After (no leader; a leader without a quorum, after --write-timeout-ms);
// - an invalid value, as a flag or as a variable, exits 2 naming it, before anything is written.
// Observations are of outcomes (which node leads, what a request answers, what the listening line
// says), never of how long something took.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http1 from "node:http";
import * as net from "node:net";
import * as path from "node:path";
import * as readline from "node:readline";
import { isAppendAck, postRecord } from "../support/ledger-client";
import { HttpResult, REPO_ROOT, Server, cleanupAll, getJson, http, makeTempDir, mapPool, pollUntil, runCli, startServer, withFailureContext } from "../support/server";
import { freePortRange } from "../support/cluster";

const BIN = path.join(REPO_ROOT, "bin", "resonetics");
/** A process of this file that does not exit by itself within this is a failure (and is killed). */
const PROCESS_TIMEOUT_MS = 30_000;
/** Output lines kept per process (a chatty debug log must not grow test memory). */
const LINES_MAX = 2000;
/** Invalid-value processes run at once: two cores, shared with the team. */
const INVALID_CONCURRENCY = 2;

// ---------------------------------------------------------------- processes with their own env and cwd

interface Proc {
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly stdout: string[];
  readonly stderr: string[];
  /** The pino records on stdout so far. */
  records(): Record<string, unknown>[];
  text(): string;
}

const procs = new Set<ChildProcess>();

/** The environment without any RESONETICS_* variable of the test run itself, plus `env`. */
function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("RESONETICS_")) base[k] = v;
  return { ...base, ...env };
}

/** `bin/resonetics args...` with exactly these RESONETICS_* variables, in cwd (the repo by default). */
function spawnBin(args: readonly string[], env: Record<string, string> = {}, cwd = REPO_ROOT): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  procs.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  const keep = (list: string[]) => (l: string): void => {
    if (list.length < LINES_MAX) list.push(l);
  };
  const outDone = new Promise<void>((r) => readline.createInterface({ input: child.stdout! }).on("line", keep(stdout)).once("close", () => r()));
  const errDone = new Promise<void>((r) => readline.createInterface({ input: child.stderr! }).on("line", keep(stderr)).once("close", () => r()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      procs.delete(child);
      // Every line written is read before the exit is reported.
      void Promise.all([outDone, errDone]).then(() => resolve({ code, signal }));
    });
  });
  const records = (): Record<string, unknown>[] => stdout.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    pid: child.pid ?? -1, exited, stdout, stderr, records,
    text: () => `$ ${BIN} ${args.join(" ")} (cwd ${cwd}, env ${JSON.stringify(env)})\n--- stdout ---\n${stdout.slice(-40).join("\n")}\n--- stderr ---\n${stderr.slice(-40).join("\n")}`,
  };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for the process's "listening" record (or its exit, a failure). */
async function listening(p: Proc): Promise<Record<string, unknown>> {
  const rec = await pollUntil("the listening log line", async () => p.records().find((r) => r.msg === "listening"), 600, 50)
    .catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n${p.text()}`);
    });
  return rec;
}

/** SIGTERM and the exit status; a process still running after PROCESS_TIMEOUT_MS fails the test. */
async function terminate(p: Proc): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  process.kill(p.pid, "SIGTERM");
  return within(p.exited, PROCESS_TIMEOUT_MS, `pid ${p.pid} after SIGTERM`);
}

afterAll(async () => {
  const gone = [...procs].map((c) => new Promise<void>((r) => {
    if (c.exitCode !== null || c.signalCode !== null) r();
    else {
      c.once("exit", () => r());
      c.kill("SIGKILL");
    }
  }));
  await within(Promise.all(gone), PROCESS_TIMEOUT_MS, "children of this file after SIGKILL");
  await cleanupAll();
}, 60_000);

let lastOutput = "";
const guarded = (name: string, fn: () => Promise<void>) => (): Promise<void> =>
  withFailureContext(() => `npx jest test/e2e/cli-flags.test.ts -t ${JSON.stringify(name)}\n${lastOutput}`, [], fn);

const record = (i: number) => ({ type: "policy.set", subject: `flags-${i % 4}`, data: { name: `n${i}`, value: i } });

async function append(s: { baseUrl: string; token: string }, i: number): Promise<number> {
  const r = await postRecord(s.baseUrl, s.token, record(i));
  if (r.status !== 201 || !isAppendAck(r.json)) throw new Error(`append ${i} → ${r.status} ${r.text}`);
  return r.json.index;
}

async function started(dir: string, env: Record<string, string>, extraArgs: string[] = []): Promise<Server> {
  const s = await startServer(dir, { env, extraArgs });
  lastOutput = s.output();
  return s;
}

// ---------------------------------------------------------------- npm start's defaults

describe("npm start = serve with the defaults: ./data, 127.0.0.1, 8080", () => {
  test("the start script is `serve` with no flag", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe("node bin/resonetics serve");
  });

  test("no flag: the data dir is ./data of the working directory and the host 127.0.0.1, both from the defaults", guarded("defaults data dir", async () => {
    const cwd = makeTempDir();
    // Port 0 from the environment only because 8080 may be taken on this machine (the next test checks 8080).
    const p = spawnBin(["serve"], { RESONETICS_PORT: "0" }, cwd);
    const rec = await listening(p);
    lastOutput = p.text();
    expect(rec).toMatchObject({ host: "127.0.0.1", host_from: "default", port_from: "flag", data_dir: path.join(fs.realpathSync(cwd), "data") });
    for (const f of ["ledger.db", "node.key", "admin.token", "audit.token"]) expect(fs.existsSync(path.join(cwd, "data", f))).toBe(true);
    const health = await http(`http://127.0.0.1:${Number(rec.port)}`, "GET", "/health");
    expect(health.status).toBe(200);
    expect(await terminate(p)).toEqual({ code: 0, signal: null });
  }), 60_000);

  test("no flag and no variable: the port is 8080 on 127.0.0.1 (held here, so the start is refused naming 127.0.0.1:8080 and writes nothing)", guarded("defaults port", async () => {
    const cwd = makeTempDir();
    // Hold 127.0.0.1:8080 for the length of the test; if another process already holds it, it is just as busy.
    const holder = net.createServer();
    const held = await new Promise<boolean>((resolve, reject) => {
      holder.once("error", (e: NodeJS.ErrnoException) => (e.code === "EADDRINUSE" ? resolve(false) : reject(e)));
      holder.listen({ host: "127.0.0.1", port: 8080, exclusive: true }, () => resolve(true));
    });
    try {
      const p = spawnBin(["serve"], {}, cwd);
      const st = await within(p.exited, PROCESS_TIMEOUT_MS, "serve on a busy 8080");
      lastOutput = p.text();
      expect(st.code).toBe(2);
      expect(p.stderr.join("\n")).toContain("127.0.0.1:8080");
      expect(fs.existsSync(path.join(cwd, "data", "ledger.db"))).toBe(false);
    } finally {
      if (held) await new Promise<void>((r) => holder.close(() => r()));
    }
  }), 60_000);
});

// ---------------------------------------------------------------- --data-dir, --host, --port

describe("--data-dir, --host, --port and their variables", () => {
  test("RESONETICS_DATA_DIR/HOST/PORT take effect; --data-dir and --port win over them", guarded("data dir host port", async () => {
    const root = makeTempDir();
    const p1 = await freePortRange(2);
    const p2 = p1 + 1;
    const d1 = path.join(root, "from-env");
    const d2 = path.join(root, "from-flag");
    const env = { RESONETICS_DATA_DIR: d1, RESONETICS_HOST: "127.0.0.1", RESONETICS_PORT: String(p1) };

    const a = spawnBin(["serve"], env);
    const ra = await listening(a);
    lastOutput = a.text();
    expect(ra).toMatchObject({ data_dir: d1, host: "127.0.0.1", host_from: "flag", port: p1, port_from: "flag" });
    expect((await http(`http://127.0.0.1:${p1}`, "GET", "/health")).status).toBe(200);
    expect(await terminate(a)).toEqual({ code: 0, signal: null });

    const b = spawnBin(["serve", "--data-dir", d2, "--port", String(p2)], env);
    const rb = await listening(b);
    lastOutput = b.text();
    expect(rb).toMatchObject({ data_dir: d2, port: p2 });
    expect(fs.existsSync(path.join(d2, "ledger.db"))).toBe(true);
    expect(await terminate(b)).toEqual({ code: 0, signal: null });
  }), 60_000);
});

// ---------------------------------------------------------------- --body-limit

/** A policy.set body of exactly n bytes (ASCII: bytes = characters). */
function bodyOfSize(n: number): Buffer {
  const base = { type: "policy.set", subject: "limit", data: { name: "n", value: "" } };
  const pad = n - Buffer.byteLength(JSON.stringify(base));
  if (pad < 0) throw new Error(`no body of ${n} bytes`);
  const b = Buffer.from(JSON.stringify({ ...base, data: { name: "n", value: "a".repeat(pad) } }));
  if (b.length !== n) throw new Error(`built ${b.length} bytes, wanted ${n}`);
  return b;
}

/** POST /v1/records with Transfer-Encoding: chunked (no Content-Length: the limit is enforced while reading). */
function postChunked(baseUrl: string, token: string, body: Buffer): Promise<{ status: number; json: unknown }> {
  const u = new URL(`${baseUrl}/v1/records`);
  return new Promise((resolve, reject) => {
    const req = http1.request({
      host: u.hostname, port: Number(u.port), path: u.pathname, method: "POST", timeout: 30_000,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "transfer-encoding": "chunked" },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch (e) {
          if (!(e instanceof SyntaxError)) throw e;
          json = text; // shown as text in the failure
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("chunked POST timed out")));
    const half = Math.floor(body.length / 2);
    req.write(body.subarray(0, half));
    req.end(body.subarray(half));
  });
}

describe("--body-limit / RESONETICS_BODY_LIMIT", () => {
  const rows: { name: string; env: Record<string, string>; args: string[]; limit: number }[] = [
    { name: "--body-limit 2048", env: {}, args: ["--body-limit", "2048"], limit: 2048 },
    { name: "RESONETICS_BODY_LIMIT=3000", env: { RESONETICS_BODY_LIMIT: "3000" }, args: [], limit: 3000 },
    { name: "RESONETICS_BODY_LIMIT=1024 with --body-limit 4096 (the flag wins)", env: { RESONETICS_BODY_LIMIT: "1024" }, args: ["--body-limit", "4096"], limit: 4096 },
    { name: "the default, 65536", env: {}, args: [], limit: 65536 },
  ];
  test.each(rows)("$name: limit+1 bytes → 413 payload_too_large, exactly limit bytes → 201, with and without Content-Length", ({ name, env, args, limit }) =>
    guarded(name, async () => {
      const s = await started(makeTempDir(), env, args);
      const over = await http(s.baseUrl, "POST", "/v1/records", { token: s.token, body: bodyOfSize(limit + 1), headers: { "content-type": "application/json" } });
      const at = await http(s.baseUrl, "POST", "/v1/records", { token: s.token, body: bodyOfSize(limit), headers: { "content-type": "application/json" } });
      const overChunked = await postChunked(s.baseUrl, s.token, bodyOfSize(limit + 1));
      const atChunked = await postChunked(s.baseUrl, s.token, bodyOfSize(limit));
      lastOutput = s.output();
      expect({
        over: [over.status, (over.json as { error?: string } | undefined)?.error],
        at: at.status,
        overChunked: [overChunked.status, (overChunked.json as { error?: string }).error],
        atChunked: atChunked.status,
      }).toEqual({ over: [413, "payload_too_large"], at: 201, overChunked: [413, "payload_too_large"], atChunked: 201 });
      expect((await s.stop()).code).toBe(0);
    })(), 60_000);
});

// ---------------------------------------------------------------- checkpoints and snapshots

/** Polls GET /v1/checkpoints/latest until a checkpoint covers index `size`; its size. */
async function checkpointSigned(s: Server, size: number): Promise<number> {
  return pollUntil(`a signed checkpoint covering ${size}`, async () => {
    const r = await http(s.baseUrl, "GET", "/v1/checkpoints/latest");
    const got = r.status === 200 ? (r.json as { size: number }).size : 0;
    return got >= size ? got : undefined;
  }, 200, 50);
}

/** Waits for the node's "snapshot taken" log line (info; the default level). */
async function snapshotTaken(s: Server): Promise<true> {
  return pollUntil("a \"snapshot taken\" log line", async () => (/"msg":"snapshot taken/.test(s.output()) ? true : undefined), 200, 50);
}

describe("--checkpoint-every, --checkpoint-interval-ms, --snapshot-every and their variables", () => {
  // With an hour between timed checkpoints, a checkpoint after 6 records comes from the entry count alone.
  const HOUR = "3600000";
  const rows: { name: string; env: Record<string, string>; args: string[]; records: number; expect: "checkpoint" | "snapshot" }[] = [
    { name: "RESONETICS_CHECKPOINT_EVERY=3 signs after 3 entries", env: { RESONETICS_CHECKPOINT_EVERY: "3" }, args: ["--checkpoint-interval-ms", HOUR], records: 6, expect: "checkpoint" },
    { name: "--checkpoint-every 3 wins over RESONETICS_CHECKPOINT_EVERY=1000000", env: { RESONETICS_CHECKPOINT_EVERY: "1000000" }, args: ["--checkpoint-every", "3", "--checkpoint-interval-ms", HOUR], records: 6, expect: "checkpoint" },
    { name: "--checkpoint-interval-ms 50 wins over RESONETICS_CHECKPOINT_INTERVAL_MS=3600000", env: { RESONETICS_CHECKPOINT_INTERVAL_MS: HOUR }, args: ["--checkpoint-every", "1000000", "--checkpoint-interval-ms", "50"], records: 1, expect: "checkpoint" },
    { name: "RESONETICS_SNAPSHOT_EVERY=5 takes a snapshot", env: { RESONETICS_SNAPSHOT_EVERY: "5" }, args: [], records: 10, expect: "snapshot" },
    { name: "--snapshot-every 5 wins over RESONETICS_SNAPSHOT_EVERY=0 (never)", env: { RESONETICS_SNAPSHOT_EVERY: "0" }, args: ["--snapshot-every", "5"], records: 10, expect: "snapshot" },
  ];
  test.each(rows)("$name", ({ name, env, args, records, expect: what }) =>
    guarded(name, async () => {
      const s = await started(makeTempDir(), env, args);
      let last = 0;
      for (let i = 0; i < records; i++) last = await append(s, i);
      // Count rows: any checkpoint (an hour between timed ones; 3 entries, not the default 1000, make one).
      // The timed row: one covering the record (the timed checkpoint right after the NOOP does not count).
      const covering = env.RESONETICS_CHECKPOINT_INTERVAL_MS === undefined ? 3 : last;
      if (what === "checkpoint") expect(await checkpointSigned(s, covering)).toBeGreaterThanOrEqual(covering);
      else expect(await snapshotTaken(s)).toBe(true);
      lastOutput = s.output();
      expect((await s.stop()).code).toBe(0);
      // And the data dir holds it: verify-chain can start from it (exit 2 "holds no snapshot" otherwise).
      if (what === "snapshot") expect((await runCli(["verify-chain", s.dir, "--from", "snapshot"], 60_000)).code).toBe(0);
    })(), 60_000);
});

// ---------------------------------------------------------------- --public-audit, --cors-origin

describe("--public-audit and --cors-origin and their variables", () => {
  test("--public-audit wins over RESONETICS_PUBLIC_AUDIT=0: the audit answers without a token", guarded("public audit", async () => {
    const s = await started(makeTempDir(), { RESONETICS_PUBLIC_AUDIT: "0" }, ["--public-audit"]);
    const r = await http(s.baseUrl, "GET", "/v1/audit/verify?to=2", { timeoutMs: 60_000 });
    lastOutput = s.output();
    expect({ status: r.status, ok: (r.json as { ok?: boolean } | undefined)?.ok }).toEqual({ status: 200, ok: true });
    expect((await s.stop()).code).toBe(0);
  }), 60_000);

  test("RESONETICS_CORS_ORIGIN takes effect, and --cors-origin wins over it", guarded("cors", async () => {
    const a = await started(makeTempDir(), { RESONETICS_CORS_ORIGIN: "https://env.example" });
    const ra = await http(a.baseUrl, "GET", "/v1/status", { headers: { origin: "https://env.example" } });
    expect(ra.headers.get("access-control-allow-origin")).toBe("https://env.example");
    expect((await a.stop()).code).toBe(0);
    const b = await started(makeTempDir(), { RESONETICS_CORS_ORIGIN: "https://env.example" }, ["--cors-origin", "https://flag.example"]);
    const rb = await http(b.baseUrl, "GET", "/v1/status", { headers: { origin: "https://flag.example" } });
    const rbEnv = await http(b.baseUrl, "GET", "/v1/status", { headers: { origin: "https://env.example" } });
    expect([rb.headers.get("access-control-allow-origin"), rbEnv.headers.get("access-control-allow-origin")]).toEqual(["https://flag.example", null]);
    expect((await b.stop()).code).toBe(0);
  }), 60_000);
});

// ---------------------------------------------------------------- --log-level

describe("--log-level / RESONETICS_LOG_LEVEL", () => {
  test("RESONETICS_LOG_LEVEL=warn: the node serves and writes no info line (no listening, no request log, no shutting down)", guarded("log warn", async () => {
    const dir = makeTempDir();
    const port = await freePortRange(1);
    const p = spawnBin(["serve", "--data-dir", dir, "--host", "127.0.0.1", "--port", String(port)], { RESONETICS_LOG_LEVEL: "warn" });
    const base = `http://127.0.0.1:${port}`;
    // No listening line to wait for: the node is up when it answers.
    await pollUntil("the node answers /health", async () => (await http(base, "GET", "/health").catch(() => undefined))?.status === 200 ? true : undefined, 600, 50);
    const token = fs.readFileSync(path.join(dir, "admin.token"), "utf8").trim();
    await append({ baseUrl: base, token }, 1);
    expect(await terminate(p)).toEqual({ code: 0, signal: null });
    lastOutput = p.text();
    const below = p.records().filter((r) => typeof r.level !== "number" || r.level < 40);
    expect(below).toEqual([]);
  }), 60_000);

  test("RESONETICS_LOG_LEVEL=error with --log-level info: the flag wins (listening and request lines are written)", guarded("log info over env", async () => {
    const s = await started(makeTempDir(), { RESONETICS_LOG_LEVEL: "error" }, ["--log-level", "info"]);
    await append(s, 1);
    const stopped = await s.stop();
    lastOutput = s.output();
    expect(stopped.code).toBe(0);
    expect(s.output()).toContain('"msg":"request completed"');
    expect(s.output()).toContain('"msg":"shutting down"');
  }), 60_000);

  test("the access log is buffered, not held: a request's line reaches stdout while the node runs, and the lines still buffered at SIGTERM before it exits, each whole", guarded("access log flush", async () => {
    const s = await started(makeTempDir(), {});
    const requestLines = (): Array<Record<string, unknown>> =>
      s.output().split("\n").filter((l) => l.includes('"request completed"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    // One line is far below the buffer's write size: only the periodic flush (250 ms) writes it.
    expect((await http(s.baseUrl, "GET", "/v1/status")).status).toBe(200);
    await pollUntil("the /v1/status line while the node runs", async () => requestLines().find((l) => (l.req as { url: string }).url === "/v1/status"), 100, 50);
    // Asked right before SIGTERM: buffered at exit, written by the exit flush.
    expect((await http(s.baseUrl, "GET", "/v1/no-such-route")).status).toBe(404);
    expect((await s.stop()).code).toBe(0);
    lastOutput = s.output();
    expect(requestLines().map((l) => [(l.req as { url: string }).url, (l.res as { status: number }).status, l.node_id !== undefined])).toEqual([
      ["/v1/status", 200, true], ["/v1/no-such-route", 404, true],
    ]);
    // Every line of stdout is one JSON object: the two streams never cut into each other's lines.
    for (const l of s.output().split("\n").filter((x) => x.startsWith("{"))) expect(() => JSON.parse(l)).not.toThrow();
  }), 60_000);

  test("--log-level debug wins over RESONETICS_LOG_LEVEL=info: debug lines are written (a node whose peers are down)", guarded("log debug", async () => {
    const root = makeTempDir();
    const basePort = await freePortRange(3);
    const init = await runCli(["cluster", "init", "--dir", root, "--nodes", "3", "--base-port", String(basePort)], 60_000);
    expect(init.code).toBe(0);
    // n1 alone: its dials to n2 and n3 are refused, and each refusal is a debug line.
    const s = await started(path.join(root, "n1"), { RESONETICS_LOG_LEVEL: "info" }, ["--port", String(basePort), "--log-level", "debug"]);
    await pollUntil("a debug line (level 20)", async () => (s.output().includes('"level":20') ? true : undefined), 200, 50);
    lastOutput = s.output();
    expect((await s.stop()).code).toBe(0);
  }), 60_000);
});

// ---------------------------------------------------------------- --tick-ms, --peers, --write-timeout-ms, Retry-After (clusters)

interface Node3 {
  root: string;
  basePort: number;
  token: string;
  servers: Map<string, Server>;
}

async function initCluster3(): Promise<Node3> {
  const root = makeTempDir();
  const basePort = await freePortRange(3);
  const init = await runCli(["cluster", "init", "--dir", root, "--nodes", "3", "--base-port", String(basePort)], 60_000);
  if (init.code !== 0) throw new Error(`cluster init → ${init.code}: ${init.stderr}`);
  return { root, basePort, token: fs.readFileSync(path.join(root, "n1", "admin.token"), "utf8").trim(), servers: new Map() };
}

async function startNode(c: Node3, id: string, env: Record<string, string>, args: string[] = []): Promise<Server> {
  const port = c.basePort + Number(id.slice(1)) - 1;
  const s = await startServer(path.join(c.root, id), { env, extraArgs: ["--port", String(port), ...args] });
  c.servers.set(id, s);
  return s;
}

const outputs = (c: Node3): string => [...c.servers].map(([id, s]) => `=== ${id}\n${s.output()}`).join("\n");

/** Waits until every started node names the same leader, which says it leads; that leader's id. */
async function agreedLeader(c: Node3): Promise<string> {
  return pollUntil("a leader every started node names", async () => {
    type St = { node_id: string; role: string; leader: string | null };
    const answers = await Promise.all([...c.servers.values()].map((s) => getJson<St>(s.baseUrl, "/v1/status").catch(() => null)));
    const st = answers.filter((x): x is St => x !== null);
    if (st.length !== answers.length) return undefined; // a node not answering yet
    const lead = st.find((x) => x.role === "leader");
    return lead !== undefined && st.every((x) => x.leader === lead.node_id) ? lead.node_id : undefined;
  }, 600, 50);
}

describe("--tick-ms / RESONETICS_TICK_MS (who leads a 3-node cluster with 2 nodes up)", () => {
  // Election timeouts are 10-20 ticks: at 10000 ms a tick a node does not campaign for 100 s, so the
  // leader is the other node: the test observes who leads, not how fast.
  test("RESONETICS_TICK_MS=10000 takes effect: n1 (env) never campaigns, n2 (--tick-ms 200) leads", guarded("tick env", async () => {
    const c = await initCluster3();
    await startNode(c, "n1", { RESONETICS_TICK_MS: "10000" });
    await startNode(c, "n2", {}, ["--tick-ms", "200"]);
    // If the variable were ignored, n1 would tick every 50 ms and win (0.5-1 s against n2's 2-4 s).
    const leader = await agreedLeader(c).finally(() => { lastOutput = outputs(c); });
    expect(leader).toBe("n2");
    for (const s of c.servers.values()) expect((await s.stop()).code).toBe(0);
  }), 90_000);

  test("--tick-ms 5 wins over RESONETICS_TICK_MS=10000: n1 (flag) leads, n2 (env only) follows", guarded("tick flag over env", async () => {
    const c = await initCluster3();
    await startNode(c, "n2", { RESONETICS_TICK_MS: "10000" });
    await startNode(c, "n1", { RESONETICS_TICK_MS: "10000" }, ["--tick-ms", "5"]);
    // If the variable won, neither node would campaign for 100 s: no leader within the poll.
    const leader = await agreedLeader(c).finally(() => { lastOutput = outputs(c); });
    expect(leader).toBe("n1");
    for (const s of c.servers.values()) expect((await s.stop()).code).toBe(0);
  }), 90_000);
});

describe("--peers / RESONETICS_PEERS: where a node dials its peers", () => {
  /** A listener that counts connections (a stand-in for n2 at an overridden address). */
  async function counter(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
    let n = 0;
    const sockets = new Set<net.Socket>();
    const srv = net.createServer((sock) => {
      n++;
      sockets.add(sock);
      sock.on("error", () => sock.destroy()); // the node hangs up on a peer that never answers the upgrade
      sock.on("close", () => sockets.delete(sock));
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const a = srv.address();
    return {
      port: typeof a === "object" && a !== null ? a.port : 0,
      connections: () => n,
      close: () => new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
    };
  }

  test("RESONETICS_PEERS takes effect, and --peers wins over it", guarded("peers", async () => {
    const c = await initCluster3();
    const viaEnv = await counter();
    const viaFlag = await counter();
    try {
      const a = await startNode(c, "n1", { RESONETICS_PEERS: `n2=127.0.0.1:${viaEnv.port}` });
      await pollUntil("n1 dials n2 at the RESONETICS_PEERS address", async () => (viaEnv.connections() > 0 ? true : undefined), 200, 50);
      expect((await a.stop()).code).toBe(0);
      c.servers.delete("n1");
      const b = await startNode(c, "n1", { RESONETICS_PEERS: `n2=127.0.0.1:${viaEnv.port}` }, ["--peers", `n2=127.0.0.1:${viaFlag.port}`]);
      await pollUntil("n1 dials n2 at the --peers address", async () => (viaFlag.connections() > 0 ? true : undefined), 200, 50);
      lastOutput = outputs(c);
      expect((await b.stop()).code).toBe(0);
    } finally {
      await viaEnv.close();
      await viaFlag.close();
    }
  }), 90_000);
});

describe("a 503 carries Retry-After; --write-timeout-ms / RESONETICS_WRITE_TIMEOUT_MS", () => {
  const expectRetryAfter = (r: HttpResult, message: RegExp): void => {
    expect({ status: r.status, error: (r.json as { error?: string } | undefined)?.error, message: (r.json as { message?: string } | undefined)?.message })
      .toEqual({ status: 503, error: "unavailable", message: expect.stringMatching(message) });
    expect(r.headers.get("retry-after")).toMatch(/^[1-9][0-9]*$/);
  };

  test("no leader (1 node of 3 up): a write, a linearizable read and /ready answer 503, each with Retry-After ≥ 1", guarded("503 no leader", async () => {
    const c = await initCluster3();
    const s = await startNode(c, "n1", {});
    const w = await postRecord(s.baseUrl, c.token, record(1));
    const rd = await http(s.baseUrl, "GET", "/v1/records/1");
    const ready = await http(s.baseUrl, "GET", "/ready");
    lastOutput = outputs(c);
    expectRetryAfter(w, /leader/);
    expectRetryAfter(rd, /leader|lead/);
    expect(ready.status).toBe(503);
    expect((await s.stop()).code).toBe(0);
  }), 60_000);

  // n1 leads (n2, n3 tick every 10 s and never campaign); then n2 and n3 are killed and n1, still
  // leader until its CheckQuorum (10-20 ticks of 300 ms), cannot commit: the write answers 503 after
  // the write timeout, which the message names.
  const rows: { name: string; env: Record<string, string>; args: string[]; timeoutMs: number }[] = [
    { name: "RESONETICS_WRITE_TIMEOUT_MS=70", env: { RESONETICS_WRITE_TIMEOUT_MS: "70" }, args: [], timeoutMs: 70 },
    { name: "--write-timeout-ms 60 wins over RESONETICS_WRITE_TIMEOUT_MS=600000", env: { RESONETICS_WRITE_TIMEOUT_MS: "600000" }, args: ["--write-timeout-ms", "60"], timeoutMs: 60 },
  ];
  test.each(rows)("$name: a leader without a quorum answers 503 'not committed within <timeout> ms' with Retry-After", ({ name, env, args, timeoutMs }) =>
    guarded(name, async () => {
      const c = await initCluster3();
      const slow = { RESONETICS_TICK_MS: "10000" };
      await startNode(c, "n2", slow);
      await startNode(c, "n3", slow);
      const n1 = await startNode(c, "n1", env, ["--tick-ms", "300", ...args]);
      expect(await agreedLeader(c).finally(() => { lastOutput = outputs(c); })).toBe("n1");
      // Its NOOP applied: until then a write is refused ("new leader is applying earlier entries").
      await pollUntil("n1 ready", async () => ((await http(n1.baseUrl, "GET", "/ready")).status === 200 ? true : undefined), 200, 50);
      await append({ baseUrl: n1.baseUrl, token: c.token }, 1);
      await c.servers.get("n2")!.kill9();
      await c.servers.get("n3")!.kill9();
      const r = await postRecord(n1.baseUrl, c.token, record(2), `wt-${timeoutMs}`);
      lastOutput = outputs(c);
      expectRetryAfter(r, new RegExp(`not committed within ${timeoutMs} ms`));
      expect((await n1.stop()).code).toBe(0);
    })(), 90_000);
});

// ---------------------------------------------------------------- invalid values

describe("an invalid value exits 2 naming the flag or the variable, and writes nothing", () => {
  const cases: { what: string; args?: string[]; env?: Record<string, string>; names: string }[] = [
    { what: "--port abc", args: ["--port", "abc"], names: "--port" },
    { what: "--port 65536", args: ["--port", "65536"], names: "--port" },
    { what: "--tick-ms 0", args: ["--tick-ms", "0"], names: "--tick-ms" },
    { what: "--body-limit -1", args: ["--body-limit", "-1"], names: "--body-limit" },
    { what: "--body-limit 1023", args: ["--body-limit", "1023"], names: "--body-limit" },
    { what: "--checkpoint-every 0", args: ["--checkpoint-every", "0"], names: "--checkpoint-every" },
    { what: "--checkpoint-interval-ms 9", args: ["--checkpoint-interval-ms", "9"], names: "--checkpoint-interval-ms" },
    { what: "--snapshot-every x", args: ["--snapshot-every", "x"], names: "--snapshot-every" },
    { what: "--write-timeout-ms 9", args: ["--write-timeout-ms", "9"], names: "--write-timeout-ms" },
    { what: "--peers n2", args: ["--peers", "n2"], names: "--peers" },
    { what: "--cors-origin https://a.example/path", args: ["--cors-origin", "https://a.example/path"], names: "--cors-origin" },
    { what: "--log-level loud", args: ["--log-level", "loud"], names: "--log-level" },
    { what: "--max-pending-writes 0", args: ["--max-pending-writes", "0"], names: "--max-pending-writes" },
    { what: "--max-uncommitted-bytes 10", args: ["--max-uncommitted-bytes", "10"], names: "--max-uncommitted-bytes" },
    { what: "--ready-max-lag -1", args: ["--ready-max-lag", "-1"], names: "--ready-max-lag" },
    { what: "--bogus-flag", args: ["--bogus-flag"], names: "--bogus-flag" },
    { what: "RESONETICS_PORT=abc", env: { RESONETICS_PORT: "abc" }, names: "RESONETICS_PORT" },
    { what: "RESONETICS_TICK_MS=0", env: { RESONETICS_TICK_MS: "0" }, names: "RESONETICS_TICK_MS" },
    { what: "RESONETICS_BODY_LIMIT=-1", env: { RESONETICS_BODY_LIMIT: "-1" }, names: "RESONETICS_BODY_LIMIT" },
    { what: "RESONETICS_CHECKPOINT_EVERY=0", env: { RESONETICS_CHECKPOINT_EVERY: "0" }, names: "RESONETICS_CHECKPOINT_EVERY" },
    { what: "RESONETICS_CHECKPOINT_INTERVAL_MS=soon", env: { RESONETICS_CHECKPOINT_INTERVAL_MS: "soon" }, names: "RESONETICS_CHECKPOINT_INTERVAL_MS" },
    { what: "RESONETICS_SNAPSHOT_EVERY=-5", env: { RESONETICS_SNAPSHOT_EVERY: "-5" }, names: "RESONETICS_SNAPSHOT_EVERY" },
    { what: "RESONETICS_WRITE_TIMEOUT_MS=1", env: { RESONETICS_WRITE_TIMEOUT_MS: "1" }, names: "RESONETICS_WRITE_TIMEOUT_MS" },
    { what: "RESONETICS_PEERS=garbage", env: { RESONETICS_PEERS: "garbage" }, names: "RESONETICS_PEERS" },
    { what: "RESONETICS_CORS_ORIGIN=nope", env: { RESONETICS_CORS_ORIGIN: "nope" }, names: "RESONETICS_CORS_ORIGIN" },
    { what: "RESONETICS_LOG_LEVEL=loud", env: { RESONETICS_LOG_LEVEL: "loud" }, names: "RESONETICS_LOG_LEVEL" },
    { what: "RESONETICS_PUBLIC_AUDIT=maybe", env: { RESONETICS_PUBLIC_AUDIT: "maybe" }, names: "RESONETICS_PUBLIC_AUDIT" },
    { what: "RESONETICS_MAX_PENDING_WRITES=0", env: { RESONETICS_MAX_PENDING_WRITES: "0" }, names: "RESONETICS_MAX_PENDING_WRITES" },
    { what: "RESONETICS_MAX_UNCOMMITTED_BYTES=1", env: { RESONETICS_MAX_UNCOMMITTED_BYTES: "1" }, names: "RESONETICS_MAX_UNCOMMITTED_BYTES" },
    { what: "RESONETICS_READY_MAX_LAG=x", env: { RESONETICS_READY_MAX_LAG: "x" }, names: "RESONETICS_READY_MAX_LAG" },
  ];

  test(`${cases.length} invalid values, each: exit 2, the name on stderr, no listening line, no data dir`, guarded("invalid values", async () => {
    const root = makeTempDir();
    const results = await mapPool(cases, INVALID_CONCURRENCY, async (c, i) => {
      const dir = path.join(root, `d${i}`);
      const p = spawnBin(["serve", "--data-dir", dir, "--host", "127.0.0.1", ...(c.args ?? [])], { RESONETICS_PORT: "0", ...(c.env ?? {}) });
      // A value that is not refused starts a node: it is killed and reported, not waited for.
      const st = await within(p.exited, PROCESS_TIMEOUT_MS, c.what).catch(async (e: unknown) => {
        process.kill(p.pid, "SIGKILL");
        await within(p.exited, PROCESS_TIMEOUT_MS, `${c.what} after SIGKILL`);
        return { code: `still running: ${(e as Error).message}` };
      });
      const stderr = p.stderr.join("\n");
      return {
        what: c.what,
        code: st.code,
        named: stderr.includes(c.names),
        listened: p.records().some((r) => r.msg === "listening"),
        wrote: fs.existsSync(dir),
        ...(st.code !== 2 || !stderr.includes(c.names) ? { stderr: stderr.slice(0, 300) } : {}),
      };
    });
    const wrong = results.filter((r) => r.code !== 2 || !r.named || r.listened || r.wrote);
    expect(wrong).toEqual([]);
  }), 240_000);
});
