// Issue 10, acceptance 6: time in the log never runs backwards. Two of three nodes run under
// libfaketime an hour behind (LD_PRELOAD; the monotonic clock is left alone so timers work), and the
// leader is killed -9 round after round, each round writing records under whoever leads. When the
// one node with the right clock has led and a slow one takes over, the slow one must stamp the
// log's time, not its own: every record's and checkpoint's ts is >= the one before it in the log.
// An in-process case checks the same across a restart with a clock set back.
import * as fs from "node:fs";
import pino from "pino";
import { TestCluster } from "../support/cluster";
import { fetchEntries, postRecord } from "../support/ledger-client";
import { cleanupAll, makeTempDir, pollUntil, withFailureContext } from "../support/server";
import { openDataDir } from "../../src/node/data-dir";
import { RaftLedgerNode } from "../../src/node/raft-node";

jest.setTimeout(240_000);

/** Debian's libfaketime (.ci/run installs the faketime package). */
const FAKETIME_LIBS = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"];
const SKEWED = new Set(["n2", "n3"]);
const SKEW = "-3600"; // seconds: an hour behind
/** Rounds of kill -9 of the leader at most; the test stops once a slow node took over from the right clock. */
const ROUNDS_MAX = 20;
const RECORDS_PER_ROUND = 5;

const clusters: TestCluster[] = [];
afterAll(async () => {
  await Promise.all(clusters.map((c) => c.stopAll()));
  await cleanupAll();
}, 60_000);

interface Stamped {
  readonly index: number;
  readonly kind: string;
  readonly ts: string;
}

/** Each record's and checkpoint's ts (read from the exact payload bytes), in log order, with the first place it went backwards (or null). */
function backwards(entries: ReadonlyArray<{ index: number; kind: string; payload: Uint8Array }>): { stamped: Stamped[]; firstBack: string | null } {
  const stamped: Stamped[] = [];
  for (const e of entries) {
    if (e.kind !== "record" && e.kind !== "checkpoint") continue;
    const ts = (JSON.parse(Buffer.from(e.payload).toString("utf8")) as { ts?: unknown }).ts;
    if (typeof ts !== "string") throw new Error(`${e.kind} at ${e.index} has no ts`);
    stamped.push({ index: e.index, kind: e.kind, ts });
  }
  for (let i = 1; i < stamped.length; i++) {
    if (Date.parse(stamped[i].ts) < Date.parse(stamped[i - 1].ts)) {
      return { stamped, firstBack: `${stamped[i].kind} at ${stamped[i].index} ts ${stamped[i].ts} < ${stamped[i - 1].kind} at ${stamped[i - 1].index} ts ${stamped[i - 1].ts}` };
    }
  }
  return { stamped, firstBack: null };
}

describe("timestamps never decrease along the log", () => {
  test("across leader changes between a right clock and two an hour slow (libfaketime)", async () => {
    const lib = FAKETIME_LIBS.find((p) => fs.existsSync(p));
    if (lib === undefined) throw new Error(`libfaketime not found at ${FAKETIME_LIBS.join(", ")}: apt-get install faketime (.ci/run does)`);
    const c = await TestCluster.start(3, {
      serveArgs: ["--checkpoint-every", "7"],
      nodeEnv: (id): Record<string, string> => (SKEWED.has(id) ? { LD_PRELOAD: lib, FAKETIME: SKEW, FAKETIME_DONT_FAKE_MONOTONIC: "1" } : {}),
    });
    clusters.push(c);
    const leaders: string[] = [];
    await withFailureContext(() => `leaders by round: ${leaders.join(" → ")}; data under ${c.root}`, [c.root], async () => {
      let handedOver = false; // the right clock led, then a slow one wrote after it
      for (let round = 0; round < ROUNDS_MAX && !handedOver; round++) {
        const lead = await c.leader();
        if (leaders.length > 0 && !SKEWED.has(leaders[leaders.length - 1]) && SKEWED.has(lead)) handedOver = true;
        leaders.push(lead);
        for (let i = 0; i < RECORDS_PER_ROUND; i++) {
          const r = await postRecord(c.url(lead), c.token, { type: "policy.set", subject: `round-${round}`, data: { name: "n", value: i } }, `r${round}-${i}`);
          expect(r.status).toBe(201);
        }
        if (handedOver) break;
        // The next leader is elected among the other two, then the killed one comes back.
        await c.kill9(lead);
        await c.leader();
        await c.startNode(lead);
      }
      // Not vacuous: the transition that used to send time back an hour happened.
      expect({ handedOver, leaders }).toMatchObject({ handedOver: true });
      const lead = await c.leader();
      const st = await pollUntil("a settled commit index", async () => {
        const s = await c.status(lead);
        return s.last_applied > 0 ? s : undefined;
      });
      const entries = await fetchEntries(c.url(lead), st.last_applied);
      const { stamped, firstBack } = backwards(entries.map((e) => ({ index: e.index, kind: e.kind, payload: Buffer.from(e.payload_b64, "base64") })));
      expect(stamped.length).toBeGreaterThan(RECORDS_PER_ROUND * leaders.length);
      expect(firstBack).toBeNull();
    });
  });

  test("a restarted single node whose clock was set back an hour keeps stamping the log's time", async () => {
    const dir = makeTempDir();
    let clock = Date.parse("2026-06-01T12:00:00.000Z");
    const opts = {
      tickMs: 5, electionTick: 10, heartbeatTick: 2, checkpointEvery: 3, checkpointIntervalMs: 3_600_000, snapshotEvery: 0,
      writeTimeoutMs: 10_000, now: () => new Date(clock), logger: pino({ level: "silent" }),
    };
    const rec = (value: number) => ({ type: "policy.set", subject: "s", data: { name: "n", value } });
    let node = new RaftLedgerNode(openDataDir(dir, "127.0.0.1:0"), opts);
    await node.leaderKnown();
    for (let i = 0; i < 5; i++) await node.writes.append(rec(i));
    const before = node.reader.lastApplied();
    await node.close();
    clock -= 3_600_000;
    node = new RaftLedgerNode(openDataDir(dir, "127.0.0.1:0"), opts);
    try {
      await node.leaderKnown();
      for (let i = 5; i < 10; i++) await node.writes.append(rec(i));
      const all = Array.from({ length: node.reader.lastApplied() }, (_, i) => node.reader.entry(i + 1));
      const { stamped, firstBack } = backwards(all.map((e) => ({ index: e.index, kind: ["noop", "record", "config", "checkpoint"][e.kind], payload: e.payload })));
      expect(firstBack).toBeNull();
      // The records after the restart carry the log's last time, not the clock's (an hour earlier).
      const after = stamped.filter((s) => s.index > before && s.kind === "record");
      expect(after.length).toBe(5);
      for (const s of after) expect(Date.parse(s.ts)).toBeGreaterThanOrEqual(Date.parse("2026-06-01T12:00:00.000Z"));
      // And the node says its clock is behind the log.
      expect(node.figures().clockBehindLogSeconds).toBeGreaterThan(3500);
    } finally {
      await node.close();
    }
  });
});
