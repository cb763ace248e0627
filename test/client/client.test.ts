import * as http from "node:http";
import { LedgerClient, ClientError } from "../../src/client/client";
import { cleanupAll, makeTempDir, startServer, Server } from "../support/server";
import { CheckpointPayload, hexToBuf, leafHash, merkleRoot, verifyCheckpointSig, verifyConsistency, verifyInclusion } from "../support/independent";

jest.setTimeout(60_000);

let server: Server;
beforeAll(async () => {
  server = await startServer(makeTempDir(), { extraArgs: ["--checkpoint-every", "5"] });
});
afterAll(async () => {
  await server.stop();
  await cleanupAll();
});

const rec = (i: number) => ({ type: "policy.set", subject: "c", data: { name: "n", value: i } });

describe("LedgerClient against a real node", () => {
  test("appends, then fetches and verifies entries and proofs", async () => {
    const c = new LedgerClient({ urls: [server.baseUrl], token: server.token });
    const acks = [];
    for (let i = 0; i < 12; i++) acks.push(await c.append(rec(i)));
    for (const a of acks) expect((await c.entry(a.index)).hash).toBe(a.hash);
    const status = await c.status();
    const cp = await c.latestCheckpoint(String(status.public_key));
    // What the client returned as verified, checked again with the independent code: the
    // checkpoint's signature and root over the entries it covers, the inclusion proof of the first
    // acknowledged record, and the consistency proof from size 2 against both independent roots.
    expect(verifyCheckpointSig(cp as CheckpointPayload, String(status.public_key))).toBe(true);
    expect(cp.size).toBeGreaterThanOrEqual(5); // --checkpoint-every 5, and 12 records were acknowledged
    const leaves = [];
    for (let i = 1; i <= cp.size; i++) leaves.push(leafHash(hexToBuf((await c.entry(i)).hash)));
    expect(merkleRoot(leaves).toString("hex")).toBe(cp.root);
    const p = await c.inclusion(acks[0].index, cp.size);
    expect({ index: p.index, size: p.size, root: p.root }).toEqual({ index: acks[0].index, size: cp.size, root: cp.root });
    expect(verifyInclusion(acks[0].index - 1, cp.size, leaves[acks[0].index - 1], p.path.map(hexToBuf), hexToBuf(cp.root))).toBe(true);
    const k = await c.consistency(2, cp.size);
    expect({ from: k.from, to: k.to, root_from: k.root_from, root_to: k.root_to }).toEqual({
      from: 2,
      to: cp.size,
      root_from: merkleRoot(leaves, 2).toString("hex"),
      root_to: cp.root,
    });
    expect(verifyConsistency(2, cp.size, k.path.map(hexToBuf), merkleRoot(leaves, 2), hexToBuf(cp.root))).toBe(true);
  });

  test("a retry of the same logical append returns the original acknowledgement", async () => {
    const c = new LedgerClient({ urls: [server.baseUrl], token: server.token });
    const a = await c.append(rec(100), "client-test-key");
    const b = await c.append(rec(100), "client-test-key");
    expect(b).toEqual(a);
    await expect(c.append(rec(101), "client-test-key")).rejects.toMatchObject({ status: 409, code: "idempotency_conflict" });
  });

  test("follows a 307 to the node named in Location, keeping the token", async () => {
    // A stand-in follower: answers every request with a redirect to the real node.
    const follower = http.createServer((req, res) => {
      res.writeHead(307, { Location: `${server.baseUrl}${req.url ?? "/"}`, "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: "not_leader", leader: "n1" }));
    });
    await new Promise<void>((r) => follower.listen(0, "127.0.0.1", r));
    const port = (follower.address() as { port: number }).port;
    try {
      const c = new LedgerClient({ urls: [`http://127.0.0.1:${port}`], token: server.token });
      const ack = await c.append(rec(200));
      expect((await c.entry(ack.index)).hash).toBe(ack.hash);
    } finally {
      follower.closeAllConnections();
      await new Promise<void>((r) => follower.close(() => r()));
    }
  });

  test("a redirect to a Location that is no URL is a bad_redirect, not a crash", async () => {
    const follower = http.createServer((_req, res) => {
      res.writeHead(307, { Location: "http://[::1", "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: "not_leader", leader: "n1" }));
    });
    await new Promise<void>((r) => follower.listen(0, "127.0.0.1", r));
    const port = (follower.address() as { port: number }).port;
    try {
      const c = new LedgerClient({ urls: [`http://127.0.0.1:${port}`], token: server.token, maxAttempts: 1 });
      await expect(c.append(rec(301))).rejects.toMatchObject({ status: 307, code: "bad_redirect", message: `http://127.0.0.1:${port} redirected to "http://[::1", which is no URL` });
    } finally {
      follower.closeAllConnections();
      await new Promise<void>((r) => follower.close(() => r()));
    }
  });

  test("a redirect to another scheme is not followed with the token", async () => {
    let tokenSeen: string | undefined = "none yet";
    const target = http.createServer((req, res) => {
      tokenSeen = req.headers.authorization;
      res.end("{}");
    });
    await new Promise<void>((r) => target.listen(0, "127.0.0.1", r));
    const targetPort = (target.address() as { port: number }).port;
    // An https "follower" is not at hand here; a relative check is the same: an http node pointing at ws:// (another scheme).
    const follower = http.createServer((_req, res) => {
      res.writeHead(307, { Location: `ws://127.0.0.1:${targetPort}/v1/records`, "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: "not_leader", leader: "n1" }));
    });
    await new Promise<void>((r) => follower.listen(0, "127.0.0.1", r));
    const port = (follower.address() as { port: number }).port;
    try {
      const c = new LedgerClient({ urls: [`http://127.0.0.1:${port}`], token: server.token, maxAttempts: 1 });
      await expect(c.append(rec(300))).rejects.toMatchObject({ status: 307, code: "bad_redirect" });
      expect(tokenSeen).toBe("none yet");
    } finally {
      for (const s of [follower, target]) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
    }
  });

  test("a tampered answer fails verification", async () => {
    // A proxy that flips one hex digit of every inclusion path element it relays.
    const liar = http.createServer(async (req, res) => {
      const upstream = await fetch(server.baseUrl + (req.url ?? "/"));
      let body = await upstream.text();
      if ((req.url ?? "").startsWith("/v1/proofs/inclusion")) body = body.replace(/"path":\["([0-9a-f])/, (_m, d: string) => `"path":["${d === "0" ? "1" : "0"}`);
      if ((req.url ?? "").startsWith("/v1/records/")) body = body.replace(/"payload_b64":"./, '"payload_b64":"A');
      res.writeHead(upstream.status, { "Content-Type": "application/json" });
      res.end(body);
    });
    await new Promise<void>((r) => liar.listen(0, "127.0.0.1", r));
    const port = (liar.address() as { port: number }).port;
    try {
      const c = new LedgerClient({ urls: [`http://127.0.0.1:${port}`] });
      await expect(c.entry(3)).rejects.toBeInstanceOf(ClientError);
      const honest = new LedgerClient({ urls: [server.baseUrl] });
      const e = await honest.entry(3);
      expect(e.index).toBe(3);
    } finally {
      liar.closeAllConnections();
      await new Promise<void>((r) => liar.close(() => r()));
    }
  });
});
