// Issue 9: a data dir is served by one process at a time. A second `serve` (or `join`) on a held
// data dir exits 2 at once naming the holder's pid, and the first keeps committing; a kill -9 never
// leaves a lock that blocks the restart, and a pid file naming a live process does not fake one.
import * as fs from "node:fs";
import * as path from "node:path";
import { isAppendAck, postRecord } from "../support/ledger-client";
import { Server, cleanupAll, getJson, makeTempDir, runCli, runVerifyChain, startServer, withFailureContext } from "../support/server";
import { freePortRange } from "../support/cluster";

/** kill -9 / restart rounds: each one a chance for a stale lock to block the next start. */
const KILL_ROUNDS = 3;
/** A refused start does no work: a generous bound, far below the default busy wait's retries. */
const REFUSAL_TIMEOUT_MS = 30_000;

let dir = "";
let server: Server | undefined;
const context = (): string => `npx jest test/e2e/data-dir-lock.test.ts; data dir ${dir}\n${server ? server.output() : "(no server)"}`;

afterAll(async () => {
  await cleanupAll();
}, 60_000);

async function append(s: Server, i: number): Promise<number> {
  const r = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: `lock-${i}`, data: { name: "n", value: i } });
  if (r.status !== 201 || !isAppendAck(r.json)) throw new Error(`append ${i} → ${r.status} ${r.text}`);
  return r.json.index;
}

describe("the data-dir lock", () => {
  beforeAll(async () => {
    dir = path.join(makeTempDir(), "node");
    server = await startServer(dir);
  }, 60_000);

  test("a second serve on the same data dir exits 2 naming the holder's pid; the first keeps committing", () =>
    withFailureContext(context, [dir], async () => {
      const s = server!;
      const before = await append(s, 1);
      const second = await runCli(["serve", "--data-dir", dir, "--host", "127.0.0.1", "--port", "0"], REFUSAL_TIMEOUT_MS);
      expect(second.code).toBe(2);
      expect(second.stderr).toContain(`pid ${s.pid}`);
      expect(second.stderr).toContain(dir);
      expect(second.stdout).not.toContain('"msg":"listening"');
      // The first is untouched: still running, still the leader of its term, still committing.
      expect(s.running()).toBe(true);
      const after = await append(s, 2);
      expect(after).toBeGreaterThan(before);
      const st = await getJson<{ role: string; halted: string | null; last_applied: number }>(s.baseUrl, "/v1/status");
      expect(st).toMatchObject({ role: "leader", halted: null });
      expect(st.last_applied).toBeGreaterThanOrEqual(after);
    }), 90_000);

  test("a join on a held data dir is refused the same way, before it contacts the seed or writes", () =>
    withFailureContext(context, [dir], async () => {
      const s = server!;
      const listing = fs.readdirSync(dir).sort();
      const port = await freePortRange(1);
      // The seed is the server itself; a refused join never reaches it (the lock is checked first).
      const r = await runCli(["join", "--data-dir", dir, "--id", "n9", "--seed", s.baseUrl, "--token-file", path.join(dir, "admin.token"),
        "--host", "127.0.0.1", "--port", String(port)], REFUSAL_TIMEOUT_MS);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`pid ${s.pid}`);
      expect(fs.readdirSync(dir).sort().filter((f) => !f.startsWith("ledger.db"))).toEqual(listing.filter((f) => !f.startsWith("ledger.db")));
      expect(await append(s, 3)).toBeGreaterThan(0);
    }), 90_000);

  test(`kill -9 never leaves a lock that blocks the restart (${KILL_ROUNDS} rounds), and the chain verifies`, () =>
    withFailureContext(context, [dir], async () => {
      for (let round = 0; round < KILL_ROUNDS; round++) {
        const killed = server!;
        const acked = await append(killed, 100 + round);
        await killed.kill9();
        server = await startServer(dir);
        expect(server.pid).not.toBe(killed.pid);
        const st = await getJson<{ last_applied: number }>(server.baseUrl, "/v1/status");
        expect(st.last_applied).toBeGreaterThanOrEqual(acked);
        expect(await append(server, 200 + round)).toBeGreaterThan(acked);
      }
      await server!.stop();
      const v = await runVerifyChain(dir);
      expect(v.code).toBe(0);
    }), 180_000);

  test("a pid file naming a live process is no lock: only the held SQLite lock counts", () =>
    withFailureContext(context, [dir], async () => {
      expect(server!.running()).toBe(false);
      // This jest worker is alive: a kill(pid, 0) check would take it for the holder.
      fs.writeFileSync(path.join(dir, "ledger.lock.pid"), `${process.pid} 2000-01-01T00:00:00.000Z\n`, { mode: 0o600 });
      server = await startServer(dir);
      expect(await append(server, 300)).toBeGreaterThan(0);
      expect(fs.readFileSync(path.join(dir, "ledger.lock.pid"), "utf8")).toMatch(new RegExp(`^${server.pid} `));
      await server.stop();
    }), 90_000);
});
