import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import pino from "pino";
import { openDataDir, KEY_FILE, TOKEN_FILE, DB_FILE } from "../../src/node/data-dir";
import { RaftLedgerNode } from "../../src/node/raft-node";
import { chainEntry, EntryKind } from "../../src/ledger/entry";
import { UnappliableRecord } from "../../src/ledger/state-machine";
import { CompactRange } from "../../src/ledger/merkle";
import { decodeCheckpoint } from "../../src/ledger/checkpoint";
import { Store } from "../../src/storage/store";
import { verifyChain } from "../../src/ledger/verify";

const dirs: string[] = [];
const tmp = (): string => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-node-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const logger = pino({ level: "silent" });
let clock = Date.parse("2026-01-01T00:00:00Z");
const opts = {
  tickMs: 5, electionTick: 10, heartbeatTick: 2, checkpointEvery: 10, checkpointIntervalMs: 3_600_000, snapshotEvery: 0,
  writeTimeoutMs: 10_000, now: () => new Date(clock++), logger,
};
const open = async (dir: string): Promise<RaftLedgerNode> => {
  const node = new RaftLedgerNode(openDataDir(dir, "127.0.0.1:0"), opts);
  await node.leaderKnown();
  return node;
};
const rec = (subject: string, value: number) => ({ type: "policy.set", subject, data: { name: "n", value } });

describe("RaftLedgerNode with one voter", () => {
  test("initializes a data dir with 0600 secrets and a genesis CONFIG entry", async () => {
    const dir = tmp();
    const node = await open(dir);
    for (const f of [KEY_FILE, TOKEN_FILE]) expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    expect(node.reader.entry(1).kind).toBe(EntryKind.Config);
    expect(node.reader.entry(2).kind).toBe(EntryKind.Noop);
    await node.close();
  });

  test("concurrent appends get contiguous indices, checkpoints every K entries, and verify", async () => {
    const K = opts.checkpointEvery;
    const dir = tmp();
    const node = await open(dir);
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => node.writes.append(rec(`s${i % 5}`, i))));
    // Checkpoints follow the batches that make them due; wait (bounded) for one covering the last record.
    const last = Math.max(...results.map((r) => r.index));
    for (let i = 0; i < 400 && (node.reader.latestCheckpoint()?.size ?? 0) < last; i++) await new Promise((r) => setTimeout(r, 5));
    expect(node.reader.latestCheckpoint()?.size).toBeGreaterThanOrEqual(last);

    // Contiguous: after CONFIG (1) and NOOP (2) the log is our 60 records and checkpoints only, and
    // the records' indices are exactly the RECORD entries of the log: no index given twice or skipped.
    const kinds = (to: number): EntryKind[] => Array.from({ length: to }, (_, i) => node.reader.entry(i + 1).kind);
    const logKinds = kinds(node.reader.lastApplied());
    expect(logKinds.slice(0, 2)).toEqual([EntryKind.Config, EntryKind.Noop]);
    expect(logKinds.slice(2).filter((k) => k !== EntryKind.Record && k !== EntryKind.Checkpoint)).toEqual([]);
    const indices = results.map((r) => r.index).sort((a, b) => a - b);
    expect(new Set(indices).size).toBe(60);
    const recordIndices = logKinds.flatMap((k, i) => (k === EntryKind.Record ? [i + 1] : []));
    expect(recordIndices).toEqual(indices);
    expect(indices[0]).toBe(3);

    /** Every checkpoint signs the whole prefix before it; returns the runs of other entries between checkpoints. */
    const checkpointRuns = (from: number, to: number): number[] => {
      const range = new CompactRange();
      const runs: number[] = [];
      let run = 0;
      for (let i = 1; i <= to; i++) {
        const e = node.reader.entry(i);
        if (e.kind === EntryKind.Checkpoint) {
          const cp = decodeCheckpoint(e.payload);
          const want = { size: i - 1, head: Buffer.from(node.reader.entry(i - 1).hash).toString("hex"), root: Buffer.from(range.root()).toString("hex") };
          expect({ index: i, cp: cp && { size: cp.size, head: cp.head, root: cp.root } }).toEqual({ index: i, cp: want });
          if (i > from) runs.push(run);
          run = 0;
        } else {
          run++;
        }
        range.append(e.hash);
      }
      return runs;
    };
    // Concurrent batches may overshoot K, never fall short of it: no checkpoint comes early.
    const concurrentRuns = checkpointRuns(0, node.reader.lastApplied());
    expect(concurrentRuns.length).toBeGreaterThanOrEqual(1);
    expect(concurrentRuns.filter((n) => n < K)).toEqual([]);
    expect(logKinds[logKinds.length - 1]).toBe(EntryKind.Checkpoint);

    // One append at a time: a checkpoint follows exactly every K entries.
    const before = node.reader.lastApplied();
    for (let i = 0; i < 3 * K; i++) await node.writes.append(rec("seq", i));
    for (let i = 0; i < 400 && (node.reader.latestCheckpoint()?.size ?? 0) < before + 3 * K + 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect(kinds(node.reader.lastApplied()).slice(before).filter((k) => k === EntryKind.Checkpoint).length).toBe(3);
    expect(checkpointRuns(before, node.reader.lastApplied())).toEqual([K, K, K]);
    expect(node.reader.verify().ok).toBe(true);
    await node.close();
  });

  test("same idempotency key concurrently: one record, one index; different body: 409", async () => {
    const node = await open(tmp());
    const [a, b] = await Promise.all([node.writes.append(rec("x", 1), "key-1"), node.writes.append(rec("x", 1), "key-1")]);
    expect(a.index).toBe(b.index);
    expect([a.duplicate, b.duplicate].sort()).toEqual([false, true]);
    await expect(node.writes.append(rec("x", 2), "key-1")).rejects.toMatchObject({ code: "idempotency_conflict" });
    expect(node.reader.subject("x")?.version).toBe(1);
    await node.close();
  });

  test("a crash between commit and apply is repaired by replay on restart", async () => {
    const dir = tmp();
    const node = await open(dir);
    await Promise.all(Array.from({ length: 25 }, (_, i) => node.writes.append(rec(`s${i % 3}`, i), `k${i}`)));
    const before = node.reader.stateRoot();
    await node.close();
    // Roll the state back to just after genesis, as if the process died before applying.
    const store = new Store(path.join(dir, DB_FILE));
    store.transaction(() => {
      store.db.exec("DELETE FROM subjects; DELETE FROM subject_records; DELETE FROM dedup;");
      store.setLastApplied(1);
    });
    // The rolled-back state is consistent with last_applied = 1: a replay to 1 has no subjects.
    expect(verifyChain(store)).toMatchObject({ ok: true, last_applied: 1 });
    store.close();
    const again = await open(dir);
    expect(again.reader.stateRoot()).toBe(before);
    expect(again.reader.verify().ok).toBe(true);
    expect(again.status().last_applied).toBe(again.status().commit_index);
    await again.close();
  });

  test("each restart is a new term that begins with a NOOP", async () => {
    const dir = tmp();
    const n1 = await open(dir);
    const t1 = n1.currentTerm();
    await n1.close();
    const n2 = await open(dir);
    expect(n2.currentTerm()).toBe(t1 + 1);
    expect(n2.reader.entry(n2.reader.lastApplied()).kind === EntryKind.Noop || n2.reader.entry(n2.reader.lastApplied() - 1).kind === EntryKind.Noop).toBe(true);
    await n2.close();
  });

  test("refuses to initialize over a stray key file, and a key that does not match", () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, KEY_FILE), "00".repeat(32), { mode: 0o600 });
    expect(() => openDataDir(dir, "x")).toThrow(/refusing to initialize/);
    const dir2 = tmp();
    openDataDir(dir2, "x").store.close();
    fs.writeFileSync(path.join(dir2, KEY_FILE), "11".repeat(32), { mode: 0o600 });
    expect(() => openDataDir(dir2, "x")).toThrow(/does not match/);
  });

  test("inclusion and consistency answers check their arguments", async () => {
    const node = await open(tmp());
    await Promise.all(Array.from({ length: 12 }, (_, i) => node.writes.append(rec("p", i))));
    const commit = node.reader.lastApplied();
    expect(() => node.reader.inclusion(commit + 1)).toThrow(expect.objectContaining({ code: "not_found" }));
    expect(() => node.reader.inclusion(5, 4)).toThrow(expect.objectContaining({ code: "bad_request" }));
    expect(() => node.reader.inclusion(5, commit + 1)).toThrow(expect.objectContaining({ code: "not_found" }));
    expect(() => node.reader.consistency(6, 5)).toThrow(expect.objectContaining({ code: "bad_request" }));
    const p = node.reader.inclusion(3, commit);
    expect(p.size).toBe(commit);
    await node.close();
  });

  test("append runs apply's own validation on the exact bytes before proposing: nothing reaches the log", async () => {
    const dir = tmp();
    const node = await open(dir);
    const before = node.status().commit_index;
    // Past the API's schemas (a caller inside the process): the ledger's check still refuses.
    await expect(node.writes.append({ type: "policy.set", subject: "😀".repeat(201), data: 1 })).rejects.toMatchObject({ code: "schema_violation" });
    await expect(node.writes.append({ type: "policy.set", subject: "x\ud800y", data: 1 })).rejects.toMatchObject({ code: "invalid_json", details: { reason: "lone_surrogate" } });
    await expect(node.writes.append({ type: "policy.set", subject: "a", data: "\ufdd0" })).rejects.toMatchObject({ code: "invalid_json", details: { reason: "noncharacter" } });
    const ok = await node.writes.append({ type: "policy.set", subject: "😀".repeat(200), data: 1 });
    expect(ok.index).toBe(before + 1);
    await node.close();
  });

  test("a committed RECORD entry that does not apply stops the node loudly, never a silent skip", async () => {
    const dir = tmp();
    const node = await open(dir);
    await node.close();
    const store = new Store(path.join(dir, DB_FILE));
    const last = store.lastEntry();
    if (last === undefined) throw new Error("empty log");
    const bad = chainEntry(last.index + 1, last.term, EntryKind.Record, last.hash, Buffer.from('{"v":1}'));
    const nodes = CompactRange.fromStore(store.readNode, last.index).append(bad.hash);
    store.transaction(() => {
      store.appendEntries([bad], nodes);
      store.setCommitIndex(bad.index);
    });
    store.close();
    expect(() => new RaftLedgerNode(openDataDir(dir, "127.0.0.1:0"), opts)).toThrow(UnappliableRecord);
  });
});
