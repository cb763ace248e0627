// verify-chain's worker threads (src/node/verify-pipeline.ts) on a real data dir, written by a real
// node in this process: with any number of threads and any page size, intact or damaged, the report
// must be the one verifyChain gives on one thread. (test/ledger/verify.test.ts runs every crafted
// case through the same pipeline on this thread; test/verify/tamper.test.ts runs every tamper case
// as `verify-chain --workers 2`.)
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import Database from "better-sqlite3";
import { openLedgerReadonly } from "../../src/cli/open-readonly";
import { verifyChain, verifyChainSteps, VerifyReport } from "../../src/ledger/verify";
import { computePage, InThreadPages, PageExecutor, PageFacts, PageJob, ParallelChainSource, VerifyWorkers } from "../../src/node/verify-pipeline";
import type { Store } from "../../src/storage/store";
import * as ind from "../support/independent";
import { prng, testSeed } from "../support/independent";
import { startInProcessApp } from "../support/in-process-app";
import { http } from "../support/server";

const RECORDS = 150;
const SUBJECTS = 5;
/** Every KEYED-th record carries an Idempotency-Key, and one of them is sent twice (a retry). */
const KEYED = 7;
const SEED = testSeed();

let base = "";
const dirs: string[] = [];

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-verify-pipeline-"));
  dirs.push(d);
  return d;
}

beforeAll(async () => {
  base = tempDir();
  // A checkpoint every 10 entries and 20 ms after activity: pages cross checkpoints and their subjects_roots.
  const app = await startInProcessApp({ dir: base, node: { checkpointEvery: 10, checkpointIntervalMs: 20 } });
  try {
    for (let i = 0; i < RECORDS; i++) {
      const key = i % KEYED === 0 ? { "idempotency-key": `pipeline-${i}` } : undefined;
      const body = { type: "policy.set", subject: `pipeline-${i % SUBJECTS}`, data: { name: `n${i}`, value: i, nested: [i, { s: "é😀\u0001" }] } };
      for (let attempt = 0; attempt < (i === KEYED ? 2 : 1); attempt++) {
        const r = await http(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, json: body, ...(key === undefined ? {} : { headers: key }) });
        if (r.status !== 201 && r.status !== 200) throw new Error(`append ${i}: ${r.status} ${r.text}`);
      }
    }
  } finally {
    await app.close();
  }
}, 60_000);

afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function open(dir: string): Store {
  const store = openLedgerReadonly(dir);
  if (typeof store === "string") throw new Error(store);
  return store;
}

/** The one-thread report and the report through `workers` threads with pages of `page` entries. */
function bothWays(dir: string, workers: VerifyWorkers, page: number): { alone: VerifyReport; piped: VerifyReport } {
  const store = open(dir);
  try {
    return { alone: verifyChain(store), piped: verifyChain(new ParallelChainSource(store, workers, page)) };
  } finally {
    store.close();
  }
}

/** A copy of the data dir with `damage` done to its database. */
function damaged(damage: (db: Database.Database) => void): string {
  const dir = tempDir();
  fs.cpSync(base, dir, { recursive: true });
  const db = new Database(path.join(dir, "ledger.db"));
  try {
    damage(db);
  } finally {
    db.close();
  }
  return dir;
}

describe("a page's Merkle nodes, hashed on a worker", () => {
  /** A page of `n` NOOP entries from index first + 1, with random stored hashes (their leaves are all that counts here). */
  function page(rng: () => number, first: number, n: number, prev: Uint8Array | null): { job: PageJob; hashes: Buffer[] } {
    const hashes = Array.from({ length: n }, () => Buffer.from(Array.from({ length: 32 }, () => Math.floor(rng() * 256))));
    const meta = new Float64Array(5 * n);
    hashes.forEach((_, i) => meta.set([first + 1 + i, 1, 0, 0, 32], 5 * i));
    return { job: { page: 0, prev, meta, bytes: Buffer.concat(hashes) }, hashes };
  }

  test(`each entry's nodes are the perfect subtrees its leaf completes inside the page, lowest first, and only those (seed ${SEED})`, () => {
    const rng = prng(SEED);
    for (let round = 0; round < 80; round++) {
      const first = Math.floor(rng() * 5000);
      const n = 1 + Math.floor(rng() * 300);
      const { job, hashes } = page(rng, first, n, round % 2 === 0 ? null : Buffer.alloc(32));
      const facts = computePage(job);
      const leaves = hashes.map((h) => ind.leafHash(h));
      let at = 0;
      for (let i = 0; i < n; i++) {
        const leaf = first + i;
        const want: string[] = [];
        // Independently: every level whose aligned subtree ends at this leaf and starts in the page.
        for (let span = 2; (leaf + 1) % span === 0 && leaf + 1 - span >= first; span *= 2) {
          want.push(ind.merkleRoot(leaves.slice(i + 1 - span, i + 1)).toString("hex"));
        }
        const got: string[] = [];
        for (let k = 0; k < facts.merges[i]; k++) got.push(Buffer.from(facts.nodes.subarray(at + 32 * k, at + 32 * k + 32)).toString("hex"));
        at += 32 * facts.merges[i];
        expect({ round, first, i, got }).toEqual({ round, first, i, got: want });
      }
      expect(at).toBe(facts.nodes.length);
    }
  });

  test("a page whose first index is not a log index gets no nodes (the replay stops at it)", () => {
    const { job } = page(prng(SEED), 0, 8, null);
    // The last: a leaf index past 2^53 - 1, where (leaf + 1) % span would not be exact.
    for (const bad of [0, -3, 1.5, Number.MAX_SAFE_INTEGER - 4]) {
      job.meta[0] = bad;
      const facts = computePage(job);
      expect({ bad, merges: [...facts.merges], nodes: facts.nodes.length }).toEqual({ bad, merges: [0, 0, 0, 0, 0, 0, 0, 0], nodes: 0 });
    }
  });
});

describe("verify-chain's worker threads give the report of one thread", () => {
  test.each([
    [1, 1], [1, 2], [1, 7], [2, 3], [3, 64], [2, 2048],
  ])("intact: %d thread(s), pages of %d entries", (threads, page) => {
    const workers = new VerifyWorkers(threads);
    try {
      const { alone, piped } = bothWays(base, workers, page);
      expect(alone).toMatchObject({ ok: true, size: expect.any(Number) as number });
      expect(alone.size).toBeGreaterThan(RECORDS);
      expect(alone.checkpoints).toBeGreaterThan(RECORDS / 10 - 1);
      expect(piped).toEqual(alone);
    } finally {
      workers.close();
    }
  });

  test(`damaged copies: the same first bad index and reason (seed ${SEED})`, () => {
    const rng = prng(SEED);
    const store = open(base);
    const last = store.lastIndex();
    store.close();
    const pick = (from: number, to: number): number => from + Math.floor(rng() * (to - from + 1));
    const damages: Array<[string, (db: Database.Database) => void]> = [
      ["a payload byte", (db) => {
        const idx = pick(2, last);
        const row = db.prepare("SELECT payload FROM log WHERE idx = ?").get(idx) as { payload: Buffer };
        const p = Buffer.from(row.payload);
        p[pick(0, p.length - 1)] ^= 0x01;
        db.prepare("UPDATE log SET payload = ? WHERE idx = ?").run(p, idx);
      }],
      ["an entry hash", (db) => db.prepare("UPDATE log SET hash = randomblob(32) WHERE idx = ?").run(pick(2, last))],
      ["a term", (db) => db.prepare("UPDATE log SET term = term + 1 WHERE idx = ?").run(pick(2, last))],
      ["a kind", (db) => db.prepare("UPDATE log SET kind = (kind + 1) % 4 WHERE idx = ?").run(pick(2, last))],
      ["a missing entry", (db) => db.prepare("DELETE FROM log WHERE idx = ?").run(pick(2, last - 1))],
      ["a Merkle leaf changed", (db) => db.prepare("UPDATE merkle_nodes SET hash = randomblob(32) WHERE level = 0 AND idx = ?").run(pick(0, last - 1))],
      ["a Merkle node missing", (db) => db.prepare("DELETE FROM merkle_nodes WHERE level = 2 AND idx = ?").run(pick(0, Math.floor(last / 4) - 1))],
      ["a subject row", (db) => db.prepare("UPDATE subjects SET version = version + 1 WHERE subject = ?").run(`pipeline-${pick(0, SUBJECTS - 1)}`)],
    ];
    const workers = new VerifyWorkers(2);
    try {
      for (const [what, damage] of damages) {
        const dir = damaged(damage);
        for (const page of [1, 5, 2048]) {
          const { alone, piped } = bothWays(dir, workers, page);
          expect({ what, page, ok: alone.ok }).toEqual({ what, page, ok: false });
          expect({ what, page, piped }).toEqual({ what, page, piped: alone });
        }
      }
    } finally {
      workers.close();
    }
  });

  test("one pool serves verification after verification, one stopped early by a violation included", () => {
    const bad = damaged((db) => db.prepare("UPDATE log SET hash = randomblob(32) WHERE idx = 3").run());
    const workers = new VerifyWorkers(2);
    try {
      // Pages of 4: the violation at 3 leaves pages in flight, which must be drained, not answered later.
      const first = bothWays(bad, workers, 4);
      expect(first.piped).toEqual(first.alone);
      expect(first.piped.first_bad_index).toBe(3);
      const second = bothWays(base, workers, 4);
      expect(second.piped).toEqual(second.alone);
      expect(second.piped.ok).toBe(true);
      workers.close();
      // Closed, the pool starts new threads on its next use.
      const third = bothWays(base, workers, 4);
      expect(third.piped).toEqual(second.alone);
    } finally {
      workers.close();
    }
  });

  test("a page the workers could not compute, or answered out of turn, stops the verification with why; nothing is reported verified", () => {
    /** Answers each page as `answer` says, on this thread. */
    const executor = (answer: (job: PageJob) => PageFacts): PageExecutor => {
      const answers: PageFacts[] = [];
      const checks = new InThreadPages();
      return {
        slots: 1, submit: (_slot, job) => void answers.push(answer(job)), next: () => answers.shift() as PageFacts,
        submitCheck: (job) => checks.submitCheck(job), nextCheck: (wait) => checks.nextCheck(wait),
      };
    };
    const failing = executor((job) => (job.page === 1 ? { ...computePage(job), error: "planted" } : computePage(job)));
    const outOfTurn = executor((job) => ({ ...computePage(job), page: job.page + 1 }));
    const store = open(base);
    try {
      expect(() => verifyChain(new ParallelChainSource(store, failing, 16))).toThrow("a verify worker failed on a page: planted");
      expect(() => verifyChain(new ParallelChainSource(store, outOfTurn, 16))).toThrow("verify worker answered page 1 (16 entries) for page 0 (16)");
      // The store is left usable (the open read was closed): a verification on this thread still passes.
      expect(verifyChain(store).ok).toBe(true);
    } finally {
      store.close();
    }
  });

  test("a checkpoint check the worker could not run stops the verification with why", () => {
    const inner = new InThreadPages();
    const failing: PageExecutor = {
      slots: 1,
      submit: (slot, job) => inner.submit(slot, job),
      next: () => inner.next(),
      submitCheck: (job) => inner.submitCheck(job),
      nextCheck: (wait) => {
        const a = inner.nextCheck(wait);
        return a === undefined ? a : { ...a, error: "planted" };
      },
    };
    const store = open(base);
    try {
      expect(() => verifyChain(new ParallelChainSource(store, failing, 16))).toThrow(/^a verify worker failed on the checkpoint at [1-9][0-9]*: planted$/);
      expect(verifyChain(store).ok).toBe(true);
    } finally {
      store.close();
    }
  });

  test("a verification given up part way leaves checkpoint checks in flight, which the next one on the pool passes over", async () => {
    // A second log whose subjects first appear one per record: a check worker that kept the given-up
    // verification's subject tree would put them after base's five leaves, and its roots would differ.
    const other = tempDir();
    const app = await startInProcessApp({ dir: other, node: { checkpointEvery: 4, checkpointIntervalMs: 20 } });
    try {
      for (let i = 0; i < 12; i++) {
        const r = await http(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, json: { type: "policy.set", subject: `late-${i}`, data: { name: `n${i}`, value: i } } });
        expect(r.status).toBe(201);
      }
    } finally {
      await app.close();
    }
    const workers = new VerifyWorkers(1);
    const store = open(base);
    const second = open(other);
    try {
      const given = verifyChain(store);
      const alone = verifyChain(second);
      expect(alone).toMatchObject({ ok: true, checkpoints: expect.any(Number) as number });
      expect(alone.checkpoints).toBeGreaterThan(1);
      const steps = verifyChainSteps(new ParallelChainSource(store, workers, 4));
      // Half of base: past several checkpoints (one every 10 entries or sooner), each handed to the check worker.
      for (let i = 0; i < given.size / 2; i++) expect(steps.next().done).toBe(false);
      steps.return(given);
      expect(verifyChain(new ParallelChainSource(second, workers, 4))).toEqual(alone);
    } finally {
      workers.close();
      store.close();
      second.close();
    }
  });

  test("answers to a given-up verification's checks are passed over, failing ones included", () => {
    // On this thread checks are answered only when waited for, so all of the first verification's
    // are still to be answered when the second starts; here they all answer "failed".
    const inner = new InThreadPages();
    let stale = -1;
    const exec: PageExecutor = {
      slots: 1,
      submit: (slot, job) => inner.submit(slot, job),
      next: () => inner.next(),
      submitCheck: (job) => {
        if (stale === -1) stale = job.run;
        inner.submitCheck(job);
      },
      nextCheck: (wait) => {
        const a = inner.nextCheck(wait);
        return a !== undefined && a.run === stale ? { ...a, reason: "planted: an answer to the given-up verification" } : a;
      },
    };
    const store = open(base);
    try {
      const alone = verifyChain(store);
      const steps = verifyChainSteps(new ParallelChainSource(store, exec, 4));
      for (let i = 0; i < alone.size / 2; i++) expect(steps.next().done).toBe(false);
      steps.return(alone);
      expect(stale).toBeGreaterThan(-1);
      expect(verifyChain(new ParallelChainSource(store, exec, 4))).toEqual(alone);
    } finally {
      store.close();
    }
  });
});
