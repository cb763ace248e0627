/**
 * A hand-driven peer for acceptance tests of the peer transport: dials a node's /v1/raft as a raw
 * WebSocket, speaks the challenge-response handshake with whatever key and id the test chooses,
 * and sends arbitrary frames, so a test can play an impostor or a node whose key it stole.
 * Also a bounded wait on a server's log lines (its stdout tail), to see what the node logged.
 */
import WebSocket from "ws";
import { createHash, createHmac, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, KeyObject } from "node:crypto";
import { TLSSocket } from "node:tls";
import { sign } from "../../src/ledger/keys";
import { Server, pollUntil } from "./server";

export interface Challenge {
  readonly t: "challenge";
  readonly node: string;
  readonly cluster: string;
  readonly nonce: string;
  readonly kx: string;
}

export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

const HANDSHAKE_WAIT_MS = 10_000;
const MESSAGES_MAX = 1000;

/**
 * The handshake transcript both ends sign, written out here from its documented format
 * (src/node/peer-session.ts's header), not imported, so a change of the format fails these tests.
 */
export interface PeerTranscript {
  readonly cluster: string;
  readonly dialer: string;
  readonly listener: string;
  readonly listenerNonce: string;
  readonly listenerKx: string;
  readonly dialerNonce: string;
  readonly dialerKx: string;
  readonly binding: string;
}

const transcriptText = (t: PeerTranscript): string =>
  [t.cluster, t.dialer, t.listener, t.listenerNonce, t.listenerKx, t.dialerNonce, t.dialerKx, t.binding].join("\n");

/** The bytes a dialer signs. */
export const dialerAuthMessage = (t: PeerTranscript): Uint8Array => Buffer.from(`resonetics/peer-auth/v2\n${transcriptText(t)}`, "utf8");

/** The bytes a listener signs in its "ok" reply. */
export const listenerAuthMessage = (t: PeerTranscript): Uint8Array => Buffer.from(`resonetics/peer-auth-reply/v2\n${transcriptText(t)}`, "utf8");

/** RFC 9266 tls-exporter of a TLS 1.3 socket, "none" for a plain one. */
export function bindingOf(socket: unknown): string {
  if (!(socket instanceof TLSSocket)) return "none";
  return `tls-exporter:${socket.exportKeyingMaterial(32, "EXPORTER-Channel-Binding", Buffer.alloc(0)).toString("hex")}`;
}

/** A fresh X25519 key pair, its public half as 64 hex. */
export function x25519(): { secret: KeyObject; publicHex: string } {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  return { secret: privateKey, publicHex: Buffer.from(publicKey.export({ format: "jwk" }).x as string, "base64url").toString("hex") };
}

/** HKDF-SHA256(X25519(secret, peer), salt = SHA-256(transcript), info = "resonetics/peer-frames/v1"). */
export function sessionKey(secret: KeyObject, peerHex: string, t: PeerTranscript): Buffer {
  const peer = createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(peerHex, "hex").toString("base64url") }, format: "jwk" });
  const shared = diffieHellman({ privateKey: secret, publicKey: peer });
  const salt = createHash("sha256").update(transcriptText(t), "utf8").digest();
  return Buffer.from(hkdfSync("sha256", shared, salt, Buffer.from("resonetics/peer-frames/v1", "utf8"), 32));
}

/** HMAC-SHA256(key, u64be(seq) || body) || body: a frame as the dialer sends it. */
export function sealFrame(key: Buffer, seq: number, body: Buffer): Buffer {
  const s = Buffer.alloc(8);
  s.writeBigUInt64BE(BigInt(seq));
  return Buffer.concat([createHmac("sha256", key).update(s).update(body).digest(), body]);
}

const open = new Set<WebSocket>();

/** One raw connection to a node's /v1/raft. */
export class RaftPeerSocket {
  /** Every text frame the node sent after the challenge, parsed as JSON (bounded). */
  readonly messages: unknown[] = [];
  readonly closed: Promise<CloseInfo>;
  private waiters: Array<() => void> = [];
  private readonly kx = x25519();
  /** Set by authText/sendAuth: what this dialer signed. */
  transcript: PeerTranscript | null = null;
  private seq = 0;

  private constructor(private readonly ws: WebSocket, readonly challenge: Challenge, readonly binding: string) {
    this.closed = new Promise<CloseInfo>((resolve) => {
      ws.once("close", (code: number, reason: Buffer) => resolve({ code, reason: reason.toString("utf8") }));
    });
    ws.on("message", (data) => {
      if (this.messages.length < MESSAGES_MAX) this.messages.push(JSON.parse(data.toString()) as unknown);
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  /** Connects to ws://127.0.0.1:port/v1/raft (wss:// with tls) and waits for the node's challenge. */
  static async connect(port: number, opts: { tls?: boolean } = {}): Promise<RaftPeerSocket> {
    const scheme = opts.tls === true ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://127.0.0.1:${port}/v1/raft`, {
      perMessageDeflate: false, handshakeTimeout: HANDSHAKE_WAIT_MS, ...(opts.tls === true ? { rejectUnauthorized: false } : {}),
    });
    open.add(ws);
    let socket: unknown = null;
    ws.once("upgrade", (res) => {
      socket = res.socket;
    });
    ws.once("close", () => open.delete(ws));
    ws.on("error", () => {
      // surfaces as a close (or a failed connect below); the test asserts on those
    });
    const challenge = await new Promise<Challenge>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no challenge from 127.0.0.1:${port}/v1/raft within ${HANDSHAKE_WAIT_MS} ms`)), HANDSHAKE_WAIT_MS);
      ws.once("message", (data) => {
        clearTimeout(timer);
        resolve(JSON.parse(data.toString()) as Challenge);
      });
      ws.once("close", (code: number) => {
        clearTimeout(timer);
        reject(new Error(`127.0.0.1:${port}/v1/raft closed (${code}) before its challenge`));
      });
    });
    return new RaftPeerSocket(ws, challenge, bindingOf(socket));
  }

  /**
   * The {t:"auth"} text claiming `nodeId`, signed with secretKey over the transcript of this
   * connection (our nonce and X25519 key, its challenge, the binding); `extra` adds members.
   */
  authText(nodeId: string, secretKey: Uint8Array, nonce: string, extra: Record<string, unknown> = {}): string {
    const c = this.challenge;
    const t: PeerTranscript = { cluster: c.cluster, dialer: nodeId, listener: c.node, listenerNonce: c.nonce, listenerKx: c.kx, dialerNonce: nonce, dialerKx: this.kx.publicHex, binding: this.binding };
    this.transcript = t;
    const sig = Buffer.from(sign(dialerAuthMessage(t), secretKey)).toString("hex");
    return JSON.stringify({ t: "auth", node: nodeId, cluster: c.cluster, nonce, kx: this.kx.publicHex, sig, ...extra });
  }

  /** Sends {t:"auth"} claiming `nodeId` (see authText); nonce is ours (64 hex). */
  sendAuth(nodeId: string, secretKey: Uint8Array, nonce: string): void {
    this.sendText(this.authText(nodeId, secretKey, nonce));
  }

  /** Sends one text frame if the socket is still open; false when it was already closing or closed. */
  sendText(text: string): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(text);
    return true;
  }

  /** Sends one frame after the handshake as a peer does: binary, tagged under the session key with the next sequence number. */
  sendFrame(text: string): boolean {
    if (this.transcript === null) throw new Error("sendFrame before sendAuth");
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(sealFrame(sessionKey(this.kx.secret, this.challenge.kx, this.transcript), this.seq++, Buffer.from(text, "utf8")));
    return true;
  }

  /** Waits (bounded) for the first message the node sends after the challenge, or for the close. */
  async nextMessageOrClose(timeoutMs = HANDSHAKE_WAIT_MS): Promise<{ message: unknown } | { close: CloseInfo }> {
    if (this.messages.length > 0) return { message: this.messages[0] };
    let timer: NodeJS.Timeout | undefined;
    const got = new Promise<{ message: unknown }>((resolve) => this.waiters.push(() => resolve({ message: this.messages[0] })));
    const closed = this.closed.then((close) => ({ close }));
    const timeout = new Promise<never>((_r, reject) => {
      timer = setTimeout(() => reject(new Error(`the node neither answered nor closed within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([got, closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Terminates every raw peer socket still open (for afterAll). */
export function closeAllRaftPeers(): void {
  for (const ws of [...open]) ws.terminate();
  open.clear();
}

/** The server's stdout tail lines, as text (a cut line is still matched on what is left of it). */
export function logLines(server: Server): string[] {
  const text = server.output();
  const start = text.indexOf("--- stdout (tail) ---\n");
  const end = text.indexOf("\n--- stderr (tail) ---");
  if (start < 0) return [];
  return text.slice(start + "--- stdout (tail) ---\n".length, end < 0 ? undefined : end).split("\n");
}

/** Waits (bounded: attempts x 50 ms) until one of the server's recent stdout lines satisfies pred. */
export function waitForLogLine(server: Server, what: string, pred: (line: string) => boolean, attempts = 200): Promise<string> {
  return pollUntil(`node log line: ${what}`, async () => logLines(server).find(pred), attempts, 50);
}
