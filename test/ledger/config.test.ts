// One definition of a valid CONFIG payload (src/ledger/config.ts), checked where it is used: a
// follower's Raft core, the offline verifier (verifyChain over a one-entry chain) and the peer codec
// (isRaftMessage on an InstallSnapshot) must each accept exactly the same payloads. The payloads are
// random configs and random mutations of them (duplicate ids, voter-and-learner, missing learners,
// bad keys, extra fields, non-canonical bytes, flipped bytes). On failure the seed is printed.
import fc from "fast-check";
import { canonicalJson } from "../../src/ledger/canonical";
import { configPayloadProblem, configProblem, decodeConfig, encodeConfig, type ClusterConfig, type MemberInfo } from "../../src/ledger/config";
import { chainEntry, EntryKind, genesisHash } from "../../src/ledger/entry";
import { isNoncharacter } from "../../src/ledger/ijson";
import { CompactRange } from "../../src/ledger/merkle";
import { verifyChain, type ChainSource } from "../../src/ledger/verify";
import { isRaftMessage } from "../../src/node/raft-messages";
import { configOfIds, makeConfig, mustDecodeConfig } from "../../src/raft/config";
import { Prng } from "../../src/raft/prng";
import { RawNode } from "../../src/raft/rawnode";
import { MemoryStorage } from "../../src/raft/storage";
import { testSeed } from "../support/independent";

const SEED = testSeed();
/** Each case builds one follower and one one-entry chain (~1 ms): 400 runs stay around a second. */
const NUM_RUNS = 400;
const reproduce = `seed ${SEED}: RESONETICS_SEED=${SEED} npx jest test/ledger/config.test.ts`;

/** fc.check with the run's seed, and the seed in the failure message. */
function check<T>(arb: fc.Arbitrary<T>, prop: (v: T) => void, numRuns = NUM_RUNS): void {
  const out = fc.check(fc.property(arb, prop), { seed: SEED, numRuns });
  if (out.failed) {
    throw new Error(`property failed (${reproduce}) after ${out.numRuns} runs: ${String(out.errorInstance)}\ncounterexample: ${JSON.stringify(out.counterexample)?.slice(0, 1500)}`);
  }
}

const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "utf8"));

// ---------------------------------------------------------------- the three judges

const CLUSTER = "config-test";

/** The Raft core as a follower: a correctly chained CONFIG entry at index 2 is written, or refused and reported. */
function coreAccepts(payload: Uint8Array): boolean {
  const s = MemoryStorage.bootstrap(CLUSTER, configOfIds(["n1", "n2", "n3"]));
  const raw = new RawNode({ id: "n2", storage: s, electionTick: 10, heartbeatTick: 1, preVote: true, checkQuorum: true, maxMsgBytes: 1 << 20, maxInflight: 4, rng: new Prng(1) });
  const prev = s.entry(1);
  const e = chainEntry(2, 2, EntryKind.Config, prev.hash, payload);
  raw.step({ type: "Append", from: "n1", to: "n2", term: 2, prevIndex: 1, prevTerm: prev.term, prevHash: prev.hash, entries: [e], commit: 1 });
  const rd = raw.ready();
  raw.advance(rd);
  const written = rd.entries.some((x) => x.index === 2);
  const refused = rd.reports.some((r) => r.kind === "config_payload" && r.index === 2);
  expect(written).toBe(!refused); // either written or refused with a report, never neither or both
  return written;
}

/** The offline verifier on a chain whose only entry is a genesis CONFIG with this payload. */
function verifierAccepts(payload: Uint8Array): boolean {
  const e = chainEntry(1, 1, EntryKind.Config, genesisHash(CLUSTER), payload);
  const nodes = new Map(new CompactRange().append(e.hash).map((n) => [`${n.level}/${n.index}`, n.hash]));
  const src: ChainSource = {
    getMeta: (k) => (k === "cluster_id" ? CLUSTER : undefined),
    hardState: () => ({ commitIndex: 1, lastApplied: 1, term: 1 }),
    lastIndex: () => 1,
    entries: (from, to) => (from <= 1 && to >= 1 ? [e] : []),
    findNode: (level, index) => nodes.get(`${level}/${index}`),
    checkpoints: () => [],
    allSubjects: () => [],
    allSubjectRecords: () => [],
    allDedup: () => [],
    latestSnapshotBytes: () => undefined,
    anchor: () => undefined,
  };
  const report = verifyChain(src);
  if (!report.ok) expect({ at: report.first_bad_index, reason: report.reason }).toEqual({ at: 1, reason: `CONFIG payload is not a configuration: ${configPayloadProblem(payload)}` });
  return report.ok;
}

/** The node's peer codec on an InstallSnapshot whose metadata carries this config value. */
function peerCodecAccepts(config: unknown): boolean {
  const meta = { index: 1, term: 1, hash: new Uint8Array(32), config };
  return isRaftMessage({ type: "InstallSnapshot", from: "n1", to: "n2", term: 1, snapshot: { meta, data: new Uint8Array(0) } });
}

// ---------------------------------------------------------------- random configs

const noNonchar = (s: string): boolean => ![...s].some((c) => isNoncharacter(c.codePointAt(0) as number));
const text = (min: number, max: number): fc.Arbitrary<string> =>
  fc.string({ unit: "grapheme", minLength: min, maxLength: max }).filter((s) => noNonchar(s) && [...s].length >= min);
const id = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), text(1, 6), fc.constant("n".repeat(200)));
const address = fc.oneof(fc.constant(""), fc.integer({ min: 1, max: 65535 }).map((p) => `127.0.0.1:${p}`), text(0, 8));
const key = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString("hex"));
const memberArb: fc.Arbitrary<MemberInfo> = fc.record({ id, address, public_key: key });

/** Members with distinct ids, split into voters and learners, each list in a random order. */
const membersArb = fc
  .tuple(fc.uniqueArray(memberArb, { selector: (m) => m.id, maxLength: 7 }), fc.nat(), fc.nat())
  .chain(([all, split, _]) => {
    const k = all.length === 0 ? 0 : split % (all.length + 1);
    return fc.tuple(fc.shuffledSubarray(all.slice(0, k), { minLength: k }), fc.shuffledSubarray(all.slice(k), { minLength: all.length - k }));
  });

const byId = (a: MemberInfo, b: MemberInfo): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const sortedConfig = (voters: MemberInfo[], learners: MemberInfo[]): ClusterConfig => ({ v: 1, voters: [...voters].sort(byId), learners: [...learners].sort(byId) });

// ---------------------------------------------------------------- mutations

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Mutation =
  | "none" | "duplicate-voter" | "duplicate-learner" | "voter-and-learner" | "no-learners" | "no-voters-key"
  | "key-uppercase" | "key-short" | "key-long" | "key-not-hex" | "key-missing" | "extra-top" | "extra-member"
  | "empty-id" | "long-id" | "numeric-id" | "address-number" | "version-2" | "unsorted" | "member-null";
type ByteMutation = "whitespace" | "escaped-char" | "key-order" | "float-version" | "flip-byte" | "truncate" | "bom";

const OBJECT_MUTATIONS: readonly Mutation[] = [
  "none", "duplicate-voter", "duplicate-learner", "voter-and-learner", "no-learners", "no-voters-key", "key-uppercase", "key-short",
  "key-long", "key-not-hex", "key-missing", "extra-top", "extra-member", "empty-id", "long-id", "numeric-id", "address-number", "version-2",
  "unsorted", "member-null",
];
const BYTE_MUTATIONS: readonly ByteMutation[] = ["whitespace", "escaped-char", "key-order", "float-version", "flip-byte", "truncate", "bom"];

const asJson = (c: ClusterConfig): { [k: string]: Json } => JSON.parse(canonicalJson(c)) as { [k: string]: Json };

/** Applies one mutation to a valid config; null when it does not apply (e.g. nothing to duplicate). */
function mutate(c: ClusterConfig, what: Mutation): { [k: string]: Json } | null {
  const o = asJson(c);
  const voters = o.voters as { [k: string]: Json }[];
  const learners = o.learners as { [k: string]: Json }[];
  const first = voters[0] ?? learners[0];
  switch (what) {
    case "none":
      return o;
    case "duplicate-voter":
      if (voters.length === 0) return null;
      voters.push({ ...voters[0], address: "elsewhere:1" });
      return o;
    case "duplicate-learner":
      if (learners.length === 0) return null;
      learners.unshift({ ...learners[0] });
      return o;
    case "voter-and-learner":
      if (voters.length === 0) return null;
      learners.push({ ...voters[0] });
      learners.sort((a, b) => ((a.id as string) < (b.id as string) ? -1 : 1));
      return o;
    case "no-learners":
      delete o.learners;
      return o;
    case "no-voters-key":
      delete o.voters;
      return o;
    case "key-uppercase":
      if (first === undefined) return null;
      first.public_key = (first.public_key as string).replace(/[0-9]/g, "A").toUpperCase();
      return o;
    case "key-short":
      if (first === undefined) return null;
      first.public_key = (first.public_key as string).slice(1);
      return o;
    case "key-long":
      if (first === undefined) return null;
      first.public_key = `${first.public_key as string}0`;
      return o;
    case "key-not-hex":
      if (first === undefined) return null;
      first.public_key = `${(first.public_key as string).slice(0, 63)}g`;
      return o;
    case "key-missing":
      if (first === undefined) return null;
      delete first.public_key;
      return o;
    case "extra-top":
      o.cluster = "c";
      return o;
    case "extra-member":
      if (first === undefined) return null;
      first.role = "voter";
      return o;
    case "empty-id":
      if (first === undefined) return null;
      first.id = "";
      return o;
    case "long-id":
      if (first === undefined) return null;
      first.id = "n".repeat(201);
      return o;
    case "numeric-id":
      if (first === undefined) return null;
      first.id = 7;
      return o;
    case "address-number":
      if (first === undefined) return null;
      first.address = 8080;
      return o;
    case "version-2":
      o.v = 2;
      return o;
    case "unsorted":
      if (voters.length < 2) return null;
      voters.reverse();
      return o;
    case "member-null":
      voters.push(null as unknown as { [k: string]: Json });
      return o;
    default: {
      const never: never = what;
      throw new Error(`unknown mutation ${String(never)}`);
    }
  }
}

/** Non-canonical spellings of a valid payload (and two plain corruptions); null when it does not apply. */
function mutateBytes(c: ClusterConfig, what: ByteMutation, at: number): Uint8Array | null {
  const canon = Buffer.from(encodeConfig(c)).toString("utf8");
  switch (what) {
    case "whitespace":
      return utf8(canon.replace(/^\{/, "{ "));
    case "escaped-char": {
      const k = canon.indexOf('"v"');
      return utf8(`${canon.slice(0, k)}"\\u0076"${canon.slice(k + 3)}`);
    }
    case "key-order":
      return utf8(JSON.stringify({ v: 1, voters: c.voters, learners: c.learners }));
    case "float-version":
      return utf8(canon.replace('"v":1', '"v":1.0'));
    case "flip-byte": {
      const b = utf8(canon);
      b[at % b.length] ^= 1 << (at % 7);
      return b;
    }
    case "truncate":
      return utf8(canon.slice(0, at % canon.length));
    case "bom":
      return utf8(`\uFEFF${canon}`);
    default: {
      const never: never = what;
      throw new Error(`unknown byte mutation ${String(never)}`);
    }
  }
}

// ---------------------------------------------------------------- properties

describe(`CONFIG payloads: one definition (${reproduce})`, () => {
  test("every config makeConfig builds round-trips through its bytes, and every judge accepts it", () => {
    check(membersArb, ([voters, learners]) => {
      const cfg = makeConfig(voters, learners);
      expect(cfg).toEqual(sortedConfig(voters, learners));
      const bytes = encodeConfig(cfg);
      expect(decodeConfig(bytes)).toEqual(cfg);
      expect(mustDecodeConfig(bytes)).toEqual(cfg);
      expect(Buffer.from(encodeConfig(decodeConfig(bytes) as ClusterConfig))).toEqual(Buffer.from(bytes));
      expect(configProblem(cfg)).toBeNull();
      expect(configPayloadProblem(bytes)).toBeNull();
      expect(coreAccepts(bytes)).toBe(true);
      expect(verifierAccepts(bytes)).toBe(true);
      expect(peerCodecAccepts(cfg)).toBe(true);
    }, 200);
  });

  test("a mutated config value: core, verifier and peer codec agree, and each mutation is refused", () => {
    const seen = new Map<Mutation, number>();
    check(fc.tuple(membersArb, fc.constantFrom(...OBJECT_MUTATIONS)), ([[voters, learners], what]) => {
      const value = mutate(sortedConfig(voters, learners), what);
      if (value === null) return;
      seen.set(what, (seen.get(what) ?? 0) + 1);
      const bytes = utf8(canonicalJson(value));
      const verifier = verifierAccepts(bytes);
      expect({ what, core: coreAccepts(bytes), peer: peerCodecAccepts(value) }).toEqual({ what, core: verifier, peer: verifier });
      // The object check the leader runs before proposing (makeConfig) says the same.
      expect({ what, objectCheck: configProblem(value) === null }).toEqual({ what, objectCheck: verifier });
      expect({ what, accepted: verifier }).toEqual({ what, accepted: what === "none" });
    });
    // Each mutation must have been exercised (a property over nothing proves nothing).
    for (const what of OBJECT_MUTATIONS) expect({ what, runs: (seen.get(what) ?? 0) > 0 }).toEqual({ what, runs: true });
  });

  test("non-canonical spellings and corrupted bytes: core and verifier agree; only canonical bytes pass", () => {
    let accepted = 0;
    let refused = 0;
    check(fc.tuple(membersArb, fc.constantFrom(...BYTE_MUTATIONS), fc.nat()), ([[voters, learners], what, at]) => {
      const cfg = sortedConfig(voters, learners);
      const bytes = mutateBytes(cfg, what, at);
      if (bytes === null) return;
      const verifier = verifierAccepts(bytes);
      expect({ what, core: coreAccepts(bytes) }).toEqual({ what, core: verifier });
      if (verifier) {
        accepted++;
        // Only the canonical bytes of some config pass, whatever the corruption did.
        expect(Buffer.from(encodeConfig(decodeConfig(bytes) as ClusterConfig))).toEqual(Buffer.from(bytes));
      } else refused++;
      if (what !== "flip-byte" && what !== "truncate") expect({ what, verifier }).toEqual({ what, verifier: false });
    });
    // Every spelling other than the canonical one is refused, so refusals must have been seen; a
    // flipped bit on a key's hex digit may make another valid (canonical) config, hence accepted.
    expect(refused).toBeGreaterThan(0);
    expect(accepted + refused).toBe(NUM_RUNS);
  });

  test("configs with lone surrogates or noncharacters never pass, as value or as bytes", () => {
    for (const bad of ["\uD800", "a\uDFFFb", "\uFDD0", "x\uFFFE"]) {
      const value = { v: 1, voters: [{ address: "", id: bad, public_key: "0".repeat(64) }], learners: [] };
      expect(() => makeConfig(value.voters)).toThrow(/invalid cluster config/);
      expect(configProblem(value)).toMatch(/I-JSON/);
      expect(peerCodecAccepts(value)).toBe(false);
      const bytes = utf8(canonicalJson(value));
      expect({ bad, core: coreAccepts(bytes), verifier: verifierAccepts(bytes) }).toEqual({ bad, core: false, verifier: false });
    }
  });
});

describe("each refusal says why", () => {
  const k = "ab".repeat(32);
  const m = (id: string): MemberInfo => ({ id, address: "127.0.0.1:1", public_key: k });
  test.each([
    ["missing learners", { v: 1, voters: [m("a")] }, /config has no learners/],
    ["duplicate id", { v: 1, voters: [m("a"), m("a")], learners: [] }, /duplicate member a in voters/],
    ["voter and learner", { v: 1, voters: [m("a")], learners: [m("a")] }, /duplicate member a: both voter and learner/],
    ["bad key", { v: 1, voters: [{ ...m("a"), public_key: "AB".repeat(32) }], learners: [] }, /voters\[0\]\.public_key is not 64 lowercase hex/],
    ["extra top-level key", { v: 1, voters: [], learners: [], x: 1 }, /unexpected key "x"/],
    ["extra member key", { v: 1, voters: [{ ...m("a"), x: 1 }], learners: [] }, /voters\[0\] has an unexpected key "x"/],
    ["unsorted", { v: 1, voters: [m("b"), m("a")], learners: [] }, /voters are not sorted by id \(b before a\)/],
    ["another version", { v: 2, voters: [], learners: [] }, /unsupported version 2/],
  ])("%s", (_name, value, reason) => {
    expect(configPayloadProblem(utf8(canonicalJson(value)))).toMatch(reason);
    expect(configProblem(value)).toMatch(reason);
  });
  test("non-canonical bytes and non-JSON", () => {
    expect(configPayloadProblem(utf8('{"learners":[], "v":1,"voters":[]}'))).toMatch(/canonical/);
    expect(configPayloadProblem(utf8('{"learners":[],"v":1,"v":1,"voters":[]}'))).toMatch(/I-JSON/);
    expect(configPayloadProblem(utf8("[]"))).toMatch(/not a JSON object/);
    expect(() => mustDecodeConfig(utf8('{"learners":[],"v":1}'))).toThrow(/invalid CONFIG payload: config has no voters/);
  });
  test("the empty config is valid (the core's base before any CONFIG); a proposal needs a voter, which the core checks", () => {
    expect(decodeConfig(utf8('{"learners":[],"v":1,"voters":[]}'))).toEqual({ v: 1, voters: [], learners: [] });
  });
});
