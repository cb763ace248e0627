/**
 * `npm run bench:verify` (issue 11, acceptance 2 and 3): a data dir of 1,000,000 entries, built by
 * driving a real single-node server (`bin/resonetics serve`, the exact write path, group commit
 * included, as bench:single builds its 100,000), and on that data dir:
 *   - verify-chain's entries/s as a process (`bin/resonetics verify-chain <dir> --json`, the compiled
 *     dist/ production runs, node start-up included), with its default worker threads and with
 *     --workers 0, beside this machine's SHA-256 rate on 64-byte inputs (the ledger's native port,
 *     node:crypto's createHash and noble)
 *     measured in the same run;
 *   - the server restarted (SIGTERM, then `serve` again through the bin): spawn to GET /ready 200;
 *   - inclusion and consistency proofs over HTTP (GET /v1/proofs/inclusion/:index?size=N and
 *     /v1/proofs/consistency?from=M&to=N, default linearizable reads), p50/p99 over pairs drawn
 *     uniformly from the whole log, one keep-alive client, one request at a time, in two passes:
 *     the first right after the restart, the second once the server is warm;
 *   - the server's CPU per proof request and the bytes it read from storage during each proof phase
 *     (page-cache misses: where a proof's tail comes from when the kernel dropped the file's pages);
 *   - the server's RSS (VmRSS) at the end of the build, after the restart and after the proofs.
 * Targets: verify >= 100,000 entries/s, proof p99 < 2 ms, restart to ready < 3 s, RSS < 400 MB.
 * It prints figures, the machine and the load average; it never passes or fails on them. It refuses
 * to start when dist/ is missing or older than src/ (npm run build): production runs dist/.
 *
 *   npm run bench:verify -- [--entries 1000000] [--build-clients 128] [--proofs 2000] [--seed 1]
 *                           [--dir <data dir>] [--log-level info] [--keep]
 * --keep leaves the built data dir and prints its path; --dir reuses such a dir and skips the build
 * (~10 minutes for 1,000,000 entries on 2 cores). Each server start adds an entry or two (the
 * leader's no-op), so a reused dir grows by a few entries per run.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { Prng } from "../src/raft/prng";
import { defaultWorkers } from "../src/node/verify-pipeline";
import { nativeSha256 } from "../src/node/native-crypto";
import { assert } from "../src/util/assert";
import {
  Answer, BenchServers, CHECKPOINT_EVERY, Client, LoadResult, RecordAppender, ServerProcess, buildLog, cliRunsCompiled, commitIndex, fmtInt, fmtMB, fmtMs,
  loadAverage, machine, parseFlags, pollUntil, processUsage, requestJson, rssBytes, runLoad, scriptLog, table, verifyAsProcess,
} from "./bench-lib";

function options() {
  return parseFlags({
    whole: { entries: [1_000_000, 10], "build-clients": [128, 1], proofs: [2000, 1], seed: [1, 0] },
    text: { dir: "" },
    logLevel: "info",
  });
}

const TARGET_VERIFY_PER_S = 100_000;
const TARGET_PROOF_P99_MS = 2;
const TARGET_READY_S = 3;
const TARGET_RSS_BYTES = 400 * 1000 * 1000;

/** Entries per buildLog call: a progress line about once a minute on a 1,000,000-entry build. */
const BUILD_CHUNK = 100_000;
/** Chunks beyond entries / BUILD_CHUNK: a chunk that falls short (failed appends) is made up by the next. */
const BUILD_CHUNKS_SPARE = 5;
/** A start on 1,000,000 entries should take seconds (target 3 s); 120 s leaves room to report a slow one. */
const START_TIMEOUT_MS = 120_000;
/** /ready polled every 10 ms: the restart figure is good to ~10 ms, and a poll costs far less than that. */
const READY_POLL_MS = 10;
/** verify-chain may take 1 ms per entry (1,000 entries/s, 100x under target) before it is killed; never less than 10 minutes. */
const VERIFY_TIMEOUT_MS_MIN = 600_000;
/** Each SHA-256 rate is measured for ~1 s: long enough for a steady rate, short enough to cost little. */
const HASH_MS = 1_000;
/** Hashes between clock reads: a clock read costs well under 1% of 1,024 hashes. */
const HASH_BATCH = 1_024;
/** Batches at most, whatever the clock says: 10^9 hashes, far beyond 1 s on any machine. */
const HASH_BATCHES_MAX = 1_000_000;

const log = scriptLog("bench-verify", true);
const appender = new RecordAppender("verify");

/** Hashes of one 64-byte input per second over ~HASH_MS (64 B: two 32-byte hashes, as a chain link or a Merkle node hashes). */
function hashRate(hash: (input: Uint8Array) => Uint8Array): number {
  const input = new Uint8Array(64).map((_, i) => i);
  const t0 = process.hrtime.bigint();
  const until = t0 + BigInt(HASH_MS * 1e6);
  let now = t0;
  let count = 0;
  // The first byte of every digest folded in, so no engine can drop a hash as unused.
  let fold = 0;
  for (let batch = 0; batch < HASH_BATCHES_MAX && now < until; batch++) {
    for (let i = 0; i < HASH_BATCH; i++) fold ^= hash(input)[0];
    count += HASH_BATCH;
    now = process.hrtime.bigint();
  }
  assert(fold >= 0 && fold < 256, "a digest byte is a byte");
  return count / (Number(now - t0) / 1e9);
}

/** Pairs 1 <= lo <= hi <= size, both ends uniform over the log: `count` of them from the seed. */
function pairs(count: number, size: number, rng: Prng): Array<readonly [number, number]> {
  return Array.from({ length: count }, () => {
    const a = 1 + rng.int(size);
    const b = 1 + rng.int(size);
    return [Math.min(a, b), Math.max(a, b)] as const;
  });
}

/** One proof phase: its latencies, and what it cost the server. */
interface ProofCost {
  readonly result: LoadResult;
  readonly cpuMsPerRequest: number;
  readonly storageReadBytes: number;
}

const seconds = (from: bigint): number => Number(process.hrtime.bigint() - from) / 1e9;

function pidOf(server: ServerProcess): number {
  const pid = server.child.pid;
  assert(pid !== undefined, "a started server has a pid");
  return pid;
}

/** "312 MB (peak 340 MB)": the server's RSS now and its high-water mark. */
function rssNow(server: ServerProcess): { bytes: number; text: string } {
  const bytes = rssBytes(pidOf(server));
  return { bytes, text: `${fmtMB(bytes)} (peak ${fmtMB(rssBytes(pidOf(server), "VmHWM"))})` };
}

async function main(): Promise<void> {
  const o = options();
  if (!(await cliRunsCompiled())) {
    throw new Error("dist/ is missing or older than src/: run `npm run build` first (production runs the compiled dist/, and so does this benchmark)");
  }
  const servers = new BenchServers(o.logLevel);
  const reuse = o.dir !== "";
  const root = reuse ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-bench-verify-"));
  const dir = root === undefined ? path.resolve(o.dir) : path.join(root, "node");
  if (reuse && !fs.existsSync(path.join(dir, "admin.token"))) throw new Error(`--dir ${dir} is not a data dir a server has run on (no admin.token)`);
  // A reused --dir is never removed; a temp dir is, unless --keep.
  const cleanUp = (): void => {
    if (root !== undefined && !o.keep) fs.rmSync(root, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    servers.killAll();
    cleanUp();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  const onExit = (): void => servers.killAll();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", onExit);
  const loadBefore = loadAverage();
  try {
    // ---- the data dir, built through the real server (skipped with --dir)
    let build: { entries: number; seconds: number; requests: number; errors: number; firstError?: string; rss: string; rssBytes: number; stopSeconds: number } | undefined;
    if (!reuse) {
      log(`building a ${fmtInt(o.entries)}-entry data dir through the server at ${dir} (${o.buildClients} clients, every 10th append with an Idempotency-Key)`);
      const a = await servers.start(dir);
      const builder = new Client(a.server.port, a.token, o.buildClients);
      const t0 = process.hrtime.bigint();
      const rounds: LoadResult[] = [];
      let have = await commitIndex(builder);
      const chunksMax = Math.ceil(o.entries / BUILD_CHUNK) + BUILD_CHUNKS_SPARE;
      for (let chunk = 0; chunk < chunksMax && have < o.entries; chunk++) {
        const r = await buildLog(builder, appender, { entries: Math.min(o.entries, have + BUILD_CHUNK), clients: o.buildClients, checkpointEvery: CHECKPOINT_EVERY, keyEvery: 10, log });
        rounds.push(...r.rounds);
        // buildLog stops when a round adds nothing (the node down or not leading): so do we.
        if (r.entries <= have) break;
        have = r.entries;
        log(`${fmtInt(have)} of ${fmtInt(o.entries)} entries after ${seconds(t0).toFixed(0)} s`);
      }
      const buildSeconds = seconds(t0);
      builder.close();
      const rss = rssNow(a.server);
      const t1 = process.hrtime.bigint();
      await servers.stop(a.server);
      const failed = rounds.find((r) => r.errors > 0);
      build = {
        entries: have, seconds: buildSeconds, requests: rounds.reduce((s, r) => s + r.requests, 0), errors: rounds.reduce((s, r) => s + r.errors, 0),
        ...(failed?.firstError === undefined ? {} : { firstError: failed.firstError }), rss: rss.text, rssBytes: rss.bytes, stopSeconds: seconds(t1),
      };
    }

    // ---- restart through the bin: spawn to GET /ready 200
    log(`starting the server again on ${dir}; timing spawn to GET /ready 200`);
    const t2 = process.hrtime.bigint();
    const b = await servers.start(dir, START_TIMEOUT_MS);
    const listeningSeconds = seconds(t2);
    await pollUntil("GET /ready 200", async () => ((await requestJson<unknown>(b.server.port, "GET", "/ready")).status === 200 ? true : undefined), START_TIMEOUT_MS, READY_POLL_MS);
    const readySeconds = seconds(t2);
    const rssRestart = rssNow(b.server);

    // ---- proofs over HTTP, one keep-alive client, one request at a time (latency, not throughput)
    const client = new Client(b.server.port, b.token, 1);
    const size = await commitIndex(client);
    const rng = new Prng(o.seed);
    const ok = (s: number): boolean => s === 200;
    // The server's CPU and storage reads over each phase: what a proof costs it, and whether the
    // page cache served its pages (a read from storage is a millisecond-scale wait on this disk).
    const serverCost = async (run: () => Promise<LoadResult>): Promise<ProofCost> => {
      const before = processUsage(pidOf(b.server));
      const result = await run();
      const after = processUsage(pidOf(b.server));
      return { result, cpuMsPerRequest: (1000 * (after.cpuSeconds - before.cpuSeconds)) / result.requests, storageReadBytes: after.storageReadBytes - before.storageReadBytes };
    };
    // Two passes with pairs of their own: the first right after the restart (code not yet optimised,
    // Merkle node cache empty, the start-up's garbage still to collect), the second on the server as
    // it serves once warm. Both are printed; neither is left out.
    const proofPass = async (pass: string): Promise<{ inclusion: ProofCost; consistency: ProofCost }> => {
      const inclusionPairs = pairs(o.proofs, size, rng);
      const consistencyPairs = pairs(o.proofs, size, rng);
      log(`${pass}: ${fmtInt(o.proofs)} inclusion proofs, then ${fmtInt(o.proofs)} consistency proofs, over a log of ${fmtInt(size)} entries (seed ${o.seed})`);
      const inclusion = await serverCost(() => runLoad(o.proofs, 1, (i): Promise<Answer> => {
        const [index, n] = inclusionPairs[i];
        return client.request("GET", `/v1/proofs/inclusion/${index}?size=${n}`);
      }, ok));
      const consistency = await serverCost(() => runLoad(o.proofs, 1, (i): Promise<Answer> => {
        const [from, to] = consistencyPairs[i];
        return client.request("GET", `/v1/proofs/consistency?from=${from}&to=${to}`);
      }, ok));
      return { inclusion, consistency };
    };
    const cold = await proofPass("first pass, after the restart");
    const warm = await proofPass("second pass");
    client.close();
    const rssProofs = rssNow(b.server);
    const t3 = process.hrtime.bigint();
    await servers.stop(b.server);
    const stopSeconds = seconds(t3);

    // ---- verify-chain as a process, beside this machine's SHA-256 rate, the server stopped
    log("SHA-256 rates: the ledger's native port, node:crypto createHash, then noble, ~1 s each");
    const portHashes = hashRate((input) => nativeSha256([input]));
    const nodeHashes = hashRate((input) => createHash("sha256").update(input).digest());
    const nobleHashes = hashRate((input) => nobleSha256(input));
    // Twice: on one thread (--workers 0), and as a user runs it (worker threads beside the replay, one per core but one).
    const workers = defaultWorkers(os.availableParallelism());
    log(`verify-chain ${dir} --json --workers 0, as a process`);
    const alone = await verifyAsProcess(dir, Math.max(VERIFY_TIMEOUT_MS_MIN, size), ["--workers", "0"]);
    log(`verify-chain ${dir} --json (${workers} worker thread${workers === 1 ? "" : "s"}, the default here), as a process`);
    const verify = await verifyAsProcess(dir, Math.max(VERIFY_TIMEOUT_MS_MIN, size));
    const verified = typeof verify.report.entries === "number" ? verify.report.entries : Number.NaN;
    const verifyPerS = verified / verify.seconds;
    const aloneVerified = typeof alone.report.entries === "number" ? alone.report.entries : Number.NaN;
    const loadAfter = loadAverage();

    // ---- report
    const met = (yes: boolean): string => (yes ? "yes" : "NO");
    const proofRow = (name: string, r: LoadResult): string[] => [
      name, `p50 ${fmtMs(r.p50Ms)} ms, p99 ${fmtMs(r.p99Ms)} ms, max ${fmtMs(r.maxMs)} ms (${fmtInt(r.requests)}, ${r.errors} errors)`,
      `p99 < ${TARGET_PROOF_P99_MS} ms`, met(r.p99Ms < TARGET_PROOF_P99_MS && r.errors === 0),
    ];
    const rssRow = (name: string, r: { bytes: number; text: string }): string[] => [name, r.text, `< ${fmtMB(TARGET_RSS_BYTES)}`, met(r.bytes < TARGET_RSS_BYTES)];
    const lines: string[] = [];
    lines.push("Resonetics verify-chain, proofs, restart and memory on a large log (npm run bench:verify)");
    lines.push(`machine: ${machine()}`);
    lines.push(`load average (1/5/15 min): before ${loadBefore}; after ${loadAfter}`);
    lines.push(`server: bin/resonetics serve, compiled dist/, one node, 127.0.0.1, SQLite WAL synchronous=FULL, checkpoint every ${CHECKPOINT_EVERY} entries, snapshots off, log level ${o.logLevel}`);
    lines.push(build === undefined
      ? `data dir: ${dir} (--dir: reused, not built; --entries ignored)`
      : `data dir: ${fmtInt(build.entries)} entries built in ${build.seconds.toFixed(1)} s (${fmtInt(build.requests / build.seconds)} appends/s, ${o.buildClients} clients, ${build.errors} failed appends)`);
    lines.push("");
    lines.push(table([
      ["figure", "value", "target", "met"],
      [
        `verify-chain as a process, ${workers} worker thread${workers === 1 ? "" : "s"} (${verify.compiled ? "dist/" : "src/ through tsx: dist/ went stale"}, start-up incl.)`,
        `${fmtInt(verified)} entries in ${verify.seconds.toFixed(2)} s: ${fmtInt(verifyPerS)} entries/s`, `>= ${fmtInt(TARGET_VERIFY_PER_S)} entries/s`, met(verifyPerS >= TARGET_VERIFY_PER_S),
      ],
      [
        "  its CPU: the main thread (the replay) and the others (page and checkpoint workers, V8's GC helpers)",
        `${verify.cpu.mainSeconds.toFixed(2)} s main, ${verify.cpu.otherSeconds.toFixed(2)} s others (${fmtInt(1e6 * verify.cpu.mainSeconds / verified)} µs and ${fmtInt(1e6 * verify.cpu.otherSeconds / verified)} µs an entry)`, "", "",
      ],
      ["verify-chain as a process, one thread (--workers 0)", `${fmtInt(aloneVerified)} entries in ${alone.seconds.toFixed(2)} s: ${fmtInt(aloneVerified / alone.seconds)} entries/s`, "", ""],
      [
        "  its CPU: the main thread and the others (V8's GC helpers)",
        `${alone.cpu.mainSeconds.toFixed(2)} s main, ${alone.cpu.otherSeconds.toFixed(2)} s others (${fmtInt(1e6 * alone.cpu.mainSeconds / aloneVerified)} µs and ${fmtInt(1e6 * alone.cpu.otherSeconds / aloneVerified)} µs an entry)`, "", "",
      ],
      ["SHA-256 of 64 B, the ledger's native port (crypto.hash as serve and verify-chain run it)", `${fmtInt(portHashes)} hashes/s`, "", ""],
      ["SHA-256 of 64 B, node:crypto createHash", `${fmtInt(nodeHashes)} hashes/s`, "", ""],
      ["SHA-256 of 64 B, @noble/hashes sha256", `${fmtInt(nobleHashes)} hashes/s`, "", ""],
      ...([["first pass, after the restart", cold], ["second pass", warm]] as const).flatMap(([pass, p]) => [
        proofRow(`GET /v1/proofs/inclusion/:index?size=N (${pass})`, p.inclusion.result),
        proofRow(`GET /v1/proofs/consistency?from=M&to=N (${pass})`, p.consistency.result),
        ...([["inclusion", p.inclusion], ["consistency", p.consistency]] as const).map(([name, c]) => [
          `  server cost of the ${name} proofs`,
          `${c.cpuMsPerRequest.toFixed(3)} ms CPU a request; ${fmtMB(c.storageReadBytes)} read from storage (${fmtInt(c.storageReadBytes / c.result.requests / 1024)} KiB a request)`, "", "",
        ]),
      ]),
      [
        `${build === undefined ? "start on the reused dir" : "restart"}: spawn to GET /ready 200`,
        `${readySeconds.toFixed(2)} s (listening at ${listeningSeconds.toFixed(2)} s)`, `< ${TARGET_READY_S} s`, met(readySeconds < TARGET_READY_S),
      ],
      ["SIGTERM to exit (after the build; the proofs)", `${build === undefined ? "-" : `${build.stopSeconds.toFixed(2)} s`}; ${stopSeconds.toFixed(2)} s`, "", ""],
      build === undefined ? ["server RSS at the end of the build", "- (--dir: no build)", `< ${fmtMB(TARGET_RSS_BYTES)}`, ""] : rssRow("server RSS at the end of the build", { bytes: build.rssBytes, text: build.rss }),
      rssRow(`server RSS after the ${build === undefined ? "start" : "restart"}`, rssRestart),
      rssRow("server RSS after the proofs", rssProofs),
    ]));
    lines.push(`SHA-256 rates: in this process (node --import tsx), one 64-byte input per call, ~1 s each`);
    lines.push(`proofs: pairs 1 <= M <= N <= ${fmtInt(size)} drawn uniformly (seed ${o.seed}); linearizable reads (the default); latency = client-side, request sent to 200 received`);
    lines.push("targets are printed, never enforced");
    for (const v of [verify, alone]) {
      if (v.code !== 0 || v.report.ok !== true) lines.push(`WARNING: verify-chain did not verify the data dir: exit ${v.code}, ${JSON.stringify(v.report).slice(0, 400)}`);
    }
    if (JSON.stringify(alone.report) !== JSON.stringify(verify.report)) lines.push("WARNING: verify-chain reported differently with worker threads and without");
    if (build?.firstError !== undefined) lines.push(`WARNING: ${build.errors} of ${build.requests} appends failed during the build; first: ${build.firstError}`);
    for (const r of [cold.inclusion, cold.consistency, warm.inclusion, warm.consistency].map((c) => c.result)) if (r.errors > 0) lines.push(`WARNING: ${r.errors} of ${r.requests} proof requests failed; first: ${r.firstError}`);
    if (root !== undefined) lines.push(o.keep ? `data dir kept: ${dir} (reuse it with --dir ${dir})` : "temp data dir removed");
    process.stdout.write(lines.join("\n") + "\n");
  } finally {
    await servers.stopAll();
    cleanUp();
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    process.removeListener("exit", onExit);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench-verify failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
