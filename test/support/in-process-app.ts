// The HTTP API in this test process: a real single-voter RaftLedgerNode on a temp data dir, the
// express app of src/api/server.ts wired as `resonetics serve` wires it (src/cli/serve.ts), listening
// on 127.0.0.1:0. Unlike test/support/server.ts (a spawned `resonetics serve`), the api code runs in
// this process, so coverage tools (Stryker) see it. The deps may be wrapped per test (a fake
// follower, a halted node) without touching the node itself.
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import pino, { Logger } from "pino";
import { openDataDir } from "../../src/node/data-dir";
import { RaftLedgerNode, RaftNodeOptions } from "../../src/node/raft-node";
import { RecordTypes } from "../../src/node/record-types";
import { AuditRunner } from "../../src/api/audit";
import { AppOptions, createApp, HttpsCredentials, listen } from "../../src/api/server";
import type { RouteDeps } from "../../src/api/routes";

export interface InProcessApp {
  readonly dir: string;
  readonly node: RaftLedgerNode;
  readonly baseUrl: string;
  readonly port: number;
  readonly adminToken: string;
  readonly auditToken: string;
  readonly clusterId: string;
  /** Closes the HTTP server and the node, and removes the data dir. */
  close(): Promise<void>;
}

export interface InProcessOptions {
  /** Options of the node over the test defaults below. */
  readonly node?: Partial<RaftNodeOptions>;
  readonly bodyLimitBytes?: number;
  readonly publicAudit?: boolean;
  readonly app?: AppOptions;
  /** Changes the deps the app gets (e.g. a follower's writes); the default passes them as built. */
  readonly wrap?: (deps: RouteDeps) => RouteDeps;
  /** The app's logger (request lines, errors); the node and the audit log nothing. Default: silent. */
  readonly logger?: Logger;
  /** A data dir to open again (a restart); close() then leaves it for the caller. Default: a new temp dir, removed on close. */
  readonly dir?: string;
  /** Serve HTTPS with these credentials (baseUrl is then https://); default plain HTTP. */
  readonly tls?: HttpsCredentials;
}

/** The body limit `serve` uses by default (DESIGN.md: a record body is at most 64 KiB by default). */
export const BODY_LIMIT_DEFAULT = 64 * 1024;

let clock = Date.parse("2026-01-01T00:00:00Z");

/** A started node and the deps an app is built over, without the app: see sharedInProcessApp. */
interface InProcessNode {
  readonly dir: string;
  readonly node: RaftLedgerNode;
  readonly deps: RouteDeps;
  readonly adminToken: string;
  readonly auditToken: string;
  readonly clusterId: string;
  close(): Promise<void>;
}

async function startNode(o: InProcessOptions): Promise<InProcessNode> {
  const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-api-inproc-"));
  const logger = pino({ level: "silent" });
  const dd = openDataDir(dir, "127.0.0.1:0");
  const node = new RaftLedgerNode(dd, {
    tickMs: 5, electionTick: 10, heartbeatTick: 2, checkpointEvery: 1_000_000, checkpointIntervalMs: 3_600_000, snapshotEvery: 0,
    writeTimeoutMs: 10_000, now: () => new Date(clock++), logger, ...o.node,
  });
  await node.leaderKnown();
  const audit = new AuditRunner({
    start: (job, onProgress, onNote) => node.reader.audit(job, onProgress, onNote), adminToken: dd.adminToken, auditToken: dd.auditToken, publicAudit: o.publicAudit ?? false, logger,
  });
  const deps: RouteDeps = {
    node, writes: node.writes, reader: node.reader, types: new RecordTypes(), adminToken: dd.adminToken,
    bodyLimitBytes: o.bodyLimitBytes ?? BODY_LIMIT_DEFAULT, audit,
  };
  let closed = false;
  return {
    dir, node, deps, adminToken: dd.adminToken, auditToken: dd.auditToken, clusterId: dd.clusterId,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await node.close();
      if (o.dir === undefined) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The app over a started node, listening on 127.0.0.1:0; close() closes the listener, then `after`. */
async function serveApp(n: InProcessNode, o: InProcessOptions, after: () => Promise<void>): Promise<InProcessApp> {
  const app = createApp(o.wrap === undefined ? n.deps : o.wrap(n.deps), o.logger ?? pino({ level: "silent" }), o.app ?? {});
  const { server, port } = await listen(app, "127.0.0.1", 0, o.tls);
  let closed = false;
  return {
    dir: n.dir, node: n.node, port, baseUrl: `${o.tls === undefined ? "http" : "https"}://127.0.0.1:${port}`, adminToken: n.adminToken, auditToken: n.auditToken, clusterId: n.clusterId,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await closeServer(server);
      await after();
    },
  };
}

/** Starts node + app; the node is leader (its NOOP applied) when this resolves. */
export async function startInProcessApp(o: InProcessOptions = {}): Promise<InProcessApp> {
  const n = await startNode(o);
  return serveApp(n, o, () => n.close());
}

/**
 * One node per test file, and a new app over it per test (createApp + listen in beforeEach), so the
 * app's construction (route tables, metrics, middleware) runs inside each test: Stryker counts code
 * run outside a test (module scope, describe bodies, beforeAll) as "static", and runs every test
 * against each such mutant. The node (hundreds of ms) starts on the first open(); `setup` then runs
 * once, over that first app (e.g. appends the records the tests read).
 *
 *   const shared = sharedInProcessApp({...});
 *   beforeEach(async () => { app = await shared.open(); });
 *   afterEach(() => app.close());   // the listener only
 *   afterAll(() => shared.close()); // the node and its data dir
 */
export function sharedInProcessApp(o: InProcessOptions = {}, setup?: (app: InProcessApp) => Promise<void>): { open(): Promise<InProcessApp>; close(): Promise<void> } {
  let started: Promise<InProcessNode> | undefined;
  let ready: Promise<void> | undefined;
  return {
    async open(): Promise<InProcessApp> {
      const n = await (started ??= startNode(o));
      const app = await serveApp(n, o, async () => {});
      try {
        await (ready ??= setup === undefined ? Promise.resolve() : setup(app));
      } catch (err) {
        await app.close();
        throw err;
      }
      return app;
    },
    async close(): Promise<void> {
      if (started !== undefined) await (await started).close();
    },
  };
}

/** A pino logger at info that keeps every line it writes, parsed, for a test to read. */
export function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err === undefined ? resolve() : reject(err)));
    server.closeAllConnections();
  });
}
