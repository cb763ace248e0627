// Issue 10: verifyChain from any retained snapshot anchor, in-process on a real data dir. A chain
// with three snapshots verifies from genesis and from each anchor to the same head, root and
// state_root; a start that is no anchor, or that a prune put out of reach, is a StartProblem naming
// the starts the data dir can serve (never a violation); a tampered entry after an anchor is still
// a violation at its index; a snapshot row holding another index's document is refused.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import pino from "pino";
import { openDataDir, DB_FILE } from "../../src/node/data-dir";
import { RaftLedgerNode } from "../../src/node/raft-node";
import { createSnapshot, cutPrunedHistory } from "../../src/node/snapshots";
import { Store } from "../../src/storage/store";
import { ChainSource, startProblem, verifyChain, VerifyReport } from "../../src/ledger/verify";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const logger = pino({ level: "silent" });
const rec = (s: string, v: number) => ({ type: "policy.set", subject: s, data: { name: "n", value: v } });

let dir = "";
let anchors: number[] = [];

/** A node that wrote 4 batches of records with a snapshot after each of the first 3 (no compaction). */
async function build(): Promise<void> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-vfrom-"));
  dirs.push(dir);
  anchors = [];
  const dd = openDataDir(dir, "127.0.0.1:0");
  const node = new RaftLedgerNode(dd, {
    tickMs: 5, electionTick: 10, heartbeatTick: 2, checkpointEvery: 9, checkpointIntervalMs: 3_600_000, snapshotEvery: 0,
    writeTimeoutMs: 10_000, now: () => new Date(0), logger,
  });
  await node.leaderKnown();
  for (let b = 0; b < 4; b++) {
    await Promise.all(Array.from({ length: 25 }, (_, i) => node.writes.append(rec(`s${(b * 25 + i) % 5}`, b * 25 + i), `k${b}-${i}`)));
    if (b < 3) anchors.push(createSnapshot(dd.store, { cluster: dd.clusterId, nodeId: dd.nodeId, secretKey: dd.key.secretKey, now: () => new Date(0) }).row.index);
  }
  await node.close();
}

const copyDir = (): string => {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-vfrom-c-"));
  dirs.push(copy);
  fs.cpSync(dir, copy, { recursive: true });
  return path.join(copy, DB_FILE);
};

// Built by the first test that needs it, inside that test (not in beforeAll): code run outside a
// test is "static" to Stryker's per-test coverage, and each static mutant reruns every test file.
let built: Promise<void> | undefined;
const fixture = (): Promise<void> => (built ??= build());

describe("verifyChain from a snapshot anchor", () => {
  test("from genesis and from each of three anchors: the same head, root and state_root; entries counted from the anchor", async () => {
    await fixture();
    const store = new Store(path.join(dir, DB_FILE), { readonly: true });
    try {
      expect(store.snapshotIndexes()).toEqual([...anchors].reverse());
      const pick = (r: VerifyReport) => ({ ok: r.ok, from: r.from, entries: r.entries, size: r.size, head: r.head, root: r.root, state_root: r.state_root, last_applied: r.last_applied });
      const g = pick(verifyChain(store));
      expect(g.ok).toBe(true);
      for (const a of anchors) {
        expect(startProblem(store, a)).toBeNull();
        expect(pick(verifyChain(store, { from: a }))).toEqual({ ...g, from: a, entries: g.size - a });
      }
      expect(pick(verifyChain(store, { from: "snapshot" }))).toEqual({ ...g, from: "snapshot", entries: g.size - anchors[2] });
    } finally {
      store.close();
    }
  });

  test("a start that is no anchor is a StartProblem listing genesis and every anchor", async () => {
    await fixture();
    const store = new Store(path.join(dir, DB_FILE), { readonly: true });
    try {
      const p = startProblem(store, anchors[1] + 1);
      expect(p).toEqual({ reason: expect.stringMatching(new RegExp(`^no snapshot is retained at ${anchors[1] + 1}; verify from=genesis or from=${anchors.join(" or from=")}$`)), possible: ["genesis", ...anchors] });
      expect(verifyChain(store, { from: anchors[1] + 1 })).toMatchObject({ ok: false, reason: "no snapshot to start from" });
      expect(startProblem(store, "genesis")).toBeNull();
    } finally {
      store.close();
    }
  });

  test("a tampered entry after an anchor is a violation at its index from that anchor; one before it is not seen from it", async () => {
    await fixture();
    const file = copyDir();
    const store = new Store(file);
    try {
      const after = anchors[1] + 3;
      const before = anchors[1] - 3;
      for (const i of [after, before]) store.db.prepare("UPDATE log SET payload = ? WHERE idx = ?").run(Buffer.from('{"v":1}'), i);
      expect(verifyChain(store, { from: anchors[1] })).toMatchObject({ ok: false, first_bad_index: after });
      expect(verifyChain(store, { from: anchors[0] })).toMatchObject({ ok: false, first_bad_index: before });
      expect(verifyChain(store, { from: anchors[2] }).ok).toBe(true);
    } finally {
      store.close();
    }
  });

  test("a snapshot row that holds another index's document is refused at that index", async () => {
    await fixture();
    const file = copyDir();
    const store = new Store(file);
    try {
      const other = store.snapshotBytesAt(anchors[0]) as Uint8Array;
      store.db.prepare("UPDATE snapshots SET data = ? WHERE idx = ?").run(Buffer.from(other), anchors[1]);
      expect(verifyChain(store, { from: anchors[1] })).toEqual(expect.objectContaining({
        ok: false, first_bad_index: anchors[1], reason: `the snapshot stored at ${anchors[1]} is a snapshot of index ${anchors[0]}`,
      }));
    } finally {
      store.close();
    }
  });

  test("after a prune below the middle anchor + 1: genesis and the first anchor are out of reach, the others verify", async () => {
    await fixture();
    const file = copyDir();
    const store = new Store(file);
    try {
      const below = anchors[1] + 1;
      store.setHistoryFrom(below);
      expect(cutPrunedHistory(store)).toBe(anchors[1]);
      expect(cutPrunedHistory(store)).toBeNull(); // idempotent
      expect(store.firstIndex()).toBe(anchors[1] + 1);
      expect(store.snapshotIndexes()).toEqual([anchors[2], anchors[1]]);
      const possible = [anchors[1], anchors[2]];
      expect(startProblem(store, "genesis")).toEqual({ reason: expect.stringContaining(`compacted up to ${anchors[1]}`), possible });
      expect(startProblem(store, anchors[0])).toEqual({ reason: expect.stringMatching(/^no snapshot is retained at/), possible });
      for (const a of possible) expect(verifyChain(store, { from: a })).toMatchObject({ ok: true, from: a });
    } finally {
      store.close();
    }
  });

  test("a prune not at an anchor: history_from alone puts genesis and the snapshots before it out of reach", async () => {
    await fixture();
    const file = copyDir();
    const store = new Store(file);
    try {
      // below = anchors[1] + 5: the cut goes back to anchors[1], history is served from below on.
      store.setHistoryFrom(anchors[1] + 5);
      expect(cutPrunedHistory(store)).toBe(anchors[1]);
      expect(startProblem(store, anchors[1])).toEqual({ reason: expect.stringMatching(new RegExp(`^history before ${anchors[1] + 5} is pruned`)), possible: [anchors[2]] });
      expect(startProblem(store, anchors[2])).toBeNull();
      store.db.prepare("DELETE FROM log_anchor").run(); // as if nothing was cut: history_from still rules out genesis
      expect(startProblem(store, "genesis")?.reason).toMatch(/history starts at \d+ \(a recorded prune\)/);
    } finally {
      store.close();
    }
  });

  test("a ChainSource without snapshot listing falls back to its latest snapshot", async () => {
    await fixture();
    const store = new Store(path.join(dir, DB_FILE), { readonly: true });
    try {
      const src: ChainSource = {
        getMeta: (k) => store.getMeta(k), hardState: () => store.hardState(), lastIndex: () => store.lastIndex(),
        entries: (a, b) => store.entries(a, b), findNode: (l, i) => store.findNode(l, i), checkpoints: (c) => store.checkpoints(c),
        allSubjects: () => store.allSubjects(), allSubjectRecords: () => store.allSubjectRecords(), allDedup: () => store.allDedup(),
        latestSnapshotBytes: () => store.latestSnapshotBytes(), anchor: () => store.anchor(),
      };
      expect(startProblem(src, anchors[2])).toBeNull();
      expect(startProblem(src, anchors[0])?.possible).toEqual(["genesis", anchors[2]]);
      expect(verifyChain(src, { from: anchors[2] }).ok).toBe(true);
    } finally {
      store.close();
    }
  });
});
