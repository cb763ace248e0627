// The anchor tracker (src/ledger/anchor.ts), in process: the grades a verification reports, keys
// endorsed only through a checkpoint of the configuration before them, the pinned root and size.
// Then the trust file itself (src/ledger/trust.ts): what parseTrustFile and parseCheckpointFile
// accept and, for every refusal, the exact reason; expected bytes and hashes come from
// test/support/independent.ts.
import { AnchorTracker } from "../../src/ledger/anchor";
import { Checkpoint } from "../../src/ledger/checkpoint";
import { Entry, EntryKind } from "../../src/ledger/entry";
import { encodeConfig } from "../../src/ledger/config";
import {
  checkpointFromValue, genesisConfigPayload, genesisKeys, makeTrustFile, parseCheckpointFile, parseTrustFile, PinnedCheckpoint,
} from "../../src/ledger/trust";
import * as ind from "../support/independent";

const K1 = "11".repeat(32);
const K2 = "22".repeat(32);
const genesis = { v: 1 as const, voters: [{ id: "n1", address: "a:1", public_key: K1 }], learners: [] };
const entry = (index: number, kind: EntryKind, payload: Uint8Array = new Uint8Array()): Entry => ({ index, term: 1, kind, payload, hash: new Uint8Array(32) });
const cp = (size: number, signer: string): Checkpoint => ({ v: 1, cluster: "c", size, root: "00".repeat(32), head: "00".repeat(32), term: 1, signer, ts: new Date(size * 1000).toISOString(), sig: "00".repeat(64) });
const keys = (...ms: Array<[string, string]>) => new Map(ms);

test("without a trust file the whole range is 'self-consistent, not anchored'", () => {
  const t = new AnchorTracker(undefined, undefined);
  expect(t.config(entry(1, EntryKind.Config, encodeConfig(genesis)), keys(["n1", K1]))).toBeNull();
  t.checkpoint(cp(4, "n1"), keys(["n1", K1]));
  expect(t.report(1, 7)).toEqual({ anchor: "self-consistent, not anchored", signed_size: 0, checkpointed_size: 4, grades: [{ from: 1, to: 7, grade: "self-consistent, not anchored" }] });
});

test("with a trust file: signed up to the last endorsed checkpoint; a key introduced by an uncovered CONFIG signs nothing yet", () => {
  const t = new AnchorTracker(makeTrustFile("c", genesis), undefined);
  expect(t.refusal("other", true)?.reason).toMatch(/genesis differs/);
  expect(t.refusal("c", false)?.reason).toMatch(/from genesis only/);
  expect(t.refusal("c", true)).toBeNull();
  expect(t.config(entry(1, EntryKind.Config, encodeConfig({ ...genesis, learners: [{ id: "n2", address: "b:1", public_key: K2 }] })), keys())?.index).toBe(1);
  expect(t.config(entry(1, EntryKind.Config, encodeConfig(genesis)), keys(["n1", K1]))).toBeNull();
  t.checkpoint(cp(4, "n1"), keys(["n1", K1]));
  t.config(entry(6, EntryKind.Config), keys(["n1", K1], ["n2", K2]));
  t.config(entry(7, EntryKind.Config), keys(["n2", K2]));
  t.checkpoint(cp(8, "n2"), keys(["n2", K2])); // n2 is not in genesis: CONFIG 6 is not endorsed by this
  expect(t.report(1, 10).grades).toEqual([{ from: 1, to: 4, grade: "signed" }, { from: 5, to: 10, grade: "chained, not yet signed" }]);
});

test("with a trust file: a checkpoint by a member of both configurations endorses the changes in turn", () => {
  const t = new AnchorTracker(makeTrustFile("c", genesis), undefined);
  t.config(entry(1, EntryKind.Config, encodeConfig(genesis)), keys(["n1", K1]));
  t.config(entry(3, EntryKind.Config), keys(["n1", K1], ["n2", K2]));
  t.checkpoint(cp(5, "n1"), keys(["n1", K1], ["n2", K2]));
  t.config(entry(7, EntryKind.Config), keys(["n2", K2]));
  t.checkpoint(cp(8, "n2"), keys(["n2", K2])); // n2 was given K2 by CONFIG 3, endorsed at 5
  expect(t.report(1, 9)).toMatchObject({ anchor: "trust file", signed_size: 8 });
});

test("a pinned checkpoint: its root at its size, and a log that ends before it was cut back; ts never goes back", () => {
  const pinned = { ...cp(3, "n1"), root: "ab".repeat(32), index: 4 };
  const t = new AnchorTracker(makeTrustFile("c", genesis), pinned);
  expect(t.appended(entry(3, EntryKind.Noop), () => new Uint8Array(32), null)?.reason).toMatch(/pinned checkpoint's root/);
  expect(t.finish(2)).toEqual({ index: 3, reason: expect.stringMatching(/cut back/) });
  const u = new AnchorTracker(undefined, undefined);
  expect(u.appended(entry(5, EntryKind.Checkpoint), () => new Uint8Array(32), cp(9, "n1"))).toBeNull();
  expect(u.appended(entry(6, EntryKind.Checkpoint), () => new Uint8Array(32), cp(2, "n1"))?.reason).toMatch(/runs backwards/);
});

// ---------------------------------------------------------------- the trust file

const K3 = "33".repeat(32);
const twoMembers = {
  v: 1 as const,
  voters: [{ id: "n1", address: "a:1", public_key: K1 }, { id: "n3", address: "c:1", public_key: K3 }],
  learners: [{ id: "n2", address: "b:1", public_key: K2 }],
};
const pin: PinnedCheckpoint = { ...cp(4, "n1"), root: "ab".repeat(32), head: "cd".repeat(32), sig: "ef".repeat(64), index: 5 };
const json = (v: unknown): string => JSON.stringify(v);

describe("makeTrustFile and what it pins", () => {
  test("the cluster, its independent genesis hash, the genesis configuration, no checkpoint unless given", () => {
    expect(makeTrustFile("c", twoMembers)).toEqual({
      v: 1, cluster: "c", genesis_hash: ind.genesisHash("c").toString("hex"),
      genesis_config: { voters: twoMembers.voters, learners: twoMembers.learners },
    });
    expect("checkpoint" in makeTrustFile("c", twoMembers)).toBe(false);
  });

  test("a pinned checkpoint keeps only its own fields (a stored checkpoint may carry more)", () => {
    const stored = { ...pin, created_at: "now", entry_hash: "xx" } as PinnedCheckpoint;
    expect(makeTrustFile("c", twoMembers, stored).checkpoint).toEqual(pin);
  });

  test("genesisKeys: voters' and learners' keys by id; genesisConfigPayload: the canonical CONFIG bytes", () => {
    const t = makeTrustFile("c", twoMembers);
    expect([...genesisKeys(t)]).toEqual([["n1", K1], ["n3", K3], ["n2", K2]]);
    expect(Buffer.from(genesisConfigPayload(t)).toString("utf8")).toBe(ind.canonicalJson({ v: 1, voters: twoMembers.voters, learners: twoMembers.learners }));
  });
});

describe("parseTrustFile accepts a trust file and refuses anything else, saying why", () => {
  // Made per test (beforeEach), and the table's texts are thunks: nothing outside a test may reach src.
  let good: ReturnType<typeof makeTrustFile>;
  beforeEach(() => { good = makeTrustFile("c", twoMembers); });

  test("a trust file round-trips, with and without a pinned checkpoint", () => {
    expect(parseTrustFile(json(good))).toEqual(good);
    expect(parseTrustFile(json({ ...good, checkpoint: pin }))).toEqual({ ...good, checkpoint: pin });
  });

  test.each<[string, () => string, string]>([
    ["an array", () => "[]", "the trust file is not a JSON object"],
    ["null", () => "null", "the trust file is not a JSON object"],
    ["a string", () => '"x"', "the trust file is not a JSON object"],
    ["an unexpected key", () => json({ ...good, extra: 1 }), 'the trust file has an unexpected key "extra"'],
    ["no version", () => json({ ...good, v: undefined }), "the trust file's version is missing, not 1"],
    ["version 2", () => json({ ...good, v: 2 }), "the trust file's version is 2, not 1"],
    ["version as a string", () => json({ ...good, v: "1" }), 'the trust file\'s version is "1", not 1'],
    ["no cluster", () => json({ ...good, cluster: undefined }), "the trust file has no cluster"],
    ["an empty cluster", () => json({ ...good, cluster: "", genesis_hash: ind.genesisHash("").toString("hex") }), "the trust file has no cluster"],
    ["a cluster that is not a string", () => json({ ...good, cluster: 7 }), "the trust file has no cluster"],
    ["another cluster's genesis hash", () => json({ ...good, genesis_hash: ind.genesisHash("d").toString("hex") }), "genesis_hash is not the genesis hash of cluster c"],
    ["no genesis_config", () => json({ ...good, genesis_config: undefined }), "genesis_config is not an object"],
    ["a genesis_config array", () => json({ ...good, genesis_config: [] }), "genesis_config is not an object"],
    ["a genesis_config with v", () => json({ ...good, genesis_config: { ...good.genesis_config, v: 1 } }), "genesis_config is not a configuration: it has keys other than voters and learners"],
    ["no learners", () => json({ ...good, genesis_config: { voters: good.genesis_config.voters } }), "genesis_config is not a configuration: learners is not an array"],
    ["unsorted voters", () => json({ ...good, genesis_config: { ...good.genesis_config, voters: [...good.genesis_config.voters].reverse() } }), "genesis_config is not a configuration: voters are not sorted by id (n3 before n1)"],
    ["no voter", () => json({ ...good, genesis_config: { voters: [], learners: good.genesis_config.learners } }), "genesis_config has no voter"],
    ["a pinned checkpoint of another cluster", () => json({ ...good, checkpoint: { ...pin, cluster: "d" } }), "the checkpoint is of cluster d, the trust file pins c"],
    ["a pinned checkpoint without its index", () => json({ ...good, checkpoint: { ...pin, index: undefined } }), "the checkpoint has no index"],
  ])("%s", (_name, text, reason) => {
    expect(parseTrustFile(text())).toBe(reason);
  });

  test("text that is not I-JSON (a duplicate key, not JSON at all) says so", () => {
    expect(parseTrustFile('{"v":1,"v":1}')).toMatch(/^the trust file is not JSON: .+/);
    expect(parseTrustFile("{")).toMatch(/^the trust file is not JSON: .+/);
  });
});

describe("checkpointFromValue and parseCheckpointFile: a pinned checkpoint", () => {
  test("a well-formed one with its index; extra fields are dropped; any cluster unless one is pinned", () => {
    expect(checkpointFromValue(pin)).toEqual(pin);
    expect(checkpointFromValue({ ...pin, created_at: "x" })).toEqual(pin);
    expect(checkpointFromValue(pin, "c")).toEqual(pin);
    expect(checkpointFromValue(pin, "d")).toBe("the checkpoint is of cluster c, the trust file pins d");
    expect(parseCheckpointFile(json({ ...pin, cluster: "zz" }))).toEqual({ ...pin, cluster: "zz" });
  });

  test.each(["v", "cluster", "size", "root", "head", "term", "signer", "ts", "sig", "index"])("without %s it is refused", (k) => {
    const { [k]: _gone, ...rest } = pin as unknown as Record<string, unknown>;
    expect(checkpointFromValue(rest)).toBe(`the checkpoint has no ${k}`);
  });

  test.each([
    ["index = size", { index: 4 }],
    ["index = size + 2", { index: 6 }],
    ["index as a string", { index: "5" }],
    ["index fractional", { index: 5.5 }],
  ])("%s is refused", (_name, patch) => {
    expect(checkpointFromValue({ ...pin, ...patch })).toBe("the checkpoint's index must be its size + 1 (5)");
  });

  test("not an object, or not a well-formed signed checkpoint", () => {
    for (const v of [null, [], "cp", 5]) expect(checkpointFromValue(v)).toBe("the checkpoint is not a JSON object");
    const bad = "the checkpoint is not a well-formed signed checkpoint {v:1, cluster, size, root, head, term, signer, ts, sig}";
    expect(checkpointFromValue({ ...pin, sig: "ef" })).toBe(bad);
    expect(checkpointFromValue({ ...pin, v: 2 })).toBe(bad);
    expect(checkpointFromValue({ ...pin, size: -1 })).toBe(bad);
  });

  test("a checkpoint file that is not JSON says so", () => {
    expect(parseCheckpointFile("not json")).toMatch(/^the checkpoint file is not JSON: .+/);
    expect(parseCheckpointFile("[]")).toBe("the checkpoint is not a JSON object");
  });
});
