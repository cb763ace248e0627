/**
 * An HTTP proxy for browser tests: listens on 127.0.0.1 (an OS-chosen port) and forwards every
 * request to a node unchanged, except that, when told, it alters exactly one byte of the JSON
 * answer to GET /v1/proofs/inclusion/<index>: a hex digit of path[0], the way a lying or corrupted
 * server (or a man in the middle) would hand a verifier a proof that no longer leads to the root.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

/** A proof answer is ~70 bytes per path hash (64 at most) plus a few fields: 1 MiB is far past any. */
const TAMPERED_BODY_BYTES_MAX = 1024 * 1024;
const PATH_FIELD = '"path":["';

/** The body with the first hex digit of path[0] changed (0 → 1, anything else → 0), or why it cannot be. */
export function flipFirstPathDigit(body: Buffer): Buffer | string {
  const at = body.indexOf(PATH_FIELD);
  if (at < 0) return `no ${PATH_FIELD} in the answer (an empty path, or not a proof): ${body.toString("utf8").slice(0, 200)}`;
  const i = at + PATH_FIELD.length;
  const out = Buffer.from(body);
  out[i] = out[i] === 0x30 ? 0x31 : 0x30;
  return out;
}

export class TamperProxy {
  /** The index whose inclusion proof answers are altered; null: forward everything as is. */
  private target: number | null = null;
  /** Answers altered so far (a test asserts the page really asked for the tampered proof). */
  tampered = 0;

  private constructor(private readonly server: http.Server, readonly port: number, private readonly upstreamPort: number) {}

  /** Listens on 127.0.0.1:0 in front of the node on 127.0.0.1:upstreamPort. */
  static async start(upstreamPort: number): Promise<TamperProxy> {
    let proxy: TamperProxy | null = null;
    const server = http.createServer((req, res) => {
      if (proxy === null) {
        res.destroy(); // a request before listen() resolved: cannot happen on an unannounced port
        return;
      }
      proxy.forward(req, res);
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        server.off("error", reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
    proxy = new TamperProxy(server, port, upstreamPort);
    return proxy;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** From now on, alter one byte of every inclusion proof answer for `index` (null: stop). */
  tamperInclusion(index: number | null): void {
    this.target = index;
  }

  private shouldTamper(req: http.IncomingMessage): boolean {
    if (this.target === null || req.method !== "GET" || req.url === undefined) return false;
    return new URL(req.url, "http://proxy").pathname === `/v1/proofs/inclusion/${this.target}`;
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const tamper = this.shouldTamper(req);
    const up = http.request({ host: "127.0.0.1", port: this.upstreamPort, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      if (!tamper || upRes.statusCode !== 200) {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      let bytes = 0;
      upRes.on("data", (c: Buffer) => {
        bytes += c.length;
        if (bytes > TAMPERED_BODY_BYTES_MAX) {
          upRes.destroy();
          res.destroy(new Error(`a proof answer over ${TAMPERED_BODY_BYTES_MAX} bytes`));
          return;
        }
        chunks.push(c);
      });
      upRes.on("end", () => {
        const changed = upRes.headers["content-encoding"] === undefined ? flipFirstPathDigit(Buffer.concat(chunks)) : "the answer is content-encoded";
        if (typeof changed === "string") {
          res.writeHead(502, { "content-type": "text/plain" }).end(`tamper proxy: ${changed}`);
          return;
        }
        this.tampered++;
        res.writeHead(200, { ...upRes.headers, "content-length": String(changed.length) }).end(changed);
      });
    });
    up.on("error", (err) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`tamper proxy: upstream error ${err.message}`);
    });
    req.pipe(up);
  }

  /** Stops listening and drops open connections (keep-alive ones from the browser included). */
  close(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.close((err) => (err === undefined ? resolve() : reject(err)));
      this.server.closeAllConnections();
    });
  }
}
