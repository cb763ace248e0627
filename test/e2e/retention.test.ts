// Issue 10, acceptance 1: snapshots compress recovery, never history. A real node with
// --snapshot-every 2000 takes 10,000 records (written concurrently, in batches) and is restarted
// twice; afterwards it still holds and serves its whole history (GET /v1/records/5, its
// inclusion proof and its receipt, which the independent verifier checks; history_from 1), it lists its last three snapshot anchors (GET /v1/snapshots,
// newest first), the audit verifies from each of them (audit/verify?from=<index>), and offline
// verify-chain exits 0 from genesis and from each anchor.
import * as path from "node:path";
import Database from "better-sqlite3";
import { postRecord } from "../support/ledger-client";
import { HttpResult, Server, cleanupAll, http, makeTempDir, mapPool, parseJsonOutput, pollUntil, runCli, runVerifyChain, startServer, withFailureContext } from "../support/server";
import { IndTrust, independentReceiptProblem } from "../support/receipt-verifier";

// ~25 s of writes on an idle 2-core machine; several times that when the machine is shared.
jest.setTimeout(240_000);

const SNAPSHOT_EVERY = 2000;
const RECORDS = 10_000;
/** Written in batches, one restart after each of the first two. */
const BATCHES = [4000, 3000, 3000];
const CONCURRENCY = 64;
const ARGS = ["--snapshot-every", String(SNAPSHOT_EVERY)];

interface SnapshotJson { index: number; term: number; hash: string; state_root: string; signer: string; ts: string }

let dir = "";
let server: Server | undefined;
const notes: string[] = [];
const context = (): string => `npx jest test/e2e/retention.test.ts; data dir ${dir}\nnotes:\n  ${notes.join("\n  ")}\n${server?.output() ?? "(no server)"}`;

afterAll(async () => {
  await server?.stop();
  await cleanupAll();
}, 30_000);

const get = (p: string): Promise<HttpResult> => http((server as Server).baseUrl, "GET", p, { token: (server as Server).token });

/** Attempts per record: a socket reset under a loaded machine is retried with the same Idempotency-Key. */
const ATTEMPTS_MAX = 3;
let retries = 0;

async function append(s: Server, i: number): Promise<HttpResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: `r-${i % 100}`, data: { name: "n", value: i } }, `ret-${i}`);
    } catch (err) {
      if (!(err instanceof TypeError) || attempt >= ATTEMPTS_MAX) throw err;
      retries++;
      notes.push(`record ${i}: retry ${attempt} after ${String(err)} (${String((err as { cause?: unknown }).cause)})`);
    }
  }
}

function firstLogIndex(): number {
  const db = new Database(path.join(dir, "ledger.db"), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("SELECT MIN(idx) AS min FROM log").get() as { min: number }).min;
  } finally {
    db.close();
  }
}

test("10,000 records, --snapshot-every 2000, two restarts: full history served and verified from genesis and from each of the three anchors", async () => {
  dir = makeTempDir();
  await withFailureContext(context, [dir], async () => {
    let written = 0;
    for (const [b, count] of BATCHES.entries()) {
      if (b > 0) {
        await (server as Server).stop();
        notes.push(`restart ${b} after ${written} records`);
      }
      server = await startServer(dir, { extraArgs: ARGS });
      const s = server;
      const from = written;
      const answers = await mapPool(Array.from({ length: count }, (_, i) => from + i), CONCURRENCY, (i) => append(s, i));
      // 201, or 200 for a retry whose first try was committed (same Idempotency-Key): each record once.
      expect(answers.filter((a) => a.status !== 201 && a.status !== 200).map((a) => a.status)).toEqual([]);
      written += count;
    }
    expect(written).toBe(RECORDS);
    notes.push(`${retries} retries`);

    // History is whole: the first entries are on disk and served, with proofs.
    expect(firstLogIndex()).toBe(1);
    expect((await get("/v1/status")).json).toMatchObject({ history_from: 1 });
    const five = await get("/v1/records/5");
    expect({ status: five.status, index: (five.json as { index?: number }).index }).toEqual({ status: 200, index: 5 });
    const proof = await get("/v1/proofs/inclusion/5");
    expect({ status: proof.status, body: proof.json }).toMatchObject({ status: 200, body: { index: 5, leaf_hash: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    // And its receipt, checked offline by the independent verifier against the exported trust file.
    const receipt = await get("/v1/receipts/5");
    expect(receipt.status).toBe(200);
    const exported = await runCli(["trust", "export", dir]);
    expect({ code: exported.code, stderr: exported.stderr }).toEqual({ code: 0, stderr: "" });
    expect(independentReceiptProblem(Buffer.from(receipt.text, "utf8"), JSON.parse(exported.stdout) as IndTrust)).toBeNull();

    // The worker may still be making a snapshot of the last records; one finished after the list
    // below would drop its oldest anchor. Wait until none is due: the newest within SNAPSHOT_EVERY of
    // last_applied (nothing is written from here on, so none is made after that).
    await pollUntil("no snapshot due", async () => {
      const applied = ((await get("/v1/status")).json as { last_applied: number }).last_applied;
      const newest = ((await get("/v1/snapshots")).json as SnapshotJson[])[0]?.index ?? 0;
      return applied - newest < SNAPSHOT_EVERY ? true : undefined;
    }, 600, 50);
    // The last three snapshots are kept, newest first, SNAPSHOT_EVERY apart or more.
    const list = await get("/v1/snapshots");
    expect(list.status).toBe(200);
    const snaps = list.json as SnapshotJson[];
    notes.push(`snapshots: ${JSON.stringify(snaps.map((x) => x.index))}`);
    expect(snaps.length).toBe(3);
    const anchors = snaps.map((x) => x.index);
    expect(anchors).toEqual([...anchors].sort((a, b) => b - a));
    for (let i = 0; i + 1 < anchors.length; i++) expect(anchors[i] - anchors[i + 1]).toBeGreaterThanOrEqual(SNAPSHOT_EVERY);
    expect(anchors[2]).toBeGreaterThan(RECORDS - 3 * SNAPSHOT_EVERY - SNAPSHOT_EVERY);

    for (const a of anchors) {
      const r = await get(`/v1/audit/verify?from=${a}`);
      expect({ a, status: r.status, body: r.json }).toMatchObject({ a, status: 200, body: { ok: true, from: a } });
    }
    const g = await get("/v1/audit/verify?from=genesis");
    expect({ status: g.status, ok: (g.json as { ok?: boolean }).ok }).toEqual({ status: 200, ok: true });
    await (server as Server).stop();

    const genesis = await runVerifyChain(dir, ["--from", "genesis"]);
    expect({ code: genesis.code, out: parseJsonOutput(genesis.stdout), err: genesis.stderr }).toMatchObject({ code: 0, out: { ok: true, size: expect.any(Number) } });
    expect(Number(parseJsonOutput(genesis.stdout)?.size)).toBeGreaterThan(RECORDS);
    for (const a of anchors) {
      const v = await runVerifyChain(dir, ["--from", String(a)]);
      expect({ a, code: v.code, ok: parseJsonOutput(v.stdout)?.ok, err: v.code === 0 ? "" : v.stderr + v.stdout }).toEqual({ a, code: 0, ok: true, err: "" });
    }
    // A start that is no anchor is exit 2 with the possible ones, never a violation.
    const bad = await runVerifyChain(dir, ["--from", String(anchors[0] - 1)]);
    expect({ code: bad.code, out: parseJsonOutput(bad.stdout) }).toMatchObject({ code: 2, out: { error: "start_unavailable", possible: ["genesis", ...[...anchors].reverse()] } });
  });
});
