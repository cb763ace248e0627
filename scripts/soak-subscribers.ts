/**
 * The stream subscribers of `npm run soak:busy`, in a worker thread of the soak at nice 10.
 *
 * Why a worker, and why lower: 200 subscribers catching up take ~150,000 frames/s, about a core of
 * this machine; in the soak's main thread they delayed its own scrapes, writes and reads by seconds,
 * and at the nodes' priority they took that core from the three nodes the soak measures. Clients
 * of a real cluster run elsewhere; on one 2-core machine the closest stand-in is a thread that
 * gets the CPU the nodes leave. (A node's stream pump backs off by itself when its ticks run late.)
 *
 * Each subscriber checks that indices arrive contiguously and resumes after a close from where it
 * left off, as a real client does. The worker posts counts every COUNTS_EVERY_MS and once more when
 * told to stop.
 */
import { parentPort, workerData } from "node:worker_threads";
import WebSocket from "ws";
import { lowerThisThreadPriority } from "../src/node/background";

export interface SubscribersJob {
  readonly nodes: ReadonlyArray<{ readonly id: string; readonly port: number }>;
  readonly count: number;
  /** The commit index when they start: "recent" subscribers start at most recentSpan before it. */
  readonly commit: number;
  readonly recentSpan: number;
  readonly reconnectsMax: number;
  /** Lower this thread to nice 10 (the soak script does; a test need not). */
  readonly lowerPriority: boolean;
}

export type SubscribersMessage =
  | {
      readonly type: "counts";
      /** Entries and closes per node id since the worker started. */
      readonly perNode: Record<string, { entries: number; closes: number }>;
      /** Entries received by each subscriber, in order. */
      readonly received: number[];
      readonly reconnects: number;
      /** Problems since the last message (at most PROBLEMS_PER_MESSAGE_MAX). */
      readonly problems: string[];
      readonly priority: string | null;
      readonly final: boolean;
    };

/** Counts go to the soak 4 times a second: its progress lines and "finished once" check need no more. */
const COUNTS_EVERY_MS = 250;
/** Problems sent per message at most (all are counted by the soak's own bound): a server closing every socket in a loop stays a few lines. */
const PROBLEMS_PER_MESSAGE_MAX = 20;
/** Leading bytes of a stream frame that hold the index: {"type":"entry","entry":{"index":N,... */
const FRAME_INDEX = /"entry":\{"index":(\d+)/;

interface Sub {
  readonly node: { readonly id: string; readonly port: number };
  next: number;
  received: number;
  ws: WebSocket | null;
}

function run(job: SubscribersJob): void {
  const port = parentPort;
  if (port === null) throw new Error("soak-subscribers runs as a worker thread");
  const priority = job.lowerPriority ? lowerThisThreadPriority() : null;
  const perNode: Record<string, { entries: number; closes: number }> = {};
  for (const n of job.nodes) perNode[n.id] = { entries: 0, closes: 0 };
  let problems: string[] = [];
  let reconnects = 0;
  let running = true;
  const problem = (p: string): void => {
    if (problems.length < PROBLEMS_PER_MESSAGE_MAX) problems.push(p);
  };
  const subs: Sub[] = [];

  const subscribe = (sub: Sub): void => {
    if (!running) return;
    const ws = new WebSocket(`ws://127.0.0.1:${sub.node.port}/v1/stream?from=${sub.next}`, { perMessageDeflate: false });
    sub.ws = ws;
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      const m = isBinary ? null : FRAME_INDEX.exec(data.toString("latin1", 0, Math.min(data.length, 80)));
      const index = m === null ? Number.NaN : Number(m[1]);
      if (index !== sub.next) {
        problem(`stream on ${sub.node.id}: expected index ${sub.next}, got ${data.toString("utf8", 0, Math.min(data.length, 120))}`);
        ws.terminate();
        return;
      }
      sub.next++;
      sub.received++;
      perNode[sub.node.id].entries++;
    });
    ws.on("error", (e) => {
      if (running) problem(`stream on ${sub.node.id} from=${sub.next}: ${e.message}`);
    });
    ws.on("close", (code, reason) => {
      if (sub.ws !== ws || !running) return;
      perNode[sub.node.id].closes++;
      if (code !== 1006) problem(`stream on ${sub.node.id} closed ${code} ${reason.toString()}`);
      if (reconnects >= job.reconnectsMax) return;
      reconnects++;
      // Resume where it left off, as a real client does; a second later, so a refusing server is not hammered.
      setTimeout(() => subscribe(sub), 1_000);
    });
  };

  for (let k = 0; k < job.count; k++) {
    const node = job.nodes[k % job.nodes.length];
    // Alternate per round over the nodes: every node gets subscribers from=1 and from a recent index.
    const fromStart = Math.floor(k / job.nodes.length) % 2 === 0;
    const from = fromStart ? 1 : Math.max(1, job.commit - Math.floor(Math.random() * job.recentSpan));
    const sub: Sub = { node, next: from, received: 0, ws: null };
    subs.push(sub);
    subscribe(sub);
  }

  const post = (final: boolean): void => {
    const msg: SubscribersMessage = { type: "counts", perNode, received: subs.map((s) => s.received), reconnects, problems, priority, final };
    problems = [];
    port.postMessage(msg);
  };
  const timer = setInterval(() => post(false), COUNTS_EVERY_MS);
  port.on("message", (m: unknown) => {
    if ((m as { type?: unknown }).type !== "stop") return;
    running = false;
    clearInterval(timer);
    for (const s of subs) s.ws?.terminate();
    post(true);
    port.close();
  });
}

if (parentPort !== null) run(workerData as SubscribersJob);
