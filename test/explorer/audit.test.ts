// The explorer's checks (web/explorer/audit.ts + verify.ts) without a browser: against a real node
// in this process (test/support/in-process-app.ts), each audit run over fetch, and again with one
// answer changed on the way (a byte of a proof, a payload, a signature, a page with a record left
// out, a forged pinned checkpoint). Every honest item verifies; every change turns exactly the item
// it touches failed (or unverifiable, for a signer the trust file does not know), with its reason.
import * as fs from "node:fs";
import * as path from "node:path";
import { startInProcessApp, InProcessApp } from "../support/in-process-app";
import { isAppendAck, postRecord } from "../support/ledger-client";
import { pollUntil } from "../support/server";
import { Anchor, Answer, auditEntries, auditHistory, auditLatestCheckpoint, auditSnapshots, Get } from "../../web/explorer/audit";
import { checkCheckpoint } from "../../web/explorer/verify";
import { makeTrustFile, PinnedCheckpoint, TrustFile } from "../../src/ledger/trust";
import { signCheckpoint } from "../../src/ledger/checkpoint";
import { generateKeyPair } from "../../src/ledger/keys";
import { hexToBytes, toHex } from "../../src/ledger/bytes";

jest.setTimeout(60_000);

const RECORDS = 10;
const SUBJECT = "audit-a";

let app: InProcessApp;
let trust: TrustFile;
let last = 0;

beforeAll(async () => {
  // A checkpoint 20 ms after activity and a snapshot every 6 entries: the audits have both to check.
  app = await startInProcessApp({ node: { checkpointIntervalMs: 20, snapshotEvery: 6 } });
  for (let i = 0; i < RECORDS; i++) {
    const r = await postRecord(app.baseUrl, app.adminToken, { type: "policy.set", subject: i % 2 === 0 ? SUBJECT : "audit-b", data: { name: `n${i}`, value: i } });
    if (!isAppendAck(r.json)) throw new Error(`append ${i} → ${r.status} ${r.text} (data dir ${app.dir})`);
    last = r.json.index;
    // Half way, a snapshot first: the records after it make the next checkpoint cover its anchor.
    if (i === RECORDS / 2) await pollUntil("a snapshot", async () => (app.node.reader.snapshots().length > 0 ? true : undefined));
  }
  await pollUntil(`a checkpoint covering ${last}`, async () => {
    const cp = app.node.reader.latestCheckpoint();
    return cp !== undefined && cp.size >= last ? true : undefined;
  });
  trust = makeTrustFile(app.clusterId, app.node.config());
});

afterAll(async () => {
  await app?.close();
});

/** GET over fetch, as the page does it. */
const get: Get = async (p: string): Promise<Answer> => {
  const res = await fetch(app.baseUrl + p, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    body = undefined;
  }
  return { ok: true, status: res.status, body };
};

/** `get` with the JSON body of the paths `when` matches replaced by `change(body)`. */
const changing = (when: (p: string) => boolean, change: (body: Record<string, unknown>) => unknown): Get => async (p) => {
  const a = await get(p);
  return a.ok && when(p) ? { ...a, body: change(structuredClone(a.body) as Record<string, unknown>) } : a;
};

/** The first hex digit of a hash changed. */
const flip = (hex: string): string => (hex[0] === "0" ? "1" : "0") + hex.slice(1);

async function anchorOf(g: Get, t: TrustFile = trust): Promise<Anchor> {
  return (await auditLatestCheckpoint(g, t)).anchor;
}

const states = (items: readonly { index: number; verdict: { state: string } }[]): Array<[number, string]> => items.map((i) => [i.index, i.verdict.state]);

describe("honest answers", () => {
  test("the latest checkpoint, every entry it covers, the checkpoint entries, the history and the snapshots verify", async () => {
    const latest = await auditLatestCheckpoint(get, trust);
    expect(latest.item.verdict).toEqual(expect.objectContaining({ state: "verified" }));
    const size = latest.anchor.cp!.size;
    const entries = await auditEntries(get, trust, latest.anchor, 1, 100);
    expect(entries.problem).toBeNull();
    expect(entries.entries.length).toBeGreaterThan(RECORDS);
    for (const e of entries.entries) {
      expect([e.index, e.verdict.state]).toEqual([e.index, e.index <= size ? "verified" : "unverifiable"]);
    }
    expect(entries.checkpoints.length).toBeGreaterThan(0);
    expect(new Set(entries.checkpoints.map((c) => c.verdict.state))).toEqual(new Set(["verified"]));

    const h = await auditHistory(get, trust, SUBJECT);
    expect(h.records.length).toBe(RECORDS / 2);
    expect(new Set(h.records.map((r) => r.verdict.state))).toEqual(new Set(["verified"]));
    expect(h.completeness).toEqual(expect.objectContaining({ state: "verified" }));

    const snaps = await auditSnapshots(get, trust, latest.anchor);
    expect(snaps.items.length).toBeGreaterThan(0);
    for (const s of snaps.items) {
      // A snapshot taken at the latest checkpoint's own entry lies after what that checkpoint signs.
      expect([s.index, s.verdict.state]).toEqual([s.index, s.index <= size ? "verified" : "unverifiable"]);
    }
    expect(snaps.items.some((s) => s.verdict.state === "verified")).toBe(true);
  });

  test("without a trust file entries are listed, chained, and unverifiable", async () => {
    const entries = await auditEntries(get, null, { cp: null, why: "no trust file pinned" }, 1, 100);
    expect(new Set(entries.entries.map((e) => e.verdict.state))).toEqual(new Set(["unverifiable"]));
    expect(new Set(entries.entries.map((e) => e.chain.state))).toEqual(new Set(["verified"]));
  });
});

describe("one changed answer fails exactly what it touches", () => {
  test("a hex digit of path[0] of one inclusion proof: that entry's proof fails", async () => {
    const anchor = await anchorOf(get);
    const target = 5;
    const g = changing((p) => p.startsWith(`/v1/proofs/inclusion/${target}?`), (b) => ({ ...b, path: [flip((b.path as string[])[0]), ...(b.path as string[]).slice(1)] }));
    const honest = await auditEntries(get, trust, anchor, 1, 100);
    const bent = await auditEntries(g, trust, anchor, 1, 100);
    const hit = bent.entries.find((e) => e.index === target)!;
    expect(hit.proof.state).toBe("failed");
    expect(hit.proof.text).toMatch(/^the inclusion proof leads to root [0-9a-f]{12}…, not [0-9a-f]{12}… signed in checkpoint \d+$/);
    expect(hit.chain.state).toBe("verified");
    expect(states(bent.entries).filter(([i]) => i !== target)).toEqual(states(honest.entries).filter(([i]) => i !== target));
  });

  test("a proof of another size or a path of the wrong length fails with its reason", async () => {
    const anchor = await anchorOf(get);
    const wrongSize = await auditEntries(changing((p) => p.startsWith("/v1/proofs/inclusion/4?"), (b) => ({ ...b, size: 3 })), trust, anchor, 4, 1);
    expect(wrongSize.entries[0].proof.text).toMatch(/is for size 3, not the checkpoint's/);
    const short = await auditEntries(changing((p) => p.startsWith("/v1/proofs/inclusion/4?"), (b) => ({ ...b, path: (b.path as string[]).slice(1) })), trust, anchor, 4, 1);
    expect(short.entries[0].proof.text).toMatch(/does not fit leaf 3 of a tree of/);
  });

  test("a changed payload fails that entry's hash, and the next entry no longer chains to it", async () => {
    const anchor = await anchorOf(get);
    const g = changing((p) => p.startsWith("/v1/records?"), (b) => {
      const entries = b.entries as { index: number; payload_b64: string }[];
      const e = entries.find((x) => x.index === 4)!;
      const bytes = Buffer.from(e.payload_b64, "base64");
      bytes[bytes.length - 2] ^= 1;
      e.payload_b64 = bytes.toString("base64");
      return b;
    });
    const bent = await auditEntries(g, trust, anchor, 1, 100);
    expect(bent.entries[3].chain.text).toMatch(/^hash [0-9a-f]{12}… is not the entry hash of its contents/);
    expect(bent.entries[4].chain.text).toMatch(/does not chain to entry 4/);
    expect(bent.entries[2].verdict.state).toBe("verified");
  });

  test("a page that leaves out an entry fails where the gap is", async () => {
    const anchor = await anchorOf(get);
    const g = changing((p) => p.startsWith("/v1/records?"), (b) => ({ ...b, entries: (b.entries as { index: number }[]).filter((e) => e.index !== 6) }));
    const bent = await auditEntries(g, trust, anchor, 1, 100);
    expect(bent.entries[5].verdict.text).toMatch(/holds entry 7 where entry 6 belongs/);
  });

  test("a changed checkpoint signature fails the checkpoint, and no entry is verified without it", async () => {
    const g = changing((p) => p === "/v1/checkpoints/latest", (b) => ({ ...b, sig: flip(b.sig as string) }));
    const latest = await auditLatestCheckpoint(g, trust);
    expect(latest.item.verdict.state).toBe("failed");
    expect(latest.item.verdict.text).toMatch(/is not n1's Ed25519 signature/);
    const entries = await auditEntries(g, trust, latest.anchor, 2, 5);
    for (const e of entries.entries) expect(e.proof.text).toMatch(/^no verified checkpoint: the latest checkpoint is failed/);
  });

  test("a trust file with another key for the signer fails the signature; one without the signer says unknown signer", async () => {
    const other = toHex(generateKeyPair(new Uint8Array(32).fill(7)).publicKey);
    const cfg = app.node.config();
    const otherKey = makeTrustFile(app.clusterId, { ...cfg, voters: cfg.voters.map((m) => ({ ...m, public_key: other })) });
    expect((await auditLatestCheckpoint(get, otherKey)).item.verdict.state).toBe("failed");
    const renamed = makeTrustFile(app.clusterId, { ...cfg, voters: cfg.voters.map((m) => ({ ...m, id: "n9" })) });
    const unknown = await auditLatestCheckpoint(get, renamed);
    expect(unknown.item.verdict.state).toBe("unverifiable");
    expect(unknown.item.verdict.text).toMatch(/^unknown signer "n1"/);
    // Entry 1 is not that trust file's genesis configuration either.
    const first = await auditEntries(get, renamed, unknown.anchor, 1, 1);
    expect(first.entries[0].chain.text).toBe("entry 1 is not the pinned genesis configuration");
  });

  test("a trust file of another cluster refuses the checkpoint and the genesis", async () => {
    const foreign = makeTrustFile("another-cluster", app.node.config());
    const latest = await auditLatestCheckpoint(get, foreign);
    expect(latest.item.verdict).toEqual({ state: "failed", text: expect.stringMatching(/is of cluster .*, the trust file pins another-cluster/) });
    const first = await auditEntries(get, foreign, latest.anchor, 1, 1);
    expect(first.entries[0].chain.text).toBe("prev_hash is not the genesis hash of the pinned cluster another-cluster");
  });

  test("a pinned checkpoint the log forked from fails, even signed with the real key", async () => {
    const secret = hexToBytes(fs.readFileSync(path.join(app.dir, "node.key"), "utf8").trim());
    const honest = (await anchorOf(get)).cp!;
    const forge = (size: number): PinnedCheckpoint => {
      const { sig: _sig, index: _index, ...body } = honest;
      return { ...signCheckpoint({ ...body, size, root: flip(honest.root) }, secret), index: size + 1 };
    };
    expect(checkCheckpoint(forge(honest.size), trust).verdict.state).toBe("verified"); // a good signature over a lie
    const sameSize = await auditLatestCheckpoint(get, { ...trust, checkpoint: forge(honest.size) });
    expect(sameSize.item.verdict.text).toMatch(/a different root at the same size \d+: a fork/);
    const smaller = await auditLatestCheckpoint(get, { ...trust, checkpoint: forge(3) });
    expect(smaller.item.verdict.text).toMatch(/does not show root\(3\) is a prefix of root\(\d+\)/);
    expect(smaller.anchor.cp).toBeNull();
  });

  test("a history page that leaves out a record fails, and so does its completeness", async () => {
    const g = changing((p) => p.startsWith(`/v1/subjects/${SUBJECT}/history`), (b) => ({ ...b, records: (b.records as unknown[]).filter((_, i) => i !== 1) }));
    const h = await auditHistory(g, trust, SUBJECT);
    expect(h.records[1].verdict.state).toBe("failed");
    expect(h.records[1].verdict.text).toMatch(/subject_head .* is not SHA-256\(previous head \|\| entry hash\)|version 3 where 2 follows/);
    expect(h.completeness.state).toBe("failed");
  });

  test("a changed consistency proof fails the older checkpoint entry it was for", async () => {
    const anchor = await anchorOf(get);
    const g = changing((p) => p.startsWith("/v1/proofs/consistency?"), (b) => ({ ...b, path: (b.path as string[]).map(flip) }));
    const bent = await auditEntries(g, trust, anchor, 1, 100);
    const older = bent.checkpoints.filter((c) => c.size !== null && c.size < anchor.cp!.size);
    expect(older.length).toBeGreaterThan(0);
    for (const c of older) expect(c.verdict.text).toMatch(/a fork or a rewrite/);
  });

  test("a snapshot whose anchor hash is not its entry fails", async () => {
    const anchor = await anchorOf(get);
    const g = changing((p) => p === "/v1/snapshots", (b) => (b as unknown as { hash: string }[]).map((s) => ({ ...s, hash: flip(s.hash) })));
    const snaps = await auditSnapshots(g, trust, anchor);
    expect(snaps.items.length).toBeGreaterThan(0);
    for (const s of snaps.items) expect(s.verdict.text).toMatch(/^the anchor \(hash [0-9a-f]{12}…, term \d+\) is not entry \d+/);
  });
});
