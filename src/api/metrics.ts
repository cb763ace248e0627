/** Prometheus metrics (GET /metrics): node state sampled at scrape time, plus request counters. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { RaftLedgerNode } from "../node/raft-node";

export interface Metrics {
  readonly registry: Registry;
  readonly appends: Counter<"result">;
  readonly appendSeconds: Histogram;
}

export function createMetrics(node: RaftLedgerNode): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const labels = { node_id: node.nodeId };
  registry.setDefaultLabels(labels);
  const sample = <T extends string>(name: string, help: string, read: (g: Gauge<T>) => void): void => {
    new Gauge<T>({ name, help, registers: [registry], collect() { read(this); } });
  };
  sample("resonetics_term", "current Raft term", (g) => g.set(node.currentTerm()));
  sample("resonetics_commit_index", "durable commit index", (g) => g.set(node.store.hardState().commitIndex));
  sample("resonetics_last_applied", "last index applied to the state machine", (g) => g.set(node.store.hardState().lastApplied));
  sample("resonetics_is_leader", "1 when this node is the leader", (g) => g.set(node.isLeader() ? 1 : 0));
  sample("resonetics_halted", "1 when the node halted on a verification failure", (g) => g.set(node.status().halted === null ? 0 : 1));
  sample("resonetics_peer_frames_dropped_total", "frames dropped because a peer's send queue was full", (g) => g.set(node.peers.dropped()));
  sample("resonetics_peer_connections_refused_total", "inbound peer connections refused", (g) => g.set(node.peers.refused));
  const appends = new Counter({ name: "resonetics_appends_total", help: "POST /v1/records answers by result", labelNames: ["result"] as const, registers: [registry] });
  const appendSeconds = new Histogram({
    name: "resonetics_append_seconds", help: "time from request to commit+apply", registers: [registry],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  });
  return { registry, appends, appendSeconds };
}
