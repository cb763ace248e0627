// Acceptance 5 of issue 2: kill -9 a real server in the middle of a stream of writes, 20 times, on
// one data dir. After every restart every acknowledged record is present with the same hash and
// the chain recomputes from genesis; at the end verify-chain exits 0 and the state equals a replay.
import { prng, testSeed } from "../support/independent";
import {
  AppendAck,
  EntryView,
  RecordBody,
  RootCache,
  checkChain,
  checkCheckpoints,
  fetchEntries,
  getStatus,
  isAppendAck,
  postRecord,
} from "../support/ledger-client";
import { Server, cleanupAll, http, makeTempDir, parseJsonOutput, runVerifyChain, startServer, withFailureContext } from "../support/server";

const ROUNDS = 20;
const WRITERS = 8;
const ACKS_PER_ROUND_MAX = 40;
const REQUESTS_PER_WRITER_PER_ROUND_MAX = 200;
const SEED = testSeed();
// Frequent checkpoints, so kills also land around checkpoint appends (flags read these variables).
const SERVER_ENV = { RESONETICS_CHECKPOINT_EVERY: "7", RESONETICS_CHECKPOINT_INTERVAL_MS: "50" };

interface Write {
  key: string;
  writer: number;
  body: RecordBody;
}

let dir = "";
let server: Server | undefined;
let round = -1;
const stats = { acked: 0, inFlightAtKill: 0, retriedKept: 0, retriedNew: 0, checkpoints: 0 };
const context = (): string =>
  `seed RESONETICS_SEED=${SEED} npx jest test/e2e/crash.test.ts (round ${round}); data dir ${dir}; ${JSON.stringify(stats)}\n` +
  (server ? server.output() : "(no server)");

afterAll(async () => {
  await cleanupAll();
}, 60_000);

/** Items of a subject-history answer, whatever the envelope: an array, or the first array field. */
function historyItems(json: unknown): Record<string, unknown>[] | null {
  if (Array.isArray(json)) return json as Record<string, unknown>[];
  if (json !== null && typeof json === "object") {
    const o = json as Record<string, unknown>;
    for (const k of ["records", "history", "entries", "items"]) if (Array.isArray(o[k])) return o[k] as Record<string, unknown>[];
  }
  return null;
}

const itemIndex = (item: Record<string, unknown>): unknown =>
  item.index ?? (item.entry as Record<string, unknown> | undefined)?.index ?? (item.record as Record<string, unknown> | undefined)?.index;

test(
  `kill -9 during a write stream, ${ROUNDS} rounds: nothing acknowledged is lost, the chain verifies, state = replay`,
  async () => {
    const rnd = prng(SEED);
    dir = makeTempDir();
    const acked = new Map<string, AppendAck & { write: Write }>(); // by idempotency key
    let pending = new Map<string, Write>(); // sent, never answered (in flight at the kill)
    const failures: string[] = [];
    let offlineSeen: { size: number; head: string } | null = null; // what verify-chain read after a kill

    /** Every acknowledged (index, hash) is in the log, the chain recomputes, nothing is acked twice. */
    const checkDurable = async (s: Server, when: string): Promise<EntryView[]> => {
      const st = await getStatus(s.baseUrl);
      const entries = await fetchEntries(s.baseUrl, st.commit_index);
      const { problems, hashes, leaves } = checkChain(entries, st.cluster);
      for (const p of problems.slice(0, 5)) failures.push(`${when}: ${p}`);
      const cpProblems = problems.length > 0 ? [] : checkCheckpoints(entries, hashes, new RootCache(leaves), st.cluster, st.public_key);
      for (const p of cpProblems.slice(0, 5)) failures.push(`${when}: ${p}`);
      stats.checkpoints = entries.filter((e) => e.kind === "checkpoint").length;
      const byIndex = new Map<number, string>();
      for (const [key, a] of acked) {
        const e = entries[a.index - 1];
        if (e === undefined) failures.push(`${when}: acknowledged ${key} at index ${a.index} is missing (commit_index ${st.commit_index})`);
        else if (e.hash !== a.hash || e.kind !== "record") failures.push(`${when}: index ${a.index} is ${e.kind} ${e.hash}, acknowledged ${a.hash} for ${key}`);
        const other = byIndex.get(a.index);
        if (other !== undefined) failures.push(`${when}: keys ${other} and ${key} were both acknowledged at index ${a.index}`);
        byIndex.set(a.index, key);
      }
      if (st.head !== entries[entries.length - 1]?.hash) failures.push(`${when}: status head ${st.head} != hash of entry ${st.commit_index}`);
      if (offlineSeen !== null) {
        const e = entries[offlineSeen.size - 1];
        if (e?.hash !== offlineSeen.head) failures.push(`${when}: verify-chain saw entry ${offlineSeen.size} = ${offlineSeen.head} on disk, the server serves ${e?.hash}`);
        offlineSeen = null;
      }
      // Applied state survived too: each writer's subject history holds every acknowledged record.
      for (let w = 0; w < WRITERS; w++) {
        const want = [...acked.values()].filter((a) => a.write.writer === w).map((a) => a.index);
        if (want.length === 0) continue;
        const r = await http(s.baseUrl, "GET", `/v1/subjects/crash-w${w}/history`);
        const items = r.status === 200 ? historyItems(r.json) : null;
        if (items === null) {
          failures.push(`${when}: GET /v1/subjects/crash-w${w}/history → ${r.status} ${r.text.slice(0, 200)}`);
          continue;
        }
        const have = new Set(items.map(itemIndex));
        const lost = want.filter((i) => !have.has(i));
        if (lost.length > 0) failures.push(`${when}: history of crash-w${w} lacks acknowledged indices ${JSON.stringify(lost.slice(0, 10))}`);
      }
      return entries;
    };

    /** Resends every unanswered write with its own key: 200 = it was kept (original result), 201 = it was not. */
    const resolvePending = async (s: Server, when: string): Promise<void> => {
      for (const w of pending.values()) {
        const r = await postRecord(s.baseUrl, s.token, w.body, w.key);
        if ((r.status === 200 || r.status === 201) && isAppendAck(r.json)) {
          acked.set(w.key, { ...r.json, write: w });
          if (r.status === 200) stats.retriedKept++;
          else stats.retriedNew++;
        } else failures.push(`${when}: retry of ${w.key} → ${r.status} ${r.text.slice(0, 200)} (expected 200 or 201 with {index, term, hash})`);
      }
      pending = new Map();
    };

    await withFailureContext(context, [dir], async () => {
      for (round = 0; round < ROUNDS; round++) {
        server = await startServer(dir, { env: SERVER_ENV });
        const s = server;
        await checkDurable(s, `after restart ${round}`);
        await resolvePending(s, `after restart ${round}`);
        // The dedup table survived too: a retry of an acknowledged write returns its original result.
        const ackedKeys = [...acked.keys()];
        for (let i = 0; i < Math.min(3, ackedKeys.length); i++) {
          const a = acked.get(ackedKeys[Math.floor(rnd() * ackedKeys.length)])!;
          const r = await postRecord(s.baseUrl, s.token, a.write.body, a.write.key);
          const want = { index: a.index, term: a.term, hash: a.hash };
          if (r.status !== 200 || JSON.stringify(r.json) !== JSON.stringify(want)) {
            failures.push(`after restart ${round}: retry of acknowledged ${a.write.key} → ${r.status} ${r.text.slice(0, 200)} (expected 200 ${JSON.stringify(want)})`);
          }
        }
        expect(failures).toEqual([]);

        const killAfter = 1 + Math.floor(rnd() * ACKS_PER_ROUND_MAX);
        let acksThisRound = 0;
        let killing: Promise<unknown> | null = null;
        const kill = (): void => {
          if (killing === null) killing = s.kill9();
        };
        const writer = async (w: number): Promise<void> => {
          for (let seq = 0; seq < REQUESTS_PER_WRITER_PER_ROUND_MAX && killing === null; seq++) {
            const write: Write = {
              key: `crash-${SEED}-r${round}-w${w}-${seq}`,
              writer: w,
              body: { type: "policy.set", subject: `crash-w${w}`, data: { name: `r${round}-w${w}-${seq}`, value: seq } },
            };
            pending.set(write.key, write);
            let r;
            try {
              r = await postRecord(s.baseUrl, s.token, write.body, write.key);
            } catch (e) {
              if (killing === null) failures.push(`round ${round}: POST ${write.key} failed before any kill: ${(e as Error).message}`);
              return; // the server is gone: this write stays pending
            }
            if (r.status === 201 && isAppendAck(r.json)) {
              pending.delete(write.key);
              acked.set(write.key, { ...r.json, write });
              acksThisRound++;
              if (acksThisRound >= killAfter) kill();
            } else {
              failures.push(`round ${round}: POST ${write.key} → ${r.status} ${r.text.slice(0, 200)} (expected 201)`);
              kill();
              return;
            }
          }
        };
        await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
        kill(); // bounded loops may end first; the round still ends in a kill -9
        await killing;
        stats.inFlightAtKill += pending.size;
        expect(failures).toEqual([]);
        if (round % 7 === 3) {
          // The offline verifier works on the data dir exactly as kill -9 left it (WAL not checkpointed).
          const v = await runVerifyChain(dir);
          const report = parseJsonOutput(v.stdout);
          if (process.env.RESONETICS_TEST_VERBOSE) process.stderr.write(`verify-chain after kill ${round}: ${v.code} ${v.stdout.slice(0, 300)}\n`);
          expect({ round, code: v.code, ok: report?.ok, stderr: v.code === 0 ? "" : v.stderr.slice(-2000) }).toEqual({ round, code: 0, ok: true, stderr: "" });
          // When the report names its size and head: it saw every acknowledged write, and the
          // restarted server must serve exactly that prefix (checked in checkDurable).
          if (typeof report?.size === "number" && typeof report?.head === "string") {
            const maxAcked = Math.max(...[...acked.values()].map((a) => a.index));
            expect({ round, offlineSize: report.size >= maxAcked }).toEqual({ round, offlineSize: true });
            offlineSeen = { size: report.size, head: report.head };
          }
        }
      }

      round = ROUNDS;
      server = await startServer(dir, { env: SERVER_ENV });
      const s = server;
      await checkDurable(s, "after the last restart");
      await resolvePending(s, "after the last restart");
      const entries = await checkDurable(s, "after resolving in-flight writes");
      expect(failures).toEqual([]);

      // No phantom and no duplicate: the records in the log are exactly the acknowledged writes.
      const logged = entries
        .filter((e) => e.kind === "record")
        .map((e) => {
          const p = JSON.parse(Buffer.from(e.payload_b64, "base64").toString("utf8")) as { data?: { name?: string } };
          return `${e.index}:${p.data?.name}`;
        })
        .sort();
      const expected = [...acked.values()].map((a) => `${a.index}:${String(a.write.body.data.name)}`).sort();
      expect(logged).toEqual(expected);
      stats.acked = acked.size;
      expect(acked.size).toBeGreaterThanOrEqual(ROUNDS);
      // The kills really hit a stream: some writes were in flight (each was then resolved above).
      expect(stats.inFlightAtKill).toBeGreaterThan(0);
      if (process.env.RESONETICS_TEST_VERBOSE) process.stderr.write(`crash test seed ${SEED}: ${JSON.stringify(stats)}\n`);

      // State = replay: the server's own replay report when the route exists, and the subject
      // histories list exactly the acknowledged records of each writer, in index order.
      const audit = await http(s.baseUrl, "GET", "/v1/audit/verify?from=genesis");
      if (process.env.RESONETICS_TEST_VERBOSE) process.stderr.write(`audit/verify: ${audit.status} ${audit.text.slice(0, 300)}\n`);
      if (audit.status !== 404) {
        expect({ status: audit.status, ok: (audit.json as { ok?: unknown } | undefined)?.ok }).toEqual({ status: 200, ok: true });
      }
      for (let w = 0; w < WRITERS; w++) {
        const want = [...acked.values()].filter((a) => a.write.writer === w).map((a) => a.index).sort((x, y) => x - y);
        const r = await http(s.baseUrl, "GET", `/v1/subjects/crash-w${w}/history`);
        if (want.length === 0) {
          expect([200, 404]).toContain(r.status);
          continue;
        }
        expect({ status: r.status, url: `/v1/subjects/crash-w${w}/history` }).toEqual({ status: 200, url: `/v1/subjects/crash-w${w}/history` });
        const items = historyItems(r.json);
        if (items === null) throw new Error(`GET /v1/subjects/crash-w${w}/history: no list of records in ${r.text.slice(0, 300)}`);
        expect(items.map(itemIndex)).toEqual(want);
      }

      const exit = await s.stop();
      expect(exit.forced).toBe(false);
      const v = await runVerifyChain(dir);
      const report = parseJsonOutput(v.stdout);
      expect({ code: v.code, ok: report?.ok, stderr: v.code === 0 ? "" : v.stderr.slice(-2000) }).toEqual({ code: 0, ok: true, stderr: "" });
      // The server's replay and the offline verifier's replay agree on the state of the same prefix.
      const a = audit.json as { size?: unknown; state_root?: unknown } | undefined;
      if (a?.size !== undefined && a.size === report?.size && typeof a.state_root === "string") {
        expect(report?.state_root).toBe(a.state_root);
      }
    });
  },
  300_000,
);
