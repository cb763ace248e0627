/**
 * The HTTP server's one 'upgrade' listener. Node hands an upgrade request over with a raw socket
 * that has no 'error' handler left (the HTTP server removes its own), so one is installed here
 * before anything else: a reset from the client then ends that socket, never the process. The
 * request goes to the handler of its exact pathname (/v1/raft, /v1/stream); any other path, and
 * any request that is not a WebSocket handshake, gets a JSON error and the socket is closed, so
 * no upgrade request is left hanging.
 */
import * as http from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { LedgerError } from "../util/errors";
import { STATUS } from "./errors";
import { parseUrl } from "../util/url";

/** An endpoint that takes over upgrade requests to its path. */
export interface UpgradeHandler {
  /**
   * Answers or upgrades the request. It may throw a LedgerError before it touches the socket (e.g.
   * "unavailable" when it is full): the router then answers with that error's status.
   */
  handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
}

/** How long a refused client gets to read the answer before its socket is destroyed anyway. */
const ANSWER_LINGER_MS = 2000;
/** RFC 6455 4.1: the key is 16 random bytes in base64. */
const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;

/** Writes an HTTP error answer with a JSON body on a raw upgrade socket, then closes it. */
export function answerUpgrade(socket: Duplex, err: LedgerError, headers: Readonly<Record<string, string>> = {}): void {
  const status = STATUS[err.code];
  const body = JSON.stringify({ error: err.code, message: err.message, ...(err.details ?? {}) });
  const extra: Record<string, string> = err.code === "unavailable" || err.code === "too_many_requests" ? { "Retry-After": "1", ...headers } : { ...headers };
  const head = [
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Error"}`,
    "Content-Type: application/json; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "X-Content-Type-Options: nosniff",
    "Cache-Control: no-store",
    "Connection: close",
    ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
  ];
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`${head.join("\r\n")}\r\n\r\n${body}`, () => socket.destroy());
  setTimeout(() => socket.destroy(), ANSWER_LINGER_MS).unref();
}

/** Why req is not a WebSocket opening handshake this server takes (RFC 6455 4.2.1), or null. */
export function webSocketRequestProblem(req: http.IncomingMessage): { err: LedgerError; headers?: Record<string, string> } | null {
  if (req.method !== "GET") return { err: new LedgerError("method_not_allowed", `a WebSocket handshake is a GET, not ${req.method ?? "?"}`), headers: { Allow: "GET" } };
  if ((req.headers.upgrade ?? "").toLowerCase() !== "websocket") return { err: new LedgerError("bad_request", "the Upgrade header must be websocket") };
  const key = req.headers["sec-websocket-key"];
  if (key === undefined || !WS_KEY.test(key)) return { err: new LedgerError("bad_request", "missing or invalid Sec-WebSocket-Key header") };
  if (req.headers["sec-websocket-version"] !== "13") return { err: new LedgerError("bad_request", "Sec-WebSocket-Version must be 13"), headers: { "Sec-WebSocket-Version": "13" } };
  return null;
}

/** The pathname of an upgrade request's target, or null when it does not parse. */
function pathnameOf(req: http.IncomingMessage): string | null {
  return parseUrl(req.url ?? "", "http://upgrade.invalid")?.pathname ?? null;
}

/** Installs the server's 'upgrade' listener: exact pathname → handler, anything else → a JSON error. */
export function routeUpgrades(server: http.Server, routes: ReadonlyMap<string, UpgradeHandler>, log: Logger): void {
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const remote = req.socket.remoteAddress ?? "?";
    socket.on("error", (err: Error) => log.debug({ remote, err: err.message }, "upgrade socket error"));
    const pathname = pathnameOf(req);
    if (pathname === null) {
      answerUpgrade(socket, new LedgerError("bad_request", "the request target is not a valid path"));
      return;
    }
    const handler = routes.get(pathname);
    if (handler === undefined) {
      answerUpgrade(socket, new LedgerError("not_found", `no WebSocket endpoint at ${pathname.slice(0, 200)}`));
      return;
    }
    const problem = webSocketRequestProblem(req);
    if (problem !== null) {
      answerUpgrade(socket, problem.err, problem.headers);
      return;
    }
    try {
      handler.handleUpgrade(req, socket, head);
    } catch (err) {
      if (err instanceof LedgerError) {
        answerUpgrade(socket, err);
        return;
      }
      // A bug in a handler: the socket's state is unknown, so it is closed, and the bug is loud.
      log.error({ err, path: pathname }, "upgrade handler failed");
      socket.destroy();
    }
  });
}
