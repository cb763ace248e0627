/** `resonetics serve`: open (or initialize) a data dir, run the node and the HTTP API. */
import * as path from "node:path";
import pino from "pino";
import { openDataDir, TOKEN_FILE } from "../node/data-dir";
import { RaftLedgerNode } from "../node/raft-node";
import { RecordTypes } from "../node/record-types";
import { createApp, listen } from "../api/server";
import { EntryStream } from "../api/stream";

export interface ServeOptions {
  readonly dataDir: string;
  readonly host: string;
  readonly port: number;
  readonly checkpointEvery: number;
  readonly checkpointIntervalMs: number;
  readonly snapshotEvery: number;
  readonly tickMs: number;
  readonly writeTimeoutMs: number;
  readonly peers: ReadonlyMap<string, string>;
  readonly bodyLimitBytes: number;
  readonly logLevel: string;
}

/** Runs until SIGTERM/SIGINT, then shuts down cleanly. */
export async function serve(o: ServeOptions): Promise<void> {
  const logger = pino({ level: o.logLevel, base: { pid: process.pid } });
  const dd = openDataDir(path.resolve(o.dataDir), `${o.host}:${o.port}`);
  if (dd.created) logger.info({ data_dir: dd.dir, cluster: dd.clusterId }, "initialized a new single-node cluster");
  const node = new RaftLedgerNode(dd, {
    tickMs: o.tickMs, electionTick: 10, heartbeatTick: 2,
    checkpointEvery: o.checkpointEvery, checkpointIntervalMs: o.checkpointIntervalMs, snapshotEvery: o.snapshotEvery,
    writeTimeoutMs: o.writeTimeoutMs, peerAddresses: o.peers, now: () => new Date(), logger: logger.child({ component: "node" }),
  });
  const log = logger.child({ node_id: dd.nodeId });
  const app = createApp({ node, types: new RecordTypes(), adminToken: dd.adminToken, bodyLimitBytes: o.bodyLimitBytes }, log);
  const { server, port } = await listen(app, o.host, o.port);
  node.peers.attach(server);
  const stream = new EntryStream(node, log.child({ component: "stream" }));
  stream.attach(server);
  log.info({ host: o.host, port, data_dir: dd.dir, term: node.currentTerm(), admin_token_file: path.join(dd.dir, TOKEN_FILE) }, "listening");
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    // Upgraded sockets (peer links, streams) keep an HTTP server open: end them first. Requests
    // in flight get a grace period to finish, then every connection is closed.
    stream.close();
    node.peers.close();
    server.close(() => {
      node.close().then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
    });
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 2000).unref();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}
