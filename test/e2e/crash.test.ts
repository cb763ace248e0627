// Acceptance 5 of issue 2: kill -9 a real server in the middle of a stream of writes, 20 times, on
// one data dir. After every restart every acknowledged record is present with the same hash and
// the chain recomputes from genesis; at the end verify-chain exits 0 and the state equals a replay.
import * as path from "node:path";
import Database from "better-sqlite3";
import { IndState, RawLogRow, bufToHex, prng, replayLog, stateRootOfState, testSeed } from "../support/independent";
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
  historyAll,
  postRecord,
} from "../support/ledger-client";
import { Server, cleanupAll, http, makeTempDir, parseJsonOutput, pollUntil, runVerifyChain, startServer, withFailureContext } from "../support/server";

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

/** What the data dir holds, read with better-sqlite3 (not src/): the raw log and the state tables. */
interface OnDisk {
  clusterId: string;
  lastApplied: number;
  rows: RawLogRow[];
  anchors: number;
  subjects: Array<{ subject: string; version: number; head: string; lastIndex: number }>;
  records: Record<string, number[]>;
  dedup: Array<{ key: string; digest: string; index: number; term: number; hash: string }>;
}

function readOnDisk(dataDir: string): OnDisk {
  const db = new Database(path.join(dataDir, "ledger.db"), { readonly: true, fileMustExist: true });
  try {
    const meta = db.prepare("SELECT value FROM meta WHERE key = 'cluster_id'").get() as { value: string } | undefined;
    if (meta === undefined) throw new Error(`${dataDir}: no cluster_id in meta`);
    const hard = db.prepare("SELECT last_applied FROM hard_state WHERE id = 1").get() as { last_applied: number };
    const rows = db.prepare("SELECT idx, term, kind, payload, hash FROM log ORDER BY idx").all() as RawLogRow[];
    const anchors = (db.prepare("SELECT count(*) AS n FROM log_anchor").get() as { n: number }).n;
    const subjects = (db.prepare("SELECT subject, version, head, last_index FROM subjects").all() as Array<{ subject: string; version: number; head: Buffer; last_index: number }>)
      .map((r) => ({ subject: r.subject, version: r.version, head: bufToHex(r.head), lastIndex: r.last_index }));
    const records: Record<string, number[]> = {};
    for (const r of db.prepare("SELECT subject, idx FROM subject_records ORDER BY subject, version").all() as Array<{ subject: string; idx: number }>) {
      (records[r.subject] ??= []).push(r.idx);
    }
    const dedup = (db.prepare("SELECT key, digest, idx, term, hash FROM dedup").all() as Array<{ key: string; digest: string; idx: number; term: number; hash: Buffer }>)
      .map((r) => ({ key: r.key, digest: r.digest, index: r.idx, term: r.term, hash: bufToHex(r.hash) }));
    return { clusterId: meta.value, lastApplied: hard.last_applied, rows, anchors, subjects, records, dedup };
  } finally {
    db.close();
  }
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const bySubject = <T extends { subject: string }>(rows: T[]): T[] => [...rows].sort((a, b) => byText(a.subject, b.subject));
const byKey = <T extends { key: string }>(rows: T[]): T[] => [...rows].sort((a, b) => byText(a.key, b.key));

/** A replayed state in the shape of OnDisk's tables. */
const tablesOf = (s: IndState): Pick<OnDisk, "subjects" | "records" | "dedup"> => ({
  subjects: bySubject([...s.subjects.values()].map((r) => ({ subject: r.subject, version: r.version, head: bufToHex(r.head), lastIndex: r.lastIndex }))),
  records: Object.fromEntries([...s.records].sort(([x], [y]) => byText(x, y))),
  dedup: byKey([...s.dedup.values()].map((d) => ({ key: d.key, digest: d.digest, index: d.index, term: d.term, hash: bufToHex(d.hash) }))),
});

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
      // Quiescent first: a Ready may end a turn between storing an entry (head) and committing it.
      // A node whose head never settles on its committed log fails here.
      const st = await pollUntil("status.head = the hash of the entry at commit_index", async () => {
        const x = await getStatus(s.baseUrl);
        const e = await http(s.baseUrl, "GET", `/v1/records/${x.commit_index}?consistency=local`);
        return e.status === 200 && (e.json as { hash?: unknown }).hash === x.head ? x : undefined;
      });
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
        const r = await historyAll(s.baseUrl, `crash-w${w}`);
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
          // The report names its size and head: it saw every acknowledged write, and the restarted
          // server must serve exactly that prefix (checked in checkDurable).
          expect({ round, size: typeof report?.size, head: typeof report?.head }).toEqual({ round, size: "number", head: "string" });
          const offline = report as { size: number; head: string };
          const maxAcked = Math.max(0, ...[...acked.values()].map((a) => a.index));
          expect({ round, acked: acked.size > 0, offlineSize: offline.size >= maxAcked }).toEqual({ round, acked: true, offlineSize: true });
          offlineSeen = { size: offline.size, head: offline.head };
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

      // State = replay, part 1: the server's own replay agrees with its state tables, and the
      // subject histories list exactly the acknowledged records of each writer, in index order.
      const audit = await http(s.baseUrl, "GET", "/v1/audit/verify?from=genesis", { token: s.token });
      if (process.env.RESONETICS_TEST_VERBOSE) process.stderr.write(`audit/verify: ${audit.status} ${audit.text.slice(0, 300)}\n`);
      const a = (audit.json ?? {}) as { ok?: unknown; state_root?: unknown; state_root_live?: unknown };
      expect({ status: audit.status, ok: a.ok, rootIsHex: /^[0-9a-f]{64}$/.test(String(a.state_root)), live: a.state_root_live }).toEqual({
        status: 200,
        ok: true,
        rootIsHex: true,
        live: a.state_root,
      });
      for (let w = 0; w < WRITERS; w++) {
        const want = [...acked.values()].filter((a) => a.write.writer === w).map((a) => a.index).sort((x, y) => x - y);
        const r = await historyAll(s.baseUrl, `crash-w${w}`);
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
      // State = replay, part 2, against code that shares nothing with src/: replay the raw log
      // rows with test/support/independent.ts and compare with the state tables on disk, the
      // offline verifier's state_root and the server's. No record was written after the audit
      // (only checkpoints may follow, which change no state), so all the roots must be equal.
      const disk = readOnDisk(dir);
      // The whole history is on disk (no compaction), and whatever was not applied before the
      // stop is no record (a clean stop may leave a last checkpoint unapplied; it changes no state).
      const unappliedRecords = disk.rows.filter((r) => r.idx > disk.lastApplied && r.kind === 1).map((r) => r.idx);
      expect({ anchors: disk.anchors, firstIndex: disk.rows[0]?.idx, size: report?.size, unappliedRecords }).toEqual({
        anchors: 0,
        firstIndex: 1,
        size: disk.rows.length,
        unappliedRecords: [],
      });
      const replayed = replayLog(disk.rows, disk.clusterId);
      const independentRoot = bufToHex(stateRootOfState(replayed));
      expect(tablesOf(replayed)).toEqual({ subjects: bySubject(disk.subjects), records: disk.records, dedup: byKey(disk.dedup) });
      expect({ verifyChain: report?.state_root, server: a.state_root }).toEqual({ verifyChain: independentRoot, server: independentRoot });
      // And the replay holds exactly the acknowledged writes: one dedup row per key, one version each.
      expect([...replayed.dedup.keys()].sort()).toEqual([...acked.keys()].sort());
      for (let w = 0; w < WRITERS; w++) {
        const want = [...acked.values()].filter((x) => x.write.writer === w).map((x) => x.index).sort((x, y) => x - y);
        expect({ subject: `crash-w${w}`, indices: replayed.records.get(`crash-w${w}`) ?? [] }).toEqual({ subject: `crash-w${w}`, indices: want });
      }
    });
  },
  300_000,
);
