// Acceptance 3 of issue 9, on real node processes: every data dir of a 3-node cluster sits on its
// own small tmpfs; under 8 concurrent writers (unique idempotency keys) the test fills the tmpfs of
// one node (a follower in one case, the leader in the other) to within a few KiB. The storage-fault
// policy (contract9: exit 75 for the supervisor) is checked end to end with a systemd-like
// supervisor (Restart=on-failure, RestartPreventExitStatus=2):
//   - the faulted node exits 75, and from the first moment it says it is halted it never answers
//     /v1/status with role "leader" nor /ready 200;
//   - the two others keep acknowledging writes (after a re-election when the leader faulted);
//   - the supervisor's restarts exit 75 again while the disk is full, and one succeeds once the
//     filler is deleted;
//   - then the cluster is whole: the same last index and head on all three nodes, every
//     acknowledged write at its acknowledged index with its hash on every node, the chain
//     recomputes from genesis, and verify-chain exits 0 on every data dir. Nothing in a data dir
//     is edited or deleted by the test; only the filler (outside the node's files) is.
import { TestCluster } from "../support/cluster";
import { Supervisor } from "../support/supervisor";
import { Tmpfs, moveOntoTmpfs, unmountAll } from "../support/tmpfs";
import { cleanupAll, getJson, http, parseJsonOutput, pollUntil, runVerifyChain, withFailureContext } from "../support/server";
import { KIND_CODES, bufToHex, entryHash, genesisHash, hexToBuf, prng, testSeed } from "../support/independent";
import { ClientError, LedgerClient, AppendAck } from "../../src/client/client";
import { isFaultSymptom } from "../support/ledger-client";

const SEED = testSeed();
const WRITERS = 8;
/** Each data dir's filesystem: a fresh cluster dir is well under 1 MiB, so this fills in ~24 writes. */
const TMPFS_BYTES = 24 * 1024 * 1024;
/** Left free by the filler: a few SQLite pages, so the fault comes during the load, not on the first byte. */
const LEAVE_FREE_BYTES = 16 * 1024;
/** EX_TEMPFAIL (sysexits.h): the storage-fault exit of contract9. */
const EXIT_STORAGE_FAULT = 75;
/** A refused start (configuration): systemd's RestartPreventExitStatus in contrib/resonetics@.service. */
const EXIT_REFUSED = 2;
/** The supervisor's RestartSec: shorter than the unit's 2 s to keep the case short; the behaviour is the same. */
const RESTART_DELAY_MS = 300;
/** Failed restarts seen while the disk is full before it is freed: more than one, so it is not a fluke. */
const FULL_RESTARTS = 2;
/** Bound on the supervisor: the full-disk restarts, the one that succeeds, and slack for a slow start. */
const RESTARTS_MAX = 12;
/** Acks required in each phase: the cluster makes progress, then the next step happens. */
const PROGRESS_ACKS = 20;
/** A writer's bound, so a writer loop cannot run away if the stop flag were never set. */
const WRITES_PER_WRITER_MAX = 20_000;
/** Status and /ready polls of the faulted node, every OBSERVE_GAP_MS: ~90 s, the case's bound. */
const OBSERVATIONS_MAX = 3600;
const OBSERVE_GAP_MS = 25;
const PAGE = 1000;

jest.setTimeout(90_000);

const supervisors: Supervisor[] = [];
const clusters: TestCluster[] = [];
afterAll(async () => {
  // Order matters: processes first (they hold files on the mounts), then the mounts, then the dirs.
  await Promise.all(supervisors.map((s) => s.stop()));
  await Promise.all(clusters.map((c) => c.stopAll()));
  try {
    unmountAll();
  } finally {
    await cleanupAll();
  }
}, 60_000);

interface EntryJson {
  index: number;
  term: number;
  kind: string;
  hash: string;
  prev_hash: string;
  payload_b64: string;
  record?: { subject?: string; data?: { name?: unknown }; idempotency_key?: string; request_digest?: string };
}

interface StatusJson {
  node_id: string;
  role: string;
  term: number;
  leader: string | null;
  commit_index: number;
  last_applied: number;
  head: string;
  cluster: string;
  halted: string | null;
}

/** One logical append as its writer saw it: acknowledged (201), or an outcome it cannot know. */
interface Write {
  readonly writer: number;
  readonly value: string;
  readonly key: string;
  ack: AppendAck | null;
  error: string | null;
  /** An answer that is not a fault symptom (4xx other than a retry hint, 500): a server bug. */
  unexpected: boolean;
}

/** One poll of the faulted node: what /v1/status and /ready answered (or that nothing answered). */
interface Observation {
  readonly sentMs: number;
  readonly gotMs: number;
  readonly role: string | null;
  readonly halted: string | null;
  readonly ready: number | null;
  readonly error: string | null;
}

const nowMs = (): number => performance.now();

async function writerLoop(c: TestCluster, tag: string, writer: number, writes: Write[], stopped: () => boolean): Promise<void> {
  // Each writer starts at a different node and knows all of them; the client follows 307s itself.
  const urls = c.urls().map((_, i, all) => all[(i + writer) % all.length]);
  const client = new LedgerClient({ urls, token: c.token, timeoutMs: 4000, maxAttempts: 8, backoffMs: 50 });
  for (let i = 0; i < WRITES_PER_WRITER_MAX && !stopped(); i++) {
    const value = `${tag}-w${writer}-${i}`;
    const w: Write = { writer, value, key: `disk-full-${SEED}-${value}`, ack: null, error: null, unexpected: false };
    writes.push(w);
    try {
      w.ack = await client.append({ type: "policy.set", subject: `writer-${writer}`, data: { name: value, value: i } }, w.key);
    } catch (err) {
      w.error = err instanceof ClientError ? `${err.status} ${err.code}: ${err.message}` : String(err);
      w.unexpected = !isFaultSymptom(err);
    }
  }
}

/** Polls a node's /v1/status and /ready until stopped (bounded), recording every answer. */
async function observe(url: string, out: Observation[], stopped: () => boolean): Promise<void> {
  for (let i = 0; i < OBSERVATIONS_MAX && !stopped(); i++) {
    const sentMs = nowMs();
    try {
      const [st, ready] = await Promise.all([
        http(url, "GET", "/v1/status", { timeoutMs: 1000 }),
        http(url, "GET", "/ready", { timeoutMs: 1000 }),
      ]);
      const s = st.json as Partial<StatusJson> | undefined;
      out.push({ sentMs, gotMs: nowMs(), role: s?.role ?? null, halted: s?.halted ?? null, ready: ready.status, error: null });
    } catch (err) {
      // Refused or reset: the process is down or restarting; recorded, nothing is answered then.
      out.push({ sentMs, gotMs: nowMs(), role: null, halted: null, ready: null, error: (err as Error).message });
    }
    await new Promise((r) => setTimeout(r, OBSERVE_GAP_MS));
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

async function diskFullRun(victimRole: "follower" | "leader"): Promise<void> {
  const rng = prng(SEED ^ (victimRole === "leader" ? 0x1ead : 0xf011));
  const mounts = new Map<string, Tmpfs>();
  const c = await TestCluster.start(3, {
    serveArgs: ["--checkpoint-every", "50", "--checkpoint-interval-ms", "200"],
    // Every data dir on its own filesystem: which node is filled is decided once roles are known.
    beforeStart: (cl) => {
      for (const id of cl.ids) mounts.set(id, moveOntoTmpfs(cl.dir(id), TMPFS_BYTES));
    },
  });
  clusters.push(c);
  const writes: Write[] = [];
  const observations: Observation[] = [];
  const t0 = nowMs();
  const at: Record<string, number> = {};
  const mark = (what: string): void => {
    at[what] = Math.round(nowMs() - t0);
  };
  let stopWriters = false;
  let stopObserver = false;
  let phase = "start";
  let victim = "(not chosen)";
  let sup: Supervisor | null = null;
  const acked = (): number => writes.reduce((n, w) => n + (w.ack === null ? 0 : 1), 0);
  const context = (): string => {
    const unknown = writes.filter((w) => w.ack === null);
    const tmpfs = [...mounts].map(([id, t]) => `${id}: ${t.freeBytes()} B free, filler ${t.fillerBytes()} B`).join("; ");
    return `reproduce: RESONETICS_SEED=${SEED} npx jest test/cluster/disk-full.test.ts -t '${victimRole}'\n` +
      `seed ${SEED}; victim ${victim} (${victimRole}); phase ${phase}; at (ms) ${JSON.stringify(at)}; cluster root ${c.root}\n` +
      `tmpfs: ${tmpfs}\n${sup?.describe() ?? "no supervisor yet"}\n` +
      `writes ${writes.length}, acknowledged ${acked()}, unknown ${unknown.length}` +
      (unknown.length > 0 ? ` (e.g. ${unknown.slice(0, 5).map((w) => `${w.value}: ${w.error}`).join("; ")})` : "") + "\n" +
      `last observations of ${victim}: ${JSON.stringify(observations.slice(-5))}\n` +
      `--- ${victim}, its first run (the one whose disk filled) ---\n${sup?.runs[0]?.output() ?? "(none)"}\n` +
      `--- ${victim}, its last run ---\n${sup?.lastOutput() ?? "(none)"}\n` +
      c.running().filter((id) => id !== victim).map((id) => c.servers.get(id)?.output() ?? "").join("\n");
  };
  process.stderr.write(`[disk-full test] ${victimRole}: seed RESONETICS_SEED=${SEED}, cluster root ${c.root}\n`);

  let failed = true;
  try {
    await withFailureContext(context, [c.root], async () => {
      const firstLeader = await c.leader();
      const writers = Array.from({ length: WRITERS }, (_, k) => writerLoop(c, victimRole, k, writes, () => stopWriters));
      let observer: Promise<void> = Promise.resolve();
      try {
        phase = "warm-up";
        const waitAcks = async (what: string, n: number): Promise<void> => {
          const before = acked();
          await pollUntil(`${n} more acks ${what}`, async () => (acked() >= before + n ? true : undefined), 400, 50);
        };
        await waitAcks("before the fault", PROGRESS_ACKS);

        victim = victimRole === "leader" ? await c.leader() : c.ids.filter((id) => id !== firstLeader)[Math.floor(rng() * 2)];
        const victimTerm = (await c.status(victim)).term;
        const disk = mounts.get(victim) as Tmpfs;
        const adopted = c.servers.get(victim);
        if (adopted === undefined) throw new Error(`${victim} is not running`);
        sup = new Supervisor({
          name: victim, start: () => c.startNode(victim), adopt: adopted,
          restartDelayMs: RESTART_DELAY_MS, restartsMax: RESTARTS_MAX, preventRestartExitCodes: [EXIT_REFUSED],
        });
        supervisors.push(sup);
        const s = sup;
        observer = observe(c.url(victim), observations, () => stopObserver);

        phase = "fill";
        mark("fill");
        const filled = disk.fill(LEAVE_FREE_BYTES);
        process.stderr.write(`[disk-full test] ${victimRole}: filled ${victim}'s tmpfs with ${filled.fillerBytes} B, ${filled.freeBytes} B left\n`);

        phase = "fault: the filled node exits 75";
        await s.until(`${victim} exits after its disk filled`, (x) => x.runs[0].exit !== null || x.runs[0].startError !== null, 400, 50);
        mark("firstExit");
        expect({ victim, firstRunExit: s.runs[0].exit }).toEqual({ victim, firstRunExit: { code: EXIT_STORAGE_FAULT, signal: null } });

        phase = "majority keeps writing";
        const leaderNow = await c.leader();
        expect(leaderNow).not.toBe(victim);
        // A re-election when the leader faulted: a newer term than the one the victim led (or followed) in.
        if (victimRole === "leader") expect((await c.status(leaderNow)).term).toBeGreaterThan(victimTerm);
        await waitAcks(`on the majority without ${victim}`, PROGRESS_ACKS);
        mark("majorityAcks");

        phase = "restarts fail while the disk is full";
        await s.until(`${FULL_RESTARTS} restarts of ${victim} end while the disk is full`, (x) => x.exitCodes().length >= 1 + FULL_RESTARTS || x.state === "gave-up", 600, 50);
        mark("fullRestartsDone");
        expect({ victim, exitCodesWhileFull: s.exitCodes() }).toEqual({ victim, exitCodesWhileFull: s.exitCodes().map(() => EXIT_STORAGE_FAULT) });
        expect(s.state).not.toBe("gave-up");
        const runsWhileFull = s.runs.length;

        phase = "free the disk: the next restart succeeds";
        disk.free();
        mark("freed");
        // A restart under way when the disk was freed may still have seen it full: the one after succeeds.
        await s.until(`a restart of ${victim} listens after the disk was freed`, (x) => x.current() !== null && x.runs.length >= runsWhileFull, 600, 50);
        mark("restarted");
        expect(s.exitCodes()).toEqual(s.exitCodes().map(() => EXIT_STORAGE_FAULT));
        await waitAcks(`with ${victim} back`, PROGRESS_ACKS);
        mark("acksAfterRestart");
      } finally {
        stopWriters = true;
        await Promise.all(writers);
      }
      mark("writersStopped");
      stopObserver = true;
      await observer;
      if (sup === null) throw new Error("no supervisor was started");
      const s: Supervisor = sup;

      phase = "never leader or ready after the fault";
      // The first answer that says the node is halted; every poll sent after it, until the process
      // is gone, must not say leader nor be ready. Polls of the run restarted after the disk was
      // freed are out of scope (that node is healthy again).
      const firstExitMs = (s.runs[0].endedAtMs as number) - Date.now() + nowMs();
      const haltedAt = observations.find((o) => o.role === "halted" || o.halted !== null);
      const faultMs = Math.min(haltedAt?.gotMs ?? Infinity, firstExitMs);
      const lies = observations.filter((o) => o.sentMs > faultMs && o.sentMs < firstExitMs && (o.role === "leader" || o.ready === 200));
      expect({ victim, liesAfterFault: lies }).toEqual({ victim, liesAfterFault: [] });

      phase = "settle";
      expect(writes.filter((w) => w.unexpected).map((w) => `${w.value}: ${w.error}`)).toEqual([]);
      // One more acknowledged write: everything before it that will ever commit is committed now.
      const barrier: Write = { writer: WRITERS, value: `${victimRole}-barrier`, key: `disk-full-${SEED}-${victimRole}-barrier`, ack: null, error: null, unexpected: false };
      writes.push(barrier);
      barrier.ack = await new LedgerClient({ urls: c.urls(), token: c.token, timeoutMs: 5000, maxAttempts: 12 })
        .append({ type: "policy.set", subject: "barrier", data: { name: barrier.value, value: 0 } }, barrier.key);
      mark("barrier");
      const whole = await pollUntil("all 3 nodes at the same last index and head, past the barrier", async () => {
        const st = await Promise.all(c.ids.map((id) => c.status(id).catch(() => null)));
        if (st.some((x) => x === null)) return undefined;
        const all = st as StatusJson[];
        const same = all.every((x) => x.last_applied === all[0].last_applied && x.head === all[0].head && x.commit_index === all[0].commit_index);
        return same && all[0].last_applied >= (barrier.ack as AppendAck).index ? all : undefined;
      }, 600, 50);
      mark("whole");
      expect(whole.map((x) => ({ id: x.node_id, halted: x.halted }))).toEqual(c.ids.map((id) => ({ id, halted: null })));
      const upTo = whole[0].last_applied;

      phase = "compare";
      const logs = new Map<string, EntryJson[]>();
      for (const id of c.ids) logs.set(id, await readLog(c.url(id), upTo));
      const ref = logs.get(c.ids[0]) as EntryJson[];
      for (const [id, log] of logs) {
        const diff = log.findIndex((e, i) => !sameEntry(e, ref[i]));
        expect({ id, firstDifferentIndex: diff < 0 ? null : diff + 1 }).toEqual({ id, firstDifferentIndex: null });
      }
      let prev = genesisHash(whole[0].cluster);
      for (const e of ref) {
        const h = entryHash(e.index, e.term, KIND_CODES[e.kind], prev, Buffer.from(e.payload_b64, "base64"));
        if (bufToHex(h) !== e.hash || bufToHex(prev) !== e.prev_hash) throw new Error(`entry ${e.index}: hash does not recompute (${e.hash})`);
        prev = hexToBuf(e.hash);
      }
      // A RECORD whose key appeared earlier is an inert retry copy (apply skips it); it must repeat
      // the original request. Every acknowledged write is the first entry of its key, at its index.
      const firstByKey = new Map<string, EntryJson>();
      for (const e of ref) {
        if (e.kind !== "record") continue;
        const key = e.record?.idempotency_key;
        if (typeof key !== "string") throw new Error(`record at ${e.index} lacks its idempotency_key`);
        const original = firstByKey.get(key);
        if (original === undefined) firstByKey.set(key, e);
        else if (original.record?.request_digest !== e.record?.request_digest) throw new Error(`entry ${e.index} reuses key ${key} of entry ${original.index} with a different request`);
      }
      const ackProblems: string[] = [];
      for (const w of writes) {
        if (w.ack === null) continue;
        const e = firstByKey.get(w.key);
        if (e === undefined) ackProblems.push(`${w.value} acked at ${w.ack.index} is not in the log`);
        else if (e.index !== w.ack.index || e.hash !== w.ack.hash || e.record?.data?.name !== w.value) {
          ackProblems.push(`${w.value} acked at ${w.ack.index} (${w.ack.hash}), first entry of its key is ${e.index} (${e.hash})`);
        }
      }
      expect(ackProblems).toEqual([]);

      mark("compared");
      phase = "verify-chain";
      await s.stop();
      await c.stopAll();
      mark("stopped");
      const verified = await Promise.all(c.ids.map(async (id) => ({ id, v: await runVerifyChain(c.dir(id)) })));
      for (const { id, v } of verified) {
        expect({ id, code: v.code, ok: parseJsonOutput(v.stdout)?.ok, out: v.code === 0 ? "" : v.stdout + v.stderr })
          .toEqual({ id, code: 0, ok: true, out: "" });
      }
      mark("verified");
      const lastIndex = ref.length;
      process.stderr.write(`[disk-full test] ${victimRole}: victim ${victim}, exits ${JSON.stringify(s.exitCodes())} ` +
        `(${s.runs.filter((r) => !r.listening).length} restarts never listened), restarted run #${s.runs.length - 1}; ` +
        `run lengths (ms) ${JSON.stringify(s.runs.map((r) => (r.endedAtMs ?? Date.now()) - r.startedAtMs))}; ` +
        `halted seen in ${observations.filter((o) => o.role === "halted").length} of ${observations.length} polls; ` +
        `${writes.length} writes, ${acked()} acknowledged; log ${lastIndex} entries; at (ms) ${JSON.stringify(at)}\n`);
    });
    failed = false;
  } finally {
    // Processes before mounts: a live node holds files on its tmpfs.
    await Promise.all(supervisors.map((x) => x.stop()));
    await c.stopAll();
    for (const t of mounts.values()) {
      if (failed) {
        // The tmpfs is gone after the unmount: a copy on disk is kept for the post-mortem.
        try {
          t.preserve(`${t.dir}.preserved`);
          process.stderr.write(`[disk-full test] copied ${t.dir} (without the filler) to ${t.dir}.preserved\n`);
        } catch (err) {
          process.stderr.write(`[disk-full test] could not copy ${t.dir} for the post-mortem: ${(err as Error).message}\n`);
        }
      }
      t.unmount();
    }
  }
}

describe("a full disk on a 3-node cluster under concurrent writes (issue 9, acceptance 3)", () => {
  test("a follower's disk fills: it exits 75, the majority writes on, it rejoins once freed, nothing acknowledged is lost", () => diskFullRun("follower"));
  test("the leader's disk fills: it exits 75 and never claims leader or ready, a new leader takes the writes, it rejoins once freed", () => diskFullRun("leader"));
});
