/**
 * Peer transport: one persistent outbound WebSocket per peer on its /v1/raft endpoint, carrying
 * frames one way (this node → peer); inbound connections carry the peers' frames to us.
 * Each connection starts with a mutual Ed25519 challenge-response: the dialer proves it holds the
 * key of a node in the current configuration, and the listener proves it is the peer dialed.
 * Send queues are bounded: a slow or absent peer loses frames (Raft retransmits), never memory.
 */
import type * as http from "node:http";
import type { Duplex } from "node:stream";
import { randomBytes } from "node:crypto";
import WebSocket, { WebSocketServer } from "ws";
import type { Logger } from "pino";
import { sign, verifySignature } from "../ledger/keys";
import { fromHex, toHex, utf8 } from "../ledger/bytes";
import { decodeFrame, encodeFrame } from "./peer-codec";

export const RAFT_PATH = "/v1/raft";

export interface PeerInfo {
  readonly address: string;
  readonly publicKey: string;
}

export interface PeerTransportOptions<M extends { readonly to: string; readonly from: string }> {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly secretKey: Uint8Array;
  /** The peer's address and key in the current configuration (undefined: not a member). */
  readonly peer: (id: string) => PeerInfo | undefined;
  readonly onMessage: (msg: M) => void;
  /** Checks a decoded frame is a message; false drops it and the connection. */
  readonly isMessage: (value: unknown) => value is M;
  readonly logger: Logger;
  readonly maxQueuedFrames?: number;
  readonly maxBufferedBytes?: number;
  readonly handshakeTimeoutMs?: number;
}

interface Challenge { t: "challenge"; node: string; cluster: string; nonce: string }
interface Auth { t: "auth"; node: string; cluster: string; nonce: string; sig: string }
interface AuthOk { t: "ok"; sig: string }

const dialerMessage = (cluster: string, from: string, to: string, nonce: string): Uint8Array =>
  utf8(`resonetics/peer-auth/v1\n${cluster}\n${from}\n${to}\n${nonce}`);
const listenerMessage = (cluster: string, from: string, to: string, nonce: string): Uint8Array =>
  utf8(`resonetics/peer-auth-reply/v1\n${cluster}\n${from}\n${to}\n${nonce}`);

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const HEX64 = /^[0-9a-f]{64}$/;

function verifyHex(sigHex: unknown, message: Uint8Array, keyHex: string): boolean {
  if (typeof sigHex !== "string") return false;
  const sig = fromHex(sigHex);
  const key = fromHex(keyHex);
  return sig !== null && key !== null && verifySignature(sig, message, key);
}

/** Outbound link to one peer: connect, authenticate, drain the queue; reconnect with backoff. */
class PeerLink {
  private ws: WebSocket | null = null;
  private ready = false;
  private queue: string[] = [];
  private backoffMs = 50;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  dropped = 0;
  private readonly afterWrite = (err?: Error): void => {
    if (err === undefined && this.queue.length > 0) this.drain();
  };

  constructor(private readonly id: string, private readonly t: PeerTransport<never>) {
    this.connect();
  }

  send(frame: string): void {
    if (this.queue.length >= this.t.maxQueuedFrames) {
      this.dropped++;
      return;
    }
    this.queue.push(frame);
    this.drain();
  }

  private drain(): void {
    const ws = this.ws;
    if (!this.ready || ws === null) return;
    // Each write's callback drains again, so a socket that was full takes more once it empties.
    while (this.queue.length > 0 && ws.bufferedAmount < this.t.maxBufferedBytes) ws.send(this.queue.shift() as string, this.afterWrite);
  }

  private connect(): void {
    if (this.closed) return;
    const info = this.t.opts.peer(this.id);
    if (info === undefined) {
      this.retry();
      return;
    }
    const ws = new WebSocket(`ws://${info.address}${RAFT_PATH}`, { perMessageDeflate: false, handshakeTimeout: this.t.handshakeTimeoutMs });
    this.ws = ws;
    const myNonce = toHex(randomBytes(32));
    const deadline = setTimeout(() => ws.terminate(), this.t.handshakeTimeoutMs);
    let stage: "challenge" | "ok" | "open" = "challenge";
    ws.on("message", (data) => {
      let v: unknown;
      try {
        v = JSON.parse(data.toString());
      } catch (err) {
        this.t.log.warn({ peer: this.id, err }, "peer sent a malformed handshake frame");
        ws.terminate();
        return;
      }
      if (stage === "challenge") {
        const c = v as Partial<Challenge>;
        if (!isObj(v) || c.t !== "challenge" || c.node !== this.id || c.cluster !== this.t.opts.clusterId || typeof c.nonce !== "string" || !HEX64.test(c.nonce)) {
          this.t.log.warn({ peer: this.id, got: isObj(v) ? v.node : undefined }, "peer at this address is not the node dialed");
          ws.terminate();
          return;
        }
        const sig = toHex(sign(dialerMessage(this.t.opts.clusterId, this.t.opts.nodeId, this.id, c.nonce), this.t.opts.secretKey));
        const auth: Auth = { t: "auth", node: this.t.opts.nodeId, cluster: this.t.opts.clusterId, nonce: myNonce, sig };
        ws.send(JSON.stringify(auth));
        stage = "ok";
      } else if (stage === "ok") {
        const ok = v as Partial<AuthOk>;
        const msg = listenerMessage(this.t.opts.clusterId, this.id, this.t.opts.nodeId, myNonce);
        if (!isObj(v) || ok.t !== "ok" || !verifyHex(ok.sig, msg, info.publicKey)) {
          this.t.log.warn({ peer: this.id }, "peer failed to prove its key; dropping the connection");
          this.t.authFailures++;
          ws.terminate();
          return;
        }
        clearTimeout(deadline);
        stage = "open";
        this.ready = true;
        this.backoffMs = 50;
        this.drain();
      }
    });
    ws.on("close", () => {
      clearTimeout(deadline);
      this.ready = false;
      this.ws = null;
      this.retry();
    });
    ws.on("error", (err) => {
      this.t.log.debug({ peer: this.id, err: err.message }, "peer connection error");
    });
  }

  private retry(): void {
    if (this.closed || this.timer !== null) return;
    const wait = this.backoffMs * (0.5 + Math.random());
    this.backoffMs = Math.min(this.backoffMs * 2, 2000);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, wait);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.ws?.terminate();
    this.queue = [];
  }
}

export class PeerTransport<M extends { readonly to: string; readonly from: string }> {
  readonly log: Logger;
  readonly maxQueuedFrames: number;
  readonly maxBufferedBytes: number;
  readonly handshakeTimeoutMs: number;
  private readonly links = new Map<string, PeerLink>();
  private readonly wss: WebSocketServer;
  private readonly inbound = new Set<WebSocket>();
  /** Inbound connections refused. */
  refused = 0;
  /** Outbound connections whose listener failed to prove the dialed peer's key. */
  authFailures = 0;
  private closed = false;

  constructor(readonly opts: PeerTransportOptions<M>) {
    this.log = opts.logger;
    this.maxQueuedFrames = opts.maxQueuedFrames ?? 4096;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 8 * 1024 * 1024;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 5000;
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  }

  /** Takes over upgrades to /v1/raft on the node's HTTP server. */
  attach(server: http.Server): void {
    server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      if ((req.url ?? "").split("?")[0] !== RAFT_PATH) return;
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, req.socket.remoteAddress ?? "?"));
    });
  }

  /** Queues msg for msg.to; dropped when the peer's queue is full or the transport is closed. */
  send(msg: M): void {
    if (this.closed) return;
    let link = this.links.get(msg.to);
    if (link === undefined) {
      link = new PeerLink(msg.to, this as unknown as PeerTransport<never>);
      this.links.set(msg.to, link);
    }
    link.send(encodeFrame(msg));
  }

  /** Drops the link to a peer that left the configuration. */
  forget(id: string): void {
    this.links.get(id)?.close();
    this.links.delete(id);
  }

  dropped(): number {
    let n = 0;
    for (const l of this.links.values()) n += l.dropped;
    return n;
  }

  private accept(ws: WebSocket, remote: string): void {
    if (this.closed) {
      ws.terminate();
      return;
    }
    this.inbound.add(ws);
    ws.on("close", () => this.inbound.delete(ws));
    const nonce = toHex(randomBytes(32));
    let peer: string | null = null;
    const deadline = setTimeout(() => {
      if (peer === null) this.refuse(ws, remote, "handshake timed out");
    }, this.handshakeTimeoutMs);
    const challenge: Challenge = { t: "challenge", node: this.opts.nodeId, cluster: this.opts.clusterId, nonce };
    ws.send(JSON.stringify(challenge));
    ws.on("message", (data) => {
      if (peer === null) {
        clearTimeout(deadline);
        let v: unknown;
        try {
          v = JSON.parse(data.toString());
        } catch {
          this.refuse(ws, remote, "malformed handshake");
          return;
        }
        const a = v as Partial<Auth>;
        if (!isObj(v) || a.t !== "auth" || typeof a.node !== "string" || a.cluster !== this.opts.clusterId || typeof a.nonce !== "string" || !HEX64.test(a.nonce)) {
          this.refuse(ws, remote, "handshake is not for this cluster");
          return;
        }
        const info = this.opts.peer(a.node);
        if (info === undefined || a.node === this.opts.nodeId) {
          this.refuse(ws, remote, `node ${JSON.stringify(a.node)} is not in the configuration`);
          return;
        }
        if (!verifyHex(a.sig, dialerMessage(this.opts.clusterId, a.node, this.opts.nodeId, nonce), info.publicKey)) {
          this.refuse(ws, remote, `signature does not verify against ${a.node}'s configured key`);
          return;
        }
        peer = a.node;
        const ok: AuthOk = { t: "ok", sig: toHex(sign(listenerMessage(this.opts.clusterId, this.opts.nodeId, a.node, a.nonce), this.opts.secretKey)) };
        ws.send(JSON.stringify(ok));
        this.log.info({ peer, remote }, "peer authenticated");
        return;
      }
      let msg: unknown;
      try {
        msg = decodeFrame(data.toString());
      } catch {
        this.refuse(ws, remote, `malformed frame from ${peer}`);
        return;
      }
      if (!this.opts.isMessage(msg) || msg.from !== peer || msg.to !== this.opts.nodeId) {
        this.refuse(ws, remote, `frame from ${peer} is not a message from it to us`);
        return;
      }
      this.opts.onMessage(msg);
    });
  }

  private refuse(ws: WebSocket, remote: string, reason: string): void {
    this.refused++;
    this.log.warn({ remote, reason }, "peer connection refused");
    ws.close(4401, reason.slice(0, 120));
    setTimeout(() => ws.terminate(), 1000).unref();
  }

  /** Ends every link for good: later sends are dropped and later dialers refused. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.links.values()) l.close();
    this.links.clear();
    for (const ws of this.inbound) ws.terminate();
    this.wss.close();
  }
}
