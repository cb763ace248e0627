// Issue 13's acceptance: a node restarted from an older copy of its data dir (a consistent prefix of
// its log) is detected on the client's next read. A real `resonetics serve` process on 127.0.0.1:
// write, stop, copy the data dir, start again and write until the client pins a newer checkpoint,
// stop, put the old copy back, start: the next read throws RollbackError naming both checkpoints.
// Each step uses a new client object on the same state file (a restarted program), so what carries
// the pin across is the file alone.
import * as fs from "node:fs";
import * as path from "node:path";
import { LedgerClient } from "../../src/client/client";
import { RollbackError } from "../../src/client/errors";
import { ClientState } from "../../src/client/state";
import type { PinnedCheckpoint } from "../../src/ledger/trust";
import { cleanupAll, makeTempDir, pollUntil, Server, startServer, withFailureContext } from "../support/server";

jest.setTimeout(120_000);

afterAll(async () => {
  await cleanupAll();
});

/** Every entry a checkpoint: each record is signed as soon as it commits. */
const SERVE_ARGS = ["--checkpoint-every", "1"];
const rec = (i: number) => ({ type: "policy.set", subject: "rollback", data: { name: "n", value: i } });

/** Appends n records through a client on the state file, then pins (bounded poll) a checkpoint covering the last. */
async function writeAndPin(s: Server, stateFile: string, n: number, from: number): Promise<PinnedCheckpoint> {
  const c = new LedgerClient({ urls: [s.baseUrl], token: s.token, stateFile });
  let last = 0;
  for (let i = 0; i < n; i++) last = (await c.append(rec(from + i))).index;
  return pollUntil(`a checkpoint covering index ${last} on ${s.baseUrl}`, async () => {
    const cp = await c.checkpoint();
    return cp.size >= last ? cp : undefined;
  });
}

test("a node restarted from an older copy of its data dir is detected on the next read", async () => {
  const dir = makeTempDir();
  const old = path.join(makeTempDir(), "data-copy");
  const stateFile = path.join(makeTempDir(), "client-state.json");
  let s = await startServer(dir, { extraArgs: SERVE_ARGS });
  await withFailureContext(() => `data dir ${dir}, old copy ${old}, state file ${stateFile}\n${s.output()}`, [dir, path.dirname(old), path.dirname(stateFile)], async () => {
    const before = await writeAndPin(s, stateFile, 3, 0);
    await s.stop();
    fs.cpSync(dir, old, { recursive: true });

    s = await startServer(dir, { extraArgs: SERVE_ARGS });
    const pinned = await writeAndPin(s, stateFile, 6, 100);
    // The restarted old copy adds a NOOP and a checkpoint of its own: stay well ahead of that.
    expect(pinned.size).toBeGreaterThan(before.size + 6);
    expect(new ClientState(stateFile).get(pinned.cluster)?.checkpoint).toEqual(pinned);
    await s.stop();

    fs.rmSync(dir, { recursive: true, force: true });
    fs.cpSync(old, dir, { recursive: true });
    s = await startServer(dir, { extraArgs: SERVE_ARGS });
    const reader = new LedgerClient({ urls: [s.baseUrl], stateFile });
    const err = await reader.entry(2).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RollbackError);
    const r = err as RollbackError;
    expect(r.code).toBe("rollback");
    expect(r.pinned).toEqual({ cluster: pinned.cluster, size: pinned.size, root: pinned.root, index: pinned.index });
    const served = r.served;
    if (served === null) throw new Error(`the old copy served no checkpoint at all: ${r.message}`);
    expect(served.cluster).toBe(pinned.cluster);
    expect(served.size).toBeLessThan(pinned.size);
    expect(served.root).not.toBe(pinned.root);
    expect(served.index).toBe(served.size + 1);
    for (const part of [pinned.root, served.root, `index ${pinned.index}`, `index ${served.index}`]) expect(r.message).toContain(part);
    // The pin is not moved back by what the rolled-back node serves.
    expect(new ClientState(stateFile).get(pinned.cluster)?.checkpoint).toEqual(pinned);
    await s.stop();
  });
});
