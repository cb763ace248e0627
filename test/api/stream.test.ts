import * as net from "node:net";
import WebSocket from "ws";
import { cleanupAll, makeTempDir, startServer, Server } from "../support/server";
import { entryHash, EntryKind } from "../../src/ledger/entry";
import { toHex } from "../../src/ledger/bytes";

jest.setTimeout(60_000);
let server: Server;
beforeAll(async () => {
  server = await startServer(makeTempDir(), { extraArgs: ["--checkpoint-every", "10"] });
});
afterAll(async () => {
  await server.stop();
  await cleanupAll();
});

interface Frame { type: string; entry: { index: number; term: number; kind: string; hash: string; prev_hash: string; payload_b64: string } }
const KINDS: Record<string, EntryKind> = { noop: EntryKind.Noop, record: EntryKind.Record, config: EntryKind.Config, checkpoint: EntryKind.Checkpoint };

async function append(n: number, tag: string): Promise<number> {
  let last = 0;
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${server.baseUrl}/v1/records`, {
      method: "POST", headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
      body: JSON.stringify({ type: "policy.set", subject: tag, data: { name: "n", value: i } }),
    });
    last = ((await r.json()) as { index: number }).index;
  }
  return last;
}

/** Collects frames until one with index >= until arrives (bounded by the test timeout). */
function collect(from: number, until: () => number | null): { frames: Frame[]; done: Promise<void>; ws: WebSocket } {
  const frames: Frame[] = [];
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream?from=${from}`);
  const done = new Promise<void>((resolve, reject) => {
    ws.on("message", (data) => {
      frames.push(JSON.parse(data.toString()) as Frame);
      const u = until();
      if (u !== null && frames[frames.length - 1].entry.index >= u) resolve();
    });
    ws.on("error", reject);
    ws.on("close", (code, reason) => reject(new Error(`stream closed ${code} ${reason.toString()}`)));
  });
  return { frames, done, ws };
}

test("streams committed entries in order from an index, then new commits as they apply; each chains", async () => {
  const first = await append(15, "before");
  let target: number | null = first;
  const s = collect(1, () => target);
  await s.done;
  target = null;
  const later = append(12, "after");
  target = await later;
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (s.frames[s.frames.length - 1].entry.index >= (target as number)) resolve();
      else setTimeout(check, 10);
    };
    check();
  });
  s.ws.terminate();
  const entries = s.frames.map((f) => f.entry);
  expect(entries.map((e) => e.index)).toEqual(Array.from({ length: entries.length }, (_, i) => i + 1));
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (i > 0) expect(e.prev_hash).toBe(entries[i - 1].hash);
    const h = entryHash(e.index, e.term, KINDS[e.kind], Buffer.from(e.prev_hash, "hex"), Buffer.from(e.payload_b64, "base64"));
    expect(toHex(h)).toBe(e.hash);
  }
  expect(entries.some((e) => e.kind === "checkpoint")).toBe(true);
});

test("resumes from any index, and refuses a bad one", async () => {
  const s = collect(5, () => 8);
  await s.done;
  s.ws.terminate();
  expect(s.frames[0].entry.index).toBe(5);
  const bad = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream?from=zero`);
  const status = await new Promise<number>((resolve) => bad.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)));
  expect(status).toBe(400);
});

/** A raw HTTP exchange: sends `request`, collects the answer until the server closes (bounded). */
function rawExchange(request: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end of the answer to ${JSON.stringify(request.split("\r\n")[0])} within ${timeoutMs} ms: ${Buffer.concat(chunks).toString("latin1").slice(0, 300)}`));
    }, timeoutMs);
    socket.on("data", (b: Buffer) => chunks.push(b));
    socket.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
    socket.write(request);
  });
}

const upgradeRequest = (target: string, method = "GET", extra = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"): string =>
  `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${extra}\r\n`;

function jsonAnswer(raw: string): { status: number; headers: string; body: Record<string, unknown> } {
  const end = raw.indexOf("\r\n\r\n");
  const headers = raw.slice(0, end);
  return { status: Number(headers.split(" ")[1]), headers: headers.toLowerCase(), body: JSON.parse(raw.slice(end + 4)) as Record<string, unknown> };
}

test("a refused handshake answers JSON: bad from, a request target that is no URL, a wrong method, a missing key", async () => {
  for (const [target, method, extra, status, code] of [
    ["/v1/stream?from=0", "GET", undefined, 400, "bad_request"],
    ["/v1/stream?from=99999999999999999", "GET", undefined, 400, "bad_request"],
    ["/v1/stream?from=%ZZ", "GET", undefined, 400, "bad_request"],
    ["/v1/stream?from=1", "POST", undefined, 405, "method_not_allowed"],
    ["/v1/stream?from=1", "GET", "Sec-WebSocket-Version: 13\r\n", 400, "bad_request"],
  ] as const) {
    const a = jsonAnswer(await rawExchange(upgradeRequest(target, method, extra)));
    expect({ target, method, status: a.status, error: a.body.error }).toEqual({ target, method, status, error: code });
    expect(a.headers).toContain("content-type: application/json");
    expect(typeof a.body.message).toBe("string");
  }
  expect(server.running()).toBe(true);
});

/** Opens a client, waits for it to be open, returns it and its close code/reason promise. */
async function openClient(from: number): Promise<{ ws: WebSocket; closed: Promise<{ code: number; reason: string }>; frames: Frame[] }> {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/stream?from=${from}`);
  const frames: Frame[] = [];
  ws.on("message", (d: Buffer) => frames.push(JSON.parse(d.toString()) as Frame));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return { ws, closed, frames };
}

test("the stream is one-way: a text or binary frame closes with 1008, an oversized one with 1009; pings are answered", async () => {
  const head = await append(1, "one-way");
  const text = await openClient(1);
  text.ws.send("hello");
  expect(await text.closed).toEqual({ code: 1008, reason: "the stream is one-way: send no messages" });
  const binary = await openClient(1);
  binary.ws.send(Buffer.from([1, 2, 3]));
  expect((await binary.closed).code).toBe(1008);
  const big = await openClient(1);
  big.ws.send("x".repeat(1000));
  expect((await big.closed).code).toBe(1009);

  // A ping gets its pong, and the subscriber keeps receiving entries.
  const pinger = await openClient(1);
  const pong = new Promise<string>((resolve) => pinger.ws.once("pong", (d: Buffer) => resolve(d.toString())));
  pinger.ws.ping("are you there");
  expect(await pong).toBe("are you there");
  const later = await append(1, "after-ping");
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (pinger.frames.some((f) => f.entry.index === later)) resolve();
      else setTimeout(check, 20);
    };
    check();
  });
  expect(later).toBeGreaterThan(head);
  pinger.ws.terminate();
  expect(server.running()).toBe(true);
});

test("at most 256 subscribers: one more gets 503 JSON with Retry-After; a slot frees when one leaves", async () => {
  const far = 1_000_000_000; // subscribers waiting for a future index: idle, nothing to send
  const clients: WebSocket[] = [];
  try {
    for (let i = 0; i < 256; i++) clients.push((await openClient(far)).ws);
    const a = jsonAnswer(await rawExchange(upgradeRequest(`/v1/stream?from=${far}`)));
    expect(a.status).toBe(503);
    expect(a.body.error).toBe("unavailable");
    expect(a.headers).toContain("retry-after:");
    const gone = clients.pop() as WebSocket;
    const closed = new Promise<void>((resolve) => gone.once("close", () => resolve()));
    gone.close();
    await closed;
    // The server sees the close a moment later: poll (bounded) until the slot is free.
    let again: WebSocket | null = null;
    for (let attempt = 0; attempt < 100 && again === null; attempt++) {
      try {
        again = (await openClient(far)).ws;
      } catch (e) {
        if (!/503/.test((e as Error).message)) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect(again).not.toBeNull();
    clients.push(again as WebSocket);
  } finally {
    for (const c of clients) c.terminate();
  }
});
