/**
 * Raw-TCP tools for hostile-input tests of the WebSocket endpoints: a byte-exact WebSocket frame
 * builder (any opcode, RSV bits, masked or not, a mask key that does not match the payload, a
 * declared length that is not the real one, 16- and 64-bit length forms), an HTTP upgrade request
 * builder, and a bounded raw connection that records what the node answered. Nothing here
 * follows the protocol unless asked to: that is the point.
 */
import * as net from "node:net";
import { randomBytes } from "node:crypto";

/** Bytes of the node's answers kept per connection: enough for a status line, headers and a few frames. */
const RECEIVED_BYTES_MAX = 64 * 1024;

export interface FrameSpec {
  readonly fin?: boolean;
  /** RSV1..3 as a 3-bit number (0 = none set). */
  readonly rsv?: number;
  /** 0..15. */
  readonly opcode: number;
  readonly payload: Uint8Array;
  /** Mask key (4 bytes) or null for an unmasked frame; default: a random key. */
  readonly mask?: Uint8Array | null;
  /** Mask the payload with this key instead of the declared one (a "bad mask"). */
  readonly maskWith?: Uint8Array;
  /** The length written in the header (default: the payload's); may exceed the bytes sent. */
  readonly declaredLength?: bigint;
  /** Which length form to use (default: the shortest that fits declaredLength). */
  readonly lengthForm?: 7 | 16 | 64;
}

/** Encodes one frame exactly as specified (RFC 6455 5.2 layout, nothing validated). */
export function wsFrame(f: FrameSpec): Buffer {
  const declared = f.declaredLength ?? BigInt(f.payload.length);
  const form = f.lengthForm ?? (declared < 126n ? 7 : declared < 65536n ? 16 : 64);
  const mask = f.mask === undefined ? randomBytes(4) : f.mask;
  const b0 = ((f.fin ?? true) ? 0x80 : 0) | (((f.rsv ?? 0) & 7) << 4) | (f.opcode & 15);
  const maskBit = mask === null ? 0 : 0x80;
  let header: Buffer;
  if (form === 7) {
    header = Buffer.from([b0, maskBit | Number(declared & 0x7fn)]);
  } else if (form === 16) {
    header = Buffer.alloc(4);
    header[0] = b0;
    header[1] = maskBit | 126;
    header.writeUInt16BE(Number(declared & 0xffffn), 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = b0;
    header[1] = maskBit | 127;
    header.writeBigUInt64BE(declared & 0xffffffffffffffffn, 2);
  }
  const body = Buffer.from(f.payload);
  const key = f.maskWith ?? mask;
  if (key !== null && key !== undefined) for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  return Buffer.concat(mask === null ? [header, body] : [header, Buffer.from(mask), body]);
}

/** A masked text frame (what a well-behaved client sends). */
export const textFrame = (text: string): Buffer => wsFrame({ opcode: 1, payload: Buffer.from(text, "utf8") });

export interface UpgradeSpec {
  readonly method?: string;
  readonly path: string;
  readonly host?: string;
  readonly key?: string;
  readonly version?: string;
  readonly upgrade?: string;
  readonly extraHeaders?: readonly string[];
}

/** An HTTP/1.1 WebSocket upgrade request (valid unless the spec says otherwise). */
export function upgradeRequest(s: UpgradeSpec): Buffer {
  const lines = [
    `${s.method ?? "GET"} ${s.path} HTTP/1.1`,
    `Host: ${s.host ?? "127.0.0.1"}`,
    `Upgrade: ${s.upgrade ?? "websocket"}`,
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${s.key ?? randomBytes(16).toString("base64")}`,
    `Sec-WebSocket-Version: ${s.version ?? "13"}`,
    ...(s.extraHeaders ?? []),
  ];
  return Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
}

/** One raw TCP connection to 127.0.0.1:port; every wait on it is bounded. */
export class RawConn {
  private readonly chunks: Buffer[] = [];
  private receivedBytes = 0;
  private ended = false;
  private readonly waiters: Array<() => void> = [];
  readonly closed: Promise<void>;
  /** The error the socket saw, if any (ECONNRESET and EPIPE are expected here). */
  error: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    this.closed = new Promise((resolve) => socket.once("close", () => {
      this.ended = true;
      this.wake();
      resolve();
    }));
    socket.on("error", (err) => {
      this.error = err;
    });
    socket.on("data", (b: Buffer) => {
      if (this.receivedBytes < RECEIVED_BYTES_MAX) this.chunks.push(b);
      this.receivedBytes += b.length;
      this.wake();
    });
    socket.on("end", () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Connects within timeoutMs; rejects with the reason otherwise. */
  static connect(port: number, timeoutMs = 5000): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to 127.0.0.1:${port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeListener("error", onError);
        resolve(new RawConn(socket));
      });
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once("error", onError);
    });
  }

  /** True while the node has neither closed nor ended the connection. */
  isOpen(): boolean {
    return !this.ended && !this.socket.destroyed;
  }

  /** Writes bytes and waits until they are handed to the kernel; false if the connection was already gone. */
  write(bytes: Uint8Array): Promise<boolean> {
    if (!this.isOpen() || !this.socket.writable) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.socket.write(bytes, (err) => resolve(err === undefined || err === null));
    });
  }

  /** What the node sent so far (at most RECEIVED_BYTES_MAX bytes). */
  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Waits until pred(received) holds or the connection ends or timeoutMs passes; returns pred's last value. */
  async waitFor(pred: (got: Buffer) => boolean, timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (pred(this.received())) return true;
      const left = end - Date.now();
      if (!this.isOpen() || left <= 0) return pred(this.received());
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for the end of the HTTP response head; returns its status code or null if none came. */
  async responseStatus(timeoutMs = 5000): Promise<number | null> {
    await this.waitFor((b) => b.includes("\r\n\r\n"), timeoutMs);
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(this.received().toString("latin1"));
    return m === null ? null : Number(m[1]);
  }

  /** The HTTP response body after the head, as text (for JSON error bodies). */
  responseBody(): string {
    const text = this.received().toString("utf8");
    const at = text.indexOf("\r\n\r\n");
    return at < 0 ? "" : text.slice(at + 4);
  }

  /** Waits (bounded) until the node closes the connection; true if it did. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    await this.waitFor(() => false, timeoutMs);
    return !this.isOpen();
  }

  /** Half-closes our side (FIN). */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface ServerFrame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly payload: Buffer;
}

/**
 * Parses the unmasked frames a server sent, after the HTTP response head; stops at the first
 * incomplete frame (bounded by the bytes given).
 */
export function parseServerFrames(received: Buffer): ServerFrame[] {
  const at = received.indexOf("\r\n\r\n");
  if (at < 0) return [];
  const out: ServerFrame[] = [];
  let p = at + 4;
  while (p + 2 <= received.length) {
    const b0 = received[p];
    const b1 = received[p + 1];
    let len = b1 & 0x7f;
    let q = p + 2;
    if (len === 126) {
      if (q + 2 > received.length) break;
      len = received.readUInt16BE(q);
      q += 2;
    } else if (len === 127) {
      if (q + 8 > received.length) break;
      const big = received.readBigUInt64BE(q);
      if (big > BigInt(received.length)) break;
      len = Number(big);
      q += 8;
    }
    if ((b1 & 0x80) !== 0) q += 4; // a server never masks; skip a key if one is there
    if (q + len > received.length) break;
    out.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 15, payload: received.subarray(q, q + len) });
    p = q + len;
  }
  return out;
}
