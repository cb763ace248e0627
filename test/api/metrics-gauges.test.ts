// src/api/metrics.ts, in-process against a NodeInfo whose every figure is a distinct number: each
// gauge reports its own figure (not a neighbour's, not a constant), sampled at scrape time, with the
// node_id label; the 0/1 gauges follow the node; the tick-lag summary observes what the node
// drained; the append counter and histogram are there for the routes to use.
import type { NodeFigures, NodeInfo, NodeStatus, Readiness } from "../../src/node/ports";
import { createMetrics } from "../../src/api/metrics";

interface Knobs {
  term: number;
  leader: boolean;
  halted: string | null;
  ready: boolean;
  behind: number;
  figures: NodeFigures;
  lags: number[];
}

function fakeNode(k: Knobs): NodeInfo {
  return {
    nodeId: "n-metrics",
    clusterId: "c",
    status: () => ({ halted: k.halted } as NodeStatus),
    readiness: (): Readiness => ({ ready: k.ready, reasons: [], behind: k.behind }),
    currentTerm: () => k.term,
    isLeader: () => k.leader,
    config: () => ({ v: 1, voters: [], learners: [] }),
    figures: () => k.figures,
    drainTickLags: () => k.lags.splice(0),
    tickLateMs: () => 0,
    tickDueInMs: () => Number.POSITIVE_INFINITY,
    onApplied: () => () => undefined,
  };
}

/** `name{labels} value` lines of the text format, by name (labels other than node_id kept in the key). */
function values(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$/.exec(line);
    if (m === null) throw new Error(`unparsed line ${line}`);
    const labels = m[2].split(",").filter((l) => l !== 'node_id="n-metrics"');
    if (!m[2].includes('node_id="n-metrics"')) throw new Error(`no node_id label on ${line}`);
    out.set(labels.length === 0 ? m[1] : `${m[1]}{${labels.join(",")}}`, Number(m[3]));
  }
  return out;
}

const knobs = (): Knobs => ({
  term: 3, leader: true, halted: null, ready: true, behind: 5,
  figures: {
    commitIndex: 11, lastApplied: 13, uncommittedBytes: 17, pendingWrites: 19, writesRefused: 23,
    peerFramesDropped: 29, peerConnectionsRefused: 31, peerFramesRejected: 37, tickLag: { count: 2, p50: 0.001, p99: 0.002, max: 0.037 }, clockBehindLogSeconds: 41,
    walCheckpointsWorker: 43, walCheckpointsWriter: 47,
  },
  lags: [0.01, 0.02, 0.03],
});

describe("createMetrics", () => {
  test("each gauge reports its own figure, labelled with the node id", async () => {
    const k = knobs();
    const m = createMetrics(fakeNode(k));
    const v = values(await m.registry.metrics());
    expect({
      term: v.get("resonetics_term"), commit: v.get("resonetics_commit_index"), applied: v.get("resonetics_last_applied"),
      leader: v.get("resonetics_is_leader"), halted: v.get("resonetics_halted"), ready: v.get("resonetics_ready"),
      behind: v.get("resonetics_behind_entries"), uncommitted: v.get("resonetics_uncommitted_bytes"), pending: v.get("resonetics_pending_writes"),
      refused: v.get("resonetics_writes_refused_total"), dropped: v.get("resonetics_peer_frames_dropped_total"),
      peerRefused: v.get("resonetics_peer_connections_refused_total"), peerRejected: v.get("resonetics_peer_frames_rejected_total"), lagMax: v.get("resonetics_tick_lag_max_seconds"),
      clock: v.get("resonetics_clock_behind_log_seconds"),
      walWorker: v.get("resonetics_wal_checkpoints_worker_total"), walWriter: v.get("resonetics_wal_checkpoints_writer_total"),
    }).toEqual({
      term: 3, commit: 11, applied: 13, leader: 1, halted: 0, ready: 1, behind: 5, uncommitted: 17, pending: 19,
      refused: 23, dropped: 29, peerRefused: 31, peerRejected: 37, lagMax: 0.037, clock: 41, walWorker: 43, walWriter: 47,
    });
  });

  test("sampled at scrape time: a follower, halted, not ready reads 0, 1, 0 on the next scrape", async () => {
    const k = knobs();
    const m = createMetrics(fakeNode(k));
    await m.registry.metrics();
    k.leader = false;
    k.halted = "verification failed at 7";
    k.ready = false;
    k.term = 4;
    const v = values(await m.registry.metrics());
    expect([v.get("resonetics_is_leader"), v.get("resonetics_halted"), v.get("resonetics_ready"), v.get("resonetics_term")]).toEqual([0, 1, 0, 4]);
  });

  test("the tick-lag summary observes the drained lags: count, sum and the quantiles", async () => {
    const k = knobs();
    const m = createMetrics(fakeNode(k));
    const v = values(await m.registry.metrics());
    expect(v.get("resonetics_tick_lag_seconds_count")).toBe(3);
    expect(v.get("resonetics_tick_lag_seconds_sum")).toBeCloseTo(0.06, 10);
    expect(v.get('resonetics_tick_lag_seconds{quantile="0.5"}')).toBeCloseTo(0.02, 10);
    const quantiles = [...v.keys()].filter((key) => key.startsWith("resonetics_tick_lag_seconds{")).map((key) => /quantile="([^"]+)"/.exec(key)?.[1]);
    expect(quantiles).toEqual(["0.5", "0.9", "0.99"]);
    expect(k.lags).toEqual([]); // drained, so the next scrape adds only new ones
    k.lags.push(0.5);
    expect(values(await m.registry.metrics()).get("resonetics_tick_lag_seconds_count")).toBe(4);
  });

  test("the append counter counts by result; the histogram has the published buckets", async () => {
    const m = createMetrics(fakeNode(knobs()));
    m.appends.inc({ result: "created" });
    m.appends.inc({ result: "created" });
    m.appends.inc({ result: "duplicate" });
    m.appendSeconds.observe(0.003);
    const v = values(await m.registry.metrics());
    expect([v.get('resonetics_appends_total{result="created"}'), v.get('resonetics_appends_total{result="duplicate"}')]).toEqual([2, 1]);
    const buckets = [...v.keys()].filter((key) => key.startsWith("resonetics_append_seconds_bucket")).map((key) => /le="([^"]+)"/.exec(key)?.[1]);
    expect(buckets).toEqual(["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"]);
    expect(v.get('resonetics_append_seconds_bucket{le="0.0025"}')).toBe(0);
    expect(v.get('resonetics_append_seconds_bucket{le="0.005"}')).toBe(1);
    expect(m.registry.contentType).toMatch(/^text\/plain/);
  });

  test("every resonetics metric has a HELP line and a TYPE (gauge, summary, counter, histogram)", async () => {
    const text = await createMetrics(fakeNode(knobs())).registry.metrics();
    const help = new Map([...text.matchAll(/^# HELP (resonetics_\S+) (.*)$/gm)].map((m) => [m[1], m[2]]));
    const type = new Map([...text.matchAll(/^# TYPE (resonetics_\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect([...type.keys()].sort()).toEqual([...help.keys()].sort());
    expect(help.size).toBe(20);
    for (const [name, h] of help) expect({ name, empty: h.trim() === "" }).toEqual({ name, empty: false });
    expect([type.get("resonetics_term"), type.get("resonetics_tick_lag_seconds"), type.get("resonetics_appends_total"), type.get("resonetics_append_seconds")]).toEqual(["gauge", "summary", "counter", "histogram"]);
  });

  test("process metrics are collected too (collectDefaultMetrics), in the same registry", async () => {
    const v = values(await createMetrics(fakeNode(knobs())).registry.metrics());
    expect(v.has("process_cpu_user_seconds_total")).toBe(true);
  });
});
