// Receipts, in process (src/ledger/receipt.ts): a synthetic chain with a membership change, so the
// signer_chain rule is checked link by link — a link signed by the member it introduces, a chain cut
// short, a foreign trust file, a non-canonical file all fail; the honest receipts verify.
import { chainEntry, Entry, EntryKind, genesisHash } from "../../src/ledger/entry";
import { CompactRange, inclusionProof } from "../../src/ledger/merkle";
import { encodeConfig, MemberInfo } from "../../src/ledger/config";
import { encodeCheckpoint, signCheckpoint } from "../../src/ledger/checkpoint";
import { generateKeyPair, KeyPair } from "../../src/ledger/keys";
import { toHex, utf8 } from "../../src/ledger/bytes";
import { encodeReceipt, Receipt, receiptEntry, RECEIPT_TYPE, SignerLink, verifyReceipt, verifyReceiptBytes } from "../../src/ledger/receipt";
import { makeTrustFile, parseTrustFile, PinnedCheckpoint } from "../../src/ledger/trust";

const CLUSTER = "c-test";
const k1 = generateKeyPair(new Uint8Array(32).fill(1));
const k2 = generateKeyPair(new Uint8Array(32).fill(2));
const m = (id: string, k: KeyPair): MemberInfo => ({ id, address: `${id}:1`, public_key: toHex(k.publicKey) });
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

const trust = makeTrustFile(CLUSTER, genesis);

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
