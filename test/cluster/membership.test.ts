// Acceptance 6 of issue 4: under a continuous write load, a 4th node joins with `resonetics join`
// (a real process: it prepares its data dir from a member, serves, and asks for membership; the
// leader adds it as a learner, then promotes it); it becomes a voter on every node and catches up.
// Then a node is removed (DELETE /v1/admin/members/:id), still under load. No acknowledged write is
// lost, the remaining nodes hold identical entries, and their data dirs pass verify-chain.
import { ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import * as readline from "node:readline";
import { TestCluster, StatusJson, freePortRange } from "../support/cluster";
import { prng, testSeed } from "../support/independent";
import { BIN, REPO_ROOT, cleanupAll, getJson, makeTempDir, mapPool, parseJsonOutput, pollUntil, runVerifyChain, withFailureContext } from "../support/server";
import { AppendAck, LedgerClient } from "../../src/client/client";

jest.setTimeout(150_000);

const SEED = testSeed();
const WRITERS = 4;
const WRITES_PER_WRITER_MAX = 400;
const JOIN_ID = "n4";
const OUTPUT_LINES_MAX = 200;

interface EntryJson { index: number; term: number; kind: string; hash: string; payload_b64: string }
interface Joiner {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly port: number;
  readonly url: string;
  readonly lines: string[];
  readonly joined: Promise<string>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let cluster: TestCluster | undefined;
let joiner: Joiner | undefined;
const spawned = new Set<ChildProcess>();
const notes: string[] = [];
const t0 = Date.now();
const note = (s: string): void => {
  notes.push(`+${Date.now() - t0} ms ${s}`);
};

const context = (): string =>
  `seed: RESONETICS_SEED=${SEED} npx jest test/cluster/membership.test.ts\nnotes:\n  ${notes.join("\n  ")}\n` +
  (joiner === undefined ? "" : `=== ${JOIN_ID} (join, pid ${joiner.child.pid}, dir ${joiner.dir})\n${joiner.lines.slice(-40).map((l) => l.slice(0, 400)).join("\n")}\n`) +
  (cluster === undefined ? "(no cluster)" : [...cluster.servers.entries()].map(([id, s]) => `=== ${id}\n${s.output()}`).join("\n"));

beforeAll(async () => {
  cluster = await TestCluster.start(3, { serveArgs: ["--checkpoint-every", "20"] });
}, 90_000);

afterAll(async () => {
  if (process.env.RESONETICS_VERBOSE === "1") process.stderr.write(`${context().split("\n=== ")[0]}\n`);
  await Promise.all([...spawned].map((ch) => stopChild(ch, 10_000)));
  await cluster?.stopAll();
  await cleanupAll();
}, 60_000);

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/** SIGTERM, then SIGKILL if it is still running after timeoutMs; resolves when it exited. */
async function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  const exited = exitOf(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => { timer = setTimeout(() => r(true), timeoutMs); })]);
  clearTimeout(timer);
  if (late) {
    child.kill("SIGKILL");
    await exited;
  }
}

/** Spawns `resonetics join` for a new node; `joined` resolves with the JSON after "joined: ". */
function spawnJoin(c: TestCluster, seedId: string, dir: string, port: number): Joiner {
  const args = [BIN, "join", "--data-dir", dir, "--id", JOIN_ID, "--seed", c.url(seedId),
    "--token-file", path.join(c.dir("n1"), "admin.token"), "--port", String(port)];
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: process.env, stdio: ["ignore", "pipe", "pipe"] });
  spawned.add(child);
  const exited = exitOf(child);
  void exited.then(() => spawned.delete(child));
  const lines: string[] = [`$ ${process.execPath} ${args.join(" ")}`];
  const push = (l: string): void => {
    lines.push(l);
    if (lines.length > OUTPUT_LINES_MAX) lines.splice(1, 1);
  };
  readline.createInterface({ input: child.stderr! }).on("line", (l) => push(`[stderr] ${l}`));
  const joined = new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on("line", (l) => {
      push(l);
      if (l.startsWith("joined: ")) resolve(l.slice("joined: ".length));
    });
    void exited.then((s) => reject(new Error(`join exited (code ${s.code}, signal ${s.signal}) before printing "joined"`)));
  });
  joined.catch(() => undefined); // observed by the test; an exit after success is not an error here
  return { child, dir, port, url: `http://127.0.0.1:${port}`, lines, joined, exited };
}

/** Resolves with p's value, or rejects after timeoutMs naming what did not happen. */
async function within<T>(what: string, p: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs); })]);
  } finally {
    clearTimeout(timer);
  }
}

const payloadKey = (e: EntryJson): string | null => {
  if (e.kind !== "record") return null;
  const v = JSON.parse(Buffer.from(e.payload_b64, "base64").toString("utf8")) as { idempotency_key?: unknown };
  return typeof v.idempotency_key === "string" ? v.idempotency_key : null;
};

test("a 4th node joins and votes, then a node is removed, both under write load, losing nothing acknowledged", () => {
  const c = cluster as TestCluster;
  const joinRoot = makeTempDir();
  return withFailureContext(context, [c.root, joinRoot], async () => {
    const rnd = prng(SEED);
    const nodeUrl = new Map(c.ids.map((id) => [id, c.url(id)]));
    let liveUrls = [...nodeUrl.values()];
    const acks = new Map<string, AppendAck>();
    const pending = new Map<string, { subject: string; i: number }>(); // sent, answer unknown (an error)
    const errors: string[] = [];
    let stop = false;

    // The load: WRITERS clients, each writing continuously with unique idempotency keys (bounded).
    const body = (subject: string, i: number) => ({ type: "policy.set", subject, data: { name: `v${i}`, value: i } });
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; i < WRITES_PER_WRITER_MAX && !stop; i++) {
        const key = `mem-${SEED}-w${w}-${i}`;
        const subject = `w${w}`;
        const client = new LedgerClient({ urls: liveUrls, token: c.token });
        try {
          acks.set(key, await client.append(body(subject, i), key));
        } catch (err) {
          pending.set(key, { subject, i });
          if (errors.length < 20) errors.push(`${key}: ${(err as Error).message}`);
        }
      }
    };
    const load = Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
    const ackedAtLeast = (n: number, what: string) =>
      pollUntil(`${n} writes acknowledged (${what})`, async () => (acks.size >= n ? true : undefined), 600, 50);

    try {
      const leader = await c.leader();
      await ackedAtLeast(40, "before the join");

      // Join a 4th node, as a real `resonetics join` process, while the load runs.
      const port = await freePortRange(1);
      const dir = path.join(joinRoot, JOIN_ID);
      const seedId = c.ids[Math.floor(rnd() * c.ids.length)];
      note(`leader ${leader}; ${JOIN_ID} joins through ${seedId} on port ${port}, dir ${dir}`);
      joiner = spawnJoin(c, seedId, dir, port);
      const j = joiner;
      const joinedJson = JSON.parse(await within(`${JOIN_ID} printed "joined"`, j.joined, 90_000)) as { id: string; voters: string[] };
      note(`joined: ${JSON.stringify(joinedJson)} at ${acks.size} acks`);
      expect(joinedJson.id).toBe(JOIN_ID);
      expect(joinedJson.voters).toContain(JOIN_ID);
      nodeUrl.set(JOIN_ID, j.url);
      liveUrls = [...nodeUrl.values()];

      // Every node, the new one included, lists it among the voters; it catches up with the leader.
      const four = [...c.ids, JOIN_ID].sort();
      const statusOf = (id: string) => getJson<StatusJson>(nodeUrl.get(id) as string, "/v1/status");
      await pollUntil(`voters ${four} on every node`, async () => {
        const st = await Promise.all(four.map((id) => statusOf(id).catch(() => null)));
        return st.every((s) => s !== null && [...s.voters].sort().join() === four.join() && s.learners.length === 0) ? true : undefined;
      }, 200, 50);
      const lead4 = await pollUntil("a leader all four agree on", async () => {
        const st = await Promise.all(four.map((id) => statusOf(id).catch(() => null)));
        const l = st.find((s) => s?.role === "leader");
        return l !== undefined && l !== null && st.every((s) => s?.leader === l.node_id && s.term === l.term) ? l : undefined;
      }, 200, 50);
      const target = lead4.last_applied;
      await pollUntil(`${JOIN_ID} applied ${target}`, async () => ((await statusOf(JOIN_ID)).last_applied >= target ? true : undefined), 400, 50);
      const cfg = await getJson<{ voters: Array<{ id: string; address: string }> }>(nodeUrl.get(lead4.node_id) as string, "/v1/admin/config");
      expect(cfg.voters.find((m) => m.id === JOIN_ID)?.address).toBe(`127.0.0.1:${port}`);
      const ackedAtJoin = acks.size;
      await ackedAtLeast(ackedAtJoin + 40, "with four voters");

      // The new node votes: kill -9 the leader (another node if it is the new one). Of four voters
      // three remain, and an election needs three votes, so the next leader has the new node's
      // vote; every later commit needs its acknowledgement too.
      const lead = await pollUntil("the current leader", async () => (await statusOf(JOIN_ID)).leader ?? undefined, 200, 50);
      const down = lead !== JOIN_ID ? lead : c.ids[Math.floor(rnd() * c.ids.length)];
      const downStatus = await statusOf(down);
      liveUrls = four.filter((id) => id !== down).map((id) => nodeUrl.get(id) as string);
      await c.kill9(down);
      const alive = four.filter((id) => id !== down);
      const elected = await pollUntil(`a leader elected by ${alive}`, async () => {
        const st = await Promise.all(alive.map((id) => statusOf(id).catch(() => null)));
        const l = st.find((s) => s?.role === "leader" && s.term > downStatus.term);
        return l !== undefined && l !== null && st.every((s) => s?.leader === l.node_id && s.term === l.term) ? l : undefined;
      }, 400, 50);
      note(`killed ${down} (term ${downStatus.term}); ${elected.node_id} elected in term ${elected.term} by ${alive}`);
      const ackedWithoutDown = acks.size;
      await ackedAtLeast(ackedWithoutDown + 30, `${down} down: every commit needs ${JOIN_ID}`);
      const afterDown = [...acks.values()].filter((a) => a.term >= elected.term).length;
      expect(afterDown).toBeGreaterThanOrEqual(1);
      await c.startNode(down);
      liveUrls = four.map((id) => nodeUrl.get(id) as string);
      const caughtUp = (await statusOf(elected.node_id)).last_applied;
      await pollUntil(`${down} restarted and applied ${caughtUp}`, async () => ((await statusOf(down).catch(() => null))?.last_applied ?? 0) >= caughtUp ? true : undefined, 400, 50);

      // Remove a node (n3 or the new one, chosen by the seed) under load.
      const victim = rnd() < 0.5 ? "n3" : JOIN_ID;
      const remaining = four.filter((id) => id !== victim);
      const currentLeader = (await statusOf(remaining[0])).leader;
      note(`removing ${victim} (leader is ${currentLeader}) at ${acks.size} acks`);
      liveUrls = remaining.map((id) => nodeUrl.get(id) as string);
      const admin = new LedgerClient({ urls: liveUrls, token: c.token, timeoutMs: 30_000 });
      const removed = (await admin.request("DELETE", `/v1/admin/members/${victim}`)) as { id: string; index: number; voters: string[] };
      note(`removed: ${JSON.stringify(removed)}`);
      expect([...removed.voters].sort()).toEqual(remaining);
      await pollUntil(`voters ${remaining} on every remaining node`, async () => {
        const st = await Promise.all(remaining.map((id) => statusOf(id).catch(() => null)));
        return st.every((s) => s !== null && [...s.voters].sort().join() === remaining.join()) ? true : undefined;
      }, 200, 50);
      note(`voters updated on ${remaining}`);
      if (victim === JOIN_ID) await stopChild(j.child, 5000);
      else await c.stopNode(victim);
      const ackedAtRemoval = acks.size;
      note(`${victim} stopped at ${ackedAtRemoval} acks`);
      await ackedAtLeast(ackedAtRemoval + 40, "after the removal");
    } finally {
      stop = true;
      await load;
    }
    note(`load done: ${acks.size} acked, ${pending.size} unanswered; errors: ${errors.join(" | ")}`);

    // Writes whose answer was an error: a retry with the same key returns the original result
    // (it was kept) or makes it now; either way it is then acknowledged, exactly once.
    const retry = new LedgerClient({ urls: liveUrls, token: c.token });
    for (const [key, p] of pending) acks.set(key, await retry.append(body(p.subject, p.i), key));

    // Identical entries on the remaining nodes; every acknowledgement at its index with its hash.
    const remainingIds = [...nodeUrl.keys()].filter((id) => liveUrls.includes(nodeUrl.get(id) as string));
    const last = Math.max(...[...acks.values()].map((a) => a.index));
    await pollUntil(`remaining nodes applied ${last}`, async () => {
      const st = await Promise.all(remainingIds.map((id) => getJson<StatusJson>(nodeUrl.get(id) as string, "/v1/status").catch(() => null)));
      return st.every((s) => s !== null && s.last_applied >= last) ? true : undefined;
    }, 400, 50);
    const logs = await Promise.all(remainingIds.map((id) =>
      mapPool(Array.from({ length: last }, (_, i) => i + 1), 16, (i) => getJson<EntryJson>(nodeUrl.get(id) as string, `/v1/records/${i}?consistency=local`))));
    for (let k = 1; k < logs.length; k++) expect({ node: remainingIds[k], log: logs[k] }).toEqual({ node: remainingIds[k], log: logs[0] });
    const log = logs[0];
    const keys = log.map(payloadKey);
    const lost: string[] = [];
    for (const [key, a] of acks) {
      if (log[a.index - 1]?.hash !== a.hash || keys[a.index - 1] !== key) lost.push(`${key} acked at ${a.index} ${a.hash}, log has ${keys[a.index - 1]} ${log[a.index - 1]?.hash}`);
    }
    expect(lost).toEqual([]);
    const counts = new Map<string, number>();
    for (const k of keys) if (k !== null) counts.set(k, (counts.get(k) ?? 0) + 1);
    expect([...counts].filter(([, n]) => n > 1)).toEqual([]);
    note(`compared ${last} entries on ${remainingIds}`);
    const configs = log.filter((e) => e.kind === "config").map((e) => e.index);
    expect(configs.length).toBe(4); // genesis, add learner, promote, remove

    // Offline: the remaining data dirs verify.
    await c.stopAll();
    if (joiner !== undefined) await stopChild(joiner.child, 5000);
    for (const id of remainingIds) {
      const d = id === JOIN_ID ? (joiner as Joiner).dir : c.dir(id);
      const v = await runVerifyChain(d);
      expect({ id, code: v.code, ok: parseJsonOutput(v.stdout)?.ok, err: v.code === 0 ? "" : v.stderr + v.stdout }).toEqual({ id, code: 0, ok: true, err: "" });
    }
  });
});
