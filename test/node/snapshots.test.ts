import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import pino from "pino";
import { openDataDir, DB_FILE } from "../../src/node/data-dir";
import { RaftLedgerNode } from "../../src/node/raft-node";
import { createSnapshot } from "../../src/node/snapshots";
import { Store } from "../../src/storage/store";
import { verifyChain } from "../../src/ledger/verify";
import { decodeSnapshot, encodeSnapshot } from "../../src/ledger/snapshot";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const logger = pino({ level: "silent" });
const rec = (s: string, v: number) => ({ type: "policy.set", subject: s, data: { name: "n", value: v } });

let snapshotIndex = 0;

async function buildDir(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-snap-"));
  dirs.push(dir);
  const dd = openDataDir(dir, "127.0.0.1:0");
  const node = new RaftLedgerNode(dd, {
    tickMs: 5, electionTick: 10, heartbeatTick: 2, checkpointEvery: 7, checkpointIntervalMs: 3_600_000, snapshotEvery: 0,
    writeTimeoutMs: 10_000, now: () => new Date(0), logger,
  });
  await node.leaderKnown();
  await Promise.all(Array.from({ length: 40 }, (_, i) => node.writes.append(rec(`s${i % 4}`, i), `k${i}`)));
  const { row } = createSnapshot(dd.store, { cluster: dd.clusterId, nodeId: dd.nodeId, secretKey: dd.key.secretKey, now: () => new Date(0) });
  snapshotIndex = row.index;
  await Promise.all(Array.from({ length: 30 }, (_, i) => node.writes.append(rec(`s${i % 6}`, 100 + i), `k2-${i}`)));
  await node.close();
  return dir;
}

describe("snapshots (they compress recovery, never history)", () => {
  let dir: string;
  // Built by the first test, inside it (not in beforeAll): code run outside a test is static to
  // Stryker's per-test coverage, and each static mutant reruns every test of the plan.
  let built: Promise<string> | undefined;
  beforeEach(async () => {
    dir = await (built ??= buildDir());
  });

  test("a snapshot deletes no entry: the log verifies from genesis and from the snapshot anchor, to the same head", () => {
    const store = new Store(path.join(dir, DB_FILE), { readonly: true });
    expect(snapshotIndex).toBeGreaterThan(40);
    expect(store.anchor()).toBeUndefined();
    expect(store.firstIndex()).toBe(1);
    const fromSnap = verifyChain(store, { from: "snapshot" });
    expect(fromSnap).toMatchObject({ ok: true, from: "snapshot" });
    expect(fromSnap.entries).toBe(fromSnap.size - snapshotIndex);
    expect(fromSnap.entries).toBeGreaterThan(30);
    const byIndex = verifyChain(store, { from: snapshotIndex });
    expect(byIndex).toMatchObject({ ok: true, from: snapshotIndex, entries: fromSnap.entries, head: fromSnap.head, state_root: fromSnap.state_root });
    const fromGenesis = verifyChain(store, { from: "genesis" });
    expect(fromGenesis).toMatchObject({ ok: true, entries: fromSnap.size, head: fromSnap.head, root: fromSnap.root, state_root: fromSnap.state_root });
    store.close();
  });

  test("a snapshot whose state was altered, or whose signature is wrong, is refused", () => {
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-snap-t-"));
    dirs.push(copy);
    fs.cpSync(dir, copy, { recursive: true });
    const store = new Store(path.join(copy, DB_FILE));
    const row = store.latestSnapshot();
    const doc = decodeSnapshot(row!.data)!;
    const altered = { ...doc, state: { ...doc.state, subjects: doc.state.subjects.map((s, i) => (i === 0 ? { ...s, version: s.version + 1 } : s)) } };
    store.db.prepare("UPDATE snapshots SET data = ? WHERE idx = ?").run(Buffer.from(encodeSnapshot(altered)), row!.index);
    const r1 = verifyChain(store, { from: "snapshot" });
    expect(r1).toMatchObject({ ok: false, first_bad_index: row!.index });
    const badSig = { ...doc, sig: (doc.sig[0] === "0" ? "1" : "0") + doc.sig.slice(1) };
    store.db.prepare("UPDATE snapshots SET data = ? WHERE idx = ?").run(Buffer.from(encodeSnapshot(badSig)), row!.index);
    expect(verifyChain(store, { from: "snapshot" })).toMatchObject({ ok: false, reason: expect.stringMatching(/signature/) });
    store.close();
  });
});
