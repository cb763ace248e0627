/**
 * The scaffolding of a test file that runs against one real `resonetics serve`: beforeAll starts
 * it on a fresh temp data dir (and optionally seeds records and waits for a quiet log), afterAll
 * cleans every process and temp dir up, and `guarded` adds the reproduce line, the data dir and
 * the server's output to any failure (keeping the data dir). Call serverSuite once, at the top
 * level of the test file.
 */
import { LogSnapshot, readLogSnapshot, waitQuiescent } from "./ledger-client";
import { Server, StartOptions, cleanupAll, http, makeTempDir, mapPool, parseJsonOutput, runVerifyChain, startServer, withFailureContext } from "./server";

export interface ServerSuiteOptions {
  /** How to start the server (extra args, env). */
  readonly start?: StartOptions;
  /** Records appended once the server listens, each answered 201, with `concurrency` in flight (default 1: in order). */
  readonly seed?: { readonly count: number; readonly record: (i: number) => unknown; readonly concurrency?: number };
  /** Wait in beforeAll until the log is quiescent (its last entry a checkpoint of the rest). Default true. */
  readonly quiescent?: boolean;
  /** Said before `npx jest <file>` in the failure context: e.g. the seed and how to replay it. */
  readonly reproduce?: string;
  /** beforeAll's bound (start, seed, quiescence). Default 60 s. */
  readonly setupTimeoutMs?: number;
}

export interface ServerSuite {
  /** The server beforeAll started; throws when beforeAll failed. */
  server(): Server;
  /** What a failure message says: how to reproduce, the data dir, the server's output. */
  context(): string;
  /** fn with the failure context added to its error, and the data dir kept, when it throws. */
  guarded(fn: () => Promise<void>): () => Promise<void>;
}

/** Registers beforeAll (start, seed, quiet log) and afterAll (cleanupAll) for `file`'s one server. */
export function serverSuite(file: string, opts: ServerSuiteOptions = {}): ServerSuite {
  let dir = "";
  let server: Server | undefined;
  const context = (): string => `${opts.reproduce ?? ""}npx jest ${file}; data dir ${dir}\n` + (server ? server.output() : "(no server)");
  const guarded = (fn: () => Promise<void>) => (): Promise<void> => withFailureContext(context, dir === "" ? [] : [dir], fn);

  afterAll(cleanupAll, 60_000);

  beforeAll(
    guarded(async () => {
      dir = makeTempDir();
      const s = await startServer(dir, opts.start);
      server = s;
      if (opts.seed !== undefined) {
        const { record, concurrency } = opts.seed;
        await mapPool(Array.from({ length: opts.seed.count }, (_, i) => i), concurrency ?? 1, async (i) => {
          const r = await http(s.baseUrl, "POST", "/v1/records", { token: s.token, json: record(i) });
          if (r.status !== 201) throw new Error(`seeding record ${i}: POST → ${r.status} ${r.text}`);
        });
      }
      if (opts.quiescent ?? true) await waitQuiescent(s.baseUrl);
    }),
    opts.setupTimeoutMs ?? 60_000,
  );

  return {
    server: () => {
      if (server === undefined) throw new Error("no server (beforeAll failed)");
      return server;
    },
    context,
    guarded,
  };
}

/**
 * Runs fn between two snapshots of the raw log table, each taken once the log is quiescent (so a
 * timer-driven checkpoint cannot land in between and read as a write fn made).
 */
export async function aroundLog<T>(server: Server, fn: () => Promise<T>): Promise<{ value: T; before: LogSnapshot; after: LogSnapshot }> {
  await waitQuiescent(server.baseUrl);
  const before = readLogSnapshot(server.dir);
  const value = await fn();
  await waitQuiescent(server.baseUrl);
  return { value, before, after: readLogSnapshot(server.dir) };
}

/** Runs fn and expects the log table byte-identical afterwards (same rows, same digest). */
export async function expectNothingWritten<T>(server: Server, fn: () => Promise<T>): Promise<T> {
  const { value, before, after } = await aroundLog(server, fn);
  expect({ rows: after.rows, digest: after.digest }).toEqual({ rows: before.rows, digest: before.digest });
  return value;
}

/**
 * The end of a suite that wrote to the server: GET /v1/audit/verify is ok, the server stops on
 * SIGTERM without a SIGKILL, and `verify-chain` exits 0 with ok on the stopped data dir.
 */
export async function expectVerifiesAndStops(server: Server): Promise<void> {
  await waitQuiescent(server.baseUrl);
  const v = await http(server.baseUrl, "GET", "/v1/audit/verify", { token: server.token });
  expect({ status: v.status, ok: (v.json as { ok?: unknown } | undefined)?.ok, text: v.status === 200 ? "" : v.text.slice(0, 500) }).toEqual({ status: 200, ok: true, text: "" });
  const stopped = await server.stop();
  expect(stopped.forced).toBe(false);
  const vc = await runVerifyChain(server.dir);
  expect({ code: vc.code, ok: parseJsonOutput(vc.stdout)?.ok, out: vc.code === 0 ? "" : (vc.stdout + vc.stderr).slice(0, 800) }).toEqual({ code: 0, ok: true, out: "" });
}
