import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import pino from "pino";
import { initNodeDir, DB_FILE } from "../../src/node/data-dir";
import { RaftStorage, VerificationFailure } from "../../src/node/raft-storage";
import { Store } from "../../src/storage/store";
import { generateKeyPair, KeyPair } from "../../src/ledger/keys";
import { chainEntry, Entry, EntryKind } from "../../src/ledger/entry";
import { CompactRange } from "../../src/ledger/merkle";
import { encodeCheckpoint, signCheckpoint } from "../../src/ledger/checkpoint";
import { encodeSnapshot, makeSnapshot } from "../../src/ledger/snapshot";
import { encodeConfig, ClusterConfig } from "../../src/ledger/config";
import { toHex } from "../../src/ledger/bytes";
import type { Ready } from "../../src/raft";

// A follower stores nothing a leader sends until it checks out: checkpoints must carry this log's
// root, head and a member's signature; snapshots must verify. A lying leader gets nothing written.
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
const logger = pino({ level: "silent" });
const CLUSTER = "c-test";

function setup(): { store: Store; storage: RaftStorage; key: KeyPair; config: ClusterConfig } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-rs-"));
  dirs.push(dir);
  const key = generateKeyPair();
  const config: ClusterConfig = { v: 1, voters: [{ id: "n1", address: "127.0.0.1:1", public_key: toHex(key.publicKey) }], learners: [] };
  initNodeDir({ dir, clusterId: CLUSTER, nodeId: "n1", key, adminToken: "t", config, mode: "cluster" });
  const store = new Store(path.join(dir, DB_FILE));
  return { store, storage: new RaftStorage(store, CLUSTER, logger), key, config };
}

const ready = (entries: Entry[], snapshot: Ready["snapshot"] = null): Ready => ({
  softState: null, hardState: null, snapshot, entries, committedEntries: [], messages: [], readStates: [], reports: [], halted: null,
});

/** Entries 2..3 after genesis, then a checkpoint at 4 over size 3 signed by signer (root possibly wrong). */
function withCheckpoint(s: ReturnType<typeof setup>, signer: KeyPair, corruptRoot: boolean): Entry[] {
  const genesis = s.store.entry(1) as Entry;
  const range = new CompactRange();
  range.append(genesis.hash);
  const out: Entry[] = [];
  let prev = genesis.hash;
  for (const i of [2, 3]) {
    const e = chainEntry(i, 2, EntryKind.Noop, prev, new Uint8Array());
    range.append(e.hash);
    out.push(e);
    prev = e.hash;
  }
  const root = corruptRoot ? "00".repeat(32) : toHex(range.root());
  const cp = signCheckpoint({ v: 1, cluster: CLUSTER, size: 3, root, head: toHex(prev), term: 2, signer: "n1", ts: "2026-01-01T00:00:00Z" }, signer.secretKey);
  out.push(chainEntry(4, 2, EntryKind.Checkpoint, prev, encodeCheckpoint(cp)));
  return out;
}

const keys = (s: ReturnType<typeof setup>) => () => new Map([["n1", toHex(s.key.publicKey)]]);

describe("RaftStorage refuses what does not check out", () => {
  test("a true checkpoint is stored", () => {
    const s = setup();
    s.storage.persist(ready(withCheckpoint(s, s.key, false)), keys(s));
    expect(s.storage.lastIndex()).toBe(4);
    expect(s.store.latestCheckpoint(CLUSTER)?.size).toBe(3);
    s.store.close();
  });

  test("a checkpoint's signer is looked up in the configuration in effect just before it (a CONFIG entry later in the batch does not count)", () => {
    const s = setup();
    const asked: Array<[ClusterConfig | null, number | undefined]> = [];
    s.storage.persist(ready(withCheckpoint(s, s.key, false)), (c, at) => {
      asked.push([c, at]);
      return new Map([["n1", toHex(s.key.publicKey)]]);
    });
    expect(asked).toEqual([[null, 3]]);
    s.store.close();
  });

  test.each([
    ["a wrong root", (s: ReturnType<typeof setup>) => withCheckpoint(s, s.key, true)],
    ["a signature by a key outside the configuration", (s: ReturnType<typeof setup>) => withCheckpoint(s, generateKeyPair(), false)],
  ])("a checkpoint with %s is refused and nothing of the Ready is written", (_what, build) => {
    const s = setup();
    expect(() => s.storage.persist(ready(build(s)), keys(s))).toThrow(VerificationFailure);
    expect(s.storage.lastIndex()).toBe(1);
    expect(s.store.lastIndex()).toBe(1);
    s.store.close();
  });

  test("a snapshot whose signature does not verify is refused and the store is untouched", () => {
    const s = setup();
    const genesis = s.store.entry(1) as Entry;
    const range = new CompactRange();
    range.append(genesis.hash);
    const doc = makeSnapshot({
      cluster: CLUSTER, index: 1, term: 1, hash: genesis.hash, range, config: encodeConfig(s.config),
      subjects: [], subjectRecords: [], dedup: [], signer: "n1", ts: "2026-01-01T00:00:00Z",
    }, generateKeyPair().secretKey);
    const snap = { meta: { index: 1, term: 1, hash: genesis.hash, config: s.config }, data: encodeSnapshot(doc) };
    expect(() => s.storage.persist(ready([], snap), keys(s))).toThrow(/signature/);
    expect(s.store.latestSnapshot()).toBeUndefined();
    expect(s.store.entry(1)).toBeDefined();
    s.store.close();
  });
});

describe("which Readys are fsync'd", () => {
  /** Counts the store's synced and unsynced transactions while fn runs. */
  function count(s: ReturnType<typeof setup>, fn: () => void): { synced: number; unsynced: number } {
    const synced = jest.spyOn(s.store, "transaction");
    const unsynced = jest.spyOn(s.store, "transactionUnsynced");
    try {
      fn();
      return { synced: synced.mock.calls.length, unsynced: unsynced.mock.calls.length };
    } finally {
      synced.mockRestore();
      unsynced.mockRestore();
    }
  }
  const withHard = (rd: Ready, hardState: Ready["hardState"]): Ready => ({ ...rd, hardState });

  test("entries, a new term or a new vote: one fsync'd transaction", () => {
    const s = setup();
    const h = s.storage.hardState();
    expect(count(s, () => s.storage.persist(ready(withCheckpoint(s, s.key, false)), keys(s)))).toEqual({ synced: 1, unsynced: 0 });
    expect(count(s, () => s.storage.persist(withHard(ready([]), { term: h.term + 1, vote: null, commit: h.commit }), keys(s)))).toEqual({ synced: 1, unsynced: 0 });
    expect(count(s, () => s.storage.persist(withHard(ready([]), { term: h.term + 1, vote: "n1", commit: h.commit }), keys(s)))).toEqual({ synced: 1, unsynced: 0 });
    expect(s.store.hardState()).toMatchObject({ term: h.term + 1, votedFor: "n1" });
  });

  test("only a new commit index, with the apply of what it commits: one transaction without an fsync, whose writes are all there", () => {
    const s = setup();
    s.storage.persist(ready(withCheckpoint(s, s.key, false)), keys(s));
    const h = s.storage.hardState();
    let applied = false;
    expect(count(s, () => s.storage.persist(withHard(ready([]), { term: h.term, vote: h.vote, commit: 3 }), keys(s), () => {
      applied = true;
      s.storage.markApplied(3);
    }))).toEqual({ synced: 0, unsynced: 1 });
    expect(applied).toBe(true);
    expect(s.store.hardState()).toMatchObject({ term: h.term, votedFor: h.vote, commitIndex: 3, lastApplied: 3 });
    expect(s.storage.durable()).toMatchObject({ commitIndex: 3, lastApplied: 3 });
    // A commit index alone, and an apply alone, are unsynced too.
    expect(count(s, () => s.storage.persist(withHard(ready([]), { term: h.term, vote: h.vote, commit: 4 }), keys(s)))).toEqual({ synced: 0, unsynced: 1 });
    expect(s.store.hardState()).toMatchObject({ commitIndex: 4, lastApplied: 3 });
    expect(count(s, () => s.storage.persist(ready([]), keys(s), () => s.storage.markApplied(4)))).toEqual({ synced: 0, unsynced: 1 });
    expect(s.store.hardState()).toMatchObject({ commitIndex: 4, lastApplied: 4 });
    // Nothing at all: no transaction.
    expect(count(s, () => s.storage.persist(ready([]), keys(s)))).toEqual({ synced: 0, unsynced: 0 });
    s.store.close();
  });

  test("a commit index below last_applied is stored as last_applied (never behind what was applied)", () => {
    const s = setup();
    s.storage.persist(ready(withCheckpoint(s, s.key, false)), keys(s));
    const h = s.storage.hardState();
    s.storage.persist(withHard(ready([]), { term: h.term, vote: h.vote, commit: 3 }), keys(s), () => s.storage.markApplied(3));
    s.storage.persist(withHard(ready([]), { term: h.term, vote: h.vote, commit: 2 }), keys(s));
    expect(s.store.hardState()).toMatchObject({ commitIndex: 3, lastApplied: 3 });
    s.store.close();
  });
});
