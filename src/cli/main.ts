/** The `resonetics` command line. Every flag also reads an environment variable. */
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { checkCleartextExposure, checkPortFree, serve } from "./serve";
import { PARALLEL_MIN_ENTRIES, verifyChainCommand } from "./verify-chain";
import { WORKERS_MAX as VERIFY_WORKERS_MAX } from "../node/verify-pipeline";
import { trustExportCommand } from "./trust";
import { verifyReceiptCommand } from "./receipt";
import { clientTls, int, withClientOptions } from "./client-options";
import { addClientCommands } from "./client-commands";
import { checkWritable, clusterNodeIds, initCluster, lockDataDir, StartRefused } from "../node/data-dir";
import { ClusterCertificates, installClusterCertificates, installNodeTls, loadTlsMaterial, makeClusterCertificates, readClusterCertificates } from "../node/tls";
import { prepareJoin, requestMembership } from "../node/join";
import { useNativeCrypto } from "../node/native-crypto";
import { parseUrl } from "../util/url";
import { MAX_PENDING_WRITES_DEFAULT, MAX_UNCOMMITTED_BYTES_DEFAULT } from "../node/writes";
import { SNAPSHOTS_KEEP_DEFAULT } from "../node/snapshots";
import { readFileSync } from "node:fs";
import * as path from "node:path";

const out = (text: string): void => {
  process.stdout.write(text);
};
const err = (text: string): void => {
  process.stderr.write(text);
};

interface ServeFlags {
  dataDir: string;
  host?: string;
  port?: number;
  checkpointEvery: number;
  checkpointIntervalMs: number;
  snapshotEvery: number;
  snapshotsKeep: number;
  tickMs: number;
  writeTimeoutMs: number;
  maxUncommittedBytes: number;
  maxPendingWrites: number;
  readyMaxLag: number;
  peers: ReadonlyMap<string, string> | string;
  bodyLimit: number;
  logLevel: string;
  publicAudit: boolean;
  corsOrigin?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  insecure: boolean;
}

/** pino's levels: anything else is a usage error (exit 2) naming --log-level, not a crash at start. */
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** "n2=127.0.0.1:7002,n3=127.0.0.1:7003" → a map. */
function peerList(raw: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of raw.split(",").map((x) => x.trim()).filter((x) => x.length > 0)) {
    const eq = part.indexOf("=");
    if (eq <= 0 || !/^[^\s/]+:[0-9]{1,5}$/.test(part.slice(eq + 1))) throw new InvalidArgumentError(`expected id=host:port, got ${part}`);
    m.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return m;
}

/** A browser origin (scheme://host[:port], nothing else), as the Origin header carries it. */
function origin(v: string): string {
  const u = parseUrl(v);
  if (u === null) throw new InvalidArgumentError(`not an origin: ${JSON.stringify(v)}`);
  if (u.origin !== v || (u.protocol !== "http:" && u.protocol !== "https:")) throw new InvalidArgumentError(`an origin is scheme://host[:port] exactly, e.g. https://audit.example, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * A boolean flag's environment variable, read strictly: commander takes any value (even "0") as
 * true, and opening the audit to anyone by RESONETICS_PUBLIC_AUDIT=0 must not happen.
 */
function envFlag(cmd: Command, name: string): boolean {
  const raw = (process.env[name] ?? "").trim().toLowerCase();
  if (raw === "1" || raw === "true" || raw === "yes") return true;
  if (raw === "" || raw === "0" || raw === "false" || raw === "no") return false;
  return cmd.error(`error: ${name} must be 1/true/yes or 0/false/no, got ${JSON.stringify(process.env[name])}`, { exitCode: 2, code: "commander.invalidArgument" });
}

/** A refused start (data dir held, unwritable, half-initialized; port in use) exits 2 with its reason (75 for a full disk); false then. */
async function refusedExits2(p: Promise<void>, refusing = "refusing to start"): Promise<boolean> {
  try {
    await p;
    return true;
  } catch (e) {
    if (!(e instanceof StartRefused)) throw e;
    err(`resonetics: ${refusing}: ${e.message}\n`);
    process.exitCode = e.exitCode;
    return false;
  }
}

/** package.json's version, for --version: two folders up from src/cli/ and from dist/cli/ alike. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}

const INSECURE_HELP = "serve plain HTTP on an address that is not loopback (the token and records cross the network in clear)";

export function program(): Command {
  const p = new Command("resonetics").description("Resonetics: a verifiable, hash-chained audit-log ledger")
    .version(packageVersion(), "--version", "print the version (package.json)")
    // Options given before a command are the program's (the client set: `resonetics --endpoints URL get 4`);
    // after it they are the command's own, so `join --token-file` stays join's.
    .enablePositionalOptions();
  withClientOptions(p, true);
  p.exitOverride();
  p.command("serve")
    .description("run a node (initializes a single-node cluster on an empty data dir)")
    .addOption(new Option("--data-dir <dir>", "data directory").env("RESONETICS_DATA_DIR").default("./data"))
    // No commander defaults: an unset --host/--port means the node's address in a cluster data dir's configuration, else 127.0.0.1:8080.
    .addOption(new Option("--host <host>", "address to listen on (default: this node's address in a cluster data dir, else 127.0.0.1)").env("RESONETICS_HOST"))
    .addOption(new Option("--port <port>", "port, 0 = any free port (default: this node's port in a cluster data dir, else 8080)").env("RESONETICS_PORT").argParser(int(0, 65535)))
    .addOption(new Option("--checkpoint-every <n>", "sign a checkpoint after this many entries").env("RESONETICS_CHECKPOINT_EVERY").default(1000).argParser(int(1, 1_000_000)))
    .addOption(new Option("--checkpoint-interval-ms <ms>", "...or after this long with new entries").env("RESONETICS_CHECKPOINT_INTERVAL_MS").default(1000).argParser(int(10, 3_600_000)))
    .addOption(new Option("--snapshot-every <n>", "snapshot after this many applied entries (0 = never); a snapshot deletes no history").env("RESONETICS_SNAPSHOT_EVERY").default(100_000).argParser(int(0, 100_000_000)))
    // Each snapshot holds the whole state (~100 B per record): 3 bound the disk they take; at most 1,000 (a verification start per anchor).
    .addOption(new Option("--snapshots-keep <n>", "snapshots kept, each a verification start (GET /v1/snapshots)").env("RESONETICS_SNAPSHOTS_KEEP").default(SNAPSHOTS_KEEP_DEFAULT).argParser(int(1, 1000)))
    .addOption(new Option("--tick-ms <ms>", "Raft tick (election timeout is 10-20 ticks)").env("RESONETICS_TICK_MS").default(50).argParser(int(1, 10_000)))
    .addOption(new Option("--write-timeout-ms <ms>", "how long a write waits for commit before 503").env("RESONETICS_WRITE_TIMEOUT_MS").default(5000).argParser(int(10, 600_000)))
    .addOption(new Option("--max-uncommitted-bytes <bytes>", "the leader refuses writes (503) while this many proposed bytes wait for commit").env("RESONETICS_MAX_UNCOMMITTED_BYTES").default(MAX_UNCOMMITTED_BYTES_DEFAULT).argParser(int(1024, 1 << 30)))
    .addOption(new Option("--max-pending-writes <n>", "...or while this many writes wait for commit").env("RESONETICS_MAX_PENDING_WRITES").default(MAX_PENDING_WRITES_DEFAULT).argParser(int(1, 1_000_000)))
    .addOption(new Option("--ready-max-lag <n>", "/ready answers 503 while this node trails the leader's commit index by more entries").env("RESONETICS_READY_MAX_LAG").default(1000).argParser(int(0, 100_000_000)))
    .addOption(new Option("--peers <list>", "peer address overrides: id=host:port,...").env("RESONETICS_PEERS").default("").argParser(peerList))
    .addOption(new Option("--body-limit <bytes>", "largest request body").env("RESONETICS_BODY_LIMIT").default(65536).argParser(int(1024, 16 * 1024 * 1024)))
    .addOption(new Option("--log-level <level>", "pino log level").env("RESONETICS_LOG_LEVEL").default("info").choices(LOG_LEVELS))
    .addOption(new Option("--public-audit", "GET /v1/audit/verify without a token (default: admin or audit.token)").env("RESONETICS_PUBLIC_AUDIT").default(false))
    .addOption(new Option("--cors-origin <origin>", "let this one browser origin call the API (CORS is off by default)").env("RESONETICS_CORS_ORIGIN").argParser(origin))
    .addOption(new Option("--tls-cert <file>", "serve HTTPS with this PEM certificate (chain), with --tls-key (default: <data-dir>/tls/node.crt when present). " +
      "A TLS node dials its peers with wss://: every node of a cluster serves TLS, or none does").env("RESONETICS_TLS_CERT"))
    .addOption(new Option("--tls-key <file>", "the PEM private key of --tls-cert (default: <data-dir>/tls/node.key)").env("RESONETICS_TLS_KEY"))
    .addOption(new Option("--tls-client-ca <file>", "require a client certificate signed by this CA on every client request (not on /v1/raft: peers use their node keys)").env("RESONETICS_TLS_CLIENT_CA"))
    .addOption(new Option("--insecure", INSECURE_HELP).env("RESONETICS_INSECURE").default(false))
    .action(async (o: ServeFlags, cmd: Command) => {
      const publicAudit = cmd.getOptionValueSource("publicAudit") === "env" ? envFlag(cmd, "RESONETICS_PUBLIC_AUDIT") : o.publicAudit;
      const insecure = cmd.getOptionValueSource("insecure") === "env" ? envFlag(cmd, "RESONETICS_INSECURE") : o.insecure;
      await refusedExits2(serve({ ...o, peers: typeof o.peers === "string" ? peerList(o.peers) : o.peers, bodyLimitBytes: o.bodyLimit, publicAudit, insecure }));
    });
  p.command("cluster")
    .description("cluster set-up")
    .command("init")
    .description("write N node data dirs DIR/n1..nN sharing a cluster id, genesis configuration and admin token")
    .requiredOption("--dir <dir>", "parent directory")
    .requiredOption("--nodes <n>", "number of nodes (1..9)", int(1, 9))
    .addOption(new Option("--base-port <port>", "node i listens on base-port + i - 1").default(7001).argParser(int(1, 65535)))
    .addOption(new Option("--host <host>", "address the nodes listen on").default("127.0.0.1"))
    .addOption(new Option("--tls-generate", "make a cluster CA (DIR/ca.crt, DIR/ca.key) and a certificate per node (its tls/ dir) with openssl: the nodes serve HTTPS").conflicts("tlsDir"))
    .addOption(new Option("--tls-dir <dir>", "use existing certificates: <dir>/ca.crt and <dir>/n<i>.crt, <dir>/n<i>.key per node, copied into each node's tls/"))
    .action(async (o: { dir: string; nodes: number; basePort: number; host: string; tlsGenerate?: boolean; tlsDir?: string }) => {
      await refusedExits2(Promise.resolve().then(() => {
        const ids = clusterNodeIds(o.nodes);
        // Made or read (and checked) before any node dir is written: a failure leaves nothing behind.
        const certs: ClusterCertificates | undefined = o.tlsGenerate === true ? makeClusterCertificates(ids.map((id) => ({ id, host: o.host })))
          : o.tlsDir !== undefined ? readClusterCertificates(path.resolve(o.tlsDir), ids) : undefined;
        const r = initCluster(o.dir, o.nodes, o.host, o.basePort);
        const ca = certs === undefined ? undefined : installClusterCertificates(o.dir, certs);
        out(`cluster ${r.clusterId}: ${r.dirs.length} nodes${ca === undefined ? "" : ", serving HTTPS (certificates in each node's tls/)"}\n`);
        r.dirs.forEach((d, i) => out(`  n${i + 1}: resonetics serve --data-dir ${d} --host ${o.host} --port ${o.basePort + i}\n`));
        if (ca !== undefined) out(`clients trust the cluster CA ${ca.caPath}: curl --cacert ${ca.caPath} https://${o.host}:${o.basePort}/v1/status\n`);
      }), "cluster init refused");
    });
  p.command("join")
    .description("join a running cluster: prepare this node's data dir from a member, serve, and ask the leader to add it")
    .requiredOption("--data-dir <dir>", "this node's data directory")
    .requiredOption("--id <id>", "this node's id (unique in the cluster)")
    .requiredOption("--seed <url>", "a member's URL, e.g. http://127.0.0.1:7001")
    .requiredOption("--token-file <file>", "the cluster's admin token file")
    .addOption(new Option("--host <host>", "address to listen on").default("127.0.0.1"))
    .requiredOption("--port <port>", "port to listen on", int(1, 65535))
    .addOption(new Option("--log-level <level>", "pino log level").env("RESONETICS_LOG_LEVEL").default("info").choices(LOG_LEVELS))
    .addOption(new Option("--tls-cert <file>", "this node's PEM certificate, copied into its data dir's tls/ and served (the cluster's nodes serve TLS, or none does)").env("RESONETICS_TLS_CERT"))
    .addOption(new Option("--tls-key <file>", "the PEM private key of --tls-cert").env("RESONETICS_TLS_KEY"))
    .addOption(new Option("--cacert <file>", "the CA to trust for an https:// --seed (copied to tls/ca.crt)").env("RESONETICS_CACERT"))
    .addOption(new Option("--insecure", INSECURE_HELP).env("RESONETICS_INSECURE").default(false))
    .action(async (o: { dataDir: string; id: string; seed: string; tokenFile: string; host: string; port: number; logLevel: string; tlsCert?: string; tlsKey?: string; cacert?: string; insecure: boolean }, cmd: Command) => {
      const insecure = cmd.getOptionValueSource("insecure") === "env" ? envFlag(cmd, "RESONETICS_INSECURE") : o.insecure;
      const tls = clientTls(cmd, { cacert: o.cacert });
      const spec = { dir: o.dataDir, id: o.id, address: `${o.host}:${o.port}`, seed: o.seed, adminToken: readFileSync(o.tokenFile, "utf8").trim(), tls };
      const dir = path.resolve(o.dataDir);
      // serve's own checks, before prepareJoin writes the data dir: the TLS material, plain HTTP on a
      // non-loopback address, the port, writability, the lock.
      let material: ReturnType<typeof loadTlsMaterial>;
      const checked = await refusedExits2(Promise.resolve().then(async () => {
        material = loadTlsMaterial(dir, { cert: o.tlsCert, key: o.tlsKey });
        checkCleartextExposure(o.host, material !== undefined, insecure);
        await checkPortFree(o.host, o.port);
        checkWritable(dir);
        lockDataDir(dir);
      }));
      if (!checked) return;
      const { publicKey } = await prepareJoin(spec);
      // Served from the data dir from now on, so a restart (`serve --data-dir`) keeps TLS.
      if (material !== undefined && material.from === "flag") installNodeTls(dir, material, tls?.ca === undefined ? undefined : Buffer.from(tls.ca));
      const served = await refusedExits2(serve({
        dataDir: o.dataDir, host: o.host, port: o.port, checkpointEvery: 1000, checkpointIntervalMs: 1000, snapshotEvery: 100_000, snapshotsKeep: SNAPSHOTS_KEEP_DEFAULT,
        tickMs: 50, writeTimeoutMs: 5000, maxUncommittedBytes: MAX_UNCOMMITTED_BYTES_DEFAULT, maxPendingWrites: MAX_PENDING_WRITES_DEFAULT, readyMaxLag: 1000, peers: new Map(), bodyLimitBytes: 65536, logLevel: o.logLevel, publicAudit: false,
        insecure,
      }));
      if (!served) return;
      const r = await requestMembership(spec, publicKey);
      out(`joined: ${JSON.stringify(r)}\n`);
    });
  p.command("verify-chain")
    .description("verify a data directory offline (exit 0 verified, 1 violation, 2 usage/unreadable)")
    .argument("<data-dir>", "the node's data directory")
    .addOption(new Option("--from <where>", "genesis, snapshot (the latest anchor) or a snapshot anchor's index").env("RESONETICS_VERIFY_FROM").default("genesis"))
    .option("--json", "one JSON report on stdout", false)
    .addOption(new Option("--trust <file>", "the auditor's trust file (resonetics trust export): anchors the report").env("RESONETICS_TRUST"))
    .addOption(new Option("--checkpoint <file>", "a signed checkpoint to pin (with --trust): root(size) must match it").env("RESONETICS_CHECKPOINT"))
    .addOption(new Option("--workers <n>", `threads that check entries beside the replay, 0 = none (default: one per core but one, at most ${VERIFY_WORKERS_MAX}, from ${PARALLEL_MIN_ENTRIES} entries)`).env("RESONETICS_VERIFY_WORKERS").argParser(int(0, VERIFY_WORKERS_MAX)))
    .action((dataDir: string, o: { from: string; json: boolean; trust?: string; checkpoint?: string; workers?: number }) => {
      process.exitCode = verifyChainCommand(dataDir, { ...o, progress: !o.json && process.stderr.isTTY === true }, out, err);
    });
  p.command("trust")
    .description("trust files for offline verification")
    .command("export")
    .description("print the trust file of a data dir: cluster, genesis hash and configuration, latest checkpoint (read-only)")
    .argument("<data-dir>", "the node's data directory")
    .action((dataDir: string) => {
      process.exitCode = trustExportCommand(dataDir, out, err);
    });
  addClientCommands(p, out, err);
  p.command("verify-receipt")
    .description("verify a receipt offline against a trust file (exit 0 verified, 1 does not verify, 2 usage/unreadable)")
    .argument("<receipt>", "the receipt file (resonetics receipt, or GET /v1/receipts/:index)")
    .addOption(new Option("--trust <file>", "the auditor's trust file").env("RESONETICS_TRUST").makeOptionMandatory())
    .action((file: string, o: { trust: string }) => {
      process.exitCode = verifyReceiptCommand(file, o.trust, out, err);
    });
  return p;
}

/** Parses argv and runs; usage errors exit 2. */
export async function main(argv: string[]): Promise<void> {
  // Every hash this process computes (serving, verifying, initializing) goes through node:crypto.
  useNativeCrypto();
  try {
    await program().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit 0; help shown because a command is missing (exitCode 1) is a usage error, as is every other.
      const asked = e.code === "commander.helpDisplayed" || e.code === "commander.version" || (e.code === "commander.help" && e.exitCode === 0);
      process.exitCode = asked ? 0 : 2;
      return;
    }
    err(`resonetics: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}

if (require.main === module) void main(process.argv);
