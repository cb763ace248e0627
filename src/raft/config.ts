/**
 * Cluster membership carried by CONFIG entries and snapshots.
 * Payload = canonical JSON (RFC 8785) of {v:1, voters:[Member...], learners:[Member...]}, members
 * sorted by id, so every node and every offline verifier rebuilds the exact bytes.
 */
import {
  configPayloadProblem,
  configProblem,
  decodeConfig,
  encodeConfig,
  type ClusterConfig as LedgerConfig,
  type MemberInfo,
} from "../ledger/config";
import type { NodeId } from "./types";

/**
 * A member: id, host:port where it serves clients and peers, Ed25519 public key (lowercase hex).
 * One type with the ledger's, so the bytes agree; what a valid config is lives in ledger/config.ts.
 */
export type Member = MemberInfo;
export type ClusterConfig = LedgerConfig;

/** The ledger's definitions, re-exported for the core's callers (the peer codec checks with configProblem). */
export { configPayloadProblem, configProblem, encodeConfig };

export const EMPTY_CONFIG: ClusterConfig = { v: 1, voters: [], learners: [] };

const byId = (a: Member, b: Member): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** A config with members sorted and validated by the ledger's rules; throws TypeError on a bad one. */
export function makeConfig(voters: readonly Member[], learners: readonly Member[] = []): ClusterConfig {
  const cfg: ClusterConfig = { v: 1, voters: [...voters].sort(byId), learners: [...learners].sort(byId) };
  const problem = configProblem(cfg);
  if (problem !== null) throw new TypeError(`invalid cluster config: ${problem}`);
  return cfg;
}

/**
 * Placeholder key of members known by id only (simulator, tests): a CONFIG must carry a well-formed
 * key, and these configs never verify a signature.
 */
export const PLACEHOLDER_KEY = "0".repeat(64);

/** A member with only an id: empty address, the placeholder key. */
export const idOnlyMember = (id: NodeId): Member => ({ id, address: "", public_key: PLACEHOLDER_KEY });

/** Shorthand for tests and the simulator: members with only ids. */
export function configOfIds(voters: readonly NodeId[], learners: readonly NodeId[] = []): ClusterConfig {
  return makeConfig(voters.map(idOnlyMember), learners.map(idOnlyMember));
}

/**
 * Decodes a CONFIG payload the core already trusts (its own log, or an entry it checked with
 * configPayloadProblem); throws TypeError with the reason when it is not one.
 */
export function mustDecodeConfig(payload: Uint8Array): ClusterConfig {
  const cfg = decodeConfig(payload);
  if (cfg === null) throw new TypeError(`invalid CONFIG payload: ${configPayloadProblem(payload) ?? "unknown"}`);
  return cfg;
}

export const voterIds = (cfg: ClusterConfig): NodeId[] => cfg.voters.map((m) => m.id);
export const learnerIds = (cfg: ClusterConfig): NodeId[] => cfg.learners.map((m) => m.id);
export const isVoter = (cfg: ClusterConfig, id: NodeId): boolean => cfg.voters.some((m) => m.id === id);
export const isMember = (cfg: ClusterConfig, id: NodeId): boolean =>
  isVoter(cfg, id) || cfg.learners.some((m) => m.id === id);
export const quorumSize = (cfg: ClusterConfig): number => Math.floor(cfg.voters.length / 2) + 1;

/** Voter ids added and removed going from a to b (single-server changes allow at most one in total). */
export function voterDelta(a: ClusterConfig, b: ClusterConfig): { added: NodeId[]; removed: NodeId[] } {
  const av = new Set(voterIds(a));
  const bv = new Set(voterIds(b));
  return { added: [...bv].filter((id) => !av.has(id)), removed: [...av].filter((id) => !bv.has(id)) };
}

export function configsEqual(a: ClusterConfig, b: ClusterConfig): boolean {
  const k = (c: ClusterConfig): string =>
    JSON.stringify([c.voters.map((m) => [m.id, m.address, m.public_key]), c.learners.map((m) => [m.id, m.address, m.public_key])]);
  return k(a) === k(b);
}
