/**
 * `npm run soak:stream` (issue 7, acceptance 3): can WebSocket subscribers that never read hurt
 * the node? A real `bin/resonetics serve` process gets a log of about 50,000 entries through its
 * own HTTP API (concurrent keep-alive appends); then
 *   1. writes for ~10 s without subscribers: the baseline throughput;
 *   2. 200 subscribers from=1 that complete the WebSocket upgrade and never read, kept at 200 for
 *      ~30 s (one the server closes as a slow consumer is replaced by a new one), while the same
 *      write load runs: throughput and the node's RSS (VmRSS) sampled every 250 ms;
 *   3. the subscribers gone, RSS a few seconds later; then SIGTERM and the time to exit.
 * Targets: RSS within +200 MB of before, writes >= 50% of the baseline, exit < 5 s after SIGTERM.
 * It prints figures, the machine and /proc/loadavg; it never passes or fails on them.
 *
 *   npm run soak:stream -- [--entries 50000] [--subscribers 200] [--baseline-s 10] [--with-s 30]
 *                          [--build-clients 64] [--writers 16] [--log-level info] [--keep]
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import {
  CHECKPOINT_EVERY, Client, LoadResult, OwnedProcess, REPO_ROOT, RecordAppender, buildLog, commitIndex, created, fmtInt, fmtMB, fmtMs, killOwned, loadAverage,
  machine, parseFlags, pollUntil, raceTimeout, readAdminToken, rssBytes, runLoad, scriptLog, table,
} from "./bench-lib";

/** RSS samples kept at most (every 250 ms: over an hour): memory stays bounded. */
const RSS_SAMPLES_MAX = 16_384;
/** Replacements of closed subscribers at most: a server closing them in a loop cannot make us loop forever. */
const RECONNECTS_MAX = 20_000;
/** Bytes of an upgrade response we wait for at most before calling it malformed. */
const UPGRADE_HEAD_BYTES_MAX = 4096;
/** Requests per load run at most: the deadline ends a run, this only bounds the latency arrays. */
const LOAD_REQUESTS_MAX = 2_000_000;
/** Resets of subscriber sockets after their upgrade (the server closing a slow one): counted, reported. */
let resets = 0;
const TARGET_RSS_GROWTH_BYTES = 200 * 1000 * 1000;
const TARGET_THROUGHPUT_RATIO = 0.5;
const TARGET_EXIT_MS = 5_000;

function options() {
  return parseFlags({
    whole: { entries: [50_000, 10], subscribers: [200, 0], "baseline-s": [10, 1], "with-s": [30, 1], "build-clients": [64, 1], writers: [16, 1] },
    logLevel: "info",
  });
}

const log = scriptLog("soak");

const appender = new RecordAppender("soak");

/**
 * A subscriber that completes the upgrade by hand, then never reads (socket.pause()): the kernel
 * buffers fill, and the server's writes to it stop completing.
 */
function openNonReader(port: number, from: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let head = Buffer.alloc(0);
    const fail = (why: string): void => {
      socket.destroy();
      reject(new Error(why));
    };
    socket.once("error", (e) => fail(`subscriber socket: ${e.message}`));
    const onData = (b: Buffer): void => {
      head = Buffer.concat([head, b]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (head.length > UPGRADE_HEAD_BYTES_MAX) fail("no end of the upgrade response");
        return;
      }
      socket.pause();
      socket.off("data", onData);
      const status = head.subarray(0, end).toString("latin1").split("\r\n")[0];
      if (!status.startsWith("HTTP/1.1 101")) return fail(`upgrade refused: ${status}`);
      // From here on a reset by the server (it closed us as a slow consumer) is expected.
      socket.removeAllListeners("error");
      socket.on("error", () => resets++);
      resolve(socket);
    };
    socket.on("data", onData);
    socket.once("connect", () => {
      socket.write(
        `GET /v1/stream?from=${from} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${Buffer.from(`soak-${Math.random()}`).subarray(0, 16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
  });
}

/** The server as a process we own, its "closing a slow stream subscriber" lines counted by why. */
class SoakServer {
  readonly proc: OwnedProcess;
  readonly port: Promise<number>;
  readonly slowCloses = new Map<string, number>();
  /** Called with the remote port of each subscriber the server closes as slow. */
  onSlowClose: (port: number) => void = () => undefined;
  errors = 0;

  constructor(dir: string, logLevel: string) {
    let listening: (port: number) => void = () => undefined;
    this.port = new Promise((resolve) => (listening = resolve));
    const args = [path.join(REPO_ROOT, "bin", "resonetics"), "serve", "--data-dir", dir, "--host", "127.0.0.1", "--port", "0", "--log-level", logLevel,
      "--checkpoint-every", String(CHECKPOINT_EVERY), "--snapshot-every", "0"];
    this.proc = new OwnedProcess("server", process.execPath, args, {
      onLine: (stream, line) => {
        if (stream !== "stdout" || !line.startsWith("{")) return;
        if (line.includes('"msg":"listening"')) {
          const p = (JSON.parse(line) as { port?: unknown }).port;
          if (typeof p === "number") listening(p);
        } else if (line.includes("closing a slow stream subscriber")) {
          const r = JSON.parse(line) as { why?: unknown; remote_port?: unknown };
          const why = String(r.why);
          this.slowCloses.set(why, (this.slowCloses.get(why) ?? 0) + 1);
          if (typeof r.remote_port === "number") this.onSlowClose(r.remote_port);
        } else if (line.includes('"level":50') || line.includes('"level":60')) {
          this.errors++;
        }
      },
    });
  }

  pid(): number {
    const pid = this.proc.child.pid;
    if (pid === undefined) throw new Error("the server has no pid");
    return pid;
  }
}

interface Phase {
  readonly load: LoadResult;
  readonly rssMaxBytes: number;
}

/** Samples the server's RSS every 250 ms while fn runs; returns fn's result and the max seen. */
async function sampled<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; rssMaxBytes: number; samples: number }> {
  let max = rssBytes(pid);
  let samples = 0;
  const timer = setInterval(() => {
    if (samples >= RSS_SAMPLES_MAX) return;
    samples++;
    max = Math.max(max, rssBytes(pid));
  }, 250);
  try {
    const value = await fn();
    return { value, rssMaxBytes: Math.max(max, rssBytes(pid)), samples };
  } finally {
    clearInterval(timer);
  }
}

async function main(): Promise<void> {
  const o = options();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-soak-"));
  const subs = new Map<number, net.Socket>();
  const interrupt = (): void => {
    killOwned();
    if (!o.keep) fs.rmSync(root, { recursive: true, force: true });
    process.exit(130);
  };
  process.once("SIGINT", interrupt);
  const server = new SoakServer(path.join(root, "data"), o.logLevel);
  try {
    const port = await raceTimeout(server.port, 30_000);
    if (port === null) throw new Error(`the server did not log "listening" in 30 s:\n${server.proc.stderr.last().join("\n")}`);
    const pid = server.pid();
    const token = readAdminToken(path.join(root, "data"));
    const client = new Client(port, token, Math.max(o.buildClients, o.writers) + 4);

    // ---- the log, built through the server
    log(`building a ${fmtInt(o.entries)}-entry log through the server (${o.buildClients} keep-alive clients)`);
    const buildStart = Date.now();
    const { entries: have } = await buildLog(client, appender, { entries: o.entries, clients: o.buildClients, checkpointEvery: CHECKPOINT_EVERY, log });
    const buildS = (Date.now() - buildStart) / 1000;
    log(`log has ${fmtInt(have)} entries after ${buildS.toFixed(1)} s`);

    // ---- 1. baseline: writes without subscribers
    log(`baseline: ${o.writers} writers for ${o.baselineS} s, no subscribers`);
    const rssBefore = rssBytes(pid);
    const base = await sampled(pid, () => runLoad(LOAD_REQUESTS_MAX, o.writers, () => appender.append(client), created, { deadlineMs: o.baselineS * 1000 }));
    const rssBeforeSubs = rssBytes(pid);

    // ---- 2. the same load with non-reading subscribers kept at o.subscribers
    log(`opening ${o.subscribers} non-reading subscribers from=1`);
    let reconnects = 0;
    let refused = 0;
    let firstRefusal = "";
    let replacing = true;
    const open = async (): Promise<void> => {
      try {
        const s = await openNonReader(port, 1);
        const p = s.localPort;
        if (p === undefined || !replacing) return void s.destroy();
        subs.set(p, s);
        s.once("close", () => subs.delete(p));
      } catch (e) {
        refused++;
        firstRefusal ||= (e as Error).message;
      }
    };
    server.onSlowClose = (p) => {
      const s = subs.get(p);
      if (s === undefined || !replacing) return;
      // The server gave up on it; a hostile client comes straight back with a new connection.
      s.destroy();
      subs.delete(p);
      if (reconnects >= RECONNECTS_MAX) return;
      reconnects++;
      void open();
    };
    const opened = Date.now();
    await Promise.all(Array.from({ length: o.subscribers }, () => open()));
    log(`${subs.size} subscribers open after ${Date.now() - opened} ms (${refused} refused); writing for ${o.withS} s`);
    const withSubs = await sampled(pid, () => runLoad(LOAD_REQUESTS_MAX, o.writers, () => appender.append(client), created, { deadlineMs: o.withS * 1000 }));
    const subsAtEnd = subs.size;
    replacing = false;

    // ---- 3. subscribers gone; then SIGTERM
    for (const s of subs.values()) s.destroy();
    subs.clear();
    await pollUntil("the server to answer /health after the subscribers left", async () => {
      const a = await client.request("GET", "/health", undefined, {}, 2_000);
      return a.status === 200 ? true : undefined;
    }, 10_000, 100);
    log("subscribers closed; waiting 5 s before sampling RSS after");
    await new Promise((r) => setTimeout(r, 5_000));
    const rssAfter = rssBytes(pid);
    const finalIndex = await commitIndex(client);
    client.close();
    log("SIGTERM");
    const termAt = process.hrtime.bigint();
    const stopped = await server.proc.stop(30_000);
    const exitMs = Number(process.hrtime.bigint() - termAt) / 1e6;

    // ---- report
    const ratio = withSubs.value.okPerSecond / base.value.okPerSecond;
    const growth = Math.max(withSubs.rssMaxBytes, rssAfter) - rssBefore;
    const loadRow = (name: string, r: LoadResult): string[] => [
      name, String(r.clients), fmtInt(r.ok), r.seconds.toFixed(1), fmtInt(r.okPerSecond), fmtMs(r.okP50Ms), fmtMs(r.okP99Ms), String(r.errors),
    ];
    const met = (ok: boolean): string => (ok ? "target met" : "TARGET MISSED");
    const lines: string[] = [];
    lines.push("Resonetics stream soak: non-reading WebSocket subscribers (npm run soak:stream)");
    lines.push(`machine: ${machine()}`);
    lines.push(`server: bin/resonetics serve, 127.0.0.1, checkpoint every ${CHECKPOINT_EVERY}, no snapshots, log level ${o.logLevel}`);
    lines.push(`log: ${fmtInt(have)} entries built in ${buildS.toFixed(1)} s (${fmtInt(have / buildS)}/s, ${o.buildClients} clients); ${fmtInt(finalIndex)} at the end`);
    lines.push("");
    lines.push(table([
      ["writes (POST /v1/records)", "clients", "acked", "seconds", "acked/s", "p50 ms", "p99 ms", "errors"],
      loadRow("baseline, no subscribers", base.value),
      loadRow(`with ${o.subscribers} non-readers`, withSubs.value),
    ]));
    lines.push(`throughput ratio: ${(ratio * 100).toFixed(0)}% (target >= ${TARGET_THROUGHPUT_RATIO * 100}%): ${met(ratio >= TARGET_THROUGHPUT_RATIO)}`);
    lines.push("");
    lines.push(table([
      ["server RSS (VmRSS)", "MB"],
      ["before (after the build)", fmtMB(rssBefore)],
      ["baseline run, max", fmtMB(base.rssMaxBytes)],
      ["before the subscribers", fmtMB(rssBeforeSubs)],
      [`with ${o.subscribers} non-readers, max (${withSubs.samples} samples)`, fmtMB(withSubs.rssMaxBytes)],
      ["5 s after they left", fmtMB(rssAfter)],
    ]));
    lines.push(`RSS growth over before: ${fmtMB(growth)} (target <= +${fmtMB(TARGET_RSS_GROWTH_BYTES)}): ${met(growth <= TARGET_RSS_GROWTH_BYTES)}`);
    lines.push("");
    const closes = [...server.slowCloses].map(([why, n]) => `${why} ${fmtInt(n)}`).join(", ") || "none";
    lines.push(`subscribers: ${o.subscribers} opened, ${subsAtEnd} open at the end, closed by the server as slow (4008): ${closes}; replaced ${fmtInt(reconnects)}, refused ${refused}${firstRefusal === "" ? "" : ` (first: ${firstRefusal})`}, socket errors after upgrade ${resets}`);
    lines.push(`server error lines: ${server.errors}`);
    lines.push(`SIGTERM to exit: ${fmtInt(exitMs)} ms, exit code ${stopped.code}${stopped.forced ? " (SIGKILL was needed)" : ""} (target < ${TARGET_EXIT_MS} ms): ${met(!stopped.forced && exitMs < TARGET_EXIT_MS)}`);
    lines.push(`load average (1/5/15 min): ${loadAverage()}   /proc/loadavg: ${fs.readFileSync("/proc/loadavg", "utf8").trim()}`);
    lines.push(o.keep ? `data dir kept under ${root}` : "temp data dir removed");
    for (const r of [base.value, withSubs.value]) if (r.errors > 0) lines.push(`WARNING: ${r.errors} of ${r.requests} writes failed; first: ${r.firstError}`);
    process.stdout.write(lines.join("\n") + "\n");
  } finally {
    for (const s of subs.values()) s.destroy();
    if (server.proc.running()) await server.proc.stop(10_000);
    if (!o.keep) fs.rmSync(root, { recursive: true, force: true });
    process.removeListener("SIGINT", interrupt);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`soak-stream failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  killOwned();
  process.exitCode = 1;
});
