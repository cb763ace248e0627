// WAL checkpoints off the commit path (src/node/wal-checkpointer.ts): the policy against a runner the
// test answers by hand (a request every COMMITS_PER_CHECKPOINT commits, one in flight, the writer
// checkpointing itself when the worker is missing, failed or silent), then the real worker thread on
// a real ledger.db, and a real node whose writes are checkpointed by its worker.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import pino from "pino";
import { Store, WalCheckpoint } from "../../src/storage/store";
import {
  CheckpointRunner, COMMITS_PER_CHECKPOINT, UNANSWERED_MAX, WAL_FRAMES_RESTART, WalCheckpointer, WalOutcome, workerCheckpointRunner,
} from "../../src/node/wal-checkpointer";
import { DB_FILE, openDataDir } from "../../src/node/data-dir";
import { RaftLedgerNode } from "../../src/node/raft-node";

const silent = pino({ level: "silent" });
const dirs: string[] = [];
const tmp = (): string => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-wal-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A runner whose requests wait until the test answers them. */
function manualRunner() {
  const waiting: Array<(o: WalOutcome) => void> = [];
  let closed = 0;
  const runner: CheckpointRunner = {
    request: (done) => void waiting.push(done),
    close: async () => void closed++,
  };
  return { runner, waiting, closed: () => closed };
}

const DONE: WalOutcome = { ok: true, busy: false, walFrames: 10, checkpointed: 10 };

function setup(start: () => CheckpointRunner) {
  let onWriter = 0;
  let started = 0;
  const cp = new WalCheckpointer(
    () => {
      started++;
      return start();
    },
    (): WalCheckpoint => {
      onWriter++;
      return { busy: false, walFrames: 0, checkpointed: 0 };
    },
    silent,
  );
  const commit = (n: number): void => {
    for (let i = 0; i < n; i++) cp.committed();
  };
  return { cp, commit, onWriter: () => onWriter, started: () => started };
}

describe("the policy", () => {
  test("a request every COMMITS_PER_CHECKPOINT commits, the worker started on the first, one in flight", () => {
    const m = manualRunner();
    const s = setup(() => m.runner);
    s.commit(COMMITS_PER_CHECKPOINT - 1);
    expect([s.started(), m.waiting.length]).toEqual([0, 0]);
    s.commit(1);
    expect([s.started(), m.waiting.length]).toEqual([1, 1]);
    // Unanswered: no second request, and the writer does not step in before UNANSWERED_MAX periods.
    s.commit(COMMITS_PER_CHECKPOINT * (UNANSWERED_MAX - 1));
    expect([m.waiting.length, s.onWriter()]).toEqual([1, 0]);
    m.waiting[0](DONE);
    s.commit(COMMITS_PER_CHECKPOINT);
    expect([s.started(), m.waiting.length, s.onWriter()]).toEqual([1, 2, 0]);
    expect(s.cp.stats()).toEqual({ requested: 2, answered: 1, failed: 0, onWriter: 0 });
  });

  test("a worker silent for UNANSWERED_MAX periods: the writer checkpoints itself, once per UNANSWERED_MAX periods", () => {
    const m = manualRunner();
    const s = setup(() => m.runner);
    s.commit(COMMITS_PER_CHECKPOINT);
    s.commit(COMMITS_PER_CHECKPOINT * UNANSWERED_MAX - 1);
    expect(s.onWriter()).toBe(0);
    s.commit(1);
    expect(s.onWriter()).toBe(1);
    s.commit(COMMITS_PER_CHECKPOINT * UNANSWERED_MAX);
    expect(s.onWriter()).toBe(2);
    expect(m.waiting.length).toBe(1); // still the one request: never a second in flight
  });

  test("after a failed checkpoint the writer checkpoints too, and the worker is asked again", () => {
    const m = manualRunner();
    const s = setup(() => m.runner);
    s.commit(COMMITS_PER_CHECKPOINT);
    m.waiting[0]({ ok: false, message: "database or disk is full", code: "SQLITE_FULL" });
    s.commit(COMMITS_PER_CHECKPOINT);
    expect(m.waiting.length).toBe(2);
    expect(s.cp.stats()).toEqual({ requested: 2, answered: 1, failed: 1, onWriter: 1 });
    m.waiting[1](DONE); // it recovered: the writer leaves checkpoints to it again
    s.commit(COMMITS_PER_CHECKPOINT);
    expect(s.cp.stats()).toEqual({ requested: 3, answered: 2, failed: 1, onWriter: 1 });
  });

  test("an answer that saw WAL_FRAMES_RESTART frames or more: the writer catches up at its next commit, once", () => {
    const m = manualRunner();
    const s = setup(() => m.runner);
    s.commit(COMMITS_PER_CHECKPOINT);
    m.waiting[0]({ ok: true, busy: false, walFrames: WAL_FRAMES_RESTART - 1, checkpointed: WAL_FRAMES_RESTART - 1 });
    s.commit(COMMITS_PER_CHECKPOINT);
    expect(s.onWriter()).toBe(0);
    m.waiting[1]({ ok: true, busy: false, walFrames: WAL_FRAMES_RESTART, checkpointed: WAL_FRAMES_RESTART - 20 });
    expect(s.onWriter()).toBe(0); // not on the worker's answer: on the writer's next commit
    s.commit(1);
    expect(s.onWriter()).toBe(1);
    s.commit(COMMITS_PER_CHECKPOINT - 1);
    expect(s.onWriter()).toBe(1);
    expect(m.waiting.length).toBe(3); // the worker's period goes on as before
    m.waiting[2]({ ok: false, message: "disk I/O error", code: "SQLITE_IOERR" });
    s.commit(1);
    expect(s.onWriter()).toBe(1); // a failure is the failure rule's (at the period), not a catch-up
  });

  test("a worker that exited fails every request at once: the writer checkpoints every period", () => {
    const s = setup(() => ({ request: (done) => done({ ok: false, message: "WAL checkpoint worker has exited" }), close: async () => undefined }));
    s.commit(COMMITS_PER_CHECKPOINT);
    expect(s.onWriter()).toBe(0);
    s.commit(COMMITS_PER_CHECKPOINT * 3);
    expect(s.onWriter()).toBe(3);
  });

  test("a worker that cannot start: the writer checkpoints itself every period, and the start is not retried", () => {
    const s = setup(() => {
      throw new Error("no threads here");
    });
    s.commit(COMMITS_PER_CHECKPOINT * 3);
    expect([s.started(), s.onWriter()]).toEqual([1, 3]);
  });

  test("after stop the worker is closed and the writer checkpoints itself", async () => {
    const m = manualRunner();
    const s = setup(() => m.runner);
    s.commit(COMMITS_PER_CHECKPOINT);
    m.waiting[0](DONE);
    s.cp.stop();
    expect(m.closed()).toBe(1);
    s.commit(COMMITS_PER_CHECKPOINT);
    expect([m.waiting.length, s.onWriter(), s.started()]).toEqual([1, 1, 1]);
    await s.cp.close(); // nothing left to close
    expect(m.closed()).toBe(1);
  });
});

describe("the worker thread, on a real ledger.db", () => {
  test("checkpoints what the writer committed with automatic checkpoints off; its close lets the writer's remove the WAL", async () => {
    const file = path.join(tmp(), DB_FILE);
    const store = new Store(file);
    store.setAutoCheckpoint(0);
    expect(store.autoCheckpoint()).toBe(0);
    for (let i = 0; i < 300; i++) store.transaction(() => store.setMeta(`k${i}`, "v".repeat(500)));
    const runner = workerCheckpointRunner(file);
    try {
      const outcome = await new Promise<WalOutcome>((resolve) => runner.request(resolve));
      expect(outcome).toMatchObject({ ok: true, busy: false });
      if (!outcome.ok) throw new Error(outcome.message);
      expect(outcome.walFrames).toBeGreaterThanOrEqual(300); // one frame a commit at least: none was checkpointed before
      expect(outcome.checkpointed).toBe(outcome.walFrames);
      // The database file now holds what the WAL did: a reader without the WAL would see it.
      store.transaction(() => store.setMeta("after", "x"));
      const second = await new Promise<WalOutcome>((resolve) => runner.request(resolve));
      // The WAL started over at the writer's next commit: only that commit's frames are in it.
      expect(second.ok && second.walFrames).toBeLessThan(10);
    } finally {
      await runner.close();
    }
    store.close();
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
    const reopened = new Store(file, { readonly: true });
    expect([reopened.getMeta("k299"), reopened.getMeta("after")]).toEqual(["v".repeat(500), "x"]);
    reopened.close();
  });

  test("under steady writes the WAL stays bounded: the worker never copies everything, so the writer catches up", async () => {
    const file = path.join(tmp(), DB_FILE);
    const store = new Store(file);
    store.setAutoCheckpoint(0);
    const cp = new WalCheckpointer(() => workerCheckpointRunner(file), () => store.checkpointWal(), silent);
    const pageBytes = store.db.pragma("page_size", { simple: true }) as number;
    let walMax = 0;
    try {
      // ~5 pages a commit: without the writer's catch-up this WAL grew past 120 MB (the worker's
      // checkpoint never caught up with a writer that commits between its turns).
      for (let i = 0; i < 6000; i++) {
        store.transaction(() => {
          for (let j = 0; j < 3; j++) store.setMeta(`k${i}-${j}`, "v".repeat(400));
        });
        cp.committed();
        walMax = Math.max(walMax, fs.statSync(`${file}-wal`).size);
        await new Promise((r) => setImmediate(r));
      }
      expect(cp.stats().onWriter).toBeGreaterThanOrEqual(1);
      // At most the bound, the frames of the period before the worker's answer, and the catch-up commit's.
      expect(walMax).toBeLessThan(2 * WAL_FRAMES_RESTART * (pageBytes + 24));
    } finally {
      await cp.close();
      store.close();
    }
  }, 120_000);

  test("a request after the worker exited is answered with a failure, not left waiting", async () => {
    const file = path.join(tmp(), DB_FILE);
    new Store(file).close();
    const runner = workerCheckpointRunner(file);
    await runner.close();
    await expect(new Promise<WalOutcome>((resolve) => runner.request(resolve))).resolves.toMatchObject({ ok: false });
  });
});

describe("a node", () => {
  test("its worker checkpoints the WAL as it writes; the writer never has to", async () => {
    const dir = tmp();
    const node = new RaftLedgerNode(openDataDir(dir, "127.0.0.1:0"), {
      tickMs: 5, electionTick: 10, heartbeatTick: 2, checkpointEvery: 1000, checkpointIntervalMs: 3_600_000, snapshotEvery: 0,
      writeTimeoutMs: 10_000, now: () => new Date(), logger: silent,
    });
    try {
      await node.leaderKnown();
      // One at a time: each append is its own Ready, so its own commit.
      for (let i = 0; i < COMMITS_PER_CHECKPOINT + 10; i++) await node.writes.append({ type: "t", subject: "s", data: { i } });
      for (let i = 0; i < 1000 && node.figures().walCheckpointsWorker === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(node.figures().walCheckpointsWorker).toBeGreaterThanOrEqual(1);
      expect(node.figures().walCheckpointsWriter).toBe(0);
    } finally {
      await node.close();
    }
  });
});
