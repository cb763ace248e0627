/**
 * `npm run bench:single` (issue 2, acceptance 9): a single-node Resonetics server as a real
 * process on a temp data dir (SQLite WAL, synchronous=FULL: every acknowledged append is fsync'd,
 * there is no switch to turn that off), measured over HTTP with keep-alive connections:
 *   (a) 1 sequential client, (b) N concurrent clients (default 32), appends/s and p50/p99 latency;
 * then a data dir of about 100,000 entries, built by driving the same real server with many
 * concurrent clients (the honest way: the exact write path, group commit included), and the time
 * `verify-chain` takes on it, as a process (node start-up included) and in-process.
 * It prints figures and the machine; it never passes or fails on them.
 *
 *   npm run bench:single -- [--seq 3000] [--concurrent 20000] [--clients 32] [--warmup 1000]
 *                           [--entries 100000] [--build-clients 128] [--verify-runs 1]
 *                           [--log-level info] [--keep]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { verifyChainCommand } from "../src/cli/verify-chain";
import {
  BenchServers, CHECKPOINT_EVERY, Client, LoadResult, RecordAppender, SUBJECTS, VerifyTiming, buildLog, commitIndex, created, fmtInt, fmtMs, machine, parseFlags,
  runLoad, scriptLog, table, verifyAsProcess,
} from "./bench-lib";

function options() {
  return parseFlags({
    whole: { seq: [3000, 1], concurrent: [20_000, 1], clients: [32, 1], warmup: [1000, 0], entries: [100_000, 10], "build-clients": [128, 1], "verify-runs": [1, 1] },
    logLevel: "info",
  });
}

const log = scriptLog("bench");
const appender = new RecordAppender("bench");

/** The same command in this process: the verifier's own cost, without node and tsx start-up. */
function verifyInProcess(dir: string): { seconds: number; code: number; report: VerifyTiming["report"] } {
  let printed = "";
  const t0 = process.hrtime.bigint();
  const code = verifyChainCommand(dir, { from: "genesis", json: true, progress: false }, (t) => (printed += t), (t) => (printed += t));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, code, report: JSON.parse(printed.trim().split("\n").pop() ?? "{}") as VerifyTiming["report"] };
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

async function main(): Promise<void> {
  const o = options();
  const servers = new BenchServers(o.logLevel);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-bench-"));
  const interrupt = (): void => {
    servers.killAll();
    if (!o.keep) fs.rmSync(root, { recursive: true, force: true });
    process.exit(130);
  };
  process.once("SIGINT", interrupt);
  try {
    // ---- (a) and (b): appends over HTTP
    const dirA = path.join(root, "appends");
    log(`starting the server on ${dirA}`);
    const a = await servers.start(dirA);
    const client = new Client(a.server.port, a.token, Math.max(o.clients, 8));
    log(`warm-up: ${o.warmup} appends, 8 clients`);
    const warm = await runLoad(o.warmup, 8, () => appender.append(client), created);
    log(`sequential: ${o.seq} appends, 1 client`);
    const seq = await runLoad(o.seq, 1, () => appender.append(client), created);
    log(`concurrent: ${o.concurrent} appends, ${o.clients} clients`);
    const conc = await runLoad(o.concurrent, o.clients, () => appender.append(client), created);
    const keyed = await runLoad(Math.min(o.concurrent, 5000), o.clients, () => appender.append(client, true), created);
    const commitA = await commitIndex(client);
    client.close();
    await servers.stop(a.server);

    // ---- a data dir of about `entries` entries, built through the real server
    const dirB = path.join(root, "verify");
    log(`building a ${fmtInt(o.entries)}-entry data dir through the server (${o.buildClients} clients, every 10th append with an Idempotency-Key)`);
    const b = await servers.start(dirB);
    const builder = new Client(b.server.port, b.token, o.buildClients);
    const { rounds: builds } = await buildLog(builder, appender, { entries: o.entries, clients: o.buildClients, checkpointEvery: CHECKPOINT_EVERY, keyEvery: 10 });
    builder.close();
    await servers.stop(b.server);
    const buildRequests = builds.reduce((s, r) => s + r.requests, 0);
    const buildSeconds = builds.reduce((s, r) => s + r.seconds, 0);
    const buildErrors = builds.reduce((s, r) => s + r.errors, 0);

    // ---- verify-chain on it
    const proc: VerifyTiming[] = [];
    const inproc: Array<{ seconds: number; code: number; report: VerifyTiming["report"] }> = [];
    for (let run = 0; run < o.verifyRuns; run++) {
      log(`verify-chain run ${run + 1}/${o.verifyRuns}: as a process, then in-process`);
      proc.push(await verifyAsProcess(dirB));
      inproc.push(verifyInProcess(dirB));
    }
    const entries = Number(proc[0].report.entries);
    const bad = [...proc, ...inproc].find((r) => r.code !== 0 || r.report.ok !== true);

    // ---- report
    const loadRow = (name: string, r: LoadResult): string[] => [
      name, String(r.clients), fmtInt(r.requests), r.seconds.toFixed(2), fmtInt(r.perSecond), fmtMs(r.p50Ms), fmtMs(r.p99Ms), fmtMs(r.maxMs), String(r.errors),
    ];
    const lines: string[] = [];
    lines.push("Resonetics single-node benchmark (npm run bench:single)");
    lines.push(`machine: ${machine()}`);
    lines.push(`server: real process, 127.0.0.1, HTTP/1.1 keep-alive, SQLite WAL synchronous=FULL (fsync on every commit), checkpoint every ${CHECKPOINT_EVERY} entries, log level ${o.logLevel}`);
    lines.push(`record: policy.set over ${SUBJECTS} subjects, ~${Buffer.byteLength(JSON.stringify({ type: "policy.set", subject: "bench-999", data: { name: "n99999", value: 99999 } }))} B body; latency = client-side, request sent to 201 received`);
    lines.push("");
    lines.push(table([
      ["appends (POST /v1/records)", "clients", "requests", "seconds", "appends/s", "p50 ms", "p99 ms", "max ms", "errors"],
      loadRow("warm-up (not a result)", warm),
      loadRow("(a) sequential", seq),
      loadRow(`(b) concurrent`, conc),
      loadRow(`(b') concurrent, Idempotency-Key`, keyed),
      [`build of the verify data dir`, String(o.buildClients), fmtInt(buildRequests), buildSeconds.toFixed(2), fmtInt(buildRequests / buildSeconds), "", "", "", String(buildErrors)],
    ]));
    lines.push(`(log after the append runs: ${fmtInt(commitA)} entries)`);
    lines.push("");
    const verifyRow = (name: string, secs: number[]): string[] => [name, fmtInt(entries), median(secs).toFixed(2), fmtInt(entries / median(secs))];
    lines.push(table([
      [`verify-chain (${o.verifyRuns} run${o.verifyRuns > 1 ? "s, median" : ""})`, "entries", "seconds", "entries/s"],
      verifyRow(`as a process (node start-up included; ${proc[0].compiled ? "compiled dist/" : "src/ through tsx: dist/ is stale"})`, proc.map((r) => r.seconds)),
      verifyRow("in-process (verifyChainCommand)", inproc.map((r) => r.seconds)),
    ]));
    if (bad !== undefined) lines.push(`WARNING: verify-chain did not verify the data dir: exit ${bad.code}, ${JSON.stringify(bad.report).slice(0, 400)}`);
    const errors = [warm, seq, conc, keyed, ...builds].filter((r) => r.errors > 0);
    for (const r of errors) lines.push(`WARNING: ${r.errors} of ${r.requests} requests failed; first: ${r.firstError}`);
    lines.push(o.keep ? `data dirs kept under ${root}` : "temp data dirs removed");
    process.stdout.write(lines.join("\n") + "\n");
  } finally {
    await servers.stopAll();
    if (!o.keep) fs.rmSync(root, { recursive: true, force: true });
    process.removeListener("SIGINT", interrupt);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench-single failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
