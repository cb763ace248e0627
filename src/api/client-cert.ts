/**
 * --tls-client-ca: every client request (REST and the /v1/stream WebSocket) must come over a TLS
 * connection whose client certificate verified against the configured CA. The server asks for a
 * certificate but does not refuse the handshake without one (api/server.ts), so the check is here,
 * per request: a 401 JSON that says why, and /v1/raft stays open to peers, which authenticate with
 * their Ed25519 node keys instead.
 */
import type * as http from "node:http";
import { TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import type { NextFunction, Request, Response } from "express";
import { LedgerError } from "../util/errors";
import type { UpgradeHandler } from "./upgrade";

/** Why the connection carries no verified client certificate, or null when it does. */
export function clientCertificateProblem(socket: unknown): LedgerError | null {
  if (!(socket instanceof TLSSocket)) {
    return new LedgerError("unauthorized", "a client certificate signed by the configured CA is required: this connection is not TLS");
  }
  if (socket.authorized) return null;
  // Node sets authorizationError to OpenSSL's verify code (a string), typed as an Error.
  const raw: unknown = socket.authorizationError;
  const reason = typeof raw === "string" ? raw : raw instanceof Error ? raw.message : "not verified";
  const presented = Object.keys(socket.getPeerCertificate()).length > 0;
  const why = presented ? "the certificate presented does not verify against it" : "none was presented";
  return new LedgerError("unauthorized", `a client certificate signed by the configured CA is required: ${why} (${reason})`, { reason });
}

/** Express middleware: a 401 unless the request's connection has a verified client certificate. */
export function requireClientCertificate() {
  return (req: Request, _res: Response, next: NextFunction): void => {
    const problem = clientCertificateProblem(req.socket);
    if (problem !== null) throw problem;
    next();
  };
}

/** An upgrade endpoint behind the same check: the router answers the 401 before the handshake. */
export function withClientCertificate(handler: UpgradeHandler): UpgradeHandler {
  return {
    handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
      const problem = clientCertificateProblem(req.socket);
      if (problem !== null) throw problem;
      handler.handleUpgrade(req, socket, head);
    },
  };
}
