/**
 * A man in the middle of a peer link, for the tests of issue 12: a TCP proxy on 127.0.0.1 that
 * forwards each connection to a target port and, on the dialer → listener direction, cuts the byte
 * stream into its units and tampers with one of them:
 *   - mode "ws": a plain WebSocket link. Units are WebSocket data frames (the HTTP upgrade request
 *     before them passes untouched); unit 0 is the dialer's auth message, 1.. are its frames.
 *   - mode "tls": a TLS link. Units are TLS records of type application_data (23); in TLS 1.3
 *     the dialer's are its Finished (0), the HTTP upgrade (1), the auth message (2), then frames.
 * Tampers: change one byte of the unit, inject a made-up unit before it, replay it (send it twice),
 * reorder it with the next unit, or drop it. Each is done on the first `connections` connections
 * only; later ones pass untouched, so a test sees the link come back.
 * `direction` picks the side whose units are counted and tampered with: the dialer's (the default,
 * as above) or the listener's ("listener-to-dialer": in ws mode its unit 0 is the first frame after
 * the 101 answer, unmasked, e.g. WS /v1/stream's first entry). The other side always passes
 * untouched. In ws mode a connection that is not a WebSocket upgrade (plain HTTP requests through
 * the same proxy) passes untouched and takes no tamper slot. Every proxy is tracked so afterAll
 * can close them all.
 */
import * as net from "node:net";
import { randomBytes } from "node:crypto";

export type Tamper = "change" | "inject" | "replay" | "reorder" | "drop";
export const TAMPERS: readonly Tamper[] = ["change", "inject", "replay", "reorder", "drop"];

export interface MitmOptions {
  /** The port connections are forwarded to; a function is read at each connection. */
  readonly target: number | (() => number);
  readonly label: string;
  readonly mode: "ws" | "tls";
  readonly tamper: Tamper;
  /** The index of the dialer's unit to tamper with (see the header for what each index is). */
  readonly at: number;
  /** How many connections, the first ones, are tampered with (default 1). */
  readonly connections?: number;
  /** Whose units are tampered with (default "dialer-to-listener"); see the header. */
  readonly direction?: "dialer-to-listener" | "listener-to-dialer";
}

export interface MitmStats {
  /** Connections accepted and forwarded. */
  connections: number;
  /** Tampers done (at most one per connection). */
  tampered: number;
  /** ws mode: connections that were WebSocket upgrades (the others passed as plain HTTP). */
  upgrades: number;
}

/** A parser's unit: its bytes and whether it is counted (a data frame / an application_data record). */
interface Unit { readonly bytes: Buffer; readonly counted: boolean }

/** Bytes of a complete unit at the start of buf, or 0 when more bytes are needed. */
type Framer = (buf: Buffer) => { length: number; counted: boolean } | null;

/** WebSocket frames (RFC 6455 5.2); data frames (opcodes 0, 1, 2) are counted, control frames not. */
const wsFramer: Framer = (buf) => {
  if (buf.length < 2) return null;
  const len7 = buf[1] & 0x7f;
  let off = 2;
  let len = len7;
  if (len7 === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    off = 4;
  } else if (len7 === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    off = 10;
  }
  if ((buf[1] & 0x80) !== 0) off += 4;
  if (buf.length < off + len) return null;
  return { length: off + len, counted: (buf[0] & 0x0f) < 8 };
};

/** TLS records (RFC 8446 5.1): a 5-byte header with the length last; application_data (23) is counted. */
const tlsFramer: Framer = (buf) => {
  if (buf.length < 5) return null;
  const length = 5 + buf.readUInt16BE(3);
  if (buf.length < length) return null;
  return { length, counted: buf[0] === 23 };
};

/** A unit of the same kind, made up: a masked binary frame or an application_data record of random bytes. */
function madeUp(mode: "ws" | "tls"): Buffer {
  if (mode === "tls") {
    const body = randomBytes(64);
    return Buffer.concat([Buffer.from([23, 3, 3, 0, body.length]), body]);
  }
  // A binary frame of a 32-byte tag the man in the middle cannot compute, and a Raft message.
  const payload = Buffer.concat([randomBytes(32), Buffer.from('{"type":"Heartbeat","from":"n1","to":"n2","term":999,"commit":0}', "utf8")]);
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([Buffer.from([0x82, 0x80 | 126]), Buffer.from([payload.length >> 8, payload.length & 255]), mask, masked]);
}

/** Flips one bit in the middle of the unit's payload (past a WebSocket frame's header and 32-byte tag, or a record's header). */
function changed(u: Buffer, mode: "ws" | "tls"): Buffer {
  const c = Buffer.from(u);
  const start = mode === "tls" ? 5 : Math.min(u.length - 1, 14 + 32);
  const pos = start + Math.floor((c.length - start) / 2);
  c[pos] ^= 0x01;
  return c;
}

const proxies = new Set<MitmProxy>();

export class MitmProxy {
  readonly stats: MitmStats = { connections: 0, tampered: 0, upgrades: 0 };
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server, readonly port: number, private readonly opts: MitmOptions) {}

  static async start(opts: MitmOptions): Promise<MitmProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const p = new MitmProxy(server, (server.address() as net.AddressInfo).port, opts);
    server.on("connection", (c) => p.onConnection(c));
    proxies.add(p);
    return p;
  }

  private onConnection(client: net.Socket): void {
    const target = typeof this.opts.target === "function" ? this.opts.target() : this.opts.target;
    const upstream = net.connect(target, "127.0.0.1");
    const nth = this.stats.connections++;
    const slots = this.opts.connections ?? 1;
    // tls: every connection is a link, slots in order of arrival; ws: decided once the preamble shows an upgrade.
    let tamperHere = this.opts.mode === "tls" && nth < slots;
    const toListener = (this.opts.direction ?? "dialer-to-listener") === "dialer-to-listener";
    const [source, sink] = toListener ? [client, upstream] : [upstream, client];
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on("error", () => {
        // a reset by either end ends both; the test reads what the nodes did
      });
      s.on("close", () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    sink.on("data", (d: Buffer) => source.write(d)); // the untouched direction
    const framer = this.opts.mode === "tls" ? tlsFramer : wsFramer;
    // In ws mode the HTTP upgrade request (or the 101 answer) passes first, untouched: it ends at the blank line.
    let preamble = this.opts.mode === "ws";
    /** Not a WebSocket upgrade: everything passes as it is. */
    let plain = false;
    let buf = Buffer.alloc(0);
    let counted = 0;
    let held: Buffer | null = null;
    let done = false;
    const send = (u: Unit, index: number): void => {
      if (held !== null && index >= 0) { // reorder: this unit first, then the held one
        sink.write(u.bytes);
        sink.write(held);
        held = null;
        return;
      }
      if (!tamperHere || done || index !== this.opts.at) {
        sink.write(u.bytes);
        return;
      }
      done = true;
      this.stats.tampered++;
      switch (this.opts.tamper) {
        case "change": sink.write(changed(u.bytes, this.opts.mode)); break;
        case "inject": sink.write(madeUp(this.opts.mode)); sink.write(u.bytes); break;
        case "replay": sink.write(u.bytes); sink.write(u.bytes); break;
        case "reorder": held = u.bytes; break;
        case "drop": break;
      }
    };
    source.on("data", (d: Buffer) => {
      if (plain) {
        sink.write(d);
        return;
      }
      buf = Buffer.concat([buf, d]);
      if (preamble) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end + 4).toString("latin1");
        sink.write(buf.subarray(0, end + 4));
        buf = buf.subarray(end + 4);
        preamble = false;
        const upgrade = toListener ? /^upgrade:\s*websocket\s*$/im.test(head) : head.startsWith("HTTP/1.1 101");
        if (!upgrade) {
          plain = true;
          if (buf.length > 0) sink.write(buf);
          buf = Buffer.alloc(0);
          return;
        }
        // The tamper slots are the upgrades', in order.
        tamperHere = this.stats.upgrades++ < slots;
      }
      for (;;) {
        const f = framer(buf);
        if (f === null) break;
        const bytes = buf.subarray(0, f.length);
        buf = buf.subarray(f.length);
        send({ bytes, counted: f.counted }, f.counted ? counted++ : -1);
      }
    });
  }

  async close(): Promise<void> {
    proxies.delete(this);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Closes every proxy still open (for afterAll). */
export async function closeAllMitm(): Promise<void> {
  await Promise.all([...proxies].map((p) => p.close()));
}
