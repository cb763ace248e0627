/**
 * WS /v1/stream?from=<index>: committed entries in order, checkpoints among them, then every new
 * commit as it is applied. Each frame is {"type":"entry","entry":<the entry JSON of GET
 * /v1/records/:index>}; a client checks each entry's prev_hash against the hash before it and
 * resumes after a disconnect with from = last index + 1. Slow readers are paced by the socket's
 * buffer, never by an unbounded queue.
 */
import type * as http from "node:http";
import type { Duplex } from "node:stream";
import WebSocket, { WebSocketServer } from "ws";
import type { Logger } from "pino";
import type { RaftLedgerNode } from "../node/raft-node";
import { entryView } from "./views";

export const STREAM_PATH = "/v1/stream";
const BUFFERED_MAX = 1 << 20;
const CHUNK = 256;

export interface StreamOptions {
  readonly maxSubscribers?: number;
}

export class EntryStream {
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 4096 });
  private readonly max: number;

  constructor(private readonly node: RaftLedgerNode, private readonly log: Logger, opts: StreamOptions = {}) {
    this.max = opts.maxSubscribers ?? 256;
  }

  attach(server: http.Server): void {
    server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname !== STREAM_PATH) return;
      const raw = url.searchParams.get("from") ?? "1";
      const from = /^[0-9]{1,16}$/.test(raw) ? Number(raw) : NaN;
      const refuse = (status: number, message: string): void => {
        socket.end(`HTTP/1.1 ${status} ${status === 400 ? "Bad Request" : "Service Unavailable"}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${JSON.stringify({ error: status === 400 ? "bad_request" : "unavailable", message })}`);
      };
      if (!Number.isSafeInteger(from) || from < 1) return refuse(400, "from must be a whole number >= 1");
      if (this.wss.clients.size >= this.max) return refuse(503, "too many stream subscribers");
      this.wss.handleUpgrade(req, socket, head, (ws) => this.serve(ws, from));
    });
  }

  private serve(ws: WebSocket, from: number): void {
    let next = from;
    let pumping = false;
    const pump = (): void => {
      if (pumping || ws.readyState !== WebSocket.OPEN) return;
      pumping = true;
      try {
        const applied = this.node.commitIndex();
        while (next <= applied && ws.bufferedAmount < BUFFERED_MAX) {
          const to = Math.min(applied, next + CHUNK - 1);
          for (const e of [...this.node.store.entries(next, to)]) {
            if (e.index !== next) {
              ws.close(1011, `entry ${next} is not in this node's log (compacted?)`);
              return;
            }
            ws.send(JSON.stringify({ type: "entry", entry: entryView(e, this.node.prevHash(e.index)) }));
            next++;
          }
          if (next <= to) {
            ws.close(1011, `entry ${next} is not in this node's log (compacted?)`);
            return;
          }
        }
        // A full socket buffer: resume once it drains (checked on the next write callback/tick).
        if (next <= applied) setTimeout(pump, 10).unref();
      } catch (err) {
        this.log.error({ err }, "stream failed");
        ws.close(1011, "internal error");
      } finally {
        pumping = false;
      }
    };
    const unsubscribe = this.node.onApplied(() => pump());
    ws.on("close", unsubscribe);
    ws.on("error", (err) => this.log.debug({ err: err.message }, "stream client error"));
    pump();
  }

  close(): void {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
  }
}
