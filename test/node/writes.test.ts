// Issue 9: the leader's write bounds, in process. Appends issued in one turn all reach the bound
// check before anything commits, so which are admitted is exact: the first maxPendingWrites (or as
// many as fit in maxUncommittedBytes), and every other one is refused at once with 503 "overloaded"
// — before anything is proposed — while the admitted ones commit. Afterwards the counters are back
// to zero and the node writes again.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import pino from "pino";
import { openDataDir } from "../../src/node/data-dir";
import { RaftLedgerNode, RaftNodeOptions } from "../../src/node/raft-node";
import { LedgerError } from "../../src/util/errors";
import { encodeRecord } from "../../src/ledger/record";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const base = {
  tickMs: 5, electionTick: 10, heartbeatTick: 2, checkpointEvery: 1000, checkpointIntervalMs: 3_600_000, snapshotEvery: 0,
  writeTimeoutMs: 10_000, now: () => new Date(Date.parse("2026-01-01T00:00:00Z")), logger: pino({ level: "silent" }),
};

async function open(extra: Partial<RaftNodeOptions>): Promise<RaftLedgerNode> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-writes-"));
  dirs.push(dir);
  const node = new RaftLedgerNode(openDataDir(dir, "127.0.0.1:0"), { ...base, ...extra });
  await node.leaderKnown();
  return node;
}

const rec = (i: number) => ({ type: "policy.set", subject: `s${i}`, data: { name: "n", value: i } });

/** Settles every promise; returns the fulfilled indices and the refusals' codes and reasons. */
async function outcomes(ps: Array<Promise<{ index: number }>>): Promise<{ ok: number[]; refused: Array<{ code: string; reason: unknown }> }> {
  const all = await Promise.allSettled(ps);
  const ok: number[] = [];
  const refused: Array<{ code: string; reason: unknown }> = [];
  for (const r of all) {
    if (r.status === "fulfilled") ok.push(r.value.index);
    else if (r.reason instanceof LedgerError) refused.push({ code: r.reason.code, reason: r.reason.details?.reason });
    else throw r.reason;
  }
  return { ok, refused };
}

describe("write bounds (503 overloaded at once)", () => {
  test("maxPendingWrites: the first N of one turn are admitted and commit, the rest are refused before proposing", async () => {
    const node = await open({ maxPendingWrites: 4 });
    try {
      const before = node.reader.lastApplied();
      const ps = Array.from({ length: 20 }, (_, i) => node.writes.append(rec(i)));
      expect(node.figures().pendingWrites).toBe(4);
      const { ok, refused } = await outcomes(ps);
      expect(ok).toHaveLength(4);
      expect(refused).toHaveLength(16);
      expect(refused.every((r) => r.code === "unavailable" && r.reason === "overloaded")).toBe(true);
      // Nothing of the refused ones reached the log: exactly the 4 records (and maybe a checkpoint) follow.
      const records = Array.from({ length: node.reader.lastApplied() - before }, (_, i) => node.reader.entry(before + 1 + i)).filter((e) => e.kind === 1);
      expect(records.map((e) => e.index).sort((a, b) => a - b)).toEqual([...ok].sort((a, b) => a - b));
      expect(node.figures()).toMatchObject({ pendingWrites: 0, uncommittedBytes: 0, writesRefused: 16 });
      // The bound is a bound, not a latch: the next write goes through.
      await expect(node.writes.append(rec(99))).resolves.toMatchObject({ duplicate: false });
    } finally {
      await node.close();
    }
  });

  test("maxUncommittedBytes: admitted while the proposed payload bytes fit, refused past it", async () => {
    // The stamped payload of rec(i) is the same length for i = 10..19 (two digits each).
    const size = encodeRecord({ v: 1, ...rec(10), ts: "2026-01-01T00:00:00.000Z" }).length;
    const node = await open({ maxUncommittedBytes: size * 3 + size / 2 });
    try {
      const ps = Array.from({ length: 10 }, (_, i) => node.writes.append(rec(10 + i)));
      expect(node.figures().uncommittedBytes).toBe(size * 3);
      const { ok, refused } = await outcomes(ps);
      expect(ok).toHaveLength(3);
      expect(refused).toEqual(Array.from({ length: 7 }, () => ({ code: "unavailable", reason: "overloaded" })));
      expect(node.figures()).toMatchObject({ pendingWrites: 0, uncommittedBytes: 0 });
    } finally {
      await node.close();
    }
  });

  test("closing fails every waiting write with 503 and leaves no bytes counted", async () => {
    const node = await open({});
    const ps = Array.from({ length: 8 }, (_, i) => node.writes.append(rec(i)));
    const closing = node.close();
    const { refused } = await outcomes(ps);
    await closing;
    // Some may have committed in the Ready that close lets finish; none is left waiting.
    expect(refused.every((r) => r.code === "unavailable")).toBe(true);
    expect(node.figures()).toMatchObject({ pendingWrites: 0, uncommittedBytes: 0 });
  });
});
