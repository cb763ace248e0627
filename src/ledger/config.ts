/** CONFIG entry payloads: cluster membership with each node's address and Ed25519 public key. */
import { canonicalBytes, decodeV1Object } from "./canonical";

export interface MemberInfo {
  readonly id: string;
  readonly address: string;
  readonly public_key: string;
}

/**
 * Payload = canonical JSON of {v:1, voters, learners}, members sorted by id. The cluster id is not
 * repeated here: the genesis hash already binds every entry to it.
 */
export interface ClusterConfig {
  readonly v: 1;
  readonly voters: readonly MemberInfo[];
  readonly learners: readonly MemberInfo[];
}

const byId = (a: MemberInfo, b: MemberInfo): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const member = (m: MemberInfo): MemberInfo => ({ id: m.id, address: m.address, public_key: m.public_key });

export const encodeConfig = (config: ClusterConfig): Uint8Array =>
  canonicalBytes({ v: 1, voters: [...config.voters].sort(byId).map(member), learners: [...config.learners].sort(byId).map(member) });

const HEX64 = /^[0-9a-f]{64}$/;

function isMember(m: unknown): m is MemberInfo {
  if (typeof m !== "object" || m === null) return false;
  const r = m as Record<string, unknown>;
  return typeof r.id === "string" && r.id.length > 0 && typeof r.address === "string" &&
    typeof r.public_key === "string" && HEX64.test(r.public_key);
}

/** Parses a CONFIG payload; null when it is not one (a verifier reports that, never guesses). */
export function decodeConfig(payload: Uint8Array): ClusterConfig | null {
  const c = decodeV1Object(payload);
  if (c === null) return null;
  if (c.v !== 1) return null;
  if (!Array.isArray(c.voters) || !c.voters.every(isMember)) return null;
  if (!Array.isArray(c.learners) || !c.learners.every(isMember)) return null;
  return c as unknown as ClusterConfig;
}
