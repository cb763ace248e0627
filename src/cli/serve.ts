/** `resonetics serve`: open (or initialize) a data dir, run the node and the HTTP API. */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import pino from "pino";
import { checkWritable, configuredAddress, DB_FILE, lockDataDir, openDataDir, splitAddress, StartRefused, TOKEN_FILE } from "../node/data-dir";
import { RaftLedgerNode } from "../node/raft-node";
import { RecordTypes, SCHEMAS_DIR } from "../node/record-types";
import { createApp, listen } from "../api/server";
import { EntryStream, STREAM_PATH } from "../api/stream";
import { routeUpgrades, UpgradeHandler } from "../api/upgrade";
import { RAFT_PATH } from "../node/peer-transport";
import { AuditRunner } from "../api/audit";
import { preloadOpenApi } from "../api/openapi";
import { EXIT_STORAGE_FAULT, isTransientFault, storageFaultCode } from "../node/storage-fault";
import { loadTlsMaterial, TlsMaterial } from "../node/tls";
import { withClientCertificate } from "../api/client-cert";

export interface ServeOptions {
  readonly dataDir: string;
  /** Absent: the node's address in a cluster data dir's configuration, else DEFAULT_HOST. */
  readonly host?: string;
  /** Absent: the node's address in a cluster data dir's configuration, else DEFAULT_PORT. 0 = any free port. */
  readonly port?: number;
  readonly checkpointEvery: number;
  readonly checkpointIntervalMs: number;
  readonly snapshotEvery: number;
  /** --snapshots-keep: snapshots kept, each a verification start. */
  readonly snapshotsKeep: number;
  readonly tickMs: number;
  readonly writeTimeoutMs: number;
  /** --max-uncommitted-bytes / --max-pending-writes: the leader's write bounds (503 overloaded past them). */
  readonly maxUncommittedBytes: number;
  readonly maxPendingWrites: number;
  /** --ready-max-lag: /ready 503 "behind" past this many entries behind the leader. */
  readonly readyMaxLag: number;
  readonly peers: ReadonlyMap<string, string>;
  readonly bodyLimitBytes: number;
  readonly logLevel: string;
  /** --public-audit: GET /v1/audit/verify without a token. */
  readonly publicAudit: boolean;
  /** --cors-origin: the one browser origin allowed (none by default). */
  readonly corsOrigin?: string;
  /** --tls-cert / --tls-key: serve HTTPS with these (both or neither); absent: <data-dir>/tls/ when it has them. */
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  /** --tls-client-ca: every client request needs a certificate that verifies against this CA (not /v1/raft). */
  readonly tlsClientCa?: string;
  /** --insecure: plain HTTP on an address that is not loopback. */
  readonly insecure: boolean;
}

/** Fields that may hold a secret, wherever a log call puts them. */
const REDACTED = [
  "req.headers.authorization", "req.headers.cookie", "headers.authorization", "authorization",
  "token", "*.token", "admin_token", "*.admin_token", "audit_token", "*.audit_token", "secretKey", "*.secretKey", "secret_key", "*.secret_key",
];

/**
 * The access log (a line per request at info) reaches stdout through a buffer of its own: a write
 * when ~3 KiB of lines are waiting (about 15) or every 250 ms, instead of a write(2) per request,
 * which was 8.6% of a server's time under a proof load (one keep-alive client). Every other line
 * is still written at once. A kill -9 loses at most the buffered access lines (~250 ms of
 * requests); a normal exit, a storage-fault exit or a crash flushes them (pino, on 'exit').
 * Each write holds whole lines and at most PIPE_BUF (4 KiB) bytes, so on a pipe it is atomic and
 * never interleaves with a line of the other stream.
 *
 * This logger has no redaction: the access middleware (src/api/server.ts) builds each line from
 * the method, the URL, the peer address, the status and the time taken, never a header or a body,
 * and no route takes a credential in the URL. Redaction with wildcard paths cost ~8 us and ~9 KiB
 * of garbage a line.
 */
const ACCESS_LOG_WRITE_BYTES = 3072;
const ACCESS_LOG_PIPE_BUF = 4096;
const ACCESS_LOG_FLUSH_MS = 250;

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 8080;

type AddressSource = "flag" | "configuration" | "default";

interface ListenAddress {
  readonly host: string;
  readonly port: number;
  readonly hostFrom: AddressSource;
  readonly portFrom: AddressSource;
}

/** Refuses (StartRefused) unless host:port can be listened on now; port 0 always can. */
export function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", (err: NodeJS.ErrnoException) => {
      reject(new StartRefused(`cannot listen on ${host}:${port} (${err.code ?? err.message}): nothing was written; free the port or pass --port`, `${host}:${port}`));
    });
    probe.listen({ host, port, exclusive: true }, () => {
      probe.close((err) => (err === undefined ? resolve() : reject(err)));
    });
  });
}

/** 127.0.0.0/8 and ::1 (an IPv4-mapped ::ffff:127.x too): what never leaves the machine. */
const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** True for a loopback address or "localhost"; any other name may resolve to a public address. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === "localhost") return true;
  const family = net.isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? "ipv4" : "ipv6");
}

/**
 * Refuses plain HTTP on an address other machines can reach, unless --insecure says so: the admin
 * token in every write's Authorization header, and every record, would cross the network in clear.
 */
export function checkCleartextExposure(host: string, tls: boolean, insecure: boolean): void {
  if (tls || insecure || isLoopbackHost(host)) return;
  throw new StartRefused(
    `refusing to serve plain HTTP on ${host}, which is not a loopback address: the admin token and every record would cross the network in clear. ` +
      "Serve TLS (--tls-cert and --tls-key, or `cluster init --tls-generate`), or pass --insecure (RESONETICS_INSECURE=1) when something else encrypts the link (a TLS proxy, a VPN)",
    host,
  );
}

/** Flags first; on a cluster data dir, the node's own address in the configuration (DESIGN.md, Command line). */
function listenAddress(o: ServeOptions, dir: string): ListenAddress {
  const configured = o.host !== undefined && o.port !== undefined ? null : configuredAddress(dir);
  const split = configured === null ? null : splitAddress(configured);
  if (configured !== null && split === null) throw new StartRefused(`the configuration gives this node the address ${JSON.stringify(configured)}, which is not host:port; pass --host and --port`, dir);
  const from = (flag: unknown): AddressSource => (flag !== undefined ? "flag" : split !== null ? "configuration" : "default");
  return { host: o.host ?? split?.host ?? DEFAULT_HOST, port: o.port ?? split?.port ?? DEFAULT_PORT, hostFrom: from(o.host), portFrom: from(o.port) };
}

interface Preflight {
  readonly addr: ListenAddress;
  readonly tls: TlsMaterial | undefined;
}

/**
 * Everything checked before the node writes or listens: the TLS material (it reads nothing the start
 * writes), plain HTTP on a non-loopback address and the port (before anything is written, when the
 * data dir is still to be initialized), that the data dir can be written, and its lock.
 */
async function preflight(o: ServeOptions, dir: string): Promise<Preflight> {
  const tls = loadTlsMaterial(dir, { cert: o.tlsCert, key: o.tlsKey, clientCa: o.tlsClientCa });
  checkInstall();
  const fresh = !fs.existsSync(path.join(dir, DB_FILE));
  if (fresh) {
    const addr = listenAddress(o, dir); // no configuration yet: flags, else the defaults
    checkCleartextExposure(addr.host, tls !== undefined, o.insecure);
    await checkPortFree(addr.host, addr.port);
    checkWritable(dir);
    lockDataDir(dir);
    return { addr, tls };
  }
  checkWritable(dir);
  lockDataDir(dir);
  const addr = listenAddress(o, dir);
  checkCleartextExposure(addr.host, tls !== undefined, o.insecure);
  await checkPortFree(addr.host, addr.port);
  return { addr, tls };
}

/**
 * The install's own files: the OpenAPI document (GET /v1/openapi.json) is built from schemas/ and
 * package.json now, and served as built; a broken install refuses to start (exit 2) with the reason.
 */
function checkInstall(): void {
  try {
    preloadOpenApi();
  } catch (err) {
    throw new StartRefused(`this install is broken: the OpenAPI document could not be built from ${SCHEMAS_DIR}: ${(err as Error).message}`, SCHEMAS_DIR);
  }
}

/** After a storage fault the process exits within this long even if closing hangs on the failing disk. */
const STORAGE_FAULT_EXIT_MS = 1000;

/** Opens (or initializes) the data dir; a storage fault on the way is a refused start (exit 75 when transient). */
function openOrRefuse(dir: string, address: string): ReturnType<typeof openDataDir> {
  return refuseOnStorageFault(dir, () => openDataDir(dir, address));
}

/** Runs a start step; a storage fault in it becomes a refused start (exit 75 when transient, else 2). */
function refuseOnStorageFault<T>(dir: string, step: () => T): T {
  try {
    return step();
  } catch (err) {
    const code = storageFaultCode(err);
    if (code === null) throw err;
    throw new StartRefused(`storage fault on the data dir ${dir} at start: ${code} (${(err as Error).message})`, dir, isTransientFault(code) ? EXIT_STORAGE_FAULT : 2);
  }
}

/** Runs until SIGTERM/SIGINT, then shuts down cleanly. A refused start throws StartRefused before listening. */
export async function serve(o: ServeOptions): Promise<void> {
  // Redaction is the second line of defence: no code path logs a token or key on purpose.
  const logger = pino({ level: o.logLevel, base: { pid: process.pid }, redact: { paths: REDACTED, censor: "[redacted]" } });
  const dir = path.resolve(o.dataDir);
  const { addr, tls } = await preflight(o, dir);
  const dd = openOrRefuse(dir, `${addr.host}:${addr.port}`);
  if (dd.created) logger.info({ data_dir: dd.dir, cluster: dd.clusterId }, "initialized a new single-node cluster");
  let exitForSupervisor = (): void => process.exit(EXIT_STORAGE_FAULT);
  // Starting writes too (recovering committed entries, finishing a recorded prune): a storage fault
  // there is a refused start with the storage-fault exit code, like one while opening.
  // One set of record types: the API validates clients' bodies with it, the leader forwarded writes.
  const types = new RecordTypes();
  const node = refuseOnStorageFault(dir, () => new RaftLedgerNode(dd, {
    types,
    tickMs: o.tickMs, electionTick: 10, heartbeatTick: 2,
    checkpointEvery: o.checkpointEvery, checkpointIntervalMs: o.checkpointIntervalMs, snapshotEvery: o.snapshotEvery, snapshotsKeep: o.snapshotsKeep,
    writeTimeoutMs: o.writeTimeoutMs, maxUncommittedBytes: o.maxUncommittedBytes, maxPendingWrites: o.maxPendingWrites, readyMaxLag: o.readyMaxLag,
    // A TLS node dials its peers with wss://: every node of a cluster serves TLS, or none does.
    peerAddresses: o.peers, peerTls: tls !== undefined, now: () => new Date(), logger: logger.child({ component: "node" }),
    // The storage-fault policy (src/node/storage-fault.ts): stop acknowledging at once (done), let the
    // answers already decided (503s) go out, then exit for the supervisor.
    onStorageFault: () => exitForSupervisor(),
  }));
  const log = logger.child({ node_id: dd.nodeId });
  const audit = new AuditRunner({
    start: (job, onProgress, onNote) => node.reader.audit(job, onProgress, onNote), adminToken: dd.adminToken, auditToken: dd.auditToken, publicAudit: o.publicAudit, logger: log.child({ component: "audit" }),
  });
  const clientCertificates = tls?.clientCa !== undefined;
  const accessDestination = pino.destination({ fd: 1, sync: false, minLength: ACCESS_LOG_WRITE_BYTES, maxWrite: ACCESS_LOG_PIPE_BUF, periodicFlush: ACCESS_LOG_FLUSH_MS });
  const accessLog = pino({ level: o.logLevel, base: { pid: process.pid } }, accessDestination).child({ node_id: dd.nodeId });
  const app = createApp({ node, writes: node.writes, reader: node.reader, types, adminToken: dd.adminToken, bodyLimitBytes: o.bodyLimitBytes, audit }, log,
    { clientCertificates, accessLog, ...(o.corsOrigin === undefined ? {} : { corsOrigin: o.corsOrigin }) });
  let bound: Awaited<ReturnType<typeof listen>>;
  try {
    bound = await listen(app, addr.host, addr.port, tls);
  } catch (err) {
    // The port was free a moment ago (checkPortFree): another process took it since.
    await node.close();
    throw new StartRefused(`cannot listen on ${addr.host}:${addr.port} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, `${addr.host}:${addr.port}`);
  }
  const { server, port } = bound;
  const stream = new EntryStream(node.reader, node, log.child({ component: "stream" }));
  // One 'upgrade' listener: exact path → endpoint; any other path gets a JSON 404 and is closed.
  // /v1/raft takes no client certificate: peers authenticate with their Ed25519 node keys.
  routeUpgrades(server, new Map<string, UpgradeHandler>([[RAFT_PATH, node.peers], [STREAM_PATH, clientCertificates ? withClientCertificate(stream) : stream]]), log.child({ component: "upgrade" }));
  // A failed handshake (plain HTTP on this port, a timeout, an untrusted server certificate at the
  // client) ends that socket; the reason is for debugging, never an error of the server.
  if (tls !== undefined) server.on("tlsClientError", (err: Error) => log.debug({ err: err.message }, "TLS handshake failed"));
  log.info({ host: addr.host, port, host_from: addr.hostFrom, port_from: addr.portFrom, tls: tls !== undefined, tls_from: tls?.from ?? null,
    client_certificates: clientCertificates, data_dir: dd.dir, term: node.currentTerm(), admin_token_file: path.join(dd.dir, TOKEN_FILE) }, "listening");
  let stopping = false;
  const stop = (signal: string, exitCode = 0): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    // Upgraded sockets (peer links, streams) keep an HTTP server open: end them first. Requests
    // in flight get a grace period to finish, then every connection is closed.
    stream.close();
    node.peers.close();
    server.close(() => {
      node.close().then(
        () => process.exit(exitCode),
        (err: unknown) => {
          log.error({ err }, "shutdown failed");
          process.exit(exitCode === 0 ? 1 : exitCode);
        },
      );
    });
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 2000).unref();
  };
  exitForSupervisor = (): void => {
    stop("storage fault", EXIT_STORAGE_FAULT);
    // Whatever happens to the graceful path (a close that fails on the same disk), the process goes.
    setTimeout(() => process.exit(EXIT_STORAGE_FAULT), STORAGE_FAULT_EXIT_MS).unref();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}
