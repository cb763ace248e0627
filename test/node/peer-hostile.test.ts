// Issue 7: the exact hostile cases against the upgrade endpoints, each followed by "the node is
// still up". First on a real node process (the CLI's wiring: src/api/upgrade.ts in front of
// /v1/raft and /v1/stream), then on an in-process PeerTransport for the limits that need a
// configured key: the pre-authentication byte budget (exact at the edge), the larger frame limit
// after authentication, the cap on unauthenticated connections, and one inbound link per peer.
import * as http from "node:http";
import pino from "pino";
import { cleanupAll, http as request, makeTempDir, pollUntil, startServer, Server } from "../support/server";
import { RawConn, parseServerFrames, upgradeRequest, wsFrame, textFrame, ServerFrame } from "../support/hostile-ws";
import { RaftPeerSocket, closeAllRaftPeers } from "../support/raft-peer";
import { AUTHENTICATED_PER_PEER_MAX, PeerTransport, PeerInfo, PRE_AUTH_BYTES_MAX, RAFT_PATH, UNAUTHENTICATED_MAX } from "../../src/node/peer-transport";
import { routeUpgrades } from "../../src/api/upgrade";
import { generateKeyPair, KeyPair } from "../../src/ledger/keys";
import { toHex } from "../../src/ledger/bytes";

jest.setTimeout(60_000);

/** Bound on waiting for the node to close a connection: the handshake deadline (2 s) plus the 1 s linger, with room. */
const CLOSE_WAIT_MS = 10_000;

const closeCode = (f: ServerFrame | undefined): number | null => (f === undefined || f.opcode !== 8 || f.payload.length < 2 ? null : f.payload.readUInt16BE(0));

afterAll(async () => {
  closeAllRaftPeers();
  await cleanupAll();
});

// ---------------------------------------------------------------- a real node process

describe("a real node's upgrade endpoints", () => {
  // A fresh node per case, so each case fails on its own (before the fix the first one killed the node).
  let server: Server;
  beforeEach(async () => {
    server = await startServer(makeTempDir());
  });
  afterEach(async () => {
    await server?.stop();
  });

  const refusedCount = async (): Promise<number> => {
    const r = await request(server.baseUrl, "GET", "/metrics");
    const m = /^resonetics_peer_connections_refused_total(?:\{[^}]*\})? (\d+)/m.exec(r.text);
    if (m === null) throw new Error(`no refused counter in /metrics: ${r.text.slice(0, 300)}`);
    return Number(m[1]);
  };
  const expectUp = async (): Promise<void> => {
    expect({ running: server.running() }).toEqual({ running: true });
    expect((await request(server.baseUrl, "GET", "/health")).status).toBe(200);
  };
  /** Upgrades to /v1/raft and waits for the node's challenge frame. */
  const raftConn = async (): Promise<RawConn> => {
    const c = await RawConn.connect(server.port);
    await c.write(upgradeRequest({ path: RAFT_PATH }));
    expect(await c.responseStatus()).toBe(101);
    expect(await c.waitFor((b) => parseServerFrames(b).length >= 1, 5000)).toBe(true);
    expect(JSON.parse(parseServerFrames(c.received())[0].payload.toString("utf8"))).toMatchObject({ t: "challenge" });
    return c;
  };
  const refusedAbove = (before: number): Promise<number> =>
    pollUntil(`refused counter above ${before}`, async () => {
      const n = await refusedCount();
      return n > before ? n : undefined;
    }, 100, 50);

  test("a reserved opcode (0x83 0x80 ...) before authentication: close 1002, connection cut, node up", async () => {
    const before = await refusedCount();
    const c = await raftConn();
    await c.write(Buffer.from([0x83, 0x80, 0x01, 0x02, 0x03, 0x04]));
    expect(await c.waitClosed(CLOSE_WAIT_MS)).toBe(true);
    await expectUp();
    expect(closeCode(parseServerFrames(c.received())[1])).toBe(1002);
    await refusedAbove(before);
    c.destroy();
  });

  // Found in review: a refusal's reason quotes what the peer sent, and ws throws on a close reason
  // over 123 bytes of UTF-8; uncut, either frame below killed the process.
  test.each([
    ["an auth frame naming a node of 64 × é", (cluster: string) => JSON.stringify({ t: "auth", node: "é".repeat(64), cluster, nonce: "a".repeat(64), sig: "00" })],
    ["a text frame of 20 × U+FFFF (not JSON; the parser's message quotes it)", () => "\uffff".repeat(20)],
  ])("%s: refused with 4401 and a reason cut to 123 bytes, node up", async (_name, frame) => {
    const before = await refusedCount();
    const c = await raftConn();
    const challenge = JSON.parse(parseServerFrames(c.received())[0].payload.toString("utf8")) as { cluster: string };
    await c.write(textFrame(frame(challenge.cluster)));
    expect(await c.waitClosed(CLOSE_WAIT_MS)).toBe(true);
    await expectUp();
    const close = parseServerFrames(c.received())[1];
    expect(closeCode(close)).toBe(4401);
    expect(close.payload.length - 2).toBeLessThanOrEqual(123);
    await refusedAbove(before);
    c.destroy();
  });

  test("a frame over the pre-authentication limit is cut without being read; a declared 2^63 length is refused at once", async () => {
    const before = await refusedCount();
    const big = await raftConn();
    await big.write(textFrame(JSON.stringify({ t: "auth", pad: "x".repeat(PRE_AUTH_BYTES_MAX) })));
    expect(await big.waitClosed(CLOSE_WAIT_MS)).toBe(true);
    // Cut at the byte budget: no close frame, no "handshake is not for this cluster" answer.
    expect(parseServerFrames(big.received()).length).toBe(1);
    const huge = await raftConn();
    await huge.write(wsFrame({ opcode: 2, payload: Buffer.alloc(16), declaredLength: 1n << 63n, lengthForm: 64 }));
    expect(await huge.waitClosed(CLOSE_WAIT_MS)).toBe(true);
    expect(closeCode(parseServerFrames(huge.received())[1])).toBe(1009);
    await expectUp();
    expect(await refusedAbove(before + 1)).toBeGreaterThanOrEqual(before + 2);
  });

  test("an upgrade to an unknown path gets a JSON 404 and is closed; a wrong handshake gets a JSON 4xx", async () => {
    const cases: Array<{ req: Buffer; status: number; error: string }> = [
      { req: upgradeRequest({ path: "/v1/nope" }), status: 404, error: "not_found" },
      { req: upgradeRequest({ path: "/v1/raft/" }), status: 404, error: "not_found" },
      { req: upgradeRequest({ path: "/v1/%72aft" }), status: 404, error: "not_found" },
      { req: upgradeRequest({ path: "/v1/status" }), status: 404, error: "not_found" },
      { req: upgradeRequest({ path: RAFT_PATH, method: "POST" }), status: 405, error: "method_not_allowed" },
      { req: upgradeRequest({ path: RAFT_PATH, key: "short" }), status: 400, error: "bad_request" },
      { req: upgradeRequest({ path: "/v1/stream?from=1", version: "12" }), status: 400, error: "bad_request" },
      { req: upgradeRequest({ path: RAFT_PATH, upgrade: "h2c" }), status: 400, error: "bad_request" },
    ];
    for (const k of cases) {
      const c = await RawConn.connect(server.port);
      await c.write(k.req);
      const status = await c.responseStatus();
      const head = c.received().toString("latin1").split("\r\n\r\n")[0];
      expect({ status, json: /content-type: application\/json/i.test(head) }).toEqual({ status: k.status, json: true });
      expect(await c.waitClosed(CLOSE_WAIT_MS)).toBe(true);
      expect(JSON.parse(c.responseBody())).toMatchObject({ error: k.error });
      c.destroy();
    }
    await expectUp();
  });

  test("a handshake that never finishes: the node closes it (4401) at its deadline and keeps serving meanwhile", async () => {
    const before = await refusedCount();
    const silent = await raftConn();
    // A truncated HTTP upgrade on another connection holds no peer slot and stalls nothing.
    const truncated = await RawConn.connect(server.port);
    await truncated.write(upgradeRequest({ path: RAFT_PATH }).subarray(0, 40));
    await expectUp();
    expect(await silent.waitClosed(CLOSE_WAIT_MS)).toBe(true);
    const frames = parseServerFrames(silent.received());
    expect(closeCode(frames[1])).toBe(4401);
    expect(frames[1].payload.subarray(2).toString("utf8")).toBe("handshake timed out");
    await refusedAbove(before);
    await expectUp();
    truncated.destroy();
  });
});

// ---------------------------------------------------------------- in-process limits

interface Node { id: string; key: KeyPair; server: http.Server; port: number; t: PeerTransport<Msg>; got: Msg[] }
interface Msg { readonly type: "Ping"; readonly from: string; readonly to: string; readonly data: Uint8Array }
const isMsg = (v: unknown): v is Msg => typeof v === "object" && v !== null && (v as Msg).type === "Ping";
const logger = pino({ level: "silent" });
const nodes: Node[] = [];

async function start(id: string, directory: Map<string, PeerInfo>, key = generateKeyPair()): Promise<Node> {
  const server = http.createServer((_q, r) => r.end());
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const port = (server.address() as { port: number }).port;
  const got: Msg[] = [];
  const t = new PeerTransport<Msg>({
    nodeId: id, clusterId: "c1", secretKey: key.secretKey, peer: (p) => directory.get(p), isMessage: isMsg, onMessage: (m) => got.push(m), logger,
  });
  routeUpgrades(server, new Map([[RAFT_PATH, t]]), logger);
  directory.set(id, { address: `127.0.0.1:${port}`, publicKey: toHex(key.publicKey) });
  const n = { id, key, server, port, t, got };
  nodes.push(n);
  return n;
}

afterEach(async () => {
  closeAllRaftPeers();
  for (const n of nodes.splice(0)) {
    n.t.close();
    n.server.closeAllConnections();
    await new Promise<void>((res) => n.server.close(() => res()));
  }
});

/** An auth message from `from` over the listener's challenge, with `pad` extra characters. */
function authText(peer: RaftPeerSocket, from: KeyPair, fromId: string, pad: number): string {
  return peer.authText(fromId, from.secretKey, "0".repeat(64), { pad: "x".repeat(pad) });
}

describe("the peer transport's limits", () => {
  test("the pre-authentication budget is exact: a signed auth frame just under it is accepted, just over it is cut", async () => {
    const dir = new Map<string, PeerInfo>();
    const b = await start("b", dir);
    const aKey = generateKeyPair();
    dir.set("a", { address: "127.0.0.1:1", publicKey: toHex(aKey.publicKey) });
    const base = authText(await RaftPeerSocket.connect(b.port), aKey, "a", 0).length;
    // A masked client frame of n payload bytes (126..65535) costs n + 8 bytes on the wire.
    const under = await RaftPeerSocket.connect(b.port);
    under.sendText(authText(under, aKey, "a", PRE_AUTH_BYTES_MAX - 8 - base));
    expect(await under.nextMessageOrClose()).toEqual({ message: expect.objectContaining({ t: "ok" }) });
    const over = await RaftPeerSocket.connect(b.port);
    over.sendText(authText(over, aKey, "a", PRE_AUTH_BYTES_MAX - 8 - base + 1));
    expect(await over.nextMessageOrClose()).toEqual({ close: expect.objectContaining({ code: 1006 }) });
  });

  test("after authentication the frame limit is the Raft one: a 1 MiB message is delivered", async () => {
    const dir = new Map<string, PeerInfo>();
    const a = await start("a", dir);
    const b = await start("b", dir);
    const data = new Uint8Array(1 << 20).map((_, i) => i & 255);
    a.t.send({ type: "Ping", from: "a", to: "b", data });
    await pollUntil("b got the 1 MiB ping", async () => (b.got.length > 0 ? true : undefined), 200, 25);
    expect(Buffer.from(b.got[0].data).equals(Buffer.from(data))).toBe(true);
    expect(b.t.refused).toBe(0);
  });

  test(`with ${UNAUTHENTICATED_MAX} silent strangers mid-handshake, an honest peer still gets in: the oldest stranger is cut (counted)`, async () => {
    const dir = new Map<string, PeerInfo>();
    const b = await start("b", dir);
    const aKey = generateKeyPair();
    dir.set("a", { address: "127.0.0.1:1", publicKey: toHex(aKey.publicKey) });
    const silent: RaftPeerSocket[] = [];
    for (let i = 0; i < UNAUTHENTICATED_MAX; i++) silent.push(await RaftPeerSocket.connect(b.port));
    expect(b.t.inboundCounts().unauthenticated).toBe(UNAUTHENTICATED_MAX);
    const honest = await RaftPeerSocket.connect(b.port);
    expect(await silent[0].nextMessageOrClose()).toEqual({ close: expect.objectContaining({ code: 1006 }) });
    honest.sendText(authText(honest, aKey, "a", 0));
    expect(await honest.nextMessageOrClose()).toEqual({ message: expect.objectContaining({ t: "ok" }) });
    expect(b.t.refused).toBe(1);
    expect(silent.slice(1).map((x) => x.isOpen())).toEqual(silent.slice(1).map(() => true));
    expect(b.t.inboundCounts()).toEqual({ unauthenticated: UNAUTHENTICATED_MAX - 1, authenticated: 1 });
  });

  test(`at most ${AUTHENTICATED_PER_PEER_MAX} authenticated inbound connections per peer: one more cuts the oldest`, async () => {
    const dir = new Map<string, PeerInfo>();
    const b = await start("b", dir);
    const aKey = generateKeyPair();
    dir.set("a", { address: "127.0.0.1:1", publicKey: toHex(aKey.publicKey) });
    const socks: RaftPeerSocket[] = [];
    for (let i = 0; i <= AUTHENTICATED_PER_PEER_MAX; i++) {
      const s = await RaftPeerSocket.connect(b.port);
      s.sendAuth("a", aKey.secretKey, String(i).repeat(64));
      expect(await s.nextMessageOrClose()).toEqual({ message: expect.objectContaining({ t: "ok" }) });
      socks.push(s);
    }
    await socks[0].closed;
    expect(socks.slice(1).map((s) => s.isOpen())).toEqual(socks.slice(1).map(() => true));
    await pollUntil("the cut connection is forgotten", async () => (b.t.inboundCounts().authenticated === AUTHENTICATED_PER_PEER_MAX ? true : undefined), 200, 25);
    expect(b.t.inboundCounts()).toEqual({ unauthenticated: 0, authenticated: AUTHENTICATED_PER_PEER_MAX });
  });
});
