// Issue 10, "subject history answers with a proof of completeness a client can check". A node in
// this process signs a checkpoint every 5 entries; GET /v1/subjects/:s/history carries
// `completeness`: the subject's leaf (version, head) and its RFC 9162 path under the checkpoint's
// signed subjects_root. The client check below is written from DESIGN.md/README alone (node:crypto,
// test/support/independent.ts; nothing from src/): verify the checkpoint signature, the leaf's path,
// each record's entry hash, subject and inclusion, and chain the records up to the checkpoint from
// 32 zero bytes to the committed head. Leaving out or swapping any record fails it; the proof
// survives a restart with records applied after the checkpoint.
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as ind from "../support/independent";
import { HttpResult, http } from "../support/server";
import { InProcessApp, sharedInProcessApp, startInProcessApp } from "../support/in-process-app";

jest.setTimeout(60_000);

interface Cp extends ind.CheckpointPayload { index: number }
interface Rec {
  version: number;
  subject_head: string;
  entry: { index: number; term: number; kind: string; hash: string; prev_hash: string; payload_b64: string };
  inclusion: { index: number; size: number; leaf_hash: string; path: string[]; root: string } | null;
}
interface History {
  subject: string;
  version: number;
  checkpoint: Cp | null;
  records: Rec[];
  completeness: { version: number; head: string; leaf_index: number; tree_size: number; path: string[] } | null;
}

/**
 * The client's check: "these are all the records of `subject` up to checkpoint.size", or why not.
 * `records` must be every record of the history (all pages) up to the checkpoint's size.
 */
function checkComplete(h: History, records: readonly Rec[], signerKey: string): string | null {
  const cp = h.checkpoint;
  const c = h.completeness;
  if (cp === null || c === null) return "no completeness proof";
  if (!ind.verifyCheckpointSig(cp, signerKey)) return "checkpoint signature";
  if (cp.subjects_root === undefined) return "checkpoint signs no subjects_root";
  const leaf = ind.subjectLeafHash(h.subject, c.version, ind.hexToBuf(c.head));
  if (!ind.verifyInclusion(c.leaf_index, c.tree_size, leaf, c.path.map(ind.hexToBuf), ind.hexToBuf(cp.subjects_root))) return "leaf path";
  let head: Buffer = ind.SUBJECT_HEAD_ZERO;
  let count = 0;
  for (const r of records) {
    if (r.entry.index > cp.size) break;
    const payload = Buffer.from(r.entry.payload_b64, "base64");
    const hash = ind.entryHash(r.entry.index, r.entry.term, ind.KIND_CODES[r.entry.kind], ind.hexToBuf(r.entry.prev_hash), payload);
    if (hash.toString("hex") !== r.entry.hash) return `entry ${r.entry.index} hash`;
    if ((JSON.parse(payload.toString("utf8")) as { subject?: unknown }).subject !== h.subject) return `entry ${r.entry.index} is not of ${h.subject}`;
    const p = r.inclusion;
    if (p === null || p.size !== cp.size || p.root !== cp.root) return `entry ${r.entry.index} not proved against the checkpoint`;
    if (!ind.verifyInclusion(r.entry.index - 1, cp.size, ind.leafHash(hash), p.path.map(ind.hexToBuf), ind.hexToBuf(cp.root))) return `entry ${r.entry.index} inclusion`;
    head = ind.subjectHead(head, hash);
    count++;
  }
  if (count !== c.version) return `${count} records up to ${cp.size}, the checkpoint says ${c.version}`;
  if (head.toString("hex") !== c.head) return "the records do not chain to the committed head";
  return null;
}

const SUBJECTS = ["alpha", "beta", "gamma"];
// Named here, created by the first node that opens it: a run that filters out every test of this
// file (jest -t, Stryker) then leaves nothing behind, since afterAll does not run.
const dir = path.join(os.tmpdir(), `resonetics-completeness-${process.pid}-${randomUUID()}`);
let app: InProcessApp;

const get = (p: string): Promise<HttpResult> => http(app.baseUrl, "GET", p);
const history = async (subject: string): Promise<History> => {
  const r = await get(`/v1/subjects/${subject}/history`);
  if (r.status !== 200) throw new Error(`history of ${subject} → ${r.status} ${r.text}`);
  return r.json as History;
};
const append = async (subject: string, i: number): Promise<number> => {
  const r = await http(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, json: { type: "policy.set", subject, data: { name: "n", value: i } } });
  if (r.status !== 201) throw new Error(`append → ${r.status} ${r.text} (data dir ${dir})`);
  return (r.json as { index: number }).index;
};
/** Resolves once a checkpoint of at least `size` is applied. */
const checkpointCovering = (size: number): Promise<void> => {
  const covered = (): boolean => (app.node.reader.latestCheckpoint()?.size ?? 0) >= size;
  if (covered()) return Promise.resolve();
  return new Promise((resolve) => {
    const off = app.node.onApplied(() => {
      if (covered()) {
        off();
        resolve();
      }
    });
  });
};
const start = (checkpointEvery = 5): Promise<InProcessApp> => startInProcessApp({ dir, node: { checkpointEvery } });

// One node for the file, a new app over it per test (see sharedInProcessApp); the records are appended once, on the first.
const shared = sharedInProcessApp({ dir, node: { checkpointEvery: 5 } }, async (first) => {
  app = first;
  const indices: number[] = [];
  for (let i = 0; i < 14; i++) indices.push(await append(SUBJECTS[i % 3 === 2 ? 2 : i % 2], i));
  // A checkpoint every 5 entries: the one after the 10th record comes with the records after it.
  await checkpointCovering(indices[9]);
});
beforeEach(async () => {
  app = await shared.open();
});
afterEach(async () => {
  await app?.close();
});
afterAll(async () => {
  await shared.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("every subject's history proves complete against the latest checkpoint's signed subjects_root", async () => {
  for (const s of SUBJECTS) {
    const h = await history(s);
    expect(h.completeness).not.toBeNull();
    expect(h.checkpoint?.subjects_root).toMatch(/^[0-9a-f]{64}$/);
    expect({ subject: s, problem: checkComplete(h, h.records, app.node.publicKey) }).toEqual({ subject: s, problem: null });
    expect(h.completeness?.tree_size).toBe(SUBJECTS.length);
  }
  // Leaves go in the order of each subject's first record: alpha (record 0), beta (1), gamma (2).
  expect(await Promise.all(SUBJECTS.map(async (s) => (await history(s)).completeness?.leaf_index))).toEqual([0, 1, 2]);
});

test("a history with a record left out, swapped for another subject's or reordered fails the check", async () => {
  const h = await history("alpha");
  const other = await history("beta");
  const key = app.node.publicKey;
  expect(h.records.length).toBeGreaterThanOrEqual(3);
  expect(checkComplete(h, h.records.filter((_, i) => i !== 1), key)).toMatch(/records up to|do not chain/);
  expect(checkComplete(h, h.records.slice(0, -1), key)).toMatch(/records up to|do not chain/);
  expect(checkComplete(h, [h.records[0], other.records[0], ...h.records.slice(2)], key)).toMatch(/is not of alpha/);
  expect(checkComplete(h, [h.records[1], h.records[0], ...h.records.slice(2)], key)).toBe("the records do not chain to the committed head");
  // A leaf claiming one record fewer does not sit under the signed root.
  const c = h.completeness as NonNullable<History["completeness"]>;
  expect(checkComplete({ ...h, completeness: { ...c, version: c.version - 1 } }, h.records.slice(0, -1), key)).toBe("leaf path");
  // Nor does the right leaf under another checkpoint's root.
  expect(checkComplete({ ...h, checkpoint: { ...(h.checkpoint as Cp), subjects_root: "00".repeat(32) } }, h.records, key)).toBe("checkpoint signature");
});

test("a subject whose first record came after the checkpoint has no completeness proof yet", async () => {
  await append("delta", 100);
  const h = await history("delta");
  expect(h.completeness).toBeNull();
  expect(h.records).toHaveLength(1);
});

test("after a restart with records applied after the latest checkpoint, the proof is the same and still checks", async () => {
  // Two more records of alpha past the checkpoint (checkpointEvery 5: not yet a new one).
  const cpBefore = app.node.reader.latestCheckpoint();
  await append("alpha", 200);
  await append("beta", 201);
  expect(app.node.reader.latestCheckpoint()?.index).toBe(cpBefore?.index);
  const before = await history("alpha");
  expect(before.records.some((r) => r.entry.index > (before.checkpoint?.size ?? 0))).toBe(true);
  await app.close();
  // The file's node: this test restarts it on the same data dir, so it must stay the file's last test.
  await shared.close();
  // Restarted with checkpoints far apart, so the proof is the tree rebuilt at start, not a new checkpoint's.
  app = await start(1000);
  const after = await history("alpha");
  expect(after.checkpoint?.index).toBe(before.checkpoint?.index);
  expect(after.completeness).toEqual(before.completeness);
  expect(checkComplete(after, after.records, app.node.publicKey)).toBeNull();
  // And the next checkpoint, made after another restart, proves the records that came since.
  await app.close();
  app = await start();
  for (let i = 0; i < 5; i++) await append("alpha", 300 + i);
  await checkpointCovering((before.checkpoint?.size ?? 0) + 1);
  const next = await history("alpha");
  expect(next.checkpoint?.index).toBeGreaterThan(before.checkpoint?.index ?? 0);
  expect(next.completeness?.version).toBe(next.records.filter((r) => r.entry.index <= (next.checkpoint?.size ?? 0)).length);
  expect(checkComplete(next, next.records, app.node.publicKey)).toBeNull();
});
