/**
 * Real-process harness for acceptance tests: starts `resonetics serve` as a child process on
 * 127.0.0.1 with an OS-chosen port, waits for its "listening" log line, and tracks every child
 * and temp dir so afterAll can clean up. Waits are on real conditions (stdout lines, process exit,
 * HTTP answers), each bounded in time.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { Fetch, fetchWith } from "../../src/client/http";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
/** The project's own bin (compiled dist/, or the sources through tsx when dist/ is stale): what a user runs. */
export const BIN = path.join(REPO_ROOT, "bin", "resonetics");
const OUTPUT_LINES_MAX = 300;

const children = new Set<ChildProcess>();
const tempDirs = new Map<string, { keep: boolean }>();
/** Resolves when a child's stdout and stderr have both ended, so every line it wrote was checked. */
const drains = new Map<ChildProcess, Promise<void>>();

// ---------------------------------------------------------------- secrets in log lines

/** The files of a data dir whose contents must never appear in a log line (DESIGN.md: data dir files). */
export const SECRET_FILES: readonly string[] = ["admin.token", "audit.token"];
/** A secret shorter than this is not a token (an empty or truncated file): matching it would flag noise. */
const SECRET_LENGTH_MIN = 8;
/** Leaks kept for the report; the first few say enough and a leaking server repeats itself on every line. */
const LEAKS_KEPT_MAX = 20;
/** Lines a child writes before its token file exists (startup), held to be checked once it does. */
const PENDING_LINES_MAX = 1000;

export interface SecretLeak {
  readonly dir: string;
  readonly source: string;
  readonly file: string;
  readonly excerpt: string;
}

/** The secrets of a data dir that exist now: contents of admin.token / audit.token, trimmed. */
export function readSecrets(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const f of SECRET_FILES) {
    const p = path.join(dir, f);
    if (!fs.existsSync(p)) continue;
    const v = fs.readFileSync(p, "utf8").trim();
    if (v.length >= SECRET_LENGTH_MIN) found.set(v, f);
  }
  return found;
}

/** The line with every occurrence of each secret replaced by a marker, cut around the first one. */
export function redactedExcerpt(line: string, secrets: Iterable<string>, radius = 80): string {
  let at = -1;
  let text = line;
  for (const s of secrets) {
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
    text = text.split(s).join(`<REDACTED:${s.length} chars>`);
  }
  const start = Math.max(0, at - radius);
  return `${start > 0 ? "…" : ""}${text.slice(start, start + 2 * radius + 40)}${text.length > start + 2 * radius + 40 ? "…" : ""}`;
}

/**
 * Checks every line a child writes against the secrets of its data dir (acceptance 5 of issue 7:
 * no token in any log line). Lines that arrive before the token file exists are held (bounded) and
 * checked once it does; a line that could never be checked is reported as well, never dropped.
 */
export class SecretLineChecker {
  private secrets = new Map<string, string>();
  private pending: { source: string; line: string }[] = [];
  private unchecked = 0;
  readonly leaks: SecretLeak[] = [];
  leakCount = 0;

  constructor(readonly dir: string, private readonly load: () => Map<string, string> = () => readSecrets(dir)) {}

  /**
   * Reads the secret files and checks the held lines against them. Called once the server listens
   * (every token file it writes at start exists then); until then lines are held, so a line written
   * before audit.token appeared is still checked against it.
   */
  refresh(): void {
    for (const [v, f] of this.load()) this.secrets.set(v, f);
    if (this.secrets.size === 0) return;
    const held = this.pending;
    this.pending = [];
    for (const p of held) this.check(p.source, p.line);
  }

  /** One line of output from `source` ("stdout"/"stderr"). */
  line(source: string, line: string): void {
    if (this.secrets.size === 0) {
      if (this.pending.length < PENDING_LINES_MAX) {
        this.pending.push({ source, line });
        return;
      }
      this.refresh(); // a chatty start: look for the token files now rather than drop lines
      if (this.secrets.size === 0) {
        this.unchecked++;
        return;
      }
    }
    this.check(source, line);
  }

  /**
   * Called when the child's output has ended: held lines are checked a last time. With no token file
   * at all there is no secret a line could hold; lines dropped past the bound while a token file
   * did appear later are a failure (they were never checked).
   */
  finish(): void {
    this.refresh();
    if (this.unchecked > 0 && this.secrets.size > 0) {
      this.record({ dir: this.dir, source: "harness", file: "(none)", excerpt: `${this.unchecked} output lines written before the token file existed were dropped unchecked` });
    }
    this.pending = [];
    this.unchecked = 0;
  }

  private check(source: string, line: string): void {
    for (const [secret, file] of this.secrets) {
      if (line.includes(secret)) {
        this.record({ dir: this.dir, source, file, excerpt: redactedExcerpt(line, this.secrets.keys()) });
        return;
      }
    }
  }

  clearLeaks(): void {
    this.leaks.length = 0;
    this.leakCount = 0;
  }

  private record(leak: SecretLeak): void {
    this.leakCount++;
    if (this.leaks.length < LEAKS_KEPT_MAX) this.leaks.push(leak);
  }
}

const checkers = new Set<SecretLineChecker>();

/** The file under test, for the leak report (jest's expect state; absent outside jest). */
function currentTestFile(): string {
  const e = (globalThis as { expect?: { getState?: () => { testPath?: string } } }).expect;
  const p = e?.getState?.().testPath;
  return p === undefined ? "(unknown test file)" : path.relative(REPO_ROOT, p);
}

/** Forgets the leaks seen so far (for a test that plants one on purpose to prove the check works). */
export function forgetSecretLeaks(): void {
  for (const c of checkers) c.clearLeaks();
}

/** Every leak seen so far by the checkers of this test file, as one message; null when none. */
export function secretLeakReport(list: Iterable<SecretLineChecker> = checkers): string | null {
  const lines: string[] = [];
  let total = 0;
  for (const c of list) {
    total += c.leakCount;
    for (const l of c.leaks) lines.push(`  ${l.dir} [${l.source}] contains ${l.file}: ${l.excerpt}`);
  }
  if (total === 0) return null;
  return `${currentTestFile()}: ${total} server output line(s) contain a secret of their data dir (issue 7, acceptance 5: no token in any log line); first ${lines.length}:\n${lines.join("\n")}`;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A tail of a stream's lines, bounded so a chatty server cannot grow test memory without limit. */
class LineTail {
  private readonly lines: string[] = [];
  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > OUTPUT_LINES_MAX) this.lines.shift();
  }
  /** The last `count` lines, each cut to 400 characters (request logs are long). */
  text(count = 40): string {
    return this.lines
      .slice(-count)
      .map((l) => (l.length > 400 ? `${l.slice(0, 400)}…` : l))
      .join("\n");
  }
}

function exitPromise(child: ChildProcess): Promise<ExitStatus> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/** Resolves with the exit status, or with null when the process is still running after timeoutMs. */
async function waitExit(exited: Promise<ExitStatus>, timeoutMs: number): Promise<ExitStatus | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), timeoutMs);
  });
  try {
    return await Promise.race([exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A fresh temp dir under os.tmpdir()/resonetics-*, removed by cleanupAll unless kept. */
export function makeTempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-"));
  tempDirs.set(dir, { keep: false });
  return dir;
}

/** Keeps a temp dir for post-mortem and says where it is. */
export function keepDir(dir: string, why: string): void {
  const entry = tempDirs.get(dir);
  if (entry) entry.keep = true;
  process.stderr.write(`[resonetics test] kept data dir ${dir} (${why})\n`);
}

/**
 * Runs fn; when it throws, keeps the listed dirs, appends the context (seed, dirs, server output)
 * to the error message and rethrows, so a failure says how to reproduce it.
 */
export async function withFailureContext<T>(context: () => string, dirs: readonly string[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    for (const d of dirs) keepDir(d, "test failed");
    const extra = `\n--- reproduce / context ---\n${context()}\ndata dirs kept: ${dirs.join(", ")}`;
    if (err instanceof Error) {
      err.message += extra;
      throw err;
    }
    throw new Error(String(err) + extra);
  }
}

/** startServer's failure when the process exited before it listened; `status` says how it ended. */
export class ExitedBeforeListening extends Error {
  constructor(message: string, readonly status: ExitStatus) {
    super(message);
    this.name = "ExitedBeforeListening";
  }
}

export interface Server {
  readonly dir: string;
  readonly port: number;
  readonly baseUrl: string;
  readonly token: string;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  /** SIGTERM, wait up to timeoutMs for the exit, SIGKILL as a fallback (forced = true then). */
  stop(timeoutMs?: number): Promise<ExitStatus & { forced: boolean }>;
  /** SIGKILL (kill -9) and wait for the exit. */
  kill9(): Promise<ExitStatus>;
  /** The last lines of stdout and stderr, for failure messages. */
  output(): string;
  /** True while the process has not exited. */
  running(): boolean;
}

export interface StartOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
  extraArgs?: string[];
}

/** Starts `resonetics serve --data-dir dir --host 127.0.0.1 --port 0` and waits until it listens. */
export async function startServer(dir: string, opts: StartOptions = {}): Promise<Server> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const args = [BIN, "serve", "--data-dir", dir, "--host", "127.0.0.1", "--port", "0", ...(opts.extraArgs ?? [])];
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...(opts.env ?? {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const exited = exitPromise(child);
  void exited.then(() => children.delete(child));
  const secrets = new SecretLineChecker(dir);
  checkers.add(secrets);

  const out = new LineTail();
  const err = new LineTail();
  const stdoutLines = readline.createInterface({ input: child.stdout! });
  const stderrLines = readline.createInterface({ input: child.stderr! });
  const ended = (rl: readline.Interface): Promise<void> => new Promise((resolve) => rl.once("close", () => resolve()));
  drains.set(child, Promise.all([ended(stdoutLines), ended(stderrLines)]).then(() => secrets.finish()));
  stdoutLines.on("line", (l) => secrets.line("stdout", l));
  stderrLines.on("line", (l) => secrets.line("stderr", l));
  const startedAt = Date.now();
  let exitNote = "still running";
  void exited.then((st) => {
    exitNote = `exited with code ${st.code}, signal ${st.signal}, ${Date.now() - startedAt} ms after start`;
  });
  const output = (): string =>
    `$ ${process.execPath} ${args.join(" ")}  (cwd ${REPO_ROOT}; pid ${child.pid}: ${exitNote})\n` +
    `--- stdout (tail) ---\n${out.text()}\n--- stderr (tail) ---\n${err.text()}`;
  stderrLines.on("line", (l) => err.push(l));

  let tls = false;
  const port = await new Promise<number>((resolve, reject) => {
    let settled = false;
    const finish = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(
      () => finish(() => reject(new Error(`server did not log "listening" within ${timeoutMs} ms\n${output()}`))),
      timeoutMs,
    );
    stdoutLines.on("line", (line) => {
      out.push(line);
      if (settled) return;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        return; // not a pino JSON line (e.g. a banner): only the listening record matters here
      }
      const r = rec as Record<string, unknown>;
      if (r !== null && typeof r === "object" && r.msg === "listening" && typeof r.port === "number") {
        const p = r.port;
        tls = r.tls === true;
        finish(() => resolve(p));
      }
    });
    child.once("error", (e) => finish(() => reject(new Error(`could not spawn the server: ${e.message}\n${output()}`))));
    void exited.then((s) =>
      finish(() => reject(new ExitedBeforeListening(`server exited (code ${s.code}, signal ${s.signal}) before listening\n${output()}`, s))),
    );
  }).catch(async (e: unknown) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await waitExit(exited, 10_000);
    }
    throw e;
  });

  const tokenPath = path.join(dir, "admin.token");
  let token: string;
  try {
    token = fs.readFileSync(tokenPath, "utf8").trim();
  } catch (e) {
    throw new Error(`server listens but ${tokenPath} is unreadable: ${(e as Error).message}\n${output()}`);
  }
  secrets.refresh(); // the server listens: every token file it writes at start exists now

  return {
    dir,
    port,
    baseUrl: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    token,
    pid: child.pid ?? -1,
    exited,
    output,
    running: () => child.exitCode === null && child.signalCode === null,
    async stop(stopTimeoutMs = 15_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const s = await waitExit(exited, stopTimeoutMs);
      if (s !== null) return { ...s, forced: false };
      child.kill("SIGKILL");
      const k = await waitExit(exited, 10_000);
      if (k === null) throw new Error(`server pid ${child.pid} survived SIGKILL for 10 s`);
      return { ...k, forced: true };
    },
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      const k = await waitExit(exited, 10_000);
      if (k === null) throw new Error(`server pid ${child.pid} survived SIGKILL for 10 s`);
      return k;
    },
  };
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Written to the process's stdin, which is then closed (default: no stdin at all). */
  readonly input?: string | Buffer;
  /** Added to (and overriding) this process's environment. */
  readonly env?: Readonly<Record<string, string>>;
}

/** Runs the CLI with the given args as a process (bounded by timeoutMs) and collects its output. */
export async function runCli(cliArgs: readonly string[], timeoutMs = 120_000, opts: CliOptions = {}): Promise<ProcessResult> {
  const args = [BIN, ...cliArgs];
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, ...(opts.env ?? {}) }, stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
  children.add(child);
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  const exited = exitPromise(child);
  void exited.then(() => children.delete(child));
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout!.on("data", (b: Buffer) => stdout.push(b));
  child.stderr!.on("data", (b: Buffer) => stderr.push(b));
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const s = await waitExit(exited, timeoutMs);
  if (s === null) {
    child.kill("SIGKILL");
    await waitExit(exited, 10_000);
    throw new Error(`resonetics ${cliArgs.join(" ")} did not exit within ${timeoutMs} ms\nstderr: ${Buffer.concat(stderr).toString()}`);
  }
  await waitExit(closed.then(() => s), 5_000); // drain the pipes
  return { ...s, stdout: Buffer.concat(stdout).toString("utf8"), stderr: Buffer.concat(stderr).toString("utf8") };
}

/** `resonetics verify-chain <dir> --json` as a process. */
export const runVerifyChain = (dir: string, extraArgs: readonly string[] = []): Promise<ProcessResult> =>
  runCli(["verify-chain", dir, "--json", ...extraArgs]);

/** Parses verify-chain --json output: the one JSON object it prints (the last JSON line). */
export function parseJsonOutput(stdout: string): Record<string, unknown> | null {
  const trimmed = stdout.trim();
  try {
    const whole = JSON.parse(trimmed) as unknown;
    if (whole !== null && typeof whole === "object") return whole as Record<string, unknown>;
  } catch {
    // not a single JSON document; look for the last line that is one
  }
  const lines = trimmed.split("\n").reverse();
  for (const l of lines) {
    try {
      const v = JSON.parse(l) as unknown;
      if (v !== null && typeof v === "object") return v as Record<string, unknown>;
    } catch {
      continue; // a non-JSON line (progress text)
    }
  }
  return null;
}

/** Kills every child still running and removes temp dirs that were not kept. For afterAll. */
export async function cleanupAll(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const child of [...children]) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = exitPromise(child);
      child.kill("SIGKILL");
      waits.push(waitExit(exited, 10_000));
    }
  }
  await Promise.all(waits);
  children.clear();
  // Every line a server wrote is checked before its data dir (and its token files) go away.
  await waitExit(Promise.all(drains.values()).then(() => ({ code: 0, signal: null })), 10_000);
  drains.clear();
  const leaks = secretLeakReport();
  checkers.clear();
  for (const [dir, { keep }] of tempDirs) {
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  }
  tempDirs.clear();
  if (leaks !== null) throw new Error(leaks);
}

// ---------------------------------------------------------------- HTTP

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

export interface RequestOptions {
  token?: string;
  body?: string | Uint8Array;
  json?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** CAs of test clusters (self-generated), trusted by http() for https:// URLs; bounded: a few per test file. */
const testCas: Buffer[] = [];
const TEST_CAS_MAX = 100;
/** undici's fetch with an Agent that trusts every registered CA; rebuilt when one is added. */
let httpsFetch: Fetch | null = null;

/** Makes http() (and everything built on it) trust this CA for https:// URLs. */
export function trustTestCa(pem: Buffer | string): void {
  const b = Buffer.from(pem);
  if (testCas.some((c) => c.equals(b))) return;
  if (testCas.length >= TEST_CAS_MAX) throw new Error(`more than ${TEST_CAS_MAX} test CAs registered: a test registers one per request?`);
  testCas.push(b);
  httpsFetch = null;
}

/** The fetch for a URL: the global one for http:// (exactly as before), one trusting the test CAs for https://. */
function fetchFor(url: string): Fetch {
  if (!url.startsWith("https:")) return fetch;
  httpsFetch ??= fetchWith({ ca: Buffer.concat(testCas.flatMap((c) => [c, Buffer.from("\n")])) });
  return httpsFetch;
}

/** One HTTP request with a bounded time; json is the parsed body or undefined when it is not JSON. */
export async function http(baseUrl: string, method: string, urlPath: string, opts: RequestOptions = {}): Promise<HttpResult> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let body: string | Uint8Array | undefined = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) headers["content-type"] = "application/json";
  }
  const res = await fetchFor(baseUrl)(baseUrl + urlPath, {
    method,
    headers,
    body,
    signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch {
    json = undefined; // not JSON: callers assert on json and see undefined, with text for the message
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** GET that must answer 200 with JSON; throws with the request and answer otherwise. */
export async function getJson<T = Record<string, unknown>>(baseUrl: string, urlPath: string): Promise<T> {
  const r = await http(baseUrl, "GET", urlPath);
  if (r.status !== 200 || r.json === undefined) {
    throw new Error(`GET ${urlPath} → ${r.status} ${r.text.slice(0, 500)} (expected 200 JSON)`);
  }
  return r.json as T;
}

/** Maps items with at most `limit` calls in flight; results keep the input order. */
export async function mapPool<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, () => worker()));
  return results;
}

/**
 * Polls check() until it returns a value (not undefined), at most `attempts` times, yielding
 * `gapMs` between polls; throws with `what` when the condition never held.
 */
export async function pollUntil<T>(what: string, check: () => Promise<T | undefined>, attempts = 200, gapMs = 50): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const v = await check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, gapMs));
  }
  throw new Error(`condition never held after ${attempts} polls: ${what}`);
}
