// The anchor tracker (src/ledger/anchor.ts), in process: the grades a verification reports, keys
// endorsed only through a checkpoint of the configuration before them, the pinned root and size.
import { AnchorTracker } from "../../src/ledger/anchor";
import { Checkpoint } from "../../src/ledger/checkpoint";
import { Entry, EntryKind } from "../../src/ledger/entry";
import { encodeConfig } from "../../src/ledger/config";
import { makeTrustFile } from "../../src/ledger/trust";

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
