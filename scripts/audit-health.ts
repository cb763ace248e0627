/**
 * `npm run bench:audit-health` (issue 7, acceptance 4): does a full audit stall the node? A real
 * `resonetics serve` process gets a log of about 50,000 entries, built through its own HTTP API;
 * then GET /health is probed every ~10 ms, first with the node idle, then while audits
 * (GET /v1/audit/verify, a full replay) run back to back. It prints /health p50/p99/max in both
 * phases, each audit's duration and entries/s, and /proc/loadavg. Target: p99 < 100 ms during
 * audits (an election timeout is 500-1000 ms). It prints figures; it never passes or fails on them.
 *
 *   npm run bench:audit-health -- [--entries 50000] [--build-clients 64] [--audits 3]
 *                                 [--idle-s 5] [--probe-ms 10] [--writers 0] [--log-level info] [--keep]
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import {
  CHECKPOINT_EVERY, Client, RecordAppender, SUBJECTS, ServerProcess, buildLog, fmtInt, fmtMs, loadAverage, machine, parseFlags, quantile, scriptLog,
  startBenchServer, table,
} from "./bench-lib";

/** Probes in flight at most: a stalled node must not make the prober open sockets without bound. */
const PROBES_IN_FLIGHT_MAX = 200;
/** Samples kept per phase at most (at 10 ms, ~30 min of probing): memory stays bounded. */
const SAMPLES_MAX = 200_000;
/** A probe that takes longer than this is recorded at this value and counted as a timeout. */
const PROBE_TIMEOUT_MS = 10_000;

function options() {
  return parseFlags({
    whole: { entries: [50_000, 10], "build-clients": [64, 1], audits: [3, 1], "idle-s": [5, 1], "probe-ms": [10, 1], writers: [0, 0] },
    logLevel: "info",
  });
}

const log = scriptLog("bench");
const appender = new RecordAppender("bench");

interface ProbeStats {
  readonly probes: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly failures: number;
}

/**
 * Probes GET /health every probeMs (open loop: a probe starts on schedule whether or not the
 * previous one answered, so a stalled node shows as many slow probes, as real callers would see).
 */
class HealthProber {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: PROBES_IN_FLIGHT_MAX });
  private samples: number[] = [];
  private failures = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly port: number, private readonly probeMs: number) {}

  start(): void {
    this.samples = [];
    this.failures = 0;
    const tick = (): void => {
      this.timer = setTimeout(tick, this.probeMs);
      if (this.inFlight >= PROBES_IN_FLIGHT_MAX) {
        this.failures++;
        return;
      }
      this.probe();
    };
    tick();
  }

  /** Stops probing, waits (bounded) for probes in flight, and summarizes the phase. */
  async stop(): Promise<ProbeStats> {
    clearTimeout(this.timer);
    for (let i = 0; i < PROBE_TIMEOUT_MS / 10 && this.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 10));
    const sorted = Float64Array.from(this.samples).sort();
    return { probes: sorted.length, p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99), maxMs: sorted[sorted.length - 1] ?? Number.NaN, failures: this.failures };
  }

  close(): void {
    this.agent.destroy();
  }

  private probe(): void {
    this.inFlight++;
    const t0 = process.hrtime.bigint();
    const done = (ok: boolean): void => {
      this.inFlight--;
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (this.samples.length < SAMPLES_MAX) this.samples.push(Math.min(ms, PROBE_TIMEOUT_MS));
      if (!ok) this.failures++;
    };
    const req = http.request({ host: "127.0.0.1", port: this.port, path: "/health", agent: this.agent, timeout: PROBE_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on("end", () => done(res.statusCode === 200));
      res.on("error", () => done(false));
    });
    req.on("timeout", () => req.destroy(new Error("probe timed out")));
    req.on("error", () => done(false));
    req.end();
  }
}

interface AuditRun {
  readonly seconds: number;
  readonly status: number;
  readonly ok: unknown;
  readonly entries: number;
}

async function main(): Promise<void> {
  const o = options();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-audit-bench-"));
  let server: ServerProcess | undefined;
  const interrupt = (): void => {
    server?.child.kill("SIGKILL");
    if (!o.keep) fs.rmSync(root, { recursive: true, force: true });
    process.exit(130);
  };
  process.once("SIGINT", interrupt);
  const loadBefore = loadAverage();
  try {
    const dir = path.join(root, "node");
    // No snapshots (so no compaction): the audit replays every entry from genesis.
    const started = await startBenchServer(dir, o.logLevel, CHECKPOINT_EVERY);
    server = started.server;
    const { token } = started;
    const port = server.port;

    log(`building a ${fmtInt(o.entries)}-entry log through the server (${o.buildClients} clients, every 10th append with an Idempotency-Key)`);
    const builder = new Client(port, token, o.buildClients);
    const { entries: have, rounds: builds } = await buildLog(builder, appender, { entries: o.entries, clients: o.buildClients, checkpointEvery: CHECKPOINT_EVERY, keyEvery: 10 });
    builder.close();
    const buildSeconds = builds.reduce((s, r) => s + r.seconds, 0);
    const buildErrors = builds.reduce((s, r) => s + r.errors, 0);
    log(`built: ${fmtInt(have)} entries in ${buildSeconds.toFixed(1)} s (${buildErrors} errors)`);

    const prober = new HealthProber(port, o.probeMs);
    log(`idle: probing /health every ${o.probeMs} ms for ${o.idleS} s`);
    prober.start();
    await new Promise((r) => setTimeout(r, o.idleS * 1000));
    const idle = await prober.stop();

    // Optional light write load during the audits: the audit reads a WAL snapshot while the writer goes on.
    let writing = o.writers > 0;
    const writerClient = new Client(port, token, Math.max(1, o.writers));
    let written = 0;
    const writers = Array.from({ length: o.writers }, async () => {
      // Bounded by the audit phase: `writing` turns false when the audits end.
      while (writing) {
        const a = await appender.append(writerClient);
        if (a.status === 201) written++;
      }
    });

    log(`audits: ${o.audits} full audits back to back, probing /health every ${o.probeMs} ms${o.writers > 0 ? `, ${o.writers} writers` : ""}`);
    const auditClient = new Client(port, token, 1);
    const runs: AuditRun[] = [];
    prober.start();
    const auditStart = process.hrtime.bigint();
    for (let i = 0; i < o.audits; i++) {
      const t0 = process.hrtime.bigint();
      const a = await auditClient.request("GET", "/v1/audit/verify", undefined, {}, 600_000);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const r = JSON.parse(a.body) as { ok?: unknown; entries?: unknown };
      runs.push({ seconds, status: a.status, ok: r.ok, entries: typeof r.entries === "number" ? r.entries : 0 });
      log(`audit ${i + 1}/${o.audits}: ${a.status} ok=${String(r.ok)} ${fmtInt(typeof r.entries === "number" ? r.entries : 0)} entries in ${seconds.toFixed(2)} s`);
    }
    const auditSeconds = Number(process.hrtime.bigint() - auditStart) / 1e9;
    const during = await prober.stop();
    writing = false;
    await Promise.all(writers);
    writerClient.close();
    auditClient.close();
    prober.close();
    const loadAfter = loadAverage();

    const probeRow = (name: string, s: ProbeStats): string[] => [name, fmtInt(s.probes), fmtMs(s.p50Ms), fmtMs(s.p99Ms), fmtMs(s.maxMs), String(s.failures)];
    const out: string[] = [];
    out.push(`# /health while GET /v1/audit/verify runs (issue 7, acceptance 4)`);
    out.push(machine());
    out.push(`log: ${fmtInt(have)} entries (${SUBJECTS} subjects, every 10th append keyed, a checkpoint every ${CHECKPOINT_EVERY}), built in ${buildSeconds.toFixed(1)} s`);
    out.push("");
    out.push(table([
      ["/health probes", "probes", "p50 ms", "p99 ms", "max ms", "failures"],
      probeRow(`idle (${o.idleS} s)`, idle),
      probeRow(`during audits (${auditSeconds.toFixed(1)} s)`, during),
    ]));
    out.push("");
    out.push(table([
      ["audit", "status", "ok", "entries", "seconds", "entries/s"],
      ...runs.map((r, i) => [`#${i + 1}`, String(r.status), String(r.ok), fmtInt(r.entries), r.seconds.toFixed(2), fmtInt(r.entries / r.seconds)]),
    ]));
    if (o.writers > 0) out.push(`\nwrites acknowledged during the audits: ${fmtInt(written)} (${fmtInt(written / auditSeconds)}/s, ${o.writers} writers)`);
    out.push(`\n/proc/loadavg before: ${loadBefore}; after: ${loadAfter} (${os.cpus().length} cores)`);
    out.push(`target p99 < 100 ms during audits: ${during.p99Ms < 100 ? "met" : "NOT met"} (${fmtMs(during.p99Ms)} ms)`);
    process.stdout.write(out.join("\n") + "\n");
    const st = await server.stop();
    server = undefined;
    if (st.forced || st.code !== 0) log(`server did not shut down cleanly: ${JSON.stringify(st)}`);
  } finally {
    if (server !== undefined) await server.stop();
    if (o.keep) log(`kept ${root}`);
    else fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
