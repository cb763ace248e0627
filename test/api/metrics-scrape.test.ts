// Issue 8, "most of /metrics never exercised": GET /metrics of a real single-node `resonetics serve`,
// parsed as Prometheus text (not prefix-matched): every series carries node_id, every metric
// src/api/metrics.ts defines is there with a value that matches the node (commit_index = the last
// acknowledged index = /v1/status, appends counted by result, is_leader 1, halted 0), and the tick-lag
// and backpressure series of issue 9 (contract: resonetics_tick_lag_seconds quantiles 0.5/0.9/0.99 +
// _sum/_count, resonetics_tick_lag_max_seconds, uncommitted bytes, pending and refused writes).
import { isAppendAck, postRecord } from "../support/ledger-client";
import { HttpResult, Server, cleanupAll, getJson, http, makeTempDir, startServer, withFailureContext } from "../support/server";

/** Records appended before the scrape: a count no other source of appends could produce by accident. */
const CREATED = 7;

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Prometheus text format 0.0.4: `name{a="x",b="y"} value [timestamp]`; # lines are HELP/TYPE. */
function parseProm(text: string): { samples: Sample[]; types: Map<string, string>; bad: string[] } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const bad: string[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t !== null) {
      types.set(t[1], t[2]);
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (m === null) {
      bad.push(line);
      continue;
    }
    const labels: Record<string, string> = {};
    const body = m[2] ?? "";
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
    let consumed = 0;
    for (let l = re.exec(body); l !== null; l = re.exec(body)) {
      labels[l[1]] = l[2];
      consumed += l[0].length;
    }
    if (consumed !== body.length) bad.push(line);
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") bad.push(line);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types, bad };
}

let dir = "";
let server: Server | undefined;
let nodeId = "";
let lastIndex = 0;
let scrape: { samples: Sample[]; types: Map<string, string>; bad: string[] } = { samples: [], types: new Map(), bad: [] };
let scrapeAnswer: HttpResult | undefined;
let status: { node_id: string; term: number; commit_index: number; last_applied: number } | undefined;

const context = (): string => `npx jest test/api/metrics-scrape.test.ts; data dir ${dir}\n${server ? server.output() : "(no server)"}\n--- /metrics ---\n${scrapeAnswer?.text.slice(0, 6000) ?? "(not scraped)"}`;
const guarded = (fn: () => Promise<void>) => (): Promise<void> => withFailureContext(context, dir === "" ? [] : [dir], fn);

/** The one sample of `name` whose labels include `match`; fails when there is none or more than one. */
function one(name: string, match: Record<string, string> = {}): Sample {
  const found = scrape.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`expected exactly one sample ${name}${JSON.stringify(match)}, found ${found.length}: ${JSON.stringify(found)}`);
  return found[0];
}

beforeAll(guarded(async () => {
  dir = makeTempDir();
  // No checkpoint can be proposed during the test (each would be an entry): the log is exactly what the test wrote.
  server = await startServer(dir, { extraArgs: ["--checkpoint-every", "1000000", "--checkpoint-interval-ms", "3600000"] });
  const s = server;
  for (let i = 0; i < CREATED; i++) {
    const r = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: "metrics", data: { name: `n${i}`, value: i } }, i === 0 ? "metrics-key-0" : undefined);
    if (r.status !== 201 || !isAppendAck(r.json)) throw new Error(`append ${i} → ${r.status} ${r.text}`);
    lastIndex = r.json.index;
  }
  // A retried key (200, "duplicate") and the same key with another body (409, "idempotency_conflict").
  const dup = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: "metrics", data: { name: "n0", value: 0 } }, "metrics-key-0");
  if (dup.status !== 200) throw new Error(`replay → ${dup.status} ${dup.text}`);
  const conflict = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: "metrics", data: { name: "other", value: 1 } }, "metrics-key-0");
  if (conflict.status !== 409) throw new Error(`conflict → ${conflict.status} ${conflict.text}`);
  const st = await getJson<{ node_id: string; term: number; commit_index: number; last_applied: number }>(s.baseUrl, "/v1/status");
  status = st;
  nodeId = st.node_id;
  scrapeAnswer = await http(s.baseUrl, "GET", "/metrics");
  scrape = parseProm(scrapeAnswer.text);
}), 90_000);

afterAll(async () => {
  await server?.stop();
  await cleanupAll();
}, 60_000);

describe("GET /metrics", () => {
  test("answers 200 Prometheus text; every line parses and every series carries node_id of this node", guarded(async () => {
    expect(scrapeAnswer?.status).toBe(200);
    expect(scrapeAnswer?.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(scrape.bad).toEqual([]);
    expect(scrape.samples.length).toBeGreaterThan(20);
    const without = scrape.samples.filter((s) => s.labels.node_id !== nodeId).map((s) => s.name);
    expect(without).toEqual([]);
  }));

  test("every metric src/api/metrics.ts defines is there with its type", guarded(async () => {
    const expected: Record<string, string> = {
      resonetics_term: "gauge",
      resonetics_commit_index: "gauge",
      resonetics_last_applied: "gauge",
      resonetics_is_leader: "gauge",
      resonetics_halted: "gauge",
      resonetics_peer_frames_dropped_total: "gauge",
      resonetics_peer_connections_refused_total: "gauge",
      resonetics_peer_frames_rejected_total: "gauge",
      resonetics_appends_total: "counter",
      resonetics_append_seconds: "histogram",
    };
    const types = Object.fromEntries(Object.keys(expected).map((n) => [n, scrape.types.get(n)]));
    expect(types).toEqual(expected);
    // Process metrics (collectDefaultMetrics) are there too, with the same label.
    expect(one("process_cpu_user_seconds_total").value).toBeGreaterThan(0);
    expect(one("nodejs_heap_size_used_bytes").value).toBeGreaterThan(0);
  }));

  test("node state: term and commit index equal /v1/status, commit_index = last_applied = the last acknowledged index, is_leader 1, halted 0, no peer trouble", guarded(async () => {
    const st = status!;
    expect(st.commit_index).toBe(lastIndex);
    expect({
      term: one("resonetics_term").value,
      commit: one("resonetics_commit_index").value,
      applied: one("resonetics_last_applied").value,
      leader: one("resonetics_is_leader").value,
      halted: one("resonetics_halted").value,
      dropped: one("resonetics_peer_frames_dropped_total").value,
      refused: one("resonetics_peer_connections_refused_total").value,
      rejected: one("resonetics_peer_frames_rejected_total").value,
    }).toEqual({ term: st.term, commit: lastIndex, applied: lastIndex, leader: 1, halted: 0, dropped: 0, refused: 0, rejected: 0 });
    expect(st.term).toBeGreaterThanOrEqual(1);
  }));

  test(`appends are counted by result (created ${CREATED}, duplicate 1, idempotency_conflict 1) and each one timed`, guarded(async () => {
    expect({
      created: one("resonetics_appends_total", { result: "created" }).value,
      duplicate: one("resonetics_appends_total", { result: "duplicate" }).value,
      conflict: one("resonetics_appends_total", { result: "idempotency_conflict" }).value,
    }).toEqual({ created: CREATED, duplicate: 1, conflict: 1 });
    const count = one("resonetics_append_seconds_count").value;
    expect(count).toBe(CREATED + 2);
    const inf = one("resonetics_append_seconds_bucket", { le: "+Inf" }).value;
    expect(inf).toBe(count);
    const sum = one("resonetics_append_seconds_sum").value;
    expect(sum).toBeGreaterThan(0);
    // Buckets are cumulative: never decreasing with le.
    const buckets = scrape.samples.filter((s) => s.name === "resonetics_append_seconds_bucket").map((s) => ({ le: Number(s.labels.le === "+Inf" ? Infinity : s.labels.le), v: s.value }));
    buckets.sort((a, b) => a.le - b.le);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i].v).toBeGreaterThanOrEqual(buckets[i - 1].v);
  }));

  test("issue 9: tick lag (Summary 0.5/0.9/0.99 + _sum/_count, max gauge) and the backpressure series (all zero when idle)", guarded(async () => {
    // The node ticks every 50 ms from its start, so the scrape saw ticks; a lag is never negative.
    const quantiles = ["0.5", "0.9", "0.99"].map((q) => one("resonetics_tick_lag_seconds", { quantile: q }).value);
    expect(scrape.types.get("resonetics_tick_lag_seconds")).toBe("summary");
    for (const v of quantiles) expect(v).toBeGreaterThanOrEqual(0);
    expect(quantiles[0]).toBeLessThanOrEqual(quantiles[1]);
    expect(quantiles[1]).toBeLessThanOrEqual(quantiles[2]);
    expect(one("resonetics_tick_lag_seconds_count").value).toBeGreaterThan(0);
    expect(one("resonetics_tick_lag_seconds_sum").value).toBeGreaterThanOrEqual(0);
    // Read at another moment than the Summary (a tick may land between the two), so only its sign is checked.
    expect(one("resonetics_tick_lag_max_seconds").value).toBeGreaterThanOrEqual(0);
    expect({
      uncommitted: one("resonetics_uncommitted_bytes").value,
      pending: one("resonetics_pending_writes").value,
      refused: one("resonetics_writes_refused_total").value,
    }).toEqual({ uncommitted: 0, pending: 0, refused: 0 });
  }));
});
