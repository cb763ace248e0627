// Acceptance 6 of issue 2: tamper with a real data dir, one column of one table at a time, and
// `resonetics verify-chain --json` (a real process) must exit 1 and name the tampered index; an
// intact copy exits 0; a missing or garbage path exits 2. The data dir is made once by a real
// server; every case works on its own copy, changed with better-sqlite3 directly.
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import Database from "better-sqlite3";
import type { Database as Db } from "better-sqlite3";
import { CheckpointPayload, canonicalJson, prng, testSeed } from "../support/independent";
import {
  ProcessResult,
  Server,
  cleanupAll,
  getJson,
  http,
  keepDir,
  makeTempDir,
  mapPool,
  parseJsonOutput,
  pollUntil,
  runCli,
  startServer,
  withFailureContext,
} from "../support/server";
import { KIND_CHECKPOINT, KIND_RECORD, LogRow, forgeFrom, logRow, logRows, resign } from "./forger";

const RECORDS = 301;
/** Records written one by one at the end, so the log ends with an unsigned tail whatever the batching (a checkpoint lands where a batch made it due). */
const TAIL_RECORDS = 3;
/** Records the unsigned-tail cases need after the last checkpoint (beforeAll makes sure of it). */
const TAIL_UNSIGNED_MIN = 2;
const CHECKPOINT_EVERY = 50;
const SUBJECTS = 7;
const CONCURRENCY = 8;
const VERIFY_TIMEOUT_MS = 30_000;
const SEED = testSeed();

/** What the pristine data dir holds, read once; every case's choice of indices is made from it. */
interface Layout {
  last: number;
  commit: number;
  records: number[];
  checkpoints: number[];
  keyedRecords: number[];
  merkle: Array<{ level: number; idx: number }>;
  subjects: Array<{ subject: string; last_index: number }>;
  dedup: Array<{ key: string; idx: number }>;
}

let base = "";
let server: Server | undefined;
let layout: Layout;
let secretKeyHex = "";

/** A case's own random choices: seeded by the run's seed and the case name, so `-t name` replays them. */
interface Rng {
  /** A whole number in [0, n). */
  below(n: number): number;
  pick<T>(items: readonly T[]): T;
}

function rngFor(name: string): Rng {
  let h = SEED;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  const next = prng(h);
  const below = (n: number): number => Math.floor(next() * n);
  return {
    below,
    pick<T>(items: readonly T[]): T {
      if (items.length === 0) throw new Error("pick from an empty list");
      return items[below(items.length)];
    },
  };
}
const reproduce = (name: string): string =>
  `reproduce: RESONETICS_SEED=${SEED} npx jest test/verify/tamper.test.ts -t ${JSON.stringify(name)}`;

beforeAll(async () => {
  base = makeTempDir();
  await withFailureContext(() => `${reproduce("")}\n${server?.output() ?? "(no server)"}`, [base], async () => {
    server = await startServer(base, {
      extraArgs: ["--checkpoint-every", String(CHECKPOINT_EVERY), "--checkpoint-interval-ms", "3600000"],
    });
    const s = server;
    const indices = Array.from({ length: RECORDS }, (_, i) => i);
    await mapPool(indices, CONCURRENCY, async (i) => {
      const body = { type: "policy.set", subject: `s${i % SUBJECTS}`, data: { name: `n${i}`, value: i } };
      const key = i % 5 === 0 ? `key-${i}` : undefined;
      const headers: Record<string, string> = key === undefined ? {} : { "idempotency-key": key };
      const r = await http(s.baseUrl, "POST", "/v1/records", { token: s.token, json: body, headers });
      if (r.status !== 201) throw new Error(`POST record ${i} → ${r.status} ${r.text}`);
      // A retry with the same key must not append: it answers the original result.
      if (key !== undefined && i % 25 === 0) {
        const again = await http(s.baseUrl, "POST", "/v1/records", { token: s.token, json: body, headers });
        if (again.status !== 200 && again.status !== 201) throw new Error(`retry of ${key} → ${again.status} ${again.text}`);
      }
    });
    // Checkpoints are written in the same batch as the entry that makes them due; wait on the API
    // saying so rather than assuming it.
    await pollUntil("at least 2 checkpoints", async () => {
      const r = await http(s.baseUrl, "GET", "/v1/checkpoints/latest");
      const cp = r.json as { size?: unknown } | undefined;
      return r.status === 200 && typeof cp?.size === "number" && cp.size >= 2 * CHECKPOINT_EVERY ? true : undefined;
    });
    // Then a few records one at a time. One of them may make a checkpoint due (K = 50), and when
    // it is the last one the log ends signed: then the node is started again and two more go in
    // one at a time, which cannot make another due (a checkpoint just landed, and 1 NOOP + 2 < K).
    let tailWritten = 0;
    const writeTail = async (srv: Server, n: number): Promise<void> => {
      for (let i = 0; i < n; i++, tailWritten++) {
        const r = await http(srv.baseUrl, "POST", "/v1/records", { token: srv.token, json: { type: "policy.set", subject: "tail", data: { name: `t${tailWritten}`, value: tailWritten } } });
        if (r.status !== 201) throw new Error(`POST tail record ${tailWritten} → ${r.status} ${r.text}`);
      }
    };
    const stopAndRead = async (srv: Server): Promise<void> => {
      // The last record may have made a checkpoint due (K entries after the latest one): the node
      // appends it after answering that record, so wait for it, and the log the stop leaves is the
      // one the status below describes. Not due (fewer than K since), none comes: the interval is an hour.
      await pollUntil("no checkpoint due", async () => {
        const st = await getJson<{ commit_index: number }>(srv.baseUrl, "/v1/status");
        const cp = await getJson<{ index: number }>(srv.baseUrl, "/v1/checkpoints/latest");
        return st.commit_index - cp.index < CHECKPOINT_EVERY ? true : undefined;
      }, 600, 50);
      const status = await getJson<{ commit_index: number }>(srv.baseUrl, "/v1/status");
      const stopped = await srv.stop();
      if (stopped.forced || stopped.code !== 0) throw new Error(`server did not stop cleanly: ${JSON.stringify(stopped)}`);
      const db = new Database(path.join(base, "ledger.db"), { readonly: true });
      try {
        const rows = logRows(db);
        const hard = db.prepare("SELECT commit_index FROM hard_state WHERE id = 1").get() as { commit_index: number };
        layout = {
          last: rows[rows.length - 1].idx,
          commit: hard.commit_index,
          records: rows.filter((r) => r.kind === KIND_RECORD).map((r) => r.idx),
          checkpoints: rows.filter((r) => r.kind === KIND_CHECKPOINT).map((r) => r.idx),
          keyedRecords: rows.filter((r) => r.kind === KIND_RECORD && r.payload.toString("utf8").includes('"idempotency_key"')).map((r) => r.idx),
          merkle: db.prepare("SELECT level, idx FROM merkle_nodes").all() as Layout["merkle"],
          subjects: db.prepare("SELECT subject, last_index FROM subjects").all() as Layout["subjects"],
          dedup: db.prepare("SELECT key, idx FROM dedup").all() as Layout["dedup"],
        };
      } finally {
        db.close();
      }
      if (layout.commit !== status.commit_index || layout.commit !== layout.last) {
        throw new Error(`after a clean stop commit_index ${layout.commit}, API said ${status.commit_index}, log ends at ${layout.last}`);
      }
    };
    const unsigned = (): number => layout.records.filter((r) => r > layout.checkpoints[layout.checkpoints.length - 1]).length;
    await writeTail(s, TAIL_RECORDS);
    await stopAndRead(s);
    if (unsigned() < TAIL_UNSIGNED_MIN) {
      server = await startServer(base, { extraArgs: ["--checkpoint-every", String(CHECKPOINT_EVERY), "--checkpoint-interval-ms", "3600000"] });
      await writeTail(server, TAIL_UNSIGNED_MIN);
      await stopAndRead(server);
    }
    secretKeyHex = fs.readFileSync(path.join(base, "node.key"), "utf8").trim();
    if (unsigned() < TAIL_UNSIGNED_MIN) throw new Error(`expected >= ${TAIL_UNSIGNED_MIN} records after the last checkpoint, have ${unsigned()}`);
    if (layout.checkpoints.length < 2) throw new Error(`expected >= 2 checkpoints, have ${layout.checkpoints.join(",")}`);
    if (layout.records.length !== RECORDS + tailWritten) throw new Error(`expected ${RECORDS + tailWritten} record entries (retries do not append), have ${layout.records.length}`);
  });
}, 120_000);

afterAll(cleanupAll);

// ---------------------------------------------------------------- helpers

interface VerifyOutcome {
  dir: string;
  result: ProcessResult;
  report: Record<string, unknown> | null;
  /** The same verification with entries checked on two worker threads (--workers 2): it must answer the same. */
  piped: ProcessResult;
}

/** Copies the pristine data dir, lets mutate change it, and runs verify-chain --json on the copy. */
async function tamperAndVerify(mutate: (db: Db) => void): Promise<VerifyOutcome> {
  const dir = makeTempDir();
  fs.cpSync(base, dir, { recursive: true });
  const db = new Database(path.join(dir, "ledger.db"));
  try {
    mutate(db);
  } finally {
    db.close();
  }
  const [result, piped] = await Promise.all([
    runCli(["verify-chain", dir, "--json", "--workers", "0"], VERIFY_TIMEOUT_MS),
    runCli(["verify-chain", dir, "--json", "--workers", "2"], VERIFY_TIMEOUT_MS),
  ]);
  return { dir, result, report: parseJsonOutput(result.stdout), piped };
}

/** The run with worker threads exits and reports exactly as the one without. */
function expectSamePiped(o: VerifyOutcome): void {
  expect({ code: o.piped.code, report: parseJsonOutput(o.piped.stdout) }).toEqual({ code: o.result.code, report: o.report });
}

const describeOutcome = (o: VerifyOutcome): string =>
  `exit ${o.result.code} (signal ${o.result.signal})\nstdout: ${o.result.stdout.slice(0, 2000)}\nstderr: ${o.result.stderr.slice(0, 2000)}\n` +
  `with --workers 2: exit ${o.piped.code}, stdout: ${o.piped.stdout.slice(0, 2000)}\ntampered copy: ${o.dir}`;

/** Runs a tamper case; on failure keeps the copy and prints the seed and how to rerun it. */
function tamperCase(name: string, mutate: (db: Db, rng: Rng) => { expectIndex: number | "any"; reason?: RegExp }): void {
  test(name, async () => {
    const rng = rngFor(name);
    let expected: { expectIndex: number | "any"; reason?: RegExp } = { expectIndex: "any" };
    const o = await tamperAndVerify((db) => {
      expected = mutate(db, rng);
    });
    try {
      expect(o.result.code).toBe(1);
      expect(o.report?.ok).toBe(false);
      if (expected.expectIndex === "any") expect(typeof o.report?.first_bad_index).toBe("number");
      else expect(o.report?.first_bad_index).toBe(expected.expectIndex);
      if (expected.reason !== undefined) expect(String(o.report?.reason)).toMatch(expected.reason);
      expectSamePiped(o);
    } catch (err) {
      keepDir(o.dir, "tamper case failed");
      if (err instanceof Error) err.message += `\n--- ${reproduce(name)}\nexpected first_bad_index ${expected.expectIndex}\n${describeOutcome(o)}`;
      throw err;
    }
  });
}

function setPayload(db: Db, idx: number, payload: Buffer): void {
  db.prepare("UPDATE log SET payload = ? WHERE idx = ?").run(payload, idx);
}

function checkpointAt(db: Db, idx: number): CheckpointPayload {
  return JSON.parse(logRow(db, idx).payload.toString("utf8")) as CheckpointPayload;
}

/** A hex string with one character changed (still lowercase hex, so it still parses). */
function flipHex(hex: string, pos: number): string {
  const c = hex[pos];
  return hex.slice(0, pos) + (c === "0" ? "1" : "0") + hex.slice(pos + 1);
}

/** A record in the log that is neither the last entry nor right before a checkpoint... any record. */
const anyRecord = (rng: Rng): number => rng.pick(layout.records);
/** A checkpoint and a record strictly before it (so a forged tail must cross a signed checkpoint). */
function recordBeforeACheckpoint(rng: Rng): { record: number; checkpoint: number } {
  const checkpoint = rng.pick(layout.checkpoints);
  const before = layout.records.filter((r) => r < checkpoint);
  const record = rng.pick(before);
  const next = layout.checkpoints.find((c) => c > record);
  if (next === undefined) throw new Error("no checkpoint after a record that precedes one");
  return { record, checkpoint: next };
}

// ---------------------------------------------------------------- intact and unreadable inputs

describe("verify-chain on an intact copy and on unreadable input", () => {
  test("an intact copy verifies: exit 0, ok true, every entry counted", async () => {
    const o = await tamperAndVerify(() => undefined);
    expect({ code: o.result.code, ok: o.report?.ok, entries: o.report?.entries, checkpoints: o.report?.checkpoints }).toEqual({
      code: 0,
      ok: true,
      entries: layout.last,
      checkpoints: layout.checkpoints.length,
    });
    expectSamePiped(o);
  });

  test("a missing path exits 2", async () => {
    const r = await runCli(["verify-chain", path.join(makeTempDir(), "does-not-exist"), "--json"], VERIFY_TIMEOUT_MS);
    expect(r.code).toBe(2);
  });

  test("a directory whose ledger.db is random bytes exits 2", async () => {
    const dir = makeTempDir();
    fs.writeFileSync(path.join(dir, "ledger.db"), randomBytes(64 * 1024));
    const r = await runCli(["verify-chain", dir, "--json"], VERIFY_TIMEOUT_MS);
    expect({ code: r.code, stderr: r.stderr.slice(0, 500) }).toEqual({ code: 2, stderr: expect.any(String) });
  });

  test("a path that is a file, not a directory, exits 2", async () => {
    const file = path.join(makeTempDir(), "ledger.db");
    fs.copyFileSync(path.join(base, "ledger.db"), file);
    const r = await runCli(["verify-chain", file, "--json"], VERIFY_TIMEOUT_MS);
    expect(r.code).toBe(2);
  });

  test("an empty directory exits 2", async () => {
    const r = await runCli(["verify-chain", makeTempDir(), "--json"], VERIFY_TIMEOUT_MS);
    expect(r.code).toBe(2);
  });
});

// ---------------------------------------------------------------- the log table

describe("log table tampering is caught at the tampered index", () => {
  tamperCase("a payload byte flipped", (db, rng) => {
    const idx = anyRecord(rng);
    const p = Buffer.from(logRow(db, idx).payload);
    p[rng.below(p.length)] ^= 0x20;
    setPayload(db, idx, p);
    return { expectIndex: idx, reason: /hash mismatch/ };
  });

  tamperCase("a payload replaced by another valid canonical JSON record", (db, rng) => {
    const idx = anyRecord(rng);
    const old = JSON.parse(logRow(db, idx).payload.toString("utf8")) as Record<string, unknown>;
    const forged = { ...old, data: { name: "forged", value: "attacker" }, subject: "s-forged" };
    setPayload(db, idx, Buffer.from(canonicalJson(forged), "utf8"));
    return { expectIndex: idx, reason: /hash mismatch/ };
  });

  tamperCase("a term raised", (db, rng) => {
    const idx = anyRecord(rng);
    db.prepare("UPDATE log SET term = term + 1 WHERE idx = ?").run(idx);
    return { expectIndex: idx };
  });

  tamperCase("a term lowered below its predecessor's", (db, rng) => {
    const idx = anyRecord(rng);
    const row = logRow(db, idx);
    expect(row.term).toBeGreaterThan(1); // records are written in term 2: genesis is term 1
    db.prepare("UPDATE log SET term = term - 1 WHERE idx = ?").run(idx);
    return { expectIndex: idx };
  });

  tamperCase("a kind changed", (db, rng) => {
    const idx = anyRecord(rng);
    const kind = rng.pick([0, 2, 3]);
    db.prepare("UPDATE log SET kind = ? WHERE idx = ?").run(kind, idx);
    return { expectIndex: idx, reason: /hash mismatch/ };
  });

  tamperCase("a stored hash changed", (db, rng) => {
    const idx = rng.pick([...layout.records, ...layout.checkpoints]);
    const h = Buffer.from(logRow(db, idx).hash);
    h[rng.below(32)] ^= 0x01;
    db.prepare("UPDATE log SET hash = ? WHERE idx = ?").run(h, idx);
    return { expectIndex: idx, reason: /hash mismatch/ };
  });

  tamperCase("the genesis CONFIG entry's payload changed", (db, rng) => {
    const p = Buffer.from(logRow(db, 1).payload);
    p[p.length - 2] ^= 0x01;
    setPayload(db, 1, p);
    return { expectIndex: 1 };
  });

  tamperCase("a row deleted in the middle", (db, rng) => {
    const idx = rng.pick(layout.records.filter((r) => r > 2 && r < layout.last));
    db.prepare("DELETE FROM log WHERE idx = ?").run(idx);
    return { expectIndex: idx, reason: /missing/ };
  });

  tamperCase("the last rows deleted below the hard state's commit_index", (db, rng) => {
    const count = 1 + rng.below(5);
    const first = layout.last - count + 1;
    db.prepare("DELETE FROM log WHERE idx >= ?").run(first);
    return { expectIndex: first, reason: /commit_index/ };
  });

  tamperCase("a pair of rows swapped (payload, term, kind, hash)", (db, rng) => {
    const i = rng.pick(layout.records.filter((r) => r < layout.last));
    const j = rng.pick([...layout.records, ...layout.checkpoints].filter((r) => r > i));
    const a = logRow(db, i);
    const b = logRow(db, j);
    const put = db.prepare("UPDATE log SET payload = ?, term = ?, kind = ?, hash = ? WHERE idx = ?");
    put.run(b.payload, b.term, b.kind, b.hash, i);
    put.run(a.payload, a.term, a.kind, a.hash, j);
    return { expectIndex: i };
  });

  tamperCase("two adjacent rows swapped", (db, rng) => {
    const i = rng.pick(layout.records.filter((r) => layout.records.includes(r + 1)));
    const a = logRow(db, i);
    const b = logRow(db, i + 1);
    const put = db.prepare("UPDATE log SET payload = ?, term = ?, kind = ?, hash = ? WHERE idx = ?");
    put.run(b.payload, b.term, b.kind, b.hash, i);
    put.run(a.payload, a.term, a.kind, a.hash, i + 1);
    return { expectIndex: i };
  });
});

// ---------------------------------------------------------------- checkpoints, with a forged tail

describe("checkpoint tampering is caught even when the forger re-chains everything after it", () => {
  tamperCase("a checkpoint's root changed, tail re-chained, Merkle and state rebuilt", (db, rng) => {
    const idx = rng.pick(layout.checkpoints);
    const cp = checkpointAt(db, idx);
    setPayload(db, idx, Buffer.from(canonicalJson({ ...cp, root: flipHex(cp.root, rng.below(64)) }), "utf8"));
    forgeFrom(db, idx);
    return { expectIndex: idx, reason: /root/ };
  });

  tamperCase("a checkpoint's root changed and re-signed with the node's own key, tail re-chained", (db, rng) => {
    const idx = rng.pick(layout.checkpoints);
    const cp = checkpointAt(db, idx);
    const forged = resign({ ...cp, root: flipHex(cp.root, rng.below(64)) }, secretKeyHex);
    setPayload(db, idx, Buffer.from(canonicalJson(forged), "utf8"));
    forgeFrom(db, idx);
    return { expectIndex: idx, reason: /root/ };
  });

  tamperCase("a checkpoint's head changed and re-signed, tail re-chained", (db, rng) => {
    const idx = rng.pick(layout.checkpoints);
    const cp = checkpointAt(db, idx);
    const forged = resign({ ...cp, head: flipHex(cp.head, rng.below(64)) }, secretKeyHex);
    setPayload(db, idx, Buffer.from(canonicalJson(forged), "utf8"));
    forgeFrom(db, idx);
    return { expectIndex: idx, reason: /head/ };
  });

  tamperCase("a checkpoint's signature changed, tail re-chained", (db, rng) => {
    const idx = rng.pick(layout.checkpoints);
    const cp = checkpointAt(db, idx);
    setPayload(db, idx, Buffer.from(canonicalJson({ ...cp, sig: flipHex(cp.sig, rng.below(128)) }), "utf8"));
    forgeFrom(db, idx);
    return { expectIndex: idx, reason: /signature/ };
  });

  tamperCase("a record rewritten and the tail re-chained: caught at the next signed checkpoint", (db, rng) => {
    const { record, checkpoint } = recordBeforeACheckpoint(rng);
    const old = JSON.parse(logRow(db, record).payload.toString("utf8")) as Record<string, unknown>;
    setPayload(db, record, Buffer.from(canonicalJson({ ...old, data: { name: "rewritten", value: -1 } }), "utf8"));
    forgeFrom(db, record);
    return { expectIndex: checkpoint, reason: /root|head/ };
  });

  tamperCase("a row deleted, later rows renumbered and re-chained: caught at the next checkpoint", (db, rng) => {
    const { record, checkpoint } = recordBeforeACheckpoint(rng);
    const tail = logRows(db).filter((r) => r.idx > record);
    db.prepare("DELETE FROM log WHERE idx >= ?").run(record);
    const insert = db.prepare("INSERT INTO log (idx, term, kind, payload, hash) VALUES (?, ?, ?, ?, ?)");
    for (const r of tail) insert.run(r.idx - 1, r.term, r.kind, r.payload, r.hash);
    db.prepare("UPDATE hard_state SET commit_index = commit_index - 1, last_applied = last_applied - 1 WHERE id = 1").run();
    forgeFrom(db, record);
    // The checkpoint moved down one index but still says size = its old index - 1.
    return { expectIndex: checkpoint - 1, reason: /size/ };
  });

  tamperCase("the checkpoints table's root changed", (db, rng) => {
    const idx = rng.pick(layout.checkpoints);
    const row = db.prepare("SELECT root FROM checkpoints WHERE idx = ?").get(idx) as { root: string };
    db.prepare("UPDATE checkpoints SET root = ? WHERE idx = ?").run(flipHex(row.root, rng.below(64)), idx);
    return { expectIndex: idx, reason: /checkpoints table/ };
  });

  tamperCase("the checkpoints table's sig changed", (db, rng) => {
    const idx = rng.pick(layout.checkpoints);
    const row = db.prepare("SELECT sig FROM checkpoints WHERE idx = ?").get(idx) as { sig: string };
    db.prepare("UPDATE checkpoints SET sig = ? WHERE idx = ?").run(flipHex(row.sig, rng.below(128)), idx);
    return { expectIndex: idx, reason: /checkpoints table/ };
  });

  tamperCase("a checkpoints table row deleted", (db, rng) => {
    const idx = rng.pick(layout.checkpoints);
    db.prepare("DELETE FROM checkpoints WHERE idx = ?").run(idx);
    return { expectIndex: idx, reason: /checkpoints table/ };
  });

  tamperCase("a checkpoints table row pointing at a non-checkpoint entry", (db, rng) => {
    const idx = rng.pick(layout.checkpoints);
    const target = rng.pick(layout.records);
    db.prepare("UPDATE checkpoints SET idx = ? WHERE idx = ?").run(target, idx);
    return { expectIndex: target, reason: /no CHECKPOINT entry/ };
  });
});

// ---------------------------------------------------------------- Merkle nodes and state tables

describe("derived tables are checked against the log", () => {
  tamperCase("a stored Merkle node changed", (db, rng) => {
    const node = rng.pick(layout.merkle);
    const row = db.prepare("SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?").get(node.level, node.idx) as { hash: Buffer };
    const h = Buffer.from(row.hash);
    h[rng.below(32)] ^= 0x80;
    db.prepare("UPDATE merkle_nodes SET hash = ? WHERE level = ? AND idx = ?").run(h, node.level, node.idx);
    // Node (level, idx) covers leaves [idx·2^level, (idx+1)·2^level); leaf i is entry i+1, so
    // the entry that completes it is (idx+1)·2^level.
    return { expectIndex: (node.idx + 1) * 2 ** node.level, reason: /Merkle/ };
  });

  tamperCase("a stored Merkle node deleted", (db, rng) => {
    const node = rng.pick(layout.merkle.filter((n) => n.level >= 1));
    db.prepare("DELETE FROM merkle_nodes WHERE level = ? AND idx = ?").run(node.level, node.idx);
    return { expectIndex: (node.idx + 1) * 2 ** node.level, reason: /Merkle/ };
  });

  tamperCase("a subject's version changed", (db, rng) => {
    const s = rng.pick(layout.subjects);
    db.prepare("UPDATE subjects SET version = version + 1 WHERE subject = ?").run(s.subject);
    return { expectIndex: s.last_index, reason: /subject/ };
  });

  tamperCase("a subject's head changed", (db, rng) => {
    const s = rng.pick(layout.subjects);
    db.prepare("UPDATE subjects SET head = ? WHERE subject = ?").run(randomBytes(32), s.subject);
    return { expectIndex: s.last_index, reason: /subject/ };
  });

  tamperCase("a subject_records row pointing at another index", (db, rng) => {
    const idx = anyRecord(rng);
    const other = rng.pick(layout.records.filter((r) => r !== idx));
    db.prepare("UPDATE subject_records SET idx = ? WHERE idx = ?").run(other, idx);
    return { expectIndex: "any", reason: /subject_records/ };
  });

  tamperCase("a dedup row's digest changed", (db, rng) => {
    const d = rng.pick(layout.dedup);
    db.prepare("UPDATE dedup SET digest = ? WHERE key = ?").run("0".repeat(64), d.key);
    return { expectIndex: d.idx, reason: /dedup/ };
  });

  tamperCase("a dedup row deleted", (db, rng) => {
    const d = rng.pick(layout.dedup);
    db.prepare("DELETE FROM dedup WHERE key = ?").run(d.key);
    return { expectIndex: "any", reason: /dedup/ };
  });

  tamperCase("last_applied raised above commit_index", (db, rng) => {
    db.prepare("UPDATE hard_state SET last_applied = commit_index + 1 WHERE id = 1").run();
    return { expectIndex: "any", reason: /last_applied/ };
  });
});

// SQLite is dynamically typed and the tables' CHECK constraints let these through a plain UPDATE
// (TEXT and REAL compare greater than any integer): a tampered column must still be a violation
// at its index (exit 1), not "unreadable input" (exit 2), and never a pass.
describe("columns holding a value of the wrong SQLite type", () => {
  tamperCase("a term stored as a REAL (2.5)", (db, rng) => {
    const idx = anyRecord(rng);
    db.prepare("UPDATE log SET term = 2.5 WHERE idx = ?").run(idx);
    return { expectIndex: idx };
  });

  tamperCase("a term beyond 2^53 (an exact SQLite integer JavaScript cannot hold)", (db, rng) => {
    const idx = anyRecord(rng);
    db.prepare("UPDATE log SET term = 9007199254740993 WHERE idx = ?").run(idx);
    return { expectIndex: idx };
  });

  tamperCase("a kind stored as a REAL (1.5)", (db, rng) => {
    const idx = anyRecord(rng);
    db.prepare("UPDATE log SET kind = 1.5 WHERE idx = ?").run(idx);
    return { expectIndex: idx };
  });

  tamperCase("hard_state commit_index stored as TEXT", (db, rng) => {
    db.prepare("UPDATE hard_state SET commit_index = 'x' WHERE id = 1").run();
    return { expectIndex: "any" };
  });
});

// ---------------------------------------------------------------- the forger itself

describe("the test's forger is complete (so the cases above test the verifier, not the forger)", () => {
  test("re-chaining and rebuilding an untouched copy changes no byte of the log, Merkle or state tables", async () => {
    const dir = makeTempDir();
    fs.cpSync(base, dir, { recursive: true });
    const db = new Database(path.join(dir, "ledger.db"));
    const dump = (): string =>
      JSON.stringify([
        logRows(db).map((r: LogRow) => [r.idx, r.term, r.kind, r.payload.toString("hex"), r.hash.toString("hex")]),
        db.prepare("SELECT level, idx, hex(hash) AS h FROM merkle_nodes ORDER BY level, idx").all(),
        db.prepare("SELECT * FROM checkpoints ORDER BY idx").all(),
        db.prepare("SELECT subject, version, hex(head) AS h, last_index FROM subjects ORDER BY subject").all(),
        db.prepare("SELECT * FROM subject_records ORDER BY subject, version").all(),
        db.prepare("SELECT key, digest, idx, term, hex(hash) AS h FROM dedup ORDER BY key").all(),
      ]);
    try {
      const before = dump();
      forgeFrom(db, 1);
      expect(dump()).toBe(before);
    } finally {
      db.close();
    }
  });

  // The limit of offline verification, shown rather than hidden: entries after the last signed
  // checkpoint are anchored by nothing a forger cannot recompute, so a complete rewrite of that
  // unsigned tail verifies. The checkpoint interval (T ms of activity) bounds that window.
  test("a record in the unsigned tail rewritten with a complete cover-up verifies (exit 0)", async () => {
    const lastCheckpoint = layout.checkpoints[layout.checkpoints.length - 1];
    const tail = layout.records.filter((r) => r > lastCheckpoint);
    expect(tail.length).toBeGreaterThan(0);
    const idx = rngFor("unsigned tail").pick(tail);
    const o = await tamperAndVerify((db) => {
      const old = JSON.parse(logRow(db, idx).payload.toString("utf8")) as Record<string, unknown>;
      setPayload(db, idx, Buffer.from(canonicalJson({ ...old, data: { name: "rewritten", value: -1 } }), "utf8"));
      forgeFrom(db, idx);
    });
    if (o.result.code !== 0) keepDir(o.dir, "forger self-check failed");
    expect({ code: o.result.code, ok: o.report?.ok }).toEqual({ code: 0, ok: true });
    expectSamePiped(o);
  });
});

// ---------------------------------------------------------------- records no honest leader writes

describe("a record that does not apply is a violation at its index, even with a complete cover-up", () => {
  // The API runs apply's validation on the exact bytes before it proposes, so none of these reach
  // an honest log; a forger who writes one and recomputes everything else is still caught.
  const cases: Array<[string, (old: Record<string, unknown>) => string]> = [
    ["a lone surrogate in the subject", (old) => canonicalJson({ ...old, subject: "x\ud800y" })],
    ["a subject of 201 code points", (old) => canonicalJson({ ...old, subject: "😀".repeat(201) })],
    ["a payload out of canonical form", (old) => JSON.stringify({ ...old, v: 1 }, null, 1)],
    ["a number no canonical form keeps", (old) => canonicalJson({ ...old, data: 0 }).replace('"data":0', '"data":12345678901234567890')],
  ];
  test.each(cases)("%s", async (name, rewrite) => {
    const lastCheckpoint = layout.checkpoints[layout.checkpoints.length - 1];
    const idx = rngFor(`unappliable ${name}`).pick(layout.records.filter((r) => r > lastCheckpoint));
    const o = await tamperAndVerify((db) => {
      const old = JSON.parse(logRow(db, idx).payload.toString("utf8")) as Record<string, unknown>;
      setPayload(db, idx, Buffer.from(rewrite(old), "utf8"));
      forgeFrom(db, idx);
    });
    try {
      expect(o.result.code).toBe(1);
      expect(o.report?.first_bad_index).toBe(idx);
      expect(String(o.report?.reason)).toMatch(/does not apply/);
      expectSamePiped(o);
    } catch (err) {
      keepDir(o.dir, "unappliable record case failed");
      if (err instanceof Error) err.message += `\n--- ${reproduce(name)}\n${describeOutcome(o)}`;
      throw err;
    }
  });
});
