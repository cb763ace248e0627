/** CONFIG entry payloads: cluster membership with each node's address and Ed25519 public key. */
import { canonicalBytes } from "./canonical";
import { fromUtf8 } from "./bytes";

export interface MemberInfo {
  readonly id: string;
  readonly address: string;
  readonly public_key: string;
}

export interface ClusterConfig {
  readonly v: 1;
  readonly cluster: string;
  readonly voters: readonly MemberInfo[];
  readonly learners: readonly MemberInfo[];
}

export const encodeConfig = (config: ClusterConfig): Uint8Array => canonicalBytes(config);

const HEX64 = /^[0-9a-f]{64}$/;

function isMember(m: unknown): m is MemberInfo {
  if (typeof m !== "object" || m === null) return false;
  const r = m as Record<string, unknown>;
  return typeof r.id === "string" && r.id.length > 0 && typeof r.address === "string" &&
    typeof r.public_key === "string" && HEX64.test(r.public_key);
}

/** Parses a CONFIG payload; null when it is not one (a verifier reports that, never guesses). */
export function decodeConfig(payload: Uint8Array): ClusterConfig | null {
  let v: unknown;
  try {
    v = JSON.parse(fromUtf8(payload));
  } catch {
    return null; // not JSON (or not UTF-8): not a config payload
  }
  if (typeof v !== "object" || v === null) return null;
  const c = v as Record<string, unknown>;
  if (c.v !== 1 || typeof c.cluster !== "string") return null;
  if (!Array.isArray(c.voters) || !c.voters.every(isMember)) return null;
  if (!Array.isArray(c.learners) || !c.learners.every(isMember)) return null;
  return c as unknown as ClusterConfig;
}
