import * as http from "node:http";
import pino from "pino";
import WebSocket from "ws";
import { EntryStream } from "../../src/api/stream";
import { startInProcessApp } from "../support/in-process-app";
import { http as request } from "../support/server";

jest.setTimeout(60_000);

test("prune experiment", async () => {
  const app = await startInProcessApp({ node: { snapshotEvery: 5 } });
  const t0 = Date.now();
  try {
    for (let i = 0; i < 12; i++) {
      const r = await request(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, json: { type: "policy.set", subject: "p", data: { name: "n", value: i } } });
      expect(r.status).toBe(201);
    }
    console.log("appended", Date.now() - t0, app.node.reader.lastApplied());
    for (let i = 0; i < 400 && app.node.reader.snapshots().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    console.log("snaps", JSON.stringify(app.node.reader.snapshots().map((s) => s.index)), Date.now() - t0);
    const anchor = Math.max(...app.node.reader.snapshots().map((s) => s.index));
    const pr = await request(app.baseUrl, "POST", "/v1/admin/prune", { token: app.adminToken, json: { below: anchor + 1 } });
    console.log("prune", pr.status, pr.text);
    for (let i = 0; i < 100 && app.node.reader.historyFrom() === 1; i++) await new Promise((r) => setTimeout(r, 10));
    console.log("historyFrom", app.node.reader.historyFrom(), Date.now() - t0);
    const stream = new EntryStream(app.node.reader, app.node, pino({ level: "silent" }));
    const server = http.createServer();
    server.on("upgrade", (req, socket, head) => stream.handleUpgrade(req, socket, head));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    for (const from of [1, 2, anchor - 1, anchor, anchor + 1]) {
      const got: number[] = [];
      const r = await new Promise<string>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream?from=${from}`);
        ws.on("message", (d: Buffer) => { got.push(JSON.parse(d.toString()).entry.index); if (got.length > 3) { ws.terminate(); resolve("ok"); } });
        ws.on("close", (c, reason) => resolve(`${c} ${reason.toString()}`));
      });
      console.log(from, r, got);
    }
    stream.close();
    server.closeAllConnections();
    server.close();
  } finally {
    await app.close();
  }
});
