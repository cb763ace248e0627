/** The HTTP server: express app with request logging, the v1 routes, health and readiness. */
import * as http from "node:http";
import * as https from "node:https";
import type { Duplex } from "node:stream";
import express, { NextFunction, Request, Response } from "express";
import type { Logger } from "pino";
import { LedgerError } from "../util/errors";
import { errorHandler, STATUS } from "./errors";
import { MethodRouter, RouteDeps, v1Routes } from "./routes";
import { createMetrics } from "./metrics";
import { parseQuery } from "./params";
import { requireClientCertificate } from "./client-cert";
import { explorerRoutes } from "./explorer";

export interface AppOptions {
  /** --cors-origin: the one browser origin allowed to call the API (none by default). */
  readonly corsOrigin?: string;
  /** --tls-client-ca: every request needs a verified client certificate (401 otherwise). */
  readonly clientCertificates?: boolean;
  /** Where the access log's lines go (serve gives it a buffered stream of its own); the app's logger by default. */
  readonly accessLog?: Logger;
}

/** Headers a browser honours for CORS; the API takes no cookies, so credentials stay off. */
const CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key";
const CORS_MAX_AGE_S = "600";

function commonHeaders(opts: AppOptions) {
  return (req: Request, res: Response, next: NextFunction): void => {
    res.setHeader("X-Content-Type-Options", "nosniff");
    // Everything is live state unless a route says it is immutable (an entry, a proof of fixed sizes).
    res.setHeader("Cache-Control", "no-store");
    const origin = req.headers.origin;
    if (opts.corsOrigin !== undefined && origin === opts.corsOrigin) {
      res.setHeader("Access-Control-Allow-Origin", origin);
      res.setHeader("Vary", "Origin");
      if (req.method === "OPTIONS") {
        res.setHeader("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE");
        res.setHeader("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
        res.setHeader("Access-Control-Max-Age", CORS_MAX_AGE_S);
        res.status(204).end();
        return;
      }
    }
    next();
  };
}

/**
 * The access log's middleware: when the answer is sent (or the connection closes first), one info
 * line with the method, the URL as the client sent it, the peer address, the status and the time
 * taken (GET /health excepted). Only what an operator needs: never headers (Authorization carries
 * the token), and the URL as raw text (the query parser refuses bad encodings; the log never
 * parses it).
 *
 * One pino call per request and nothing else. pino-http, which this replaced, made a child logger
 * and a request id per request: a GET /ready took 0.30-0.35 ms of server CPU with it and 0.25 ms
 * with this (alternated runs at load ~7); a run with no access log at all (--log-level warn) took 0.17 ms.
 */
function accessLog(logger: Logger): express.RequestHandler {
  return (req, res, next) => {
    // Liveness probes come every few seconds and say nothing an operator reads.
    if (req.url === "/health") {
      next();
      return;
    }
    const started = performance.now();
    // Read now: a socket that closed first no longer knows its peer.
    const who = { method: req.method, url: req.originalUrl, remote: req.socket.remoteAddress };
    const done = (): void => {
      res.off("finish", done);
      res.off("close", done);
      const line = {
        req: who,
        res: { status: res.statusCode },
        responseTime: Math.round(performance.now() - started),
      };
      logger.info(line, res.writableFinished ? "request completed" : "request aborted");
    };
    res.on("finish", done);
    res.on("close", done);
    next();
  };
}

export function createApp(deps: RouteDeps, logger: Logger, opts: AppOptions = {}): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  app.set("query parser", parseQuery);
  // The access log: a line per request at info. At warn or error it would only repeat the error
  // handler's line for a 5xx, so it is not installed: it cost ~3% of a leader's CPU at 64 clients.
  const access = opts.accessLog ?? logger;
  if (access.isLevelEnabled("info")) app.use(accessLog(access));
  app.use(commonHeaders(opts));
  if (opts.clientCertificates === true) app.use(requireClientCertificate());
  const top = new MethodRouter();
  // Alive (DESIGN.md "Health"): the process runs. A halted node is alive and says why in /ready
  // and /v1/status; restarting it would not cure a verification failure.
  top.get("/health", (_req, res) => {
    res.json({ status: "ok" });
  });
  // Ready = can serve now: not halted, follows a known leader (or is it, with its NOOP applied), has
  // applied all it knows committed, and is not far behind the leader's commit index.
  top.get("/ready", (_req, res) => {
    const r = deps.node.readiness();
    res.status(r.ready ? 200 : 503).json({ ready: r.ready, reasons: r.reasons, behind: r.behind, ...deps.node.status() });
  });
  const metrics = createMetrics(deps.node);
  top.get("/metrics", (_req, res, next) => {
    metrics.registry.metrics().then((text) => res.type(metrics.registry.contentType).send(text), next);
  });
  // The audit explorer page (static; it verifies in the browser with the auditor's trust file).
  explorerRoutes(top);
  app.use(top.allowOthers());
  app.use("/v1", v1Routes({ ...deps, metrics }));
  app.use(() => {
    throw new LedgerError("not_found", "no such route");
  });
  app.use(errorHandler(logger));
  return app;
}

/** Limits on the HTTP server itself, each against a slow or hostile client. */
const SERVER_LIMITS = {
  /** Headers must arrive within 10 s (Node's default is 60 s): a slowloris holds a socket for less. */
  headersTimeoutMs: 10_000,
  /** A whole request (headers and a body of at most --body-limit) within 30 s, not Node's 300 s. */
  requestTimeoutMs: 30_000,
  /** Idle keep-alive connections close after 5 s (Node's default), bounding idle sockets. */
  keepAliveTimeoutMs: 5_000,
  /** Requests on one keep-alive connection before it is closed: a bound on one client's pipeline. */
  maxRequestsPerSocket: 10_000,
  /** Open client connections at most: a benchmark uses 64, a busy deployment a few hundred; each costs a socket and ~10 KiB. */
  maxConnections: 2048,
  /** How often Node enforces the two timeouts above (its default, 30 s, lets a slow client hold a socket ~40 s). */
  connectionsCheckingIntervalMs: 1_000,
} as const;

/** TLS settings of the HTTPS server, each against an old client or a slow or hostile one. */
const TLS_LIMITS = {
  /** TLS 1.0 and 1.1 are deprecated (RFC 8996); every client of a 2020s stack speaks 1.2 or 1.3. */
  minVersion: "TLSv1.2",
  /**
   * A handshake must finish within 10 s (Node's default is 120 s): a socket that never completes
   * one holds a connection slot of maxConnections for less; a real one takes a few round trips.
   */
  handshakeTimeoutMs: 10_000,
} as const;

/** What the HTTPS server listens with (PEM); with clientCa, clients are asked for a certificate. */
export interface HttpsCredentials {
  readonly cert: Buffer;
  readonly key: Buffer;
  /**
   * Client certificates are requested and verified against this CA, but a handshake without one
   * is not refused: the check is per request (requireClientCertificate), so /v1/raft, where peers
   * authenticate with their node keys, can be exempt.
   */
  readonly clientCa?: Buffer;
}

/** Options of https.createServer for these credentials. */
function httpsOptions(tls: HttpsCredentials): https.ServerOptions {
  return {
    cert: tls.cert,
    key: tls.key,
    minVersion: TLS_LIMITS.minVersion,
    handshakeTimeout: TLS_LIMITS.handshakeTimeoutMs,
    ...(tls.clientCa === undefined ? {} : { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false }),
  };
}

/** Answers a request Node's parser refused (bad HTTP, headers too large, timeout) with JSON, then closes. */
function onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, code, message] =
    err.code === "HPE_HEADER_OVERFLOW" ? [STATUS.header_fields_too_large, "header_fields_too_large", "request headers are too large"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? [408, "request_timeout", "the request did not arrive in time"]
        : [STATUS.bad_request, "bad_request", "malformed HTTP request"];
  const body = JSON.stringify({ error: code, message });
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ""}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    `X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`);
}

/**
 * The request and response classes the server makes: Node's own, born with the app's prototypes
 * (app.request, app.response: express's methods over Node's). Express gives every request these
 * prototypes in app.handle (Object.setPrototypeOf); on objects made with Node's, V8 kept each
 * request's objects reachable from the next's, so all of them outlived a young-generation collection
 * and were copied to the old one. Measured on /health with one keep-alive client: a scavenge every
 * ~130 requests that copied ~0.7 MB and paused the server 3-5 ms (~1% of requests: their p99),
 * against 0.8 ms and ~36 KB with these classes (0.3 ms with no express at all). Setting the
 * prototype an object already has changes nothing, so express's call becomes a no-op.
 *
 * Node's constructors are called on the object `new` made (they are plain functions, Node 20 and
 * 22). Making the object with Reflect.construct(Node's, args, ours) instead gave it the same
 * prototype and kept the copying as it was; were Node's constructors ever classes, the call below
 * would throw on the first request, which every server test makes.
 */
function appMessageClasses(app: express.Express): Pick<http.ServerOptions, "IncomingMessage" | "ServerResponse"> {
  function AppRequest(this: http.IncomingMessage, ...args: unknown[]): void {
    Reflect.apply(http.IncomingMessage, this, args);
  }
  AppRequest.prototype = app.request;
  function AppResponse(this: http.ServerResponse, ...args: unknown[]): void {
    Reflect.apply(http.ServerResponse, this, args);
  }
  AppResponse.prototype = app.response;
  return { IncomingMessage: AppRequest as unknown as typeof http.IncomingMessage, ServerResponse: AppResponse as unknown as typeof http.ServerResponse };
}

/**
 * Listens on host:port (0 picks a free port) and resolves with the bound port: HTTPS with `tls`,
 * else plain HTTP, with the same limits either way (an https.Server is an http.Server with TLS).
 */
export function listen(app: express.Express, host: string, port: number, tls?: HttpsCredentials): Promise<{ server: http.Server; port: number }> {
  return new Promise((resolve, reject) => {
    const options = { connectionsCheckingInterval: SERVER_LIMITS.connectionsCheckingIntervalMs, ...appMessageClasses(app) };
    const server: http.Server = tls === undefined ? http.createServer(options, app) : https.createServer({ ...options, ...httpsOptions(tls) }, app);
    server.maxConnections = SERVER_LIMITS.maxConnections;
    server.headersTimeout = SERVER_LIMITS.headersTimeoutMs;
    server.requestTimeout = SERVER_LIMITS.requestTimeoutMs;
    server.keepAliveTimeout = SERVER_LIMITS.keepAliveTimeoutMs;
    server.maxRequestsPerSocket = SERVER_LIMITS.maxRequestsPerSocket;
    server.on("clientError", onClientError);
    server.once("error", reject);
    server.listen(port, host, () => {
      const addr = server.address();
      if (addr === null || typeof addr === "string") {
        reject(new Error("server has no TCP address"));
        return;
      }
      resolve({ server, port: addr.port });
    });
  });
}
