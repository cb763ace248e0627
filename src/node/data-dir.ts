/**
 * A node's data directory: ledger.db, node.key (0600), admin.token (0600). An empty directory is
 * initialized as a single-node cluster with its genesis CONFIG entry.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { Store } from "../storage/store";
import { generateKeyPair, KeyPair, publicKeyOf } from "../ledger/keys";
import { bytesEqual, fromHex, toHex } from "../ledger/bytes";
import { chainEntry, EntryKind, genesisHash } from "../ledger/entry";
import { encodeConfig, ClusterConfig } from "../ledger/config";
import { CompactRange } from "../ledger/merkle";
import { LedgerError } from "../util/errors";
import { assert } from "../util/assert";

export const DB_FILE = "ledger.db";
export const KEY_FILE = "node.key";
export const TOKEN_FILE = "admin.token";

export interface DataDir {
  readonly dir: string;
  readonly store: Store;
  readonly key: KeyPair;
  readonly nodeId: string;
  readonly clusterId: string;
  readonly adminToken: string;
  /** True when this call created the cluster. */
  readonly created: boolean;
}

function writeSecret(file: string, content: string): void {
  fs.writeFileSync(file, content + "\n", { mode: 0o600, flag: "wx" });
  fs.chmodSync(file, 0o600);
}

function readSecret(file: string): string {
  const mode = fs.statSync(file).mode & 0o077;
  if (mode !== 0) throw new LedgerError("forbidden", `${file} is readable by group or others (mode ${(fs.statSync(file).mode & 0o777).toString(8)}); chmod 600 it`);
  return fs.readFileSync(file, "utf8").trim();
}

/** Opens a data dir, initializing a single-node cluster when it holds no ledger yet. */
export function openDataDir(dir: string, address: string): DataDir {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const dbPath = path.join(dir, DB_FILE);
  const fresh = !fs.existsSync(dbPath);
  if (fresh) {
    for (const f of [KEY_FILE, TOKEN_FILE]) {
      if (fs.existsSync(path.join(dir, f))) throw new LedgerError("conflict", `${path.join(dir, f)} exists without ${DB_FILE}: refusing to initialize over it`);
    }
    initSingleNode(dir, address);
  }
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
  return { dir, store, key, nodeId, clusterId, adminToken: readSecret(path.join(dir, TOKEN_FILE)), created: fresh };
}

/** Writes key, token and a database whose entry 1 is the genesis CONFIG of a one-node cluster. */
function initSingleNode(dir: string, address: string): void {
  const key = generateKeyPair();
  const nodeId = "n1";
  const config: ClusterConfig = { v: 1, voters: [{ id: nodeId, address, public_key: toHex(key.publicKey) }], learners: [] };
  initNodeDir({ dir, clusterId: randomUUID(), nodeId, key, adminToken: newAdminToken(), config, mode: "single" });
}

export const newAdminToken = (): string => randomBytes(32).toString("hex");

export interface NodeDirSpec {
  readonly dir: string;
  readonly clusterId: string;
  readonly nodeId: string;
  readonly key: KeyPair;
  readonly adminToken: string;
  /** The genesis configuration: entry 1 of every node of the cluster, byte for byte. */
  readonly config: ClusterConfig;
  readonly mode: "single" | "cluster";
}

/**
 * Writes one node's data dir: node.key, admin.token and ledger.db holding the genesis CONFIG entry
 * (index 1, term 1, committed). The database is written under a temporary name and renamed last,
 * so a crash mid-init leaves no half-initialized ledger.db behind.
 */
export function initNodeDir(spec: NodeDirSpec): void {
  const { dir, clusterId, nodeId, key, config } = spec;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `${DB_FILE}.init-${process.pid}`);
  writeSecret(path.join(dir, KEY_FILE), toHex(key.secretKey));
  writeSecret(path.join(dir, TOKEN_FILE), spec.adminToken);
  const store = new Store(tmp);
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
      store.appendEntries([genesis], nodes);
      store.setHardState({ term: 1, votedFor: null, commitIndex: 1, lastApplied: 1 });
    });
    store.db.pragma("wal_checkpoint(TRUNCATE)");
    store.db.pragma("journal_mode = DELETE");
  } finally {
    store.close();
  }
  fs.renameSync(tmp, path.join(dir, DB_FILE));
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** `resonetics cluster init`: N data dirs DIR/n1..nN sharing cluster id, genesis config and token. */
export function initCluster(root: string, nodes: number, host: string, basePort: number): { clusterId: string; dirs: string[] } {
  assert(Number.isInteger(nodes) && nodes >= 1 && nodes <= 9, "a cluster has 1 to 9 nodes");
  const ids = Array.from({ length: nodes }, (_, i) => `n${i + 1}`);
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
  const dirs = ids.map((id, i) => {
    const dir = path.join(root, id);
    initNodeDir({ dir, clusterId, nodeId: id, key: keys[i], adminToken, config, mode: "cluster" });
    return dir;
  });
  return { clusterId, dirs };
}
