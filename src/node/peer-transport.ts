/**
 * Peer transport: one persistent outbound WebSocket per peer on its /v1/raft endpoint, carrying
 * frames one way (this node → peer); inbound connections carry the peers' frames to us.
 * Each connection starts with a mutual Ed25519 challenge-response (src/node/peer-session.ts): the
 * dialer proves it holds the key of a node in the current configuration, the listener proves it is
 * the peer dialed, both over an X25519 exchange and the TLS channel binding; every frame after it
 * carries an HMAC under the session key, so nothing on the path can change, inject, replay or
 * reorder one. With TLS (wss://) the certificate is not checked: the node key decides.
 * Send queues are bounded: a slow or absent peer loses frames (Raft retransmits), never memory.
 *
 * The endpoint is open to anyone who can reach the port, so everything before authentication is
 * bounded: at most UNAUTHENTICATED_MAX connections at once (a new one cuts the oldest), at
 * most PRE_AUTH_BYTES_MAX bytes each, for at most handshakeTimeoutMs. Every socket, raw or
 * WebSocket, inbound or outbound, has an 'error' handler: a protocol violation (reserved opcode,
 * bad mask, oversized frame...) ends that connection, never the process.
 */
import type * as http from "node:http";
import type { Duplex } from "node:stream";
import { randomBytes } from "node:crypto";
import WebSocket, { WebSocketServer } from "ws";
import type { Logger } from "pino";
import { sign, verifySignature } from "../ledger/keys";
import { fromHex, toHex } from "../ledger/bytes";
import { BINDING_NONE, channelBinding, dialerAuthMessage, FrameOpener, FrameSealer, KeyExchange, KX_HEX, listenerAuthMessage, TAG_BYTES, Transcript } from "./peer-session";
import { decodeFrame, encodeFrame } from "./peer-codec";
import { LedgerError } from "../util/errors";
import { closeReason } from "../util/close-reason";
import { AssertionError } from "../util/assert";

export const RAFT_PATH = "/v1/raft";

/**
 * Bytes a dialer may send before it has authenticated. Its one frame before then is the auth
 * message: two ids, a 64-hex nonce, a 64-hex X25519 key and a 128-hex signature, ~370 bytes with framing (a legit
 * dialer sends nothing else until our "ok"). 4 KiB leaves room for long ids while a stranger can
 * make us hold at most 4 KiB (times UNAUTHENTICATED_MAX: 64 KiB in all). Counted on the raw socket,
 * so ws never buffers more than one read (<= 64 KiB) of a larger frame before the connection ends.
 */
export const PRE_AUTH_BYTES_MAX = 4096;
/**
 * The largest frame an authenticated peer may send (ws's maxPayload). An Append carries at most
 * maxMsgBytes (1 MiB) of entries, or one entry of up to maxProposalBytes (1 MiB), base64-encoded
 * (x4/3) in JSON: < 3 MiB. InstallSnapshot carries the whole materialized state in one frame, so
 * this is the snapshot ceiling: ~48 MiB of snapshot data. One such buffer per configured peer.
 */
export const FRAME_BYTES_MAX = 64 * 1024 * 1024;
/** The listener sends a dialer only its challenge and its "ok" (< 1 KiB each): anything bigger is hostile. */
const DIALER_RECEIVE_BYTES_MAX = 4096;
/**
 * Inbound connections not yet authenticated. A peer has one connection mid-handshake at a time
 * and clusters have a handful of members: 16 covers a 7-node cluster reconnecting at once twice
 * over. At the cap a new upgrade cuts the oldest dialer still mid-handshake.
 */
export const UNAUTHENTICATED_MAX = 16;
/**
 * The handshake is one round trip and one Ed25519 sign and verify (< 10 ms on loopback or a LAN);
 * 2 s covers event-loop pauses of a loaded node, and a silent stranger frees its slot 2.5x sooner
 * than with the former 5 s. The dialer uses the same bound for connect + upgrade + handshake.
 */
export const HANDSHAKE_TIMEOUT_MS = 2000;
/**
 * Authenticated inbound connections per peer. A peer's dialer holds one link; a reconnect can
 * overlap the stale one until its close is seen: 2. One more for a tool holding the key (the
 * acceptance tests play a peer so). Over it the oldest is cut, so a reconnecting peer always gets
 * in, and a key holder ties up at most 3 receive buffers (each <= FRAME_BYTES_MAX).
 */
export const AUTHENTICATED_PER_PEER_MAX = 3;
/**
 * What a peer's send queue may hold, in frame characters (the JSON is ASCII: one byte each). An
 * Append carries at most 1 MiB of entries and Raft keeps 8 in flight per peer, so a link that
 * drains holds a few MiB; 64 MiB is reached only by a link that stalls, and then frames are
 * dropped (Raft retransmits) instead of 4,096 frames of up to 1 MiB (4 GiB) piling up per peer.
 */
export const QUEUED_BYTES_MAX = 64 * 1024 * 1024;
/** Refusal log lines per window: a flood of strangers must not turn into a flood of log writes. */
const REFUSAL_LOG_LINES_MAX = 20;
const REFUSAL_LOG_WINDOW_MS = 10_000;
/** After a refusal, how long the close handshake may take before the socket is cut. */
const REFUSE_LINGER_MS = 1000;

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
  /** Frame characters queued per peer, at most (default QUEUED_BYTES_MAX). */
  readonly maxQueuedBytes?: number;
  readonly maxBufferedBytes?: number;
  readonly handshakeTimeoutMs?: number;
  readonly maxUnauthenticated?: number;
  /** Dial peers over TLS (wss://). Every node of a cluster uses TLS or none. */
  readonly tls?: boolean;
}

interface Challenge { t: "challenge"; node: string; cluster: string; nonce: string; kx: string }
interface Auth { t: "auth"; node: string; cluster: string; nonce: string; kx: string; sig: string }
interface AuthOk { t: "ok"; sig: string }

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const HEX64 = /^[0-9a-f]{64}$/;

function verifyHex(sigHex: unknown, message: Uint8Array, keyHex: string): boolean {
  if (typeof sigHex !== "string") return false;
  const sig = fromHex(sigHex);
  const key = fromHex(keyHex);
  return sig !== null && key !== null && verifySignature(sig, message, key);
}

/**
 * A socket listener whose fault ends that connection, not the process: whatever a peer sends, a
 * bug in handling it costs one link (logged as an error). Invariant violations (AssertionError)
 * still propagate: they must stop the node loudly.
 */
function containFaults<A extends unknown[]>(ws: WebSocket, log: Logger, fn: (...args: A) => void): (...args: A) => void {
  return (...args: A): void => {
    try {
      fn(...args);
    } catch (err) {
      if (err instanceof AssertionError) throw err;
      log.error({ err }, "handling a peer frame failed; dropping the connection");
      ws.terminate();
    }
  };
}

/** Outbound link to one peer: connect, authenticate, drain the queue; reconnect with backoff. */
class PeerLink {
  private ws: WebSocket | null = null;
  /** Tags this connection's frames; set once the listener proved its key (null: not ready). */
  private sealer: FrameSealer | null = null;
  private queue: string[] = [];
  /** Characters of the frames in the queue (bounded by maxQueuedBytes). */
  private queuedBytes = 0;
  private backoffMs = 50;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  dropped = 0;
  /** Frames not sent because they exceed FRAME_BYTES_MAX. */
  oversized = 0;
  private readonly afterWrite = (err?: Error): void => {
    if (err === undefined && this.queue.length > 0) this.drain();
  };

  constructor(private readonly id: string, private readonly t: PeerTransport<never>) {
    this.connect();
  }

  send(frame: string): void {
    // The receiver would drop the link on a frame over its limit, and the retry would too: drop it here, loudly.
    if (frame.length > FRAME_BYTES_MAX / 3 && Buffer.byteLength(frame) + TAG_BYTES > FRAME_BYTES_MAX) {
      this.oversized++;
      this.t.log.error({ peer: this.id, bytes: Buffer.byteLength(frame), max: FRAME_BYTES_MAX }, "frame exceeds the peer frame limit; not sent");
      return;
    }
    if (this.queue.length >= this.t.maxQueuedFrames || this.queuedBytes + frame.length > this.t.maxQueuedBytes) {
      this.dropped++;
      return;
    }
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    this.drain();
  }

  private drain(): void {
    const ws = this.ws;
    const sealer = this.sealer;
    if (sealer === null || ws === null) return;
    // Each write's callback drains again, so a socket that was full takes more once it empties.
    // Sealed as sent: the tags' sequence is the order the listener receives them in.
    while (this.queue.length > 0 && ws.bufferedAmount < this.t.maxBufferedBytes) {
      const frame = this.queue.shift() as string;
      this.queuedBytes -= frame.length;
      ws.send(sealer.seal(Buffer.from(frame, "utf8")), this.afterWrite);
    }
  }

  private connect(): void {
    if (this.closed) return;
    const info = this.t.opts.peer(this.id);
    if (info === undefined) {
      this.retry();
      return;
    }
    const tls = this.t.opts.tls === true;
    const ws = new WebSocket(`${tls ? "wss" : "ws"}://${info.address}${RAFT_PATH}`, {
      perMessageDeflate: false, handshakeTimeout: this.t.handshakeTimeoutMs, maxPayload: DIALER_RECEIVE_BYTES_MAX,
      // The certificate may be self-signed or of any CA: the listener proves the configured node
      // key over this very TLS session (its exporter is in what it signs), which is what counts.
      ...(tls ? { rejectUnauthorized: false, minVersion: "TLSv1.3" as const } : {}),
    });
    this.ws = ws;
    let socket: unknown = null;
    ws.once("upgrade", (res: http.IncomingMessage) => {
      socket = res.socket;
    });
    const kx = new KeyExchange();
    const myNonce = toHex(randomBytes(32));
    const deadline = setTimeout(() => ws.terminate(), this.t.handshakeTimeoutMs);
    let stage: "challenge" | "ok" | "open" = "challenge";
    let transcript: Transcript | null = null;
    ws.on("message", containFaults(ws, this.t.log, (data) => {
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
        if (!isObj(v) || c.t !== "challenge" || c.node !== this.id || c.cluster !== this.t.opts.clusterId || typeof c.nonce !== "string" || !HEX64.test(c.nonce) || typeof c.kx !== "string" || !KX_HEX.test(c.kx)) {
          this.t.log.warn({ peer: this.id, got: isObj(v) ? v.node : undefined }, "peer at this address is not the node dialed");
          ws.terminate();
          return;
        }
        const binding = channelBinding(socket);
        if (binding === null) {
          this.t.log.warn({ peer: this.id }, "peer link is not TLS 1.3; its session cannot be bound");
          ws.terminate();
          return;
        }
        transcript = {
          cluster: this.t.opts.clusterId, dialer: this.t.opts.nodeId, listener: this.id,
          listenerNonce: c.nonce, listenerKx: c.kx, dialerNonce: myNonce, dialerKx: kx.publicHex, binding,
        };
        const sig = toHex(sign(dialerAuthMessage(transcript), this.t.opts.secretKey));
        const auth: Auth = { t: "auth", node: this.t.opts.nodeId, cluster: this.t.opts.clusterId, nonce: myNonce, kx: kx.publicHex, sig };
        ws.send(JSON.stringify(auth));
        stage = "ok";
      } else if (stage === "ok" && transcript !== null) {
        const ok = v as Partial<AuthOk>;
        // The key is derived only once the listener proved its node key over this transcript.
        const proven = isObj(v) && ok.t === "ok" && verifyHex(ok.sig, listenerAuthMessage(transcript), info.publicKey);
        const key = proven ? kx.sessionKey(transcript.listenerKx, transcript) : null;
        if (key === null) {
          this.t.log.warn({ peer: this.id }, "peer failed to prove its key over this session; dropping the connection");
          this.t.authFailures++;
          ws.terminate();
          return;
        }
        clearTimeout(deadline);
        stage = "open";
        this.sealer = new FrameSealer(key);
        this.backoffMs = 50;
        this.drain();
      } else {
        // The link is one-way: a listener that talks after "ok" is not following the protocol.
        this.t.log.warn({ peer: this.id }, "peer sent a frame on an outbound link; dropping the connection");
        ws.terminate();
      }
    }));
    ws.on("close", () => {
      clearTimeout(deadline);
      this.sealer = null;
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
    this.queuedBytes = 0;
  }
}

/** Allows a few log lines per window and counts the rest, so the next allowed line can say how many were dropped. */
class LogBudget {
  private windowStart = 0;
  private used = 0;
  private suppressed = 0;

  constructor(private readonly linesMax: number, private readonly windowMs: number) {}

  /** null: stay quiet; otherwise a line may be written, and this many were suppressed before it. */
  take(nowMs: number): number | null {
    if (nowMs - this.windowStart >= this.windowMs) {
      this.windowStart = nowMs;
      this.used = 0;
    }
    if (this.used >= this.linesMax) {
      this.suppressed++;
      return null;
    }
    this.used++;
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}

type InboundState = "handshake" | "open" | "refused";

/** Between handleUpgrade (which meters the raw socket) and accept (which runs the handshake). */
interface PreAuthGate {
  /** Set when the raw socket was cut for sending too much before authenticating. */
  cut: boolean;
  /** Stops the metering and frees the unauthenticated slot (also on close). Idempotent. */
  readonly authenticated: () => void;
}

export class PeerTransport<M extends { readonly to: string; readonly from: string }> {
  readonly log: Logger;
  readonly maxQueuedFrames: number;
  readonly maxQueuedBytes: number;
  readonly maxBufferedBytes: number;
  readonly handshakeTimeoutMs: number;
  readonly maxUnauthenticated: number;
  private readonly links = new Map<string, PeerLink>();
  private readonly wss: WebSocketServer;
  private readonly inbound = new Set<WebSocket>();
  /** The authenticated inbound connections of each peer, oldest first (at most AUTHENTICATED_PER_PEER_MAX). */
  private readonly byPeer = new Map<string, WebSocket[]>();
  /** Inbound connections upgraded or upgrading that have not authenticated yet. */
  private unauthenticated = 0;
  /** The dialers holding those slots, oldest first (a Set keeps insertion order). */
  private readonly pending = new Set<{ readonly remote: string; readonly evict: () => void }>();
  private readonly refusalLog = new LogBudget(REFUSAL_LOG_LINES_MAX, REFUSAL_LOG_WINDOW_MS);
  /** Inbound connections refused (over the cap, failed or late handshakes, protocol violations). */
  refused = 0;
  /** Outbound connections whose listener failed to prove the dialed peer's key. */
  authFailures = 0;
  /** Frames from an authenticated peer whose session tag failed (each one dropped its connection). */
  badFrames = 0;
  private closed = false;

  constructor(readonly opts: PeerTransportOptions<M>) {
    this.log = opts.logger;
    this.maxQueuedFrames = opts.maxQueuedFrames ?? 4096;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? QUEUED_BYTES_MAX;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 8 * 1024 * 1024;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    this.maxUnauthenticated = opts.maxUnauthenticated ?? UNAUTHENTICATED_MAX;
    // One server, one maxPayload for the whole connection: the lower pre-auth bound is enforced by
    // counting raw bytes (handleUpgrade), with public APIs only, rather than by raising ws's private
    // receiver limit after auth or by a second server (a connection cannot move between servers).
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: FRAME_BYTES_MAX });
  }

  /**
   * Serves /v1/raft on a server that has no other WebSocket endpoint (tests): other upgrade paths
   * are closed. The node itself routes upgrades with src/api/upgrade.ts.
   */
  attach(server: http.Server): void {
    server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on("error", (err: Error) => this.log.debug({ err: err.message }, "upgrade socket error"));
      if ((req.url ?? "").split("?")[0] !== RAFT_PATH) {
        socket.destroy();
        return;
      }
      try {
        this.handleUpgrade(req, socket, head);
      } catch (err) {
        if (!(err instanceof LedgerError)) this.log.error({ err }, "peer upgrade failed");
        socket.destroy(); // a LedgerError is a refusal before the upgrade, already counted and logged
      }
    });
  }

  /**
   * Takes over one upgrade request to /v1/raft. Throws LedgerError "unavailable" (before touching
   * the socket) when the transport is closed; with UNAUTHENTICATED_MAX dialers mid-handshake it
   * cuts the oldest of them to make room.
   */
  handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const remote = req.socket.remoteAddress ?? "?";
    if (socket.listenerCount("error") === 0) socket.on("error", (err: Error) => this.log.debug({ remote, err: err.message }, "peer socket error"));
    if (this.closed) throw new LedgerError("unavailable", "this node is shutting down");
    // At the cap the oldest dialer still mid-handshake is cut, not the new one: a stranger who
    // keeps the slots full then delays an honest peer's handshake (< 10 ms) by at most one
    // eviction round, instead of locking it out for as long as the stranger keeps reconnecting.
    const oldest = this.pending.values().next();
    if (this.unauthenticated >= this.maxUnauthenticated && oldest.done !== true) {
      this.countRefusal(oldest.value.remote, "evicted: too many unauthenticated peer connections");
      oldest.value.evict();
    }
    this.unauthenticated++;
    let holdsSlot = true;
    let preAuthBytes = 0;
    const entry = { remote, evict: (): void => {
      gate.cut = true;
      gate.authenticated();
      socket.destroy();
    } };
    this.pending.add(entry);
    const gate: PreAuthGate = {
      cut: false,
      authenticated: () => {
        socket.off("data", meter);
        this.pending.delete(entry);
        if (holdsSlot) this.unauthenticated--;
        holdsSlot = false;
      },
    };
    const meter = (chunk: Buffer): void => {
      preAuthBytes += chunk.length;
      if (preAuthBytes <= PRE_AUTH_BYTES_MAX) return;
      socket.off("data", meter);
      gate.cut = true;
      this.countRefusal(remote, `sent more than ${PRE_AUTH_BYTES_MAX} bytes before authenticating`);
      socket.destroy();
    };
    socket.once("close", gate.authenticated);
    // Added before ws's own 'data' listener, so it sees every byte (head included: ws re-reads it) first.
    socket.on("data", meter);
    // Taken from the socket the upgrade arrived on: a TLS 1.3 session's exporter, "none" on a plain one.
    const binding = channelBinding(socket);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, remote, gate, binding));
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

  /** Inbound connections now open: [not yet authenticated, authenticated]. */
  inboundCounts(): { unauthenticated: number; authenticated: number } {
    let authenticated = 0;
    for (const list of this.byPeer.values()) authenticated += list.length;
    return { unauthenticated: this.unauthenticated, authenticated };
  }

  private accept(ws: WebSocket, remote: string, gate: PreAuthGate, binding: string | null): void {
    if (this.closed) {
      ws.terminate();
      return;
    }
    let state: InboundState = "handshake";
    let peer: string | null = null;
    const refuse = (reason: string): void => {
      if (state === "refused") return;
      state = "refused";
      this.countRefusal(remote, reason);
      ws.close(4401, closeReason(reason));
      setTimeout(() => ws.terminate(), REFUSE_LINGER_MS).unref();
    };
    this.inbound.add(ws);
    const deadline = setTimeout(() => {
      if (state === "handshake") refuse("handshake timed out");
    }, this.handshakeTimeoutMs);
    deadline.unref();
    ws.on("error", (err: Error) => {
      // After a protocol error (reserved opcode, bad mask, too big...) ws sends a close frame and
      // would wait 30 s for the reply; a hostile client never replies, so it is cut sooner.
      setTimeout(() => ws.terminate(), REFUSE_LINGER_MS).unref();
      if (state === "handshake") {
        state = "refused";
        this.countRefusal(remote, `protocol error before authenticating: ${err.message}`);
      } else {
        this.log.warn({ remote, peer, err: err.message }, "peer connection error");
      }
    });
    ws.on("close", () => {
      clearTimeout(deadline);
      this.inbound.delete(ws);
      const list = peer === null ? undefined : this.byPeer.get(peer);
      if (list !== undefined && peer !== null) {
        const rest = list.filter((x) => x !== ws);
        if (rest.length === 0) this.byPeer.delete(peer);
        else this.byPeer.set(peer, rest);
      }
    });
    const nonce = toHex(randomBytes(32));
    const kx = new KeyExchange();
    let opener: FrameOpener | null = null;
    const challenge: Challenge = { t: "challenge", node: this.opts.nodeId, cluster: this.opts.clusterId, nonce, kx: kx.publicHex };
    ws.send(JSON.stringify(challenge));
    ws.on("message", containFaults(ws, this.log, (data: Buffer, isBinary: boolean) => {
      // A cut connection may still deliver what was in its last read: none of it counts.
      if (state === "refused" || gate.cut) return;
      if (state === "handshake") {
        let v: unknown;
        try {
          v = JSON.parse(data.toString());
        } catch (err) {
          refuse(`malformed handshake (${(err as Error).message.slice(0, 60)})`);
          return;
        }
        const a = v as Partial<Auth>;
        if (isObj(v) && a.t === "auth" && a.kx === undefined && a.cluster === this.opts.clusterId) {
          refuse("the dialer speaks the peer protocol of an older version (no key exchange): every node of a cluster must run the same version");
          return;
        }
        if (!isObj(v) || a.t !== "auth" || typeof a.node !== "string" || a.cluster !== this.opts.clusterId || typeof a.nonce !== "string" || !HEX64.test(a.nonce) || typeof a.kx !== "string" || !KX_HEX.test(a.kx)) {
          refuse("handshake is not for this cluster");
          return;
        }
        const info = this.opts.peer(a.node);
        if (info === undefined || a.node === this.opts.nodeId) {
          refuse(`node ${JSON.stringify(a.node.slice(0, 64))} is not in the configuration`);
          return;
        }
        if (binding === null) {
          refuse("the peer link is TLS older than 1.3, whose session cannot be bound");
          return;
        }
        const transcript: Transcript = {
          cluster: this.opts.clusterId, dialer: a.node, listener: this.opts.nodeId, listenerNonce: nonce, listenerKx: kx.publicHex, dialerNonce: a.nonce, dialerKx: a.kx, binding,
        };
        // A signature made over another TLS session (a relay, a terminating proxy) or over other
        // X25519 keys (a man in the middle) fails here like a wrong key does.
        if (!verifyHex(a.sig, dialerAuthMessage(transcript), info.publicKey)) {
          refuse(`signature does not verify against ${a.node}'s configured key over this session`);
          return;
        }
        const key = kx.sessionKey(a.kx, transcript);
        if (key === null) {
          refuse(`${a.node} offered an unusable key exchange`);
          return;
        }
        opener = new FrameOpener(key);
        clearTimeout(deadline);
        state = "open";
        peer = a.node;
        gate.authenticated();
        const list = this.byPeer.get(peer) ?? [];
        list.push(ws);
        this.byPeer.set(peer, list);
        if (list.length > AUTHENTICATED_PER_PEER_MAX) {
          this.log.warn({ peer, remote, max: AUTHENTICATED_PER_PEER_MAX }, "too many connections from one peer; cutting its oldest");
          list[0].terminate(); // its 'close' removes it from the list
        }
        const ok: AuthOk = { t: "ok", sig: toHex(sign(listenerAuthMessage(transcript), this.opts.secretKey)) };
        ws.send(JSON.stringify(ok));
        this.log.info({ peer, remote, tls: binding !== BINDING_NONE }, "peer authenticated");
        return;
      }
      const body = isBinary && opener !== null ? opener.open(data) : null;
      if (body === null) {
        this.badFrames++;
        refuse(`frame from ${peer} failed its session tag (changed, injected, replayed or reordered on the way)`);
        return;
      }
      let msg: unknown;
      try {
        msg = decodeFrame(body.toString("utf8"));
      } catch (err) {
        refuse(`malformed frame from ${peer} (${(err as Error).message.slice(0, 60)})`);
        return;
      }
      if (!this.opts.isMessage(msg) || msg.from !== peer || msg.to !== this.opts.nodeId) {
        refuse(`frame from ${peer} is not a message from it to us`);
        return;
      }
      this.opts.onMessage(msg);
    }));
  }

  /** Counts a refused inbound connection and logs it within the log budget. */
  private countRefusal(remote: string, reason: string): void {
    this.refused++;
    const suppressed = this.refusalLog.take(Date.now());
    if (suppressed !== null) this.log.warn({ remote, reason, ...(suppressed > 0 ? { suppressed } : {}) }, "peer connection refused");
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
