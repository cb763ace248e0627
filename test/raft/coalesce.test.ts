// coalesceAppends (src/raft/coalesce.ts): a leader's Appends to one peer in one Ready, merged when
// one continues the other. By hand: what merges and what must not. Then with the real core: two
// identical three-node clusters driven by the same proposals, one sending every Ready's messages
// as they are and one coalesced, end with the same logs, commit indices and match indices, the
// coalesced one with fewer messages. (The simulator's --coalesce runs, test/raft/simulation.test.ts,
// add faults: drops, duplicates, delays, partitions, crashes.)
import fc from "fast-check";
import { utf8 } from "../../src/ledger/bytes";
import { chainEntry, EntryKind, genesisHash, type Entry } from "../../src/ledger/entry";
import { coalesceAppends } from "../../src/raft/coalesce";
import { configOfIds } from "../../src/raft/config";
import { Prng } from "../../src/raft/prng";
import { RawNode } from "../../src/raft/rawnode";
import { entrySizeBytes, MemoryStorage } from "../../src/raft/storage";
import type { AppendMsg, HeartbeatMsg, Message } from "../../src/raft/types";

/** A chain of RECORD entries 1..n of term 2 (payload "p<index>" plus `pad` bytes). */
function chain(n: number, pad = 0): Entry[] {
  const out: Entry[] = [];
  let prev = genesisHash("c");
  for (let i = 1; i <= n; i++) {
    const e = chainEntry(i, 2, EntryKind.Record, prev, utf8(`p${i}${"x".repeat(pad)}`));
    out.push(e);
    prev = e.hash;
  }
  return out;
}

/** An Append to `to` of log[from..to) (1-based indices), after entry from - 1. */
function app(log: readonly Entry[], to: string, from: number, until: number, commit = 0, extra: Partial<AppendMsg> = {}): AppendMsg {
  const prev = from === 1 ? { index: 0, term: 0, hash: genesisHash("c") } : log[from - 2];
  return { type: "Append", from: "n1", to, term: 2, prevIndex: prev.index, prevTerm: prev.term, prevHash: prev.hash, entries: log.slice(from - 1, until - 1), commit, ...extra };
}
const beat = (to: string): HeartbeatMsg => ({ type: "Heartbeat", from: "n1", to, term: 2, commit: 0, commitHash: null, readCtx: 0 });

describe("what merges", () => {
  const log = chain(10);

  test("Appends to a peer that continue one another become one: all the entries, the later commit; empty ones (commit only) fold in", () => {
    const ms = [app(log, "n2", 1, 3, 0), app(log, "n2", 3, 4, 1), app(log, "n2", 4, 4, 3), app(log, "n2", 4, 6, 2)];
    expect(coalesceAppends(ms, 1 << 20)).toEqual([app(log, "n2", 1, 6, 3)]);
    // An empty Append first, then entries after its point.
    expect(coalesceAppends([app(log, "n2", 5, 5, 4), app(log, "n2", 5, 7, 4)], 1 << 20)).toEqual([app(log, "n2", 5, 7, 4)]);
  });

  test("per peer: messages to other peers in between do not stop a merge, and keep their order", () => {
    const ms: Message[] = [app(log, "n2", 1, 2), app(log, "n3", 1, 2), beat("n4"), app(log, "n2", 2, 3), app(log, "n3", 2, 4)];
    expect(coalesceAppends(ms, 1 << 20)).toEqual([app(log, "n2", 1, 3), app(log, "n3", 1, 4), beat("n4")]);
  });

  test("anything else to the same peer in between ends the run: the Appends after it start a new one", () => {
    const ms: Message[] = [app(log, "n2", 1, 2), beat("n2"), app(log, "n2", 2, 3), app(log, "n2", 3, 4)];
    expect(coalesceAppends(ms, 1 << 20)).toEqual([app(log, "n2", 1, 2), beat("n2"), app(log, "n2", 2, 4)]);
  });

  test("an Append that does not continue the run is sent as it is: a gap, a repeat, another term or leader, another prevTerm or prevHash", () => {
    const first = app(log, "n2", 1, 3);
    const others: AppendMsg[] = [
      app(log, "n2", 4, 5), // a gap: starts after 3, not 2
      app(log, "n2", 2, 4), // overlaps: starts after 1
      app(log, "n2", 3, 4, 0, { term: 3 }),
      app(log, "n2", 3, 4, 0, { from: "n9" }),
      app(log, "n2", 3, 4, 0, { prevTerm: 1 }),
      app(log, "n2", 3, 4, 0, { prevHash: new Uint8Array(32) }),
    ];
    for (const o of others) expect(coalesceAppends([first, o], 1 << 20)).toEqual([first, o]);
  });

  test("a merge past maxBytes of entries is not made (as RaftLog.slice counts them); an empty Append always folds in", () => {
    const big = chain(4, 1000);
    const one = entrySizeBytes(big[0]);
    const ms = [app(big, "n2", 1, 2), app(big, "n2", 2, 3), app(big, "n2", 3, 4), app(big, "n2", 4, 4, 2)];
    // Room for exactly two entries: the first two merge, the third starts a new message, the empty one joins it.
    const max = entrySizeBytes(big[0]) + entrySizeBytes(big[1]);
    expect(max).toBeLessThan(3 * one);
    expect(coalesceAppends(ms, max)).toEqual([app(big, "n2", 1, 3), app(big, "n2", 3, 4, 2)]);
    expect(coalesceAppends(ms, max - 1)).toEqual([app(big, "n2", 1, 2), app(big, "n2", 2, 3), app(big, "n2", 3, 4, 2)]);
    // Past maxBytes on either side of an empty one, it still folds in: after a run already over the
    // limit (one entry larger than it), and before one (the empty Append first, its entries after).
    const small = one - 1;
    expect(coalesceAppends([app(big, "n2", 1, 2), app(big, "n2", 2, 2, 1)], small)).toEqual([app(big, "n2", 1, 2, 1)]);
    expect(coalesceAppends([app(big, "n2", 2, 2, 1), app(big, "n2", 2, 3, 1)], small)).toEqual([app(big, "n2", 2, 3, 1)]);
  });

  test("the input is left as it was (the core's messages are not changed under it)", () => {
    const ms = [app(log, "n2", 1, 2), app(log, "n2", 2, 3)];
    const copy = ms.map((m) => ({ ...m, entries: [...m.entries] }));
    coalesceAppends(ms, 1 << 20);
    expect(ms).toEqual(copy);
  });
});

describe("with the real core: the followers end the same, with fewer messages", () => {
  const IDS = ["n1", "n2", "n3"];

  class Cluster {
    readonly nodes = new Map<string, { raw: RawNode; storage: MemoryStorage }>();
    sent = 0;
    private queue: Message[] = [];

    constructor(private readonly coalesce: boolean, maxInflight: number, private readonly maxMsgBytes: number) {
      for (const id of IDS) {
        const storage = MemoryStorage.bootstrap("c", configOfIds(IDS));
        const raw = new RawNode({ id, storage, electionTick: 10, heartbeatTick: 1, preVote: false, checkQuorum: false, maxMsgBytes, maxInflight, rng: new Prng(7) });
        this.nodes.set(id, { raw, storage });
      }
    }

    private ready(id: string): void {
      const n = this.nodes.get(id);
      if (n === undefined) throw new Error(`no node ${id}`);
      for (let guard = 0; n.raw.hasReady(); guard++) {
        if (guard > 100) throw new Error(`${id}: Ready loop did not settle`);
        const rd = n.raw.ready();
        if (rd.snapshot !== null) n.storage.applySnapshot(rd.snapshot);
        n.storage.append(rd.entries);
        if (rd.hardState !== null) n.storage.setHardState(rd.hardState);
        const out = this.coalesce ? coalesceAppends(rd.messages, this.maxMsgBytes) : rd.messages;
        this.sent += out.length;
        this.queue.push(...out);
        n.raw.advance(rd);
      }
    }

    /** Delivers until nothing is in flight (bounded). */
    settle(): void {
      for (const id of IDS) this.ready(id);
      for (let rounds = 0; this.queue.length > 0; rounds++) {
        if (rounds > 10_000) throw new Error("messages never settled");
        const m = this.queue.shift() as Message;
        this.nodes.get(m.to)?.raw.step(m);
        this.ready(m.to);
      }
    }

    leaderProposes(payloads: readonly string[]): void {
      const leader = this.nodes.get("n1");
      if (leader === undefined) throw new Error("no n1");
      // Every proposal of the batch before the leader's next Ready, as requests of one turn of the runtime.
      for (const p of payloads) expect(leader.raw.propose(EntryKind.Record, utf8(p)).ok).toBe(true);
      this.settle();
      // A follower whose window was full when the commit advanced hears of it at the next heartbeat
      // in either cluster (which one was full then depends on the order the answers came in).
      leader.raw.tick();
      this.settle();
    }

    state(): unknown {
      return IDS.map((id) => {
        const n = this.nodes.get(id) as { raw: RawNode; storage: MemoryStorage };
        const entries: string[] = [];
        for (let i = 1; i <= n.storage.lastIndex(); i++) entries.push(`${i}/${n.storage.entry(i).term}/${Buffer.from(n.storage.entry(i).hash).toString("hex").slice(0, 12)}`);
        return { id, entries, commit: n.raw.raft.log.committed, role: n.raw.raft.role };
      });
    }
  }

  test("random batches of proposals, inflight windows and message sizes (fast-check; the seed is printed on failure)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.string({ maxLength: 40 }), { minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 8 }),
        fc.constantFrom(1, 2, 4, 16),
        fc.constantFrom(1, 200, 1024, 65536),
        (batches, maxInflight, maxMsgBytes) => {
          const plain = new Cluster(false, maxInflight, maxMsgBytes);
          const merged = new Cluster(true, maxInflight, maxMsgBytes);
          for (const c of [plain, merged]) {
            c.nodes.get("n1")?.raw.campaign();
            c.settle();
          }
          for (const b of batches) {
            plain.leaderProposes(b);
            merged.leaderProposes(b);
          }
          expect(merged.state()).toEqual(plain.state());
          const leader = merged.nodes.get("n1")?.raw.raft;
          const total = batches.reduce((n, b) => n + b.length, 0);
          // Everything was replicated and committed everywhere (the NOOP at 2, the batches after it).
          expect(leader?.log.committed).toBe(2 + total);
          expect(merged.sent).toBeLessThanOrEqual(plain.sent);
        },
      ),
      { numRuns: 150 },
    );
  });

  test("a batch of 20 proposals with a wide window goes to each follower in fewer messages than it has entries", () => {
    const plain = new Cluster(false, 64, 1 << 20);
    const merged = new Cluster(true, 64, 1 << 20);
    for (const c of [plain, merged]) {
      c.nodes.get("n1")?.raw.campaign();
      c.settle();
    }
    const before = [plain.sent, merged.sent];
    const batch = Array.from({ length: 20 }, (_, i) => `w${i}`);
    plain.leaderProposes(batch);
    merged.leaderProposes(batch);
    expect(merged.state()).toEqual(plain.state());
    const [p, m] = [plain.sent - before[0], merged.sent - before[1]];
    // Unmerged: 20 Appends and 20 answers per follower, then the commit. Merged: one Append each way.
    expect(p).toBeGreaterThanOrEqual(2 * 2 * 20);
    expect(m).toBeLessThan(p / 4);
  });
});
