// src/api/server.ts in this process: what listen() answers a request Node's parser refused (each
// kind, byte for byte, and a socket that is gone); HTTPS with and without --tls-client-ca (a client
// certificate of the CA passes, none or a stranger's is a 401 that says why, and the handshake itself
// is never refused for it; TLS below 1.2 is); the client-certificate check on upgrade requests; and
// that a request whose query does not decode is still logged. test/e2e/tls.test.ts runs the same
// flags through `resonetics serve`.
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as tls from "node:tls";
import { PassThrough } from "node:stream";
import express from "express";
import { listen } from "../../src/api/server";
import { clientCertificateProblem, withClientCertificate } from "../../src/api/client-cert";
import { routeUpgrades, UpgradeHandler } from "../../src/api/upgrade";
import { ClusterCertificates, makeClusterCertificates } from "../../src/node/tls";
import { capturingLogger, InProcessApp, startInProcessApp } from "../support/in-process-app";
import { rawHttp } from "../support/ledger-client";

function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** What a refused request gets: one HTTP/1.1 answer with a JSON body, then the socket closes. */
const answer = (status: string, body: object): string => {
  const text = JSON.stringify(body);
  return `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n` +
    `X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${text}`;
};

describe("requests Node's HTTP parser refuses", () => {
  let server: http.Server;
  let port = 0;
  beforeEach(async () => {
    ({ server, port } = await listen(express(), "127.0.0.1", 0));
  });
  afterEach(() => close(server));

  /** The exact bytes the server sends back to `request`, up to its close. */
  function exchange(request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: "127.0.0.1", port });
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error("no close within 10 s"));
      }, 10_000);
      sock.on("data", (c: Buffer) => chunks.push(c));
      sock.on("error", reject);
      sock.on("close", () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString("latin1"));
      });
      sock.write(request);
    });
  }

  test("a malformed request line is a 400 JSON answer, then the connection closes", async () => {
    expect(await exchange("NOT HTTP AT ALL\r\n\r\n")).toBe(answer("400 Bad Request", { error: "bad_request", message: "malformed HTTP request" }));
  });

  test("headers over Node's limit are a 431 that says so", async () => {
    expect(await exchange(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`)).toBe(
      answer("431 Request Header Fields Too Large", { error: "header_fields_too_large", message: "request headers are too large" }));
  });

  /** A socket stand-in: what is written to it, and whether it was destroyed. */
  function fakeSocket(): { socket: PassThrough; written(): string } {
    const socket = new PassThrough();
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    return { socket, written: () => Buffer.concat(chunks).toString("latin1") };
  }
  const clientError = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });
  const flushed = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  test("a request that did not arrive in time is a 408", async () => {
    const { socket, written } = fakeSocket();
    server.emit("clientError", clientError("ERR_HTTP_REQUEST_TIMEOUT"), socket);
    await flushed();
    expect(written()).toBe(answer("408 Request Timeout", { error: "request_timeout", message: "the request did not arrive in time" }));
    expect(socket.writableEnded).toBe(true);
  });

  test("any other parser error is the 400", async () => {
    const { socket, written } = fakeSocket();
    server.emit("clientError", clientError("HPE_INVALID_METHOD"), socket);
    await flushed();
    expect(written()).toBe(answer("400 Bad Request", { error: "bad_request", message: "malformed HTTP request" }));
  });

  test("a reset connection, or one no longer writable, is destroyed without a byte", async () => {
    const reset = fakeSocket();
    server.emit("clientError", clientError("ECONNRESET"), reset.socket);
    await flushed();
    expect(reset.written()).toBe("");
    expect(reset.socket.destroyed).toBe(true);

    const ended = fakeSocket();
    ended.socket.end();
    server.emit("clientError", clientError("HPE_INVALID_METHOD"), ended.socket);
    await flushed();
    expect(ended.written()).toBe("");
    expect(ended.socket.destroyed).toBe(true);
  });
});

describe("the request and response objects", () => {
  // Express sets app.request and app.response as every request's prototypes; made with them already
  // (listen's classes), the objects no longer outlive young-generation collections (see server.ts).
  // Seen here before express's handler runs, over HTTP and HTTPS, on two requests of one connection.
  async function prototypesSeen(tlsOn: boolean): Promise<Array<[boolean, boolean, boolean]>> {
    const app = express();
    app.get("/x", (_req, res) => {
      res.json({ ok: true });
    });
    const certs = tlsOn ? makeClusterCertificates([{ id: "server", host: "127.0.0.1" }]) : undefined;
    const pair = certs?.nodes.get("server");
    const { server, port } = await listen(app, "127.0.0.1", 0, pair === undefined ? undefined : { cert: pair.cert, key: pair.key });
    const seen: Array<[boolean, boolean, boolean]> = [];
    server.prependListener("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
      seen.push([Object.getPrototypeOf(req) === app.request, Object.getPrototypeOf(res) === app.response, req instanceof http.IncomingMessage && res instanceof http.ServerResponse]);
    });
    try {
      const agent = tlsOn ? new https.Agent({ keepAlive: true, ca: certs?.ca }) : new http.Agent({ keepAlive: true });
      for (let i = 0; i < 2; i++) {
        const body = await new Promise<string>((resolve, reject) => {
          (tlsOn ? https : http).get({ host: "127.0.0.1", port, path: "/x", agent }, (r) => {
            let text = "";
            r.on("data", (d: Buffer) => (text += d.toString()));
            r.on("end", () => resolve(text));
          }).on("error", reject);
        });
        expect(JSON.parse(body)).toEqual({ ok: true });
      }
      agent.destroy();
    } finally {
      await close(server);
    }
    return seen;
  }

  test("are made with the app's prototypes, and are still Node's IncomingMessage and ServerResponse, over HTTP and HTTPS", async () => {
    expect(await prototypesSeen(false)).toEqual([[true, true, true], [true, true, true]]);
    expect(await prototypesSeen(true)).toEqual([[true, true, true], [true, true, true]]);
  }, 60_000);
});

describe("HTTPS", () => {
  let certs: ClusterCertificates;
  let stranger: ClusterCertificates;
  beforeAll(() => {
    certs = makeClusterCertificates([{ id: "server", host: "127.0.0.1" }, { id: "client", host: "127.0.0.1" }]);
    stranger = makeClusterCertificates([{ id: "client", host: "127.0.0.1" }]);
  }, 60_000);
  const pair = (c: ClusterCertificates, id: string): { cert: Buffer; key: Buffer } => {
    const p = c.nodes.get(id);
    if (p === undefined) throw new Error(`no certificate for ${id}`);
    return p;
  };

  interface Got {
    readonly status: number;
    readonly json: unknown;
  }
  /** GET over HTTPS trusting the cluster CA, with a client certificate when given. */
  function get(app: InProcessApp, path: string, client?: { cert: Buffer; key: Buffer }, extra: tls.ConnectionOptions = {}): Promise<Got> {
    return new Promise((resolve, reject) => {
      const req = https.request({ host: "127.0.0.1", port: app.port, path, method: "GET", ca: certs.ca, agent: false, timeout: 10_000, ...(client ?? {}), ...extra }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown }));
      });
      req.on("error", reject);
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.end();
    });
  }

  test("without --tls-client-ca: HTTPS answers, asks no client certificate, and refuses TLS 1.1", async () => {
    const app = await startInProcessApp({ tls: pair(certs, "server") });
    try {
      expect(app.baseUrl).toBe(`https://127.0.0.1:${app.port}`);
      expect(await get(app, "/health")).toEqual({ status: 200, json: { status: "ok" } });
      // The client offers TLS 1.1 (and lets OpenSSL use it): the refusal is the server's protocol_version alert.
      const old = await get(app, "/health", undefined, { maxVersion: "TLSv1.1", minVersion: "TLSv1", ciphers: "DEFAULT@SECLEVEL=0" }).then(() => "answered", (e: Error) => e.message);
      expect(old).toMatch(/tlsv1 alert protocol version/i);
      // The server asked for no certificate, so none was sent, even one the client had.
      const socket = tls.connect({ host: "127.0.0.1", port: app.port, ca: certs.ca, ...pair(certs, "client") });
      await new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", resolve);
        socket.once("error", reject);
      });
      expect(socket.authorized).toBe(true);
      socket.destroy();
    } finally {
      await app.close();
    }
  }, 60_000);

  test("with --tls-client-ca: a certificate of the CA passes; none, or a stranger's, is a 401 saying which, over a handshake that succeeded", async () => {
    const app = await startInProcessApp({ tls: { ...pair(certs, "server"), clientCa: certs.ca }, app: { clientCertificates: true } });
    try {
      expect(await get(app, "/health", pair(certs, "client"))).toEqual({ status: 200, json: { status: "ok" } });
      const none = await get(app, "/health");
      expect(none.status).toBe(401);
      expect(none.json).toMatchObject({ error: "unauthorized" });
      expect((none.json as { message: string }).message).toMatch(/^a client certificate signed by the configured CA is required: none was presented \(.+\)$/);
      const other = await get(app, "/v1/status", pair(stranger, "client"));
      expect(other.status).toBe(401);
      expect((other.json as { message: string }).message).toMatch(/^a client certificate signed by the configured CA is required: the certificate presented does not verify against it \(.+\)$/);
      expect(typeof (other.json as { reason: unknown }).reason).toBe("string");
    } finally {
      await app.close();
    }
  }, 60_000);

  test("clientCa alone asks for certificates but the app checks none unless told to (peers on /v1/raft use node keys)", async () => {
    const app = await startInProcessApp({ tls: { ...pair(certs, "server"), clientCa: certs.ca } });
    try {
      expect((await get(app, "/health")).status).toBe(200);
      expect((await get(app, "/health", pair(stranger, "client"))).status).toBe(200);
    } finally {
      await app.close();
    }
  }, 60_000);

  test("an upgrade endpoint behind withClientCertificate: the 401 comes before the handshake; a verified client reaches it", async () => {
    const server = https.createServer({ ...pair(certs, "server"), ca: certs.ca, requestCert: true, rejectUnauthorized: false });
    const reached: string[] = [];
    const inner: UpgradeHandler = {
      handleUpgrade(req, socket): void {
        reached.push(req.url ?? "");
        socket.end("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
      },
    };
    routeUpgrades(server, new Map([["/ws", withClientCertificate(inner)]]), capturingLogger().logger);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    const upgrade = (client?: { cert: Buffer; key: Buffer }): Promise<string> => new Promise((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port, ca: certs.ca, ...(client ?? {}) });
      const chunks: Buffer[] = [];
      s.on("data", (c: Buffer) => chunks.push(c));
      s.on("error", reject);
      s.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
      s.write("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    });
    try {
      const refused = await upgrade();
      expect(refused).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
      expect(refused).toContain("none was presented");
      expect(reached).toEqual([]);
      expect(await upgrade(pair(certs, "client"))).toMatch(/^HTTP\/1\.1 101 /);
      expect(reached).toEqual(["/ws"]);
    } finally {
      await close(server);
    }
  }, 60_000);
});

describe("clientCertificateProblem", () => {
  test("a connection that is not TLS is refused with that reason", () => {
    const err = clientCertificateProblem(new net.Socket());
    expect(err?.code).toBe("unauthorized");
    expect(err?.message).toBe("a client certificate signed by the configured CA is required: this connection is not TLS");
    expect(clientCertificateProblem(undefined)?.message).toBe(err?.message);
  });

  test("OpenSSL's verify code is the reason, whether Node gives it as a string or an Error, or 'not verified' without one", () => {
    const fake = (authorizationError: unknown, peer: object): tls.TLSSocket =>
      Object.assign(Object.create(tls.TLSSocket.prototype) as tls.TLSSocket, { authorized: false, authorizationError, getPeerCertificate: () => peer });
    const asString = clientCertificateProblem(fake("UNABLE_TO_VERIFY_LEAF_SIGNATURE", { subject: {} }));
    expect(asString?.message).toBe("a client certificate signed by the configured CA is required: the certificate presented does not verify against it (UNABLE_TO_VERIFY_LEAF_SIGNATURE)");
    expect(asString?.details).toEqual({ reason: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
    expect(clientCertificateProblem(fake(new Error("CERT_HAS_EXPIRED"), { subject: {} }))?.details).toEqual({ reason: "CERT_HAS_EXPIRED" });
    expect(clientCertificateProblem(fake(null, {}))?.message).toBe("a client certificate signed by the configured CA is required: none was presented (not verified)");
    const authorized = Object.assign(Object.create(tls.TLSSocket.prototype) as tls.TLSSocket, { authorized: true });
    expect(clientCertificateProblem(authorized)).toBeNull();
  });
});

describe("request logs", () => {
  test("a request whose query string does not decode is answered 400 and logged like any other", async () => {
    const captured = capturingLogger();
    const app = await startInProcessApp({ logger: captured.logger });
    try {
      const r = await rawHttp(app.port, Buffer.from("GET /v1/records?from=%ZZ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
      expect(r?.status).toBe(400);
      const line = captured.lines.find((l) => (l.req as { url?: string } | undefined)?.url === "/v1/records?from=%ZZ");
      expect(line).toMatchObject({ req: { method: "GET", url: "/v1/records?from=%ZZ", remote: "127.0.0.1" }, res: { status: 400 } });
      expect(Object.keys(line?.req as object).sort()).toEqual(["method", "remote", "url"]);
    } finally {
      await app.close();
    }
  }, 60_000);

  test("at log level warn there is no access log: a 200 and a 400 write no line, a 500 only the error handler's", async () => {
    const captured = capturingLogger();
    captured.logger.level = "warn";
    const app = await startInProcessApp({
      logger: captured.logger,
      // A bug behind one route: its 500 is logged once, by the error handler (not again as an access line).
      wrap: (deps) => ({ ...deps, reader: Object.assign(Object.create(deps.reader) as typeof deps.reader, { latestCheckpoint: () => { throw new Error("planted"); } }) }),
    });
    const get = async (target: string): Promise<number | undefined> =>
      (await rawHttp(app.port, Buffer.from(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)))?.status;
    try {
      expect(await get("/v1/status")).toBe(200);
      expect(await get("/v1/records?from=%ZZ")).toBe(400);
      expect(captured.lines).toEqual([]);
      expect(await get("/v1/checkpoints/latest?consistency=local")).toBe(500);
      expect(captured.lines.map((l) => [l.level, l.msg])).toEqual([[50, "request failed"]]);
    } finally {
      await app.close();
    }
  }, 60_000);
});
