/**
 * CONFIG entry payloads: cluster membership with each node's address and Ed25519 public key. The one
 * definition of a valid CONFIG, used by the Raft core (raft/config.ts), the offline verifier, the
 * node's storage and the peer codec, so a payload the core accepts is one the verifier accepts.
 *
 * Valid = canonical JSON (RFC 8785) of exactly {v:1, voters:[Member...], learners:[Member...]}, each
 * member exactly {id, address, public_key}, each list sorted by id. Where the core and the verifier
 * used to disagree, the answer is:
 * - `learners` is required, even empty: encodeConfig always writes it, and a payload is accepted
 *   only in the one form encodeConfig produces (two byte strings for one membership would be two
 *   entry hashes for one fact).
 * - No extra keys, at the top or in a member, and the bytes must be canonical (key order, no
 *   whitespace, members sorted by id): the same reason. A new field is a new version `v`.
 * - No duplicate id, and no id both voter and learner: a quorum counts each id once, and a signer
 *   id must name one key.
 * - public_key is 64 lowercase hex (an Ed25519 key, DESIGN.md: "keys are lowercase hex in JSON"): a
 *   verifier checks checkpoint signatures with it, so a config without usable keys is not a config.
 * - id: a string of 1..200 code points (the core's old bound; the API admits [A-Za-z0-9_-]{1,64}).
 * - address: any string; nobody verifies a chain by dialing it (the API checks host:port on entry).
 * - voters may be empty here: whether a change may leave no voter is the core's proposal rule.
 */
import { bytesEqual } from "./bytes";
import { canonicalBytes } from "./canonical";
import { checkIJson, parseIJson } from "./ijson";
import { LedgerError } from "../util/errors";
import { type Obj, isObj, HEX64 } from "./shapes";

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

/** Each member's Ed25519 public key (hex) by id, voters and learners alike: who may sign a checkpoint. */
export const memberKeys = (config: Pick<ClusterConfig, "voters" | "learners">): Map<string, string> =>
  new Map([...config.voters, ...config.learners].map((m) => [m.id, m.public_key]));

/** The payload bytes: canonical JSON, members sorted by id, only their three fields. */
export const encodeConfig = (config: ClusterConfig): Uint8Array =>
  canonicalBytes({ v: 1, voters: [...config.voters].sort(byId).map(member), learners: [...config.learners].sort(byId).map(member) });

/** Longest member id in code points: the core's bound since the start; ids are names, not data. */
const MEMBER_ID_CHARS_MAX = 200;
const CONFIG_KEYS = ["learners", "v", "voters"];
const MEMBER_KEYS = ["address", "id", "public_key"];


/** Why o's own keys are not exactly `keys` (sorted), or null. */
function keysProblem(o: Obj, keys: readonly string[], what: string): string | null {
  for (const k of keys) if (!Object.prototype.hasOwnProperty.call(o, k)) return `${what} has no ${k}`;
  for (const k of Object.keys(o)) if (!keys.includes(k)) return `${what} has an unexpected key ${JSON.stringify(k)}`;
  return null;
}

/** Why a parsed value is not a config by shape and rules (not by bytes), or null. */
function shapeProblem(value: unknown): string | null {
  if (!isObj(value)) return "not a JSON object";
  if (value.v !== 1) return `unsupported version ${JSON.stringify(value.v) ?? "(none)"}`;
  const keys = keysProblem(value, CONFIG_KEYS, "config");
  if (keys !== null) return keys;
  const seen = new Map<string, "voters" | "learners">();
  for (const role of ["voters", "learners"] as const) {
    const list = value[role];
    if (!Array.isArray(list)) return `${role} is not an array`;
    let prev: string | null = null;
    for (let i = 0; i < list.length; i++) {
      const m: unknown = list[i];
      const at = `${role}[${i}]`;
      if (!isObj(m)) return `${at} is not an object`;
      const mk = keysProblem(m, MEMBER_KEYS, at);
      if (mk !== null) return mk;
      const id = m.id;
      if (typeof id !== "string" || id.length === 0 || [...id].length > MEMBER_ID_CHARS_MAX) {
        return `${at}.id is not a string of 1..${MEMBER_ID_CHARS_MAX} characters`;
      }
      if (typeof m.address !== "string") return `${at}.address is not a string`;
      if (typeof m.public_key !== "string" || !HEX64.test(m.public_key)) return `${at}.public_key is not 64 lowercase hex`;
      const was = seen.get(id);
      if (was !== undefined) return was === role ? `duplicate member ${id} in ${role}` : `duplicate member ${id}: both voter and learner`;
      seen.set(id, role);
      if (prev !== null && prev > id) return `${role} are not sorted by id (${prev} before ${id})`;
      prev = id;
    }
  }
  return null;
}

/** The reason a LedgerError from the I-JSON checks gives; anything else is a bug and rethrown. */
function ijsonProblem(check: () => void): string | null {
  try {
    check();
    return null;
  } catch (err) {
    if (err instanceof LedgerError) return `not I-JSON: ${err.message}`;
    throw err;
  }
}

/**
 * Why a config value (as the core or the peer codec holds it) is not valid, or null: the rules
 * above, and its strings must survive the canonical bytes (no lone surrogate, no noncharacter).
 * Valid exactly when decodeConfig(encodeConfig(value)) gives it back.
 */
export function configProblem(value: unknown): string | null {
  const shape = shapeProblem(value);
  if (shape !== null) return shape;
  return ijsonProblem(() => checkIJson(encodeConfig(value as ClusterConfig)));
}

/** Why payload is not a CONFIG payload, or null. */
export function configPayloadProblem(payload: Uint8Array): string | null {
  const r = parse(payload);
  return typeof r === "string" ? r : null;
}

/** Parses a CONFIG payload; null when it is not one (configPayloadProblem says why). */
export function decodeConfig(payload: Uint8Array): ClusterConfig | null {
  const r = parse(payload);
  return typeof r === "string" ? null : r;
}

function parse(payload: Uint8Array): ClusterConfig | string {
  let value: unknown;
  const bad = ijsonProblem(() => {
    value = parseIJson(payload);
  });
  if (bad !== null) return bad;
  const shape = shapeProblem(value);
  if (shape !== null) return shape;
  const config = value as ClusterConfig;
  if (!bytesEqual(encodeConfig(config), payload)) return "not in canonical form (RFC 8785 JSON)";
  return config;
}
