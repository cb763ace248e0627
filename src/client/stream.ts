/**
 * One subscription to WS /v1/stream?from=N (src/api/stream.ts): text frames in, handed over one
 * at a time, until the handler says stop, the server closes (with a code that says why and where
 * to resume), or the connection cannot be made.
 */
import WebSocket from "ws";
import type { TlsClientOptions } from "./http";

export type StreamEnd =
  /** The handler returned "stop". */
  | { readonly kind: "stopped" }
  /** The connection was open and closed: the server's code and reason (1006 when it dropped without a close frame). */
  | { readonly kind: "closed"; readonly code: number; readonly reason: string }
  /** The handshake was answered with an HTTP status other than 101 (401 without a client certificate, 503 when full...). */
  | { readonly kind: "refused"; readonly status: number }
  /** No connection: refused at the TCP or TLS level, or timed out. */
  | { readonly kind: "failed"; readonly message: string };

export interface StreamOptions {
  readonly tls?: TlsClientOptions;
  /** How long the opening handshake may take. */
  readonly timeoutMs: number;
}

/** ws(s)://host/v1/stream?from=N for a node's http(s) base URL. */
export function streamUrl(base: string, from: number): string {
  const u = new URL("/v1/stream", base);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.searchParams.set("from", String(from));
  return u.toString();
}

/** Subscribes from `from` and calls onFrame with each text frame, in order. */
export function subscribe(base: string, from: number, o: StreamOptions, onFrame: (text: string) => "more" | "stop"): Promise<StreamEnd> {
  return new Promise((resolve) => {
    const ws = new WebSocket(streamUrl(base, from), { handshakeTimeout: o.timeoutMs, ca: o.tls?.ca, cert: o.tls?.cert, key: o.tls?.key });
    let opened = false;
    let done = false;
    const finish = (end: StreamEnd): void => {
      if (done) return;
      done = true;
      resolve(end);
    };
    ws.on("open", () => {
      opened = true;
    });
    ws.on("unexpected-response", (req, res) => {
      finish({ kind: "refused", status: res.statusCode ?? 0 });
      req.destroy();
    });
    ws.on("message", (data: WebSocket.RawData) => {
      if (done) return;
      // binaryType is nodebuffer: a Buffer. The stream sends text frames; a binary one is read as text and fails the caller's check.
      if (onFrame(data.toString()) === "stop") {
        finish({ kind: "stopped" });
        ws.terminate();
      }
    });
    ws.on("error", (err: Error) => {
      if (!opened) finish({ kind: "failed", message: err.message });
      // Once open, an error is followed by "close", which says how it ended.
    });
    ws.on("close", (code: number, reason: Buffer) => {
      finish(opened ? { kind: "closed", code, reason: reason.toString("utf8") } : { kind: "failed", message: `closed before it opened (${code})` });
    });
  });
}
