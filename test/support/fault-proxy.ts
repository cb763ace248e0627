/**
 * A fault-injecting TCP proxy for cluster tests: listens on 127.0.0.1 (an OS-chosen port) and
 * forwards each connection to a target port. cut() severs every current connection and, until
 * heal(), refuses new ones (accept + reset) or blackholes them (accept, read and discard, never
 * answer), the way a partitioned network looks to a peer. Every proxy is tracked so afterAll can
 * close them all with closeAllProxies().
 */
import * as net from "node:net";

export type CutMode = "refuse" | "blackhole";

export interface ProxyStats {
  /** Connections forwarded to the target. */
  forwarded: number;
  /** Connections reset at accept while cut (mode refuse). */
  refused: number;
  /** Connections accepted and held silent while cut (mode blackhole). */
  blackholed: number;
  /** Connections destroyed by cut() or heal() (they were open or held at that moment). */
  severed: number;
  /** Bytes forwarded client → target and target → client. */
  bytesUp: number;
  bytesDown: number;
  /** Bytes read from blackholed connections and dropped. */
  bytesDropped: number;
}

export interface FaultProxyOptions {
  /** The port connections are forwarded to; a function is read at each connection (late binding). */
  readonly target: number | (() => number);
  /** A name for messages, e.g. "n1→n2". */
  readonly label: string;
  /** Start cut (nothing gets through until heal()). */
  readonly startCut?: CutMode;
}

const proxies = new Set<FaultProxy>();

export class FaultProxy {
  readonly stats: ProxyStats = { forwarded: 0, refused: 0, blackholed: 0, severed: 0, bytesUp: 0, bytesDown: 0, bytesDropped: 0 };
  private readonly open = new Set<net.Socket>();
  private cutMode: CutMode | null;
  private closed = false;

  private constructor(private readonly server: net.Server, readonly port: number, private readonly opts: FaultProxyOptions) {
    this.cutMode = opts.startCut ?? null;
  }

  /** Listens on 127.0.0.1:0 and resolves once listening. */
  static async start(opts: FaultProxyOptions): Promise<FaultProxy> {
    let proxy: FaultProxy | null = null;
    const server = net.createServer({ pauseOnConnect: false }, (sock) => {
      if (proxy === null) {
        sock.destroy(); // a connection before listen() resolved: cannot happen on an unannounced port
        return;
      }
      proxy.accept(sock);
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        server.off("error", reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
    proxy = new FaultProxy(server, port, opts);
    proxies.add(proxy);
    return proxy;
  }

  get label(): string {
    return this.opts.label;
  }

  isCut(): boolean {
    return this.cutMode !== null;
  }

  /** Severs every open connection; new ones are refused or blackholed until heal(). */
  cut(mode: CutMode = "refuse"): void {
    this.cutMode = mode;
    this.severAll();
  }

  /** Lets new connections through again; blackholed ones are reset so their peers redial. */
  heal(): void {
    this.cutMode = null;
    this.severAll();
  }

  /** Stops listening and destroys every connection. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cutMode = "refuse";
    this.severAll();
    proxies.delete(this);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  describe(): string {
    return `${this.opts.label} :${this.port}${this.cutMode === null ? "" : ` (cut: ${this.cutMode})`} ${JSON.stringify(this.stats)}`;
  }

  private severAll(): void {
    for (const s of this.open) {
      this.stats.severed++;
      s.destroy();
    }
    this.open.clear();
  }

  private track(s: net.Socket): void {
    this.open.add(s);
    s.once("close", () => this.open.delete(s));
    // Resets and refused connects are the point of this proxy; the close handler does the bookkeeping.
    s.on("error", () => s.destroy());
  }

  private accept(client: net.Socket): void {
    if (this.closed || this.cutMode === "refuse") {
      this.stats.refused++;
      client.resetAndDestroy();
      return;
    }
    this.track(client);
    if (this.cutMode === "blackhole") {
      this.stats.blackholed++;
      client.on("data", (b: Buffer) => {
        this.stats.bytesDropped += b.length;
      });
      return;
    }
    this.stats.forwarded++;
    const targetPort = typeof this.opts.target === "number" ? this.opts.target : this.opts.target();
    const upstream = net.connect({ host: "127.0.0.1", port: targetPort });
    this.track(upstream);
    client.on("data", (b: Buffer) => {
      this.stats.bytesUp += b.length;
      if (!upstream.write(b)) client.pause();
    });
    upstream.on("drain", () => client.resume());
    upstream.on("data", (b: Buffer) => {
      this.stats.bytesDown += b.length;
      if (!client.write(b)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
    client.once("end", () => upstream.end());
    upstream.once("end", () => client.end());
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => client.destroy());
  }
}

/** Closes every proxy still open (for afterAll). */
export async function closeAllProxies(): Promise<void> {
  await Promise.all([...proxies].map((p) => p.close()));
}
