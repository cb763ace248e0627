/**
 * A hand-driven peer for acceptance tests of the peer transport: dials a node's /v1/raft as a raw
 * WebSocket, speaks the challenge-response handshake with whatever key and id the test chooses,
 * and sends arbitrary frames, so a test can play an impostor or a node whose key it stole.
 * Also a bounded wait on a server's log lines (its stdout tail), to see what the node logged.
 */
import WebSocket from "ws";
import { sign } from "../../src/ledger/keys";
import { Server, pollUntil } from "./server";

export interface Challenge {
  readonly t: "challenge";
  readonly node: string;
  readonly cluster: string;
  readonly nonce: string;
}

export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

const HANDSHAKE_WAIT_MS = 10_000;
const MESSAGES_MAX = 1000;

/** The bytes a dialer signs (peer-transport's dialer message, written out from its documented format). */
export const dialerAuthMessage = (cluster: string, from: string, to: string, nonce: string): Uint8Array =>
  Buffer.from(`resonetics/peer-auth/v1\n${cluster}\n${from}\n${to}\n${nonce}`, "utf8");

/** The bytes a listener signs in its "ok" reply over the dialer's nonce. */
export const listenerAuthMessage = (cluster: string, from: string, to: string, nonce: string): Uint8Array =>
  Buffer.from(`resonetics/peer-auth-reply/v1\n${cluster}\n${from}\n${to}\n${nonce}`, "utf8");

const open = new Set<WebSocket>();

/** One raw connection to a node's /v1/raft. */
export class RaftPeerSocket {
  /** Every text frame the node sent after the challenge, parsed as JSON (bounded). */
  readonly messages: unknown[] = [];
  readonly closed: Promise<CloseInfo>;
  private waiters: Array<() => void> = [];

  private constructor(private readonly ws: WebSocket, readonly challenge: Challenge) {
    this.closed = new Promise<CloseInfo>((resolve) => {
      ws.once("close", (code: number, reason: Buffer) => resolve({ code, reason: reason.toString("utf8") }));
    });
    ws.on("message", (data) => {
      if (this.messages.length < MESSAGES_MAX) this.messages.push(JSON.parse(data.toString()) as unknown);
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  /** Connects to ws://127.0.0.1:port/v1/raft and waits for the node's challenge. */
  static async connect(port: number): Promise<RaftPeerSocket> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/raft`, { perMessageDeflate: false, handshakeTimeout: HANDSHAKE_WAIT_MS });
    open.add(ws);
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
    return new RaftPeerSocket(ws, challenge);
  }

  /** Sends {t:"auth"} claiming `nodeId`, signed with secretKey over the node's challenge; nonce is ours (64 hex). */
  sendAuth(nodeId: string, secretKey: Uint8Array, nonce: string): void {
    const c = this.challenge;
    const sig = Buffer.from(sign(dialerAuthMessage(c.cluster, nodeId, c.node, c.nonce), secretKey)).toString("hex");
    this.sendText(JSON.stringify({ t: "auth", node: nodeId, cluster: c.cluster, nonce, sig }));
  }

  /** Sends one text frame if the socket is still open; false when it was already closing or closed. */
  sendText(text: string): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(text);
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
