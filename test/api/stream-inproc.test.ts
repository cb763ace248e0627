// WS /v1/stream (src/api/stream.ts) in this process, so Stryker sees it: a real node
// (test/support/in-process-app.ts) and a new EntryStream per test over its reader, on an http server
// that routes upgrades as `resonetics serve` does (routeUpgrades), or through attach(), or directly.
// The spawned-server tests (stream.test.ts, stream-slow.test.ts) check the same behaviours end to end;
// here every frame, close code, close reason and refused handshake is compared byte for byte.
//
// Stand-ins, and why they are faithful:
//   - a client that reads nothing is a server-side socket corked at the upgrade: ws's writes queue in
//     it and their callbacks never fire, which is what a full kernel buffer does, without needing
//     megabytes of backlog per subscriber; uncorking it lets the queued frames and close frame out;
//   - the stall clock is jest's fake Date and setInterval (the sweep timer) only: sockets, setTimeout
//     and setImmediate stay real, so 15 s of stall take no time and the boundary is exact.
// No sleeps: every wait is a bounded poll of a condition or an event with a deadline.
import * as http from "node:http";
import * as net from "node:net";
import pino, { Logger } from "pino";
import WebSocket from "ws";
import { EntryStream, STREAM_PATH, StreamOptions } from "../../src/api/stream";
import { routeUpgrades } from "../../src/api/upgrade";
import type { LedgerReader, NodeInfo } from "../../src/node/ports";
import { EntryKind } from "../../src/ledger/entry";
import { LedgerError } from "../../src/util/errors";
import { capturingLogger, InProcessApp, sharedInProcessApp, startInProcessApp } from "../support/in-process-app";
import { http as request } from "../support/server";

jest.setTimeout(30_000);

// 140 small records (the turn-taking test reads 130 of them), then 12 big ones: ~47 KB frames, of
// which 6 fill a subscriber's 256 KiB buffer and 6 more are left to send.
const SMALL = 140;
const BIG = 12;
const PADDING = "p".repeat(20_000);
// The bounds of src/api/stream.ts (not exported: a test restates them, a mutant of them must fail here).
const SUBSCRIBER_BUFFER_BYTES_MAX = 256 * 1024;
const TOTAL_BUFFER_BYTES_MAX = 32 * 1024 * 1024;
const STALL_TIMEOUT_MS = 15_000;
const FAR = 1_000_000_000; // a from no test reaches: an idle subscriber
const SLOW_LINE = "closing a slow stream subscriber";
const silent = pino({ level: "silent" });

let app: InProcessApp;
const layout = { bigFrom: 0 }; // set by the setup: the index of the first big record
const shared = sharedInProcessApp({}, async (first) => {
  for (let i = 0; i < SMALL; i += 10) await Promise.all(Array.from({ length: 10 }, (_, j) => append(first, i + j)));
  layout.bigFrom = first.node.reader.lastApplied() + 1;
  await Promise.all(Array.from({ length: BIG }, (_, j) => append(first, SMALL + j, PADDING)));
  if (first.node.reader.lastApplied() !== layout.bigFrom + BIG - 1) throw new Error(`setup: expected the big records at ${layout.bigFrom}..${layout.bigFrom + BIG - 1}, head is ${first.node.reader.lastApplied()}`);
});
/** Teardown, last registered first: clients, then their server and stream, then extra nodes. */
const cleanups: Array<() => Promise<void> | void> = [];
beforeEach(async () => {
  app = await shared.open();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  jest.useRealTimers();
  await app?.close();
});
afterAll(() => shared.close());

async function append(to: InProcessApp, n: number, reason?: string): Promise<number> {
  const r = await request(to.baseUrl, "POST", "/v1/records", { token: to.adminToken, json: { type: "policy.set", subject: `s${n % 7}`, data: { name: "n", value: n, ...(reason === undefined ? {} : { reason }) } } });
  if (r.status !== 201) throw new Error(`append ${n} → ${r.status} ${r.text.slice(0, 300)}`);
  return (r.json as { index: number }).index;
}

/** The frame the stream must send for entry i: {"type":"entry","entry":<GET /v1/records/i's body>}. */
const views = new Map<number, string>();
async function frameOf(i: number, of: InProcessApp = app): Promise<string> {
  const hit = of === app ? views.get(i) : undefined;
  if (hit !== undefined) return hit;
  const r = await request(of.baseUrl, "GET", `/v1/records/${i}`);
  if (r.status !== 200) throw new Error(`GET /v1/records/${i} → ${r.status} ${r.text.slice(0, 300)}`);
  const frame = `{"type":"entry","entry":${r.text}}`;
  if (of === app) views.set(i, frame);
  return frame;
}
async function framesOf(from: number, to: number, of: InProcessApp = app): Promise<string[]> {
  const out: string[] = [];
  for (let i = from; i <= to; i++) out.push(await frameOf(i, of));
  return out;
}

/** Where a subscriber from `from` that reads nothing stops: it is sent frames while it holds under 256 KiB, so the last one takes it over. */
async function fillOf(from: number): Promise<{ next: number; bytes: number }> {
  let bytes = 0;
  let next = from;
  while (bytes < SUBSCRIBER_BUFFER_BYTES_MAX) bytes += Buffer.byteLength(await frameOf(next++));
  return { next, bytes };
}

/** Polls probe (every 2 ms, at most maxMs) until it gives a value other than undefined or false. */
async function waitFor<T>(what: string, probe: () => T | undefined | false, maxMs = 10_000): Promise<T> {
  const deadline = performance.now() + maxMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > deadline) throw new Error(`waited ${maxMs} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** p, or a failure naming what did not happen within ms. */
async function within<T>(p: Promise<T>, what: string, ms = 5_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** target with some members replaced; its own methods stay bound to it. */
function swap<T extends object>(target: T, over: Partial<T>): T {
  return new Proxy(target, {
    get: (t, p) => {
      if (Object.prototype.hasOwnProperty.call(over, p)) return (over as Record<PropertyKey, unknown>)[p];
      const v: unknown = Reflect.get(t, p, t);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

/** Fakes only Date and setInterval (the stream's stall clock and sweep); I/O and other timers stay real. */
function fakeStallClock(): void {
  jest.useFakeTimers({ doNotFake: ["hrtime", "nextTick", "performance", "queueMicrotask", "setImmediate", "clearImmediate", "setTimeout", "clearTimeout"] });
}

interface Harness {
  readonly stream: EntryStream;
  readonly port: number;
  /** The server's sockets, in the order they connected. */
  readonly accepted: net.Socket[];
  /** Cork each upgraded socket before the stream sees it: a client that reads nothing. */
  corkUpgrades: boolean;
}

const NOT_HERE = "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n";

/** A new EntryStream on a new http server at 127.0.0.1:0, reached the way `via` says. */
async function serveStream(o: { via?: "route" | "attach" | "direct"; opts?: StreamOptions; reader?: LedgerReader; node?: NodeInfo; logger?: Logger } = {}): Promise<Harness> {
  const stream = new EntryStream(o.reader ?? app.node.reader, o.node ?? app.node, o.logger ?? silent, o.opts);
  const server = http.createServer();
  const h = { stream, port: 0, accepted: [] as net.Socket[], corkUpgrades: false };
  server.on("connection", (s: net.Socket) => h.accepted.push(s));
  server.on("upgrade", (_req, socket: net.Socket) => {
    if (h.corkUpgrades) socket.cork();
  });
  if (o.via === "attach") {
    stream.attach(server);
    // What another endpoint would do with its own path: answer it; the stream must leave it alone.
    server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
      if (new URL(req.url ?? "/", "http://x").pathname !== STREAM_PATH) socket.end(NOT_HERE);
    });
  } else if (o.via === "direct") server.on("upgrade", (req, socket, head) => stream.handleUpgrade(req, socket, head));
  else routeUpgrades(server, new Map([[STREAM_PATH, stream]]), silent);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  h.port = (server.address() as net.AddressInfo).port;
  cleanups.push(async () => {
    stream.close();
    for (const s of h.accepted) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return h;
}

interface Client {
  readonly ws: WebSocket;
  /** Text frames as received; a binary frame would show as "binary:<hex>". */
  readonly frames: string[];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
}

function subscribe(h: Harness, query = ""): Client {
  const ws = new WebSocket(`ws://127.0.0.1:${h.port}${STREAM_PATH}${query}`);
  const frames: string[] = [];
  ws.on("message", (d: Buffer, isBinary: boolean) => frames.push(isBinary ? `binary:${d.toString("hex")}` : d.toString("utf8")));
  ws.on("error", () => undefined); // a failure shows as the close code, or as `opened` rejecting
  const opened = new Promise<void>((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`refused: ${res.statusCode ?? "?"}`)));
    ws.once("close", () => reject(new Error("closed before it opened")));
  });
  opened.catch(() => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  cleanups.push(() => ws.terminate());
  return { ws, frames, opened, closed };
}

/** Sends a raw request and collects the answer until the server closes the connection (bounded). */
function rawExchange(port: number, req: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    cleanups.push(() => void socket.destroy());
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end of the answer to ${JSON.stringify(req.split("\r\n")[0])} in 5 s: ${JSON.stringify(Buffer.concat(chunks).toString("latin1").slice(0, 300))}`));
    }, 5_000);
    socket.on("data", (b: Buffer) => chunks.push(b));
    socket.on("error", reject);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
    socket.write(req);
  });
}

const upgradeRequest = (target: string, method = "GET", key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"): string =>
  `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${key}Sec-WebSocket-Version: 13\r\n\r\n`;

/** The stream's own refusal, byte for byte. */
function refusal(status: string, body: { error: string; message: string }, extra = ""): string {
  const json = JSON.stringify(body);
  return `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nX-Content-Type-Options: nosniff\r\n${extra}Connection: close\r\n\r\n${json}`;
}
const BAD_FROM = refusal("400 Bad Request", { error: "bad_request", message: "from must be a whole number >= 1" });

test("frames from an index are exactly GET /v1/records/:index's views, in order, as text; then each new commit as it applies", async () => {
  const h = await serveStream();
  const head = app.node.reader.lastApplied();
  const c = subscribe(h, "?from=2");
  await waitFor(`frames 2..${head}`, () => c.frames.length >= head - 1);
  const added = [await append(app, 1), await append(app, 2), await append(app, 3)];
  expect(added).toEqual([head + 1, head + 2, head + 3]);
  await waitFor(`frames up to ${head + 3}`, () => c.frames.length >= head + 2);
  expect(c.frames).toEqual(await framesOf(2, head + 3));
});

test("resumes from any index; no from is from=1, from=007 is 7; a from beyond the log waits and starts exactly there", async () => {
  const h = await serveStream();
  const head = app.node.reader.lastApplied();
  const mid = subscribe(h, `?from=${head - 2}`);
  const whole = subscribe(h);
  const padded = subscribe(h, "?from=007");
  const ahead = subscribe(h, `?from=${head + 2}`);
  await waitFor("the first frames", () => mid.frames.length >= 3 && whole.frames.length >= 1 && padded.frames.length >= 1);
  expect(mid.frames).toEqual(await framesOf(head - 2, head));
  expect([whole.frames[0], padded.frames[0]]).toEqual([await frameOf(1), await frameOf(7)]);
  await within(ahead.opened, "open of the subscriber from beyond the log");
  expect([await append(app, 4), await append(app, 5)]).toEqual([head + 1, head + 2]);
  await waitFor(`frame ${head + 2} at the subscriber that waited for it`, () => ahead.frames.length >= 1 && mid.frames.length >= 5);
  expect(ahead.frames).toEqual([await frameOf(head + 2)]);
  expect(mid.frames).toEqual(await framesOf(head - 2, head + 2));
});

test("a bad from, or a request target that is no URL, is refused 400 with the exact JSON answer; the largest safe from is taken", async () => {
  const h = await serveStream();
  for (const q of ["from=0", "from=abc", "from=-1", "from=1.5", "from=1e3", "from=", "from=99999999999999999", "from=9007199254740992"]) {
    expect({ q, answer: await rawExchange(h.port, upgradeRequest(`${STREAM_PATH}?${q}`)) }).toEqual({ q, answer: BAD_FROM });
  }
  await within(subscribe(h, "?from=9007199254740991").opened, "open with from=2^53-1");
  // Behind the router such a target never reaches the stream; called directly, the stream refuses it itself.
  const direct = await serveStream({ via: "direct" });
  expect(await rawExchange(direct.port, upgradeRequest(`//x:99999${STREAM_PATH}?from=1`))).toBe(BAD_FROM);
});

test("attach() takes /v1/stream only; ws's own refusals answer JSON: 405 with Allow for a POST, 400 for a missing key", async () => {
  const h = await serveStream({ via: "attach" });
  expect(await rawExchange(h.port, upgradeRequest(`${STREAM_PATH}?from=1`, "POST"))).toBe(
    refusal("405 Method Not Allowed", { error: "method_not_allowed", message: "Invalid HTTP method" }, "Allow: GET\r\n"));
  expect(await rawExchange(h.port, upgradeRequest(`${STREAM_PATH}?from=1`, "GET", ""))).toBe(
    refusal("400 Bad Request", { error: "bad_request", message: "Missing or invalid Sec-WebSocket-Key header" }));
  expect(await rawExchange(h.port, upgradeRequest("/v1/other?from=1"))).toBe(NOT_HERE);
  const c = subscribe(h, "?from=3");
  await waitFor("frames 3 and 4 through attach()", () => c.frames.length >= 2);
  expect(c.frames.slice(0, 2)).toEqual(await framesOf(3, 4));
});

test("the stream is one-way: a text or binary frame closes 1008, a frame over 125 bytes 1009; pings get their pong and entries go on", async () => {
  const h = await serveStream();
  const oneWay = { code: 1008, reason: "the stream is one-way: send no messages" };
  for (const [what, data] of [["text", "hello"], ["binary", Buffer.from([1, 2, 3])], ["125-byte text", "x".repeat(125)], ["126-byte text", "x".repeat(126)]] as const) {
    const c = subscribe(h, `?from=${FAR}`);
    await within(c.opened, `open before the ${what} frame`);
    c.ws.send(data);
    expect({ what, closed: await within(c.closed, `close after a ${what} frame`) }).toEqual({ what, closed: what === "126-byte text" ? { code: 1009, reason: "" } : oneWay });
  }
  const head = app.node.reader.lastApplied();
  const pinger = subscribe(h, `?from=${head + 1}`);
  await within(pinger.opened, "open of the pinger");
  const payload = Buffer.alloc(125, 7);
  const pong = new Promise<Buffer>((resolve) => pinger.ws.once("pong", resolve));
  pinger.ws.ping(payload);
  expect(await within(pong, "pong")).toEqual(payload);
  pinger.ws.pong("unasked");
  const index = await append(app, 6);
  await waitFor(`frame ${index} after the ping`, () => pinger.frames.length >= 1);
  expect(pinger.frames).toEqual([await frameOf(index)]);
  expect(pinger.ws.readyState).toBe(WebSocket.OPEN);
});

test("with maxSubscribers 2, a third gets 503 JSON with Retry-After; the slot frees when one leaves", async () => {
  const h = await serveStream({ opts: { maxSubscribers: 2 } });
  const full = refusal("503 Service Unavailable", { error: "unavailable", message: "too many stream subscribers (at most 2)" }, "Retry-After: 1\r\n");
  const a = subscribe(h, `?from=${FAR}`);
  const b = subscribe(h, `?from=${FAR}`);
  await within(Promise.all([a.opened, b.opened]), "open of two subscribers");
  expect(await rawExchange(h.port, upgradeRequest(`${STREAM_PATH}?from=${FAR}`))).toBe(full);
  a.ws.close();
  await within(a.closed, "close of the first subscriber");
  // The server sees the close a moment after the client does: bounded retries until a third fits.
  let third: Client | null = null;
  for (let attempt = 0; attempt < 200 && third === null; attempt++) {
    const c = subscribe(h, `?from=${FAR}`);
    third = await c.opened.then(() => c, () => null);
    if (third === null) await new Promise((r) => setTimeout(r, 10));
  }
  if (third === null) throw new Error("no slot freed within 200 attempts after a subscriber left");
  expect(await rawExchange(h.port, upgradeRequest(`${STREAM_PATH}?from=${FAR}`))).toBe(full);
});

test("at most 256 subscribers by default and whatever maxSubscribers asks for", async () => {
  for (const opts of [undefined, { maxSubscribers: 1000 }]) {
    const h = await serveStream({ opts });
    const clients = Array.from({ length: 256 }, () => subscribe(h, `?from=${FAR}`));
    await within(Promise.all(clients.map((c) => c.opened)), "open of 256 subscribers", 20_000);
    expect({ opts, answer: await rawExchange(h.port, upgradeRequest(`${STREAM_PATH}?from=${FAR}`)) }).toEqual({
      opts, answer: refusal("503 Service Unavailable", { error: "unavailable", message: "too many stream subscribers (at most 256)" }, "Retry-After: 1\r\n"),
    });
  }
});

test("a subscriber whose buffer stays full for 15 s is closed 4008 with where to resume; resuming there is gapless; the sweep then stops", async () => {
  fakeStallClock();
  const { logger, lines } = capturingLogger();
  const h = await serveStream({ logger });
  const from = layout.bigFrom;
  const { next, bytes } = await fillOf(from);
  expect(next).toBeLessThanOrEqual(app.node.reader.lastApplied()); // it has more to send: blocked, not caught up
  h.corkUpgrades = true;
  const slow = subscribe(h, `?from=${from}`);
  const socket = await waitFor("the server's socket to the slow subscriber", () => h.accepted[0]);
  await waitFor(`${bytes} bytes queued to the slow subscriber`, () => socket.writableLength >= bytes);
  h.corkUpgrades = false;
  const slowLines = (): Array<Record<string, unknown>> => lines.filter((l) => l.msg === SLOW_LINE);
  jest.advanceTimersByTime(STALL_TIMEOUT_MS - 1);
  expect(slowLines()).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(slowLines()).toEqual([expect.objectContaining({
    level: 40, subscriber: 1, remote_port: socket.remotePort, code: 4008, from: next, why: "stalled", buffered_bytes: bytes, total_bytes: bytes,
  })]);
  socket.uncork();
  expect(await within(slow.closed, "the slow subscriber's close")).toEqual({ code: 4008, reason: `slow consumer; resume with from=${next}` });
  expect(slow.frames).toEqual(await framesOf(from, next - 1));
  const head = app.node.reader.lastApplied();
  const resumed = subscribe(h, `?from=${next}`);
  await waitFor(`frames ${next}..${head} after resuming`, () => resumed.frames.length >= head - next + 1);
  expect(resumed.frames).toEqual(await framesOf(next, head));
  expect(jest.getTimerCount()).toBe(1);
  resumed.ws.close();
  await within(resumed.closed, "close of the resumed subscriber");
  await waitFor("the sweep timer to stop once no subscriber is left", () => jest.getTimerCount() === 0);
});

test("over 32 MiB across subscribers, the one whose buffer has been full longest is closed 4008, and only it", async () => {
  fakeStallClock();
  const { logger, lines } = capturingLogger();
  const h = await serveStream({ logger });
  const from = layout.bigFrom;
  const { next, bytes } = await fillOf(from);
  const over = Math.floor(TOTAL_BUFFER_BYTES_MAX / bytes) + 1; // the subscriber whose bytes take the total over
  h.corkUpgrades = true;
  const subs: Client[] = [];
  const slowLines = (): Array<Record<string, unknown>> => lines.filter((l) => l.msg === SLOW_LINE);
  for (let i = 0; i < over; i++) {
    expect({ subscribers: i, closed: slowLines() }).toEqual({ subscribers: i, closed: [] });
    jest.advanceTimersByTime(1); // each one full since a later ms than the one before
    subs.push(subscribe(h, `?from=${from}`));
    const socket = await waitFor(`the server's socket to subscriber ${i + 1}`, () => h.accepted[i]);
    await waitFor(`${bytes} bytes queued to subscriber ${i + 1}`, () => socket.writableLength >= bytes);
  }
  expect(slowLines()).toEqual([expect.objectContaining({
    level: 40, subscriber: 1, remote_port: h.accepted[0].remotePort, code: 4008, from: next, why: "total", buffered_bytes: bytes, total_bytes: over * bytes,
  })]);
  h.accepted[0].uncork();
  expect(await within(subs[0].closed, "the first subscriber's close")).toEqual({ code: 4008, reason: `slow consumer; resume with from=${next}` });
  expect(subs[0].frames).toEqual(await framesOf(from, next - 1));
  // The newest is still served: let it read, and it gets the rest of the log.
  h.accepted[over - 1].uncork();
  const head = app.node.reader.lastApplied();
  await waitFor(`frames ${from}..${head} at the newest subscriber`, () => subs[over - 1].frames.length >= head - from + 1);
  expect(subs[over - 1].frames).toEqual(await framesOf(from, head));
  expect(slowLines()).toHaveLength(1);
});

test("close() ends each subscriber 1001 with its own resume index, one behind a full buffer at once, and refuses new ones 503", async () => {
  const h = await serveStream();
  const head = app.node.reader.lastApplied();
  const caughtUp = subscribe(h, `?from=${head - 1}`);
  await waitFor("the caught-up subscriber's 2 frames", () => caughtUp.frames.length >= 2);
  const waiting = subscribe(h, `?from=${FAR}`);
  await within(waiting.opened, "open of the waiting subscriber"); // one at a time: h.accepted is in this order
  const stuck = subscribe(h, `?from=${FAR}`);
  await within(stuck.opened, "open of the stuck subscriber");
  h.accepted[2].cork(); // its close frame cannot leave
  h.stream.close();
  expect(await within(caughtUp.closed, "close")).toEqual({ code: 1001, reason: `shutting down; resume with from=${head + 1}` });
  expect(await within(waiting.closed, "close")).toEqual({ code: 1001, reason: `shutting down; resume with from=${FAR}` });
  // Without a close frame: ended at once, not after ws's 10 s close timeout.
  expect(await within(stuck.closed, "end of the stuck subscriber", 3_000)).toEqual({ code: 1006, reason: "" });
  expect(caughtUp.frames).toEqual(await framesOf(head - 1, head));
  expect(await rawExchange(h.port, upgradeRequest(`${STREAM_PATH}?from=1`))).toBe(
    refusal("503 Service Unavailable", { error: "unavailable", message: "the server is shutting down" }, "Retry-After: 1\r\n"));
  h.stream.close(); // a second close is a no-op
});

test("a read that fails closes the subscriber 1011 with where to resume, after every frame before it, and logs why", async () => {
  const { logger, lines } = capturingLogger();
  const reader = swap(app.node.reader, {
    entries: (from: number, to: number) => {
      if (from >= 69) throw new Error("disk on fire");
      return app.node.reader.entries(from, to);
    },
  });
  const h = await serveStream({ reader, logger });
  const c = subscribe(h, "?from=5");
  // 5..68: one visit of 64 frames from one read of 64 entries; the next read fails.
  expect(await within(c.closed, "close after the failed read")).toEqual({ code: 1011, reason: "internal error; resume with from=69" });
  expect(c.frames).toEqual(await framesOf(5, 68));
  expect(lines.filter((l) => l.msg === "stream failed")).toEqual([expect.objectContaining({ level: 50, subscriber: 1, next: 69, err: expect.objectContaining({ message: "disk on fire" }) })]);
});

test("a read of the hash before an entry that says not_found or gone closes 4004 naming it; any other failure there closes 1011", async () => {
  for (const [thrown, closed] of [
    [new LedgerError("not_found", "no entry 8"), { code: 4004, reason: "entry 9 is not in this node's log (pruned)" }],
    [new LedgerError("gone", "history starts at 20"), { code: 4004, reason: "entry 9 is not in this node's log (pruned)" }],
    [new LedgerError("unavailable", "busy"), { code: 1011, reason: "internal error; resume with from=9" }],
    [new Error("io"), { code: 1011, reason: "internal error; resume with from=9" }],
  ] as const) {
    const reader = swap(app.node.reader, {
      prevHash: (index: number) => {
        if (index === 9) throw thrown;
        return app.node.reader.prevHash(index);
      },
    });
    const c = subscribe(await serveStream({ reader }), "?from=9");
    expect({ thrown: thrown.message, closed: await within(c.closed, `close after "${thrown.message}"`), frames: c.frames }).toEqual({ thrown: thrown.message, closed, frames: [] });
  }
});

test("subscribers take turns of 64 frames; each entry is read once, 64 at a time, and shared; a visit's frames carry one write callback", async () => {
  let onApplied: ((lastApplied: number) => void) | null = null;
  const node = swap<NodeInfo>(app.node, {
    onApplied: (fn) => {
      onApplied = fn;
      return () => (onApplied = null);
    },
  });
  const reads: Array<[number, number]> = [];
  const prevs: number[] = [];
  const reader = swap(app.node.reader, {
    lastApplied: () => 0, // the stream starts with nothing applied; the test applies 130 at once
    entries: (from: number, to: number) => (reads.push([from, to]), app.node.reader.entries(from, to)),
    prevHash: (index: number) => (prevs.push(index), app.node.reader.prevHash(index)),
  });
  const h = await serveStream({ reader, node });
  const a = subscribe(h, "?from=1");
  await within(a.opened, "open of A");
  const b = subscribe(h, "?from=1");
  await within(b.opened, "open of B");
  const spy = jest.spyOn(WebSocket.prototype, "send");
  const sends = { calls: [] as unknown[][], contexts: [] as unknown[] };
  try {
    (onApplied as ((n: number) => void) | null)?.(130);
    await waitFor("130 frames at both", () => a.frames.length >= 130 && b.frames.length >= 130);
    sends.calls = [...spy.mock.calls];
    sends.contexts = [...spy.mock.contexts];
  } finally {
    spy.mockRestore();
  }
  const expected = await framesOf(1, 130);
  expect([a.frames, b.frames]).toEqual([expected, expected]);
  expect({ reads, prevs }).toEqual({ reads: [[1, 64], [65, 128], [129, 130]], prevs: [1] });
  // Runs of sends to one subscriber: who, first and last index, and which sends carried a callback.
  const order: unknown[] = [];
  const runs: Array<{ who: string; from: number; to: number; callbacks: number[] }> = [];
  sends.calls.forEach((call, i) => {
    const ctx = sends.contexts[i];
    if (!order.includes(ctx)) order.push(ctx);
    const who = "AB"[order.indexOf(ctx)];
    const index = (JSON.parse(String(call[0])) as { entry: { index: number } }).entry.index;
    expect(call[1]).toEqual({ binary: false, compress: false, fin: true });
    const last = runs[runs.length - 1];
    const run = last?.who === who ? last : (runs.push({ who, from: index, to: index, callbacks: [] }), runs[runs.length - 1]);
    run.to = index;
    if (typeof call[2] === "function") run.callbacks.push(index);
  });
  expect(runs).toEqual([
    { who: "A", from: 1, to: 64, callbacks: [64] }, { who: "B", from: 1, to: 64, callbacks: [64] },
    { who: "A", from: 65, to: 128, callbacks: [128] }, { who: "B", from: 65, to: 128, callbacks: [128] },
    { who: "A", from: 129, to: 130, callbacks: [130] }, { who: "B", from: 129, to: 130, callbacks: [130] },
  ]);
});

test("after a prune, a subscriber from any index below history_from is closed 4004 naming the entry; from history_from it streams every entry", async () => {
  const pruned = await startInProcessApp({ node: { snapshotEvery: 5 } });
  cleanups.push(() => pruned.close());
  for (let i = 0; i < 6; i++) await append(pruned, i);
  const anchor = await waitFor("a snapshot of the pruned node", () => pruned.node.reader.snapshots()[0]?.index, 15_000);
  const prune = await request(pruned.baseUrl, "POST", "/v1/admin/prune", { token: pruned.adminToken, json: { below: anchor + 1 } });
  expect(prune.status).toBe(201);
  await waitFor(`history_from ${anchor + 1} after the prune`, () => pruned.node.reader.historyFrom() === anchor + 1);
  const h = await serveStream({ reader: pruned.node.reader, node: pruned.node });
  // Every index below history_from: from 1 (whose previous hash is genesis), and those whose previous entry is gone too.
  for (let from = 1; from <= anchor; from++) {
    const gone = subscribe(h, `?from=${from}`);
    expect(await within(gone.closed, `close of the subscriber from ${from}`)).toEqual({ code: 4004, reason: `entry ${from} is not in this node's log (pruned)` });
    expect(gone.frames).toEqual([]);
  }
  const head = pruned.node.reader.lastApplied();
  const kept = subscribe(h, `?from=${anchor + 1}`);
  await waitFor(`frames ${anchor + 1}..${head}`, () => kept.frames.length >= head - anchor);
  expect(kept.frames).toEqual(await framesOf(anchor + 1, head, pruned));
});

/** A node of its own (these tests append to it), a stream over it with a captured log, and the stall clock faked; `from` is its next index. */
async function liveStream(): Promise<{ live: InProcessApp; h: Harness; lines: Array<Record<string, unknown>>; from: number }> {
  fakeStallClock();
  const live = await startInProcessApp();
  cleanups.push(() => live.close());
  const { logger, lines } = capturingLogger();
  const h = await serveStream({ reader: live.node.reader, node: live.node, logger });
  return { live, h, lines, from: live.node.reader.lastApplied() + 1 };
}

test("a caught-up subscriber that stops reading is closed 4008 after 15 s, though it waits at half its buffer and never fills it", async () => {
  const { live, h, lines, from } = await liveStream();
  h.corkUpgrades = true;
  const slow = subscribe(h, `?from=${from}`);
  const socket = await waitFor("the server's socket to the slow subscriber", () => h.accepted[0]);
  // Live commits go out as they apply while under half the buffer is unconfirmed...
  let bytes = 0;
  let next = from;
  while (bytes < SUBSCRIBER_BUFFER_BYTES_MAX / 2) {
    const index = await append(live, next, PADDING);
    expect(index).toBe(next);
    bytes += Buffer.byteLength(await frameOf(index, live));
    await waitFor(`frame ${index} queued to the slow subscriber`, () => socket.writableLength >= bytes);
    next = index + 1;
  }
  // ...then the next one waits, and the stall clock runs from then.
  expect(await append(live, next, PADDING)).toBe(next);
  await new Promise((r) => setImmediate(r));
  expect(socket.writableLength).toBeLessThan(bytes + 1000);
  const slowLines = (): Array<Record<string, unknown>> => lines.filter((l) => l.msg === SLOW_LINE);
  jest.advanceTimersByTime(STALL_TIMEOUT_MS - 1);
  expect(slowLines()).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(slowLines()).toEqual([expect.objectContaining({ code: 4008, from: next, why: "stalled", buffered_bytes: bytes, total_bytes: bytes })]);
  socket.uncork();
  expect(await within(slow.closed, "the slow subscriber's close")).toEqual({ code: 4008, reason: `slow consumer; resume with from=${next}` });
  expect(slow.frames).toEqual(await framesOf(from, next - 1, live));
});

test("a subscriber that reads is never taken for stalled: each write callback restarts its clock", async () => {
  const { live, h, lines, from } = await liveStream();
  const reader = subscribe(h, `?from=${from}`);
  await reader.opened;
  for (let i = 0; i < 8; i++) {
    const index = await append(live, from + i, PADDING);
    await waitFor(`frame ${index} at the reading subscriber`, () => reader.frames.length >= index - from + 1);
    jest.advanceTimersByTime(STALL_TIMEOUT_MS);
  }
  expect(lines.filter((l) => l.msg === SLOW_LINE)).toEqual([]);
  expect(reader.frames).toEqual(await framesOf(from, from + 7, live));
});

describe("the frame cache: the newest 8,192 frames or 8 MiB, oldest out first", () => {
  // A log that exists only in a reader: NOOP entries (tiny frames) or RECORD entries of ~40 KB, each
  // hash its index's bytes. The stream trusts its reader, so nothing else is needed to stream them.
  const CACHE_FRAMES_MAX = 8192;
  const CACHE_BYTES_MAX = 8 * 1024 * 1024;
  const hashOf = (i: number): Uint8Array => new Uint8Array(32).fill(i & 255).fill((i >> 8) & 255, 0, 2);
  const bigPayload = (i: number): Uint8Array =>
    Buffer.from(JSON.stringify({ v: 1, type: "policy.set", subject: "cache", data: { name: "n", value: i, reason: "r".repeat(40_000) }, ts: "2026-01-01T00:00:00Z" }));
  function syntheticLog(size: number, big: boolean): { reader: LedgerReader; reads: Map<number, number> } {
    const reads = new Map<number, number>();
    const entry = (i: number) => ({ index: i, term: 1, kind: big ? EntryKind.Record : EntryKind.Noop, payload: big ? bigPayload(i) : new Uint8Array(0), hash: hashOf(i) });
    const reader = swap(app.node.reader, {
      lastApplied: () => size,
      prevHash: (i: number) => (i === 1 ? new Uint8Array(32) : hashOf(i - 1)),
      entries: function* (from: number, to: number) {
        for (let i = from; i <= Math.min(to, size); i++) {
          reads.set(i, (reads.get(i) ?? 0) + 1);
          yield entry(i);
        }
      },
    } as Partial<LedgerReader>);
    return { reader, reads };
  }
  /** Streams from `from` to the end through a new subscriber and returns how many frames it got. */
  async function readAll(h: Harness, from: number, size: number): Promise<number> {
    const c = subscribe(h, `?from=${from}`);
    await waitFor(`frames ${from}..${size}`, () => c.frames.length >= size - from + 1, 60_000);
    c.ws.terminate();
    return c.frames.length;
  }

  test("by count: after 9,000 small frames the newest 8,192 are served without a read, the one before them is read again", async () => {
    const size = CACHE_FRAMES_MAX + 808;
    const { reader, reads } = syntheticLog(size, false);
    const h = await serveStream({ reader });
    expect(await readAll(h, 1, size)).toBe(size);
    expect([reads.get(1), reads.get(size)]).toEqual([1, 1]);
    // A hit leaves the cache as it is, so the boundary is probed from its newer side first.
    expect(await readAll(h, 809, size)).toBe(size - 808);
    expect(reads.get(809)).toBe(1);
    expect(await readAll(h, 808, size)).toBe(size - 807);
    expect(reads.get(808)).toBe(2);
  });

  test("by bytes: frames of ~90 KB keep at most 8 MiB of them, the newest", async () => {
    const size = 300;
    const { reader, reads } = syntheticLog(size, true);
    const h = await serveStream({ reader });
    const c = subscribe(h, "?from=1");
    await waitFor("all 300 big frames", () => c.frames.length >= size, 60_000);
    const bytes = c.frames.map((f) => Buffer.byteLength(f));
    c.ws.terminate();
    // The newest frames whose sizes sum to at most 8 MiB stay; the next older one does not.
    let kept = 0;
    let sum = 0;
    while (kept < size && sum + bytes[size - 1 - kept] <= CACHE_BYTES_MAX) sum += bytes[size - 1 - kept++];
    expect(kept).toBeGreaterThan(50);
    expect(kept).toBeLessThan(size);
    const oldestKept = size - kept + 1;
    expect(await readAll(h, oldestKept, size)).toBe(kept);
    expect(reads.get(oldestKept)).toBe(1);
    expect(await readAll(h, oldestKept - 1, size)).toBe(kept + 1);
    expect(reads.get(oldestKept - 1)).toBe(2);
  });
});
