// The HTTP API in-process (test/support/in-process-app.ts: a real single-voter node on a temp data
// dir, the app wired as `serve` wires it): the v1 routes of DESIGN.md "REST API" answer with the
// shapes clients rely on, the exact status and error code, and the headers the contract names
// (Cache-Control, X-Resonetics-Consistency, Retry-After, Allow, CORS); bodies are read strictly
// (src/api/body.ts); request logs carry method, url and status and never a token.
import { verifyInclusion, verifyConsistency, leafHash, merkleRoot, hexToBuf, entryHash, genesisHash, KIND_CODES, subjectHead, SUBJECT_HEAD_ZERO } from "../support/independent";
import { rawHttp } from "../support/ledger-client";
import { HttpResult, http, pollUntil } from "../support/server";
import * as net from "node:net";
import * as path from "node:path";
import { assert } from "../../src/util/assert";
import Database from "better-sqlite3";
import express from "express";
import { DB_FILE } from "../../src/node/data-dir";
import { createApp, listen } from "../../src/api/server";
import type { RouteDeps } from "../../src/api/routes";
import { InProcessApp, capturingLogger, sharedInProcessApp } from "../support/in-process-app";

jest.setTimeout(60_000);

/** Small, so the body limit's exact edge is cheap to reach; every record below fits in it. */
const BODY_LIMIT = 1024;
const captured = capturingLogger();
let app: InProcessApp;
const context = (): string => `npx jest test/api/app.test.ts; data dir ${app?.dir ?? "(none)"}`;

// One node for the file, a new app over it per test: see sharedInProcessApp.
let deps: RouteDeps | undefined;
const shared = sharedInProcessApp({ bodyLimitBytes: BODY_LIMIT, logger: captured.logger, wrap: (d) => (deps = d) });
beforeEach(async () => {
  app = await shared.open();
});
afterEach(async () => {
  await app?.close();
});
afterAll(async () => {
  await shared.close();
});

const get = (p: string, headers: Record<string, string> = {}): Promise<HttpResult> => http(app.baseUrl, "GET", p, { headers });
/** POST with the admin token, another token, or (null) none. */
const post = (p: string, json: unknown, headers: Record<string, string> = {}, token: string | null = app.adminToken): Promise<HttpResult> =>
  http(app.baseUrl, "POST", p, { json, headers, ...(token === null ? {} : { token }) });
const rec = (subject: string, value: number): { type: string; subject: string; data: { name: string; value: number } } => ({ type: "policy.set", subject, data: { name: "n", value } });
const errorOf = (r: HttpResult): { status: number; error: unknown; message: unknown } => {
  const j = r.json as { error?: unknown; message?: unknown } | undefined;
  return { status: r.status, error: j?.error, message: j?.message };
};
interface Ack { index: number; term: number; hash: string }
interface View { index: number; term: number; kind: string; hash: string; prev_hash: string; payload_b64: string; record?: { subject: string; data: unknown } }

async function append(subject: string, value: number, headers: Record<string, string> = {}): Promise<Ack> {
  const r = await post("/v1/records", rec(subject, value), headers);
  if (r.status !== 201) throw new Error(`append → ${r.status} ${r.text} (${context()})`);
  return r.json as Ack;
}

/** The independent hash of an entry view: it must chain from prev_hash to hash. */
const viewHash = (v: View): string =>
  entryHash(v.index, v.term, KIND_CODES[v.kind], hexToBuf(v.prev_hash), Buffer.from(v.payload_b64, "base64")).toString("hex");

describe("health, readiness, common headers", () => {
  test("/health is 200 {status: ok} with nosniff and no-store, and no X-Powered-By or ETag", async () => {
    const r = await get("/health");
    expect({ status: r.status, json: r.json }).toEqual({ status: 200, json: { status: "ok" } });
    expect(r.headers.get("x-content-type-options")).toBe("nosniff");
    expect(r.headers.get("cache-control")).toBe("no-store");
    expect(r.headers.get("x-powered-by")).toBeNull();
    expect(r.headers.get("etag")).toBeNull();
  });

  test("/ready of a leader with its NOOP applied is 200, ready, no reasons, behind 0, with the status fields", async () => {
    const r = await get("/ready");
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ ready: true, reasons: [], behind: 0, node_id: app.node.nodeId, role: "leader", cluster: app.clusterId });
  });

  test("an unknown path is a JSON 404; a known path with another method is 405 with Allow", async () => {
    const nf = await get("/nope");
    expect(errorOf(nf)).toEqual({ status: 404, error: "not_found", message: "no such route" });
    expect(nf.headers.get("x-content-type-options")).toBe("nosniff");
    const h = await http(app.baseUrl, "POST", "/health");
    expect(errorOf(h)).toEqual({ status: 405, error: "method_not_allowed", message: "this route takes GET, HEAD" });
    expect(h.headers.get("allow")).toBe("GET, HEAD");
    const recs = await http(app.baseUrl, "DELETE", "/v1/records");
    expect(recs.status).toBe(405);
    expect(recs.headers.get("allow")).toBe("GET, HEAD, POST");
    const member = await http(app.baseUrl, "GET", "/v1/admin/members/n9");
    expect(member.headers.get("allow")).toBe("DELETE");
    const prune = await http(app.baseUrl, "PUT", "/v1/admin/prune");
    expect([prune.status, prune.headers.get("allow")]).toEqual([405, "POST"]);
  });

  test("HEAD on a GET route answers its status and headers without a body", async () => {
    const r = await http(app.baseUrl, "HEAD", "/v1/status");
    expect(r.status).toBe(200);
    expect(r.text).toBe("");
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  });

  test("GET /v1/stream without an upgrade is a 400 that says it takes a WebSocket", async () => {
    expect(errorOf(await get("/v1/stream"))).toEqual({
      status: 400, error: "bad_request", message: "WS /v1/stream takes a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
    });
  });

  test("/v1/status and /v1/admin/config are the node's own", async () => {
    expect((await get("/v1/status")).json).toEqual(JSON.parse(JSON.stringify(app.node.status())));
    expect((await get("/v1/admin/config")).json).toEqual(JSON.parse(JSON.stringify(app.node.config())));
  });
});

describe("the server", () => {
  test("listen refuses a port already taken (the start is refused, not a silent second server)", async () => {
    await expect(listen(express(), "127.0.0.1", app.port)).rejects.toMatchObject({ code: "EADDRINUSE" });
  });

  test("the query string is parsed strictly: bad percent-encoding is a 400 naming the parameter", async () => {
    expect(errorOf(await get("/v1/records?from=%ZZ"))).toEqual({ status: 400, error: "bad_request", message: 'query parameter "from" is not valid percent-encoded UTF-8' });
    expect(errorOf(await get("/v1/records?from=1&from=2")).message).toBe('from must be a whole number >= 1, got ["1","2"]');
  });

  test("GET /metrics is Prometheus text with the node's figures, and counts appends by result", async () => {
    const scrape = async (): Promise<string> => {
      const r = await get("/metrics");
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
      return r.text;
    };
    const count = (text: string, result: string): number => {
      const line = text.split("\n").find((l) => l.startsWith(`resonetics_appends_total{result="${result}"`));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
    };
    const before = await scrape();
    const key = "app-metrics-key";
    expect((await post("/v1/records", rec("app-metrics", 1), { "Idempotency-Key": key })).status).toBe(201);
    expect((await post("/v1/records", rec("app-metrics", 1), { "Idempotency-Key": key })).status).toBe(200);
    expect((await post("/v1/records", rec("app-metrics", 2), { "Idempotency-Key": key })).status).toBe(409);
    const after = await scrape();
    expect(["created", "duplicate", "idempotency_conflict"].map((r) => count(after, r) - count(before, r))).toEqual([1, 1, 1]);
    expect(after).toMatch(new RegExp(`^resonetics_is_leader\\{node_id="${app.node.nodeId}"\\} 1$`, "m"));
    expect(after).toMatch(new RegExp(`^resonetics_commit_index\\{node_id="${app.node.nodeId}"\\} ${app.node.figures().commitIndex}$`, "m"));
    expect(after).toMatch(/^resonetics_append_seconds_count\{[^}]*\} [1-9]/m);
  });
});

describe("malformed HTTP is answered in JSON, then closed", () => {
  test("a request line that does not parse is 400 bad_request", async () => {
    const r = await rawHttp(app.port, Buffer.from("GARBAGE\r\n\r\n"));
    expect(r?.status).toBe(400);
    expect(r?.json).toEqual({ error: "bad_request", message: "malformed HTTP request" });
    expect(r?.headers.get("connection")).toBe("close");
    expect(r?.headers.get("x-content-type-options")).toBe("nosniff");
    expect(r?.headers.get("cache-control")).toBe("no-store");
    expect(r?.headers.get("content-type")).toBe("application/json");
    expect(Number(r?.headers.get("content-length"))).toBe(r?.body.length);
  });

  test("headers larger than Node's limit are 431", async () => {
    const r = await rawHttp(app.port, Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`));
    expect(r?.status).toBe(431);
    expect(r?.json).toEqual({ error: "header_fields_too_large", message: "request headers are too large" });
  });
});

describe("POST /v1/records", () => {
  test("201 {index, term, hash} after commit; the entry reads back with that hash, chained and parsed", async () => {
    const ack = await append("app-a", 1);
    expect(Object.keys(ack).sort()).toEqual(["hash", "index", "term"]);
    const r = await get(`/v1/records/${ack.index}`);
    expect(r.status).toBe(200);
    const v = r.json as View;
    expect(v).toMatchObject({ index: ack.index, term: ack.term, kind: "record", hash: ack.hash });
    expect(v.record).toMatchObject({ type: "policy.set", subject: "app-a", data: { name: "n", value: 1 } });
    expect(viewHash(v)).toBe(v.hash);
    const prev = (await get(`/v1/records/${ack.index - 1}`)).json as View;
    expect(v.prev_hash).toBe(prev.hash);
  });

  test("an Idempotency-Key replay is 200 with the same ack; the same key with another body is 409", async () => {
    const key = "app-key-1";
    const first = await post("/v1/records", rec("app-idem", 1), { "Idempotency-Key": key });
    expect(first.status).toBe(201);
    const again = await post("/v1/records", rec("app-idem", 1), { "Idempotency-Key": key });
    expect(again.status).toBe(200);
    expect(again.json).toEqual(first.json);
    const other = await post("/v1/records", rec("app-idem", 2), { "Idempotency-Key": key });
    expect(other.status).toBe(409);
    expect((other.json as { error: string }).error).toBe("idempotency_conflict");
  });

  test("Idempotency-Key: 1..200 visible ASCII; 200 passes, 201 or a space or non-ASCII is a 400", async () => {
    const msg = "Idempotency-Key must be 1..200 visible ASCII characters";
    expect((await post("/v1/records", rec("app-k", 1), { "Idempotency-Key": "k".repeat(200) })).status).toBe(201);
    expect((await post("/v1/records", rec("app-k", 2), { "Idempotency-Key": "!~" })).status).toBe(201);
    for (const bad of ["k".repeat(201), "a b"]) {
      const r = await post("/v1/records", rec("app-k", 3), { "Idempotency-Key": bad });
      expect(errorOf(r)).toEqual({ status: 400, error: "bad_request", message: msg });
    }
    // fetch refuses to send these: raw bytes (a tab inside, UTF-8 é and 0x80 read as latin1 by Node)
    const body = JSON.stringify(rec("app-k", 3));
    for (const bad of [Buffer.from("a\tb"), Buffer.from("é", "utf8"), Buffer.from([0x61, 0x80])]) {
      const req = Buffer.concat([
        Buffer.from(`POST /v1/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${app.adminToken}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nIdempotency-Key: `),
        bad, Buffer.from(`\r\n\r\n${body}`),
      ]);
      const r = await rawHttp(app.port, req);
      expect({ status: r?.status, json: r?.json }).toEqual({ status: 400, json: { error: "bad_request", message: msg } });
    }
  });

  test("both an Idempotency-Key and client_id/request_id is a 400; client_id/request_id alone dedups", async () => {
    const body = { ...rec("app-client", 1), client_id: "c1", request_id: "r1" };
    expect(errorOf(await post("/v1/records", body, { "Idempotency-Key": "x" }))).toEqual({
      status: 400, error: "bad_request", message: "give either an Idempotency-Key header or client_id/request_id, not both",
    });
    const a = await post("/v1/records", body);
    const b = await post("/v1/records", body);
    expect([a.status, b.status]).toEqual([201, 200]);
    expect(b.json).toEqual(a.json);
  });

  test("client_id:request_id is one key: a client_id with ':' is refused (else a:b/c and a/b:c were one key), and the pair is the header of that key", async () => {
    const before = app.node.reader.lastApplied();
    for (const client_id of ["a:b", ":", "x:"]) {
      const r = await post("/v1/records", { ...rec("app-colon", 1), client_id, request_id: "c" });
      expect({ client_id, ...errorOf(r) }).toMatchObject({ client_id, status: 400, error: "schema_violation" });
      expect((r.json as { path?: string }).path).toBe("body/client_id");
    }
    expect(app.node.reader.lastApplied()).toBe(before);
    // A ':' in request_id stays allowed: split at the first ':', the key still names one pair.
    const body = { ...rec("app-colon", 2), client_id: "a", request_id: "b:c" };
    const first = await post("/v1/records", body);
    expect(first.status).toBe(201);
    // The same key through the header, with the same request: the original record.
    const again = await post("/v1/records", rec("app-colon", 2), { "Idempotency-Key": "a:b:c" });
    expect({ status: again.status, json: again.json }).toEqual({ status: 200, json: first.json });
  });

  test("401 without a token, 403 with a wrong one of the right length, nothing written", async () => {
    const before = app.node.reader.lastApplied();
    const none = await post("/v1/records", rec("app-auth", 1), {}, null);
    expect(errorOf(none).error).toBe("unauthorized");
    expect(none.status).toBe(401);
    const wrong = await post("/v1/records", rec("app-auth", 1), {}, "x".repeat(app.adminToken.length));
    expect(errorOf(wrong)).toEqual({ status: 403, error: "forbidden", message: "token is not valid for this ledger" });
    const audit = await post("/v1/records", rec("app-auth", 1), {}, app.auditToken);
    expect(audit.status).toBe(403);
    expect(app.node.reader.lastApplied()).toBe(before);
  });

  test("a schema violation is a 400 with its path; an unknown type is unknown_record_type", async () => {
    const r = await post("/v1/records", { type: "policy.set", subject: "s", data: { value: 1 } });
    expect(r.status).toBe(400);
    expect((r.json as { error: string }).error).toBe("schema_violation");
    const u = await post("/v1/records", { type: "no.such", subject: "s", data: {} });
    expect([u.status, (u.json as { error: string }).error]).toEqual([400, "unknown_record_type"]);
  });
});

describe("request bodies (src/api/body.ts)", () => {
  const send = (body: string | Uint8Array, headers: Record<string, string>): Promise<HttpResult> =>
    http(app.baseUrl, "POST", "/v1/records", { body, headers, token: app.adminToken });
  const good = JSON.stringify(rec("app-body", 1));

  test("Content-Type must be application/json (charset utf-8 optional, any case, quoted or not)", async () => {
    for (const ct of ["application/json", "Application/JSON", "application/json; charset=utf-8", "application/json;charset=\"UTF-8\"", " application/json ", "application/json ; charset = utf-8"]) {
      const r = await send(good, { "content-type": ct });
      expect({ ct, status: r.status }).toEqual({ ct, status: 201 });
    }
  });

  test("another media type is 415 and the connection is closed; another charset says so", async () => {
    const text = await send(good, { "content-type": "text/plain" });
    expect(errorOf(text)).toEqual({ status: 415, error: "unsupported_media_type", message: 'Content-Type must be application/json, got "text/plain"' });
    expect(text.headers.get("connection")).toBe("close");
    const none = await rawHttp(app.port, Buffer.from(`POST /v1/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${app.adminToken}\r\nContent-Length: ${good.length}\r\n\r\n${good}`));
    expect(none?.status).toBe(415);
    expect((none?.json as { message: string }).message).toBe("Content-Type must be application/json, got null");
    const latin = await send(good, { "content-type": "application/json; charset=latin1" });
    expect(errorOf(latin)).toEqual({ status: 415, error: "unsupported_media_type", message: 'the only charset is utf-8, got "application/json; charset=latin1"' });
    const suffix = await send(good, { "content-type": "application/jsonx" });
    expect((suffix.json as { message: string }).message).toBe('Content-Type must be application/json, got "application/jsonx"');
    const prefix = await send(good, { "content-type": "xapplication/json" });
    expect(prefix.status).toBe(415);
  });

  test("Content-Encoding other than identity is 415; identity (any case, spaces) is read", async () => {
    const gz = await send(good, { "content-type": "application/json", "content-encoding": "gzip" });
    expect(errorOf(gz)).toEqual({ status: 415, error: "unsupported_media_type", message: 'Content-Encoding "gzip" is not accepted; send the body uncompressed' });
    expect(gz.headers.get("connection")).toBe("close");
    expect((await send(good, { "content-type": "application/json", "content-encoding": " Identity " })).status).toBe(201);
  });

  test("the body limit: exactly the limit is read, one byte more is 413 (by Content-Length, and by the bytes sent)", async () => {
    const padded = (n: number): string => {
      const base = rec("app-limit", 1);
      const pad = n - JSON.stringify({ ...base, data: { ...base.data, reason: "" } }).length;
      return JSON.stringify({ ...base, data: { ...base.data, reason: "r".repeat(pad) } });
    };
    expect(padded(BODY_LIMIT).length).toBe(BODY_LIMIT);
    expect((await send(padded(BODY_LIMIT), { "content-type": "application/json" })).status).toBe(201);
    const over = await send(padded(BODY_LIMIT + 1), { "content-type": "application/json" });
    expect(errorOf(over)).toEqual({ status: 413, error: "payload_too_large", message: `request body of ${BODY_LIMIT + 1} bytes exceeds the limit of ${BODY_LIMIT} bytes` });
    expect(over.headers.get("connection")).toBe("close");
    // chunked: no Content-Length, so the reader counts; the limit itself passes, one more does not
    const chunked = (body: string): Buffer => {
      const half = Math.floor(body.length / 2);
      const chunk = (s: string): string => `${s.length.toString(16)}\r\n${s}\r\n`;
      return Buffer.from(`POST /v1/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${app.adminToken}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(body.slice(0, half))}${chunk(body.slice(half))}0\r\n\r\n`);
    };
    expect((await rawHttp(app.port, chunked(padded(BODY_LIMIT))))?.status).toBe(201);
    const big = await rawHttp(app.port, chunked(padded(BODY_LIMIT + 1)));
    expect(big?.status).toBe(413);
    expect(big?.json).toEqual({ error: "payload_too_large", message: `request body exceeds the limit of ${BODY_LIMIT} bytes` });
    expect(big?.headers.get("connection")).toBe("close");
  });

  test("a body that is not I-JSON is a 400 and writes nothing", async () => {
    const before = app.node.reader.lastApplied();
    const dup = await send('{"type":"policy.set","type":"policy.set","subject":"s","data":{"name":"n","value":1}}', { "content-type": "application/json" });
    expect(dup.status).toBe(400);
    const broken = await send('{"type":', { "content-type": "application/json" });
    expect(broken.status).toBe(400);
    expect(errorOf(broken).error).toBe("invalid_json");
    const empty = await send("", { "content-type": "application/json" });
    expect(empty.status).toBe(400);
    expect(app.node.reader.lastApplied()).toBe(before);
  });
});

describe("reads", () => {
  let first = 0;
  let last = 0;
  // The records these tests read, appended once, before the first of them that runs.
  let appended: Promise<void> | undefined;
  beforeEach(async () => {
    await (appended ??= (async (): Promise<void> => {
      first = (await append("app-page", 0)).index;
      for (let i = 1; i < 60; i++) last = (await append(i % 2 === 0 ? "app-page" : "app-other", i)).index;
    })());
  });

  test("GET /records/:index is immutable and linearizable by default; ?consistency=local says local", async () => {
    const r = await get(`/v1/records/${first}`);
    expect(r.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(r.headers.get("x-resonetics-consistency")).toBe("linearizable");
    expect((await get(`/v1/records/${first}?consistency=linearizable`)).headers.get("x-resonetics-consistency")).toBe("linearizable");
    const local = await get(`/v1/records/${first}?consistency=local`);
    expect([local.status, local.headers.get("x-resonetics-consistency")]).toEqual([200, "local"]);
    expect(local.json).toEqual(r.json);
    expect(errorOf(await get(`/v1/records/${first}?consistency=eventual`))).toEqual({ status: 400, error: "bad_request", message: "consistency must be local or linearizable" });
  });

  test("GET /records/:index: 0, a non-number and past the commit index are refused", async () => {
    expect((await get("/v1/records/0")).status).toBe(400);
    expect((await get("/v1/records/abc")).status).toBe(400);
    const past = await get(`/v1/records/${app.node.reader.lastApplied() + 1}`);
    expect([past.status, errorOf(past).error]).toEqual([404, "not_found"]);
    expect(past.headers.get("cache-control")).toBe("no-store");
  });

  test("GET /records pages: in order, each chained to the one before, next = last + 1 until the end", async () => {
    const applied = app.node.reader.lastApplied();
    const p1 = (await get("/v1/records?from=1&limit=7")).json as { entries: View[]; next: number | null };
    expect(p1.entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(p1.next).toBe(8);
    expect(p1.entries[0].prev_hash).toBe(genesisHash(app.clusterId).toString("hex"));
    for (const e of p1.entries) expect(viewHash(e)).toBe(e.hash);
    for (let i = 1; i < p1.entries.length; i++) expect(p1.entries[i].prev_hash).toBe(p1.entries[i - 1].hash);
    const p2 = (await get("/v1/records?from=8&limit=2")).json as { entries: View[]; next: number | null };
    expect(p2.entries[0].prev_hash).toBe(p1.entries[6].hash);
    const end = (await get(`/v1/records?from=${applied - 1}&limit=2`)).json as { entries: View[]; next: number | null };
    expect([end.entries.map((e) => e.index), end.next]).toEqual([[applied - 1, applied], null]);
    const shortEnd = (await get(`/v1/records?from=${applied}&limit=5`)).json as { entries: View[]; next: number | null };
    expect([shortEnd.entries.map((e) => e.index), shortEnd.next]).toEqual([[applied], null]);
    const beyond = (await get(`/v1/records?from=${applied + 1}`)).json as { entries: View[]; next: number | null };
    expect(beyond).toEqual({ entries: [], next: null });
    const dflt = (await get("/v1/records")).json as { entries: View[]; next: number | null };
    expect(dflt.entries.length).toBe(Math.min(100, applied));
    expect(dflt.entries[0].index).toBe(1);
  });

  test("GET /records: a page longer than one slice (50) is whole and chained", async () => {
    const applied = app.node.reader.lastApplied();
    const page = (await get(`/v1/records?from=1&limit=${applied}`)).json as { entries: View[]; next: number | null };
    expect(page.entries.map((e) => e.index)).toEqual(Array.from({ length: applied }, (_, i) => i + 1));
    for (let i = 1; i < page.entries.length; i++) expect(page.entries[i].prev_hash).toBe(page.entries[i - 1].hash);
    expect(page.next).toBeNull();
    expect(errorOf(await get("/v1/records?limit=1001")).message).toBe("limit must be at most 1000");
    expect((await get("/v1/records?limit=1000")).status).toBe(200);
  });

  test("GET /records?subject=: only that subject's records; next while a page is full", async () => {
    const all = (await get("/v1/records?subject=app-page&limit=1000")).json as { entries: View[]; next: number | null };
    expect(all.entries).toHaveLength(30);
    expect(all.entries.every((e) => e.record?.subject === "app-page")).toBe(true);
    expect(all.entries[0].index).toBe(first);
    expect(all.next).toBeNull();
    for (const e of all.entries) expect(viewHash(e)).toBe(e.hash);
    const p = (await get("/v1/records?subject=app-page&limit=4")).json as { entries: View[]; next: number | null };
    expect(p.entries.map((e) => e.index)).toEqual(all.entries.slice(0, 4).map((e) => e.index));
    expect(p.next).toBe(p.entries[3].index + 1);
    const rest = (await get(`/v1/records?subject=app-page&from=${p.next as number}&limit=26`)).json as { entries: View[]; next: number | null };
    expect(rest.entries.map((e) => e.index)).toEqual(all.entries.slice(4).map((e) => e.index));
    expect(rest.next).toBe(last); // a full page: next is offered, and the page after it is empty
    expect((await get(`/v1/records?subject=app-page&from=${last}`)).json).toEqual({ entries: [], next: null });
    expect(errorOf(await get(`/v1/records?subject=${"s".repeat(201)}`)).status).toBe(400);
    expect(errorOf(await get("/v1/records?subject=a&subject=b")).message).toBe("subject must be given once, as a string");
  });

  test("subject history: heads chain from 32 zero bytes, a later page replays or takes head=, next pages on", async () => {
    const full = (await get("/v1/subjects/app-page/history?limit=500")).json as {
      subject: string; version: number; head: string; checkpoint: unknown; prev_subject_head: string; next: number | null;
      records: Array<{ version: number; subject_head: string; entry: View; inclusion: unknown }>;
    };
    expect(full).toMatchObject({ subject: "app-page", version: 30, checkpoint: null, prev_subject_head: SUBJECT_HEAD_ZERO.toString("hex"), next: null });
    let head: Buffer = SUBJECT_HEAD_ZERO;
    full.records.forEach((r, i) => {
      head = subjectHead(head, hexToBuf(r.entry.hash));
      expect({ version: r.version, subject_head: r.subject_head, inclusion: r.inclusion }).toEqual({ version: i + 1, subject_head: head.toString("hex"), inclusion: null });
    });
    expect(full.head).toBe(head.toString("hex"));
    const p1 = (await get("/v1/subjects/app-page/history?limit=3")).json as typeof full;
    expect(p1.records.map((r) => r.version)).toEqual([1, 2, 3]);
    expect(p1.next).toBe(full.records[2].entry.index + 1);
    const p2 = (await get(`/v1/subjects/app-page/history?limit=3&from=${p1.next as number}`)).json as typeof full;
    expect(p2.prev_subject_head).toBe(full.records[2].subject_head);
    expect(p2.records.map((r) => r.subject_head)).toEqual(full.records.slice(3, 6).map((r) => r.subject_head));
    const given = (await get(`/v1/subjects/app-page/history?limit=3&from=${p1.next as number}&head=${"ab".repeat(32)}`)).json as typeof full;
    expect(given.prev_subject_head).toBe("ab".repeat(32));
    expect(given.records[0].subject_head).toBe(subjectHead(hexToBuf("ab".repeat(32)), hexToBuf(full.records[3].entry.hash)).toString("hex"));
    const lastPage = (await get(`/v1/subjects/app-page/history?from=${full.records[29].entry.index}`)).json as typeof full;
    expect([lastPage.records.map((r) => r.version), lastPage.next, lastPage.prev_subject_head]).toEqual([[30], null, full.records[28].subject_head]);
    const after = (await get(`/v1/subjects/app-page/history?from=${last + 1}`)).json as typeof full;
    expect([after.records, after.next, after.prev_subject_head]).toEqual([[], null, full.head]);
  });

  test("subject history refuses: an unknown subject (404), a bad head (400), a limit over 500 (400)", async () => {
    expect(errorOf(await get("/v1/subjects/app-none/history"))).toEqual({ status: 404, error: "not_found", message: 'no records for subject "app-none"' });
    for (const h of ["AB".repeat(32), "ab".repeat(31), "zz".repeat(32)]) {
      expect(errorOf(await get(`/v1/subjects/app-page/history?head=${h}`))).toEqual({ status: 400, error: "bad_request", message: "head must be 64 lowercase hex digits" });
    }
    expect((await get("/v1/subjects/app-page/history?limit=500")).status).toBe(200);
    expect(errorOf(await get("/v1/subjects/app-page/history?limit=501")).message).toBe("limit must be at most 500");
  });

  test("GET /proofs/consistency needs from; a fixed to is immutable; the proof verifies independently", async () => {
    expect(errorOf(await get("/v1/proofs/consistency"))).toEqual({ status: 400, error: "bad_request", message: "from is required" });
    const applied = app.node.reader.lastApplied();
    const r = await get(`/v1/proofs/consistency?from=5&to=${applied}`);
    expect(r.status).toBe(200);
    expect(r.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    const p = r.json as { from: number; to: number; path: string[]; root_from: string; root_to: string };
    const page = (await get(`/v1/records?from=1&limit=${applied}`)).json as { entries: View[] };
    const leaves = page.entries.map((e) => leafHash(hexToBuf(e.hash)));
    expect(p.root_from).toBe(merkleRoot(leaves.slice(0, 5)).toString("hex"));
    expect(p.root_to).toBe(merkleRoot(leaves).toString("hex"));
    expect(verifyConsistency(5, applied, p.path.map(hexToBuf), hexToBuf(p.root_from), hexToBuf(p.root_to))).toBe(true);
    // without a to (and no checkpoint yet) there is nothing to prove against
    expect((await get("/v1/proofs/consistency?from=5")).status).toBe(404);
    // Each bad parameter is named in its refusal.
    expect(errorOf(await get("/v1/proofs/consistency?from=x"))).toEqual({ status: 400, error: "bad_request", message: 'from must be a whole number >= 1, got "x"' });
    expect(errorOf(await get("/v1/proofs/consistency?from=1&to=0"))).toEqual({ status: 400, error: "bad_request", message: "to must be a whole number from 1 to 9007199254740991, got 0" });
    expect(errorOf(await get("/v1/proofs/inclusion/x?size=2"))).toEqual({ status: 400, error: "bad_request", message: 'index must be a whole number >= 1, got "x"' });
    expect(errorOf(await get("/v1/proofs/inclusion/1?size=0"))).toEqual({ status: 400, error: "bad_request", message: "size must be a whole number from 1 to 9007199254740991, got 0" });
  });

  test("GET /proofs/inclusion: a fixed size is immutable and verifies; no checkpoint and no size is 404", async () => {
    const applied = app.node.reader.lastApplied();
    const r = await get(`/v1/proofs/inclusion/${first}?size=${applied}`);
    expect(r.status).toBe(200);
    expect(r.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    const p = r.json as { index: number; size: number; leaf_hash: string; path: string[]; root: string };
    const entry = (await get(`/v1/records/${first}`)).json as View;
    expect(p.leaf_hash).toBe(leafHash(hexToBuf(entry.hash)).toString("hex"));
    expect(verifyInclusion(first - 1, applied, hexToBuf(p.leaf_hash), p.path.map(hexToBuf), hexToBuf(p.root))).toBe(true);
    const noSize = await get(`/v1/proofs/inclusion/${first}`);
    expect([noSize.status, noSize.headers.get("cache-control")]).toEqual([404, "no-store"]);
  });

  test("GET /checkpoints/latest and /checkpoint before any checkpoint are 404", async () => {
    expect(errorOf(await get("/v1/checkpoints/latest"))).toEqual({ status: 404, error: "not_found", message: "no checkpoint yet" });
    expect((await get("/v1/checkpoint")).status).toBe(404);
  });

  test("GET /receipts/:index with no checkpoint covering it is 202 pending with Retry-After 1", async () => {
    const r = await get(`/v1/receipts/${first}`);
    expect(r.status).toBe(202);
    expect(r.headers.get("retry-after")).toBe("1");
    expect(r.headers.get("cache-control")).toBe("no-store");
    expect(r.json).toMatchObject({ status: "pending", index: first, retry_after_s: 1, message: expect.any(String) });
    expect(Object.keys(r.json as object).sort()).toEqual(["index", "message", "retry_after_s", "status"]);
    expect((await get("/v1/receipts/0")).status).toBe(400);
  });

  test("GET /snapshots with none is an empty list, not cacheable", async () => {
    const r = await get("/v1/snapshots");
    expect([r.status, r.json, r.headers.get("cache-control")]).toEqual([200, [], "no-store"]);
  });
});

describe("a stored subject head that its records do not replay to", () => {
  test("is a 500 verification_failed on a full page, never a silently wrong head", async () => {
    await append("app-tamper", 1);
    await append("app-tamper", 2);
    expect((await get("/v1/subjects/app-tamper/history")).status).toBe(200);
    const db = new Database(path.join(app.dir, DB_FILE), { timeout: 10_000 });
    try {
      db.prepare("UPDATE subjects SET head = ? WHERE subject = 'app-tamper'").run(Buffer.alloc(32, 7));
    } finally {
      db.close();
    }
    const r = await get("/v1/subjects/app-tamper/history");
    expect(errorOf(r)).toEqual({ status: 500, error: "verification_failed", message: 'subject "app-tamper": replayed head differs from the stored head' });
    // a page that does not reach the last version, or a client-given head, is not judged against it
    expect((await get("/v1/subjects/app-tamper/history?limit=1")).status).toBe(200);
    expect((await get(`/v1/subjects/app-tamper/history?head=${"00".repeat(32)}`)).status).toBe(200);
  });
});

describe("request logs", () => {
  test("one line per request with method, url, the peer's address and status; /health is not logged; no token anywhere", async () => {
    captured.lines.length = 0;
    await get("/health");
    await get("/v1/status?x=1");
    await post("/v1/records", { nope: true });
    const reqs = captured.lines.filter((l) => l.req !== undefined);
    expect(reqs.map((l) => [(l.req as { method: string }).method, (l.req as { url: string }).url, (l.res as { status: number }).status])).toEqual([
      ["GET", "/v1/status?x=1", 200],
      ["POST", "/v1/records", 400],
    ]);
    for (const l of reqs) expect(l.req).toEqual({ method: expect.any(String), url: expect.any(String), remote: "127.0.0.1" });
    for (const l of reqs) {
      expect(l.msg).toBe("request completed");
      expect(l.level).toBe(30);
      expect(typeof l.responseTime === "number" && Number.isInteger(l.responseTime) && l.responseTime >= 0).toBe(true);
    }
    const all = JSON.stringify(captured.lines);
    expect(all).not.toContain(app.adminToken);
    expect(all.toLowerCase()).not.toContain("authorization");
  });

  test("the URL is logged as the client sent it, a bad percent-encoding included, with the refusal's status", async () => {
    captured.lines.length = 0;
    expect((await get("/v1/records?limit=%zz&from=1")).status).toBe(400);
    const reqs = captured.lines.filter((l) => l.req !== undefined);
    expect(reqs.map((l) => [(l.req as { url: string }).url, (l.res as { status: number }).status])).toEqual([["/v1/records?limit=%zz&from=1", 400]]);
  });

  test("a request whose client goes away before the answer is logged once, as aborted", async () => {
    // The same app on a listener of the test's own, whose 'request' event says when the request reached it.
    assert(deps !== undefined, "the shared app's deps");
    const own = await listen(createApp(deps, captured.logger), "127.0.0.1", 0);
    try {
      captured.lines.length = 0;
      const arrived = new Promise<void>((resolve) => own.server.once("request", () => resolve()));
      // A body announced as 100 bytes and cut after 10: the body reader waits for the rest, then the socket closes.
      const sock = net.connect({ host: "127.0.0.1", port: own.port });
      sock.on("error", () => {});
      sock.write(`POST /v1/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${app.adminToken}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"type":"x`);
      await arrived;
      sock.destroy();
      const line = await pollUntil("the aborted request's line", async () => captured.lines.find((l) => l.req !== undefined), 200, 10);
      expect(line.msg).toBe("request aborted");
      expect(line.req).toEqual({ method: "POST", url: "/v1/records", remote: "127.0.0.1" });
      expect(captured.lines.filter((l) => l.req !== undefined)).toHaveLength(1);
      expect(JSON.stringify(captured.lines)).not.toContain(app.adminToken);
    } finally {
      own.server.closeAllConnections();
      await new Promise((resolve) => own.server.close(resolve));
    }
  });
});
