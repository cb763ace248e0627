// Issue 10, acceptance 3: trust is pinned, never inferred from the data being checked. A forger with
// write access to a copy of a data dir (the forger here is independent of src/: node:crypto and
// better-sqlite3, through test/support/independent.ts and test/verify/forger.ts):
// - swaps the genesis key for its own and re-signs every checkpoint: verify-chain passes without
//   --trust (and says "self-consistent, not anchored"), fails with the original trust file (exit 1,
//   naming the genesis);
// - cuts the log back to an older, consistent prefix: fails against a pinned later checkpoint
//   (in the trust file, or given with --checkpoint);
// - rewrites a record before the pinned checkpoint with the real node key: fails on the pinned root;
// - makes a record's ts go backwards (re-signed with the real key): a violation even without --trust.
import * as fs from "node:fs";
import * as path from "node:path";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import Database from "better-sqlite3";
import type { Database as Db } from "better-sqlite3";
import { isAppendAck, postRecord } from "../support/ledger-client";
import { ProcessResult, Server, cleanupAll, getJson, makeTempDir, parseJsonOutput, pollUntil, runCli, startServer, withFailureContext } from "../support/server";
import { CheckpointPayload, bufToHex, canonicalJson, entryHash, genesisHash, leafHash, merkleRoot, replayLog, subjectsRootOfState } from "../support/independent";
import { KIND_CHECKPOINT, KIND_RECORD, LogRow, clusterIdOf, logRows, rebuildCheckpointTable, rebuildMerkle, replayState, resign } from "../verify/forger";

jest.setTimeout(120_000);

/** Records written: with --checkpoint-every 8 that is ~6 checkpoints, a cut-back point well before the last. */
const RECORDS = 40;
const CLI_TIMEOUT_MS = 60_000;
const KIND_CONFIG = 2;

let dir = "";
let server: Server | undefined;
let trustPath = "";
let trustNoCpPath = "";
let pinnedCpPath = "";
let trust: { cluster: string; genesis_hash: string; checkpoint: CheckpointPayload & { index: number } } = { cluster: "", genesis_hash: "", checkpoint: {} as CheckpointPayload & { index: number } };
const context = (): string => `npx jest test/e2e/trust-forgery.test.ts; data dir ${dir}; trust ${trustPath}\n${server ? server.output() : "(no server)"}`;
const guarded = (fn: () => Promise<void>) => (): Promise<void> => withFailureContext(context, dir === "" ? [] : [path.dirname(dir)], fn);
const verify = (args: readonly string[]): Promise<ProcessResult> => runCli(["verify-chain", ...args], CLI_TIMEOUT_MS);

function copyDataDir(): string {
  const to = path.join(makeTempDir(), "copy");
  fs.cpSync(dir, to, { recursive: true });
  return to;
}

/** Opens a copy's ledger.db read-write, runs fn in one transaction, closes. */
function withDb(d: string, fn: (db: Db) => void): void {
  const db = new Database(path.join(d, "ledger.db"));
  try {
    db.transaction(() => fn(db))();
  } finally {
    db.close();
  }
}

/**
 * The forger's whole rewrite: after `edit` changed payloads, every entry hash is rechained from
 * genesis, every checkpoint gets the new root(size) and head and is signed with `secretKeyHex`,
 * and the Merkle nodes, checkpoints table and state tables are rebuilt to match.
 */
function rewrite(db: Db, secretKeyHex: string, edit: (rows: LogRow[]) => void): void {
  const rows = logRows(db);
  edit(rows);
  let prev: Buffer = genesisHash(clusterIdOf(db));
  const leaves: Buffer[] = [];
  const update = db.prepare("UPDATE log SET payload = ?, hash = ? WHERE idx = ?");
  for (const [i, r] of rows.entries()) {
    if (r.kind === KIND_CHECKPOINT) {
      const cp = JSON.parse(r.payload.toString("utf8")) as CheckpointPayload;
      const body = { ...cp, size: r.idx - 1, root: bufToHex(merkleRoot(leaves, r.idx - 1)), head: bufToHex(prev) };
      // A thorough forger also commits the rewritten state: subjects_root of the replay of the rows before it.
      if (cp.subjects_root !== undefined) body.subjects_root = bufToHex(subjectsRootOfState(replayLog(rows.slice(0, i), clusterIdOf(db))));
      r.payload = Buffer.from(canonicalJson(resign(body, secretKeyHex)), "utf8");
    }
    r.hash = entryHash(r.idx, r.term, r.kind, prev, r.payload);
    update.run(r.payload, r.hash, r.idx);
    prev = r.hash;
    leaves.push(leafHash(r.hash));
  }
  rebuildMerkle(db);
  rebuildCheckpointTable(db);
  replayState(db);
}

/** A fresh Ed25519 key pair as raw hex (node:crypto's DER forms end with the raw 32 bytes). */
function forgerKey(): { secretHex: string; publicHex: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const sk = privateKey.export({ format: "der", type: "pkcs8" });
  const pk = publicKey.export({ format: "der", type: "spki" });
  createPrivateKey({ key: sk, format: "der", type: "pkcs8" }); // the DER round-trips: the key is usable
  return { secretHex: bufToHex(sk.subarray(sk.length - 32)), publicHex: bufToHex(pk.subarray(pk.length - 32)) };
}

const nodeKeyHex = (d: string): string => fs.readFileSync(path.join(d, "node.key"), "utf8").trim();

beforeAll(guarded(async () => {
  dir = path.join(makeTempDir(), "node");
  server = await startServer(dir, { extraArgs: ["--checkpoint-every", "8", "--checkpoint-interval-ms", "200"] });
  const s = server;
  for (let i = 0; i < RECORDS; i++) {
    const r = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: `tf-${i % 4}`, data: { name: `n${i}`, value: i } });
    if (r.status !== 201 || !isAppendAck(r.json)) throw new Error(`append ${i} → ${r.status} ${r.text}`);
  }
  // The tail gets its checkpoint (interval 200 ms): the latest checkpoint then covers every record.
  await pollUntil("a checkpoint covering every record", async () => {
    const st = await getJson<{ commit_index: number; last_applied: number }>(s.baseUrl, "/v1/status");
    const cp = await getJson<{ index: number }>(s.baseUrl, "/v1/checkpoints/latest");
    return cp.index === st.commit_index && st.last_applied === st.commit_index ? true : undefined;
  });
  const stopped = await s.stop();
  if (stopped.code !== 0 || stopped.forced) throw new Error(`the node did not stop cleanly: ${JSON.stringify(stopped)}`);
  const exported = await runCli(["trust", "export", dir], CLI_TIMEOUT_MS);
  if (exported.code !== 0) throw new Error(`trust export → ${exported.code}: ${exported.stderr}`);
  trustPath = path.join(path.dirname(dir), "trust.json");
  fs.writeFileSync(trustPath, exported.stdout);
  trust = JSON.parse(exported.stdout) as typeof trust;
  const { checkpoint, ...rest } = trust;
  trustNoCpPath = path.join(path.dirname(dir), "trust-no-checkpoint.json");
  fs.writeFileSync(trustNoCpPath, JSON.stringify(rest));
  pinnedCpPath = path.join(path.dirname(dir), "checkpoint.json");
  fs.writeFileSync(pinnedCpPath, JSON.stringify(checkpoint));
}), 90_000);

afterAll(async () => {
  await cleanupAll();
}, 60_000);

test("the trust file pins the cluster, its genesis hash, the genesis configuration and the latest checkpoint", guarded(async () => {
  const t = JSON.parse(fs.readFileSync(trustPath, "utf8")) as Record<string, unknown>;
  expect(Object.keys(t).sort()).toEqual(["checkpoint", "cluster", "genesis_config", "genesis_hash", "v"]);
  expect(t.genesis_hash).toBe(bufToHex(genesisHash(trust.cluster)));
  const db = new Database(path.join(dir, "ledger.db"), { readonly: true });
  try {
    const first = (db.prepare("SELECT kind, payload FROM log WHERE idx = 1").get() as { kind: number; payload: Buffer });
    expect(first.kind).toBe(KIND_CONFIG);
    expect(canonicalJson({ v: 1, ...(t.genesis_config as object) })).toBe(first.payload.toString("utf8"));
    const last = db.prepare("SELECT MAX(idx) AS n FROM log").get() as { n: number };
    expect(trust.checkpoint.index).toBe(last.n);
  } finally {
    db.close();
  }
}));

test("the honest data dir verifies against its trust file: everything signed, text and --json", guarded(async () => {
  const j = await verify([dir, "--trust", trustPath, "--json"]);
  const rep = parseJsonOutput(j.stdout);
  expect({ code: j.code, ok: rep?.ok, anchor: rep?.anchor, signed: rep?.signed_size }).toEqual({ code: 0, ok: true, anchor: "trust file", signed: trust.checkpoint.size });
  expect(rep?.grades).toEqual([
    { from: 1, to: trust.checkpoint.size, grade: "signed" },
    { from: trust.checkpoint.index, to: trust.checkpoint.index, grade: "chained, not yet signed" },
  ]);
  const t = await verify([dir, "--trust", trustPath]);
  expect(t.code).toBe(0);
  expect(t.stdout).toMatch(new RegExp(`\\nsigned: entries 1\\.\\.${trust.checkpoint.size} `));
  expect(t.stdout).toMatch(/\nchained, not yet signed: entries /);
}));

test("genesis key swapped and every checkpoint re-signed: passes alone as 'not anchored', fails against the trust file naming the genesis", guarded(async () => {
  const forged = copyDataDir();
  const key = forgerKey();
  withDb(forged, (db) => rewrite(db, key.secretHex, (rows) => {
    const g = rows[0];
    const cfg = JSON.parse(g.payload.toString("utf8")) as { voters: Array<{ public_key: string }> };
    for (const m of cfg.voters) m.public_key = key.publicHex;
    g.payload = Buffer.from(canonicalJson(cfg), "utf8");
  }));
  fs.writeFileSync(path.join(forged, "node.key"), `${key.secretHex}\n`);

  const alone = await verify([forged, "--json"]);
  const rep = parseJsonOutput(alone.stdout);
  expect({ code: alone.code, ok: rep?.ok, anchor: rep?.anchor, stderr: alone.stderr }).toEqual({ code: 0, ok: true, anchor: "self-consistent, not anchored", stderr: "" });
  const aloneText = await verify([forged]);
  expect(aloneText.code).toBe(0);
  expect(aloneText.stdout).toMatch(/\nself-consistent, not anchored: entries 1\.\./);

  for (const t of [trustPath, trustNoCpPath]) {
    const j = await verify([forged, "--trust", t, "--json"]);
    const r = parseJsonOutput(j.stdout);
    expect({ t, code: j.code, ok: r?.ok, first: r?.first_bad_index }).toEqual({ t, code: 1, ok: false, first: 1 });
    expect(String(r?.reason)).toMatch(/genesis/);
    const text = await verify([forged, "--trust", t]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^VIOLATION at index 1: genesis CONFIG differs from the trust file/);
  }
}));

test("a data dir cut back to an older consistent prefix: passes alone, fails against the pinned later checkpoint (trust file or --checkpoint)", guarded(async () => {
  const cut = copyDataDir();
  let cutAt = 0;
  withDb(cut, (db) => {
    const cps = (db.prepare("SELECT idx FROM checkpoints ORDER BY idx").all() as Array<{ idx: number }>).map((r) => r.idx);
    cutAt = cps[Math.floor(cps.length / 2) - 1]; // an earlier checkpoint: the prefix up to it is consistent and signed
    db.prepare("DELETE FROM log WHERE idx > ?").run(cutAt);
    db.prepare("UPDATE hard_state SET commit_index = ?, last_applied = ? WHERE id = 1").run(cutAt, cutAt);
    rebuildMerkle(db);
    rebuildCheckpointTable(db);
    replayState(db);
  });
  expect(cutAt).toBeLessThan(trust.checkpoint.size);

  const alone = await verify([cut, "--json"]);
  expect({ code: alone.code, ok: parseJsonOutput(alone.stdout)?.ok }).toEqual({ code: 0, ok: true });
  const noPin = await verify([cut, "--trust", trustNoCpPath, "--json"]);
  expect({ code: noPin.code, ok: parseJsonOutput(noPin.stdout)?.ok }).toEqual({ code: 0, ok: true }); // nothing pinned: a prefix is all it can prove

  for (const args of [["--trust", trustPath], ["--trust", trustNoCpPath, "--checkpoint", pinnedCpPath]]) {
    const j = await verify([cut, ...args, "--json"]);
    const r = parseJsonOutput(j.stdout);
    expect({ args, code: j.code, ok: r?.ok, first: r?.first_bad_index }).toEqual({ args, code: 1, ok: false, first: cutAt + 1 });
    expect(String(r?.reason)).toMatch(/cut back/);
  }
}));

test("a record rewritten before the pinned checkpoint and re-signed with the node's real key: fails on the pinned root", guarded(async () => {
  const forked = copyDataDir();
  withDb(forked, (db) => rewrite(db, nodeKeyHex(forked), (rows) => {
    // The first record from index 6 on (a checkpoint may land at 6 itself, where its interval fell).
    const r = rows.find((x) => x.idx >= 6 && x.kind === KIND_RECORD);
    if (r === undefined || r.idx >= trust.checkpoint.size) throw new Error("no record between index 6 and the pinned checkpoint to rewrite");
    const rec = JSON.parse(r.payload.toString("utf8")) as { data: { value: number } };
    rec.data.value = 1_000_000;
    r.payload = Buffer.from(canonicalJson(rec), "utf8");
  }));
  const alone = await verify([forked, "--json"]);
  expect({ code: alone.code, ok: parseJsonOutput(alone.stdout)?.ok }).toEqual({ code: 0, ok: true });
  const j = await verify([forked, "--trust", trustPath, "--json"]);
  const r = parseJsonOutput(j.stdout);
  expect({ code: j.code, first: r?.first_bad_index }).toEqual({ code: 1, first: trust.checkpoint.size });
  expect(String(r?.reason)).toMatch(/pinned checkpoint's root/);
}));

test("a record whose ts goes backwards (re-signed with the real key): a violation at that index, trust file or not", guarded(async () => {
  const skewed = copyDataDir();
  // The first record from index 12 on (checkpoints land where their interval falls, so 12 itself may be one).
  let target = 0;
  withDb(skewed, (db) => rewrite(db, nodeKeyHex(skewed), (rows) => {
    const r = rows.find((x) => x.idx >= 12 && x.kind === KIND_RECORD);
    if (r === undefined) throw new Error("no record at or after index 12 to skew");
    target = r.idx;
    const rec = JSON.parse(r.payload.toString("utf8")) as { ts: string };
    rec.ts = new Date(Date.parse(rec.ts) - 3_600_000).toISOString();
    r.payload = Buffer.from(canonicalJson(rec), "utf8");
  }));
  for (const extra of [[], ["--trust", trustNoCpPath]]) {
    const j = await verify([skewed, ...extra, "--json"]);
    const r = parseJsonOutput(j.stdout);
    expect({ extra, code: j.code, first: r?.first_bad_index }).toEqual({ extra, code: 1, first: target });
    expect(String(r?.reason)).toMatch(/runs backwards/);
  }
}));

test("unreadable or malformed --trust / --checkpoint files are usage errors (exit 2), not violations", guarded(async () => {
  const bad = path.join(path.dirname(dir), "bad-trust.json");
  fs.writeFileSync(bad, JSON.stringify({ ...trust, genesis_hash: "00".repeat(32) }));
  for (const args of [["--trust", bad], ["--trust", path.join(path.dirname(dir), "missing.json")], ["--checkpoint", pinnedCpPath], ["--trust", trustPath, "--checkpoint", trustPath]]) {
    const r = await verify([dir, ...args]);
    expect({ args, code: r.code }).toEqual({ args, code: 2 });
    expect(r.stderr).toMatch(/^verify-chain: /);
  }
}));
