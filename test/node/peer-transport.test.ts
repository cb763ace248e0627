import * as http from "node:http";
import pino from "pino";
import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import { PeerTransport, PeerInfo, RAFT_PATH } from "../../src/node/peer-transport";
import { generateKeyPair, KeyPair, sign } from "../../src/ledger/keys";
import { toHex } from "../../src/ledger/bytes";
import { decodeFrame, encodeFrame } from "../../src/node/peer-codec";
import { dialerAuthMessage, PeerTranscript, x25519 } from "../support/raft-peer";

interface Msg { readonly type: "Ping"; readonly from: string; readonly to: string; readonly n: number; readonly data: Uint8Array }
const isMsg = (v: unknown): v is Msg => typeof v === "object" && v !== null && (v as Msg).type === "Ping";

interface Node { id: string; key: KeyPair; server: http.Server; port: number; t: PeerTransport<Msg>; got: Msg[] }
const logger = pino({ level: "silent" });
const nodes: Node[] = [];

async function start(id: string, cluster: string, directory: () => Map<string, PeerInfo>, key = generateKeyPair()): Promise<Node> {
  const server = http.createServer((_q, r) => r.end());
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const port = (server.address() as { port: number }).port;
  const got: Msg[] = [];
  const waiters: Array<() => void> = [];
  const t = new PeerTransport<Msg>({
    nodeId: id, clusterId: cluster, secretKey: key.secretKey, peer: (p) => directory().get(p), isMessage: isMsg,
    onMessage: (m) => {
      got.push(m);
      waiters.splice(0).forEach((w) => w());
    },
    logger, handshakeTimeoutMs: 2000,
  });
  t.attach(server);
  const n = { id, key, server, port, t, got };
  nodes.push(n);
  return n;
}

afterEach(async () => {
  for (const n of nodes.splice(0)) {
    n.t.close();
    n.server.closeAllConnections();
    await new Promise<void>((res) => n.server.close(() => res()));
  }
});

/** Waits (bounded by count of event-loop turns with timers) until cond holds. */
async function until(cond: () => boolean, what: string, limitMs = 5000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What a hand-written dialer saw: the listener's "ok" (authenticated) or its close code and reason. */
interface RawDial { readonly ok: boolean; readonly code: number | null; readonly reason: string }

/**
 * Dials port as node `from` of cluster `cluster`, answering the listener's challenge with a
 * signature by `key` over the documented v2 transcript, written by hand (test/support/raft-peer.ts)
 * so the test can claim any cluster with a valid signature (a real PeerTransport refuses to try).
 */
function rawDial(port: number, from: string, cluster: string, key: KeyPair): Promise<RawDial> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${RAFT_PATH}`, { perMessageDeflate: false });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`raw dial as ${from}@${cluster}: no answer within 5 s`));
    }, 5000);
    const kx = x25519();
    ws.on("message", (data) => {
      const v = JSON.parse(data.toString()) as { t: string; node: string; nonce: string; kx: string };
      if (v.t === "challenge") {
        const nonce = randomBytes(32).toString("hex");
        const t: PeerTranscript = { cluster, dialer: from, listener: v.node, listenerNonce: v.nonce, listenerKx: v.kx, dialerNonce: nonce, dialerKx: kx.publicHex, binding: "none" };
        ws.send(JSON.stringify({ t: "auth", node: from, cluster, nonce, kx: kx.publicHex, sig: toHex(sign(dialerAuthMessage(t), key.secretKey)) }));
      } else if (v.t === "ok") {
        clearTimeout(timer);
        ws.terminate();
        resolve({ ok: true, code: null, reason: "" });
      }
    });
    ws.on("close", (code, reason) => {
      clearTimeout(timer);
      resolve({ ok: false, code, reason: reason.toString() });
    });
    ws.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

describe("peer transport", () => {
  test("frames carry bytes exactly", () => {
    const m = { type: "Ping", from: "a", to: "b", n: 1, data: new Uint8Array([0, 1, 255]) };
    expect(decodeFrame(encodeFrame(m))).toEqual(m);
  });

  test("authenticated peers exchange messages in order", async () => {
    const dir = new Map<string, PeerInfo>();
    const a = await start("a", "c1", () => dir);
    const b = await start("b", "c1", () => dir);
    dir.set("a", { address: `127.0.0.1:${a.port}`, publicKey: toHex(a.key.publicKey) });
    dir.set("b", { address: `127.0.0.1:${b.port}`, publicKey: toHex(b.key.publicKey) });
    for (let n = 0; n < 100; n++) a.t.send({ type: "Ping", from: "a", to: "b", n, data: new Uint8Array([n]) });
    await until(() => b.got.length === 100, "100 messages at b");
    expect(b.got.map((m) => m.n)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(b.got[7].data).toEqual(new Uint8Array([7]));
  });

  test("a dialer without a configured key is refused and delivers nothing", async () => {
    const dir = new Map<string, PeerInfo>();
    const b = await start("b", "c1", () => dir);
    const stranger = generateKeyPair();
    // The stranger claims to be "a", whose configured key is someone else's.
    const aDir = new Map<string, PeerInfo>([["b", { address: `127.0.0.1:${b.port}`, publicKey: toHex(b.key.publicKey) }]]);
    const a = await start("a", "c1", () => aDir, stranger);
    dir.set("a", { address: `127.0.0.1:${a.port}`, publicKey: toHex(generateKeyPair().publicKey) });
    a.t.send({ type: "Ping", from: "a", to: "b", n: 1, data: new Uint8Array() });
    await until(() => b.t.refused >= 1, "b refuses a");
    expect(b.got).toEqual([]);
  });

  test("a node not in the configuration, or of another cluster, is refused", async () => {
    const dir = new Map<string, PeerInfo>();
    const b = await start("b", "c1", () => dir);
    const bInfo = { address: `127.0.0.1:${b.port}`, publicKey: toHex(b.key.publicKey) };

    // Control: the hand-written dialer, as a configured member of c1, is accepted; so the refusals
    // below are about the cluster or the configuration, not about the dialer.
    const member = generateKeyPair();
    dir.set("m", { address: "127.0.0.1:1", publicKey: toHex(member.publicKey) });
    expect(await rawDial(b.port, "m", "c1", member)).toEqual({ ok: true, code: null, reason: "" });
    expect(b.t.refused).toBe(0);

    // Not in the configuration: x of the same cluster, unknown to b.
    const x = await start("x", "c1", () => new Map([["b", bInfo]]));
    x.t.send({ type: "Ping", from: "x", to: "b", n: 1, data: new Uint8Array() });
    await until(() => b.t.refused >= 1, "b refuses x");
    expect(b.got).toEqual([]);
    // x redials with backoff; stop it and let its last attempt end, so the count below is ours alone.
    x.t.close();
    await until(() => b.t.inboundCounts().unauthenticated === 0, "x's last dial ends");
    const unknown = generateKeyPair();
    expect(await rawDial(b.port, "u", "c1", unknown)).toEqual({ ok: false, code: 4401, reason: 'node "u" is not in the configuration' });

    // Of another cluster: a configured member's own key and a valid signature, but made for
    // cluster c2. The listener refuses it for that reason (not for a bad signature: the cluster
    // check comes first), and nothing is delivered.
    const refusedBefore = b.t.refused;
    expect(await rawDial(b.port, "m", "c2", member)).toEqual({ ok: false, code: 4401, reason: "handshake is not for this cluster" });
    expect(b.t.refused).toBe(refusedBefore + 1);
    expect(b.got).toEqual([]);
  });

  test("a listener that cannot prove the dialed peer's key gets no frames", async () => {
    const dir = new Map<string, PeerInfo>();
    const impostor = await start("b", "c1", () => dir);
    const a = await start("a", "c1", () => dir);
    dir.set("a", { address: `127.0.0.1:${a.port}`, publicKey: toHex(a.key.publicKey) });
    // a believes b has another key: the impostor at b's address fails the reply signature.
    dir.set("b", { address: `127.0.0.1:${impostor.port}`, publicKey: toHex(generateKeyPair().publicKey) });
    a.t.send({ type: "Ping", from: "a", to: "b", n: 1, data: new Uint8Array() });
    // a waits for the listener's proof before it sends anything, so the frame never leaves.
    await until(() => a.t.authFailures >= 1, "a rejects the impostor");
    expect(impostor.got).toEqual([]);
  });

  test("a peer's send queue is bounded in bytes too: past maxQueuedBytes frames are dropped (counted), and what was queued is delivered in order", async () => {
    const dir = new Map<string, PeerInfo>();
    const b = await start("b", "c1", () => dir);
    const key = generateKeyPair();
    const a = new PeerTransport<Msg>({
      nodeId: "a", clusterId: "c1", secretKey: key.secretKey, peer: (p) => dir.get(p), isMessage: isMsg, onMessage: () => undefined,
      logger, maxQueuedBytes: 64 * 1024,
    });
    // b is not in a's directory yet: a queues and cannot send.
    const data = new Uint8Array(10_000); // ~13 KB of base64 per frame: four fit in 64 KB, the fifth does not
    for (let n = 0; n < 6; n++) a.send({ type: "Ping", from: "a", to: "b", n, data });
    expect(a.dropped()).toBe(2);
    dir.set("a", { address: "127.0.0.1:1", publicKey: toHex(key.publicKey) });
    dir.set("b", { address: `127.0.0.1:${b.port}`, publicKey: toHex(b.key.publicKey) });
    await until(() => b.got.length === 4, "the 4 queued frames at b");
    expect(b.got.map((m) => m.n)).toEqual([0, 1, 2, 3]);
    // Drained, the queue takes frames again.
    a.send({ type: "Ping", from: "a", to: "b", n: 9, data });
    await until(() => b.got.length === 5, "a frame after the drain");
    expect(a.dropped()).toBe(2);
    a.close();
  });
});
