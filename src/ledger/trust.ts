/**
 * The trust file (DESIGN.md "Offline verification"): what an auditor pins, never inferred from the
 * data being checked. {v:1, cluster, genesis_hash, genesis_config: {voters, learners},
 * checkpoint?: <a signed checkpoint with its log index>}. A forger who can write a data dir can
 * rewrite every key in it; it cannot change what the auditor holds.
 */
import { canonicalBytes } from "./canonical";
import { Checkpoint, CHECKPOINT_OPTIONAL_KEYS, CHECKPOINT_VIEW_KEYS, decodeCheckpoint } from "./checkpoint";
import { ClusterConfig, configProblem, encodeConfig, MemberInfo, memberKeys } from "./config";
import { genesisHash } from "./entry";
import { toHex, utf8 } from "./bytes";
import { parseIJson } from "./ijson";
import { LedgerError } from "../util/errors";
import { isObj } from "./shapes";

/** A signed checkpoint and the index of its own CHECKPOINT entry (always size + 1). */
export interface PinnedCheckpoint extends Checkpoint {
  readonly index: number;
}

export interface TrustFile {
  readonly v: 1;
  readonly cluster: string;
  readonly genesis_hash: string;
  readonly genesis_config: { readonly voters: readonly MemberInfo[]; readonly learners: readonly MemberInfo[] };
  readonly checkpoint?: PinnedCheckpoint;
}

const TRUST_KEYS = new Set(["v", "cluster", "genesis_hash", "genesis_config", "checkpoint"]);

/** The trust file of a cluster, from its genesis configuration and (optionally) a checkpoint to pin. */
export function makeTrustFile(cluster: string, genesisConfig: ClusterConfig, checkpoint?: PinnedCheckpoint): TrustFile {
  const { voters, learners } = genesisConfig;
  return {
    v: 1, cluster, genesis_hash: toHex(genesisHash(cluster)), genesis_config: { voters, learners },
    ...(checkpoint === undefined ? {} : { checkpoint: pinnedOf(checkpoint) }),
  };
}

/** Only the checkpoint's own fields, subjects_root among them when it signs one (a StoredCheckpoint may carry more). */
function pinnedOf(c: PinnedCheckpoint): PinnedCheckpoint {
  const { v, cluster, size, root, head, term, signer, ts, subjects_root, sig, index } = c;
  return subjects_root === undefined ? { v, cluster, size, root, head, term, signer, ts, sig, index } : { v, cluster, size, root, head, term, signer, ts, subjects_root, sig, index };
}

/** The exact CONFIG payload the pinned genesis configuration must have in the log (entry 1). */
export const genesisConfigPayload = (t: TrustFile): Uint8Array =>
  encodeConfig({ v: 1, voters: t.genesis_config.voters, learners: t.genesis_config.learners });

/** Parses JSON text strictly (I-JSON: no duplicate keys), or gives why not. */
function parseJsonText(text: string, what: string): unknown {
  try {
    return parseIJson(utf8(text));
  } catch (err) {
    if (err instanceof LedgerError) return new TrustProblem(`${what} is not JSON: ${err.message}`);
    throw err;
  }
}

class TrustProblem {
  constructor(readonly reason: string) {}
}

/** A pinned checkpoint from a parsed value (a trust file's `checkpoint`, or a --checkpoint file), or why not. */
export function checkpointFromValue(value: unknown, cluster?: string): PinnedCheckpoint | string {
  if (!isObj(value)) return "the checkpoint is not a JSON object";
  for (const k of CHECKPOINT_VIEW_KEYS) if (!(k in value)) return `the checkpoint has no ${k}`;
  const { index, ...body } = value;
  const signed = [...CHECKPOINT_VIEW_KEYS.filter((k) => k !== "index"), ...CHECKPOINT_OPTIONAL_KEYS.filter((k) => k in body)];
  const cp = decodeCheckpoint(canonicalBytes(Object.fromEntries(signed.map((k) => [k, body[k]]))));
  if (cp === null) return "the checkpoint is not a well-formed signed checkpoint {v:1, cluster, size, root, head, term, signer, ts, sig}";
  if (typeof index !== "number" || !Number.isSafeInteger(index) || index !== cp.size + 1) return `the checkpoint's index must be its size + 1 (${cp.size + 1})`;
  if (cluster !== undefined && cp.cluster !== cluster) return `the checkpoint is of cluster ${cp.cluster}, the trust file pins ${cluster}`;
  return { ...cp, index };
}

/** Parses a --checkpoint file (GET /v1/checkpoints/latest as saved), or gives why not. */
export function parseCheckpointFile(text: string): PinnedCheckpoint | string {
  const value = parseJsonText(text, "the checkpoint file");
  return value instanceof TrustProblem ? value.reason : checkpointFromValue(value);
}

/** Parses a trust file strictly, or gives why it is not one. */
export function parseTrustFile(text: string): TrustFile | string {
  const t = parseJsonText(text, "the trust file");
  if (t instanceof TrustProblem) return t.reason;
  if (!isObj(t)) return "the trust file is not a JSON object";
  for (const k of Object.keys(t)) if (!TRUST_KEYS.has(k)) return `the trust file has an unexpected key ${JSON.stringify(k)}`;
  if (t.v !== 1) return `the trust file's version is ${JSON.stringify(t.v) ?? "missing"}, not 1`;
  if (typeof t.cluster !== "string" || t.cluster.length === 0) return "the trust file has no cluster";
  if (t.genesis_hash !== toHex(genesisHash(t.cluster))) return `genesis_hash is not the genesis hash of cluster ${t.cluster}`;
  const g = t.genesis_config;
  if (!isObj(g)) return "genesis_config is not an object";
  const config = { v: 1, voters: g.voters, learners: g.learners };
  const bad = Object.keys(g).some((k) => k !== "voters" && k !== "learners") ? "it has keys other than voters and learners" : configProblem(config);
  if (bad !== null) return `genesis_config is not a configuration: ${bad}`;
  const cfg = config as ClusterConfig;
  if (cfg.voters.length === 0) return "genesis_config has no voter";
  let checkpoint: PinnedCheckpoint | undefined;
  if (t.checkpoint !== undefined) {
    const c = checkpointFromValue(t.checkpoint, t.cluster);
    if (typeof c === "string") return c;
    checkpoint = c;
  }
  return makeTrustFile(t.cluster, cfg, checkpoint);
}

/** The public keys of the genesis configuration, by member id. */
export function genesisKeys(t: TrustFile): Map<string, string> {
  return memberKeys(t.genesis_config);
}
