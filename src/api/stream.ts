/**
 * WS /v1/stream?from=<index>: committed entries in order, checkpoints among them, then every new
 * commit as it is applied. Each frame is a text frame {"type":"entry","entry":<the entry JSON of
 * GET /v1/records/:index>}; a client checks each entry's prev_hash against the hash before it and
 * resumes after a disconnect with from = last index received + 1.
 *
 * Slow and hostile subscribers. Sending is paced by the socket: a subscriber gets frames while the
 * bytes it was sent and whose write has not completed stay under SUBSCRIBER_BUFFER_BYTES_MAX, and
 * more once a write callback brings it under half of that. All subscribers together hold at most
 * TOTAL_BUFFER_BYTES_MAX. Backlog reads run in bounded turns that yield to the event loop
 * (setImmediate, or a pause of one turn while the node's Raft ticks fire late), never inside the
 * Raft Ready handler; a frame is encoded once and shared by every
 * subscriber that needs it while it is in a small cache of recent frames.
 *
 * The stream is one-way: a subscriber may send ping, pong and close frames, nothing else.
 *
 * Close codes (the reason names where to resume where that applies; it is at most 123 bytes):
 *   1001  going away: the server is shutting down. Reason "shutting down; resume with from=N".
 *   1002  protocol error (from ws): a malformed frame, a reserved opcode, an unmasked frame.
 *   1008  policy violation: the client sent a text, binary or continuation frame.
 *   1009  message too big (from ws): a client frame over MAX_PAYLOAD_BYTES.
 *   1011  internal error. Reason "internal error; resume with from=N".
 *   4004  not in this log: the entry to send next is no longer held here (pruned below history_from, or before an installed snapshot).
 *         Reason "entry N is not in this node's log (pruned)".
 *   4008  slow consumer: its buffer stayed full for STALL_TIMEOUT_MS, or, when all subscribers
 *         together went over TOTAL_BUFFER_BYTES_MAX, its buffer had been full the longest (or,
 *         among those never full, it held the most bytes).
 *         Reason "slow consumer; resume with from=N".
 * In every reason, N is the index after the last frame this server queued on the connection:
 * frames arrive in order, so a client that receives the close frame received every frame up to
 * N - 1. A client whose connection drops without a close frame resumes from its last index + 1.
 * The handshake answers 400 {"error":"bad_request"} for a bad from or a malformed upgrade request,
 * 405 for a method other than GET, and 503 {"error":"unavailable"} with Retry-After when
 * MAX_SUBSCRIBERS are connected or the server is shutting down.
 */
import type * as http from "node:http";
import type { Duplex } from "node:stream";
import WebSocket, { ServerOptions, WebSocketServer } from "ws";
import type { Logger } from "pino";
import type { LedgerReader, NodeInfo } from "../node/ports";
import type { Entry } from "../ledger/entry";
import { LedgerError } from "../util/errors";
import { assert } from "../util/assert";
import { entryView } from "./views";
import { afterSlice, sliceMayGoOn } from "./loop-share";
import { closeReason } from "../util/close-reason";
import { parseUrl } from "../util/url";

export const STREAM_PATH = "/v1/stream";

/** Documented close codes (see the header comment). */
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_POLICY_VIOLATION = 1008;
export const CLOSE_INTERNAL = 1011;
export const CLOSE_NOT_IN_LOG = 4004;
export const CLOSE_SLOW_CONSUMER = 4008;

// Why 256: each subscriber costs a socket, at most SUBSCRIBER_BUFFER_BYTES_MAX of buffers and a
// share of the pump's turns; 256 keeps the worst case (256 x 256 KiB = 64 MiB) inside the +200 MB
// envelope while leaving room for dashboards and followers of a busy node.
const MAX_SUBSCRIBERS = 256;
// Why 256 KiB: ~300 frames of a typical record (~800 B), enough to keep a reader on a 20 Mbit/s,
// 100 ms link busy between two write callbacks; small enough that 200 stalled subscribers hold
// 50 MiB at most.
const SUBSCRIBER_BUFFER_BYTES_MAX = 256 * 1024;
// Why 32 MiB: the envelope is +200 MB RSS for 200 subscribers; buffers are the one part that
// grows with their number, and 32 MiB leaves the rest for the frame cache, V8's heap growth while
// encoding and the kernel-side socket state. 128 fully stalled subscribers fit; beyond that the
// largest are closed first.
const TOTAL_BUFFER_BYTES_MAX = 32 * 1024 * 1024;
// Why 15 s: longer than a GC pause, a TCP retransmission burst or a laptop waking from a short
// sleep; short enough that a reader that went away gives its slot (1 of 256) back quickly.
const STALL_TIMEOUT_MS = 15_000;
// Why 1 s: one timer for all subscribers, never one per subscriber; a stall is noticed at most
// 1 s late, which is small against STALL_TIMEOUT_MS.
const SWEEP_INTERVAL_MS = 1_000;
// Why 10 s: a slow (not dead) reader that is closed still drains up to 256 KiB and sees the close
// frame with its resume index; a dead one holds its buffer no longer than this, then ws destroys it.
const CLOSE_TIMEOUT_MS = 10_000;
// Why 125 B: a subscriber may only send control frames, and RFC 6455 5.5 caps their payload at 125.
const MAX_PAYLOAD_BYTES = 125;
// Why 8: a well-behaved client waits for a pong before its next ping; more than 8 unanswered pings
// is a ping flood from a client that does not read (ws terminates it).
const MAX_PENDING_PONGS = 8;
// A turn of the pump is one slice (src/api/loop-share.ts): about SLICE_MS, and the frame cap
// bounds a turn if the clock misbehaves.
const TURN_FRAMES_MAX = 8192;
// Why 64: round-robin fairness; 200 subscribers catching up share each turn instead of the first
// one taking all of it.
const VISIT_FRAMES_MAX = 64;
// Why 64 rows: one SQLite range read per 64 frames amortizes the statement; the rows beyond what
// the subscriber takes now go to the cache for the next visit (or the next subscriber).
const READ_BATCH_ENTRIES = 64;
// Why 8 MiB / 8192 frames: ~10k recent frames at ~800 B, i.e. a few seconds of commits at full
// write rate: live subscribers share one encoding of every new commit, and a pack of subscribers
// reading the same backlog (200 x from=1) shares one read and one encoding per entry.
const CACHE_BYTES_MAX = 8 * 1024 * 1024;
const CACHE_FRAMES_MAX = 8192;

export interface StreamOptions {
  readonly maxSubscribers?: number;
}

interface CachedFrame {
  readonly frame: Buffer;
  readonly hash: Uint8Array;
}

interface Subscriber {
  readonly id: number;
  readonly ws: WebSocket;
  /** The upgraded socket under ws, corked around a batch of sends. */
  readonly socket: Duplex;
  readonly remotePort: number | undefined;
  /** The next index to send. */
  next: number;
  /** Bytes passed to ws.send whose write callback has not fired yet. */
  inflightBytes: number;
  /** True while inflightBytes counts toward totalBytes (false once it is closing or gone). */
  counted: boolean;
  /** Since when it has had frames to send but waited for its buffer to drain (half or more unconfirmed), ms since epoch; 0 = not blocked. */
  blockedSinceMs: number;
  closing: boolean;
}

type ServerOptionsWithLimits = ServerOptions & { readonly closeTimeout: number; readonly maxPendingAutoPongs: number };

const SEND_OPTIONS = { binary: false, compress: false, fin: true } as const;

const STATUS_TEXT: Record<number, string> = { 400: "Bad Request", 405: "Method Not Allowed", 503: "Service Unavailable" };

export class EntryStream {
  private readonly wss: WebSocketServer;
  private readonly max: number;
  private readonly subs = new Set<Subscriber>();
  /** Subscribers with frames to send and room in their buffer, in round-robin order. */
  private readonly ready = new Set<Subscriber>();
  private readonly cache = new Map<number, CachedFrame>();
  private cacheBytes = 0;
  private totalBytes = 0;
  private applied: number;
  private nextId = 1;
  private turnScheduled = false;
  private sweep: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly unsubscribe: () => void;

  constructor(private readonly reader: LedgerReader, private readonly node: NodeInfo, private readonly log: Logger, opts: StreamOptions = {}) {
    this.max = Math.min(opts.maxSubscribers ?? MAX_SUBSCRIBERS, MAX_SUBSCRIBERS);
    const wsOptions: ServerOptionsWithLimits = {
      noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload: MAX_PAYLOAD_BYTES,
      closeTimeout: CLOSE_TIMEOUT_MS, maxPendingAutoPongs: MAX_PENDING_PONGS,
    };
    this.wss = new WebSocketServer(wsOptions);
    // Handshakes ws refuses (bad method, headers) answer JSON like every other error.
    this.wss.on("wsClientError", (err: Error, socket: Duplex) => {
      this.refuse(socket, err.message === "Invalid HTTP method" ? 405 : 400, err.message);
    });
    this.applied = reader.lastApplied();
    // One listener for all subscribers; it runs after the Ready is handled (the runtime defers it)
    // and only marks who has work: the reads happen in the pump's own turns.
    this.unsubscribe = node.onApplied((lastApplied) => this.onApplied(lastApplied));
  }

  /** Takes over /v1/stream upgrades on the server (until the upgrade router calls handleUpgrade). */
  attach(server: http.Server): void {
    server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      if (pathOf(req.url) !== STREAM_PATH) return;
      this.handleUpgrade(req, socket, head);
    });
  }

  /** Completes (or refuses) a WebSocket upgrade for /v1/stream; the caller routed it by path. */
  handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", (err) => this.log.debug({ err: err.message }, "stream socket error"));
    const from = fromParam(req.url);
    if (from === null) return this.refuse(socket, 400, "from must be a whole number >= 1");
    if (this.closed) return this.refuse(socket, 503, "the server is shutting down");
    if (this.subs.size >= this.max) return this.refuse(socket, 503, `too many stream subscribers (at most ${this.max})`);
    const remotePort = req.socket.remotePort;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.serve(ws, socket, from, remotePort));
  }

  private refuse(socket: Duplex, status: number, message: string): void {
    const body = JSON.stringify({ error: status === 503 ? "unavailable" : status === 405 ? "method_not_allowed" : "bad_request", message });
    const extra = status === 503 ? "Retry-After: 1\r\n" : status === 405 ? "Allow: GET\r\n" : "";
    if (!socket.writable) return void socket.destroy();
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `X-Content-Type-Options: nosniff\r\n${extra}Connection: close\r\n\r\n${body}`,
    );
  }

  private serve(ws: WebSocket, socket: Duplex, from: number, remotePort: number | undefined): void {
    const sub: Subscriber = { id: this.nextId++, ws, socket, remotePort, next: from, inflightBytes: 0, counted: true, blockedSinceMs: 0, closing: false };
    ws.on("error", (err) => this.log.debug({ subscriber: sub.id, err: err.message }, "stream client error"));
    if (this.closed || this.subs.size >= this.max) {
      ws.close(CLOSE_GOING_AWAY, closeReason(`shutting down; resume with from=${from}`));
      return;
    }
    this.subs.add(sub);
    ws.on("message", () => this.closeSub(sub, CLOSE_POLICY_VIOLATION, "the stream is one-way: send no messages"));
    ws.on("close", () => {
      sub.closing = true;
      this.subs.delete(sub);
      this.ready.delete(sub);
      this.uncount(sub);
      if (this.subs.size === 0 && this.sweep !== null) {
        clearInterval(this.sweep);
        this.sweep = null;
      }
    });
    if (this.sweep === null) {
      this.sweep = setInterval(() => this.sweepStalled(), SWEEP_INTERVAL_MS);
      this.sweep.unref();
    }
    this.wake(sub);
  }

  private onApplied(lastApplied: number): void {
    if (lastApplied <= this.applied) return;
    this.applied = lastApplied;
    for (const sub of this.subs) this.wake(sub);
  }

  /**
   * Queues sub for the pump when it has frames to send and room in its buffer. With frames to send
   * and half its buffer or more unconfirmed, it waits for a write callback: from then on it counts
   * as blocked, so one that stopped reading is closed by the stall sweep even when it never filled
   * its whole buffer (a caught-up subscriber, sent a few live frames at a time).
   */
  private wake(sub: Subscriber): void {
    if (sub.closing || sub.next > this.applied) return;
    if (sub.inflightBytes >= SUBSCRIBER_BUFFER_BYTES_MAX / 2) {
      if (sub.blockedSinceMs === 0) sub.blockedSinceMs = Date.now();
      return;
    }
    this.ready.add(sub);
    this.scheduleTurn();
  }

  /** The pump's next turn: on the loop's next turn, or after a pause while the node's ticks run late. */
  private scheduleTurn(): void {
    if (this.turnScheduled || this.closed) return;
    this.turnScheduled = true;
    afterSlice(this.node, () => this.turn());
  }

  /** One bounded turn of the pump: one slice (loop-share.ts) (at most TURN_FRAMES_MAX frames), round-robin, then yield. */
  private turn(): void {
    this.turnScheduled = false;
    if (this.closed) return;
    let budget = TURN_FRAMES_MAX;
    const started = performance.now();
    // Each visit sends >= 1 frame or takes sub off the queue, so this ends within the budget
    // plus one pass over the queue (<= MAX_SUBSCRIBERS).
    for (let visits = 0; budget > 0 && this.ready.size > 0 && visits < TURN_FRAMES_MAX + MAX_SUBSCRIBERS && sliceMayGoOn(this.node, started); visits++) {
      const sub = this.ready.values().next().value as Subscriber;
      this.ready.delete(sub);
      let sent = 0;
      try {
        sent = this.pump(sub, Math.min(budget, VISIT_FRAMES_MAX));
      } catch (err) {
        this.log.error({ err, subscriber: sub.id, next: sub.next }, "stream failed");
        this.closeSub(sub, CLOSE_INTERNAL, "internal error");
      }
      budget -= sent;
      if (!sub.closing && sub.next <= this.applied && sub.inflightBytes < SUBSCRIBER_BUFFER_BYTES_MAX) this.ready.add(sub);
    }
    if (this.ready.size > 0) this.scheduleTurn();
  }

  /**
   * Sends sub up to `frames` frames while its buffer has room; returns how many it sent. The
   * frames of one visit go out corked (one writev, not one syscall per frame) and only the last
   * one carries a write callback, which releases the visit's bytes.
   */
  private pump(sub: Subscriber, frames: number): number {
    if (sub.closing) return 0;
    if (sub.ws.readyState !== WebSocket.OPEN) {
      // The client started closing: nothing more goes out, and it leaves the queue for good.
      sub.closing = true;
      this.uncount(sub);
      return 0;
    }
    const batch: Buffer[] = [];
    let bytes = 0;
    let missing = false;
    while (batch.length < frames && sub.next + batch.length <= this.applied && sub.inflightBytes + bytes < SUBSCRIBER_BUFFER_BYTES_MAX) {
      const f = this.frame(sub.next + batch.length);
      if (f === null) {
        missing = true;
        break;
      }
      batch.push(f.frame);
      bytes += f.frame.length;
    }
    if (batch.length > 0) {
      sub.inflightBytes += bytes;
      this.totalBytes += bytes;
      sub.socket.cork();
      try {
        const last = batch.length - 1;
        for (let i = 0; i < last; i++) sub.ws.send(batch[i], SEND_OPTIONS);
        sub.ws.send(batch[last], SEND_OPTIONS, () => this.written(sub, bytes));
      } finally {
        sub.socket.uncork();
      }
      sub.next += batch.length;
    }
    if (missing) this.closeSub(sub, CLOSE_NOT_IN_LOG, `entry ${sub.next} is not in this node's log (pruned)`);
    else if (sub.next <= this.applied && sub.inflightBytes >= SUBSCRIBER_BUFFER_BYTES_MAX && sub.blockedSinceMs === 0) sub.blockedSinceMs = Date.now();
    if (this.totalBytes > TOTAL_BUFFER_BYTES_MAX) this.shedLargest();
    return batch.length;
  }

  /** A write callback: the frame left for the kernel (or the socket is gone). */
  private written(sub: Subscriber, bytes: number): void {
    sub.inflightBytes -= bytes;
    if (sub.counted) this.totalBytes -= bytes;
    assert(sub.inflightBytes >= 0 && this.totalBytes >= 0, "stream buffer accounting went negative");
    sub.blockedSinceMs = 0;
    this.wake(sub);
  }

  /**
   * Closes subscribers until all together are within the total bound: first those whose buffer has
   * been full longest (a reader that stopped reading), then those holding the most bytes. A reader
   * that reads is full only between a send and its write callback, so a pack of stalled ones does
   * not get it closed for their bytes.
   */
  private shedLargest(): void {
    const worse = (a: Subscriber, b: Subscriber): boolean => {
      if ((a.blockedSinceMs !== 0) !== (b.blockedSinceMs !== 0)) return a.blockedSinceMs !== 0;
      if (a.blockedSinceMs !== b.blockedSinceMs) return a.blockedSinceMs < b.blockedSinceMs;
      return a.inflightBytes > b.inflightBytes;
    };
    for (let round = 0; round < MAX_SUBSCRIBERS && this.totalBytes > TOTAL_BUFFER_BYTES_MAX; round++) {
      let shed: Subscriber | null = null;
      for (const s of this.subs) if (s.counted && (shed === null || worse(s, shed))) shed = s;
      if (shed === null) return;
      this.closeSlow(shed, "total");
    }
  }

  private sweepStalled(): void {
    const now = Date.now();
    for (const sub of this.subs) {
      if (!sub.closing && sub.blockedSinceMs !== 0 && now - sub.blockedSinceMs >= STALL_TIMEOUT_MS) this.closeSlow(sub, "stalled");
    }
  }

  private closeSlow(sub: Subscriber, why: "stalled" | "total"): void {
    this.log.warn({ subscriber: sub.id, remote_port: sub.remotePort, code: CLOSE_SLOW_CONSUMER, from: sub.next, why, buffered_bytes: sub.inflightBytes, total_bytes: this.totalBytes },
      "closing a slow stream subscriber");
    this.closeSub(sub, CLOSE_SLOW_CONSUMER, "slow consumer");
  }

  /** Stops sending to sub and closes it with code; the reason says where to resume. */
  private closeSub(sub: Subscriber, code: number, why: string): void {
    if (sub.closing) return;
    sub.closing = true;
    this.ready.delete(sub);
    // Its buffer is freed within CLOSE_TIMEOUT_MS (ws destroys the socket); it no longer counts
    // toward the total, so one stalled subscriber is never closed twice for the same bytes.
    this.uncount(sub);
    const reason = code === CLOSE_NOT_IN_LOG || code === CLOSE_POLICY_VIOLATION ? why : `${why}; resume with from=${sub.next}`;
    if (sub.ws.readyState === WebSocket.OPEN) sub.ws.close(code, closeReason(reason));
  }

  private uncount(sub: Subscriber): void {
    if (!sub.counted) return;
    sub.counted = false;
    this.totalBytes -= sub.inflightBytes;
  }

  /** The encoded frame of a committed entry, from the cache or read (with its neighbours); null if not in this log. */
  private frame(index: number): CachedFrame | null {
    const hit = this.cache.get(index);
    if (hit !== undefined) return hit;
    const to = Math.min(this.applied, index + READ_BATCH_ENTRIES - 1);
    let prev = this.cache.get(index - 1)?.hash ?? this.prevHashOrNull(index);
    if (prev === null) return null;
    let first: CachedFrame | null = null;
    let expect = index;
    for (const e of this.reader.entries(index, to)) {
      if (e.index !== expect) break;
      const f = this.cache.get(e.index) ?? this.put(e, prev);
      first ??= f;
      prev = e.hash;
      expect++;
    }
    return first;
  }

  private prevHashOrNull(index: number): Uint8Array | null {
    try {
      return this.reader.prevHash(index);
    } catch (err) {
      // Not in the log (not_found), or below what this node serves after a prune (gone): 4004, never 1011.
      if (err instanceof LedgerError && (err.code === "not_found" || err.code === "gone")) return null;
      throw err;
    }
  }

  private put(e: Entry, prev: Uint8Array): CachedFrame {
    const f: CachedFrame = { frame: Buffer.from(JSON.stringify({ type: "entry", entry: entryView(e, prev) }), "utf8"), hash: e.hash };
    this.cache.set(e.index, f);
    this.cacheBytes += f.frame.length;
    // Oldest first: Map iteration is insertion order.
    for (const [i, old] of this.cache) {
      if (this.cacheBytes <= CACHE_BYTES_MAX && this.cache.size <= CACHE_FRAMES_MAX) break;
      this.cache.delete(i);
      this.cacheBytes -= old.frame.length;
    }
    return f;
  }

  /** Closes every subscriber (1001, with its resume index) and refuses new ones. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    if (this.sweep !== null) clearInterval(this.sweep);
    this.sweep = null;
    for (const sub of [...this.subs]) {
      this.closeSub(sub, CLOSE_GOING_AWAY, "shutting down");
      // A close frame queued behind a full buffer never leaves: end the socket now, shutdown waits on it.
      sub.ws.terminate();
    }
    this.ready.clear();
    this.cache.clear();
    this.cacheBytes = 0;
    this.wss.close();
  }
}

/** The path of a request target, or null when it does not parse. */
function pathOf(url: string | undefined): string | null {
  return parseUrl(url ?? "/", "http://localhost")?.pathname ?? null;
}

/** The from query parameter (default 1), or null when it is not a whole number >= 1. */
function fromParam(url: string | undefined): number | null {
  const target = parseUrl(url ?? "/", "http://localhost");
  if (target === null) return null; // a request target that is no URL is a bad request
  const raw = target.searchParams.get("from") ?? "1";
  if (!/^[0-9]{1,16}$/.test(raw)) return null;
  const from = Number(raw);
  return Number.isSafeInteger(from) && from >= 1 ? from : null;
}
