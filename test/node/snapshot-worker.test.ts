// Issue 9: snapshots are made off the consensus loop. A node with --snapshot-every 20 makes its
// snapshots in a worker thread (here loading the TypeScript sources, as under tsx); each one is
// stored by the runtime, listed by the reader, and is a verification start that reaches the same
// head, root and state_root as a replay from genesis. Meanwhile the node keeps committing.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import pino from "pino";
import { openDataDir } from "../../src/node/data-dir";
import { RaftLedgerNode } from "../../src/node/raft-node";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Polls (bounded) until cond holds. */
async function until(what: string, cond: () => boolean, attempts = 400, everyMs = 25): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`not within ${attempts * everyMs} ms: ${what}`);
}

test("snapshots made in a worker thread are stored, listed and verify like a replay from genesis", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-snapworker-"));
  dirs.push(dir);
  const node = new RaftLedgerNode(openDataDir(dir, "127.0.0.1:0"), {
    tickMs: 5, electionTick: 10, heartbeatTick: 2, checkpointEvery: 7, checkpointIntervalMs: 3_600_000, snapshotEvery: 20, snapshotsKeep: 2,
    writeTimeoutMs: 10_000, now: () => new Date(Date.parse("2026-01-01T00:00:00Z")), logger: pino({ level: "silent" }),
  });
  try {
    await node.leaderKnown();
    const append = (n: number, base: number) =>
      Promise.all(Array.from({ length: n }, (_, i) => node.writes.append({ type: "policy.set", subject: `s${i % 4}`, data: { name: "n", value: base + i } })));
    await append(25, 0);
    // The worker reads the state at whatever last_applied is when its read transaction starts.
    await until("a first snapshot", () => node.reader.snapshots().length === 1);
    const first = node.reader.snapshots()[0].index;
    expect(first).toBeGreaterThanOrEqual(20);
    // The node committed on while the snapshot was made, and makes the next one 20 entries on.
    await append(25, 100);
    await until("a second snapshot", () => node.reader.snapshots().length === 2);
    await append(25, 200);
    await until("a third snapshot, the oldest dropped (snapshotsKeep 2)", () => node.reader.snapshots().length === 2 && node.reader.snapshots()[1].index > first);
    const snaps = node.reader.snapshots();
    // Newest first, at least snapshotEvery apart, and each at an applied index.
    expect(snaps[0].index).toBeGreaterThan(snaps[1].index);
    expect(snaps[0].index - snaps[1].index).toBeGreaterThanOrEqual(20);
    const genesis = node.reader.verify();
    expect(genesis.ok).toBe(true);
    for (const s of snaps) {
      const r = node.reader.verify(undefined, s.index);
      expect({ at: s.index, ok: r.ok, head: r.head, root: r.root, state_root: r.state_root }).toEqual({ at: s.index, ok: true, head: genesis.head, root: genesis.root, state_root: genesis.state_root });
    }
  } finally {
    await node.close();
  }
});

test("a snapshot a prune on its way names outlives later snapshots until the prune is applied, and the log is cut there", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-snapworker-"));
  dirs.push(dir);
  const node = new RaftLedgerNode(openDataDir(dir, "127.0.0.1:0"), {
    tickMs: 5, electionTick: 10, heartbeatTick: 2, checkpointEvery: 7, checkpointIntervalMs: 3_600_000, snapshotEvery: 20, snapshotsKeep: 2,
    writeTimeoutMs: 10_000, now: () => new Date(Date.parse("2026-01-01T00:00:00Z")), logger: pino({ level: "silent" }),
  });
  // The runtime's pin, watched: the writes module pins a prune's anchor and lets go once it is applied.
  const rt = (node as unknown as { rt: { pinSnapshot(index: number): () => void } }).rt;
  const pin = rt.pinSnapshot.bind(rt);
  const pins: Array<{ index: number; released: boolean }> = [];
  rt.pinSnapshot = (index: number) => {
    const p = { index, released: false };
    pins.push(p);
    const unpin = pin(index);
    return () => {
      p.released = true;
      unpin();
    };
  };
  try {
    await node.leaderKnown();
    let value = 0;
    const append = (n: number) =>
      Promise.all(Array.from({ length: n }, () => node.writes.append({ type: "policy.set", subject: "s", data: { name: "n", value: value++ } })));
    const indexes = (): number[] => node.reader.snapshots().map((x) => x.index);
    await append(25);
    await until("a first snapshot", () => indexes().length === 1);
    const a = indexes()[0];
    // Pinned (as a prune naming it is, from its proposal to its apply), a kept snapshot survives retention.
    const unpin = rt.pinSnapshot(a);
    await append(25);
    await until("a second snapshot", () => indexes().length === 2);
    const b = indexes()[0];
    await append(25);
    await until("a third snapshot", () => indexes()[0] > b);
    expect(indexes()).toEqual([indexes()[0], b, a]); // keep 2, and the pinned one
    unpin();
    const c = indexes()[0];
    await append(25);
    await until("a fourth snapshot, after which only the newest two remain", () => indexes()[0] > c && indexes().length === 2);
    expect(indexes()).toEqual([indexes()[0], c]);
    // A prune through the writes module pins its anchor while on its way and lets go once applied: the log is cut there.
    const anchor = c;
    pins.length = 0;
    const ack = await node.writes.append({ type: "resonetics.prune", subject: "ledger", data: { below: anchor + 1, snapshot: anchor } });
    expect(ack.index).toBeGreaterThan(anchor);
    expect(pins).toEqual([{ index: anchor, released: true }]);
    expect(node.reader.historyFrom()).toBe(anchor + 1);
    expect(indexes()).toContain(anchor);
    expect(node.reader.verify(undefined, anchor)).toMatchObject({ ok: true });
  } finally {
    await node.close();
  }
});
