/**
 * `npm run cluster` (issue 4): a local 3-node Resonetics cluster in the foreground, for development.
 * `resonetics cluster init` into ./.cluster (an existing cluster there is reused), one
 * `resonetics serve` per node with its output prefixed by the node id, the URLs and the admin token
 * file printed once a leader is known; SIGINT/SIGTERM stop all three (SIGTERM, SIGKILL after a grace).
 *
 *   npm run cluster -- [--dir .cluster] [--base-port 7001] [--log-level info] [--stop-timeout-s 10]
 *
 * The base port is written to DIR/cluster.json at init, so a reused cluster keeps its ports (the
 * nodes' addresses are part of the genesis configuration and cannot change by flag).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { ClusterNode, OwnedProcess, clusterNodes, initClusterDirs, killOwned, portFree, startClusterNode, waitForLeader } from "./bench-lib";

const NODES = 3;
const LEADER_TIMEOUT_MS = 60_000;
const LAYOUT_FILE = "cluster.json";

interface Layout {
  readonly nodes: number;
  readonly basePort: number;
}

const say = (line: string): void => {
  process.stdout.write(`[cluster] ${line}\n`);
};

function options(): { dir: string; basePort: number | undefined; logLevel: string; stopTimeoutMs: number } {
  const { values } = parseArgs({
    options: {
      dir: { type: "string", default: ".cluster" },
      "base-port": { type: "string" },
      "log-level": { type: "string", default: "info" },
      "stop-timeout-s": { type: "string", default: "10" },
    },
    strict: true,
  });
  const port = values["base-port"] === undefined ? undefined : Number(values["base-port"]);
  if (port !== undefined && (!Number.isSafeInteger(port) || port < 1 || port > 65535 - NODES)) throw new Error(`--base-port must be 1..${65535 - NODES}, got ${values["base-port"]}`);
  const stop = Number(values["stop-timeout-s"]);
  if (!Number.isSafeInteger(stop) || stop < 1) throw new Error(`--stop-timeout-s must be a whole number >= 1, got ${values["stop-timeout-s"]}`);
  return { dir: path.resolve(values.dir ?? ".cluster"), basePort: port, logLevel: values["log-level"] ?? "info", stopTimeoutMs: stop * 1000 };
}

/** The cluster in dir: reused when its node dirs exist, else created with `cluster init`. */
async function prepare(dir: string, basePort: number | undefined): Promise<{ nodes: ClusterNode[]; reused: boolean }> {
  const layoutPath = path.join(dir, LAYOUT_FILE);
  const existing = Array.from({ length: NODES }, (_, i) => fs.existsSync(path.join(dir, `n${i + 1}`, "ledger.db")));
  if (existing.every((x) => x)) {
    if (!fs.existsSync(layoutPath)) {
      const port = basePort ?? 7001;
      say(`${dir} holds a cluster without ${LAYOUT_FILE}: assuming base port ${port} (pass --base-port if it was created with another)`);
      return { nodes: clusterNodes(dir, NODES, port), reused: true };
    }
    const layout = JSON.parse(fs.readFileSync(layoutPath, "utf8")) as Layout;
    if (layout.nodes !== NODES || !Number.isSafeInteger(layout.basePort)) throw new Error(`${layoutPath}: expected {"nodes":${NODES},"basePort":<port>}, got ${JSON.stringify(layout)}`);
    if (basePort !== undefined && basePort !== layout.basePort) throw new Error(`${dir} was created with base port ${layout.basePort}; its nodes' addresses cannot change (remove ${dir} for a new cluster)`);
    return { nodes: clusterNodes(dir, NODES, layout.basePort), reused: true };
  }
  if (existing.some((x) => x)) throw new Error(`${dir} holds only some of n1..n${NODES}: remove it (or finish it by hand) before starting a cluster there`);
  const port = basePort ?? 7001;
  fs.mkdirSync(dir, { recursive: true });
  const nodes = await initClusterDirs(dir, NODES, port);
  const layout: Layout = { nodes: NODES, basePort: port };
  fs.writeFileSync(layoutPath, JSON.stringify(layout) + "\n");
  return { nodes, reused: false };
}

async function main(): Promise<void> {
  const o = options();
  const { nodes, reused } = await prepare(o.dir, o.basePort);
  const busy: number[] = [];
  for (const n of nodes) if (!(await portFree(n.port))) busy.push(n.port);
  if (busy.length > 0) throw new Error(`port${busy.length > 1 ? "s" : ""} ${busy.join(", ")} already in use on 127.0.0.1 (another cluster running?)`);
  say(`${reused ? "reusing" : "created"} a ${NODES}-node cluster in ${o.dir}`);

  let stopping = false;
  const procs: OwnedProcess[] = nodes.map((n) => {
    const p = startClusterNode(n, o.logLevel, (stream, line) => {
      (stream === "stdout" ? process.stdout : process.stderr).write(`[${n.id}] ${line}\n`);
    });
    void p.exited.then((s) => {
      if (stopping) return;
      say(`${n.id} exited unexpectedly: ${JSON.stringify(s)}`);
      if (procs.every((q) => !q.running())) {
        say("every node has exited");
        process.exit(1);
      }
    });
    return p;
  });
  process.once("exit", () => killOwned());

  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      say(`${signal} again: SIGKILL to every node`);
      killOwned();
      return;
    }
    stopping = true;
    say(`${signal}: stopping ${nodes.map((n) => n.id).join(", ")} (SIGTERM, SIGKILL after ${o.stopTimeoutMs / 1000} s)`);
    void Promise.all(procs.map(async (p) => ({ id: p.name, s: await p.stop(o.stopTimeoutMs) }))).then(
      (results) => {
        for (const r of results) say(`${r.id} ${r.s.forced ? `did not exit within ${o.stopTimeoutMs / 1000} s and was SIGKILLed` : `exited (code ${r.s.code}, signal ${r.s.signal})`}`);
        process.exit(results.every((r) => !r.s.forced && r.s.code === 0) ? 0 : 1);
      },
      (e: unknown) => {
        say(`stopping failed: ${(e as Error).message}`);
        killOwned();
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);

  const leader = await waitForLeader(nodes, LEADER_TIMEOUT_MS).catch((e: unknown) => {
    say(`no leader yet: ${(e as Error).message} (the nodes keep running; Ctrl-C stops them)`);
    return null;
  });
  if (stopping) return;
  const lines = [
    ...nodes.map((n) => `  ${n.id}  http://127.0.0.1:${n.port}  data ${n.dir}${leader?.id === n.id ? "  (leader)" : ""}`),
    `admin token file: ${path.join(nodes[0].dir, "admin.token")} (the same token on every node)`,
    `try: curl -sL -X POST http://127.0.0.1:${nodes[0].port}/v1/records -H "Authorization: Bearer $(cat ${path.join(nodes[0].dir, "admin.token")})" ` +
      `-H 'Content-Type: application/json' -d '{"type":"policy.set","subject":"s1","data":{"name":"n","value":"v"}}'`,
    "Ctrl-C stops the cluster; its data stays in the dir and is reused next time.",
  ];
  say(`cluster up${leader === null ? "" : `, leader ${leader.id}`}:\n${lines.join("\n")}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`[cluster] failed: ${e instanceof Error ? e.message : String(e)}\n`);
  killOwned();
  process.exitCode = 1;
});
