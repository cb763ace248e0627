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
