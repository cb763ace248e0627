// Issue 9: honest health. /health = the process is alive; /ready = 200 only when the node can
// serve (not halted, knows a leader, has applied what it knows committed); a halted node says so in
// /v1/status and never reports role "leader". The node is halted for real: the test holds SQLite's
// write lock on its ledger.db, so its next Ready cannot be persisted (SQLITE_BUSY after the busy wait).
import * as path from "node:path";
import Database from "better-sqlite3";
import { postRecord } from "../support/ledger-client";
import { Server, cleanupAll, http, makeTempDir, pollUntil, runCli, startServer, withFailureContext } from "../support/server";

interface ReadyView {
  ready: boolean;
  reasons: string[];
  role: string;
  leader: string | null;
  halted: string | null;
}

let server: Server | undefined;
let dir = "";
const context = (): string => `npx jest test/e2e/health.test.ts; data dir ${dir}\n${server ? server.output() : "(no server)"}`;

afterAll(async () => {
  await cleanupAll();
}, 60_000);

describe("health and readiness", () => {
  test("a serving single node: /ready 200 with no reasons, /health ok", () => {
    dir = path.join(makeTempDir(), "node");
    return withFailureContext(context, [dir], async () => {
      server = await startServer(dir);
      const ready = await pollUntil("/ready answers 200", async () => {
        const r = await http(server!.baseUrl, "GET", "/ready");
        return r.status === 200 ? (r.json as ReadyView) : undefined;
      });
      expect(ready).toMatchObject({ ready: true, reasons: [], role: "leader", halted: null });
      expect((await http(server.baseUrl, "GET", "/health")).json).toEqual({ status: "ok" });
    });
  }, 60_000);

  test("a halted leader: /ready 503 naming the halt, /v1/status role halted (never leader), /health still ok", () =>
    withFailureContext(context, [dir], async () => {
      const s = server!;
      const blocker = new Database(path.join(dir, "ledger.db"), { timeout: 0 });
      try {
        blocker.exec("BEGIN IMMEDIATE"); // the write lock: the node's next persist waits, then fails
        const write = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: "halt", data: { name: "n", value: 1 } });
        expect(write.status).toBe(503); // refused, never acknowledged
        const st = await pollUntil("/v1/status says halted", async () => {
          const r = await http(s.baseUrl, "GET", "/v1/status");
          const v = r.json as ReadyView;
          return v.halted !== null ? v : undefined;
        });
        expect(st.role).toBe("halted");
        expect(st.leader).toBeNull();
        const ready = await http(s.baseUrl, "GET", "/ready");
        expect(ready.status).toBe(503);
        const rv = ready.json as ReadyView;
        expect(rv.ready).toBe(false);
        expect(rv.role).not.toBe("leader");
        expect(rv.reasons.some((x) => x.startsWith("halted: "))).toBe(true);
        const health = await http(s.baseUrl, "GET", "/health");
        expect(health.status).toBe(200);
        expect(health.json).toEqual({ status: "ok" });
      } finally {
        blocker.exec("ROLLBACK");
        blocker.close();
      }
      // Free of the lock, it still does not claim to lead (recovery is the storage-fault policy's, not a silent resume).
      const after = await http(s.baseUrl, "GET", "/ready");
      expect(after.status).toBe(503);
      expect((after.json as ReadyView).role).not.toBe("leader");
      await s.stop();
    }), 90_000);

  test("a node that knows no leader (one of three, alone): /ready 503 'no known leader', /health ok", () => {
    const root = makeTempDir();
    return withFailureContext(context, [root], async () => {
      const init = await runCli(["cluster", "init", "--dir", root, "--nodes", "3", "--base-port", "1"]);
      expect(init.code).toBe(0);
      dir = path.join(root, "n1");
      server = await startServer(dir); // --port 0: its peers' addresses (ports 2, 3) answer nothing
      const r = await http(server.baseUrl, "GET", "/ready");
      expect(r.status).toBe(503);
      const v = r.json as ReadyView;
      expect(v.ready).toBe(false);
      expect(v.leader).toBeNull();
      expect(v.reasons).toContain("no known leader");
      expect((await http(server.baseUrl, "GET", "/health")).status).toBe(200);
      await server.stop();
    });
  }, 60_000);
});
