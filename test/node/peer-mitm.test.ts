// Issue 12, acceptance 2 and 3, on in-process peer transports over real sockets: a man in the
// middle of a plain and of a TLS peer link changes, injects, replays, reorders or drops one frame
// after the handshake; the listener refuses it and drops the link, the dialer redials, and every
// message delivered is one the dialer sent, in order. A relay that terminates TLS (a valid
// signature carried into another TLS session, or into a plain one) is refused at the handshake.
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as tls from "node:tls";
import pino from "pino";
import { PeerTransport, PeerInfo } from "../../src/node/peer-transport";
import { generateKeyPair, KeyPair } from "../../src/ledger/keys";
import { toHex } from "../../src/ledger/bytes";
import { MitmProxy, TAMPERS, closeAllMitm } from "../support/mitm-proxy";
import { selfSignedCert, TestCert } from "../support/certs";
import { cleanupAll, pollUntil } from "../support/server";

jest.setTimeout(60_000);

interface Msg { readonly type: "Ping"; readonly from: string; readonly to: string; readonly n: number; readonly data: Uint8Array }
const isMsg = (v: unknown): v is Msg => typeof v === "object" && v !== null && (v as Msg).type === "Ping";
interface Node { id: string; key: KeyPair; server: http.Server; port: number; t: PeerTransport<Msg>; got: Msg[] }
const logger = pino({ level: "silent" });
const nodes: Node[] = [];
const extraServers: net.Server[] = [];
let cert: TestCert;
let relayCert: TestCert;

beforeAll(() => {
  cert = selfSignedCert("node");
  relayCert = selfSignedCert("relay");
});

/** A node that looks peers up in `view` (read at each dial) and publishes its own address and key into `publish`. */
async function start(id: string, view: Map<string, PeerInfo>, tlsOn: boolean, publish: readonly Map<string, PeerInfo>[]): Promise<Node> {
  const server = tlsOn ? https.createServer({ cert: cert.cert, key: cert.key }, (_q, r) => r.end()) : http.createServer((_q, r) => r.end());
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const port = (server.address() as net.AddressInfo).port;
  const key = generateKeyPair();
  const got: Msg[] = [];
  const t = new PeerTransport<Msg>({
    nodeId: id, clusterId: "c1", secretKey: key.secretKey, peer: (p) => view.get(p), isMessage: isMsg, onMessage: (m) => got.push(m), logger, tls: tlsOn,
  });
  t.attach(server);
  for (const d of publish) d.set(id, { address: `127.0.0.1:${port}`, publicKey: toHex(key.publicKey) });
  const n = { id, key, server, port, t, got };
  nodes.push(n);
  return n;
}

afterEach(async () => {
  await closeAllMitm();
  for (const s of extraServers.splice(0)) s.close();
  for (const n of nodes.splice(0)) {
    n.t.close();
    n.server.closeAllConnections();
    await new Promise<void>((res) => n.server.close(() => res()));
  }
});

afterAll(cleanupAll);

/** What message n carries: bytes that depend on n, so a delivered message can be checked against what was sent. */
const dataOf = (n: number): Uint8Array => new Uint8Array(64).map((_, i) => (n * 31 + i) & 255);
const ping = (n: number): Msg => ({ type: "Ping", from: "a", to: "b", n, data: dataOf(n) });

/** Every delivered message is one that was sent, unchanged, and none comes twice or out of order. */
function expectOnlySentInOrder(got: readonly Msg[]): void {
  for (const m of got) expect({ n: m.n, data: Buffer.from(m.data).toString("hex") }).toEqual({ n: m.n, data: Buffer.from(dataOf(m.n)).toString("hex") });
  const ns = got.map((m) => m.n);
  expect(ns).toEqual([...ns].sort((x, y) => x - y));
  expect(new Set(ns).size).toBe(ns.length);
}

describe.each([
  { mode: "ws" as const, tlsOn: false, at: 3 }, // unit 0 is the auth message: 3 is the third frame after the handshake
  // Finished, the HTTP upgrade and the auth message come first; 3 is the first record of frames
  // (TLS may put several frames in one record, so it is the first record, not a later one).
  { mode: "tls" as const, tlsOn: true, at: 3 },
])("a man in the middle of a $mode peer link", ({ mode, tlsOn, at }) => {
  test.each(TAMPERS)("%s of one frame after the handshake: refused, the link is dropped and comes back, nothing altered is delivered", async (tamper) => {
    const aDir = new Map<string, PeerInfo>();
    const bDir = new Map<string, PeerInfo>();
    const b = await start("b", bDir, tlsOn, [aDir, bDir]);
    const a = await start("a", aDir, tlsOn, [aDir, bDir]);
    const proxy = await MitmProxy.start({ target: b.port, label: "a→b", mode, tamper, at });
    // a dials b through the proxy (b's key stays the configured one).
    aDir.set("b", { address: `127.0.0.1:${proxy.port}`, publicKey: bDir.get("b")?.publicKey as string });

    // First batch: the link opens, and the tamper hits one of these frames.
    for (let n = 0; n < 10; n++) a.t.send(ping(n));
    await pollUntil(`the ${tamper} is done and the tampered link is dropped`, async () => (proxy.stats.tampered === 1 && proxy.stats.connections >= 2 ? true : undefined), 400, 25);
    // Second batch, on the link the dialer re-established: delivered in full.
    for (let n = 100; n < 110; n++) a.t.send(ping(n));
    await pollUntil("the second batch arrives over the new link", async () => (b.got.some((m) => m.n === 109) ? true : undefined), 400, 25);

    expectOnlySentInOrder(b.got);
    expect(b.got.filter((m) => m.n >= 100).map((m) => m.n)).toEqual(Array.from({ length: 10 }, (_, i) => 100 + i));
    // The first batch stops at the tamper: nothing from the tampered unit on gets through that connection.
    const first = b.got.filter((m) => m.n < 100).map((m) => m.n);
    if (mode === "ws") {
      // Unit `at` carries message at - 1. Frames before it arrive, and a replay's original too;
      // from the tampered one on, none does.
      const through = tamper === "replay" ? at : at - 1;
      expect(first).toEqual(Array.from({ length: through }, (_, i) => i));
      expect(b.t.badFrames).toBe(1); // the session tag caught it, not some other check
    } else {
      // TLS's own record protection catches it first (the session tag is the second line). The
      // tampered record was the first of frames: only a replay's original delivers anything, a
      // prefix of the batch (however many frames that record held).
      if (tamper === "replay") {
        expect(first.length).toBeGreaterThan(0);
        expect(first).toEqual(Array.from({ length: first.length }, (_, i) => i));
      } else {
        expect(first).toEqual([]);
      }
      expect(b.t.badFrames).toBe(0);
    }
    expect(proxy.stats.tampered).toBe(1);
  });
});

/** Connects one accepted socket to the target, byte for byte both ways; an error on either side ends both. */
function splice(down: net.Socket, up: net.Socket): void {
  down.on("error", () => up.destroy());
  up.on("error", () => down.destroy());
  down.pipe(up);
  up.pipe(down);
}

async function listenRelay(server: net.Server): Promise<number> {
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  extraServers.push(server);
  return (server.address() as net.AddressInfo).port;
}

/** A relay that terminates TLS from the dialer with its own certificate and opens its own session (TLS or plain) to the listener. */
async function terminatingRelay(targetPort: number, upstreamTls: boolean): Promise<{ port: number; relayed: () => number }> {
  let relayed = 0;
  const server = tls.createServer({ cert: relayCert.cert, key: relayCert.key }, (down) => {
    relayed++;
    splice(down, upstreamTls ? tls.connect({ host: "127.0.0.1", port: targetPort, rejectUnauthorized: false }) : net.connect(targetPort, "127.0.0.1"));
  });
  return { port: await listenRelay(server), relayed: () => relayed };
}

/** A relay that passes the bytes through untouched (the control: the path alone changes nothing). */
function tcpRelay(targetPort: number): Promise<number> {
  return listenRelay(net.createServer((down) => splice(down, net.connect(targetPort, "127.0.0.1"))));
}

describe("a relayed handshake (acceptance 3)", () => {
  async function dialThrough(relayPort: (bPort: number) => Promise<number>, listenerTls: boolean): Promise<{ a: Node; b: Node }> {
    const aDir = new Map<string, PeerInfo>();
    const bDir = new Map<string, PeerInfo>();
    const b = await start("b", bDir, listenerTls, [aDir, bDir]);
    const a = await start("a", aDir, true, [aDir, bDir]);
    const port = await relayPort(b.port);
    aDir.set("b", { address: `127.0.0.1:${port}`, publicKey: bDir.get("b")?.publicKey as string });
    a.t.send(ping(1));
    return { a, b };
  }

  test("control: through a relay that passes TLS through untouched, the dialer gets in", async () => {
    const { b } = await dialThrough((p) => tcpRelay(p), true);
    await pollUntil("the ping arrives", async () => (b.got.length > 0 ? true : undefined), 400, 25);
    expect(b.got.map((m) => m.n)).toEqual([1]);
    expect(b.t.refused).toBe(0);
  });

  test.each([
    { name: "into another TLS session", upstreamTls: true },
    { name: "into a plain connection", upstreamTls: false },
  ])("a relay that terminates TLS and carries the valid signature $name is refused, and nothing is delivered", async ({ upstreamTls }) => {
    let relay: { port: number; relayed: () => number } | null = null;
    const { a, b } = await dialThrough(async (p) => {
      relay = await terminatingRelay(p, upstreamTls);
      return relay.port;
    }, upstreamTls);
    // The dialer keeps redialing; each attempt's signature is valid but bound to the dialer↔relay session.
    await pollUntil("the listener refuses twice", async () => (b.t.refused >= 2 ? true : undefined), 400, 25);
    expect((relay as unknown as { relayed: () => number }).relayed()).toBeGreaterThanOrEqual(2);
    expect(b.got).toEqual([]);
    expect(b.t.inboundCounts().authenticated).toBe(0);
    expect(a.t.dropped()).toBe(0); // the ping still waits in a's queue: never sent over an unproven link
  });
});
