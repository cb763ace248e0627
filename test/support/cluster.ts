/**
 * A real cluster for tests: `resonetics cluster init` on free loopback ports, one `resonetics serve`
 * process per node, kill -9 / restart / stop per node, and bounded waits for a leader and for
 * convergence. Built on test/support/server.ts (which tracks and cleans up every child and dir).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { makeTempDir, runCli, startServer, Server, getJson, http, pollUntil, trustTestCa } from "./server";
import { freePortRange } from "../../scripts/bench-lib";

export { freePortRange };

export interface StatusJson {
  node_id: string;
  role: string;
  term: number;
  leader: string | null;
  leader_address: string | null;
  commit_index: number;
  last_applied: number;
  head: string;
  cluster: string;
  voters: string[];
  learners: string[];
  halted: string | null;
}

export interface ClusterOptions {
  /** Extra `serve` flags for every node (e.g. --snapshot-every 50). */
  readonly serveArgs?: readonly string[];
  /** Extra `serve` flags per node id (e.g. --peers overrides that route through a proxy). */
  readonly nodeArgs?: (id: string) => readonly string[];
  /** Extra environment per node id (e.g. LD_PRELOAD and FAKETIME for a node with a skewed clock). */
  readonly nodeEnv?: (id: string) => Readonly<Record<string, string>>;
  /** Runs after `cluster init`, before any node starts (e.g. to put a data dir on its own filesystem). */
  readonly beforeStart?: (c: TestCluster) => void | Promise<void>;
  /** `cluster init --tls-generate`: every node serves HTTPS (and dials its peers with wss://); http() trusts the CA. */
  readonly tls?: boolean;
}

export class TestCluster {
  readonly servers = new Map<string, Server>();

  private constructor(
    readonly root: string,
    readonly ids: readonly string[],
    readonly basePort: number,
    readonly token: string,
    private readonly opts: ClusterOptions,
  ) {}

  /** cluster init + start every node. */
  static async start(nodes: number, opts: ClusterOptions = {}): Promise<TestCluster> {
    const root = makeTempDir();
    const basePort = await freePortRange(nodes);
    const r = await runCli(["cluster", "init", "--dir", root, "--nodes", String(nodes), "--base-port", String(basePort), ...(opts.tls === true ? ["--tls-generate"] : [])], 60_000);
    if (r.code !== 0) throw new Error(`cluster init failed (${r.code}): ${r.stderr}${r.stdout}`);
    if (opts.tls === true) trustTestCa(fs.readFileSync(path.join(root, "ca.crt")));
    const ids = Array.from({ length: nodes }, (_, i) => `n${i + 1}`);
    const token = fs.readFileSync(path.join(root, "n1", "admin.token"), "utf8").trim();
    const c = new TestCluster(root, ids, basePort, token, opts);
    await opts.beforeStart?.(c);
    await Promise.all(ids.map((id) => c.startNode(id)));
    return c;
  }

  dir(id: string): string {
    return path.join(this.root, id);
  }

  port(id: string): number {
    return this.basePort + this.ids.indexOf(id);
  }

  url(id: string): string {
    return `${this.opts.tls === true ? "https" : "http"}://127.0.0.1:${this.port(id)}`;
  }

  /** What a client of this cluster needs to trust it: its CA on a TLS cluster, nothing on a plain one. */
  clientTls(): { ca: Buffer } | undefined {
    return this.opts.tls === true ? { ca: fs.readFileSync(path.join(this.root, "ca.crt")) } : undefined;
  }

  urls(): string[] {
    return this.ids.map((id) => this.url(id));
  }

  running(): string[] {
    return this.ids.filter((id) => this.servers.has(id));
  }

  async startNode(id: string): Promise<Server> {
    if (this.servers.has(id)) throw new Error(`${id} is already running`);
    const s = await startServer(this.dir(id), {
      extraArgs: ["--port", String(this.port(id)), ...(this.opts.serveArgs ?? []), ...(this.opts.nodeArgs?.(id) ?? [])],
      ...(this.opts.nodeEnv === undefined ? {} : { env: { ...this.opts.nodeEnv(id) } }),
    });
    this.servers.set(id, s);
    void s.exited.then(() => {
      if (this.servers.get(id) === s) this.servers.delete(id);
    });
    return s;
  }

  /** kill -9 a node and wait for it to be gone. */
  async kill9(id: string): Promise<void> {
    const s = this.servers.get(id);
    if (s === undefined) return;
    this.servers.delete(id);
    await s.kill9();
  }

  async stopNode(id: string): Promise<void> {
    const s = this.servers.get(id);
    if (s === undefined) return;
    this.servers.delete(id);
    await s.stop();
  }

  async status(id: string): Promise<StatusJson> {
    return getJson<StatusJson>(this.url(id), "/v1/status");
  }

  /** Statuses of the running nodes that answer (a node mid-restart may not). */
  async statuses(): Promise<StatusJson[]> {
    const out = await Promise.all(this.running().map((id) => this.status(id).catch(() => null)));
    return out.filter((s): s is StatusJson => s !== null);
  }

  /**
   * Waits until a running node is leader, every answering running node names it, and it is ready
   * (its own term's first entry applied: before that it answers writes 503 "applying earlier entries").
   */
  async leader(attempts = 300): Promise<string> {
    return pollUntil("a ready leader every running node agrees on", async () => {
      const st = await this.statuses();
      const lead = st.find((s) => s.role === "leader");
      if (lead === undefined || !st.every((s) => s.leader === lead.node_id && s.term === lead.term)) return undefined;
      const ready = await http(this.url(lead.node_id), "GET", "/ready").catch(() => null);
      return ready?.status === 200 ? lead.node_id : undefined;
    }, attempts, 50);
  }

  /** Waits until every running node has applied at least index. */
  async converged(index: number, attempts = 400): Promise<void> {
    await pollUntil(`all running nodes applied ${index}`, async () => {
      const st = await this.statuses();
      return st.length === this.running().length && st.every((s) => s.last_applied >= index) ? true : undefined;
    }, attempts, 50);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.running().map((id) => this.stopNode(id)));
  }
}
