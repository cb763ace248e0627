// src/api/views.ts: the entry shape of DESIGN.md "REST API" — index, term, kind name, hash,
// prev_hash, the exact payload bytes in base64, and the parsed form for its kind only when the
// payload parses as that kind (a record object, a checkpoint, a config); anything else is shown
// without a parsed form, never a thrown error.
import { chainEntry, EntryKind, genesisHash } from "../../src/ledger/entry";
import { entryView } from "../../src/api/views";
import { canonicalJson } from "../support/independent";

const prev = genesisHash("views");
const entry = (kind: EntryKind, payload: string | Uint8Array) => chainEntry(3, 2, kind, prev, typeof payload === "string" ? Buffer.from(payload, "utf8") : payload);
const cp = { v: 1, cluster: "views", size: 2, root: "11".repeat(32), head: "22".repeat(32), term: 2, signer: "n1", ts: "2026-01-01T00:00:00Z", sig: "33".repeat(64) };
const cfg = { v: 1, voters: [{ id: "n1", address: "h:1", public_key: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c" }], learners: [] };

describe("entryView", () => {
  test("the base fields: index, term, kind name, hex hashes, and the exact payload bytes", () => {
    const payload = Uint8Array.from([0, 255, 1, 128]);
    const e = entry(EntryKind.Noop, payload);
    expect(entryView(e, prev)).toEqual({
      index: 3, term: 2, kind: "noop", hash: Buffer.from(e.hash).toString("hex"), prev_hash: Buffer.from(prev).toString("hex"), payload_b64: Buffer.from(payload).toString("base64"),
    });
  });

  test("a payload that is a view into a larger buffer shows only its own bytes", () => {
    const big = Buffer.from('xx{"type":"t","subject":"s","data":{}}yy');
    const e = { ...entry(EntryKind.Record, "{}"), payload: big.subarray(2, big.length - 2) };
    const v = entryView(e, prev);
    expect(Buffer.from(v.payload_b64, "base64").toString()).toBe('{"type":"t","subject":"s","data":{}}');
    expect(v.record).toEqual({ type: "t", subject: "s", data: {} });
  });

  test("a record shows its parsed object; one whose payload is not a JSON object shows none", () => {
    const text = '{"v":1,"type":"policy.set","subject":"s","data":{"name":"n","value":1}}';
    expect(entryView(entry(EntryKind.Record, text), prev)).toMatchObject({ kind: "record", record: JSON.parse(text) as object });
    for (const p of ["not json", "[1,2]", "null", "7", '"s"', ""]) {
      const v = entryView(entry(EntryKind.Record, p), prev);
      expect({ p, has: "record" in v, kind: v.kind }).toEqual({ p, has: false, kind: "record" });
    }
  });

  test("a checkpoint shows its decoded checkpoint, a config its decoded config; undecodable ones show neither", () => {
    expect(entryView(entry(EntryKind.Checkpoint, canonicalJson(cp)), prev)).toMatchObject({ kind: "checkpoint", checkpoint: cp });
    expect(entryView(entry(EntryKind.Config, canonicalJson(cfg)), prev)).toMatchObject({ kind: "config", config: cfg });
    const badCp = entryView(entry(EntryKind.Checkpoint, canonicalJson({ ...cp, sig: "zz" })), prev);
    expect(["checkpoint" in badCp, badCp.kind]).toEqual([false, "checkpoint"]);
    const badCfg = entryView(entry(EntryKind.Config, "{}"), prev);
    expect(["config" in badCfg, badCfg.kind]).toEqual([false, "config"]);
  });

  test("only the entry's own kind is parsed: a record-shaped NOOP or CONFIG payload shows no record", () => {
    const text = canonicalJson(cp);
    expect("checkpoint" in entryView(entry(EntryKind.Record, text), prev)).toBe(false);
    expect("record" in entryView(entry(EntryKind.Checkpoint, text), prev)).toBe(false);
    const noop = entryView(entry(EntryKind.Noop, '{"a":1}'), prev);
    expect(Object.keys(noop).sort()).toEqual(["hash", "index", "kind", "payload_b64", "prev_hash", "term"]);
  });
});
