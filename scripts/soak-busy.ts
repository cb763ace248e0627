/**
 * `npm run soak:busy` (issue 9, acceptance 4): do elections happen because a node is busy? A real
 * 3-node cluster (bin/resonetics serve on 127.0.0.1) gets a log of --entries records through its own
 * API (concurrent keep-alive appends to the leader); then, for --seconds:
 *   - --audits concurrent audits (GET /v1/audit/verify with each node's audit.token, looping; a node
 *     runs one audit at a time, so an auditor turned away with 429 moves on to the next node),
 *   - --subscribers WebSocket subscribers (/v1/stream, half from=1, half from a recent index),
 *     consuming and checking that indices arrive contiguously,
 *   - --readers loops of history pages and record lists (linearizable, so followers do ReadIndex),
 *   - a light write load (--write-rate appends/s over all nodes; followers forward),
 * spread over the nodes, while every node's /metrics is sampled each second (resonetics_term, the
 * tick-lag summary and its max gauge). Phase 2 (--behind N > 0): one follower is stopped, N more
 * entries are written, it is restarted, and the same load runs while it catches up.
 * It prints a table per phase and node (role, term at start/end, term changes, tick lag p50/p99/max
 * from the summary, writes ok/503, audits, stream entries, history reads) and the load average.
 * Target (printed, never enforced): no term change, leader tick lag p99 < 50 ms.
 *
 *   npm run soak:busy -- [--entries 100000] [--seconds 60] [--audits 4] [--subscribers 200]
 *                        [--behind 20000] [--readers 6] [--write-rate 50] [--build-clients 64]
 *                        [--timeout-s 1800] [--serve-args ""] [--log-level warn] [--keep]
 *
 * The phases are exported (runBusySoak) for test/cluster/busy.test.ts, which runs them in small.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { startWorker } from "../src/node/background";
import type { SubscribersJob, SubscribersMessage } from "./soak-subscribers";
import {
  CHECKPOINT_EVERY, Client, ClusterNode, OwnedProcess, RecordAppender, SUBJECTS, buildLog, commitIndex, fmtInt, freePortRange, initClusterDirs, killOwned,
  loadAverage, machine, nodeStatus, NodeStatus, parseFlags, pollUntil, raceTimeout, readAdminToken, scriptLog, startClusterNode, table, waitForLeader,
} from "./bench-lib";

// ---------------------------------------------------------------------------------------------
// Limits (every loop and buffer of the load generator is bounded)

/** Metric samples per node at most (one a second: over two hours); memory stays bounded. */
const METRIC_SAMPLES_MAX = 8_192;
/** Reconnects of stream subscribers at most per phase: a server closing them in a loop cannot make us loop forever. */
const RECONNECTS_MAX = 5_000;
/** Problems kept per phase for the report (all are counted): the first few say enough. */
const PROBLEMS_KEPT_MAX = 20;
/** The server cuts an audit at 30 min (src/api/audit.ts AUDIT_TIME_MAX_MS); under this load one runs at tens to ~1,000 entries/s. */
const AUDIT_TIMEOUT_MS = 31 * 60_000;
/** Reads, writes and scrapes answer in milliseconds; 30 s means the node is stuck (counted, reported). */
const REQUEST_TIMEOUT_MS = 30_000;
/** A scrape every second; 2 s without an answer counts as a missed sample. */
const SCRAPE_TIMEOUT_MS = 2_000;
/** How often a phase checks whether it is done (and the catching-up follower's status). */
const PHASE_POLL_MS = 250;
/** After --seconds a phase waits at most this long more for every auditor and subscriber to finish once. */
const PHASE_GRACE_MS = 300_000;
/** Workers finish their request in flight after stop; their agents are destroyed, so this is only a backstop. */
const STOP_WAIT_MS = 15_000;
/** A history page and a record list of 100 entries: a heavy but ordinary read. */
const READ_PAGE = 100;
/** "Recent" subscribers start this many entries at most before the commit index. */
const RECENT_SPAN = 1_000;
/** A node started again answers /v1/status within this (tsx start-up, a 100k-entry open). */
const START_TIMEOUT_MS = 120_000;
/** The subjects' prefix of every record the soak writes (history readers ask for these subjects). */
const PREFIX = "busy";
/** Leader tick-lag p99 the issue targets (printed, never enforced). */
const TARGET_TICK_LAG_P99_S = 0.05;

// ---------------------------------------------------------------------------------------------
// The cluster the soak drives: real processes, started and stopped by the caller's harness.

export interface BusyCluster {
  readonly nodes: readonly ClusterNode[];
  /** SIGTERM one node and wait for its exit. */
  stopNode(id: string): Promise<void>;
  /** Start it again; resolves once it listens. */
  startNode(id: string): Promise<void>;
}

export interface BusyOptions {
  readonly entries: number;
  readonly seconds: number;
  readonly audits: number;
  readonly subscribers: number;
  /** 0: no phase 2. */
  readonly behind: number;
  readonly readers: number;
  /** Appends per second over all nodes during a phase. */
  readonly writeRate: number;
  readonly buildClients: number;
  /**
   * A phase runs past `seconds` until every auditor completed an audit and every subscriber got an
   * entry (bounded by PHASE_GRACE_MS): the test's "everything finished". The script stops at
   * `seconds` (an audit of a 100k-entry log under this load may outlast it) and reports what ran.
   */
  readonly untilFinished: boolean;
  /** Run the stream subscribers' thread at nice 10 (scripts/soak-subscribers.ts says why). */
  readonly lowerSubscriberPriority?: boolean;
}

// ---------------------------------------------------------------------------------------------
// /metrics

/** One scrape: value by `name` or `name{quantile="q"}` (node_id dropped: a scrape is of one node). */
export type MetricValues = ReadonlyMap<string, number>;

/** Parses the Prometheus text format into MetricValues (other labels than quantile kept in order). */
export function parseMetrics(text: string): MetricValues {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const labels: string[] = [];
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      if (l[1] !== "node_id") labels.push(`${l[1]}="${l[2]}"`);
    }
    out.set(labels.length === 0 ? m[1] : `${m[1]}{${labels.join(",")}}`, Number(m[3]));
  }
  return out;
}

export interface TickLag {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** The tick-lag summary (seconds) of a scrape, or null when the node does not export it. */
export function tickLag(m: MetricValues): TickLag | null {
  const p50 = m.get('resonetics_tick_lag_seconds{quantile="0.5"}');
  const p99 = m.get('resonetics_tick_lag_seconds{quantile="0.99"}');
  const max = m.get("resonetics_tick_lag_max_seconds");
  if (p50 === undefined || p99 === undefined || max === undefined) return null;
  return { p50, p99, max };
}

interface MetricSample {
  readonly term: number | undefined;
  readonly p99: number | undefined;
  readonly max: number | undefined;
}

/** Scrapes every node's /metrics once a second; a node that does not answer is a missed sample. */
class MetricsSampler {
  readonly samples = new Map<string, MetricSample[]>();
  readonly missed = new Map<string, number>();
  private readonly clients = new Map<string, Client>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;

  constructor(private readonly nodes: readonly ClusterNode[]) {
    for (const n of nodes) {
      this.samples.set(n.id, []);
      this.missed.set(n.id, 0);
      this.clients.set(n.id, new Client(n.port, null, 2));
    }
  }

  start(): void {
    const tick = (): void => {
      this.timer = setTimeout(tick, 1_000);
      // One scrape per node in flight at most: a stalled node shows as missed samples, not a pile of requests.
      if (this.inFlight > 0) {
        for (const n of this.nodes) this.missed.set(n.id, (this.missed.get(n.id) ?? 0) + 1);
        return;
      }
      for (const n of this.nodes) void this.scrapeInto(n);
    };
    tick();
  }

  /** One scrape of a node now (for the summary at the end of a phase). */
  async scrape(node: ClusterNode): Promise<MetricValues | null> {
    try {
      const a = await this.client(node).request("GET", "/metrics", undefined, {}, SCRAPE_TIMEOUT_MS);
      return a.status === 200 ? parseMetrics(a.body) : null;
    } catch {
      return null; // a node that is down or mid-restart: the caller reports "no sample"
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    // A scrape ends within SCRAPE_TIMEOUT_MS (its request times out): this wait is bounded by that.
    for (let i = 0; i < SCRAPE_TIMEOUT_MS / 20 + 50 && this.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 20));
    for (const c of this.clients.values()) c.close();
  }

  private client(node: ClusterNode): Client {
    const c = this.clients.get(node.id);
    if (c === undefined) throw new Error(`no metrics client for ${node.id}`);
    return c;
  }

  private async scrapeInto(node: ClusterNode): Promise<void> {
    this.inFlight++;
    try {
      const m = await this.scrape(node);
      const list = this.samples.get(node.id) ?? [];
      if (m === null) this.missed.set(node.id, (this.missed.get(node.id) ?? 0) + 1);
      else if (list.length < METRIC_SAMPLES_MAX) {
        const lag = tickLag(m);
        list.push({ term: m.get("resonetics_term"), p99: lag?.p99, max: lag?.max });
      }
    } finally {
      this.inFlight--;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The load

/** Per node counters of one phase. */
export interface NodeLoad {
  writesOk: number;
  writes503: number;
  writesOther: number;
  auditsOk: number;
  /** 429: the node was already running an audit. */
  auditsBusy: number;
  auditsFailed: number;
  /** The longest completed audit, in seconds. */
  auditSecondsMax: number;
  /** Audits still running when the phase stopped (aborted then, not counted as failed). */
  auditsCut: number;
  streamEntries: number;
  streamCloses: number;
  reads: number;
  readsFailed: number;
}

const emptyLoad = (): NodeLoad => ({
  writesOk: 0, writes503: 0, writesOther: 0, auditsOk: 0, auditsBusy: 0, auditsFailed: 0, auditSecondsMax: 0, auditsCut: 0, streamEntries: 0, streamCloses: 0, reads: 0, readsFailed: 0,
});

/** Counters that go into a phase's problems list, bounded. */
class Problems {
  readonly kept: string[] = [];
  count = 0;
  add(line: string): void {
    this.count++;
    if (this.kept.length < PROBLEMS_KEPT_MAX) this.kept.push(line.length > 400 ? `${line.slice(0, 400)}…` : line);
  }
}

/** How long stop() waits for the subscribers' worker to send its last counts and close. */
const SUBSCRIBERS_STOP_MS = 10_000;

/** Audits, subscribers, readers and writers against every node, until stop(). */
class BusyLoad {
  readonly perNode = new Map<string, NodeLoad>();
  readonly problems = new Problems();
  /** Audits completed (200, ok) by each auditor. */
  readonly auditorDone: number[];
  /** Entries received by each subscriber (they run in a worker thread: scripts/soak-subscribers.ts). */
  readonly subscribers: Array<{ received: number }>;
  reconnects = 0;
  /** Why the subscribers' thread runs at the nodes' priority after all, when it does. */
  subscriberPriority: string | null = null;
  private running = true;
  private readonly clients: Client[] = [];
  private readonly workers: Promise<void>[] = [];
  private readonly streamWorker: Worker | null = null;
  private streamDone: Promise<void> = Promise.resolve();

  constructor(
    private readonly nodes: readonly ClusterNode[], private readonly leader: ClusterNode, private readonly appender: RecordAppender,
    private readonly o: BusyOptions, private readonly commit: number,
  ) {
    for (const n of nodes) this.perNode.set(n.id, emptyLoad());
    this.auditorDone = Array.from({ length: o.audits }, () => 0);
    for (let k = 0; k < o.audits; k++) this.workers.push(this.auditor(k));
    for (let k = 0; k < o.readers; k++) this.workers.push(this.reader(nodes[k % nodes.length]));
    // One paced writer per 25 writes/s, at most 4: a light load stays light even on a slow leader (closed loops).
    const writers = Math.min(4, Math.max(1, Math.ceil(o.writeRate / 25)));
    if (o.writeRate > 0) for (let k = 0; k < writers; k++) this.workers.push(this.writer(writers));
    this.subscribers = Array.from({ length: o.subscribers }, () => ({ received: 0 }));
    if (o.subscribers > 0) {
      const job: SubscribersJob = {
        nodes: nodes.map((n) => ({ id: n.id, port: n.port })), count: o.subscribers, commit, recentSpan: RECENT_SPAN,
        reconnectsMax: RECONNECTS_MAX, lowerPriority: o.lowerSubscriberPriority === true,
      };
      const w = startWorker(path.join(__dirname, `soak-subscribers${path.extname(__filename)}`), job);
      this.streamWorker = w;
      this.streamDone = new Promise<void>((resolve) => {
        w.on("message", (m: SubscribersMessage) => {
          this.counts(m);
          if (m.final) resolve();
        });
        w.once("error", (e) => {
          this.problems.add(`stream subscribers' worker: ${e.message}`);
          resolve();
        });
        w.once("exit", () => resolve());
      });
    }
  }

  /** The subscribers' worker's counts: absolute since this phase's load started. */
  private counts(m: SubscribersMessage): void {
    for (const [id, c] of Object.entries(m.perNode)) {
      const l = this.perNode.get(id);
      if (l === undefined) continue;
      l.streamEntries = c.entries;
      l.streamCloses = c.closes;
    }
    m.received.forEach((n, i) => {
      if (this.subscribers[i] !== undefined) this.subscribers[i].received = n;
    });
    this.reconnects = m.reconnects;
    this.subscriberPriority = m.priority;
    for (const p of m.problems) this.problems.add(p);
  }

  /** True once every auditor completed an audit and every subscriber received an entry. */
  finishedOnce(): boolean {
    return this.auditorDone.every((n) => n > 0) && this.subscribers.every((s) => s.received > 0);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.streamWorker?.postMessage({ type: "stop" });
    if ((await raceTimeout(this.streamDone, SUBSCRIBERS_STOP_MS)) === null) this.problems.add(`stream subscribers' worker still running ${SUBSCRIBERS_STOP_MS} ms after stop`);
    await this.streamWorker?.terminate();
    for (const c of this.clients) c.close(); // in-flight audits end now (counted as aborted, not failed)
    const done = await raceTimeout(Promise.all(this.workers), STOP_WAIT_MS);
    if (done === null) this.problems.add(`load workers still running ${STOP_WAIT_MS} ms after stop`);
  }

  private load(node: ClusterNode): NodeLoad {
    const l = this.perNode.get(node.id);
    if (l === undefined) throw new Error(`no counters for ${node.id}`);
    return l;
  }

  private client(node: ClusterNode, token: string | null, sockets: number): Client {
    const c = new Client(node.port, token, sockets);
    this.clients.push(c);
    return c;
  }

  private async pause(ms: number): Promise<void> {
    if (this.running && ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  /** Audits in a loop; a 429 (that node runs one already) moves this auditor to the next node. */
  private async auditor(k: number): Promise<void> {
    const clients = this.nodes.map((n) => this.client(n, fs.readFileSync(path.join(n.dir, "audit.token"), "utf8").trim(), 1));
    let at = k % this.nodes.length;
    while (this.running) {
      const node = this.nodes[at];
      try {
        const t0 = Date.now();
        const a = await clients[at].request("GET", "/v1/audit/verify", undefined, {}, AUDIT_TIMEOUT_MS);
        if (!this.running) {
          this.load(node).auditsCut++;
          return;
        }
        const ok = a.status === 200 && (JSON.parse(a.body) as { ok?: unknown }).ok === true;
        if (ok) {
          const l = this.load(node);
          l.auditsOk++;
          l.auditSecondsMax = Math.max(l.auditSecondsMax, (Date.now() - t0) / 1000);
          this.auditorDone[k]++;
        } else if (a.status === 429) {
          this.load(node).auditsBusy++;
          at = (at + 1) % this.nodes.length;
          await this.pause(200);
        } else {
          this.load(node).auditsFailed++;
          this.problems.add(`audit on ${node.id}: ${a.status} ${a.body.slice(0, 300)}`);
          await this.pause(1_000);
        }
      } catch (e) {
        if (!this.running) {
          this.load(node).auditsCut++;
          return;
        }
        this.load(node).auditsFailed++;
        this.problems.add(`audit on ${node.id}: ${(e as Error).message}`);
        await this.pause(1_000);
      }
    }
  }

  /**
   * History pages of random subjects and lists of records from random indices, alternately; read
   * locally on a follower (a linearizable read there is a 307 to the leader), on the leader
   * alternately local and linearizable (ReadIndex).
   */
  private async reader(node: ClusterNode): Promise<void> {
    const c = this.client(node, null, 1);
    for (let i = 0; this.running; i++) {
      const consistency = node.id !== this.leader.id || i % 4 < 2 ? "&consistency=local" : "";
      const urlPath = (i % 2 === 0
        ? `/v1/subjects/${PREFIX}-${Math.floor(Math.random() * this.appender.subjects)}/history?limit=${READ_PAGE}`
        : `/v1/records?from=${1 + Math.floor(Math.random() * this.commit)}&limit=${READ_PAGE}`) + consistency;
      try {
        const a = await c.request("GET", urlPath, undefined, {}, REQUEST_TIMEOUT_MS);
        if (!this.running) return;
        if (a.status === 200) this.load(node).reads++;
        else {
          this.load(node).readsFailed++;
          this.problems.add(`GET ${urlPath} on ${node.id}: ${a.status} ${a.body.slice(0, 300)}`);
          await this.pause(100);
        }
      } catch (e) {
        if (!this.running) return;
        this.load(node).readsFailed++;
        this.problems.add(`GET ${urlPath} on ${node.id}: ${(e as Error).message}`);
        await this.pause(100);
      }
    }
  }

  /** Paced appends to the leader (a follower answers a write with 307 to the leader). */
  private async writer(writers: number): Promise<void> {
    const node = this.leader;
    const c = this.client(node, readAdminToken(node.dir), 1);
    const gapMs = (writers * 1000) / this.o.writeRate;
    while (this.running) {
      const t0 = Date.now();
      try {
        const a = await this.appender.append(c);
        if (!this.running) return;
        if (a.status === 201) this.load(node).writesOk++;
        else if (a.status === 503) this.load(node).writes503++;
        else {
          this.load(node).writesOther++;
          this.problems.add(`POST /v1/records on ${node.id}: ${a.status} ${a.body.slice(0, 300)}`);
        }
      } catch (e) {
        if (!this.running) return;
        this.load(node).writesOther++;
        this.problems.add(`POST /v1/records on ${node.id}: ${(e as Error).message}`);
      }
      await this.pause(gapMs - (Date.now() - t0));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Phases

export interface NodePhase {
  readonly id: string;
  readonly roleStart: string;
  readonly roleEnd: string;
  readonly termStart: number;
  readonly termEnd: number;
  /** Term changes seen between consecutive /metrics samples and between start and end. */
  readonly termChanges: number;
  /** The summary at the end of the phase (its window is the last 60 s), null when not exported. */
  readonly tickLag: TickLag | null;
  /** The largest p99 any one-second sample showed. */
  readonly p99Peak: number | null;
  readonly samples: number;
  readonly missed: number;
  readonly load: NodeLoad;
}

export interface PhaseReport {
  readonly name: string;
  readonly seconds: number;
  /** False when the phase hit its bound before every auditor and subscriber finished once. */
  readonly finished: boolean;
  readonly nodes: readonly NodePhase[];
  readonly auditorDone: readonly number[];
  readonly subscribersWithEntries: number;
  readonly subscribers: number;
  readonly reconnects: number;
  readonly problems: readonly string[];
  readonly problemCount: number;
  readonly loadAverage: string;
  /** Phase 2: the restarted follower, the commit index it had to reach and how long that took. */
  readonly catchUp?: { readonly id: string; readonly target: number; readonly ms: number | null; readonly termsBeforeStop: Readonly<Record<string, number>> };
}

/** Statuses of every node (each retried until it answers, bounded). */
async function statuses(nodes: readonly ClusterNode[]): Promise<Map<string, NodeStatus>> {
  const all = await Promise.all(nodes.map((n) => pollUntil(`${n.id} to answer /v1/status`, () => nodeStatus(n, 5_000), 60_000, 200)));
  return new Map(all.map((s) => [s.node_id, s]));
}

function termChanges(samples: readonly MetricSample[], start: number, end: number): number {
  let changes = 0;
  let last = start;
  for (const s of samples) {
    if (s.term === undefined) continue;
    if (s.term !== last) changes++;
    last = s.term;
  }
  return changes + (end !== last ? 1 : 0);
}

/**
 * Runs the load against every node for at least o.seconds and until extraDone() holds (with
 * o.untilFinished, also until every auditor completed an audit and every subscriber received an
 * entry), bounded by PHASE_GRACE_MS more.
 */
async function runPhase(
  name: string, nodes: readonly ClusterNode[], appender: RecordAppender, o: BusyOptions, log: (line: string) => void,
  extraDone: () => Promise<boolean> = async () => true,
): Promise<Omit<PhaseReport, "catchUp">> {
  const before = await statuses(nodes);
  const leader = nodes.find((n) => before.get(n.id)?.role === "leader");
  if (leader === undefined) throw new Error(`${name}: no node is leader at the start: ${JSON.stringify([...before.values()])}`);
  const commit = before.get(leader.id)?.commit_index ?? 1;
  const sampler = new MetricsSampler(nodes);
  sampler.start();
  const load = new BusyLoad(nodes, leader, appender, o, commit);
  const t0 = Date.now();
  const minMs = o.seconds * 1000;
  let finished = false;
  let lastLog = t0;
  for (let round = 0; round < (minMs + PHASE_GRACE_MS) / PHASE_POLL_MS + 1; round++) {
    await new Promise((r) => setTimeout(r, PHASE_POLL_MS));
    const elapsed = Date.now() - t0;
    const extra = await extraDone();
    if (elapsed >= minMs && (!o.untilFinished || load.finishedOnce()) && extra) {
      finished = true;
      break;
    }
    if (elapsed >= minMs + PHASE_GRACE_MS) break;
    if (Date.now() - lastLog >= 10_000) {
      lastLog = Date.now();
      const t = [...load.perNode.values()];
      log(`${name}: ${(elapsed / 1000).toFixed(0)} s, audits ${t.reduce((s, l) => s + l.auditsOk, 0)}, stream entries ${fmtInt(t.reduce((s, l) => s + l.streamEntries, 0))}, reads ${fmtInt(t.reduce((s, l) => s + l.reads, 0))}, writes ${fmtInt(t.reduce((s, l) => s + l.writesOk, 0))}`);
    }
  }
  const seconds = (Date.now() - t0) / 1000;
  await load.stop();
  const finalScrapes = await Promise.all(nodes.map((n) => sampler.scrape(n)));
  await sampler.stop();
  const after = await statuses(nodes);
  if (!finished || (o.untilFinished && !load.finishedOnce())) load.problems.add(`${name}: cut after ${seconds.toFixed(0)} s before every auditor and subscriber finished once (audits per auditor ${load.auditorDone.join(",")})`);
  const report = nodes.map((n, i): NodePhase => {
    const s0 = before.get(n.id);
    const s1 = after.get(n.id);
    if (s0 === undefined || s1 === undefined) throw new Error(`no status of ${n.id}`);
    const samples = sampler.samples.get(n.id) ?? [];
    const peaks = samples.map((s) => s.p99).filter((x): x is number => x !== undefined);
    const scrape = finalScrapes[i];
    return {
      id: n.id, roleStart: s0.role, roleEnd: s1.role, termStart: s0.term, termEnd: s1.term, termChanges: termChanges(samples, s0.term, s1.term),
      tickLag: scrape === null ? null : tickLag(scrape), p99Peak: peaks.length === 0 ? null : Math.max(...peaks),
      samples: samples.length, missed: sampler.missed.get(n.id) ?? 0, load: load.perNode.get(n.id) ?? emptyLoad(),
    };
  });
  if (report.every((r) => r.tickLag === null)) load.problems.add("no node exports resonetics_tick_lag_seconds / resonetics_tick_lag_max_seconds in /metrics");
  return {
    name, seconds, finished, nodes: report, auditorDone: [...load.auditorDone],
    subscribersWithEntries: load.subscribers.filter((s) => s.received > 0).length, subscribers: load.subscribers.length, reconnects: load.reconnects,
    problems: load.problems.kept, problemCount: load.problems.count, loadAverage: loadAverage(),
  };
}

/**
 * Appends through the leader until its commit index is `target`, logging progress every tenth of the
 * way. The leader is looked up again before every step, so a leader change while building (logged)
 * costs one step's errors, not the build.
 */
async function buildTo(among: readonly ClusterNode[], appender: RecordAppender, target: number, clients: number, log: (line: string) => void): Promise<number> {
  let leader = await waitForLeader(among, 60_000);
  let client = new Client(leader.port, readAdminToken(leader.dir), clients);
  try {
    const start = await commitIndex(client);
    const step = Math.max(1_000, Math.ceil((target - start) / 10));
    let have = start;
    const t0 = Date.now();
    // Each step appends at least `step` entries (or fails loudly in buildLog's rounds), so this ends.
    for (let n = 0; have < target && n < 1_000; n++) {
      const now = await waitForLeader(among, 60_000);
      if (now.id !== leader.id) {
        log(`  the leader moved from ${leader.id} to ${now.id} while building; appending through ${now.id}`);
        client.close();
        leader = now;
        client = new Client(leader.port, readAdminToken(leader.dir), clients);
      }
      const r = await buildLog(client, appender, { entries: Math.min(target, have + step), clients, checkpointEvery: CHECKPOINT_EVERY, log });
      if (r.entries <= have && (await waitForLeader(among, 60_000)).id === leader.id) throw new Error(`the log did not grow past ${have} (target ${target})`);
      have = Math.max(have, r.entries);
      const s = (Date.now() - t0) / 1000;
      log(`  ${fmtInt(have)} / ${fmtInt(target)} entries (${fmtInt((have - start) / s)}/s)`);
    }
    return have;
  } finally {
    client.close();
  }
}

export interface SoakReport {
  readonly entries: number;
  readonly buildSeconds: number;
  readonly phases: readonly PhaseReport[];
}

/** Builds the log, then phase 1 (all nodes under load) and, with o.behind > 0, phase 2 (a follower restarted behind). */
export async function runBusySoak(cluster: BusyCluster, o: BusyOptions, log: (line: string) => void): Promise<SoakReport> {
  const nodes = cluster.nodes;
  const appender = new RecordAppender(PREFIX, Math.min(SUBJECTS, Math.max(1, Math.floor(o.entries / 5))));
  let leader = await waitForLeader(nodes, 60_000);
  log(`leader ${leader.id}; building a ${fmtInt(o.entries)}-entry log (${o.buildClients} clients)`);
  const b0 = Date.now();
  const entries = await buildTo(nodes, appender, o.entries, o.buildClients, log);
  const buildSeconds = (Date.now() - b0) / 1000;
  await pollUntil(`every node applied ${entries}`, async () => {
    const st = await statuses(nodes);
    return [...st.values()].every((s) => s.last_applied >= entries) ? true : undefined;
  }, 300_000, 200);

  const phases: PhaseReport[] = [];
  log(`phase 1: ${o.audits} audits, ${o.subscribers} subscribers, ${o.readers} readers, ${o.writeRate} writes/s for ${o.seconds} s`);
  phases.push(await runPhase("phase 1", nodes, appender, o, log));

  if (o.behind > 0) {
    leader = await waitForLeader(nodes, 60_000);
    const follower = nodes.find((n) => n.id !== leader.id);
    if (follower === undefined) throw new Error("no follower to restart");
    const termsBeforeStop = Object.fromEntries([...(await statuses(nodes)).values()].map((s) => [s.node_id, s.term]));
    log(`phase 2: stopping follower ${follower.id}, writing ${fmtInt(o.behind)} entries through ${leader.id}`);
    await cluster.stopNode(follower.id);
    const start = (await nodeStatus(leader)).commit_index;
    await buildTo(nodes.filter((n) => n.id !== follower.id), appender, start + o.behind, o.buildClients, log);
    await cluster.startNode(follower.id);
    const target = (await nodeStatus(leader)).commit_index;
    const restartedAt = Date.now();
    let caughtUpMs: number | null = null;
    log(`phase 2: ${follower.id} restarted ${fmtInt(target - start)} entries behind (target index ${fmtInt(target)}); the same load while it catches up`);
    const p = await runPhase("phase 2", nodes, appender, o, log, async () => {
      if (caughtUpMs !== null) return true;
      const st = await nodeStatus(follower).catch(() => null);
      if (st !== null && st.last_applied >= target) caughtUpMs = Date.now() - restartedAt;
      return caughtUpMs !== null;
    });
    phases.push({ ...p, catchUp: { id: follower.id, target, ms: caughtUpMs, termsBeforeStop } });
  }
  return { entries, buildSeconds, phases };
}

// ---------------------------------------------------------------------------------------------
// The report

const ms = (s: number | null | undefined): string => (s === null || s === undefined ? "n/a" : (s * 1000).toFixed(1));

/** The report of a soak as text: per phase a table per node, the catch-up, problems, load. */
export function formatReport(r: SoakReport, o: BusyOptions): string {
  const lines: string[] = [];
  lines.push(`log: ${fmtInt(r.entries)} entries built in ${r.buildSeconds.toFixed(1)} s (${fmtInt(r.entries / r.buildSeconds)}/s)`);
  for (const p of r.phases) {
    lines.push("");
    lines.push(`## ${p.name}: ${p.seconds.toFixed(1)} s${p.catchUp === undefined ? "" : ` (${p.catchUp.id} restarted behind)`}, ${o.audits} auditors, ${p.subscribers} subscribers, ${o.readers} readers, ${o.writeRate} writes/s`);
    lines.push(table([
      ["node", "role", "term start", "term end", "term changes", "lag p50 ms", "lag p99 ms", "lag max ms", "p99 peak ms", "writes ok", "503", "audits ok", "audits cut", "audit 429", "audit s max", "stream entries", "reads", "samples"],
      ...p.nodes.map((n) => [
        n.id, n.roleStart === n.roleEnd ? n.roleEnd : `${n.roleStart}→${n.roleEnd}`, String(n.termStart), String(n.termEnd), String(n.termChanges),
        ms(n.tickLag?.p50), ms(n.tickLag?.p99), ms(n.tickLag?.max), ms(n.p99Peak),
        fmtInt(n.load.writesOk), fmtInt(n.load.writes503), fmtInt(n.load.auditsOk), fmtInt(n.load.auditsCut), fmtInt(n.load.auditsBusy), n.load.auditSecondsMax.toFixed(1), fmtInt(n.load.streamEntries), fmtInt(n.load.reads),
        `${n.samples}${n.missed > 0 ? ` (${n.missed} missed)` : ""}`,
      ]),
    ]));
    const changes = p.nodes.reduce((s, n) => s + n.termChanges, 0);
    const lead = p.nodes.find((n) => n.roleEnd === "leader");
    const p99 = lead?.tickLag?.p99;
    lines.push(`term changes: ${changes} (target 0): ${changes === 0 ? "target met" : "TARGET MISSED"}`);
    lines.push(`leader tick lag p99: ${ms(p99)} ms (target < ${TARGET_TICK_LAG_P99_S * 1000} ms): ${p99 === undefined ? "not measured" : p99 < TARGET_TICK_LAG_P99_S ? "target met" : "TARGET MISSED"}`);
    if (p.catchUp !== undefined) {
      const c = p.catchUp;
      const f = p.nodes.find((n) => n.id === c.id);
      const stopTerms = Object.entries(c.termsBeforeStop).map(([id, t]) => `${id} ${t}`).join(", ");
      lines.push(`catch-up of ${c.id} to index ${fmtInt(c.target)}: ${c.ms === null ? "NOT caught up in the phase" : `${(c.ms / 1000).toFixed(1)} s after its restart`}; its tick lag p99 ${ms(f?.tickLag?.p99)} ms, max ${ms(f?.tickLag?.max)} ms`);
      lines.push(`terms before ${c.id} was stopped: ${stopTerms}`);
    }
    const failed = p.nodes.reduce((s, n) => s + n.load.auditsFailed + n.load.readsFailed + n.load.writesOther, 0);
    lines.push(`audits per auditor: ${p.auditorDone.join(", ")}; subscribers with entries: ${p.subscribersWithEntries}/${p.subscribers}; stream reconnects ${p.reconnects}; failed audits/reads/writes (not 503): ${failed}`);
    if (p.problemCount > 0) lines.push(`problems (${p.problemCount}; first ${p.problems.length}):\n  ${p.problems.join("\n  ")}`);
    lines.push(`load average at the end (1/5/15 min): ${p.loadAverage} (${os.cpus().length} cores)`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// The script

function options() {
  return parseFlags({
    whole: {
      entries: [100_000, 100], seconds: [60, 1], audits: [4, 0], subscribers: [200, 0], behind: [20_000, 0], readers: [6, 0], "write-rate": [50, 0],
      "build-clients": [64, 1], "timeout-s": [1800, 10],
    },
    text: { "serve-args": "" },
    logLevel: "warn",
  });
}

/** The cluster as processes this script owns (bench-lib's OwnedProcess: killed on any exit). */
class ScriptCluster implements BusyCluster {
  readonly procs = new Map<string, OwnedProcess>();
  errorLines = 0;
  /** The first error lines of the nodes, for the report. */
  readonly errorSamples: string[] = [];

  constructor(readonly nodes: readonly ClusterNode[], private readonly logLevel: string, private readonly serveArgs: readonly string[]) {}

  async startNode(id: string): Promise<void> {
    const node = this.node(id);
    const p = startClusterNode(node, this.logLevel, (_stream, line) => {
      if (!line.includes('"level":50') && !line.includes('"level":60')) return;
      this.errorLines++;
      if (this.errorSamples.length < 5) this.errorSamples.push(`${id}: ${line.length > 300 ? `${line.slice(0, 300)}…` : line}`);
    }, this.serveArgs);
    this.procs.set(id, p);
    await pollUntil(`${id} to answer /v1/status`, async () => {
      if (!p.running()) throw new Error(`${id} exited: ${JSON.stringify(p.status())}\n${p.stderr.last().join("\n")}\n${p.stdout.last(5).join("\n")}`);
      return nodeStatus(node, 1_000);
    }, START_TIMEOUT_MS, 200);
  }

  async stopNode(id: string): Promise<void> {
    const p = this.procs.get(id);
    if (p === undefined) return;
    this.procs.delete(id);
    const s = await p.stop(10_000);
    if (s.forced) throw new Error(`${id} needed SIGKILL after SIGTERM`);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((id) => this.stopNode(id)));
  }

  private node(id: string): ClusterNode {
    const n = this.nodes.find((x) => x.id === id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }
}

async function main(): Promise<void> {
  const o = options();
  const log = scriptLog("soak:busy", true);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-soak-busy-"));
  const cleanup = (): void => {
    killOwned();
    if (!o.keep) fs.rmSync(root, { recursive: true, force: true });
  };
  const interrupt = (): void => {
    log("SIGINT: killing the nodes");
    cleanup();
    process.exit(130);
  };
  process.once("SIGINT", interrupt);
  process.once("exit", () => killOwned());
  // The whole run is bounded: past --timeout-s everything is killed and the run fails.
  const deadline = setTimeout(() => {
    log(`--timeout-s ${o.timeoutS} passed: killing the nodes`);
    cleanup();
    process.exit(1);
  }, o.timeoutS * 1000);
  deadline.unref();
  const serveArgs = o.serveArgs.split(" ").filter((x) => x !== "");
  let cluster: ScriptCluster | undefined;
  try {
    const nodes = await initClusterDirs(path.join(root, "cluster"), 3, await freePortRange(3));
    cluster = new ScriptCluster(nodes, o.logLevel, serveArgs);
    const c = cluster;
    await Promise.all(nodes.map((n) => c.startNode(n.id)));
    const loadBefore = loadAverage();
    const r = await runBusySoak(cluster, { ...o, untilFinished: false, lowerSubscriberPriority: true }, log);
    const out: string[] = [];
    out.push("Resonetics busy-node soak (npm run soak:busy, issue 9 acceptance 4)");
    out.push(`machine: ${machine()}`);
    out.push(`cluster: 3 × bin/resonetics serve on 127.0.0.1, log level ${o.logLevel}${serveArgs.length > 0 ? `, ${serveArgs.join(" ")}` : ""}; load average before ${loadBefore}`);
    out.push("load generator: this process; its stream subscribers in a worker thread at nice 10, standing in for clients on other machines (scripts/soak-subscribers.ts)");
    out.push(formatReport(r, { ...o, untilFinished: false }));
    out.push(`server error lines (pino level >= 50): ${cluster.errorLines}${cluster.errorSamples.length > 0 ? `; first:\n  ${cluster.errorSamples.join("\n  ")}` : ""}`);
    out.push(`/proc/loadavg: ${fs.readFileSync("/proc/loadavg", "utf8").trim()}`);
    out.push(o.keep ? `data dirs kept under ${root}` : "temp data dirs removed");
    process.stdout.write(out.join("\n") + "\n");
  } finally {
    clearTimeout(deadline);
    await cluster?.stopAll();
    cleanup();
    process.removeListener("SIGINT", interrupt);
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`soak-busy failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    killOwned();
    process.exitCode = 1;
  });
}
