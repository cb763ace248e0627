/**
 * What keeps a client's reads honest across time (issue 13; immudb's client state is the model).
 * The client pins the last signed checkpoint it verified (state.ts). Every checkpoint it sees later
 * must be signed under an endorsed key and, when larger, come with a consistency proof from the
 * pinned one that the client checks against both roots itself; only then is it pinned. A smaller
 * one is a rollback, the same size with another root or a proof that fails is a fork. Reads are
 * checked against the pinned root, so an answer the signed log does not hold is refused.
 *
 * Signer keys come from an anchor: the genesis configuration (entry 1), from the user's trust file
 * or, without one, from the cluster the first time this client met it (trust on first use). A key
 * of a later member is taken only through a receipt's signer_chain from that genesis (the rule
 * verify-chain and verify-receipt follow), never from what a node says its configuration is now.
 */
import { bytesEqual, fromHex, toHex } from "../ledger/bytes";
import { canonicalJson } from "../ledger/canonical";
import { Checkpoint, verifyCheckpointSignature } from "../ledger/checkpoint";
import { decodeConfig, memberKeys } from "../ledger/config";
import { genesisHash } from "../ledger/entry";
import { verifyConsistency, verifyInclusion } from "../ledger/merkle-verify";
import { Receipt, verifyReceipt } from "../ledger/receipt";
import { checkpointFromValue, genesisConfigPayload, makeTrustFile, PinnedCheckpoint, TrustFile } from "../ledger/trust";
import type { EntryJson } from "./client";
import { ClientError, ForkError, RollbackError, StateFileError } from "./errors";
import type { ClusterState, Membership, StateStore } from "./state";

/** What the guard needs of the client: its GETs (redirects, retries, TLS) and its hash-checked entries. */
export interface GuardPort {
  /** GET path; the parsed JSON of a 2xx answer (an error answer throws ClientError). */
  get(path: string): Promise<unknown>;
  /** GET /v1/records/:index with the entry hash checked against its contents and prev_hash. */
  entry(index: number): Promise<EntryJson>;
  /** The base URL the client sends to now, to name the node in an error. */
  url(): string;
}

/**
 * Hashes in one proof: an inclusion proof in a tree of up to 2^64 leaves has at most 64, a
 * consistency proof at most 2 per level; anything longer is not a proof of this log.
 */
const PROOF_HASHES_MAX = 128;

/** A proof's path as bytes, or null when it is not a list of at most PROOF_HASHES_MAX 32-byte hex hashes. */
export function proofPath(v: unknown): Uint8Array[] | null {
  if (!Array.isArray(v) || v.length > PROOF_HASHES_MAX) return null;
  const out: Uint8Array[] = [];
  for (const x of v) {
    const b = typeof x === "string" ? fromHex(x) : null;
    if (b === null || b.length !== 32) return null;
    out.push(b);
  }
  return out;
}

const hash32 = (hex: string): Uint8Array => {
  const b = fromHex(hex);
  if (b === null || b.length !== 32) throw new ClientError(0, "bad_answer", `not a 32-byte lowercase hex hash: ${hex.slice(0, 80)}`);
  return b;
};
const named = (cp: Checkpoint & { index: number }): string => `checkpoint of size ${cp.size}, root ${cp.root}, index ${cp.index}`;

export class CheckpointGuard {
  /** The cluster this client talks to: the trust file's, or the first one a node named. */
  private cluster: string | null;
  /** Clusters whose stored pin was checked again in this process (the state file asserted after read-back). */
  private readonly rechecked = new Set<string>();
  /** Pins are taken one at a time: two reads racing must not both prove from the same old pin and write twice. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly state: StateStore, private readonly trust: TrustFile | undefined, private readonly port: GuardPort) {
    this.cluster = trust?.cluster ?? null;
  }

  /** The pinned checkpoint of this client's cluster, if it has one yet. */
  pinned(): PinnedCheckpoint | undefined {
    return this.cluster === null ? undefined : this.state.get(this.cluster)?.checkpoint;
  }

  /**
   * Fetches the node's latest checkpoint and accepts it (see accept); the pin afterwards. Null when
   * the node has signed none yet and this client pinned none of its cluster (a new cluster).
   */
  sync(): Promise<PinnedCheckpoint | null> {
    return this.serial(async () => {
      let latest: unknown;
      try {
        latest = await this.port.get("/v1/checkpoints/latest");
      } catch (err) {
        if (err instanceof ClientError && err.status === 404 && err.code === "not_found") return this.noCheckpoint();
        throw err;
      }
      return this.accept(latest);
    });
  }

  /** A checkpoint a node gave as its latest (e.g. with a subject's history): accepted like sync's. */
  observe(value: unknown): Promise<PinnedCheckpoint> {
    return this.serial(() => this.accept(value));
  }

  /**
   * Proves that entry `index` with `hashHex` is in the log of pinned checkpoint `p` (an inclusion
   * proof against p's own root). False when p (null: none yet) does not cover the index.
   */
  async proveEntry(p: PinnedCheckpoint | null, index: number, hashHex: string): Promise<boolean> {
    if (p === null || index > p.size) return false;
    const proof = (await this.port.get(`/v1/proofs/inclusion/${index}?size=${p.size}`)) as { size?: unknown; path?: unknown };
    const path = proofPath(proof.path);
    if (proof.size !== p.size || path === null || !verifyInclusion(index - 1, p.size, hash32(hashHex), path, hash32(p.root))) {
      throw new ClientError(0, "verification_failed", `entry ${index} (hash ${hashHex}) from ${this.port.url()} is not in the pinned ${named(p)}`, proof);
    }
    return true;
  }

  /**
   * Proves that `rootHex` is root(size) of the log of pinned checkpoint `p`: equal to p's root at
   * p's size, or through a consistency proof from size to p's size below it. A size beyond p has no
   * signed checkpoint yet, and is refused as not_signed.
   */
  async proveRoot(p: PinnedCheckpoint | null, size: number, rootHex: string): Promise<void> {
    if (p === null) throw new ClientError(0, "not_signed", `root(${size}): the node has signed no checkpoint yet`);
    if (size > p.size) throw new ClientError(0, "not_signed", `root(${size}) is beyond the pinned ${named(p)}: no signed checkpoint vouches for it yet`);
    if (size === p.size && rootHex === p.root) return;
    const proof = size === p.size ? null : ((await this.port.get(`/v1/proofs/consistency?from=${size}&to=${p.size}`)) as { path?: unknown });
    const path = proof === null ? null : proofPath(proof.path);
    if (path === null || !verifyConsistency(size, p.size, path, hash32(rootHex), hash32(p.root))) {
      throw new ClientError(0, "verification_failed", `root(${size}) ${rootHex} from ${this.port.url()} is not a prefix of the pinned ${named(p)}`, proof);
    }
  }

  /** The node has signed nothing: fine before the first pin; after it, the node lost all the pin covers. */
  private async noCheckpoint(): Promise<null> {
    const cluster = this.cluster ?? ((await this.port.get("/v1/status")) as { cluster?: unknown }).cluster;
    const pin = typeof cluster === "string" ? this.state.get(cluster)?.checkpoint : undefined;
    if (pin !== undefined) throw new RollbackError(pin, null, this.port.url());
    return null;
  }

  /** Runs fn after every earlier pinning step has settled, whatever its outcome. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    // The chain only orders the steps; each step's error reaches its own caller through `run`.
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * The checkpoint a node serves as its latest, checked: signed under an endorsed key; then an
   * older size is a RollbackError, the same size with another root a ForkError, a larger size
   * pinned only after its consistency proof from the pinned one verifies (ForkError if not).
   */
  private async accept(value: unknown): Promise<PinnedCheckpoint> {
    const cp = checkpointFromValue(value);
    if (typeof cp === "string") throw new ClientError(0, "bad_answer", `${this.port.url()} served no checkpoint: ${cp}`, value);
    if (this.cluster !== null && cp.cluster !== this.cluster) {
      throw new ClientError(0, "cluster_mismatch", `${this.port.url()} serves cluster ${cp.cluster}; this client's is ${this.cluster}`, value);
    }
    this.cluster = cp.cluster;
    const stored = this.state.get(cp.cluster);
    const cs = stored === undefined ? await this.firstContact(cp) : this.recheck(cp.cluster, stored);
    const pinned = cs.checkpoint;
    // The signature first: an unsigned claim is evidence of nothing, not even of a rollback.
    const endorsed = await this.endorse(cs, cp);
    if (cp.size < pinned.size) throw new RollbackError(pinned, cp, this.port.url());
    if (cp.size === pinned.size) {
      if (cp.root === pinned.root) return pinned;
      throw new ForkError(pinned, cp, this.port.url(), "the same size with another root");
    }
    const proof = (await this.port.get(`/v1/proofs/consistency?from=${pinned.size}&to=${cp.size}`)) as { path?: unknown };
    const path = proofPath(proof.path);
    // Against the two roots the client holds, never the root_from/root_to the answer carries.
    if (path === null || !verifyConsistency(pinned.size, cp.size, path, hash32(pinned.root), hash32(cp.root))) {
      throw new ForkError(pinned, cp, this.port.url(), `the consistency proof from size ${pinned.size} to ${cp.size} does not verify against the two roots`);
    }
    this.state.put(cp.cluster, { ...cs, endorsed, checkpoint: cp, pinned_at: new Date().toISOString() });
    return cp;
  }

  /**
   * The first checkpoint of a cluster this client has no state for: the anchor is the trust file's
   * genesis configuration, or entry 1 as the node serves it now (trust on first use); entry 1 must
   * chain to the cluster's genesis hash and be in the first pinned checkpoint, which is the trust
   * file's checkpoint when it has one (so the node's must then extend it), else the node's.
   */
  private async firstContact(cp: PinnedCheckpoint): Promise<ClusterState> {
    const e = await this.port.entry(1);
    const payload = new Uint8Array(Buffer.from(e.payload_b64, "base64"));
    if (e.kind !== "config" || e.prev_hash !== toHex(genesisHash(cp.cluster))) {
      throw new ClientError(0, "verification_failed", `entry 1 from ${this.port.url()} is not the genesis CONFIG of cluster ${cp.cluster}`, e);
    }
    let genesis: Membership;
    if (this.trust !== undefined) {
      if (!bytesEqual(payload, genesisConfigPayload(this.trust))) {
        throw new ClientError(0, "trust_mismatch", `${this.port.url()} serves a genesis configuration other than the trust file's (cluster ${cp.cluster})`, e);
      }
      genesis = this.trust.genesis_config;
    } else {
      const config = decodeConfig(payload);
      if (config === null) throw new ClientError(0, "verification_failed", `entry 1 from ${this.port.url()} is not a configuration`, e);
      genesis = { voters: config.voters, learners: config.learners };
    }
    const base = {
      anchor: this.trust === undefined ? ("first_use" as const) : ("trust_file" as const),
      genesis_config: { voters: genesis.voters, learners: genesis.learners },
      endorsed: { index: 1, voters: genesis.voters, learners: genesis.learners },
    };
    const first = this.trust?.checkpoint ?? cp;
    const endorsed = await this.endorse({ ...base, checkpoint: first, pinned_at: "" }, first);
    await this.proveEntry(first, 1, e.hash);
    const cs: ClusterState = { ...base, endorsed, checkpoint: first, pinned_at: new Date().toISOString() };
    this.state.put(cp.cluster, cs);
    this.rechecked.add(cp.cluster);
    return cs;
  }

  /**
   * A stored pin, checked once per process before it is relied on: its signature under the
   * endorsed key (the file is asserted after it is read back), and the same genesis as the trust
   * file given now. A state taken on first use becomes anchored once a trust file agrees with it.
   */
  private recheck(cluster: string, cs: ClusterState): ClusterState {
    if (this.rechecked.has(cluster)) return cs;
    const key = memberKeys(cs.endorsed).get(cs.checkpoint.signer);
    if (key === undefined || !verifyCheckpointSignature(cs.checkpoint, key)) {
      throw new StateFileError("state_file_corrupt", this.state.where, `cluster ${cluster}: the pinned ${named(cs.checkpoint)} is not signed by a member of its endorsed configuration`);
    }
    if (this.trust !== undefined) {
      const trusted = { voters: this.trust.genesis_config.voters, learners: this.trust.genesis_config.learners };
      if (canonicalJson(trusted) !== canonicalJson({ voters: cs.genesis_config.voters, learners: cs.genesis_config.learners })) {
        throw new ClientError(0, "trust_mismatch", `the state file's genesis configuration of cluster ${cluster} (${cs.anchor}) differs from the trust file's`);
      }
      if (cs.anchor === "first_use") {
        cs = { ...cs, anchor: "trust_file" };
        this.state.put(cluster, cs);
      }
    }
    this.rechecked.add(cluster);
    return cs;
  }

  /**
   * The membership to keep as endorsed once cp is accepted, after cp's signature verified under its
   * signer's endorsed key. A signer the endorsed configuration does not name needs a receipt whose
   * signer_chain carries its key from the genesis configuration (verifyReceipt).
   */
  private async endorse(cs: ClusterState, cp: PinnedCheckpoint): Promise<ClusterState["endorsed"]> {
    let endorsed = cs.endorsed;
    let key = memberKeys(endorsed).get(cp.signer);
    if (key === undefined) ({ endorsed, key } = await this.signerChain(cs, cp));
    if (!verifyCheckpointSignature(cp, key)) {
      throw new ClientError(0, "verification_failed", `the ${named(cp)} from ${this.port.url()} is not signed by ${cp.signer}'s endorsed key`, cp);
    }
    return endorsed;
  }

  /** cp's signer key through the node's receipt for entry cp.size (whose covering checkpoint is cp itself). */
  private async signerChain(cs: ClusterState, cp: PinnedCheckpoint): Promise<{ endorsed: ClusterState["endorsed"]; key: string }> {
    const untrusted = (why: string): ClientError =>
      new ClientError(0, "untrusted_signer", `the ${named(cp)} from ${this.port.url()} is signed by ${cp.signer}, not a member of the endorsed configuration (index ${cs.endorsed.index}): ${why}`, cp);
    const r = await this.port.get(`/v1/receipts/${cp.size}`);
    const verdict = verifyReceipt(r, makeTrustFile(cp.cluster, { v: 1, ...cs.genesis_config }));
    if (!verdict.ok) throw untrusted(`its receipt does not carry the key from the genesis configuration: ${verdict.reason}`);
    const receipt = r as Receipt;
    const rc = receipt.checkpoint;
    if (rc.sig !== cp.sig || rc.root !== cp.root || rc.size !== cp.size || rc.signer !== cp.signer) throw untrusted("the receipt is about another checkpoint");
    const last = receipt.signer_chain[receipt.signer_chain.length - 1];
    const config = last === undefined ? null : decodeConfig(new Uint8Array(Buffer.from(last.config.payload_b64, "base64")));
    const reached = last === undefined || config === null ? { index: 1, ...cs.genesis_config } : { index: last.config.index, voters: config.voters, learners: config.learners };
    // A member the endorsed configuration dropped signs nothing after it (an old key is no licence).
    if (reached.index < cs.endorsed.index && cp.index > cs.endorsed.index) throw untrusted(`the configuration at ${cs.endorsed.index} removed it`);
    return { endorsed: reached.index > cs.endorsed.index ? reached : cs.endorsed, key: receipt.signer_key };
  }
}
