// Issue 8, "promised and never exercised": DESIGN.md "Command line": "SIGTERM/SIGINT shut down
// cleanly". For each signal, against a real `resonetics serve` process: appends are in flight when
// the signal arrives; the process exits 0 by itself (no SIGKILL), logs "shutting down" with the
// signal's name, releases the data dir (a second serve on it starts), leaves an empty WAL, and every write it
// acknowledged (201) is there after the restart, byte for byte, and the chain verifies.
import * as fs from "node:fs";
import * as path from "node:path";
import { AppendAck, isAppendAck, postRecord } from "../support/ledger-client";
import { Server, cleanupAll, getJson, makeTempDir, mapPool, runVerifyChain, startServer, withFailureContext } from "../support/server";

/** Appends offered per round; the signal goes out once SIGNAL_AFTER of them were acknowledged. */
const OFFERED = 60;
const SIGNAL_AFTER = 20;
/** In flight at once, so some requests are mid-way when the signal lands. */
const CONCURRENCY = 4;
/** A clean stop takes well under this (server.close, node.close); past it the test fails, it does not SIGKILL and pass. */
const STOP_TIMEOUT_MS = 20_000;

afterAll(async () => {
  await cleanupAll();
}, 60_000);

/** The pino lines of a server's output tail, parsed (non-JSON lines dropped). */
function logRecords(s: Server): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of s.output().split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch (e) {
      if (!(e instanceof SyntaxError)) throw e;
      // a line cut at 400 characters by the harness's tail (a long request log): not a shutdown line
    }
  }
  return out;
}

/** The size of the data dir's SQLite WAL file, 0 when there is none. */
function walBytes(dir: string): number {
  const wal = path.join(dir, "ledger.db-wal");
  return fs.existsSync(wal) ? fs.statSync(wal).size : 0;
}

/** Resolves with the exit status, or null after ms (the caller fails then). */
async function exitWithin(s: Server, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([s.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe.each(["SIGINT", "SIGTERM"] as const)("%s", (signal) => {
  let dir = "";
  let server: Server | undefined;
  const context = (): string => `npx jest test/e2e/signals.test.ts -t ${signal}; data dir ${dir}\n${server ? server.output() : "(no server)"}`;

  test(`${signal} while appends are in flight: exit 0, "shutting down" with signal ${signal}, the lock released, nothing acknowledged lost`, () => {
    dir = makeTempDir();
    return withFailureContext(context, [dir], async () => {
      const s = await startServer(dir);
      server = s;
      const acked: AppendAck[] = [];
      let signalled = false;
      const outcomes = await mapPool(Array.from({ length: OFFERED }, (_, i) => i), CONCURRENCY, async (i) => {
        if (signalled && !s.running()) return "not sent";
        try {
          const r = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: `sig-${i % 5}`, data: { name: `n${i}`, value: i } });
          if (r.status === 201 && isAppendAck(r.json)) {
            acked.push(r.json);
            if (acked.length === SIGNAL_AFTER && !signalled) {
              signalled = true;
              process.kill(s.pid, signal);
            }
            return "201";
          }
          // After the signal a request may be refused (503 shutting down); before it, nothing but 201.
          if (!signalled) throw new Error(`append ${i} before the signal → ${r.status} ${r.text}`);
          return String(r.status);
        } catch (e) {
          if (!signalled) throw e;
          return "connection closed"; // the server closed its connections on the way out
        }
      });
      expect(signalled).toBe(true);
      expect(outcomes.filter((o) => o === "201").length).toBeGreaterThanOrEqual(SIGNAL_AFTER);

      const status = await exitWithin(s, STOP_TIMEOUT_MS);
      expect(status).toEqual({ code: 0, signal: null });
      const shutdown = logRecords(s).filter((r) => r.msg === "shutting down");
      expect(shutdown).toHaveLength(1);
      expect(shutdown[0]).toMatchObject({ signal, level: 30 });
      // A clean stop leaves no WAL for the next start to read through (Store.close empties it; the
      // reader's connection closes after the writer's, so SQLite alone would have kept it).
      expect(walBytes(dir)).toBe(0);

      // The lock is released: a second serve on the same dir starts, and every acknowledged write is there.
      const again = await startServer(dir);
      server = again;
      for (const a of acked) {
        const e = await getJson<{ index: number; hash: string }>(again.baseUrl, `/v1/records/${a.index}`);
        expect({ index: e.index, hash: e.hash }).toEqual({ index: a.index, hash: a.hash });
      }
      const stopped = await again.stop();
      expect(stopped).toMatchObject({ code: 0, forced: false });
      const v = await runVerifyChain(dir);
      expect(v.code).toBe(0);
    });
  }, 120_000);
});
