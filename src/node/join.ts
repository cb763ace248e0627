/**
 * `resonetics join`: prepares the data dir of a node that joins a running cluster. It fetches the
 * cluster id and the genesis CONFIG entry from a member (entry 1 is the same on every node, and
 * its hash is checked against the genesis formula), writes its own key, and records the members it
 * may trust until the log reaches it. The leader then adds it (POST /v1/admin/members): first as a
 * learner that catches up, then as a voter.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { LedgerClient } from "../client/client";
import type { TlsClientOptions } from "../client/http";
import { entryHash, EntryKind, genesisHash } from "../ledger/entry";
import { generateKeyPair } from "../ledger/keys";
import { decodeConfig, encodeConfig, ClusterConfig } from "../ledger/config";
import { fromHex, toHex } from "../ledger/bytes";
import { DB_FILE, initNodeDir } from "./data-dir";
import { Store } from "../storage/store";
import { LedgerError } from "../util/errors";

export interface JoinSpec {
  readonly dir: string;
  readonly id: string;
  readonly address: string;
  /** A member's base URL, e.g. http://127.0.0.1:7001. */
  readonly seed: string;
  readonly adminToken: string;
  /** --cacert: the CA to trust for an https:// seed. */
  readonly tls?: TlsClientOptions;
}

/** Creates the joining node's data dir (once); returns its public key. */
export async function prepareJoin(spec: JoinSpec): Promise<{ publicKey: string; created: boolean }> {
  if (fs.existsSync(path.join(spec.dir, DB_FILE))) {
    const store = new Store(path.join(spec.dir, DB_FILE));
    try {
      const pub = store.getMeta("public_key");
      if (pub === undefined || store.getMeta("node_id") !== spec.id) throw new LedgerError("conflict", `${spec.dir} belongs to another node`);
      return { publicKey: pub, created: false };
    } finally {
      store.close();
    }
  }
  const client = new LedgerClient({ urls: [spec.seed], token: spec.adminToken, tls: spec.tls });
  const status = await client.request("GET", "/v1/status") as { cluster?: unknown };
  if (typeof status.cluster !== "string") throw new LedgerError("bad_request", `${spec.seed} did not answer with a cluster id`);
  const genesis = await client.request("GET", "/v1/records/1?consistency=local") as { term: number; kind: string; hash: string; payload_b64: string };
  const payload = Buffer.from(genesis.payload_b64, "base64");
  const want = toHex(entryHash(1, genesis.term, EntryKind.Config, genesisHash(status.cluster), payload));
  const config = decodeConfig(payload);
  if (genesis.kind !== "config" || genesis.term !== 1 || want !== genesis.hash || config === null) {
    throw new LedgerError("verification_failed", `${spec.seed}'s entry 1 is not a genesis CONFIG of cluster ${status.cluster}`);
  }
  if (!fromHex(genesis.hash)) throw new LedgerError("verification_failed", "genesis hash is not hex");
  // The members serving now: the joining node accepts their connections before its log says so.
  const current = await client.request("GET", "/v1/admin/config") as ClusterConfig;
  const key = generateKeyPair();
  // bootstrap_peers goes in with the genesis, in one initialization: never a node dir without it.
  const meta = { bootstrap_peers: Buffer.from(encodeConfig(current)).toString("utf8") };
  initNodeDir({ dir: spec.dir, clusterId: status.cluster, nodeId: spec.id, key, adminToken: spec.adminToken, config, mode: "cluster", meta });
  return { publicKey: toHex(key.publicKey), created: true };
}

/** Asks the cluster (through any member; redirects reach the leader) to add this node. */
export async function requestMembership(spec: JoinSpec, publicKey: string): Promise<unknown> {
  const client = new LedgerClient({ urls: [spec.seed], token: spec.adminToken, timeoutMs: 120_000, maxAttempts: 20, tls: spec.tls });
  return client.request("POST", "/v1/admin/members", { id: spec.id, address: spec.address, public_key: publicKey });
}
