// Issue 8, "promised and never exercised": `resonetics verify-chain <data-dir> [--from] [--json]` as a
// process (DESIGN.md "Command line" and "Offline verification"; README "Audit"). Exit 0 with the
// "verified: ..." line naming the log's real size and head; exit 1 with "VIOLATION at index N" for a
// flipped byte in an entry; exit 2 for a missing path, a dir that is not a data dir, a ledger.db of
// garbage bytes, a --from the dir cannot serve, and bad flags. --json gives one object of a fixed shape.
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import Database from "better-sqlite3";
import { isAppendAck, postRecord } from "../support/ledger-client";
import { ProcessResult, Server, cleanupAll, getJson, makeTempDir, parseJsonOutput, pollUntil, runCli, startServer, withFailureContext } from "../support/server";

/** Records appended: enough for several checkpoints at --checkpoint-every 5, small enough to be quick. */
const RECORDS = 12;
/** The entry whose payload is flipped: a record (index 1 is the genesis CONFIG, 2 the NOOP). */
const TAMPERED_INDEX = 6;
const CLI_TIMEOUT_MS = 60_000;
const HEX64 = /^[0-9a-f]{64}$/;

let dir = "";
let server: Server | undefined;
let finalStatus: { commit_index: number; head: string } = { commit_index: 0, head: "" };
const context = (): string => `npx jest test/e2e/verify-chain-cli.test.ts; data dir ${dir}\n${server ? server.output() : "(no server)"}`;
const guarded = (fn: () => Promise<void>) => (): Promise<void> => withFailureContext(context, dir === "" ? [] : [dir], fn);

const verify = (args: readonly string[]): Promise<ProcessResult> => runCli(["verify-chain", ...args], CLI_TIMEOUT_MS);

/** A copy of the data dir's files (the node is stopped), for a test that changes them. */
function copyDataDir(): string {
  const to = path.join(makeTempDir(), "copy");
  fs.cpSync(dir, to, { recursive: true });
  return to;
}

beforeAll(guarded(async () => {
  dir = path.join(makeTempDir(), "node");
  server = await startServer(dir, { extraArgs: ["--checkpoint-every", "5", "--checkpoint-interval-ms", "3600000"] });
  const s = server;
  for (let i = 0; i < RECORDS; i++) {
    const r = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: `vc-${i % 3}`, data: { name: `n${i}`, value: i } });
    if (r.status !== 201 || !isAppendAck(r.json)) throw new Error(`append ${i} → ${r.status} ${r.text}`);
  }
  // Every entry known committed is applied before the node stops (the status is what the report must match).
  finalStatus = await pollUntil("commit_index = last_applied", async () => {
    const st = await getJson<{ commit_index: number; last_applied: number; head: string }>(s.baseUrl, "/v1/status");
    return st.commit_index === st.last_applied ? st : undefined;
  });
  const stopped = await s.stop();
  if (stopped.code !== 0 || stopped.forced) throw new Error(`the node did not stop cleanly: ${JSON.stringify(stopped)}`);
}), 90_000);

afterAll(async () => {
  await cleanupAll();
}, 60_000);

describe("verify-chain on a good data dir", () => {
  test("text: exit 0, a first 'verified:' line with the entry count, checkpoints, the real head, root and state_root; nothing on stderr", guarded(async () => {
    const r = await verify([dir]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    // The first line is the verdict (lines after it grade the coverage: signed / chained, not yet signed).
    const m = /^verified: (\d+) entries, (\d+) checkpoints; head ([0-9a-f]{64}); root ([0-9a-f]{64}); state_root ([0-9a-f]{64})$/.exec(r.stdout.split("\n")[0]);
    expect(m).not.toBeNull();
    const [, entries, checkpoints, head] = m as RegExpExecArray;
    expect(Number(entries)).toBe(finalStatus.commit_index);
    // --checkpoint-every 5 over >= 14 entries: at least two checkpoints, each itself an entry.
    expect(Number(checkpoints)).toBeGreaterThanOrEqual(2);
    expect(head).toBe(finalStatus.head);
  }));

  test("--json: exit 0 and one object {ok, from, entries, checkpoints, size, head, root, state_root, last_applied}", guarded(async () => {
    const r = await verify([dir, "--json"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    const j = parseJsonOutput(r.stdout);
    expect(j).toMatchObject({ ok: true, from: "genesis", entries: finalStatus.commit_index, size: finalStatus.commit_index, head: finalStatus.head, last_applied: finalStatus.commit_index });
    expect(j?.root).toMatch(HEX64);
    expect(j?.state_root).toMatch(HEX64);
    expect(j?.checkpoints).toBeGreaterThanOrEqual(2);
    expect(j).not.toHaveProperty("first_bad_index");
    // The text line and the JSON report agree.
    const text = await verify([dir]);
    expect(text.stdout).toContain(`root ${String(j?.root)}; state_root ${String(j?.state_root)}`);
  }));
});

describe("verify-chain on a tampered data dir", () => {
  test(`a flipped byte in entry ${TAMPERED_INDEX}'s payload: exit 1, 'VIOLATION at index ${TAMPERED_INDEX}: <reason>' (text) and first_bad_index (--json)`, guarded(async () => {
    const copy = copyDataDir();
    const db = new Database(path.join(copy, "ledger.db"));
    try {
      const row = db.prepare("SELECT payload FROM log WHERE idx = ?").get(TAMPERED_INDEX) as { payload: Buffer } | undefined;
      expect(row).toBeDefined();
      const payload = Buffer.from((row as { payload: Buffer }).payload);
      // A byte inside the JSON text (not its braces): the entry still parses the same way, its hash does not.
      const at = Math.floor(payload.length / 2);
      payload[at] ^= 0x01;
      expect(db.prepare("UPDATE log SET payload = ? WHERE idx = ?").run(payload, TAMPERED_INDEX).changes).toBe(1);
    } finally {
      db.close();
    }
    const text = await verify([copy]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(new RegExp(`^VIOLATION at index ${TAMPERED_INDEX}: \\S.*\\n$`));
    const json = await verify([copy, "--json"]);
    expect(json.code).toBe(1);
    const j = parseJsonOutput(json.stdout);
    expect(j).toMatchObject({ ok: false, first_bad_index: TAMPERED_INDEX });
    expect(typeof j?.reason).toBe("string");
    // The original is untouched and still verifies: the tamper was in the copy only.
    expect((await verify([dir])).code).toBe(0);
  }));
});

describe("verify-chain exits 2 for usage errors and input it cannot read", () => {
  /** Exit 2; text mode says why on stderr (prefixed "verify-chain:" when the command itself refused) and prints no verdict. */
  const expectUsage = (r: ProcessResult, stderrPattern: RegExp): void => {
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 2, stderr: expect.stringMatching(stderrPattern) });
    expect(r.stdout).not.toMatch(/verified:|VIOLATION/);
  };

  test("a missing path, a dir that is not a data dir, and a ledger.db of garbage bytes", guarded(async () => {
    const missing = path.join(makeTempDir(), "does-not-exist");
    expectUsage(await verify([missing]), new RegExp(`^verify-chain: .*${missing.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}.*does not exist`));

    const notData = makeTempDir();
    fs.writeFileSync(path.join(notData, "README.txt"), "not a data dir\n");
    expectUsage(await verify([notData]), /^verify-chain: .*ledger\.db does not exist/);

    const garbage = makeTempDir();
    fs.writeFileSync(path.join(garbage, "ledger.db"), randomBytes(8192));
    const g = await verify([garbage]);
    expectUsage(g, /^verify-chain: cannot (open|read) .*ledger\.db/);
    const gj = await verify([garbage, "--json"]);
    expect(gj.code).toBe(2);
    expect(parseJsonOutput(gj.stdout)).toMatchObject({ ok: false, error: "unreadable" });

    // A data dir whose ledger.db was cut to half its size (a torn copy) is unreadable, not a violation.
    const torn = copyDataDir();
    const file = path.join(torn, "ledger.db");
    fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
    const t = await verify([torn]);
    expect(t.code).toBe(2);
  }));

  test("bad flags: --from that is neither genesis nor snapshot, --from snapshot without a snapshot, an unknown flag, no argument", guarded(async () => {
    expectUsage(await verify([dir, "--from", "yesterday"]), /^verify-chain: --from must be genesis.*, got yesterday\n$/);
    const json = await verify([dir, "--from", "yesterday", "--json"]);
    expect(json.code).toBe(2);
    expect(parseJsonOutput(json.stdout)).toMatchObject({ ok: false, error: "unreadable", message: expect.stringContaining("--from") });
    expectUsage(await verify([dir, "--from", "snapshot"]), /^verify-chain: .*no snapshot/);
    expectUsage(await verify([dir, "--bogus"]), /unknown option '--bogus'/);
    expectUsage(await verify([]), /missing required argument 'data-dir'/);
  }));
});
