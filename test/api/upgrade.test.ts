// src/api/upgrade.ts, in-process on a bare HTTP server with stand-in endpoints: an upgrade request
// goes to the handler of its exact pathname; any other path, a request that is not a WebSocket
// opening handshake (RFC 6455 4.2.1), or a handler's LedgerError is answered with a JSON error of
// the mapped status and the socket closed; a handler's bug destroys the socket and is logged.
import * as http from "node:http";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import { LedgerError } from "../../src/util/errors";
import { answerUpgrade, routeUpgrades, UpgradeHandler, webSocketRequestProblem } from "../../src/api/upgrade";
import { capturingLogger } from "../support/in-process-app";
import { RawAnswer, rawHttp } from "../support/ledger-client";

const KEY = "dGhlIHNhbXBsZSBub25jZQ=="; // RFC 6455's sample key
const captured = capturingLogger();
let server: http.Server;
let port = 0;
const seen: string[] = [];
/** What the /throws endpoint throws next. */
let toThrow: unknown = null;

const ok: UpgradeHandler = {
  handleUpgrade(req: http.IncomingMessage, socket: Duplex): void {
    seen.push(req.url ?? "");
    socket.end("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n");
  },
};
const throws: UpgradeHandler = {
  handleUpgrade(): void {
    throw toThrow;
  },
};

// A new server per test: its setup (src code) then runs inside the test (Stryker counts code run in
// beforeAll as "static", run against every test).
beforeEach(async () => {
  server = http.createServer((_req, res) => res.end());
  routeUpgrades(server, new Map([["/ok", ok], ["/throws", throws]]), captured.logger);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as net.AddressInfo).port;
});
afterEach(async () => {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
});

function upgrade(target: string, headers: Record<string, string> = {}, method = "GET"): Promise<RawAnswer | null> {
  const all: Record<string, string> = { Host: "x", Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13", ...headers };
  const lines = Object.entries(all).filter(([, v]) => v !== "").map(([k, v]) => `${k}: ${v}`);
  return rawHttp(port, Buffer.from(`${method} ${target} HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`));
}

const summary = (r: RawAnswer | null): { status?: number; json?: unknown } => ({ status: r?.status, json: r?.json });

describe("routeUpgrades", () => {
  test("a handshake to a known path reaches its handler, query string and all", async () => {
    const r = await upgrade("/ok?from=3");
    expect(r?.status).toBe(101);
    expect(seen).toEqual(["/ok?from=3"]);
  });

  test("any other path is a JSON 404 naming the path (at most 200 characters of it), and closes", async () => {
    const r = await upgrade("/v1/nothing");
    expect(summary(r)).toEqual({ status: 404, json: { error: "not_found", message: "no WebSocket endpoint at /v1/nothing" } });
    expect(r?.headers.get("connection")).toBe("close");
    expect(r?.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(r?.headers.get("x-content-type-options")).toBe("nosniff");
    expect(r?.headers.get("cache-control")).toBe("no-store");
    expect(Number(r?.headers.get("content-length"))).toBe(r?.body.length);
    expect(r?.headers.get("retry-after")).toBeUndefined();
    const long = `/${"p".repeat(300)}`;
    expect((await upgrade(long))?.json).toEqual({ error: "not_found", message: `no WebSocket endpoint at ${long.slice(0, 200)}` });
    // the pathname is exact: a prefix or an extension is another path
    expect((await upgrade("/ok/"))?.status).toBe(404);
    expect((await upgrade("/o"))?.status).toBe(404);
  });

  test("a request to a known path that is no WebSocket handshake is refused with the reason", async () => {
    const post = await upgrade("/ok", {}, "POST");
    expect(summary(post)).toEqual({ status: 405, json: { error: "method_not_allowed", message: "a WebSocket handshake is a GET, not POST" } });
    expect(post?.headers.get("allow")).toBe("GET");
    expect(summary(await upgrade("/ok", { Upgrade: "h2c" }))).toEqual({ status: 400, json: { error: "bad_request", message: "the Upgrade header must be websocket" } });
    expect(summary(await upgrade("/ok", { "Sec-WebSocket-Key": "" }))).toEqual({ status: 400, json: { error: "bad_request", message: "missing or invalid Sec-WebSocket-Key header" } });
    const v8 = await upgrade("/ok", { "Sec-WebSocket-Version": "8" });
    expect(summary(v8)).toEqual({ status: 400, json: { error: "bad_request", message: "Sec-WebSocket-Version must be 13" } });
    expect(v8?.headers.get("sec-websocket-version")).toBe("13");
    expect(seen.filter((u) => u === "/ok")).toEqual([]);
  });

  test("a handler's LedgerError is answered with its status (503 and 429 with Retry-After 1)", async () => {
    toThrow = new LedgerError("unavailable", "full", { streams: 2 });
    const full = await upgrade("/throws");
    expect(summary(full)).toEqual({ status: 503, json: { error: "unavailable", message: "full", streams: 2 } });
    expect(full?.headers.get("retry-after")).toBe("1");
    toThrow = new LedgerError("too_many_requests", "slow down");
    expect((await upgrade("/throws"))?.headers.get("retry-after")).toBe("1");
    toThrow = new LedgerError("forbidden", "no");
    const forbidden = await upgrade("/throws");
    expect([forbidden?.status, forbidden?.headers.get("retry-after")]).toEqual([403, undefined]);
  });

  test("a target that is not a path is a 400, and the socket closes", async () => {
    const r = await upgrade("//[");
    expect(summary(r)).toEqual({ status: 400, json: { error: "bad_request", message: "the request target is not a valid path" } });
    expect(r?.headers.get("connection")).toBe("close");
  });

  test("an error on the handed-over socket ends that socket only, logged at debug with the peer's address", async () => {
    const debug = capturingLogger();
    debug.logger.level = "debug";
    const failing: UpgradeHandler = {
      handleUpgrade(_req: http.IncomingMessage, socket: Duplex): void {
        socket.emit("error", new Error("reset by peer"));
        socket.destroy();
      },
    };
    const own = http.createServer((_req, res) => res.end());
    routeUpgrades(own, new Map([["/fails", failing]]), debug.logger);
    await new Promise<void>((resolve) => own.listen(0, "127.0.0.1", resolve));
    try {
      const lines = Object.entries({ Host: "x", Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13" }).map(([k, v]) => `${k}: ${v}`);
      expect(await rawHttp((own.address() as net.AddressInfo).port, Buffer.from(`GET /fails HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`))).toBeNull();
      expect(debug.lines.filter((l) => l.msg === "upgrade socket error")).toEqual([
        expect.objectContaining({ level: 20, remote: "127.0.0.1", err: "reset by peer" }),
      ]);
    } finally {
      await new Promise<void>((resolve) => {
        own.close(() => resolve());
        own.closeAllConnections();
      });
    }
  });

  test("a handler's bug destroys the socket without an answer and is logged as an error", async () => {
    captured.lines.length = 0;
    toThrow = new Error("handler bug");
    expect(await upgrade("/throws")).toBeNull();
    const logged = captured.lines.filter((l) => l.msg === "upgrade handler failed");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 50, path: "/throws" });
  });
});

describe("webSocketRequestProblem (RFC 6455 4.2.1)", () => {
  const req = (method: string | undefined, headers: Record<string, string>): http.IncomingMessage => ({ method, headers } as unknown as http.IncomingMessage);
  const good = { upgrade: "websocket", "sec-websocket-key": KEY, "sec-websocket-version": "13" };

  test("a handshake passes; Upgrade is compared without case", () => {
    expect(webSocketRequestProblem(req("GET", good))).toBeNull();
    expect(webSocketRequestProblem(req("GET", { ...good, upgrade: "WebSocket" }))).toBeNull();
  });

  test("each missing or wrong part is named", () => {
    const message = (m: string | undefined, h: Record<string, string>): string | undefined => webSocketRequestProblem(req(m, h))?.err.message;
    expect(message(undefined, good)).toBe("a WebSocket handshake is a GET, not ?");
    const { upgrade: _u, ...noUpgrade } = good;
    expect(message("GET", noUpgrade)).toBe("the Upgrade header must be websocket");
    const { "sec-websocket-key": _k, ...noKey } = good;
    expect(message("GET", noKey)).toBe("missing or invalid Sec-WebSocket-Key header");
    // the key is 16 bytes in base64: 22 characters and "=="
    for (const key of ["dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ", "xdGhlIHNhbXBsZSBub25jZQ==", `${KEY}AAAA`, `${KEY}==`, "dGhlIHNhbXBsZSBub25jZ*==", ` ${KEY}`]) {
      expect(message("GET", { ...good, "sec-websocket-key": key })).toBe("missing or invalid Sec-WebSocket-Key header");
    }
    const { "sec-websocket-version": _v, ...noVersion } = good;
    const p = webSocketRequestProblem(req("GET", noVersion));
    expect([p?.err.code, p?.err.message, p?.headers]).toEqual(["bad_request", "Sec-WebSocket-Version must be 13", { "Sec-WebSocket-Version": "13" }]);
    const post = webSocketRequestProblem(req("POST", good));
    expect([post?.err.code, post?.headers]).toEqual(["method_not_allowed", { Allow: "GET" }]);
  });
});

describe("answerUpgrade", () => {
  test("a socket no longer writable is destroyed without writing", () => {
    let destroyed = 0;
    let written = 0;
    const socket = { writable: false, destroy: () => void destroyed++, end: () => void written++ } as unknown as Duplex;
    answerUpgrade(socket, new LedgerError("not_found", "x"));
    expect([destroyed, written]).toEqual([1, 0]);
  });

  test("the socket is destroyed once the answer is flushed, or after 2 s if the client never reads it", () => {
    jest.useFakeTimers();
    try {
      let destroyed = 0;
      let flushed: (() => void) | undefined;
      const socket = { writable: true, destroy: () => void destroyed++, end: (_s: string, cb: () => void) => void (flushed = cb) } as unknown as Duplex;
      answerUpgrade(socket, new LedgerError("not_found", "x"));
      expect(destroyed).toBe(0);
      flushed?.();
      expect(destroyed).toBe(1);

      let stuck = 0;
      const slow = { writable: true, destroy: () => void stuck++, end: () => undefined } as unknown as Duplex;
      answerUpgrade(slow, new LedgerError("not_found", "x"));
      jest.advanceTimersByTime(1999);
      expect(stuck).toBe(0);
      jest.advanceTimersByTime(1);
      expect(stuck).toBe(1);
    } finally {
      jest.useRealTimers();
    }
  });

  test("the answer is one HTTP/1.1 head with the extra headers after the fixed ones, then the JSON body", () => {
    let out = "";
    const socket = { writable: true, destroy: () => undefined, end: (s: string) => void (out = s) } as unknown as Duplex;
    answerUpgrade(socket, new LedgerError("too_many_requests", "wait", { retry_after_s: 3 }), { "X-Extra": "1" });
    const body = JSON.stringify({ error: "too_many_requests", message: "wait", retry_after_s: 3 });
    expect(out).toBe([
      "HTTP/1.1 429 Too Many Requests", "Content-Type: application/json; charset=utf-8", `Content-Length: ${Buffer.byteLength(body)}`,
      "X-Content-Type-Options: nosniff", "Cache-Control: no-store", "Connection: close", "Retry-After: 1", "X-Extra: 1", "", body,
    ].join("\r\n"));
  });
});
