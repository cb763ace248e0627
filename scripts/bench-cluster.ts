/**
 * `npm run bench` (issue 4, acceptance 7): a 3-node Resonetics cluster on loopback (real processes,
 * SQLite WAL synchronous=FULL on every node: fsync on), loaded over HTTP/1.1 keep-alive by closed-loop
 * clients at 1, 16 and 64 concurrency with 256-byte records sent to the leader; committed appends/s
 * and client-side p50/p99. When `etcd` is on PATH (Debian's etcd-server), the same client code puts
 * 256-byte values through a 3-node etcd's v3 HTTP/JSON gateway in the same run, and the two are
 * printed side by side with the ratio. Unless --tls 0, a second 3-node Resonetics cluster made by
 * `cluster init --tls-generate` (clients over HTTPS with keep-alive trusting its ca.crt, peers over
 * wss) takes the same load with the same bodies and client code, and a "TLS cost" table sets it beside
 * the plain run (issue 12, acceptance 5). The runs go one after the other, never together, so none
 * steals another's CPU; each gets its own warm-up. It prints figures and the machine; it never passes
 * or fails on them.
 *
 *   npm run bench -- [--clients 1,16,64] [--ops 3000,10000,10000] [--warmup 1000]
 *                    [--systems resonetics,etcd] [--tls 1] [--etcd-bin etcd] [--level-timeout-s 180]
 *                    [--timeout-s 1500] [--log-level warn] [--keep]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import * as tls from "node:tls";
import {
  Answer, Client, LoadResult, OwnedProcess, adminToken, fmtInt, fmtMs, freePortRange, initClusterDirs, killOwned,
  NodeStatus, loadAverage, machine, nodeStatus, parseFlags, pinoLevel, pollUntil, requestJson, runLoad, scriptLog, startClusterNode, table,
  waitForLeader, wholeFlag,
} from "./bench-lib";

const RECORD_BYTES = 256;
const NODES = 3;
const SUBJECTS = 1000;
const STARTUP_TIMEOUT_MS = 60_000;
/** SIGTERM → SIGKILL grace: an etcd leader stopping with its peers first tries to hand over leadership. */
const STOP_TIMEOUT_MS: Record<RunName, number> = { resonetics: 5_000, "resonetics-tls": 5_000, etcd: 15_000 };
const REQUEST_TIMEOUT_MS = 30_000;
/** Warn-or-worse log lines kept per process for the report (all are counted). */
const LOG_SAMPLES_MAX = 5;
/** etcd 3.4 on this machine, DESIGN.md ("Measured on this 2-core machine"), for orientation only. */
const DESIGN_ETCD = "etcd 3.4 in DESIGN.md: 360/s at 1 client, 1,510/s at 16, 2,690/s at 64";

type SystemName = "resonetics" | "etcd";
/** A run of the report: a system of --systems, or Resonetics again over TLS (--tls 1). */
type RunName = SystemName | "resonetics-tls";

interface Options {
  clients: number[];
  ops: number[];
  warmup: number;
  systems: SystemName[];
  /** Also run Resonetics over TLS (after the plain run, with the same load) and print the TLS cost. */
  tls: boolean;
  etcdBin: string;
  levelTimeoutMs: number;
  timeoutMs: number;
  logLevel: string;
  keep: boolean;
}

function options(): Options {
  const f = parseFlags({
    whole: { warmup: [1000, 0], tls: [1, 0], "level-timeout-s": [180, 1], "timeout-s": [1500, 10] },
    text: { clients: "1,16,64", ops: "3000,10000,10000", systems: "resonetics,etcd", "etcd-bin": "etcd" },
    logLevel: "warn",
  });
  const list = (name: string, raw: string): number[] => raw.split(",").map((x) => wholeFlag(name, x.trim(), 1));
  const clients = list("clients", f.clients);
  const opsRaw = list("ops", f.ops);
  // One count for every level, or one per level.
  if (opsRaw.length !== 1 && opsRaw.length !== clients.length) throw new Error(`--ops needs 1 or ${clients.length} counts, got ${opsRaw.length}`);
  const ops = clients.map((_, i) => opsRaw.length === 1 ? opsRaw[0] : opsRaw[i]);
  const systems = f.systems.split(",").map((x) => x.trim()).filter((x) => x.length > 0);
  for (const s of systems) if (s !== "resonetics" && s !== "etcd") throw new Error(`--systems: unknown system ${s} (resonetics, etcd)`);
  if (f.tls > 1) throw new Error(`--tls must be 0 (skip the TLS run) or 1, got ${f.tls}`);
  return {
    clients, ops, warmup: f.warmup, systems: systems as SystemName[], tls: f.tls === 1, etcdBin: f.etcdBin,
    levelTimeoutMs: f.levelTimeoutS * 1000, timeoutMs: f.timeoutS * 1000, logLevel: f.logLevel, keep: f.keep,
  };
}

const log = scriptLog("bench", true);

/** Pads s with "x" so the JSON built by make(pad) is exactly `bytes` long (UTF-8; all ASCII here). */
function padded(bytes: number, make: (pad: string) => string): string {
  const bare = Buffer.byteLength(make(""));
  if (bare > bytes) throw new Error(`record without padding is ${bare} B, more than ${bytes} B`);
  const body = make("x".repeat(bytes - bare));
  if (Buffer.byteLength(body) !== bytes) throw new Error(`record is ${Buffer.byteLength(body)} B, not ${bytes} B`);
  return body;
}

/** A Resonetics append whose JSON body is exactly RECORD_BYTES. */
function resoneticsBody(i: number): string {
  return padded(RECORD_BYTES, (pad) => JSON.stringify({ type: "policy.set", subject: `s${i % SUBJECTS}`, data: { name: "n", value: pad } }));
}

/** An etcd put of a RECORD_BYTES value (key bench/<i>); the gateway wants base64 key and value. */
const ETCD_VALUE_B64 = Buffer.from("v".repeat(RECORD_BYTES)).toString("base64");
function etcdBody(i: number): string {
  return JSON.stringify({ key: Buffer.from(`bench/${i}`).toString("base64"), value: ETCD_VALUE_B64 });
}

/**
 * Warn-or-worse lines of one process while it is under load (start-up and shutdown chatter, e.g.
 * etcd's "established TCP streaming connection" at warn, is not what the report is about).
 */
class Complaints {
  armed = false;
  count = 0;
  readonly samples: string[] = [];
  add(line: string): void {
    if (!this.armed) return;
    this.count++;
    if (this.samples.length < LOG_SAMPLES_MAX) this.samples.push(line.length > 400 ? `${line.slice(0, 400)}…` : line);
  }
}

/** What a run of one system produced: the measured levels and notes for the anomaly list. */
interface SystemRun {
  readonly name: RunName;
  readonly setup: string;
  readonly warm: LoadResult | null;
  readonly levels: LoadResult[];
  readonly notes: string[];
}

/** A cluster under test: where to send, how to send one op, what a success is. */
interface Target {
  readonly port: number;
  readonly token: string | null;
  /** The CA to trust: the ops go over HTTPS (the TLS run); absent: plain HTTP. */
  readonly ca?: Buffer;
  readonly path: string;
  readonly body: (i: number) => string;
  readonly ok: (status: number) => boolean;
  /** The port a "not the leader" answer points to, if it is one (the op itself counts as failed). */
  readonly redirect?: (a: Answer) => number | undefined;
  /** Called after each level: a note when the cluster changed under the load (e.g. a new leader). */
  readonly check: () => Promise<string | undefined>;
}

/**
 * Warm-up, then each level with a fresh keep-alive agent of maxSockets = clients. When the leader
 * moves mid-level, the op that learns it counts as failed and the following ops go to the new one
 * (as a real client would), so one election does not turn the rest of the level into redirects.
 */
async function drive(name: RunName, t: Target, o: Options, notes: string[]): Promise<{ warm: LoadResult | null; levels: LoadResult[] }> {
  let seq = 0;
  let port = t.port;
  const loadOnce = async (requests: number, clients: number): Promise<LoadResult> => {
    const clientsUsed = [new Client(port, t.token, clients, t.ca)];
    const send = async (): Promise<Answer> => {
      const a = await clientsUsed[clientsUsed.length - 1].request("POST", t.path, t.body(seq++), {}, REQUEST_TIMEOUT_MS);
      const next = t.redirect?.(a);
      if (next !== undefined && next !== port && clientsUsed.length < 20) {
        notes.push(`${name} at ${clients} clients: redirected from :${port} to the new leader at :${next} at op #${seq} of the bench`);
        port = next;
        clientsUsed.push(new Client(port, t.token, clients, t.ca));
      }
      return a;
    };
    try {
      return await runLoad(requests, clients, send, t.ok, { deadlineMs: o.levelTimeoutMs });
    } finally {
      for (const c of clientsUsed) c.close();
    }
  };
  let warm: LoadResult | null = null;
  if (o.warmup > 0) {
    const c = Math.min(16, Math.max(...o.clients));
    log(`${name}: warm-up, ${o.warmup} ops at ${c} clients`);
    warm = await loadOnce(o.warmup, c);
  }
  const levels: LoadResult[] = [];
  for (let l = 0; l < o.clients.length; l++) {
    const before = loadAverage();
    log(`${name}: ${o.ops[l]} ops at ${o.clients[l]} clients (load average ${before})`);
    const r = await loadOnce(o.ops[l], o.clients[l]);
    levels.push(r);
    log(`${name}: ${o.clients[l]} clients → ${fmtInt(r.okPerSecond)} committed/s, p50 ${fmtMs(r.okP50Ms)} ms, p99 ${fmtMs(r.okP99Ms)} ms, ${r.errors} errors`);
    if (r.cutShort) notes.push(`${name} at ${r.clients} clients: stopped by --level-timeout-s after ${fmtInt(r.requests)} of ${fmtInt(o.ops[l])} ops (${r.seconds.toFixed(1)} s)`);
    if (r.errors > 0) notes.push(`${name} at ${r.clients} clients: ${r.errors} of ${r.requests} ops failed; statuses ${JSON.stringify(r.statuses)}; first: ${r.firstError}`);
    if (r.maxMs > 1000) notes.push(`${name} at ${r.clients} clients: slowest answer ${fmtInt(r.maxMs)} ms (committed p99 ${fmtMs(r.okP99Ms)} ms)`);
    const changed = await t.check();
    if (changed !== undefined) notes.push(`${name} after ${r.clients} clients: ${changed}`);
  }
  if (warm !== null && warm.errors > 0) notes.push(`${name} warm-up: ${warm.errors} of ${warm.requests} ops failed; statuses ${JSON.stringify(warm.statuses)}; first: ${warm.firstError}`);
  return { warm, levels };
}

/** Stops every process (SIGTERM, then SIGKILL after STOP_TIMEOUT_MS) and notes any that needed it. */
async function stopAll(name: RunName, procs: readonly OwnedProcess[], notes: string[]): Promise<void> {
  const results = await Promise.all(procs.map(async (p) => ({ p, s: await p.stop(STOP_TIMEOUT_MS[name]) })));
  const forced = results.filter((r) => r.s.forced).map((r) => r.p.name);
  if (forced.length > 0) notes.push(`${name}: ${forced.join(", ")} did not exit within ${STOP_TIMEOUT_MS[name] / 1000} s of SIGTERM and were SIGKILLed`);
  // Go programs (etcd) re-raise the signal after their own clean-up: death by SIGTERM is a clean exit.
  const failed = results.filter((r) => !r.s.forced && r.s.code !== 0 && r.s.signal !== "SIGTERM");
  for (const r of failed) notes.push(`${name}: ${r.p.name} exited with ${JSON.stringify(r.s)} on SIGTERM`);
}

function noteComplaints(name: RunName, byProc: ReadonlyMap<string, Complaints>, notes: string[]): void {
  for (const [id, c] of byProc) {
    if (c.count === 0) continue;
    notes.push(`${name} ${id}: ${c.count} warn-or-worse log lines under load; first ${c.samples.length}:\n      ${c.samples.join("\n      ")}`);
  }
}

/**
 * The TLS version, cipher and key exchange a client of the node at port gets: what the TLS run's
 * figures were measured with (a session of its own, verified against ca as the bench client does).
 * 5 s: a loopback handshake takes milliseconds; the bound only keeps a wedged node from hanging the bench.
 */
function tlsSession(port: number, ca: Buffer, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca }, () => {
      const cipher = socket.getCipher();
      const kx = socket.getEphemeralKeyInfo();
      const exchange = kx !== null && "name" in kx ? `, ${String(kx.name)} key exchange` : "";
      socket.end();
      resolve(`${socket.getProtocol() ?? "unknown protocol"} ${cipher.standardName}${exchange}`);
    });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`TLS handshake with :${port} took over ${timeoutMs} ms`)));
    socket.once("error", reject);
  });
}

/**
 * A 3-node Resonetics cluster under the load of drive(): plain, or (secure) made by `cluster init
 * --tls-generate` so the clients speak HTTPS trusting its ca.crt and the nodes talk over wss.
 */
async function benchResonetics(o: Options, root: string, secure: boolean): Promise<SystemRun> {
  const name: RunName = secure ? "resonetics-tls" : "resonetics";
  const notes: string[] = [];
  const basePort = await freePortRange(NODES);
  const nodes = await initClusterDirs(path.join(root, name), NODES, basePort, { tls: secure });
  const ca = nodes[0].ca;
  if (secure !== (ca !== undefined)) throw new Error(`${name}: cluster init ${secure ? "wrote no" : "unexpectedly wrote a"} cluster CA`);
  const token = adminToken(nodes[0]);
  const complaints = new Map<string, Complaints>(nodes.map((n) => [n.id, new Complaints()]));
  const procs = nodes.map((n) => startClusterNode(n, o.logLevel, (stream, line) => {
    const level = pinoLevel(line);
    // Below warn is chatter; stderr output that is not pino JSON is always worth a look.
    if ((level !== undefined && level >= 40) || (level === undefined && stream === "stderr")) complaints.get(n.id)!.add(line);
  }));
  try {
    log(`${name}: 3 nodes on 127.0.0.1:${basePort}-${basePort + NODES - 1}${secure ? " (HTTPS, wss between nodes)" : ""}, waiting for a leader`);
    const leader = await waitForLeader(nodes, STARTUP_TIMEOUT_MS).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n${procs.map((p) => `${p.name} (${p.running() ? "running" : JSON.stringify(p.status())}): ${[...p.stderr.last(10), ...p.stdout.last(10)].join("\n  ")}`).join("\n")}`);
    });
    const first = await nodeStatus(leader);
    log(`${name}: leader ${leader.id} (term ${first.term})`);
    const session = ca === undefined ? null : await tlsSession(leader.port, ca);
    let known = { node: leader, term: first.term };
    const target: Target = {
      port: leader.port, token, ...(ca === undefined ? {} : { ca }), path: "/v1/records", body: resoneticsBody, ok: (s) => s === 201,
      redirect: (a) => {
        if (a.status !== 307) return undefined;
        const m = /"leader_address":"[^"]*:([0-9]+)"/.exec(a.body);
        return m === null ? undefined : Number(m[1]);
      },
      check: async () => {
        const dead = procs.filter((p) => !p.running()).map((p) => `${p.name} exited ${JSON.stringify(p.status())}: ${p.stderr.last(5).join(" | ")}`);
        if (dead.length > 0) return dead.join("; ");
        const st = await Promise.all(nodes.map((n) => nodeStatus(n).catch((e: unknown) => `${n.id}: ${(e as Error).message}`)));
        const silent = st.filter((x): x is string => typeof x === "string");
        if (silent.length > 0) return `GET /v1/status failed: ${silent.join("; ")}`;
        const live = st.filter((x): x is NodeStatus => typeof x !== "string");
        const halted = live.filter((x) => x.halted !== null).map((x) => `${x.node_id} halted: ${x.halted}`);
        if (halted.length > 0) return halted.join("; ");
        const lead = live.filter((x) => x.role === "leader").sort((x, y) => y.term - x.term)[0];
        if (lead === undefined) return `no leader right after the level (roles ${live.map((x) => `${x.node_id}=${x.role}@${x.term}`).join(" ")})`;
        if (lead.node_id === known.node.id && lead.term === known.term) return undefined;
        const was = known;
        known = { node: nodes.find((n) => n.id === lead.node_id) ?? was.node, term: lead.term };
        return `leadership changed: ${was.node.id} (term ${was.term}) → ${lead.node_id} (term ${lead.term}); roles now ${live.map((x) => `${x.node_id}=${x.role}@${x.term}`).join(" ")}`;
      },
    };
    for (const c of complaints.values()) c.armed = true;
    const { warm, levels } = await drive(name, target, o, notes);
    for (const c of complaints.values()) c.armed = false;
    // Every node should hold the same committed log once the followers have applied it.
    const final = await nodeStatus(known.node);
    const converged = await pollUntil("followers to apply the leader's commit index", async () => {
      const st = await Promise.all(nodes.map((n) => nodeStatus(n)));
      return st.every((s) => s.last_applied >= final.commit_index) ? st : undefined;
    }, 20_000, 100).catch((e: unknown) => {
      notes.push(`${name}: ${(e as Error).message}`);
      return null;
    });
    const logLine = converged === null ? "" : `, ${fmtInt(final.commit_index)} entries committed and applied on all ${NODES} nodes`;
    const transport = session === null ? "" : `cluster init --tls-generate, HTTPS keep-alive from the clients (${session}), wss between the nodes, `;
    const setup = `3 nodes (n1..n3), ${transport}leader ${leader.id} at the start, SQLite WAL synchronous=FULL on each node, POST /v1/records, ${RECORD_BYTES} B JSON body${logLine}`;
    return { name, setup, warm, levels, notes };
  } finally {
    await stopAll(name, procs, notes);
    noteComplaints(name, complaints, notes);
  }
}

/** The etcd binary, if it is an executable on PATH (or a path to one). */
function findExecutable(bin: string): string | null {
  const candidates = bin.includes("/") ? [bin] : (process.env.PATH ?? "").split(path.delimiter).filter((d) => d.length > 0).map((d) => path.join(d, bin));
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      if (fs.statSync(c).isFile()) return c;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" && (e as NodeJS.ErrnoException).code !== "EACCES") throw e;
    }
  }
  return null;
}

const ZAP_COMPLAINT = new Set(["warn", "error", "dpanic", "panic", "fatal"]);

async function benchEtcd(o: Options, root: string, bin: string): Promise<SystemRun> {
  const notes: string[] = [];
  const version = execFileSync(bin, ["--version"], { encoding: "utf8", timeout: 10_000 }).split("\n")[0]?.trim() ?? "etcd";
  const base = await freePortRange(2 * NODES);
  const members = Array.from({ length: NODES }, (_, i) => ({ name: `e${i + 1}`, client: base + i, peer: base + NODES + i, dir: path.join(root, "etcd", `e${i + 1}`) }));
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(",");
  // The bench pins every setting on the command line; ETCD_* variables from the caller would change them.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ETCD_")));
  const complaints = new Map<string, Complaints>(members.map((m) => [m.name, new Complaints()]));
  const procs = members.map((m) => {
    fs.mkdirSync(m.dir, { recursive: true, mode: 0o700 });
    const args = [
      "--name", m.name, "--data-dir", m.dir,
      "--listen-client-urls", `http://127.0.0.1:${m.client}`, "--advertise-client-urls", `http://127.0.0.1:${m.client}`,
      "--listen-peer-urls", `http://127.0.0.1:${m.peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${m.peer}`,
      "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", `resonetics-bench-${process.pid}-${base}`,
      "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
    ];
    return new OwnedProcess(m.name, bin, args, {
      env,
      onLine: (_stream, line) => {
        let level: unknown;
        try {
          level = (JSON.parse(line) as { level?: unknown }).level;
        } catch {
          level = undefined; // not a zap JSON line: counted below as a complaint
        }
        if (typeof level !== "string" || ZAP_COMPLAINT.has(level)) complaints.get(m.name)!.add(line);
      },
    });
  });
  try {
    log(`etcd: ${version}, 3 members, clients on 127.0.0.1:${base}-${base + NODES - 1}, waiting until healthy`);
    await pollUntil("every etcd member healthy", async () => {
      for (const p of procs) if (!p.running()) throw new Error(`${p.name} exited ${JSON.stringify(p.status())}: ${p.stderr.last(10).join("\n")}`);
      const h = await Promise.all(members.map((m) => requestJson<{ health?: unknown }>(m.client, "GET", "/health")));
      return h.every((r) => r.status === 200 && r.json.health === "true") ? true : undefined;
    }, STARTUP_TIMEOUT_MS, 200);
    // Each member's status names the leader's member id; the leader is the member whose own id it is.
    interface EtcdStatus { header?: { member_id?: string; raft_term?: string }; leader?: string }
    const leaderOf = async (): Promise<{ member: (typeof members)[number]; term: string }> => pollUntil("an etcd leader", async () => {
      for (const m of members) {
        const r = await requestJson<EtcdStatus>(m.client, "POST", "/v3/maintenance/status", "{}");
        if (r.status === 200 && r.json.leader !== undefined && r.json.header?.member_id === r.json.leader) return { member: m, term: r.json.header?.raft_term ?? "?" };
      }
      return undefined;
    }, STARTUP_TIMEOUT_MS, 200);
    const leader = await leaderOf();
    log(`etcd: leader ${leader.member.name} (term ${leader.term})`);
    const target: Target = {
      port: leader.member.client, token: null, path: "/v3/kv/put", body: etcdBody, ok: (s) => s === 200,
      check: async () => {
        const dead = procs.filter((p) => !p.running()).map((p) => `${p.name} exited ${JSON.stringify(p.status())}: ${p.stderr.last(5).join(" | ")}`);
        if (dead.length > 0) return dead.join("; ");
        const now = await leaderOf().catch((e: unknown) => (e as Error).message);
        if (typeof now === "string") return `no leader: ${now}`;
        return now.member.name === leader.member.name && now.term === leader.term ? undefined : `leadership changed: now ${now.member.name} in term ${now.term} (was ${leader.member.name} in term ${leader.term})`;
      },
    };
    for (const c of complaints.values()) c.armed = true;
    const { warm, levels } = await drive("etcd", target, o, notes);
    for (const c of complaints.values()) c.armed = false;
    const setup = `${version}, 3 members (e1..e3), leader ${leader.member.name}, default fsync (WAL fdatasync per batch), v3 gateway POST /v3/kv/put, ${RECORD_BYTES} B values`;
    return { name: "etcd", setup, warm, levels, notes };
  } finally {
    await stopAll("etcd", procs, notes);
    noteComplaints("etcd", complaints, notes);
  }
}

/**
 * Two runs level by level: committed ops/s, p50 and p99 of each, and the ratio of their committed
 * ops/s (ratio(left, right)); "-" where a run is missing.
 */
function sideBySide(
  clients: readonly number[], left: { readonly label: string; readonly run: SystemRun | undefined }, right: { readonly label: string; readonly run: SystemRun | undefined },
  ratio: { readonly label: string; readonly of: (left: LoadResult, right: LoadResult) => number },
): string {
  // Only answers that mean "committed" count; a level with other answers is marked and explained below.
  const flag = (r: LoadResult): string => (r.errors > 0 || r.cutShort ? "*" : "");
  const cell = (r: LoadResult | undefined): string[] => r === undefined ? ["-", "-", "-"] : [`${flag(r)}${fmtInt(r.okPerSecond)}`, fmtMs(r.okP50Ms), fmtMs(r.okP99Ms)];
  const rows: string[][] = [["clients", `${left.label} ops/s`, "p50 ms", "p99 ms", `${right.label} ops/s`, "p50 ms", "p99 ms", ratio.label]];
  clients.forEach((c, l) => {
    const a = left.run?.levels[l];
    const b = right.run?.levels[l];
    rows.push([String(c), ...cell(a), ...cell(b), a !== undefined && b !== undefined ? `${ratio.of(a, b).toFixed(2)}x` : "-"]);
  });
  return table(rows);
}

function report(o: Options, runs: readonly SystemRun[], header: string[], tail: string[]): string {
  const lines = [...header, ""];
  const res = runs.find((r) => r.name === "resonetics");
  const resTls = runs.find((r) => r.name === "resonetics-tls");
  const etcd = runs.find((r) => r.name === "etcd");
  lines.push(sideBySide(o.clients, { label: "resonetics", run: res }, { label: "etcd", run: etcd }, { label: "ratio (res/etcd)", of: (a, b) => a.okPerSecond / b.okPerSecond }));
  lines.push("ops/s = committed appends (resonetics 201, etcd 200) per second of the level; p50/p99 over those; * = the level also had failed or unsent ops (see anomalies)", "");
  if (resTls === undefined) lines.push(`TLS cost: not measured (${o.tls ? "it needs resonetics in --systems" : "--tls 0"})`, "");
  else {
    lines.push("TLS cost (resonetics plain vs the same cluster over TLS, same load):");
    lines.push(sideBySide(o.clients, { label: "plain", run: res }, { label: "TLS", run: resTls }, { label: "ratio (TLS/plain)", of: (plain, secure) => secure.okPerSecond / plain.okPerSecond }));
    lines.push("TLS = cluster init --tls-generate: clients over HTTPS keep-alive (a handshake per connection, not per op), nodes over wss; ratio < 1.00x is what TLS costs; * as above", "");
  }
  const detail: string[][] = [["run", "clients", "ops sent", "seconds", "committed", "committed/s", "p50 ms", "p99 ms", "max ms (all)", "errors", "statuses"]];
  for (const r of runs) {
    const row = (what: string, x: LoadResult): string[] => [
      what, String(x.clients), fmtInt(x.requests), x.seconds.toFixed(2), fmtInt(x.ok), fmtInt(x.okPerSecond), fmtMs(x.okP50Ms), fmtMs(x.okP99Ms), fmtMs(x.maxMs),
      String(x.errors), Object.entries(x.statuses).map(([k, v]) => `${k}:${v}`).join(" "),
    ];
    if (r.warm !== null) detail.push(row(`${r.name} warm-up (not a result)`, r.warm));
    for (const x of r.levels) detail.push(row(r.name, x));
  }
  lines.push(table(detail), "");
  for (const r of runs) lines.push(`${r.name}: ${r.setup}`);
  lines.push(...tail);
  const notes = runs.flatMap((r) => r.notes);
  lines.push(notes.length === 0 ? "anomalies: none (no errors, no leader change, no warn-or-worse log lines, clean shutdowns)" : "anomalies:");
  for (const n of notes) lines.push(`  - ${n}`);
  return lines.join("\n") + "\n";
}

async function main(): Promise<void> {
  const o = options();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-bench-cluster-"));
  const cleanUp = (): void => {
    killOwned();
    if (!o.keep) fs.rmSync(root, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: killing every process this bench started and removing ${root}`);
    cleanUp();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", () => killOwned());
  const overall = setTimeout(() => {
    log(`the whole bench exceeded --timeout-s ${o.timeoutMs / 1000}: killing every process and removing ${root}`);
    cleanUp();
    process.exit(1);
  }, o.timeoutMs);

  const etcdBin = o.systems.includes("etcd") ? findExecutable(o.etcdBin) : null;
  const header = [
    "Resonetics 3-node cluster benchmark (npm run bench)",
    `machine: ${machine()}`,
    `load average at start: ${loadAverage()} (1/5/15 min; other work on this machine shares its ${os.cpus().length} cores)`,
    `load: closed loop, each client waits for its answer; ${o.clients.map((c, i) => `${fmtInt(o.ops[i])} ops at ${c}`).join(", ")} clients after ${fmtInt(o.warmup)} warm-up ops; ` +
      `HTTP/1.1 keep-alive to the leader${o.tls ? " (HTTPS trusting the cluster's ca.crt for resonetics-tls)" : ""}, one agent per level with maxSockets = clients; latency = client-side, request sent to answer received`,
  ];
  const envs = Object.keys(process.env).filter((k) => k.startsWith("RESONETICS_"));
  if (envs.length > 0) header.push(`note: the Resonetics nodes inherit ${envs.join(", ")} from this environment`);
  const tail: string[] = [];
  const runs: SystemRun[] = [];
  try {
    if (o.systems.includes("resonetics")) runs.push(await benchResonetics(o, root, false));
    tail.push(`load average after resonetics: ${loadAverage()}`);
    // Right after the plain run, so the two meet the machine in as similar a state as the bench can give.
    if (o.tls && o.systems.includes("resonetics")) {
      runs.push(await benchResonetics(o, root, true));
      tail.push(`load average after resonetics-tls: ${loadAverage()}`);
    }
    if (o.systems.includes("etcd")) {
      if (etcdBin === null) tail.push(`etcd: not found (${o.etcdBin} on PATH); install Debian's etcd-server for the side-by-side figures`);
      else {
        runs.push(await benchEtcd(o, root, etcdBin));
        tail.push(`load average after etcd: ${loadAverage()}`);
      }
    }
    tail.push(DESIGN_ETCD);
    tail.push(o.keep ? `data dirs kept under ${root}` : "temp data dirs removed");
    process.stdout.write(report(o, runs, header, tail));
  } finally {
    clearTimeout(overall);
    cleanUp();
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench-cluster failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
