/** Prometheus metrics (GET /metrics): node state sampled at scrape time, plus request counters. */
import { Counter, Gauge, Histogram, Registry, Summary, collectDefaultMetrics } from "prom-client";
import type { NodeInfo } from "../node/ports";

export interface Metrics {
  readonly registry: Registry;
  readonly appends: Counter<"result">;
  readonly appendSeconds: Histogram;
}

/**
 * The process's own metrics (CPU, memory, event loop delay, GC), collected once per process: each
 * collectDefaultMetrics call starts an event-loop-delay monitor and a GC observer that are never
 * stopped, so one per app would pile up wherever a process builds many apps (tests).
 */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export function createMetrics(node: NodeInfo): Metrics {
  const own = new Registry();
  const sample = <T extends string>(name: string, help: string, read: (g: Gauge<T>) => void): void => {
    new Gauge<T>({ name, help, registers: [own], collect() { read(this); } });
  };
  sample("resonetics_term", "current Raft term", (g) => g.set(node.currentTerm()));
  sample("resonetics_commit_index", "durable commit index", (g) => g.set(node.figures().commitIndex));
  sample("resonetics_last_applied", "last index applied to the state machine", (g) => g.set(node.figures().lastApplied));
  sample("resonetics_is_leader", "1 when this node is the leader", (g) => g.set(node.isLeader() ? 1 : 0));
  sample("resonetics_halted", "1 when the node halted (verification failure or storage fault)", (g) => g.set(node.status().halted === null ? 0 : 1));
  sample("resonetics_ready", "1 when /ready answers 200", (g) => g.set(node.readiness().ready ? 1 : 0));
  sample("resonetics_behind_entries", "entries last_applied trails the leader's commit index, as last heard", (g) => g.set(node.readiness().behind));
  sample("resonetics_uncommitted_bytes", "payload bytes this leader proposed that are not applied yet", (g) => g.set(node.figures().uncommittedBytes));
  sample("resonetics_pending_writes", "writes waiting for their entry's fate", (g) => g.set(node.figures().pendingWrites));
  sample("resonetics_writes_refused_total", "writes and reads refused at once because a bound was reached (503 overloaded)", (g) => g.set(node.figures().writesRefused));
  sample("resonetics_peer_frames_dropped_total", "frames dropped because a peer's send queue was full", (g) => g.set(node.figures().peerFramesDropped));
  sample("resonetics_peer_connections_refused_total", "inbound peer connections refused", (g) => g.set(node.figures().peerConnectionsRefused));
  sample("resonetics_peer_frames_rejected_total", "peer frames that failed their session tag (changed, injected, replayed or reordered on the way); each dropped its link", (g) => g.set(node.figures().peerFramesRejected));
  sample("resonetics_tick_lag_max_seconds", "the latest a Raft tick fired after its time in the last 60 s", (g) => g.set(node.figures().tickLag.max));
  sample("resonetics_clock_behind_log_seconds", "how far this node's clock was behind the log's last timestamp at its latest stamp (it stamps the log's time then)", (g) => g.set(node.figures().clockBehindLogSeconds));
  sample("resonetics_wal_checkpoints_worker_total", "WAL checkpoints run by the checkpoint worker thread, off the commit path", (g) => g.set(node.figures().walCheckpointsWorker));
  sample("resonetics_wal_checkpoints_writer_total", "WAL checkpoints the writer ran on its own thread (no worker, or one that did not answer)", (g) => g.set(node.figures().walCheckpointsWriter));
  new Summary({
    name: "resonetics_tick_lag_seconds", help: "how late each Raft tick fired after its time (event loop busy)", registers: [own],
    percentiles: [0.5, 0.9, 0.99], maxAgeSeconds: 60, ageBuckets: 6,
    collect() {
      for (const s of node.drainTickLags()) this.observe(s);
    },
  });
  const appends = new Counter({ name: "resonetics_appends_total", help: "POST /v1/records answers by result", labelNames: ["result"] as const, registers: [own] });
  const appendSeconds = new Histogram({
    name: "resonetics_append_seconds", help: "time from request to commit+apply", registers: [own],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  });
  // One registry to scrape: the process's metrics and this node's, all labelled with its node_id.
  const registry = Registry.merge([processMetrics(), own]);
  registry.setDefaultLabels({ node_id: node.nodeId });
  return { registry, appends, appendSeconds };
}
