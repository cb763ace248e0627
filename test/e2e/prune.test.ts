// Issue 10, acceptance 2: pruning is an explicit operator act recorded in the log. A single real
// node (--snapshot-every 200) given records until it made 5 snapshots keeps its last 4 (RESONETICS_SNAPSHOTS_KEEP); POST /v1/admin/prune
// {"below": N} with N = the oldest anchor + 1 appends a resonetics.prune RECORD; afterwards indices
// below N answer 410 Gone (records, proofs, subject history), /v1/status says history_from N (also
// after a restart), the entries up to the anchor are gone from the data dir, verify-chain --from
// genesis exits 2 naming the earliest possible start, and --from <each anchor >= N - 1> exits 0.
// Refusals: no token (401), a client record of the reserved type (400), a prune with no snapshot to
// verify what is left (409 listing the anchors), a prune at or below history_from (409).
import * as path from "node:path";
import Database from "better-sqlite3";
import { postRecord } from "../support/ledger-client";
import { HttpResult, Server, cleanupAll, http, makeTempDir, mapPool, parseJsonOutput, pollUntil, runCli, runVerifyChain, startServer, withFailureContext } from "../support/server";

jest.setTimeout(180_000); // the snapshots may take a minute on a loaded machine (SNAPSHOT_WAIT_POLLS)

const SNAPSHOT_EVERY = 200;
/** Rounds of SNAPSHOT_EVERY records at most: KEEP + 1 snapshots take KEEP + 1 rounds (or fewer). */
const ROUNDS_MAX = 10;
const CONCURRENCY = 16;
/** Through RESONETICS_SNAPSHOTS_KEEP (the default is 3): of the 5 or more snapshots made, 4 stay. */
const KEEP = 4;
/** Polls of 50 ms for the background snapshots: a minute (see where it is used). */
const SNAPSHOT_WAIT_POLLS = 1200;
const ENV = { RESONETICS_SNAPSHOTS_KEEP: String(KEEP) };

interface SnapshotJson { index: number; term: number; hash: string; state_root: string; signer: string; ts: string }

let dir = "";
let server: Server | undefined;
const notes: string[] = [];
const context = (): string => `npx jest test/e2e/prune.test.ts; data dir ${dir}\nnotes:\n  ${notes.join("\n  ")}\n${server?.output() ?? "(no server)"}`;

afterAll(async () => {
  await server?.stop();
  await cleanupAll();
}, 30_000);

const get = (p: string): Promise<HttpResult> => http((server as Server).baseUrl, "GET", p, { token: (server as Server).token });
const prune = (body: unknown, withToken = true): Promise<HttpResult> =>
  http((server as Server).baseUrl, "POST", "/v1/admin/prune", { json: body, ...(withToken ? { token: (server as Server).token } : {}) });

function logRange(): { min: number; max: number; prunes: number } {
  const db = new Database(path.join(dir, "ledger.db"), { readonly: true, fileMustExist: true });
  try {
    const r = db.prepare("SELECT MIN(idx) AS min, MAX(idx) AS max FROM log").get() as { min: number; max: number };
    const prunes = (db.prepare("SELECT payload FROM log WHERE kind = 1").all() as Array<{ payload: Buffer }>)
      .filter((row) => (JSON.parse(row.payload.toString("utf8")) as { type: string }).type === "resonetics.prune").length;
    return { ...r, prunes };
  } finally {
    db.close();
  }
}

test("a recorded prune below N: 410 below it everywhere, history_from N, verify-chain exits 2 from genesis naming the earliest start and 0 from each anchor", async () => {
  dir = makeTempDir();
  await withFailureContext(context, [dir], async () => {
    server = await startServer(dir, { env: ENV, extraArgs: ["--snapshot-every", String(SNAPSHOT_EVERY), "--checkpoint-every", "50"] });
    const s = server;
    // Records go in rounds of SNAPSHOT_EVERY, each followed by the snapshot it makes due, until more
    // than KEEP snapshots were made (so retention has dropped one). How many snapshots a fixed
    // number of records makes depends on timing: the snapshot worker runs at a lower priority (nice
    // 10) and snapshots the state it finds when it gets to run, so on a loaded machine 1,000 records
    // made 3 (at 438, 794 and 998; 1 run in 3 at load ~7) where a quiet one makes 5. A round always
    // makes one: after it, applied - last snapshot >= SNAPSHOT_EVERY. Each wait is bounded by a minute.
    const seen = new Set<number>();
    let snaps: SnapshotJson[] = [];
    let sent = 0;
    for (let round = 0; seen.size <= KEEP; round++) {
      if (round >= ROUNDS_MAX) throw new Error(`${ROUNDS_MAX} rounds of ${SNAPSHOT_EVERY} records made only ${seen.size} snapshots: ${[...seen].join(", ")}`);
      const from = sent;
      const answers = await mapPool(Array.from({ length: SNAPSHOT_EVERY }, (_, i) => from + i), CONCURRENCY, (i) =>
        postRecord(s.baseUrl, s.token, { type: "policy.set", subject: `p-${i % 10}`, data: { name: "n", value: i } }));
      expect(answers.filter((a) => a.status !== 201).map((a) => a.status)).toEqual([]);
      sent += SNAPSHOT_EVERY;
      const newestBefore = Math.max(0, ...seen);
      snaps = await pollUntil(`a snapshot after round ${round + 1}`, async () => {
        const r = await get("/v1/snapshots");
        const list = r.json as SnapshotJson[];
        return r.status === 200 && list.some((x) => x.index > newestBefore) ? list : undefined;
      }, SNAPSHOT_WAIT_POLLS);
      for (const x of snaps) seen.add(x.index);
    }
    // KEEP snapshots kept, newest first: the KEEP newest of those made; nothing was deleted by them.
    snaps = await pollUntil(`${KEEP} snapshots listed`, async () => {
      const r = await get("/v1/snapshots");
      const list = r.json as SnapshotJson[];
      return r.status === 200 && list.length === KEEP ? list : undefined;
    }, SNAPSHOT_WAIT_POLLS);
    for (const x of snaps) seen.add(x.index); // one made since the last round's poll is kept too
    expect(snaps.map((x) => x.index)).toEqual([...seen].sort((a, b) => b - a).slice(0, KEEP));
    notes.push(`snapshots before the prune: ${JSON.stringify(snaps.map((x) => x.index))}`);
    expect(snaps.map((x) => x.index)).toEqual([...snaps.map((x) => x.index)].sort((a, b) => b - a));
    for (const x of snaps) expect(x).toEqual({ index: expect.any(Number), term: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/), state_root: expect.stringMatching(/^[0-9a-f]{64}$/), signer: expect.any(String), ts: expect.any(String) });
    expect(logRange().min).toBe(1);
    expect((await get("/v1/status")).json).toMatchObject({ history_from: 1 });
    const anchors = snaps.map((x) => x.index).sort((a, b) => a - b);
    const below = anchors[0] + 1;

    // Refusals, each changing nothing.
    expect((await prune({ below }, false)).status).toBe(401);
    const reserved = await postRecord(s.baseUrl, s.token, { type: "resonetics.prune", subject: "ledger", data: { below, snapshot: anchors[0] } });
    expect({ status: reserved.status, error: (reserved.json as { error?: string }).error }).toEqual({ status: 400, error: "unknown_record_type" });
    expect((await prune({ below: "5" })).status).toBe(400);
    const tooFar = await prune({ below: anchors[KEEP - 1] + 2 });
    expect({ status: tooFar.status, body: tooFar.json }).toMatchObject({ status: 409, body: { error: "conflict", snapshots: anchors } });
    expect(logRange().prunes).toBe(0);

    // The prune: an entry in the log.
    const done = await prune({ below });
    expect({ status: done.status, body: done.json }).toMatchObject({ status: 201, body: { below, snapshot: anchors[0], history_from: below } });
    const pruneIndex = (done.json as { index: number }).index;
    notes.push(`pruned below ${below} at index ${pruneIndex}`);
    const entry = await get(`/v1/records/${pruneIndex}`);
    expect(entry.json).toMatchObject({ index: pruneIndex, kind: "record", record: { type: "resonetics.prune", subject: "ledger", data: { below, snapshot: anchors[0] } } });
    expect((await prune({ below })).status).toBe(409); // already pruned there

    const gone = async (): Promise<void> => {
      expect((await get("/v1/status")).json).toMatchObject({ history_from: below });
      for (const p of ["/v1/records/1", "/v1/records/5", `/v1/records/${below - 1}`, "/v1/proofs/inclusion/5", `/v1/proofs/consistency?from=5&to=${pruneIndex}`, "/v1/subjects/p-3/history"]) {
        const r = await get(p);
        expect({ p, status: r.status, error: (r.json as { error?: string }).error }).toEqual({ p, status: 410, error: "gone" });
      }
      expect((await get(`/v1/records/1`)).json).toMatchObject({ history_from: below });
      expect((await get(`/v1/records/${below}`)).status).toBe(200);
      expect((await get(`/v1/proofs/inclusion/${below}`)).status).toBe(200);
      // A history page after the prune point cannot replay the heads before it: 410 unless the client passes head=.
      expect((await get(`/v1/subjects/p-3/history?from=${below}`)).status).toBe(410);
      const page = await get(`/v1/subjects/p-3/history?from=${below}&head=${"0".repeat(64)}`);
      expect(page.status).toBe(200);
      expect((page.json as { records: Array<{ entry: { index: number } }> }).records.every((r) => r.entry.index >= below)).toBe(true);
      // The anchors that start what is left (>= below - 1) are listed.
      expect(((await get("/v1/snapshots")).json as SnapshotJson[]).map((x) => x.index).sort((a, b) => a - b)).toEqual(anchors);
      const audit = await get("/v1/audit/verify?from=genesis");
      expect({ status: audit.status, body: audit.json }).toMatchObject({ status: 409, body: { error: "conflict", possible: anchors } });
      for (const a of anchors) {
        const r = await get(`/v1/audit/verify?from=${a}`);
        expect({ a, status: r.status, ok: (r.json as { ok?: boolean }).ok }).toEqual({ a, status: 200, ok: true });
      }
    };
    await gone();
    // Entries up to the anchor are deleted from the data dir (entries after it stay).
    expect(logRange()).toMatchObject({ min: anchors[0] + 1, prunes: 1 });

    // The prune is durable: after a restart the node still starts its history at N.
    await s.stop();
    server = await startServer(dir, { env: ENV, extraArgs: ["--snapshot-every", String(SNAPSHOT_EVERY), "--checkpoint-every", "50"] });
    await pollUntil("the node serves again", async () => ((await get("/v1/status")).status === 200 ? true : undefined));
    await gone();
    await server.stop();

    // Offline: genesis is a start this data dir cannot serve (exit 2, never a violation), naming the earliest one.
    const g = await runVerifyChain(dir, ["--from", "genesis"]);
    expect({ code: g.code, out: parseJsonOutput(g.stdout) }).toMatchObject({ code: 2, out: { ok: false, error: "start_unavailable", possible: anchors } });
    const text = await runVerifyChainText(["--from", "genesis"]);
    expect(text.code).toBe(2);
    expect(text.stderr).toContain(`--from ${anchors[0]}`);
    for (const a of anchors) {
      const v = await runVerifyChain(dir, ["--from", String(a)]);
      expect({ a, code: v.code, ok: parseJsonOutput(v.stdout)?.ok, err: v.code === 0 ? "" : v.stderr + v.stdout }).toEqual({ a, code: 0, ok: true, err: "" });
    }
    const notAnchor = await runVerifyChain(dir, ["--from", String(anchors[0] + 3)]);
    expect({ code: notAnchor.code, out: parseJsonOutput(notAnchor.stdout) }).toMatchObject({ code: 2, out: { error: "start_unavailable", possible: anchors } });
  });
});

/** verify-chain in text mode (its message for people). */
async function runVerifyChainText(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const r = await runCli(["verify-chain", dir, ...args]);
  return { code: r.code, stderr: r.stderr };
}
