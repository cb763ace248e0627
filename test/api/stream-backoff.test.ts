// Issue 9: a node short of CPU keeps its Raft ticks on time. The stream pump (src/api/stream.ts)
// takes its next turn of a backlog at once while the node's ticks fire on time, and pauses one turn
// (a 4 ms timer) while the latest tick fired 10 ms late or more; either way a subscriber from=1 gets
// every entry, in order. In this process: a real node (test/support/in-process-app.ts) and the
// EntryStream over its reader, with the node's tick lateness overridden per test.
import * as http from "node:http";
import pino from "pino";
import WebSocket from "ws";
import { EntryStream } from "../../src/api/stream";
import type { NodeInfo } from "../../src/node/ports";
import { InProcessApp, sharedInProcessApp } from "../support/in-process-app";
import { http as request } from "../support/server";

jest.setTimeout(60_000);

const RECORDS = 300;
let app: InProcessApp;

// One node for the file, a new app over it per test (see sharedInProcessApp); the records are appended once, on the first.
const shared = sharedInProcessApp({}, async (first) => {
  for (let i = 0; i < RECORDS; i++) {
    const r = await request(first.baseUrl, "POST", "/v1/records", { token: first.adminToken, json: { type: "policy.set", subject: `b${i % 7}`, data: { name: "n", value: i } } });
    if (r.status !== 201) throw new Error(`append → ${r.status} ${r.text}`);
  }
});
beforeEach(async () => {
  app = await shared.open();
});
afterEach(async () => {
  await app?.close();
});
afterAll(async () => {
  await shared.close();
});

/** Subscribes from=1 to a stream whose node reports its ticks `lateMs` late; resolves with the indices received up to `upTo`. */
async function drain(lateMs: number, upTo: number): Promise<number[]> {
  const node: NodeInfo = new Proxy(app.node as unknown as NodeInfo, {
    // No tick due during the test: only the lateness decides (loop-share.ts's tests cover the tick waits).
    get: (target, prop, receiver) =>
      prop === "tickLateMs" ? () => lateMs : prop === "tickDueInMs" ? () => Number.POSITIVE_INFINITY : Reflect.get(target, prop, receiver),
  });
  const stream = new EntryStream(app.node.reader, node, pino({ level: "silent" }));
  const server = http.createServer();
  server.on("upgrade", (req, socket, head) => stream.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const got: number[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream?from=1`);
      ws.on("message", (data: Buffer) => {
        got.push((JSON.parse(data.toString("utf8")) as { entry: { index: number } }).entry.index);
        if (got[got.length - 1] >= upTo) {
          ws.close();
          resolve();
        }
      });
      ws.on("error", reject);
      ws.on("close", (code) => (got[got.length - 1] >= upTo ? resolve() : reject(new Error(`closed ${code} after ${got.length} entries`))));
    });
  } finally {
    stream.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  return got;
}

test.each([
  ["on time (0 ms late): the pump never pauses", 0, false],
  ["late (50 ms): the pump pauses 4 ms between turns", 50, true],
])("ticks %s, and the subscriber gets every entry in order", async (_name, lateMs, pauses) => {
  const upTo = app.node.reader.lastApplied();
  expect(upTo).toBeGreaterThan(RECORDS);
  const timers = jest.spyOn(global, "setTimeout");
  try {
    const got = await drain(lateMs, upTo);
    expect(got).toEqual(Array.from({ length: upTo }, (_, i) => i + 1));
    // The pump's pauses: a 4 ms timer whose callback queues the next turn (loop-share.ts afterSlice; the node's own tick timer is another).
    const pauseCalls = timers.mock.calls.filter((c) => c[1] === 4 && String(c[0]).includes("setImmediate(next)")).length;
    expect(pauseCalls > 0).toBe(pauses);
  } finally {
    timers.mockRestore();
  }
});
