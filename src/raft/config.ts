/**
 * Cluster membership carried by CONFIG entries and snapshots.
 * Payload = canonical JSON (RFC 8785) of {v:1, voters:[Member...], learners:[Member...]}, members
 * sorted by id, so every node and every offline verifier rebuilds the exact bytes.
 */
import { fromUtf8 } from "../ledger/bytes";
import { encodeConfig as encodeLedgerConfig, type ClusterConfig as LedgerConfig, type MemberInfo } from "../ledger/config";
import type { NodeId } from "./types";

/**
 * A member: id, host:port where it serves clients and peers, Ed25519 public key (lowercase hex).
 * The simulator leaves address and key empty. One type with the ledger's, so the bytes agree.
 */
export type Member = MemberInfo;
export type ClusterConfig = LedgerConfig;

export const EMPTY_CONFIG: ClusterConfig = { v: 1, voters: [], learners: [] };

const byId = (a: Member, b: Member): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** A config with members sorted and validated (no duplicate ids, no id both voter and learner). */
export function makeConfig(voters: readonly Member[], learners: readonly Member[] = []): ClusterConfig {
  const cfg: ClusterConfig = { v: 1, voters: [...voters].sort(byId), learners: [...learners].sort(byId) };
  const problem = configProblem(cfg);
  if (problem !== null) throw new TypeError(`invalid cluster config: ${problem}`);
  return cfg;
}

/** Shorthand for tests and the simulator: members with only ids. */
export function configOfIds(voters: readonly NodeId[], learners: readonly NodeId[] = []): ClusterConfig {
  const m = (id: NodeId): Member => ({ id, address: "", public_key: "" });
  return makeConfig(voters.map(m), learners.map(m));
}

/** Why a config is malformed, or null. */
export function configProblem(cfg: ClusterConfig): string | null {
  if (cfg.v !== 1) return "unsupported version";
  const seen = new Set<NodeId>();
  for (const m of [...cfg.voters, ...cfg.learners]) {
    if (typeof m.id !== "string" || m.id.length === 0 || m.id.length > 200) return "bad member id";
    if (typeof m.address !== "string" || typeof m.public_key !== "string") return `bad member ${m.id}`;
    if (seen.has(m.id)) return `duplicate member ${m.id}`;
    seen.add(m.id);
  }
  return null;
}

/** The CONFIG payload bytes: the ledger's encoder, so node, simulator and verifier agree. */
export const encodeConfig = (cfg: ClusterConfig): Uint8Array => encodeLedgerConfig(cfg);

/** Parses a CONFIG payload; throws TypeError on anything that is not a valid v1 config. */
export function decodeConfig(payload: Uint8Array): ClusterConfig {
  const raw: unknown = JSON.parse(fromUtf8(payload));
  if (typeof raw !== "object" || raw === null) throw new TypeError("config payload is not an object");
  const obj = raw as { v?: unknown; voters?: unknown; learners?: unknown };
  if (obj.v !== 1) throw new TypeError("config payload: unsupported version");
  const members = (x: unknown): Member[] => {
    if (!Array.isArray(x)) throw new TypeError("config payload: members must be an array");
    return x.map((m: unknown) => {
      const mm = m as { id?: unknown; address?: unknown; public_key?: unknown };
      if (typeof mm.id !== "string" || typeof mm.address !== "string" || typeof mm.public_key !== "string")
        throw new TypeError("config payload: bad member");
      return { id: mm.id, address: mm.address, public_key: mm.public_key };
    });
  };
  return makeConfig(members(obj.voters), members(obj.learners ?? []));
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
