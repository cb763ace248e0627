// Receipts, in process (src/ledger/receipt.ts): a synthetic chain with a membership change, so the
// signer_chain rule is checked link by link — a link signed by the member it introduces, a chain cut
// short, a foreign trust file, a non-canonical file all fail; the honest receipts verify.
import { chainEntry, Entry, EntryKind, genesisHash } from "../../src/ledger/entry";
import { CompactRange, inclusionProof } from "../../src/ledger/merkle";
import { encodeConfig, MemberInfo } from "../../src/ledger/config";
import { encodeCheckpoint, signCheckpoint } from "../../src/ledger/checkpoint";
import { KeyPair } from "../../src/ledger/keys";
import { toHex, utf8 } from "../../src/ledger/bytes";
import { encodeReceipt, Receipt, receiptEntry, RECEIPT_TYPE, SignerLink, verifyReceipt, verifyReceiptBytes } from "../../src/ledger/receipt";
import { makeTrustFile, parseTrustFile, PinnedCheckpoint, TrustFile } from "../../src/ledger/trust";
import * as ind from "../support/independent";

const CLUSTER = "c-test";
// Keys from node:crypto and hex by Buffer: module scope must not reach src (Stryker static mutants).
const k1 = ind.keyPair(new Uint8Array(32).fill(1));
const k2 = ind.keyPair(new Uint8Array(32).fill(2));
const m = (id: string, k: KeyPair): MemberInfo => ({ id, address: `${id}:1`, public_key: Buffer.from(k.publicKey).toString("hex") });
const genesis = { v: 1 as const, voters: [m("n1", k1)], learners: [] };
const withN2 = { v: 1 as const, voters: [m("n1", k1)], learners: [m("n2", k2)] };

/** A log: genesis, records, CONFIG adding n2, checkpoint by `linkSigner`, records, checkpoint by n2. */
function build(linkSigner: "n1" | "n2") {
  const entries: Entry[] = [];
  const nodes = new Map<string, Uint8Array>();
  const range = new CompactRange();
  const cps = new Map<number, PinnedCheckpoint>();
  let prev = genesisHash(CLUSTER);
  const add = (kind: EntryKind, payload: Uint8Array): Entry => {
    const e = chainEntry(entries.length + 1, 1, kind, prev, payload);
    entries.push(e);
    for (const n of range.append(e.hash)) nodes.set(`${n.level}/${n.index}`, n.hash);
    prev = e.hash;
    return e;
  };
  const checkpoint = (signer: "n1" | "n2"): void => {
    const body = { v: 1 as const, cluster: CLUSTER, size: entries.length, root: toHex(range.root()), head: toHex(prev), term: 1, signer, ts: new Date(entries.length * 1000).toISOString() };
    const cp = signCheckpoint(body, signer === "n1" ? k1.secretKey : k2.secretKey);
    add(EntryKind.Checkpoint, encodeCheckpoint(cp));
    cps.set(entries.length, { ...cp, index: entries.length });
  };
  add(EntryKind.Config, encodeConfig(genesis));
  for (let i = 0; i < 5; i++) add(EntryKind.Record, utf8(`{"i":${i}}`));
  checkpoint("n1");
  const cfg = add(EntryKind.Config, encodeConfig(withN2));
  checkpoint(linkSigner);
  for (let i = 0; i < 5; i++) add(EntryKind.Record, utf8(`{"j":${i}}`));
  checkpoint("n2");
  const read = (level: number, index: number): Uint8Array => nodes.get(`${level}/${index}`) as Uint8Array;
  const prevOf = (i: number): Uint8Array => (i === 1 ? genesisHash(CLUSTER) : entries[i - 2].hash);
  const incl = (i: number, cp: PinnedCheckpoint) => ({ size: cp.size, path: inclusionProof(read, i - 1, cp.size).map(toHex) });
  const receipt = (i: number, cpIndex: number, chain: SignerLink[], key: KeyPair): Receipt => {
    const cp = cps.get(cpIndex) as PinnedCheckpoint;
    return { v: 1, type: RECEIPT_TYPE, cluster: CLUSTER, entry: receiptEntry(entries[i - 1], prevOf(i)), inclusion: incl(i, cp), checkpoint: cp, signer_key: toHex(key.publicKey), signer_chain: chain };
  };
  const linkCp = cps.get(cfg.index + 1) as PinnedCheckpoint;
  const link: SignerLink = { config: receiptEntry(cfg, prevOf(cfg.index)), inclusion: incl(cfg.index, linkCp), checkpoint: linkCp };
  return { entries, cps, receipt, link, lastCp: entries.length };
}

let trust: TrustFile;
beforeEach(() => { trust = makeTrustFile(CLUSTER, genesis); });

test("a receipt signed by a genesis member verifies with an empty chain; its file bytes too, and no other", () => {
  const b = build("n1");
  const r = b.receipt(3, 7, [], k1);
  expect(verifyReceipt(r, trust)).toEqual({ ok: true, index: 3, size: 6, signer: "n1", chain: 0 });
  const text = encodeReceipt(r);
  expect(verifyReceiptBytes(utf8(text), trust).ok).toBe(true);
  expect(verifyReceiptBytes(utf8(`${text}\n`), trust).ok).toBe(true);
  expect(verifyReceiptBytes(utf8(JSON.stringify(r, null, 1)), trust)).toEqual({ ok: false, reason: expect.stringMatching(/canonical form/) });
});

test("a receipt signed by a member added later verifies through signer_chain, and only through it", () => {
  const b = build("n1");
  const r = b.receipt(12, b.lastCp, [b.link], k2);
  expect(verifyReceipt(r, trust)).toEqual({ ok: true, index: 12, size: b.lastCp - 1, signer: "n2", chain: 1 });
  expect(verifyReceipt({ ...r, signer_chain: [] }, trust)).toEqual({ ok: false, reason: expect.stringMatching(/signer n2 is not a member of the pinned genesis/) });
  expect(verifyReceipt({ ...r, signer_key: toHex(k1.publicKey) }, trust).ok).toBe(false);
  // Another genesis (n1 with another key) is another trust: nothing of this log verifies under it.
  const other = makeTrustFile(CLUSTER, { v: 1, voters: [m("n1", k2)], learners: [] });
  expect(verifyReceipt(r, other).ok).toBe(false);
  expect(verifyReceipt(b.receipt(3, 7, [], k1), makeTrustFile("c-other", genesis)).ok).toBe(false);
});

test("a link signed only by the member it introduces does not carry its key", () => {
  const b = build("n2");
  const r = b.receipt(12, b.lastCp, [b.link], k2);
  expect(verifyReceipt(r, trust)).toEqual({ ok: false, reason: expect.stringMatching(/signer_chain\[0\]\.checkpoint: signer n2 is not a member of the pinned genesis/) });
});

test("a trust file parses strictly: a wrong genesis hash, extra keys, a bad pinned checkpoint are refused with a reason", () => {
  const good = JSON.stringify(trust);
  expect(parseTrustFile(good)).toEqual(trust);
  expect(parseTrustFile(JSON.stringify({ ...trust, genesis_hash: "00".repeat(32) }))).toMatch(/genesis_hash/);
  expect(parseTrustFile(JSON.stringify({ ...trust, extra: 1 }))).toMatch(/unexpected key/);
  expect(parseTrustFile('{"v":1,"v":1}')).toMatch(/not JSON/);
  const b = build("n1");
  const cp = b.cps.get(7) as PinnedCheckpoint;
  expect(parseTrustFile(JSON.stringify({ ...trust, checkpoint: cp }))).toEqual({ ...trust, checkpoint: cp });
  expect(parseTrustFile(JSON.stringify({ ...trust, checkpoint: { ...cp, index: 99 } }))).toMatch(/index/);
  expect(parseTrustFile(JSON.stringify({ ...trust, checkpoint: { ...cp, cluster: "x" } }))).toMatch(/well-formed|cluster/);
});

// ---------------------------------------------------------------- every refusal, with its reason

describe("verifyReceipt says exactly why a receipt does not verify", () => {
  type Obj = Record<string, unknown>;
  let b: ReturnType<typeof build>;
  let good: Obj;
  let later: Obj;
  let entry: Obj;
  let link: Obj;
  let cp7: PinnedCheckpoint;
  beforeEach(() => {
    b = build("n1");
    good = b.receipt(3, 7, [], k1) as unknown as Obj;
    later = b.receipt(12, b.lastCp, [b.link], k2) as unknown as Obj;
    entry = good.entry as Obj;
    link = b.link as unknown as Obj;
    cp7 = b.cps.get(7) as PinnedCheckpoint;
  });
  const hex = (x: Uint8Array): string => Buffer.from(x).toString("hex");
  const G = "the pinned genesis configuration";
  /** An entry with the given contents and its (independently computed) true hash. */
  const rehashed = (e: Obj, patch: Obj): Obj => {
    const x = { ...e, ...patch };
    const kind = ["noop", "record", "config", "checkpoint"].indexOf(x.kind as string);
    const hash = ind.entryHash(x.index as number, x.term as number, kind, Buffer.from(x.prev_hash as string, "hex"), Buffer.from(x.payload_b64 as string, "base64"));
    return { ...x, hash: hash.toString("hex") };
  };
  /** o without key k (JSON has no undefined: a key set to undefined would still be present). */
  const without = (o: object, k: string): Obj => Object.fromEntries(Object.entries(o).filter(([key]) => key !== k));
  const withEntry = (patch: Obj): Obj => ({ ...good, entry: { ...entry, ...patch } });
  const withLink = (patch: Obj): Obj => ({ ...later, signer_chain: [{ ...link, ...patch }] });
  const reason = (r: unknown): string | undefined => {
    const res = verifyReceipt(r, trust);
    return res.ok ? undefined : res.reason;
  };

  test("the honest receipts verify, including one for the last entry a checkpoint covers", () => {
    expect(verifyReceipt(good, trust).ok).toBe(true);
    expect(verifyReceipt(later, trust).ok).toBe(true);
    expect(verifyReceipt(b.receipt(6, 7, [], k1), trust)).toEqual({ ok: true, index: 6, size: 6, signer: "n1", chain: 0 });
    expect(verifyReceipt(b.receipt(1, 7, [], k1), trust)).toEqual({ ok: true, index: 1, size: 6, signer: "n1", chain: 0 });
  });

  /** An expected reason: a string, or a thunk when it names fixture values (built per test). */
  type Why = string | (() => string);
  const why$ = (w: Why): string => (typeof w === "function" ? w() : w);

  test.each<[string, () => unknown, Why]>([
    ["not an object", () => [], "the receipt is not a JSON object"],
    ["null", () => null, "the receipt is not a JSON object"],
    ["a missing key", () => without(good, "signer_chain"), "the receipt has no signer_chain"],
    ["an extra key", () => ({ ...good, note: 1 }), 'the receipt has an unexpected key "note"'],
    ["v 2", () => ({ ...good, v: 2 }), "the receipt is not a resonetics/receipt/v1 document"],
    ["another type", () => ({ ...good, type: "resonetics/receipt/v2" }), "the receipt is not a resonetics/receipt/v1 document"],
    ["another cluster", () => ({ ...good, cluster: "c-other" }), "the receipt is of cluster c-other, the trust file pins c-test"],
    ["an entry that is not an object", () => ({ ...good, entry: "e" }), "entry is not an object"],
    ["an entry without its term", () => ({ ...good, entry: without(entry, "term") }), "entry has no term"],
    ["an entry with an extra key", () => withEntry({ record: {} }), 'entry has an unexpected key "record"'],
    ["index 0", () => withEntry({ index: 0 }), "entry.index is not a whole number >= 1"],
    ["index fractional", () => withEntry({ index: 2.5 }), "entry.index is not a whole number >= 1"],
    ["index as a string", () => withEntry({ index: "3" }), "entry.index is not a whole number >= 1"],
    ["term 0", () => withEntry({ term: 0 }), "entry.term is not a whole number >= 1"],
    ["term past 2^53 - 1", () => withEntry({ term: 2 ** 53 }), "entry.term is not a whole number >= 1"],
    ["an unknown kind", () => withEntry({ kind: "blob" }), "entry.kind is not one of noop, record, config, checkpoint"],
    ["a kind code instead of its name", () => withEntry({ kind: 1 }), "entry.kind is not one of noop, record, config, checkpoint"],
    ["payload_b64 not base64", () => withEntry({ payload_b64: "e30*" }), "entry.payload_b64 is not base64"],
    ["payload_b64 unpadded", () => withEntry({ payload_b64: "e30" }), "entry.payload_b64 is not base64"],
    ["payload_b64 with a character before it", () => withEntry({ payload_b64: ` ${entry.payload_b64 as string}` }), "entry.payload_b64 is not base64"],
    ["payload_b64 not a string", () => withEntry({ payload_b64: 7 }), "entry.payload_b64 is not base64"],
    ["payload_b64 with spare bits set", () => withEntry({ payload_b64: "QR==" }), "entry.payload_b64 is not in canonical base64"],
    ["prev_hash in uppercase", () => withEntry({ prev_hash: (entry.prev_hash as string).toUpperCase() }), "entry.prev_hash is not 64 lowercase hex digits"],
    ["hash 62 digits", () => withEntry({ hash: (entry.hash as string).slice(2) }), "entry.hash is not 64 lowercase hex digits"],
    ["a hash that is not the entry's", () => withEntry({ term: 2 }), () => `entry 3: hash ${entry.hash as string} is not the entry hash of its contents (${ind.entryHash(3, 2, 1, Buffer.from(entry.prev_hash as string, "hex"), Buffer.from(entry.payload_b64 as string, "base64")).toString("hex")})`],
    ["entry 1 that chains to another genesis", () => ({ ...b.receipt(1, 7, [], k1), entry: rehashed((b.receipt(1, 7, [], k1) as unknown as Obj).entry as Obj, { prev_hash: ind.genesisHash("c-other").toString("hex") }) }), "entry 1 does not chain to the genesis hash"],
    ["a checkpoint that is not an object", () => ({ ...good, checkpoint: [] }), "checkpoint is not an object"],
    ["a checkpoint without its index", () => ({ ...good, checkpoint: without(cp7, "index") }), "checkpoint has no index"],
    ["a checkpoint that is not well formed", () => ({ ...good, checkpoint: { ...cp7, sig: "00" } }), "checkpoint is not a well-formed signed checkpoint"],
    ["a checkpoint of another cluster", () => ({ ...good, checkpoint: { ...cp7, cluster: "c-other" } }), "checkpoint is of cluster c-other, the trust file pins c-test"],
    ["a checkpoint index that is not size + 1", () => ({ ...good, checkpoint: { ...cp7, index: 6 } }), "checkpoint.index must be its size + 1"],
    ["an inclusion that is not an object", () => ({ ...good, inclusion: null }), "inclusion is not an object"],
    ["an inclusion with an extra key", () => ({ ...good, inclusion: { ...(good.inclusion as Obj), leaf: 2 } }), 'inclusion has an unexpected key "leaf"'],
    ["an inclusion of another size", () => ({ ...good, inclusion: { ...(good.inclusion as Obj), size: 5 } }), "inclusion.size 5 is not the checkpoint's size 6"],
    ["an entry past the checkpoint", () => ({ ...b.receipt(8, 9, [], k1), checkpoint: cp7, inclusion: { size: 6, path: [] } }), "entry 8 is not covered by a checkpoint of size 6"],
    ["a path that is not a list", () => ({ ...good, inclusion: { size: 6, path: "p" } }), "inclusion.path is not a list of at most 64 hashes"],
    ["a path of 65 hashes", () => ({ ...good, inclusion: { size: 6, path: Array(65).fill("00".repeat(32)) } }), "inclusion.path is not a list of at most 64 hashes"],
    ["a path of 64 hashes (well formed, wrong)", () => ({ ...good, inclusion: { size: 6, path: Array(64).fill("00".repeat(32)) } }), () => `inclusion: entry 3 is not in root(6) ${cp7.root}`],
    ["a path hash that is not hex", () => ({ ...good, inclusion: { size: 6, path: [(good.inclusion as { path: string[] }).path[0], "zz"] } }), "inclusion.path[1] is not 64 lowercase hex digits"],
    ["a path one hash short", () => ({ ...good, inclusion: { size: 6, path: (good.inclusion as { path: string[] }).path.slice(1) } }), () => `inclusion: entry 3 is not in root(6) ${cp7.root}`],
    ["signer_chain not a list", () => ({ ...good, signer_chain: {} }), "signer_chain is not a list of at most 10000 links"],
    ["signer_chain of 10001 links", () => ({ ...good, signer_chain: Array(10_001).fill(null) }), "signer_chain is not a list of at most 10000 links"],
    ["signer_chain of 10000 links, the first not one", () => ({ ...good, signer_chain: Array(10_000).fill(null) }), "signer_chain[0] is not an object"],
    ["signer_key not hex", () => ({ ...good, signer_key: "K1" }), "signer_key is not 64 lowercase hex digits"],
    ["signer_key of another key", () => ({ ...good, signer_key: hex(k2.publicKey) }), `signer_key is not n1's key in ${G}`],
    ["a checkpoint signature that does not verify", () => ({ ...good, checkpoint: { ...cp7, ts: "2030-01-01T00:00:00.000Z" } }), `checkpoint: the signature does not verify under n1's key in ${G}`],
  ])("%s", (_name, make, why) => {
    expect(reason(make())).toBe(why$(why));
  });

  test.each<[string, () => unknown, Why]>([
    ["a link that is not an object", () => ({ ...later, signer_chain: [7] }), "signer_chain[0] is not an object"],
    ["a link with an extra key", () => withLink({ size: 1 }), 'signer_chain[0] has an unexpected key "size"'],
    ["a link without its checkpoint", () => ({ ...later, signer_chain: [without(link, "checkpoint")] }), "signer_chain[0] has no checkpoint"],
    ["a link whose entry hash is wrong", () => withLink({ config: { ...(link.config as Obj), term: 2 } }), () => `signer_chain[0].config 8: hash ${(link.config as Obj).hash as string} is not the entry hash of its contents (${rehashed(link.config as Obj, { term: 2 }).hash as string})`],
    ["a link to a record entry", () => withLink({ config: rehashed(link.config as Obj, { kind: "record" }) }), "signer_chain[0].config is a record entry, not a config"],
    ["a link to entry 1 (the genesis configuration)", () => withLink({ config: (b.receipt(1, 7, [], k1) as unknown as Obj).entry }), "signer_chain[0].config is at 1, not after the previous configuration (1)"],
    ["the same link twice", () => ({ ...later, signer_chain: [link, link] }), "signer_chain[1].config is at 8, not after the previous configuration (8)"],
    ["a link whose payload is not a configuration", () => withLink({ config: rehashed(link.config as Obj, { payload_b64: Buffer.from('{"v":1}').toString("base64") }) }), "signer_chain[0].config's payload is not a configuration"],
    ["a link checkpoint that is not well formed", () => withLink({ checkpoint: { ...(link.checkpoint as Obj), size: -1 } }), "signer_chain[0].checkpoint is not a well-formed signed checkpoint"],
    ["a link checkpoint whose signature does not verify", () => withLink({ checkpoint: { ...(link.checkpoint as Obj), ts: "2030-01-01T00:00:00.000Z" } }), `signer_chain[0].checkpoint: the signature does not verify under n1's key in ${G}`],
    ["a link inclusion of another size", () => withLink({ inclusion: { ...(link.inclusion as Obj), size: 7 } }), () => `signer_chain[0].inclusion.size 7 is not the checkpoint's size ${(link.checkpoint as Obj).size as number}`],
    ["a link inclusion that does not prove", () => withLink({ inclusion: { ...(link.inclusion as Obj), path: [...((link.inclusion as Obj).path as string[])].reverse() } }), () => `signer_chain[0].inclusion: entry 8 is not in root(8) ${(link.checkpoint as Obj).root as string}`],
    ["a checkpoint by the new member under another key", () => ({ ...later, signer_key: hex(k1.publicKey) }), "signer_key is not n2's key in the configuration at 8"],
  ])("signer_chain: %s", (_name, make, why) => {
    expect(reason(make())).toBe(why$(why));
  });

  test("a trust file whose genesis hash is not its cluster's verifies nothing", () => {
    expect(verifyReceipt(good, { ...trust, genesis_hash: "00".repeat(32) })).toEqual({ ok: false, reason: "the trust file's genesis_hash is not its cluster's" });
  });

  test("receipt file bytes: one trailing newline, no more; anything not I-JSON says so", () => {
    const text = encodeReceipt(good as unknown as Receipt);
    expect(verifyReceiptBytes(utf8(`${text}\n\n`), trust)).toEqual({ ok: false, reason: "the receipt is not in canonical form (RFC 8785): it was changed after it was served" });
    expect(verifyReceiptBytes(utf8(` ${text}`), trust)).toEqual({ ok: false, reason: "the receipt is not in canonical form (RFC 8785): it was changed after it was served" });
    expect(verifyReceiptBytes(utf8(""), trust)).toEqual({ ok: false, reason: expect.stringMatching(/^the receipt is not I-JSON: .+/) });
    expect(verifyReceiptBytes(utf8("\n"), trust)).toEqual({ ok: false, reason: expect.stringMatching(/^the receipt is not I-JSON: .+/) });
    expect(verifyReceiptBytes(utf8('{"v":1,"v":1}'), trust)).toEqual({ ok: false, reason: expect.stringMatching(/^the receipt is not I-JSON: .+/) });
    expect(verifyReceiptBytes(utf8(text.replace('"v":1', '"v":1.0')), trust).ok).toBe(false);
    expect(verifyReceiptBytes(utf8(text), trust)).toEqual({ ok: true, index: 3, size: 6, signer: "n1", chain: 0 });
  });

  test("receiptEntry carries the exact payload bytes, both hashes and the kind's name", () => {
    const e = b.entries[7];
    expect(receiptEntry(e, b.entries[6].hash)).toEqual({
      index: 8, term: 1, kind: "config", payload_b64: Buffer.from(e.payload).toString("base64"), prev_hash: hex(b.entries[6].hash), hash: hex(e.hash),
    });
    expect(ind.entryHash(8, 1, 2, b.entries[6].hash, e.payload).toString("hex")).toBe(hex(e.hash));
  });
});

test("a receipt of a NOOP entry (kind 0, a leader's first entry) verifies like any other", () => {
  const range = new CompactRange();
  const nodes = new Map<string, Uint8Array>();
  const cfg = chainEntry(1, 1, EntryKind.Config, genesisHash(CLUSTER), encodeConfig(genesis));
  const noop = chainEntry(2, 2, EntryKind.Noop, cfg.hash, new Uint8Array(0));
  for (const e of [cfg, noop]) for (const n of range.append(e.hash)) nodes.set(`${n.level}/${n.index}`, n.hash);
  const body = { v: 1 as const, cluster: CLUSTER, size: 2, root: toHex(range.root()), head: toHex(noop.hash), term: 2, signer: "n1", ts: "2026-01-01T00:00:00.000Z" };
  const cp: PinnedCheckpoint = { ...signCheckpoint(body, k1.secretKey), index: 3 };
  const read = (level: number, index: number): Uint8Array => nodes.get(`${level}/${index}`) as Uint8Array;
  const r: Receipt = {
    v: 1, type: RECEIPT_TYPE, cluster: CLUSTER, entry: receiptEntry(noop, cfg.hash), inclusion: { size: 2, path: inclusionProof(read, 1, 2).map(toHex) },
    checkpoint: cp, signer_key: toHex(k1.publicKey), signer_chain: [],
  };
  expect(r.entry.kind).toBe("noop");
  expect(verifyReceipt(r, trust)).toEqual({ ok: true, index: 2, size: 2, signer: "n1", chain: 0 });
});
