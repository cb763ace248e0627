// The HTTP API in-process on a node that signs a checkpoint every 4 entries: GET /v1/checkpoints/latest
// is the stored checkpoint, signed by the node's key (checked with the independent Ed25519 verifier);
// a subject's history carries inclusion proofs against it for the records it covers (null past it);
// /v1/proofs/inclusion without a size proves against a checkpoint; a receipt is served once covered, immutable;
// /v1/checkpoint is a text/plain signed note of the same size and root.
import { hexToBuf, leafHash, verifyCheckpointSig, verifyInclusion, CheckpointPayload } from "../support/independent";
import { HttpResult, http } from "../support/server";
import { InProcessApp, sharedInProcessApp } from "../support/in-process-app";

jest.setTimeout(60_000);

let app: InProcessApp;
let indices: number[] = [];
// One node for the file, a new app over it per test (see sharedInProcessApp); the records are appended once, on the first.
const shared = sharedInProcessApp({ node: { checkpointEvery: 4 } }, async (first) => {
  for (let i = 0; i < 6; i++) {
    const r = await http(first.baseUrl, "POST", "/v1/records", { token: first.adminToken, json: { type: "policy.set", subject: "cp-s", data: { name: "n", value: i } } });
    if (r.status !== 201) throw new Error(`append → ${r.status} ${r.text} (data dir ${first.dir})`);
    indices.push((r.json as { index: number }).index);
  }
  // The checkpoint that covers the 4th record follows its batch: wait for it on the node's apply signal.
  const covered = (): boolean => (first.node.reader.latestCheckpoint()?.size ?? 0) >= indices[3];
  if (!covered()) {
    await new Promise<void>((resolve) => {
      const off = first.node.onApplied(() => {
        if (covered()) {
          off();
          resolve();
        }
      });
    });
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

const get = (p: string): Promise<HttpResult> => http(app.baseUrl, "GET", p);
interface Cp extends CheckpointPayload { index: number; size: number; root: string; signer: string }

test("GET /v1/checkpoints/latest is the node's latest checkpoint, signed by its own key", async () => {
  const r = await get("/v1/checkpoints/latest");
  expect(r.status).toBe(200);
  const cp = r.json as Cp;
  expect(cp).toEqual(JSON.parse(JSON.stringify(app.node.reader.latestCheckpoint())));
  expect(cp.signer).toBe(app.node.nodeId);
  expect(verifyCheckpointSig(cp, app.node.publicKey)).toBe(true);
});

test("history: records the checkpoint covers carry a proof that verifies against its root; later ones carry null", async () => {
  const h = (await get("/v1/subjects/cp-s/history")).json as {
    checkpoint: Cp; records: Array<{ entry: { index: number; hash: string }; inclusion: { index: number; size: number; leaf_hash: string; path: string[]; root: string } | null }>;
  };
  const cp = h.checkpoint;
  expect(cp.size).toBeGreaterThanOrEqual(indices[3]);
  for (const rec of h.records) {
    if (rec.entry.index > cp.size) {
      expect({ index: rec.entry.index, inclusion: rec.inclusion }).toEqual({ index: rec.entry.index, inclusion: null });
      continue;
    }
    const p = rec.inclusion;
    expect(p).not.toBeNull();
    if (p === null) continue;
    expect({ index: p.index, size: p.size, root: p.root, leaf: p.leaf_hash }).toEqual({ index: rec.entry.index, size: cp.size, root: cp.root, leaf: leafHash(hexToBuf(rec.entry.hash)).toString("hex") });
    expect(verifyInclusion(p.index - 1, p.size, hexToBuf(p.leaf_hash), p.path.map(hexToBuf), hexToBuf(p.root))).toBe(true);
  }
  expect(h.records.filter((r) => r.inclusion !== null).length).toBeGreaterThanOrEqual(4);
});

test("GET /v1/proofs/inclusion/:index without a size proves against the first checkpoint covering it, not cacheable", async () => {
  const r = await get(`/v1/proofs/inclusion/${indices[0]}`);
  expect(r.status).toBe(200);
  expect(r.headers.get("cache-control")).toBe("no-store");
  const p = r.json as { index: number; size: number; leaf_hash: string; path: string[]; root: string; checkpoint?: Cp };
  expect(p.checkpoint).toBeDefined();
  expect([p.size, p.root]).toEqual([p.checkpoint?.size, p.checkpoint?.root]);
  expect(p.size).toBeGreaterThanOrEqual(indices[0]);
  expect(verifyInclusion(p.index - 1, p.size, hexToBuf(p.leaf_hash), p.path.map(hexToBuf), hexToBuf(p.root))).toBe(true);
});

test("GET /v1/proofs/consistency without a to proves up to the latest checkpoint, not cacheable; with a to, immutable", async () => {
  const r = await get("/v1/proofs/consistency?from=1");
  expect(r.status).toBe(200);
  expect(r.headers.get("cache-control")).toBe("no-store");
  const p = r.json as { from: number; to: number; checkpoint?: Cp };
  expect(p.to).toBe(p.checkpoint?.size);
  const fixed = await get(`/v1/proofs/consistency?from=1&to=${p.to}`);
  expect([fixed.status, fixed.headers.get("cache-control")]).toEqual([200, "public, max-age=31536000, immutable"]);
});

test("GET /v1/receipts/:index of a covered entry is an immutable JSON receipt for that entry", async () => {
  const r = await get(`/v1/receipts/${indices[0]}`);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  expect(r.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
  expect(r.headers.get("retry-after")).toBeNull();
  const entry = (await get(`/v1/records/${indices[0]}`)).json as { hash: string };
  expect(JSON.stringify(r.json)).toContain(entry.hash);
});

test("GET /v1/checkpoint is the latest checkpoint as a text/plain signed note", async () => {
  const r = await get("/v1/checkpoint");
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  const cp = app.node.reader.latestCheckpoint();
  const lines = r.text.split("\n");
  expect(lines[1]).toBe(String(cp?.size));
  expect(lines[2]).toBe(Buffer.from(hexToBuf(cp?.root ?? "")).toString("base64"));
  expect(r.text).toMatch(/\n\n\u2014 \S+ \S+\n$/);
});
