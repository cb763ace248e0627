/**
 * A node's data directory: ledger.db, node.key (0600), admin.token (0600), audit.token (0600: the
 * read-only auditor token, which can run GET /v1/audit/verify and never write). An empty directory
 * is initialized as a single-node cluster with its genesis CONFIG entry.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { Store } from "../storage/store";
import { ExclusiveLock, tryExclusiveLock } from "../storage/dir-lock";
import { generateKeyPair, KeyPair, publicKeyOf } from "../ledger/keys";
import { bytesEqual, fromHex, toHex } from "../ledger/bytes";
import { chainEntry, EntryKind, genesisHash } from "../ledger/entry";
import { decodeConfig, encodeConfig, ClusterConfig } from "../ledger/config";
import { CompactRange } from "../ledger/merkle";
import { LedgerError } from "../util/errors";
import { assert } from "../util/assert";
import { EXIT_STORAGE_FAULT, isTransientFault, storageFaultCode } from "./storage-fault";
import { TLS_DIR } from "./tls";

export const DB_FILE = "ledger.db";
export const KEY_FILE = "node.key";
export const TOKEN_FILE = "admin.token";
export const AUDIT_TOKEN_FILE = "audit.token";
/** The data dir's lock: an empty SQLite database a serving process holds locked (storage/dir-lock.ts). */
export const LOCK_FILE = "ledger.lock";
/** "<pid> <start time>" of the lock's holder, written once it holds the lock, so a refusal can name it. */
export const LOCK_PID_FILE = "ledger.lock.pid";
/** Where an initialization builds the node's files before its one-rename commit. */
const STAGING_DIR = ".init-staging";
/** The writability probe's name; a probe a killed process left behind is ignored, never a stray. */
const PROBE_PREFIX = ".write-probe-";
const SECRET_FILES = [KEY_FILE, TOKEN_FILE, AUDIT_TOKEN_FILE] as const;
/** What may sit in a data dir that holds no ledger yet: the lock, and what a filesystem's root holds. */
const UNINITIALIZED_ALLOWED: ReadonlySet<string> = new Set([LOCK_FILE, LOCK_PID_FILE, "lost+found"]);
/** Stray names a refusal lists: enough to recognize the directory, not a listing of a wrong one. */
const STRAY_SHOWN_MAX = 5;
/** 128 bits as hex: a shorter auditor token (an empty file, a hand-written word) is guessable. */
const AUDIT_TOKEN_LENGTH_MIN = 32;

export interface DataDir {
  readonly dir: string;
  readonly store: Store;
  readonly key: KeyPair;
  readonly nodeId: string;
  readonly clusterId: string;
  readonly adminToken: string;
  /** The read-only auditor token (audit.token): it may verify, never write. */
  readonly auditToken: string;
  /** True when this call created the cluster. */
  readonly created: boolean;
}

/** Writes a secret file (0600) and fsyncs it: it is renamed or linked into place only once durable. */
function writeSecret(file: string, content: string): void {
  const fd = fs.openSync(file, "wx", 0o600);
  try {
    fs.writeSync(fd, content + "\n");
    fs.fchmodSync(fd, 0o600);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function readSecret(file: string): string {
  const mode = fs.statSync(file).mode & 0o077;
  if (mode !== 0) throw new LedgerError("forbidden", `${file} is readable by group or others (mode ${(fs.statSync(file).mode & 0o777).toString(8)}); chmod 600 it`);
  return fs.readFileSync(file, "utf8").trim();
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Opens a data dir, initializing a single-node cluster when it holds no ledger yet. */
export function openDataDir(dir: string, address: string): DataDir {
  const fresh = prepareDataDir(dir, address);
  const dbPath = path.join(dir, DB_FILE);
  const store = new Store(dbPath);
  const secret = fromHex(readSecret(path.join(dir, KEY_FILE)));
  if (secret === null || secret.length !== 32) throw new LedgerError("bad_request", `${KEY_FILE} does not hold a 32-byte hex Ed25519 secret key`);
  const key: KeyPair = { secretKey: secret, publicKey: publicKeyOf(secret) };
  const nodeId = store.getMeta("node_id");
  const clusterId = store.getMeta("cluster_id");
  const pub = store.getMeta("public_key");
  assert(nodeId !== undefined && clusterId !== undefined && pub !== undefined, `${dbPath} lacks node_id/cluster_id/public_key meta`);
  if (!bytesEqual(fromHex(pub) ?? new Uint8Array(), key.publicKey)) {
    throw new LedgerError("conflict", `${KEY_FILE} does not match the public key recorded for node ${nodeId}`);
  }
  const adminToken = readSecret(path.join(dir, TOKEN_FILE));
  // A data dir made before audit.token existed gets one on its first start.
  const auditFile = path.join(dir, AUDIT_TOKEN_FILE);
  if (!fs.existsSync(auditFile)) writeSecret(auditFile, newAdminToken());
  const auditToken = readSecret(auditFile);
  if (auditToken.length < AUDIT_TOKEN_LENGTH_MIN) throw new LedgerError("bad_request", `${auditFile} must hold a token of at least ${AUDIT_TOKEN_LENGTH_MIN} characters (delete it to get a new one)`);
  if (auditToken === adminToken) throw new LedgerError("conflict", `${auditFile} holds the admin token: an auditor token must not be able to write`);
  return { dir, store, key, nodeId, clusterId, adminToken, auditToken, created: fresh };
}

// ---------------------------------------------------------------- starting safely

/**
 * A start refused because of the data dir or the address (held by another process, not writable,
 * half-initialized, port in use): the CLI prints the message and exits 2 before listening.
 */
export class StartRefused extends LedgerError {
  /** The path (or host:port) the refusal is about; exit code 2 (an operator must act) or 75 (a full disk: retry later). */
  constructor(message: string, readonly where: string, readonly exitCode: 2 | 75 = 2) {
    super("unavailable", message, { where });
    this.name = "StartRefused";
  }
}

const errText = (err: unknown): string => {
  const e = err as NodeJS.ErrnoException;
  return e.code === undefined ? String(e.message) : `${e.code}: ${e.message}`;
};

/**
 * Fails unless the data dir and its database files can be written, by writing, not by access(2):
 * root passes every permission check, and a read-only mount or a full disk only shows on a write.
 */
export function checkWritable(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StartRefused(`cannot create the data dir ${dir} (${errText(err)})`, dir);
  }
  const probe = path.join(dir, `${PROBE_PREFIX}${process.pid}`);
  try {
    const fd = fs.openSync(probe, "w", 0o600);
    try {
      fs.writeSync(fd, "resonetics write probe\n");
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.unlinkSync(probe);
  } catch (err) {
    const full = storageFaultCode(err);
    throw new StartRefused(`the data dir ${dir} is not writable (${errText(err)}): a node must be able to write its ledger before it starts`, dir,
      full !== null && isTransientFault(full) ? EXIT_STORAGE_FAULT : 2);
  }
  for (const f of [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`]) {
    const p = path.join(dir, f);
    if (!fs.existsSync(p)) continue;
    try {
      fs.closeSync(fs.openSync(p, "r+"));
    } catch (err) {
      throw new StartRefused(`${p} is not writable (${errText(err)}): a node must be able to write its ledger before it starts`, p);
    }
  }
}

interface HeldLock {
  readonly lock: ExclusiveLock;
  readonly pidFile: string;
}
/** The data dirs this process holds, so the lock objects live as long as the process. */
const heldLocks = new Map<string, HeldLock>();

/** What the holder wrote about itself; read only when its lock is held, so it is never stale. */
function describeHolder(dir: string): string {
  const pidFile = path.join(dir, LOCK_PID_FILE);
  let raw: string;
  try {
    raw = fs.readFileSync(pidFile, "utf8");
  } catch (err) {
    // The holder takes the lock, then writes its pid: a start in that instant reads nothing yet.
    return `a process whose pid is not recorded yet (${pidFile}: ${errText(err)})`;
  }
  const m = /^([0-9]+)\s+(\S+)/.exec(raw);
  return m === null ? `a process (unreadable ${pidFile})` : `pid ${m[1]} (started ${m[2]})`;
}

/**
 * Takes the data dir's lock (ledger.lock) for the rest of this process's life, or refuses at once,
 * naming the holder's pid. Taking it again in the same process returns at once.
 */
export function lockDataDir(dir: string): void {
  if (heldLocks.has(dir)) return;
  const file = path.join(dir, LOCK_FILE);
  let lock: ExclusiveLock | null;
  try {
    lock = tryExclusiveLock(file);
  } catch (err) {
    throw new StartRefused(`cannot take the lock ${file} (${(err as Error).message})`, file);
  }
  if (lock === null) {
    throw new StartRefused(`the data dir ${dir} is in use by ${describeHolder(dir)}: one process serves a data dir at a time (${file} is locked)`, dir);
  }
  const pidFile = path.join(dir, LOCK_PID_FILE);
  try {
    fs.writeFileSync(pidFile, `${process.pid} ${new Date().toISOString()}\n`, { mode: 0o600 });
  } catch (err) {
    lock.release();
    throw new StartRefused(`cannot write ${pidFile} (${errText(err)})`, pidFile);
  }
  heldLocks.set(dir, { lock, pidFile });
}

/** Drops a lock lockDataDir took (tests; a process that exits needs not). */
export function unlockDataDir(dir: string): void {
  const h = heldLocks.get(dir);
  if (h === undefined) return;
  heldLocks.delete(dir);
  // Removed while still held: once released, the file may already be the next holder's.
  fs.rmSync(h.pidFile, { force: true });
  h.lock.release();
}

/** The first 16 bytes of every SQLite database file. */
const SQLITE_HEADER = Buffer.from("SQLite format 3\0", "latin1");

/** Refuses a ledger.db that is not a database of a complete node dir, before anything writes to it. */
function checkInitialized(dir: string): void {
  const dbPath = path.join(dir, DB_FILE);
  const head = Buffer.alloc(SQLITE_HEADER.length);
  const fd = fs.openSync(dbPath, "r");
  let n: number;
  try {
    n = fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (n === 0) {
    throw new StartRefused(`${dbPath} is empty (0 bytes): not a ledger, and it is never migrated into one. If this node never served, remove it and start again to initialize a new node`, dbPath);
  }
  if (n < head.length || !head.equals(SQLITE_HEADER)) throw new StartRefused(`${dbPath} is not an SQLite database: refusing to start on it`, dbPath);
  for (const f of [KEY_FILE, TOKEN_FILE]) {
    const p = path.join(dir, f);
    if (!fs.existsSync(p)) throw new StartRefused(`${dir} has ${DB_FILE} but no ${f}: an incomplete data dir (restore ${f} from a backup of this node)`, p);
  }
}

/**
 * Undoes an initialization that stopped before its commit (the rename of ledger.db): files that are
 * links of the staged ones are removed with the staging dir. After the commit only the staging dir
 * is left, and goes.
 */
function recoverInterruptedInit(dir: string): void {
  const stage = path.join(dir, STAGING_DIR);
  if (!fs.existsSync(stage)) return;
  if (!fs.existsSync(path.join(dir, DB_FILE))) {
    for (const f of SECRET_FILES) {
      const live = path.join(dir, f);
      const staged = path.join(stage, f);
      if (fs.existsSync(live) && fs.existsSync(staged) && fs.statSync(live).ino === fs.statSync(staged).ino) fs.unlinkSync(live);
    }
  }
  fs.rmSync(stage, { recursive: true, force: true });
  fsyncDir(dir);
}

/**
 * Makes `dir` a complete data dir: an empty (or absent) one is initialized as a single-node cluster
 * at `address`; one that holds anything but a complete ledger is refused. True when initialized now.
 */
export function prepareDataDir(dir: string, address: string): boolean {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  recoverInterruptedInit(dir);
  if (fs.existsSync(path.join(dir, DB_FILE))) {
    checkInitialized(dir);
    return false;
  }
  // tls/ may be put in place before the first start (the node's certificate: tls.ts). TLS_DIR is read
  // here, at call time, not in UNINITIALIZED_ALLOWED: tls.ts imports this module too.
  const stray = fs.readdirSync(dir).filter((n) => !UNINITIALIZED_ALLOWED.has(n) && n !== TLS_DIR && !n.startsWith(PROBE_PREFIX)).sort();
  if (stray.length > 0) {
    const shown = stray.slice(0, STRAY_SHOWN_MAX).map((n) => path.join(dir, n)).join(", ");
    throw new StartRefused(`${shown}${stray.length > STRAY_SHOWN_MAX ? ` and ${stray.length - STRAY_SHOWN_MAX} more` : ""} ${stray.length === 1 ? "exists" : "exist"} without ${DB_FILE}: refusing to initialize over ${stray.length === 1 ? "it" : "them"} (move ${stray.length === 1 ? "it" : "them"} away, or point --data-dir at the node's directory)`, dir);
  }
  initSingleNode(dir, address);
  return true;
}

/**
 * The address ("host:port") the configuration in force gives this node, when `dir` is a cluster
 * node's dir (made by `cluster init` or `join`) and the configuration names it; else null.
 */
export function configuredAddress(dir: string): string | null {
  const dbPath = path.join(dir, DB_FILE);
  if (!fs.existsSync(dbPath)) return null;
  checkInitialized(dir);
  const store = new Store(dbPath, { readonly: true });
  try {
    if (store.getMeta("mode") !== "cluster") return null;
    const nodeId = store.getMeta("node_id");
    const payload = store.configAt(store.lastIndex());
    const config = payload === undefined ? null : decodeConfig(payload);
    if (config === null || nodeId === undefined) return null;
    const me = [...config.voters, ...config.learners].find((m) => m.id === nodeId);
    return me === undefined ? null : me.address;
  } finally {
    store.close();
  }
}

/** "127.0.0.1:7001" or "[::1]:7001" → host and port; null when it is neither. */
export function splitAddress(address: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):([0-9]{1,5})$/.exec(address);
  if (m === null) return null;
  const port = Number(m[3]);
  return port > 65535 ? null : { host: m[1] ?? m[2], port };
}

/** Writes key, token and a database whose entry 1 is the genesis CONFIG of a one-node cluster. */
function initSingleNode(dir: string, address: string): void {
  const key = generateKeyPair();
  const nodeId = "n1";
  const config: ClusterConfig = { v: 1, voters: [{ id: nodeId, address, public_key: toHex(key.publicKey) }], learners: [] };
  initNodeDir({ dir, clusterId: randomUUID(), nodeId, key, adminToken: newAdminToken(), auditToken: newAdminToken(), config, mode: "single" });
}

export const newAdminToken = (): string => randomBytes(32).toString("hex");

export interface NodeDirSpec {
  readonly dir: string;
  readonly clusterId: string;
  readonly nodeId: string;
  readonly key: KeyPair;
  readonly adminToken: string;
  /** The read-only auditor token; a fresh one when absent (a node that joins gets its own). */
  readonly auditToken?: string;
  /** The genesis configuration: entry 1 of every node of the cluster, byte for byte. */
  readonly config: ClusterConfig;
  readonly mode: "single" | "cluster";
  /** More meta rows, written in the same transaction as the genesis (join's bootstrap peers). */
  readonly meta?: Readonly<Record<string, string>>;
}

/**
 * Writes one node's data dir: node.key, admin.token, audit.token and ledger.db holding the genesis
 * CONFIG entry (index 1, term 1, committed). Everything is built and fsynced in a staging dir inside
 * `dir` (same filesystem, so it works on a mount point too); the secret files are hard-linked into
 * place, and the rename of ledger.db into `dir` is the commit. A crash or a failure before it leaves
 * nothing that prepareDataDir does not undo; after it, a complete node.
 */
export function initNodeDir(spec: NodeDirSpec): void {
  const { dir, clusterId, nodeId, key, config } = spec;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stage = path.join(dir, STAGING_DIR);
  fs.mkdirSync(stage, { mode: 0o700 });
  try {
    writeSecret(path.join(stage, KEY_FILE), toHex(key.secretKey));
    writeSecret(path.join(stage, TOKEN_FILE), spec.adminToken);
    writeSecret(path.join(stage, AUDIT_TOKEN_FILE), spec.auditToken ?? newAdminToken());
    const store = new Store(path.join(stage, DB_FILE));
    try {
      const genesis = chainEntry(1, 1, EntryKind.Config, genesisHash(clusterId), encodeConfig(config));
      const range = new CompactRange();
      const nodes = range.append(genesis.hash);
      store.transaction(() => {
        store.setMeta("cluster_id", clusterId);
        store.setMeta("node_id", nodeId);
        store.setMeta("public_key", toHex(key.publicKey));
        store.setMeta("mode", spec.mode);
        store.setMeta("created_at", new Date().toISOString());
        for (const [k, v] of Object.entries(spec.meta ?? {})) store.setMeta(k, v);
        store.appendEntries([genesis], nodes);
        store.setHardState({ term: 1, votedFor: null, commitIndex: 1, lastApplied: 1 });
      });
      store.db.pragma("wal_checkpoint(TRUNCATE)");
      // One file to rename: no -wal or -shm beside it.
      store.db.pragma("journal_mode = DELETE");
    } finally {
      store.close();
    }
    fsyncDir(stage);
    // link fails on an existing name: an initialization never overwrites a file.
    for (const f of SECRET_FILES) fs.linkSync(path.join(stage, f), path.join(dir, f));
    fs.renameSync(path.join(stage, DB_FILE), path.join(dir, DB_FILE));
    fsyncDir(dir);
  } catch (err) {
    // Before the commit this undoes every link made; the error is rethrown, never swallowed.
    recoverInterruptedInit(dir);
    throw err;
  }
  recoverInterruptedInit(dir);
}

/** The node ids `cluster init` gives N nodes: n1..nN (also their data dirs' names). */
export const clusterNodeIds = (nodes: number): string[] => Array.from({ length: nodes }, (_, i) => `n${i + 1}`);

/** `resonetics cluster init`: N data dirs DIR/n1..nN sharing cluster id, genesis config, admin and audit token. */
export function initCluster(root: string, nodes: number, host: string, basePort: number): { clusterId: string; dirs: string[] } {
  assert(Number.isInteger(nodes) && nodes >= 1 && nodes <= 9, "a cluster has 1 to 9 nodes");
  const ids = clusterNodeIds(nodes);
  for (const id of ids) {
    const d = path.join(root, id);
    if (fs.existsSync(d) && fs.readdirSync(d).length > 0) throw new LedgerError("conflict", `${d} is not empty: refusing to overwrite a node`);
  }
  const keys = ids.map(() => generateKeyPair());
  const config: ClusterConfig = {
    v: 1,
    voters: ids.map((id, i) => ({ id, address: `${host}:${basePort + i}`, public_key: toHex(keys[i].publicKey) })),
    learners: [],
  };
  const clusterId = randomUUID();
  const adminToken = newAdminToken();
  const auditToken = newAdminToken();
  const dirs = ids.map((id, i) => {
    const dir = path.join(root, id);
    initNodeDir({ dir, clusterId, nodeId: id, key: keys[i], adminToken, auditToken, config, mode: "cluster" });
    return dir;
  });
  return { clusterId, dirs };
}
