// Acceptance 2 of issue 4, on real node processes: 8 concurrent clients write (unique idempotency
// keys, distinct values) while the harness kills -9 the leader, and in a second test a seeded
// random node, 11 times each, restarting it every time. Afterwards every acknowledged write is
// present exactly once at its acknowledged index with its acknowledged hash on every node, no index
// differs between nodes, the chain recomputes from genesis, verify-chain exits 0 on every data dir,
// and the client history is linearizable for an append-only log with retry dedup.
import { TestCluster } from "../support/cluster";
import { historyAll } from "../support/ledger-client";
import { cleanupAll, getJson, http, parseJsonOutput, pollUntil, runVerifyChain, withFailureContext } from "../support/server";
import { KIND_CODES, bufToHex, entryHash, genesisHash, hexToBuf, prng, testSeed } from "../support/independent";
import { ClientError, LedgerClient, AppendAck } from "../../src/client/client";
import { isFaultSymptom } from "../support/ledger-client";
import {
  LogInput,
  LogOutput,
  Operation,
  checkLinearizability,
  logModel,
  resolveUnknownAppends,
} from "../../src/raft/sim/linearizability";

const SEED = testSeed();
const WRITERS = 8;
const FAULTS = 11;
/** Acks that must arrive after a restart before the next fault: the cluster recovered, then is hit again. */
const PROGRESS_ACKS = 10;
/** Fault pacing (the schedule, not a synchronization): a seeded pause before each kill. */
const PAUSE_MIN_MS = 400;
const PAUSE_SPAN_MS = 1000;
/** A writer's bound, so a writer loop cannot run away if the stop flag were never set. */
const WRITES_PER_WRITER_MAX = 20_000;
const PAGE = 1000;

jest.setTimeout(240_000);

const clusters: TestCluster[] = [];
afterAll(async () => {
  await Promise.all(clusters.map((c) => c.stopAll()));
  await cleanupAll();
}, 60_000);

interface EntryJson {
  index: number;
  term: number;
  kind: string;
  hash: string;
  prev_hash: string;
  payload_b64: string;
  record?: { subject?: string; data?: { name?: unknown }; idempotency_key?: string };
}

/** One logical append as the writer saw it: acknowledged, or an outcome it cannot know. */
interface Write {
  readonly writer: number;
  readonly value: string;
  readonly key: string;
  readonly call: number;
  ret: number | null;
  ack: AppendAck | null;
  error: string | null;
  /** An answer that is not a fault symptom (4xx other than a retry hint, 500): a server bug. */
  unexpected: boolean;
}

interface Fault { round: number; victim: string; kind: "leader" | "random"; atMs: number }

const nowMs = (): number => performance.now();

async function writerLoop(c: TestCluster, phase: string, writer: number, writes: Write[], stopped: () => boolean): Promise<void> {
  // Each writer starts at a different node and knows all of them; the client follows 307s itself.
  const urls = c.urls().map((_, i, all) => all[(i + writer) % all.length]);
  const client = new LedgerClient({ urls, token: c.token, timeoutMs: 4000, maxAttempts: 8, backoffMs: 50, tls: c.clientTls() });
  for (let i = 0; i < WRITES_PER_WRITER_MAX && !stopped(); i++) {
    const value = `${phase}-w${writer}-${i}`;
    const w: Write = { writer, value, key: `crash-${SEED}-${value}`, call: nowMs(), ret: null, ack: null, error: null, unexpected: false };
    writes.push(w);
    try {
      w.ack = await client.append({ type: "policy.set", subject: `writer-${writer}`, data: { name: value, value: i } }, w.key);
      w.ret = nowMs();
    } catch (err) {
      w.error = err instanceof ClientError ? `${err.status} ${err.code}: ${err.message}` : String(err);
      w.unexpected = !isFaultSymptom(err);
    }
  }
}

/** Every entry 1..upTo of a node, read locally (no redirect) in pages. */
async function readLog(url: string, upTo: number): Promise<EntryJson[]> {
  const out: EntryJson[] = [];
  while (out.length < upTo) {
    const from = out.length + 1;
    const page = await getJson<{ entries: EntryJson[] }>(url, `/v1/records?from=${from}&limit=${Math.min(PAGE, upTo - out.length)}&consistency=local`);
    if (page.entries.length === 0) throw new Error(`${url} has no entries from ${from} though it applied ${upTo}`);
    out.push(...page.entries);
  }
  return out;
}

const sameEntry = (a: EntryJson, b: EntryJson): boolean =>
  a.index === b.index && a.term === b.term && a.kind === b.kind && a.hash === b.hash && a.prev_hash === b.prev_hash && a.payload_b64 === b.payload_b64;

type LogOp = Operation<LogInput, LogOutput>;

async function crashRun(mode: "leader" | "random", tls = false): Promise<void> {
  const rng = prng(SEED ^ (mode === "leader" ? 0x1ead : 0x5eed));
  const c = await TestCluster.start(3, { tls, serveArgs: ["--checkpoint-every", "50", "--checkpoint-interval-ms", "200"] });
  clusters.push(c);
  const writes: Write[] = [];
  const faults: Fault[] = [];
  const t0 = nowMs();
  let stop = false;
  let phase = "faults";
  const stats: Record<string, number> = {};
  const acked = (): number => writes.reduce((n, w) => n + (w.ack === null ? 0 : 1), 0);
  const context = (): string => {
    const unknown = writes.filter((w) => w.ack === null);
    return `reproduce: RESONETICS_SEED=${SEED} npx jest test/cluster/crash.test.ts -t '${tls ? "over TLS" : mode}'\n` +
      `seed ${SEED}; mode ${mode}; phase ${phase}; cluster root ${c.root}\n` +
      `stats ${JSON.stringify(stats)}; writes ${writes.length}, acknowledged ${acked()}, unknown ${unknown.length}` +
      (unknown.length > 0 ? ` (e.g. ${unknown.slice(0, 5).map((w) => `${w.value}: ${w.error}`).join("; ")})` : "") + "\n" +
      `faults: ${faults.map((f) => `#${f.round} ${f.victim}@${Math.round(f.atMs)}ms`).join(", ")}\n` +
      c.running().map((id) => c.servers.get(id)?.output() ?? "").join("\n");
  };
  process.stderr.write(`[crash test] mode ${mode}, seed RESONETICS_SEED=${SEED}, cluster root ${c.root}\n`);

  await withFailureContext(context, [c.root], async () => {
    await c.leader();
    const writers = Array.from({ length: WRITERS }, (_, k) => writerLoop(c, mode, k, writes, () => stop));
    // The restart in flight: resolves to its error (or null), so a failure is rethrown where awaited.
    let restarting: Promise<unknown> = Promise.resolve(null);
    const restarted = async (): Promise<void> => {
      const err = await restarting;
      if (err !== null) throw err;
    };
    try {
      for (let round = 0; round < FAULTS; round++) {
        const before = acked();
        // Positive conditions: the last victim is back up, and the cluster made progress since the kill.
        await restarted();
        await pollUntil(`${PROGRESS_ACKS} more acks after fault ${round - 1}`, async () => (acked() >= before + PROGRESS_ACKS ? true : undefined), 600, 50);
        await new Promise((r) => setTimeout(r, PAUSE_MIN_MS + Math.floor(rng() * PAUSE_SPAN_MS)));
        const victim = mode === "leader" ? await c.leader() : c.ids[Math.floor(rng() * c.ids.length)];
        faults.push({ round, victim, kind: mode, atMs: nowMs() - t0 });
        await c.kill9(victim);
        // Restart at once, while the survivors elect and keep serving; awaited before the next fault.
        restarting = c.startNode(victim).then(() => null, (e: unknown) => e);
      }
      await restarted();
      const afterLast = acked();
      await pollUntil("acks after the last restart", async () => (acked() >= afterLast + PROGRESS_ACKS ? true : undefined), 600, 50);
    } finally {
      stop = true;
      await Promise.all(writers);
      await restarting; // settled either way; a failure was already rethrown by restarted() or the loop failed first
    }
    stats.faultsDoneS = Math.round((nowMs() - t0) / 1000);

    phase = "settle";
    // One more acknowledged write: everything before it that will ever commit is committed now.
    const barrierWriter = WRITERS;
    const barrier: Write = { writer: barrierWriter, value: `${mode}-barrier`, key: `crash-${SEED}-${mode}-barrier`, call: nowMs(), ret: null, ack: null, error: null, unexpected: false };
    writes.push(barrier);
    barrier.ack = await new LedgerClient({ urls: c.urls(), token: c.token, timeoutMs: 5000, maxAttempts: 12, tls: c.clientTls() })
      .append({ type: "policy.set", subject: "barrier", data: { name: barrier.value, value: 0 } }, barrier.key);
    barrier.ret = nowMs();
    const leader = await c.leader();
    const commit = (await c.status(leader)).commit_index;
    expect(commit).toBeGreaterThanOrEqual(barrier.ack.index);
    await c.converged(commit);
    const statuses = await c.statuses();
    expect(statuses.map((s) => s.halted)).toEqual([null, null, null]);
    const upTo = Math.min(...statuses.map((s) => s.last_applied));

    phase = "compare";
    expect(writes.filter((w) => w.unexpected).map((w) => `${w.value}: ${w.error}`)).toEqual([]);
    const logs = new Map<string, EntryJson[]>();
    for (const id of c.ids) logs.set(id, await readLog(c.url(id), upTo));
    const ref = logs.get(c.ids[0]) as EntryJson[];
    // No index holds different entries on two nodes.
    for (const [id, log] of logs) {
      const diff = log.findIndex((e, i) => !sameEntry(e, ref[i]));
      expect({ id, firstDifferentIndex: diff < 0 ? null : diff + 1 }).toEqual({ id, firstDifferentIndex: null });
    }
    // The chain recomputes from genesis with the DESIGN.md formula (independent code).
    const cluster = statuses[0].cluster;
    let prev = genesisHash(cluster);
    for (const e of ref) {
      const h = entryHash(e.index, e.term, KIND_CODES[e.kind], prev, Buffer.from(e.payload_b64, "base64"));
      if (bufToHex(h) !== e.hash || bufToHex(prev) !== e.prev_hash) throw new Error(`entry ${e.index}: hash does not recompute (${e.hash})`);
      prev = hexToBuf(e.hash);
    }

    // The state machine's record sequence: a RECORD entry whose Idempotency-Key appeared earlier in
    // the log is a retry the leader proposed before it had applied the original; apply skips it
    // (DESIGN.md "Client dedup"; Raft thesis 6.3). Such an inert copy must repeat the original
    // request exactly. Every value is then applied at most once, every acked one exactly once.
    const firstByKey = new Map<string, EntryJson>();
    const inertCopies: string[] = [];
    const byValue = new Map<string, number[]>();
    const finalLog: string[] = [];
    const rankOf = new Map<number, number>();
    for (const e of ref) {
      if (e.kind !== "record") continue;
      const name = e.record?.data?.name;
      const key = e.record?.idempotency_key;
      if (typeof name !== "string" || typeof key !== "string") throw new Error(`record at ${e.index} lacks data.name or idempotency_key`);
      const original = firstByKey.get(key);
      if (original !== undefined) {
        const same = original.record?.data?.name === name && (original.record as { request_digest?: string }).request_digest ===
          (e.record as { request_digest?: string }).request_digest;
        if (!same) throw new Error(`entry ${e.index} reuses key ${key} of entry ${original.index} with a different request`);
        inertCopies.push(`${e.index}=copy of ${original.index}`);
        continue;
      }
      firstByKey.set(key, e);
      byValue.set(name, [...(byValue.get(name) ?? []), e.index]);
      finalLog.push(name);
      rankOf.set(e.index, finalLog.length);
    }
    stats.inertCopies = inertCopies.length;
    const writtenValues = new Set(writes.map((w) => w.value));
    expect([...byValue].filter(([v, at]) => at.length !== 1 || !writtenValues.has(v))).toEqual([]);
    const ackProblems: string[] = [];
    for (const w of writes) {
      if (w.ack === null) continue;
      const at = byValue.get(w.value) ?? [];
      const e = ref[w.ack.index - 1];
      if (at.length !== 1 || at[0] !== w.ack.index) ackProblems.push(`${w.value} acked at ${w.ack.index}, applied at [${at.join(",")}]`);
      else if (e.hash !== w.ack.hash) ackProblems.push(`${w.value} acked with hash ${w.ack.hash}, entry ${e.index} has ${e.hash}`);
    }
    expect(ackProblems).toEqual([]);
    // Each node's materialized state agrees: a writer's subject history lists exactly its applied records.
    for (let k = 0; k < WRITERS; k++) {
      const expected = ref.filter((e) => e.kind === "record" && e.record?.subject === `writer-${k}` && rankOf.has(e.index)).map((e) => e.index);
      for (const id of c.ids) {
        const h = await historyAll(c.url(id), `writer-${k}`, "consistency=local");
        const indices = h.status === 404 ? [] : (h.json as { records: Array<{ entry: { index: number } }> }).records.map((r) => r.entry.index);
        expect({ id, subject: `writer-${k}`, status: h.status === 404 ? 200 : h.status, indices }).toEqual({ id, subject: `writer-${k}`, status: 200, indices: expected });
      }
    }

    phase = "linearizability";
    const history: LogOp[] = writes.map((w): LogOp => {
      const input: LogInput = { type: "append", value: w.value, clientId: w.writer, requestId: w.key };
      if (w.ack === null) return { status: "unknown", clientId: w.writer, input, call: w.call };
      return { clientId: w.writer, input, output: rankOf.get(w.ack.index) ?? -1, call: w.call, return: w.ret as number };
    });
    // The final reads, after every write: a log that lost or moved an acknowledged append fails here too.
    let t = nowMs();
    finalLog.forEach((value, i) => {
      history.push({ clientId: "final-reader", input: { type: "read", index: i + 1 }, output: value, call: t, return: t + 0.5 });
      t += 1;
    });
    history.push({ clientId: "final-reader", input: { type: "length" }, output: finalLog.length, call: t, return: t + 0.5 });
    const result = checkLinearizability(logModel, resolveUnknownAppends(history, finalLog));
    if (result.ok !== true) throw new Error(`history is not linearizable: ${result.reason}\n${"explanation" in result ? result.explanation : ""}`);

    stats.checkedS = Math.round((nowMs() - t0) / 1000);
    phase = "verify-chain";
    await c.stopAll();
    const verified = await Promise.all(c.ids.map(async (id) => ({ id, v: await runVerifyChain(c.dir(id)) })));
    for (const { id, v } of verified) {
      expect({ id, code: v.code, ok: parseJsonOutput(v.stdout)?.ok, out: v.code === 0 ? "" : v.stdout + v.stderr })
        .toEqual({ id, code: 0, ok: true, out: "" });
    }
    process.stderr.write(`[crash test] ${mode}: ${faults.length} kills (${faults.map((f) => f.victim).join(" ")}), ` +
      `${writes.length} writes, ${acked()} acknowledged, ${writes.length - acked()} unknown, log ${ref.length} entries, ` +
      `${Math.round((nowMs() - t0) / 1000)} s; ${JSON.stringify(stats)}\n`);
  });
}

describe("kill -9 under concurrent writes on a 3-node cluster (acceptance 2)", () => {
  test(`the leader, ${FAULTS} times: nothing acknowledged is lost, nodes agree, chains verify, history linearizable`, () => crashRun("leader"));
  test(`a seeded random node, ${FAULTS} times: the same guarantees`, () => crashRun("random"));
  // Issue 12, acceptance 1: the same run over TLS on every link (HTTPS clients, wss peers with bound handshakes).
  test(`over TLS, the leader, ${FAULTS} times: the same guarantees`, () => crashRun("leader", true));
});
