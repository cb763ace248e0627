// Issue 9: a start that cannot succeed is refused before it listens or writes, with exit 2 and the
// path (or address) it is about; initialization is atomic; `serve` on a cluster data dir listens on
// the node's configured address unless a flag says otherwise.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { BIN, REPO_ROOT, cleanupAll, getJson, makeTempDir, runCli, startServer, withFailureContext } from "../support/server";

/** Every process here either refuses at once or is stopped by the test: a bound for both. */
const PROCESS_TIMEOUT_MS = 30_000;
const CLI = [BIN];
/** Root passes every permission check: unwritable-dir cases run the CLI as nobody. */
const AS_ROOT = process.getuid?.() === 0;
const NOBODY = 65534;

const spawned = new Set<ChildProcess>();
let note = "";
const context = (): string => `npx jest test/e2e/init.test.ts\n${note}`;

afterAll(async () => {
  for (const c of spawned) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await cleanupAll();
}, 60_000);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to its exit (bounded), as nobody when the test runs as root and `unprivileged` is set. */
function run(args: readonly string[], unprivileged = false): Promise<Run> {
  const ids = unprivileged && AS_ROOT ? { uid: NOBODY, gid: NOBODY } : {};
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: REPO_ROOT, env: process.env, stdio: ["ignore", "pipe", "pipe"], ...ids });
  spawned.add(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on("data", (b: Buffer) => out.push(b));
  child.stderr!.on("data", (b: Buffer) => err.push(b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`resonetics ${args.join(" ")} still running after ${PROCESS_TIMEOUT_MS} ms: a refusal must be immediate`));
    }, PROCESS_TIMEOUT_MS);
    child.once("close", (code) => {
      clearTimeout(timer);
      const r = { code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
      note = `$ resonetics ${args.join(" ")} → ${code}\nstdout: ${r.stdout.slice(-2000)}\nstderr: ${r.stderr.slice(-2000)}`;
      resolve(r);
    });
  });
}

/** Starts `serve` with exactly these args and resolves with its "listening" log record; the child is returned to be stopped. */
function serveUntilListening(args: readonly string[]): Promise<{ child: ChildProcess; listening: Record<string, unknown> }> {
  const child = spawn(process.execPath, [...CLI, "serve", ...args], { cwd: REPO_ROOT, env: process.env, stdio: ["ignore", "pipe", "pipe"] });
  spawned.add(child);
  let buf = "";
  let errText = "";
  child.stderr!.on("data", (b: Buffer) => {
    errText = (errText + b.toString("utf8")).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve ${args.join(" ")} did not listen within ${PROCESS_TIMEOUT_MS} ms\n${errText}`)), PROCESS_TIMEOUT_MS);
    child.stdout!.on("data", (b: Buffer) => {
      buf += b.toString("utf8");
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.includes('"msg":"listening"')) continue;
        clearTimeout(timer);
        resolve({ child, listening: JSON.parse(line) as Record<string, unknown> });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve ${args.join(" ")} exited with ${code} before listening\n${errText}`));
    });
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

/** A listening socket on 127.0.0.1 (any free port), to occupy it. */
function occupy(): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}
const portOf = (srv: net.Server): number => (srv.address() as net.AddressInfo).port;
const close = (srv: net.Server): Promise<void> => new Promise((resolve) => srv.close(() => resolve()));

/** Two consecutive free ports P, P+1 (so `cluster init --nodes 2 --base-port P` gets free addresses). */
async function twoFreePorts(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const a = await occupy();
    const p = portOf(a);
    const b = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      b.once("error", () => resolve(false));
      b.listen(p + 1, "127.0.0.1", () => resolve(true));
    });
    await close(a);
    if (ok) {
      await close(b);
      return p;
    }
  }
  throw new Error("no two consecutive free ports in 20 attempts");
}

/** A temp dir the unprivileged CLI can reach. */
function reachableTempDir(): string {
  const d = makeTempDir();
  fs.chmodSync(d, 0o755);
  return d;
}

/** A complete single-node data dir at root/node, made by a first serve and owned by whoever runs the unwritable cases. */
async function initializedDir(root: string): Promise<string> {
  const dir = path.join(root, "node");
  const s = await startServer(dir);
  await s.stop();
  if (AS_ROOT) for (const f of ["", ...fs.readdirSync(dir)]) fs.chownSync(path.join(dir, f), NOBODY, NOBODY);
  return dir;
}

const refusal = (r: Run): string => r.stderr;

describe("refused starts: exit 2, the path named, nothing listened or written", () => {
  test("an unwritable data dir", () => {
    const root = reachableTempDir();
    return withFailureContext(context, [root], async () => {
      const dir = await initializedDir(root);
      fs.chmodSync(dir, 0o500);
      const r = await run(["serve", "--data-dir", dir, "--port", "0"], true);
      fs.chmodSync(dir, 0o700);
      expect(r.code).toBe(2);
      expect(refusal(r)).toContain(`the data dir ${dir} is not writable`);
      expect(r.stdout).not.toContain('"msg":"listening"');
    });
  }, 60_000);

  test("an unwritable ledger.db in a writable dir", () => {
    const root = reachableTempDir();
    return withFailureContext(context, [root], async () => {
      const dir = await initializedDir(root);
      const db = path.join(dir, "ledger.db");
      fs.chmodSync(db, 0o400);
      const r = await run(["serve", "--data-dir", dir, "--port", "0"], true);
      expect(r.code).toBe(2);
      expect(refusal(r)).toContain(`${db} is not writable`);
      expect(r.stdout).not.toContain('"msg":"listening"');
    });
  }, 60_000);

  test("a data dir that cannot be created", () => {
    const root = reachableTempDir();
    return withFailureContext(context, [root], async () => {
      const file = path.join(root, "a-file");
      fs.writeFileSync(file, "not a directory\n");
      const dir = path.join(file, "node");
      const r = await run(["serve", "--data-dir", dir, "--port", "0"]);
      expect(r.code).toBe(2);
      expect(refusal(r)).toContain(`cannot create the data dir ${dir}`);
    });
  }, 60_000);

  test("a port in use: refused before anything is written, so no data dir is left behind", () => {
    const root = makeTempDir();
    return withFailureContext(context, [root], async () => {
      const busy = await occupy();
      try {
        const absent = path.join(root, "absent");
        const r = await run(["serve", "--data-dir", absent, "--host", "127.0.0.1", "--port", String(portOf(busy))]);
        expect(r.code).toBe(2);
        expect(refusal(r)).toContain(`127.0.0.1:${portOf(busy)}`);
        expect(fs.existsSync(absent)).toBe(false);
        const empty = path.join(root, "empty");
        fs.mkdirSync(empty);
        const r2 = await run(["serve", "--data-dir", empty, "--host", "127.0.0.1", "--port", String(portOf(busy))]);
        expect(r2.code).toBe(2);
        expect(fs.readdirSync(empty)).toEqual([]);
      } finally {
        await close(busy);
      }
    });
  }, 60_000);

  test("a broken install (a schema file that is not JSON): refused before anything is written, naming schemas/", () => {
    const root = makeTempDir();
    return withFailureContext(context, [root], async () => {
      // A copy of the install (bin, dist, package.json, schemas; node_modules linked) whose schemas/ is broken.
      const install = path.join(root, "install");
      for (const part of ["bin", "dist", "schemas", "package.json"]) fs.cpSync(path.join(REPO_ROOT, part), path.join(install, part), { recursive: true });
      fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(install, "node_modules"));
      fs.writeFileSync(path.join(install, "schemas", "api", "entry.json"), "{ not json");
      const absent = path.join(root, "absent");
      const child = spawn(process.execPath, [path.join(install, "bin", "resonetics"), "serve", "--data-dir", absent, "--port", "0"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
      spawned.add(child);
      const err: Buffer[] = [];
      child.stderr!.on("data", (b: Buffer) => err.push(b));
      const timer = setTimeout(() => child.kill("SIGKILL"), PROCESS_TIMEOUT_MS);
      const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
      clearTimeout(timer);
      expect(code).toBe(2);
      expect(Buffer.concat(err).toString()).toContain(`this install is broken: the OpenAPI document could not be built from ${path.join(install, "schemas")}`);
      expect(fs.existsSync(absent)).toBe(false);
    });
  }, 60_000);

  test("an empty ledger.db is refused on every retry, never migrated", () => {
    const root = makeTempDir();
    return withFailureContext(context, [root], async () => {
      const dir = path.join(root, "node");
      fs.mkdirSync(dir);
      const db = path.join(dir, "ledger.db");
      fs.writeFileSync(db, "");
      for (let attempt = 0; attempt < 2; attempt++) {
        const r = await run(["serve", "--data-dir", dir, "--port", "0"]);
        expect(r.code).toBe(2);
        expect(refusal(r)).toContain(`${db} is empty (0 bytes)`);
        expect(fs.statSync(db).size).toBe(0);
        expect(fs.existsSync(path.join(dir, "node.key"))).toBe(false);
      }
    });
  }, 60_000);

  test("stray files without ledger.db: refused, named, left as they were", () => {
    const root = makeTempDir();
    return withFailureContext(context, [root], async () => {
      const dir = path.join(root, "node");
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, "node.key"), "00".repeat(32), { mode: 0o600 });
      fs.writeFileSync(path.join(dir, "notes.txt"), "not a ledger\n");
      const r = await run(["serve", "--data-dir", dir, "--port", "0"]);
      expect(r.code).toBe(2);
      expect(refusal(r)).toContain(path.join(dir, "node.key"));
      expect(refusal(r)).toContain(path.join(dir, "notes.txt"));
      expect(refusal(r)).toContain("refusing to initialize");
      expect(fs.readFileSync(path.join(dir, "node.key"), "utf8")).toBe("00".repeat(32));
      expect(fs.existsSync(path.join(dir, "ledger.db"))).toBe(false);
    });
  }, 60_000);
});

describe("atomic initialization", () => {
  test("an initialization interrupted before its commit is undone and redone; a foreign file is not", () => {
    const root = makeTempDir();
    return withFailureContext(context, [root], async () => {
      const dir = path.join(root, "node");
      const stage = path.join(dir, ".init-staging");
      fs.mkdirSync(stage, { recursive: true });
      // What a crash between linking the secrets and renaming ledger.db leaves behind.
      const planted = "ab".repeat(32);
      fs.writeFileSync(path.join(stage, "node.key"), planted, { mode: 0o600 });
      fs.writeFileSync(path.join(stage, "admin.token"), "cd".repeat(32), { mode: 0o600 });
      fs.linkSync(path.join(stage, "node.key"), path.join(dir, "node.key"));
      fs.linkSync(path.join(stage, "admin.token"), path.join(dir, "admin.token"));
      const s = await startServer(dir);
      const st = await getJson<{ node_id: string; public_key: string }>(s.baseUrl, "/v1/status");
      expect(st.node_id).toBe("n1");
      expect(fs.readFileSync(path.join(dir, "node.key"), "utf8").trim()).not.toBe(planted);
      expect(fs.existsSync(stage)).toBe(false);
      await s.stop();
      const v = await runCli(["verify-chain", dir, "--json"]);
      expect(v.code).toBe(0);
      // A key file that is not a link into the staging dir is someone's file: refused, kept.
      const other = path.join(root, "other");
      fs.mkdirSync(path.join(other, ".init-staging"), { recursive: true });
      fs.writeFileSync(path.join(other, ".init-staging", "node.key"), planted, { mode: 0o600 });
      fs.writeFileSync(path.join(other, "node.key"), planted, { mode: 0o600 });
      const r = await run(["serve", "--data-dir", other, "--port", "0"]);
      expect(r.code).toBe(2);
      expect(refusal(r)).toContain(path.join(other, "node.key"));
      expect(fs.readFileSync(path.join(other, "node.key"), "utf8")).toBe(planted);
    });
  }, 90_000);
});

describe("serve on a cluster data dir", () => {
  test("listens on the node's configured address by default; --port still overrides", () => {
    const root = makeTempDir();
    return withFailureContext(context, [root], async () => {
      const base = await twoFreePorts();
      const init = await runCli(["cluster", "init", "--dir", root, "--nodes", "2", "--base-port", String(base)]);
      expect(init.code).toBe(0);
      const n2 = path.join(root, "n2");
      const { child, listening } = await serveUntilListening(["--data-dir", n2]);
      try {
        expect(listening).toMatchObject({ host: "127.0.0.1", port: base + 1, host_from: "configuration", port_from: "configuration" });
        const st = await getJson<{ node_id: string }>(`http://127.0.0.1:${base + 1}`, "/v1/status");
        expect(st.node_id).toBe("n2");
      } finally {
        await stop(child);
      }
      const q = await occupy();
      const flagPort = portOf(q);
      await close(q);
      const over = await serveUntilListening(["--data-dir", n2, "--port", String(flagPort)]);
      try {
        expect(over.listening).toMatchObject({ host: "127.0.0.1", port: flagPort, host_from: "configuration", port_from: "flag" });
        const st = await getJson<{ node_id: string }>(`http://127.0.0.1:${flagPort}`, "/v1/status");
        expect(st.node_id).toBe("n2");
      } finally {
        await stop(over.child);
      }
    });
  }, 90_000);
});
