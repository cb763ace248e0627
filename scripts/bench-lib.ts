/**
 * Shared pieces of the benchmarks: a real `resonetics serve` process, a keep-alive HTTP load
 * generator with per-request latencies, percentiles, the machine description and a plain table.
 * Benchmarks print figures; they never pass or fail on them.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";

export const REPO_ROOT = path.resolve(__dirname, "..");
const CLI = "src/cli/main.ts";

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
  const args = ["--import", "tsx", CLI, "serve", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", "0", ...extraArgs];
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

/** A keep-alive HTTP client for one server: at most maxSockets connections, reused. */
export class Client {
  private readonly agent: http.Agent;
  constructor(private readonly port: number, private readonly token: string, maxSockets: number) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  }

  request(method: string, urlPath: string, body?: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const h: Record<string, string | number> = { ...headers, authorization: `Bearer ${this.token}` };
      if (body !== undefined) {
        h["content-type"] = "application/json";
        h["content-length"] = Buffer.byteLength(body);
      }
      const req = http.request({ host: "127.0.0.1", port: this.port, method, path: urlPath, agent: this.agent, headers: h, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${urlPath} timed out after ${timeoutMs} ms`)));
      req.on("error", reject);
      req.end(body);
    });
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
export async function runLoad(requests: number, clients: number, send: (i: number) => Promise<Answer>, okStatus: (s: number) => boolean): Promise<LoadResult> {
  const latencies = new Float64Array(requests);
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (next < requests) {
      const i = next++;
      const t0 = process.hrtime.bigint();
      try {
        const a = await send(i);
        if (!okStatus(a.status)) {
          errors++;
          firstError ??= `HTTP ${a.status} ${a.body.slice(0, 300)}`;
        }
      } catch (e) {
        errors++;
        firstError ??= (e as Error).message;
      }
      latencies[i] = Number(process.hrtime.bigint() - t0) / 1e6;
    }
  };
  await Promise.all(Array.from({ length: Math.min(clients, requests) }, () => worker()));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort();
  return {
    requests, clients, seconds, perSecond: requests / seconds,
    p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), maxMs: latencies[latencies.length - 1] ?? Number.NaN,
    errors, ...(firstError === undefined ? {} : { firstError }),
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
