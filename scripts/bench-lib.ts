/**
 * Shared pieces of the benchmarks: a real `resonetics serve` process, a keep-alive HTTP (or HTTPS)
 * load generator with per-request latencies, percentiles, the machine description and a plain table;
 * for the cluster benchmark and `npm run cluster`: owned child processes with bounded output tails
 * and bounded stops, free loopback ports, bounded polling, and the nodes of a `cluster init` dir.
 * Benchmarks print figures; they never pass or fail on them.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { parseArgs } from "node:util";
import { TLS_CA_FILE } from "../src/node/tls";
import { assert } from "../src/util/assert";

export const REPO_ROOT = path.resolve(__dirname, "..");
/** The project's own bin: the compiled dist/ (npm run build), as production runs it. */
const CLI = path.join(REPO_ROOT, "bin", "resonetics");
/**
 * RESONETICS_BENCH_CPU_PROF=<dir>: every server a script starts writes a V8 CPU profile there when it
 * exits (node --cpu-prof; NODE_OPTIONS may not carry it). Open them in Chrome DevTools or
 * speedscope; how the figures were profiled goes in the closing note.
 */
const PROFILE_ARGS: readonly string[] = process.env.RESONETICS_BENCH_CPU_PROF
  ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(process.env.RESONETICS_BENCH_CPU_PROF)}`]
  : [];

export interface ServerProcess {
  readonly port: number;
  readonly child: ChildProcess;
  /** Lines the server wrote on stdout (pino JSON), counted so the pipe is always drained. */
  readonly stdoutLines: () => number;
  /** SIGTERM, then wait for the exit (SIGKILL after timeoutMs). */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; forced: boolean }>;
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** Starts `resonetics serve` on 127.0.0.1 with an OS-chosen port; resolves when it logs "listening". */
export async function startServer(dataDir: string, extraArgs: readonly string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<ServerProcess> {
  const args = [...PROFILE_ARGS, CLI, "serve", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", "0", ...extraArgs];
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let lines = 0;
  const stderrTail: string[] = [];
  readline.createInterface({ input: child.stderr! }).on("line", (l) => {
    stderrTail.push(l);
    if (stderrTail.length > 20) stderrTail.shift();
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => fail(`no "listening" line within ${timeoutMs} ms`), timeoutMs);
    let settled = false;
    function fail(why: string): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`server ${why}\n$ node ${args.join(" ")}\n${stderrTail.join("\n")}`));
    }
    child.once("exit", (code, signal) => fail(`exited (code ${code}, signal ${signal}) before listening`));
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      lines++;
      if (settled || !line.includes('"listening"')) return;
      const rec = JSON.parse(line) as { msg?: unknown; port?: unknown };
      if (rec.msg === "listening" && typeof rec.port === "number") {
        settled = true;
        clearTimeout(timer);
        resolve(rec.port);
      }
    });
  }).catch(async (e: unknown) => {
    child.kill("SIGKILL");
    await waitExit(child, 10_000);
    throw e;
  });
  return {
    port,
    child,
    stdoutLines: () => lines,
    async stop(stopTimeoutMs = 30_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const s = await waitExit(child, stopTimeoutMs);
      if (s !== null) return { ...s, forced: false };
      child.kill("SIGKILL");
      const k = await waitExit(child, 10_000);
      if (k === null) throw new Error(`server pid ${child.pid} survived SIGKILL`);
      return { ...k, forced: true };
    },
  };
}

export interface Answer {
  readonly status: number;
  readonly body: string;
}

/**
 * One request to 127.0.0.1:port and its whole answer: HTTPS trusting `ca` (a cluster's ca.crt) when
 * given, else plain HTTP; through `agent` (keep-alive, its own `ca`) or on a connection of its own (false).
 */
function exchange(
  port: number, ca: Buffer | undefined, agent: http.Agent | false, method: string, urlPath: string,
  headers: Record<string, string>, body: string | undefined, timeoutMs: number,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const h: Record<string, string | number> = { ...headers };
    if (body !== undefined) {
      h["content-type"] = "application/json";
      h["content-length"] = Buffer.byteLength(body);
    }
    const options: http.RequestOptions = { host: "127.0.0.1", port, method, path: urlPath, agent, headers: h, timeout: timeoutMs };
    const onAnswer = (res: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    };
    // An agent carries its own ca (and a per-request ca would only lengthen its connection-pool key).
    const req = ca === undefined ? http.request(options, onAnswer) : https.request(agent === false ? { ...options, ca } : options, onAnswer);
    req.on("timeout", () => req.destroy(new Error(`${method} :${port}${urlPath} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** A keep-alive HTTP (or HTTPS) client for one server: at most maxSockets connections, reused. */
export class Client {
  private readonly agent: http.Agent;
  /**
   * token null: no Authorization header (e.g. for etcd's gateway). ca: speak HTTPS and trust it (the
   * cluster's ca.crt); absent: plain HTTP. The same class either way, so both are measured alike.
   */
  constructor(private readonly port: number, private readonly token: string | null, maxSockets: number, private readonly ca?: Buffer) {
    const pool = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets };
    this.agent = ca === undefined ? new http.Agent(pool) : new https.Agent({ ...pool, ca });
  }

  request(method: string, urlPath: string, body?: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<Answer> {
    const h = this.token === null ? headers : { ...headers, authorization: `Bearer ${this.token}` };
    return exchange(this.port, this.ca, this.agent, method, urlPath, h, body, timeoutMs);
  }

  close(): void {
    this.agent.destroy();
  }
}

export interface LoadResult {
  readonly requests: number;
  readonly clients: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly errors: number;
  readonly firstError?: string;
  /** Answers by HTTP status; "error" counts requests that got no answer (timeout, reset). */
  readonly statuses: Readonly<Record<string, number>>;
  /** True when the deadline stopped the run before `requests` were sent (requests = those done). */
  readonly cutShort: boolean;
  /** The requests answered with an ok status, per second of the run, and their own latencies. */
  readonly ok: number;
  readonly okPerSecond: number;
  readonly okP50Ms: number;
  readonly okP99Ms: number;
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1];
}

/**
 * `requests` calls of send(i) from `clients` concurrent workers, each waiting for its answer
 * before the next (closed loop). A call that does not answer `okStatus` counts as an error.
 */
export async function runLoad(
  requests: number, clients: number, send: (i: number) => Promise<Answer>, okStatus: (s: number) => boolean,
  limits: { readonly deadlineMs?: number } = {},
): Promise<LoadResult> {
  const latencies = new Float64Array(requests);
  const okLatencies = new Float64Array(requests);
  let next = 0;
  let done = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  const statuses: Record<string, number> = {};
  const started = process.hrtime.bigint();
  // A run bounded in time: after the deadline no new request starts (those in flight finish).
  const deadline = limits.deadlineMs === undefined ? undefined : started + BigInt(Math.round(limits.deadlineMs * 1e6));
  let cutShort = false;
  const worker = async (): Promise<void> => {
    while (next < requests) {
      if (deadline !== undefined && process.hrtime.bigint() > deadline) {
        cutShort = true;
        return;
      }
      const i = next++;
      const t0 = process.hrtime.bigint();
      try {
        const a = await send(i);
        statuses[a.status] = (statuses[a.status] ?? 0) + 1;
        if (okStatus(a.status)) okLatencies[ok++] = Number(process.hrtime.bigint() - t0) / 1e6;
        else {
          errors++;
          firstError ??= `HTTP ${a.status} ${a.body.slice(0, 300)}`;
        }
      } catch (e) {
        statuses.error = (statuses.error ?? 0) + 1;
        errors++;
        firstError ??= (e as Error).message;
      }
      latencies[done++] = Number(process.hrtime.bigint() - t0) / 1e6;
    }
  };
  await Promise.all(Array.from({ length: Math.min(clients, requests) }, () => worker()));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const measured = latencies.subarray(0, done).sort();
  const okMeasured = okLatencies.subarray(0, ok).sort();
  return {
    ok, okPerSecond: ok / seconds, okP50Ms: quantile(okMeasured, 0.5), okP99Ms: quantile(okMeasured, 0.99),
    requests: done, clients, seconds, perSecond: done / seconds,
    p50Ms: quantile(measured, 0.5), p99Ms: quantile(measured, 0.99), maxMs: measured[measured.length - 1] ?? Number.NaN,
    errors, ...(firstError === undefined ? {} : { firstError }), statuses, cutShort,
  };
}

/** One line about the machine, as every benchmark prints it. */
export function machine(): string {
  const cpus = os.cpus();
  const gib = (os.totalmem() / 2 ** 30).toFixed(1);
  return `${cpus[0]?.model ?? "unknown CPU"} · ${cpus.length} cores · ${gib} GiB RAM · node ${process.version} · ${os.platform()} ${os.release()}`;
}

/** A plain text table: first row is the header, columns right-aligned except the first. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const fmt = (r: readonly string[]): string => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [fmt(rows[0]), rule, ...rows.slice(1).map(fmt)].join("\n");
}

export const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US");
export const fmtMs = (n: number): string => (n < 10 ? n.toFixed(2) : n.toFixed(1));
/** Bytes as decimal megabytes, "312 MB". */
export const fmtMB = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;

/**
 * What a process has used so far (Linux): CPU seconds (user + system, /proc/<pid>/stat) and the bytes
 * it made the kernel read from storage (/proc/<pid>/io read_bytes: page-cache misses, not reads the
 * page cache served). Differences of two samples say what a phase cost the process.
 */
export function processUsage(pid: number): { cpuSeconds: number; storageReadBytes: number } {
  const cpuSeconds = statCpuSeconds(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  const io = /read_bytes:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/io`, "utf8"));
  if (io === null || !Number.isFinite(cpuSeconds)) throw new Error(`no CPU or io figures for process ${pid}`);
  return { cpuSeconds, storageReadBytes: Number(io[1]) };
}

/** The CPU seconds (utime + stime) in a /proc stat line, of a process or of one of its threads. */
function statCpuSeconds(stat: string): number {
  // Fields after the command name, which sits in parentheses and may hold spaces: utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // USER_HZ is 100 on every Linux this runs on (the kernel ABI fixes it for /proc).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A process's resident memory from /proc/<pid>/status (Linux): VmRSS now, or VmHWM, its peak so far. */
export function rssBytes(pid: number, field: "VmRSS" | "VmHWM" = "VmRSS"): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

// ---------------------------------------------------------------------------------------------
// Clusters (issue 4): child processes we own, ports, polling, the nodes of a `cluster init` dir.

const OUTPUT_LINES_MAX = 200;

/** The last lines of a stream, bounded so a chatty child cannot grow our memory without limit. */
export class LineTail {
  private readonly kept: string[] = [];
  private count = 0;
  push(line: string): void {
    this.count++;
    this.kept.push(line.length > 600 ? `${line.slice(0, 600)}…` : line);
    if (this.kept.length > OUTPUT_LINES_MAX) this.kept.shift();
  }
  /** Lines seen in all (kept or not). */
  total(): number {
    return this.count;
  }
  /** The last `count` kept lines. */
  last(count = 20): string[] {
    return this.kept.slice(-count);
  }
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all (e.g. ENOENT). */
  readonly error?: string;
}

const owned = new Set<OwnedProcess>();

/**
 * A child process this script started and must end: its stdout/stderr split into lines (kept as
 * bounded tails, optionally passed to onLine), an exit promise, and a bounded stop.
 */
export class OwnedProcess {
  readonly child: ChildProcess;
  readonly stdout = new LineTail();
  readonly stderr = new LineTail();
  readonly exited: Promise<ExitStatus>;
  private exitStatus: ExitStatus | null = null;

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    opts: { cwd?: string; env?: NodeJS.ProcessEnv; onLine?: (stream: "stdout" | "stderr", line: string) => void } = {},
  ) {
    this.child = spawn(command, args, { cwd: opts.cwd ?? REPO_ROOT, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    owned.add(this);
    this.exited = new Promise<ExitStatus>((resolve) => {
      const settle = (s: ExitStatus): void => {
        if (this.exitStatus !== null) return;
        this.exitStatus = s;
        owned.delete(this);
        resolve(s);
      };
      this.child.once("exit", (code, signal) => settle({ code, signal }));
      this.child.once("error", (e) => settle({ code: null, signal: null, error: e.message }));
    });
    readline.createInterface({ input: this.child.stdout! }).on("line", (l) => {
      this.stdout.push(l);
      opts.onLine?.("stdout", l);
    });
    readline.createInterface({ input: this.child.stderr! }).on("line", (l) => {
      this.stderr.push(l);
      opts.onLine?.("stderr", l);
    });
  }

  running(): boolean {
    return this.exitStatus === null;
  }

  /** The exit status, or null while running. */
  status(): ExitStatus | null {
    return this.exitStatus;
  }

  /** `signal` (SIGTERM), wait up to termTimeoutMs, then SIGKILL; forced says SIGKILL was needed. */
  async stop(termTimeoutMs = 10_000, signal: NodeJS.Signals = "SIGTERM"): Promise<ExitStatus & { forced: boolean }> {
    if (this.running()) this.child.kill(signal);
    const s = await raceTimeout(this.exited, termTimeoutMs);
    if (s !== null) return { ...s, forced: false };
    this.child.kill("SIGKILL");
    const k = await raceTimeout(this.exited, 10_000);
    if (k === null) throw new Error(`${this.name} (pid ${this.child.pid}) survived SIGKILL for 10 s`);
    return { ...k, forced: true };
  }
}

/** SIGKILLs every owned process still running, synchronously (for signal and exit handlers). */
export function killOwned(): number {
  let n = 0;
  for (const p of owned) {
    if (p.running() && p.child.kill("SIGKILL")) n++;
  }
  return n;
}

/** Resolves with p's value, or null after timeoutMs. */
export async function raceTimeout<T>(p: Promise<T>, timeoutMs: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), timeoutMs);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A command-line number: a whole number >= min, or an error naming the flag. */
export function wholeFlag(name: string, raw: string | undefined, min: number): number {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be a whole number >= ${min}, got ${raw}`);
  return n;
}

/** "build-clients" → "buildClients": a flag's name as a property. */
type CamelCase<S extends string> = S extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;
const camelCase = (s: string): string => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The flags of a script: whole numbers with a default and a minimum, texts with a default; every script has --log-level and --keep. */
export interface FlagSpec<W extends string, T extends string> {
  /** [default, minimum] of each whole-number flag. */
  readonly whole: Readonly<Record<W, readonly [number, number]>>;
  /** The default of each text flag. */
  readonly text?: Readonly<Record<T, string>>;
  /** The default of --log-level. */
  readonly logLevel: string;
}

export type Flags<W extends string, T extends string> = { readonly [K in W as CamelCase<K>]: number } & { readonly [K in T as CamelCase<K>]: string } & {
  readonly logLevel: string;
  /** --keep: leave the temp data dir for a look afterwards. */
  readonly keep: boolean;
};

/** Parses process.argv (strict: an unknown flag is an error) into camel-cased properties. */
export function parseFlags<W extends string, T extends string = never>(spec: FlagSpec<W, T>, args: readonly string[] = process.argv.slice(2)): Flags<W, T> {
  const whole = Object.entries<readonly [number, number]>(spec.whole);
  const text = Object.entries<string>(spec.text ?? {});
  const options: Record<string, { type: "string"; default: string } | { type: "boolean"; default: boolean }> = {
    "log-level": { type: "string", default: spec.logLevel },
    keep: { type: "boolean", default: false },
  };
  for (const [name, [dflt]] of whole) options[name] = { type: "string", default: String(dflt) };
  for (const [name, dflt] of text) options[name] = { type: "string", default: dflt };
  const values = parseArgs({ args: [...args], options, strict: true }).values as Record<string, string | boolean | undefined>;
  const flags: Record<string, string | number | boolean> = { logLevel: String(values["log-level"]), keep: values.keep === true };
  for (const [name, [, min]] of whole) flags[camelCase(name)] = wholeFlag(name, String(values[name]), min);
  for (const [name] of text) flags[camelCase(name)] = String(values[name]);
  return flags as Flags<W, T>;
}

/** A progress line on stderr (stdout carries the report): "[tag] line", with the time of day when clock is set. */
export function scriptLog(tag: string, clock = false): (line: string) => void {
  return (line) => {
    process.stderr.write(`[${tag}${clock ? ` ${new Date().toISOString().slice(11, 19)}` : ""}] ${line}\n`);
  };
}

/** True when nothing listens on 127.0.0.1:port right now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** The lowest port freePortRange picks: above the well-known and registered ports most services use. */
const PICKED_PORTS_FROM = 15_000;
/** Where the kernel's ephemeral ports start when /proc does not say (Linux's default). */
const EPHEMERAL_FROM_DEFAULT = 32_768;
/** Jest workers get disjoint slices of the picked ports, at most this many slices. */
const PORT_SLICES_MAX = 8;

/** The first port of the kernel's ephemeral range (ip_local_port_range), or Linux's default. */
function ephemeralFrom(): number {
  let text: string;
  try {
    text = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8");
  } catch (err) {
    // Not Linux, or no /proc: the default range. Any other failure is a fault to see.
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return EPHEMERAL_FROM_DEFAULT;
    throw err;
  }
  const low = Number(text.trim().split(/\s+/)[0]);
  return Number.isSafeInteger(low) && low > PICKED_PORTS_FROM ? low : EPHEMERAL_FROM_DEFAULT;
}

/**
 * A base port with `count` consecutive free loopback ports from it (bounded tries), for a node
 * that binds it later. Ports come from below the kernel's ephemeral range: a port inside it can
 * be taken between this check and the node's bind by any outgoing connection, which the kernel
 * gives an ephemeral port (a repeat run lost a `join` to EADDRINUSE that way). Each jest worker
 * picks from a slice of its own (JEST_WORKER_ID), so two test files running at once never pick
 * the same port.
 */
export async function freePortRange(count: number): Promise<number> {
  const below = ephemeralFrom();
  const worker = Number(process.env.JEST_WORKER_ID);
  const slices = Number.isSafeInteger(worker) && worker >= 1 ? PORT_SLICES_MAX : 1;
  const width = Math.floor((below - PICKED_PORTS_FROM) / slices);
  const from = PICKED_PORTS_FROM + (slices === 1 ? 0 : ((worker - 1) % slices) * width);
  assert(width > count, `no room for ${count} ports in a slice of ${width}`);
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = from + Math.floor(Math.random() * (width - count));
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await portFree(base + i);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found in 50 tries`);
}

/**
 * Calls probe every intervalMs until it returns a value (not undefined) or timeoutMs passes; a
 * probe that throws counts as "not yet" and its last error goes into the timeout message.
 */
export async function pollUntil<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastError = "";
  for (let round = 0; round < 1_000_000; round++) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      lastError = (e as Error).message;
    }
    if (Date.now() >= until) break;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError === "" ? "" : ` (last error: ${lastError})`}`);
}

/**
 * One request without keep-alive to 127.0.0.1:port, bounded in time; the body parsed as JSON.
 * ca: HTTPS trusting it (a TLS cluster node); absent: plain HTTP.
 */
export async function requestJson<T>(port: number, method: string, urlPath: string, body?: string, timeoutMs = 2_000, ca?: Buffer): Promise<{ status: number; json: T }> {
  const a = await exchange(port, ca, false, method, urlPath, {}, body, timeoutMs);
  try {
    return { status: a.status, json: JSON.parse(a.body) as T };
  } catch (e) {
    throw new Error(`${method} :${port}${urlPath} → ${a.status}, not JSON (${(e as Error).message}): ${a.body.slice(0, 200)}`);
  }
}

/** Runs the resonetics CLI as a process (bounded by timeoutMs) and collects its output. */
export function runCli(cliArgs: readonly string[], timeoutMs: number, onSpawn?: (pid: number) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...cliArgs], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    if (child.pid !== undefined) onSpawn?.(child.pid);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
  });
}

/** What bin/resonetics writes on stderr when dist/ is missing or stale and it runs src/ through tsx instead. */
const SOURCES_NOTE = "running the TypeScript sources through tsx";

/** True when bin/resonetics runs the compiled dist/, as production does: asked of the bin itself, so its own staleness test decides. */
export async function cliRunsCompiled(): Promise<boolean> {
  // 30 s: --version loads the CLI and exits, a second or two even on a busy machine.
  const r = await runCli(["--version"], 30_000);
  if (r.code !== 0) throw new Error(`resonetics --version exited ${r.code}: ${r.stderr.slice(0, 500)}`);
  return !r.stderr.includes(SOURCES_NOTE);
}

export interface VerifyTiming {
  readonly seconds: number;
  readonly code: number | null;
  readonly report: { ok?: unknown; entries?: unknown; reason?: unknown };
  /** False when the bin ran src/ through tsx (dist/ missing or stale): not the code production runs. */
  readonly compiled: boolean;
  /** CPU seconds of the process's main thread (the replay), and of all its other threads (workers, V8's GC helpers), as last sampled. */
  readonly cpu: { readonly mainSeconds: number; readonly otherSeconds: number };
}

/** A process's threads' CPU seconds (utime + stime) by thread id, from /proc/<pid>/task (Linux); empty once it exited. */
function threadCpuSeconds(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      out.set(Number(tid), statCpuSeconds(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

/**
 * Threads' CPU sampled this often while verify-chain runs: /proc has nothing once it exits, so the
 * figures miss at most this much of its last moments (its exit: joining threads, closing SQLite).
 */
const THREAD_SAMPLE_MS = 50;

/**
 * `resonetics verify-chain <dir> --json` as a real process, timed from spawn to exit (node start-up
 * included), with its threads' CPU: whether the replay's thread or the rest limits the rate.
 */
export async function verifyAsProcess(dir: string, timeoutMs = 600_000, extraArgs: readonly string[] = []): Promise<VerifyTiming> {
  const t0 = process.hrtime.bigint();
  const last = new Map<number, number>();
  let pid = 0;
  const sample = (): void => {
    for (const [tid, s] of threadCpuSeconds(pid)) last.set(tid, s);
  };
  const timer = setInterval(sample, THREAD_SAMPLE_MS);
  let r: Awaited<ReturnType<typeof runCli>>;
  try {
    r = await runCli(["verify-chain", dir, "--json", ...extraArgs], timeoutMs, (p) => {
      pid = p;
    });
  } finally {
    clearInterval(timer);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  let mainSeconds = 0;
  let otherSeconds = 0;
  for (const [tid, s] of last) {
    if (tid === pid) mainSeconds = s;
    else otherSeconds += s;
  }
  const lastLine = r.stdout.trim().split("\n").pop() ?? "";
  let report: VerifyTiming["report"];
  try {
    report = JSON.parse(lastLine) as VerifyTiming["report"];
  } catch (e) {
    throw new Error(`verify-chain printed no JSON (exit ${r.code}, ${(e as Error).message}): ${r.stdout.slice(0, 500)} ${r.stderr.slice(0, 500)}`);
  }
  return { seconds, code: r.code, report, compiled: !r.stderr.includes(SOURCES_NOTE), cpu: { mainSeconds, otherSeconds } };
}

/** One node of a `resonetics cluster init` dir: DIR/ni listening on basePort + i - 1. */
export interface ClusterNode {
  readonly id: string;
  readonly dir: string;
  readonly port: number;
  /** The cluster CA (DIR/ca.crt) when the node serves HTTPS (cluster init --tls-generate); absent: plain HTTP. */
  readonly ca?: Buffer;
}

export function clusterNodes(root: string, nodes: number, basePort: number, ca?: Buffer): ClusterNode[] {
  return Array.from({ length: nodes }, (_, i) => ({ id: `n${i + 1}`, dir: path.join(root, `n${i + 1}`), port: basePort + i, ...(ca === undefined ? {} : { ca }) }));
}

/**
 * `resonetics cluster init --dir root --nodes n --base-port p` as a process; with tls, also
 * --tls-generate (a cluster CA and a certificate per node), and the nodes carry root/ca.crt.
 */
export async function initClusterDirs(root: string, nodes: number, basePort: number, o: { readonly tls?: boolean; readonly timeoutMs?: number } = {}): Promise<ClusterNode[]> {
  const tlsArgs = o.tls === true ? ["--tls-generate"] : [];
  // 60 s by default: init writes a few small files, and --tls-generate adds a few openssl runs (each well under a second).
  const r = await runCli(["cluster", "init", "--dir", root, "--nodes", String(nodes), "--base-port", String(basePort), "--host", "127.0.0.1", ...tlsArgs], o.timeoutMs ?? 60_000);
  if (r.code !== 0) throw new Error(`cluster init failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
  return clusterNodes(root, nodes, basePort, o.tls === true ? fs.readFileSync(path.join(root, TLS_CA_FILE)) : undefined);
}

/** The cluster's admin token (cluster init gives every node the same one). */
export function adminToken(node: ClusterNode): string {
  return readAdminToken(node.dir);
}

/** `resonetics serve` for one cluster node on 127.0.0.1 at its port. */
export function startClusterNode(
  node: ClusterNode, logLevel: string, onLine?: (stream: "stdout" | "stderr", line: string) => void, extraArgs: readonly string[] = [],
): OwnedProcess {
  const args = [...PROFILE_ARGS, CLI, "serve", "--data-dir", node.dir, "--host", "127.0.0.1", "--port", String(node.port), "--log-level", logLevel, ...extraArgs];
  return new OwnedProcess(node.id, process.execPath, args, onLine === undefined ? {} : { onLine });
}

/** The fields of GET /v1/status the scripts use. */
export interface NodeStatus {
  readonly node_id: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly commit_index: number;
  readonly last_applied: number;
  readonly halted: string | null;
}

export async function nodeStatus(node: ClusterNode, timeoutMs = 2_000): Promise<NodeStatus> {
  const r = await requestJson<NodeStatus>(node.port, "GET", "/v1/status", undefined, timeoutMs, node.ca);
  if (r.status !== 200) throw new Error(`GET ${node.id} /v1/status → ${r.status}`);
  return r.json;
}

/** Waits until some node is leader and every node answers naming it in the same term. */
export async function waitForLeader(nodes: readonly ClusterNode[], timeoutMs: number): Promise<ClusterNode> {
  return pollUntil("a leader all nodes agree on", async () => {
    const st = await Promise.all(nodes.map((n) => nodeStatus(n)));
    const lead = st.find((s) => s.role === "leader");
    if (lead === undefined || !st.every((s) => s.leader === lead.node_id && s.term === lead.term)) return undefined;
    return nodes.find((n) => n.id === lead.node_id);
  }, timeoutMs, 100);
}

/** "1.23 0.98 0.75" (1, 5, 15 minutes). */
export function loadAverage(): string {
  return os.loadavg().map((x) => x.toFixed(2)).join(" ");
}

/** The pino level (10..60) of a JSON log line, or undefined for anything else. */
export function pinoLevel(line: string): number | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const level = (JSON.parse(line) as { level?: unknown }).level;
    return typeof level === "number" ? level : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Appends through a real server: distinct records, the commit index, a log of a given size.

/** The admin token `serve` writes into its data dir. */
export function readAdminToken(dataDir: string): string {
  return fs.readFileSync(path.join(dataDir, "admin.token"), "utf8").trim();
}

/** The checkpoint interval the benchmarks pin: the serve default, passed explicitly so the figures say it. */
export const CHECKPOINT_EVERY = 1000;
/** Subjects the benchmark records spread over: each subject's state stays small, the subject index large. */
export const SUBJECTS = 1000;

/** An append answered 201: a new record committed (200 is a retry, anything else a failure). */
export const created = (s: number): boolean => s === 201;

/**
 * Appends policy.set records whose bodies are all distinct (a sequence), so no two appends are
 * alike; spread over `subjects` subjects so each subject's state stays small.
 */
export class RecordAppender {
  private sequence = 0;

  constructor(private readonly prefix: string, readonly subjects = SUBJECTS) {}

  /** Appends sent so far (the sequence number of the next one). */
  sent(): number {
    return this.sequence;
  }

  /** One POST /v1/records; withKey adds an Idempotency-Key unique to this append. */
  append(client: Client, withKey = false): Promise<Answer> {
    const i = this.sequence++;
    const body = JSON.stringify({ type: "policy.set", subject: `${this.prefix}-${i % this.subjects}`, data: { name: `n${i}`, value: i } });
    return client.request("POST", "/v1/records", body, withKey ? { "idempotency-key": `${this.prefix}-key-${i}` } : {});
  }
}

/** The server's commit index (GET /v1/status). */
export async function commitIndex(client: Client): Promise<number> {
  const a = await client.request("GET", "/v1/status");
  if (a.status !== 200) throw new Error(`GET /v1/status → ${a.status} ${a.body.slice(0, 300)}`);
  const s = JSON.parse(a.body) as { commit_index?: unknown };
  if (typeof s.commit_index !== "number") throw new Error(`status without commit_index: ${a.body.slice(0, 300)}`);
  return s.commit_index;
}

/** Rounds of appends at most: each asks for all that is missing, so a few suffice unless appends keep failing. */
const BUILD_ROUNDS_MAX = 20;

/**
 * Appends through the server until its log holds `entries` entries (checkpoints included):
 * closed-loop rounds of `clients` concurrent appends; every keyEvery-th append (0: none) carries
 * an Idempotency-Key. Returns the commit index reached and each round's load result.
 */
export async function buildLog(
  client: Client, appender: RecordAppender,
  o: { readonly entries: number; readonly clients: number; readonly checkpointEvery: number; readonly keyEvery?: number; readonly log?: (line: string) => void },
): Promise<{ entries: number; rounds: LoadResult[] }> {
  const keyEvery = o.keyEvery ?? 0;
  const rounds: LoadResult[] = [];
  let have = await commitIndex(client);
  for (let round = 0; round < BUILD_ROUNDS_MAX && have < o.entries; round++) {
    const remaining = o.entries - have;
    // A checkpoint entry joins every checkpointEvery entries: ask for that many fewer records.
    const n = Math.max(1, remaining - Math.floor(remaining / (o.checkpointEvery + 1)));
    const r = await runLoad(n, o.clients, () => appender.append(client, keyEvery > 0 && appender.sent() % keyEvery === 0), created);
    if (r.errors > 0) o.log?.(`build round ${round}: ${r.errors} errors, first: ${r.firstError}`);
    rounds.push(r);
    const before = have;
    have = await commitIndex(client);
    // A round that added nothing will not be helped by another (the node is not the leader, or is
    // down): stop, and let the caller look again (its entries figure shows the shortfall).
    if (have <= before) break;
  }
  return { entries: have, rounds };
}

/**
 * `resonetics serve` for a benchmark: the given log level and checkpoint interval, snapshots (with
 * compaction) off through the environment so a replay from genesis sees every entry (a server
 * without that setting ignores the variable); with its admin token.
 */
export async function startBenchServer(dataDir: string, logLevel: string, checkpointEvery: number, timeoutMs = 30_000): Promise<{ server: ServerProcess; token: string }> {
  const server = await startServer(dataDir, ["--log-level", logLevel, "--checkpoint-every", String(checkpointEvery)], { RESONETICS_SNAPSHOT_EVERY: "0" }, timeoutMs);
  try {
    return { server, token: readAdminToken(dataDir) };
  } catch (e) {
    await server.stop(10_000);
    throw e;
  }
}

/**
 * The bench servers a script started and must end: each started with startBenchServer, stopped
 * cleanly by stop(), and SIGKILLed by killAll() on an interrupt or stopped by stopAll() in a finally.
 */
export class BenchServers {
  private readonly running = new Set<ServerProcess>();

  constructor(private readonly logLevel: string, private readonly checkpointEvery = CHECKPOINT_EVERY) {}

  async start(dataDir: string, timeoutMs?: number): Promise<{ server: ServerProcess; token: string }> {
    const started = await startBenchServer(dataDir, this.logLevel, this.checkpointEvery, timeoutMs);
    this.running.add(started.server);
    return started;
  }

  /** SIGTERM and wait for the exit; throws unless the server exited 0 without a SIGKILL. */
  async stop(server: ServerProcess): Promise<void> {
    const s = await server.stop();
    this.running.delete(server);
    if (s.forced || s.code !== 0) throw new Error(`server did not shut down cleanly: ${JSON.stringify(s)}`);
  }

  /** SIGKILLs every server still running, synchronously (for signal and exit handlers). */
  killAll(): void {
    for (const s of this.running) s.child.kill("SIGKILL");
  }

  /** Stops every server still running (SIGTERM, SIGKILL after timeoutMs): for finally blocks. */
  async stopAll(timeoutMs = 10_000): Promise<void> {
    for (const s of this.running) await s.stop(timeoutMs);
    this.running.clear();
  }
}
