// The anchor tracker (src/ledger/anchor.ts) step by step, as verify.ts drives it: the refusals
// before any entry (exact reasons), entry 1 against the pinned genesis CONFIG, the endorsement of a
// later configuration's keys only through a checkpoint of the configuration before it, the pinned
// checkpoint's root, head, entry and size, time that must not run backwards, and the graded report
// at its boundaries. Payloads and hashes are built with test/support/independent.ts.
import { AnchorTracker } from "../../src/ledger/anchor";
import type { Checkpoint } from "../../src/ledger/checkpoint";
import { Entry, EntryKind } from "../../src/ledger/entry";
import { makeTrustFile, PinnedCheckpoint, TrustFile } from "../../src/ledger/trust";
import * as ind from "../support/independent";

const CLUSTER = "c";
const K1 = "11".repeat(32);
const K2 = "22".repeat(32);
const K3 = "33".repeat(32);
const m = (id: string, key: string) => ({ id, address: `${id}:1`, public_key: key });
const GENESIS = { v: 1 as const, voters: [m("n1", K1)], learners: [] };
const genesisPayload = (): Buffer => Buffer.from(ind.canonicalJson({ v: 1, voters: [m("n1", K1)], learners: [] }));
const trust = (): TrustFile => makeTrustFile(CLUSTER, GENESIS);

const entry = (index: number, kind: EntryKind, payload: Uint8Array = new Uint8Array(), hash: Uint8Array = new Uint8Array(32)): Entry => ({ index, term: 1, kind, payload, hash });
const keys = (...ms: Array<[string, string]>): Map<string, string> => new Map(ms);
const cp = (size: number, signer: string, ts = new Date(size * 1000).toISOString()): Checkpoint => ({
  v: 1, cluster: CLUSTER, size, root: "00".repeat(32), head: "00".repeat(32), term: 1, signer, ts, sig: "00".repeat(64),
});
const record = (index: number, ts: string): Entry =>
  entry(index, EntryKind.Record, Buffer.from(ind.canonicalJson({ v: 1, type: "policy.set", subject: "s", data: 1, ts })));
const zeroRoot = (): Uint8Array => new Uint8Array(32);

describe("refusal: a data dir that cannot be checked against the trust file at all", () => {
  test("another cluster, named both ways", () => {
    expect(new AnchorTracker(trust(), undefined).refusal("other", true)).toEqual({
      index: 0, reason: "genesis differs from the trust file: this data dir is of cluster other, the trust file pins c",
    });
  });

  test("a trust file whose genesis hash is not its cluster's", () => {
    const t = { ...trust(), genesis_hash: "ab".repeat(32) };
    expect(new AnchorTracker(t, undefined).refusal(CLUSTER, true)).toEqual({
      index: 0, reason: `genesis differs from the trust file: genesis hash ${ind.genesisHash(CLUSTER).toString("hex")}, pinned ${"ab".repeat(32)}`,
    });
  });

  test("a start other than genesis", () => {
    expect(new AnchorTracker(trust(), undefined).refusal(CLUSTER, false)).toEqual({
      index: 0, reason: "a trust file anchors a verification from genesis only: a snapshot's configuration is not chained from the pinned genesis here",
    });
  });

  test("a pinned checkpoint of another cluster, with or without a trust file; one of this cluster is fine", () => {
    const pinned = { ...cp(3, "n1"), cluster: "x", index: 4 };
    const why = { index: 0, reason: "the pinned checkpoint is of cluster x, this data dir of c" };
    expect(new AnchorTracker(undefined, pinned).refusal(CLUSTER, true)).toEqual(why);
    expect(new AnchorTracker(undefined, pinned).refusal(CLUSTER, false)).toEqual(why);
    expect(new AnchorTracker(trust(), pinned).refusal(CLUSTER, true)).toEqual(why);
    expect(new AnchorTracker(undefined, { ...cp(3, "n1"), index: 4 }).refusal(CLUSTER, false)).toBeNull();
    expect(new AnchorTracker(trust(), { ...cp(3, "n1"), index: 4 }).refusal(CLUSTER, true)).toBeNull();
  });

  test("without a trust file or a pin nothing is refused", () => {
    expect(new AnchorTracker(undefined, undefined).refusal("anything", false)).toBeNull();
    expect(new AnchorTracker(trust(), undefined).refusal(CLUSTER, true)).toBeNull();
  });
});

describe("config: entry 1 is the pinned genesis configuration byte for byte", () => {
  test("the pinned payload passes; one other byte, or other members, fail at index 1", () => {
    const why = { index: 1, reason: "genesis CONFIG differs from the trust file's genesis_config (other members or keys)" };
    expect(new AnchorTracker(trust(), undefined).config(entry(1, EntryKind.Config, genesisPayload()), keys(["n1", K1]))).toBeNull();
    const spaced = Buffer.from(`${genesisPayload().toString("utf8")} `);
    expect(new AnchorTracker(trust(), undefined).config(entry(1, EntryKind.Config, spaced), keys(["n1", K1]))).toEqual(why);
    const other = Buffer.from(ind.canonicalJson({ v: 1, voters: [m("n1", K2)], learners: [] }));
    expect(new AnchorTracker(trust(), undefined).config(entry(1, EntryKind.Config, other), keys(["n1", K2]))).toEqual(why);
  });

  test("only entry 1 is compared, and only with a trust file", () => {
    const other = Buffer.from(ind.canonicalJson({ v: 1, voters: [m("n2", K2)], learners: [] }));
    const t = new AnchorTracker(trust(), undefined);
    expect(t.config(entry(1, EntryKind.Config, genesisPayload()), keys(["n1", K1]))).toBeNull();
    expect(t.config(entry(2, EntryKind.Config, other), keys(["n2", K2]))).toBeNull();
    expect(new AnchorTracker(undefined, undefined).config(entry(1, EntryKind.Config, other), keys(["n2", K2]))).toBeNull();
  });
});

/** A tracker (with the trust file) that has seen the genesis CONFIG at entry 1. */
function fromGenesis(): AnchorTracker {
  const t = new AnchorTracker(trust(), undefined);
  expect(t.config(entry(1, EntryKind.Config, genesisPayload()), keys(["n1", K1]))).toBeNull();
  return t;
}

describe("checkpoint: a configuration's keys are endorsed by a checkpoint of the one before it", () => {
  test("a checkpoint under the genesis keys signs up to its size", () => {
    const t = fromGenesis();
    t.checkpoint(cp(4, "n1"), keys(["n1", K1]));
    expect(t.report(1, 6)).toEqual({
      anchor: "trust file", signed_size: 4, checkpointed_size: 4,
      grades: [{ from: 1, to: 4, grade: "signed" }, { from: 5, to: 6, grade: "chained, not yet signed" }],
    });
  });

  test("one checkpoint by a member with the same key in each endorses several pending configurations in turn", () => {
    const t = fromGenesis();
    t.config(entry(2, EntryKind.Config), keys(["n1", K1], ["n2", K2]));
    t.config(entry(3, EntryKind.Config), keys(["n1", K1], ["n3", K3]));
    t.checkpoint(cp(4, "n1"), keys(["n1", K1], ["n3", K3]));
    expect(t.report(1, 5)).toMatchObject({ signed_size: 4, checkpointed_size: 4 });
    // n3's key came with CONFIG 3, now endorsed: its checkpoint signs
    t.checkpoint(cp(6, "n3"), keys(["n1", K1], ["n3", K3]));
    expect(t.report(1, 7)).toMatchObject({ signed_size: 6 });
  });

  test("the chain of endorsement stops at a configuration the signer is not in", () => {
    const t = fromGenesis();
    t.config(entry(2, EntryKind.Config), keys(["n2", K2])); // n1 leaves
    t.config(entry(3, EntryKind.Config), keys(["n1", K1], ["n2", K2])); // n1 back
    t.checkpoint(cp(4, "n1"), keys(["n1", K1], ["n2", K2]));
    // genesis endorses CONFIG 2 (n1 had K1 in genesis); CONFIG 2 has no n1, so CONFIG 3 stays pending
    expect(t.report(1, 5)).toMatchObject({ signed_size: 0, checkpointed_size: 0 });
    t.checkpoint(cp(5, "n2"), keys(["n1", K1], ["n2", K2])); // n2's K2, given by the endorsed CONFIG 2
    expect(t.report(1, 6)).toMatchObject({ signed_size: 5, checkpointed_size: 5 });
  });

  test("a signer whose key the configuration changed does not endorse the change", () => {
    const t = fromGenesis();
    t.config(entry(2, EntryKind.Config), keys(["n1", K2])); // n1 now claims K2
    t.checkpoint(cp(3, "n1"), keys(["n1", K2]));
    expect(t.report(1, 4)).toMatchObject({ signed_size: 0, checkpointed_size: 0 });
    expect(t.report(1, 4).grades).toEqual([{ from: 1, to: 4, grade: "chained, not yet signed" }]);
  });

  test("checkpointed_size counts checkpoints without a trust file; signed_size stays 0", () => {
    const t = new AnchorTracker(undefined, undefined);
    t.config(entry(1, EntryKind.Config), keys(["n1", K1]));
    t.checkpoint(cp(3, "n1"), keys(["n1", K1]));
    expect(t.report(1, 5)).toEqual({
      anchor: "self-consistent, not anchored", signed_size: 0, checkpointed_size: 3,
      grades: [{ from: 1, to: 5, grade: "self-consistent, not anchored" }],
    });
  });

  test("from a snapshot: its configuration is the endorsed one, so a later CONFIG waits for a checkpoint", () => {
    const t = new AnchorTracker(undefined, undefined);
    t.startFrom(keys(["n1", K1]));
    t.config(entry(8, EntryKind.Config), keys(["n1", K1], ["n2", K2]));
    t.checkpoint(cp(9, "n2"), keys(["n1", K1], ["n2", K2])); // n2 is not in the snapshot's configuration
    expect(t.report(7, 10).checkpointed_size).toBe(0);
    t.checkpoint(cp(10, "n1"), keys(["n1", K1], ["n2", K2])); // n1 with K1 in the snapshot's configuration endorses it
    expect(t.report(7, 11).checkpointed_size).toBe(10);
  });

  test("from a snapshot with no configuration keys, the first CONFIG is taken as the endorsed one", () => {
    const t = new AnchorTracker(undefined, undefined);
    t.startFrom(keys());
    t.config(entry(8, EntryKind.Config), keys(["n2", K2]));
    t.checkpoint(cp(9, "n2"), keys(["n2", K2]));
    expect(t.report(7, 10).checkpointed_size).toBe(9);
  });
});

describe("appended: the pinned checkpoint", () => {
  const head = ind.sha256(Buffer.from("head 3"));
  const root = ind.sha256(Buffer.from("root 3"));
  const pinned = (): PinnedCheckpoint => ({ ...cp(3, "n1"), root: root.toString("hex"), head: head.toString("hex"), index: 4 });
  const pinnedPayload = (): Buffer => {
    const { index: _i, ...body } = pinned();
    return Buffer.from(ind.canonicalJson(body));
  };

  test("root(size) must be the pinned root, checked at entry `size` only", () => {
    const t = new AnchorTracker(trust(), pinned());
    expect(t.appended(entry(2, EntryKind.Noop), zeroRoot, null)).toBeNull();
    expect(t.appended(entry(3, EntryKind.Noop, new Uint8Array(), head), () => zeroRoot(), null)).toEqual({
      index: 3,
      reason: `root(3) is ${"00".repeat(32)}, not the pinned checkpoint's root ${root.toString("hex")}: this history differs from the one pinned (forked or rewritten)`,
    });
  });

  test("head(size) must be the pinned head", () => {
    const t = new AnchorTracker(trust(), pinned());
    expect(t.appended(entry(3, EntryKind.Noop, new Uint8Array(), Buffer.alloc(32, 7)), () => root, null)).toEqual({
      index: 3, reason: `entry_hash(3) is not the pinned checkpoint's head ${head.toString("hex")}`,
    });
  });

  test("the entry at the pin's index must be the pinned checkpoint itself, byte for byte", () => {
    const why = { index: 4, reason: "entry 4 is not the pinned checkpoint" };
    const t = new AnchorTracker(trust(), pinned());
    expect(t.appended(entry(3, EntryKind.Noop, new Uint8Array(), head), () => root, null)).toBeNull();
    expect(new AnchorTracker(trust(), pinned()).appended(entry(4, EntryKind.Noop, pinnedPayload()), zeroRoot, null)).toEqual(why);
    expect(new AnchorTracker(trust(), pinned()).appended(entry(4, EntryKind.Checkpoint, Buffer.from(`${pinnedPayload().toString()} `)), zeroRoot, null)).toEqual(why);
    expect(new AnchorTracker(trust(), pinned()).appended(entry(4, EntryKind.Checkpoint, pinnedPayload()), zeroRoot, null)).toBeNull();
  });

  test("a matching pin vouches for its prefix: pending configurations are endorsed and the prefix is signed", () => {
    const t = fromGenesis();
    // a tracker with the pin, that saw CONFIG 2 with a new member and no checkpoint covering it
    const u = new AnchorTracker(trust(), pinned());
    u.config(entry(1, EntryKind.Config, genesisPayload()), keys(["n1", K1]));
    u.config(entry(2, EntryKind.Config), keys(["n2", K2]));
    expect(u.appended(entry(3, EntryKind.Noop, new Uint8Array(), head), () => root, null)).toBeNull();
    expect(u.report(1, 5)).toMatchObject({ signed_size: 3, checkpointed_size: 3 });
    // CONFIG 2 is endorsed now: n2's checkpoint signs
    u.checkpoint(cp(5, "n2"), keys(["n2", K2]));
    expect(u.report(1, 6)).toMatchObject({ signed_size: 5 });
    // the same log without the pin: n2's checkpoint signs nothing
    t.config(entry(2, EntryKind.Config), keys(["n2", K2]));
    t.checkpoint(cp(5, "n2"), keys(["n2", K2]));
    expect(t.report(1, 6)).toMatchObject({ signed_size: 0 });
  });

  test("a matching pin with no configuration pending keeps the endorsed keys: they endorse the next configuration", () => {
    const u = new AnchorTracker(trust(), pinned());
    u.config(entry(1, EntryKind.Config, genesisPayload()), keys(["n1", K1]));
    expect(u.appended(entry(3, EntryKind.Noop, new Uint8Array(), head), () => root, null)).toBeNull();
    u.config(entry(5, EntryKind.Config), keys(["n1", K1], ["n2", K2]));
    u.checkpoint(cp(6, "n1"), keys(["n1", K1], ["n2", K2]));
    expect(u.report(1, 7)).toMatchObject({ signed_size: 6, checkpointed_size: 6 });
    u.checkpoint(cp(8, "n2"), keys(["n1", K1], ["n2", K2]));
    expect(u.report(1, 9)).toMatchObject({ signed_size: 8 });
  });

  test("finish: a log that ends before the pinned size was cut back; at or past it is fine", () => {
    const t = new AnchorTracker(trust(), pinned());
    expect(t.finish(2)).toEqual({
      index: 3, reason: "the log ends at 2, before the pinned checkpoint's size 3: this history was cut back (or the copy is older than the pin)",
    });
    expect(t.finish(3)).toBeNull();
    expect(t.finish(4)).toBeNull();
    expect(new AnchorTracker(trust(), undefined).finish(0)).toBeNull();
  });
});

describe("appended: time never runs backwards along the log", () => {
  test("record and checkpoint timestamps in order, equal ones included, pass; a NOOP has none", () => {
    const t = new AnchorTracker(undefined, undefined);
    expect(t.appended(record(2, "2026-01-01T00:00:05Z"), zeroRoot, null)).toBeNull();
    expect(t.appended(record(3, "2026-01-01T00:00:05Z"), zeroRoot, null)).toBeNull();
    expect(t.appended(entry(4, EntryKind.Noop), zeroRoot, null)).toBeNull();
    expect(t.appended(entry(5, EntryKind.Checkpoint), zeroRoot, cp(4, "n1", "2026-01-01T00:00:06Z"))).toBeNull();
    expect(t.appended(record(6, "2026-01-01T00:00:06Z"), zeroRoot, null)).toBeNull();
  });

  test("an earlier record names the last ts and its index", () => {
    const t = new AnchorTracker(undefined, undefined);
    t.appended(record(2, "2026-01-01T00:00:05Z"), zeroRoot, null);
    t.appended(entry(3, EntryKind.Noop), zeroRoot, null);
    expect(t.appended(record(4, "2026-01-01T00:00:04Z"), zeroRoot, null)).toEqual({
      index: 4, reason: "ts 2026-01-01T00:00:04Z is earlier than 2026-01-01T00:00:05.000Z at index 2: time in the log runs backwards",
    });
  });

  test("a checkpoint earlier than the record before it", () => {
    const t = new AnchorTracker(undefined, undefined);
    t.appended(record(2, "2026-01-01T00:00:05Z"), zeroRoot, null);
    expect(t.appended(entry(3, EntryKind.Checkpoint), zeroRoot, cp(2, "n1", "2026-01-01T00:00:04.999Z"))).toEqual({
      index: 3, reason: "ts 2026-01-01T00:00:04.999Z is earlier than 2026-01-01T00:00:05.000Z at index 2: time in the log runs backwards",
    });
  });

  test("a ts that is not a date-time: a checkpoint's (any string); a record's month 13 is no record at all (the replay reports it)", () => {
    const t = new AnchorTracker(undefined, undefined);
    expect(t.appended(entry(3, EntryKind.Checkpoint), zeroRoot, cp(2, "n1", "yesterday"))).toEqual({ index: 3, reason: 'ts "yesterday" is not a date-time' });
    expect(t.appended(record(4, "2026-13-01T00:00:00Z"), zeroRoot, null)).toBeNull();
  });

  test("a RECORD payload that is not a record carries no ts (the replay reports it), and the first ts is never too early", () => {
    const t = new AnchorTracker(undefined, undefined);
    expect(t.appended(entry(2, EntryKind.Record, Buffer.from("{}")), zeroRoot, null)).toBeNull();
    expect(t.appended(record(3, "1970-01-01T00:00:00Z"), zeroRoot, null)).toBeNull();
  });
});

describe("report: the grades at their boundaries", () => {
  test("without a trust file: one range start..size, none when nothing was read", () => {
    const t = new AnchorTracker(undefined, undefined);
    expect(t.report(7, 7).grades).toEqual([{ from: 7, to: 7, grade: "self-consistent, not anchored" }]);
    expect(t.report(7, 6).grades).toEqual([]);
    expect(t.report(1, 0)).toEqual({ anchor: "self-consistent, not anchored", signed_size: 0, checkpointed_size: 0, grades: [] });
  });

  test("with a trust file: signed exactly to the checkpoint's size, chained after it, and no empty range", () => {
    const t = fromGenesis();
    expect(t.report(1, 0)).toEqual({ anchor: "trust file", signed_size: 0, checkpointed_size: 0, grades: [] });
    expect(t.report(1, 3).grades).toEqual([{ from: 1, to: 3, grade: "chained, not yet signed" }]);
    t.checkpoint(cp(3, "n1"), keys(["n1", K1]));
    expect(t.report(1, 3)).toEqual({ anchor: "trust file", signed_size: 3, checkpointed_size: 3, grades: [{ from: 1, to: 3, grade: "signed" }] });
    expect(t.report(1, 4).grades).toEqual([{ from: 1, to: 3, grade: "signed" }, { from: 4, to: 4, grade: "chained, not yet signed" }]);
    // a report cut below the checkpoint (a `to` before it) is signed up to the cut only
    expect(t.report(1, 2)).toEqual({ anchor: "trust file", signed_size: 2, checkpointed_size: 2, grades: [{ from: 1, to: 2, grade: "signed" }] });
  });

  test("with a trust file and a start past what is signed: only the chained range from the start", () => {
    const t = fromGenesis();
    t.checkpoint(cp(3, "n1"), keys(["n1", K1]));
    expect(t.report(5, 8).grades).toEqual([{ from: 5, to: 8, grade: "chained, not yet signed" }]);
    expect(t.report(4, 8).grades).toEqual([{ from: 4, to: 8, grade: "chained, not yet signed" }]);
    expect(t.report(3, 8).grades).toEqual([{ from: 3, to: 3, grade: "signed" }, { from: 4, to: 8, grade: "chained, not yet signed" }]);
    // one entry past what is signed, read alone
    expect(t.report(5, 5).grades).toEqual([{ from: 5, to: 5, grade: "chained, not yet signed" }]);
    expect(t.report(4, 4).grades).toEqual([{ from: 4, to: 4, grade: "chained, not yet signed" }]);
  });
});
