// The Raft core's building blocks on their own (src/raft/storage.ts MemoryStorage, log.ts RaftLog,
// progress.ts Progress, and the RawNode's start-up checks), with exact bounds and messages: the
// simulation and core.test.ts drive them only through whole clusters, where a bound one off or an
// assertion that never fires goes unnoticed (the survivors of `npm run mutate -- raft`).
import { utf8 } from "../../src/ledger/bytes";
import { chainEntry, EntryKind, genesisHash, type Entry } from "../../src/ledger/entry";
import { configOfIds, configsEqual, encodeConfig } from "../../src/raft/config";
import { RaftLog } from "../../src/raft/log";
import { Prng } from "../../src/raft/prng";
import { Progress, ProgressState } from "../../src/raft/progress";
import { RawNode } from "../../src/raft/rawnode";
import { entrySizeBytes, MemoryStorage } from "../../src/raft/storage";
import type { Message, Snapshot } from "../../src/raft/types";
import { extend } from "../support/raft-log";

const CFG = configOfIds(["n1", "n2", "n3"]);

/** Bootstrap (1) and records 2..last of the given terms (term of index i = terms[i - 2]). */
function storageOf(terms: number[]): MemoryStorage {
  const s = MemoryStorage.bootstrap("c", CFG);
  extend(s, terms);
  return s;
}

const next = (after: Entry, term: number, body = "x"): Entry => chainEntry(after.index + 1, term, EntryKind.Record, after.hash, utf8(body));

const snapshotAt = (s: MemoryStorage, index: number): Snapshot => {
  const e = s.entry(index);
  return { meta: { index, term: e.term, hash: e.hash, config: CFG }, data: utf8(`state@${index}`) };
};

describe("MemoryStorage", () => {
  test("entry(i) serves anchor < i <= last only", () => {
    const s = storageOf([1, 1]);
    expect(s.entry(1).index).toBe(1);
    expect(s.entry(3).index).toBe(3);
    expect(() => s.entry(0)).toThrow("storage: entry 0 out of range");
    expect(() => s.entry(4)).toThrow("storage: entry 4 out of range");
    s.createSnapshot(snapshotAt(s, 2));
    expect(() => s.entry(2)).toThrow("storage: entry 2 out of range");
    expect(s.entry(3).index).toBe(3);
  });

  test("append replaces the suffix from its first index; it refuses a gap or an index at or below the anchor", () => {
    const s = storageOf([1, 1, 1]);
    const e3 = chainEntry(3, 2, EntryKind.Record, s.entry(2).hash, utf8("new3"));
    s.append([e3]);
    expect(s.lastIndex()).toBe(3);
    expect(s.entry(3).term).toBe(2);
    expect(() => s.append([next(s.entry(3), 2), ])).not.toThrow();
    expect(() => s.append([chainEntry(6, 2, EntryKind.Record, s.entry(4).hash, utf8("gap"))])).toThrow("storage: gap appending 6 after 4");
    s.createSnapshot(snapshotAt(s, 3));
    expect(() => s.append([chainEntry(3, 2, EntryKind.Record, s.entry(4).hash, utf8("below"))])).toThrow("storage: append at 3 below anchor 3");
    s.append([]);
    expect(s.lastIndex()).toBe(4);
  });

  test("createSnapshot cuts the entries it covers and moves the anchor; it refuses an index outside the log", () => {
    const s = storageOf([1, 2, 2]);
    expect(() => s.createSnapshot(snapshotAt(s, 4))).not.toThrow();
    expect(s.anchor()).toEqual({ index: 4, term: 2, hash: snapshotAt(storageOf([1, 2, 2]), 4).meta.hash });
    expect(s.lastIndex()).toBe(4);
    const t = storageOf([1, 2, 2]);
    const beyond = { ...snapshotAt(t, 4), meta: { ...snapshotAt(t, 4).meta, index: 5 } };
    expect(() => t.createSnapshot(beyond)).toThrow("storage: snapshot at 5 out of range");
    t.createSnapshot(snapshotAt(t, 2));
    expect(() => t.createSnapshot({ ...snapshotAt(storageOf([1]), 2) })).toThrow("storage: snapshot at 2 out of range");
    expect(t.entry(3).index).toBe(3);
    expect(t.lastIndex()).toBe(4);
  });

  test("a clone is its own disk: appending to it leaves the original as it was", () => {
    const s = storageOf([1]);
    const c = s.clone();
    c.append([next(c.entry(2), 1)]);
    c.setHardState({ term: 5, vote: "n2", commit: 1 });
    expect([s.lastIndex(), c.lastIndex()]).toEqual([2, 3]);
    expect(s.hardState()).toEqual({ term: 1, vote: null, commit: 1 });
    expect(c.anchor()).toEqual(s.anchor());
  });
});

describe("RaftLog", () => {
  test("starts at the storage's commit and anchor, and refuses a commit beyond its log or an applied beyond commit", () => {
    const s = storageOf([1, 1]);
    s.setHardState({ term: 1, vote: null, commit: 3 });
    const log = new RaftLog(s, 2);
    expect([log.committed, log.applied, log.lastIndex(), log.firstIndex()]).toEqual([3, 2, 3, 1]);
    s.setHardState({ term: 1, vote: null, commit: 4 });
    expect(() => new RaftLog(s, 0)).toThrow("log: commit 4 beyond last 3");
    s.setHardState({ term: 1, vote: null, commit: 2 });
    expect(() => new RaftLog(s, 3)).toThrow("log: applied 3 beyond commit 2");
    // After a snapshot the anchor is committed and applied, whatever the hard state says.
    s.setHardState({ term: 1, vote: null, commit: 3 });
    s.createSnapshot(snapshotAt(s, 3));
    s.setHardState({ term: 1, vote: null, commit: 0 });
    const cut = new RaftLog(s, 0);
    expect([cut.committed, cut.applied, cut.firstIndex()]).toEqual([3, 3, 4]);
  });

  test("entry, term and hash: null outside the log, the anchor's term and hash at the anchor", () => {
    const s = storageOf([1, 2]);
    s.createSnapshot(snapshotAt(s, 2));
    const log = new RaftLog(s, 0);
    expect(log.entry(2)).toBeNull();
    expect(log.entry(4)).toBeNull();
    expect(log.entry(3)?.index).toBe(3);
    expect(log.term(2)).toBe(1);
    expect(log.hash(2)).toEqual(s.anchor().hash);
    expect([log.term(1), log.hash(1), log.term(4), log.hash(4)]).toEqual([null, null, null, null]);
  });

  test("slice: [lo, hi) within the log, at least one entry, then stops before the byte bound is passed", () => {
    const s = storageOf([1, 1, 1, 1]);
    const log = new RaftLog(s, 0);
    const one = entrySizeBytes(s.entry(2));
    expect(log.slice(2, 6, 1).map((e) => e.index)).toEqual([2]); // one even past the bound
    expect(log.slice(2, 6, 2 * one).map((e) => e.index)).toEqual([2, 3]);
    expect(log.slice(2, 6, 2 * one + 1).map((e) => e.index)).toEqual([2, 3]);
    expect(log.slice(2, 6, 1 << 20).map((e) => e.index)).toEqual([2, 3, 4, 5]);
    expect(log.slice(5, 5, 1 << 20)).toEqual([]);
    expect(() => log.slice(2, 7, 1 << 20)).toThrow("log: slice [2,7) out of range");
    expect(() => log.slice(0, 3, 1 << 20)).toThrow("log: slice [0,3) out of range");
    expect(log.slice(1, 2, 1 << 20).map((e) => e.index)).toEqual([1]);
  });

  test("findConflictByTerm: the largest index at or below index whose term is at most term, else the anchor", () => {
    const s = storageOf([1, 2, 2, 3, 3]); // terms: 1:1 2:1 3:2 4:2 5:3 6:3
    const log = new RaftLog(s, 0);
    expect(log.findConflictByTerm(6, 2)).toEqual({ index: 4, term: 2 });
    expect(log.findConflictByTerm(9, 3)).toEqual({ index: 6, term: 3 });
    expect(log.findConflictByTerm(6, 1)).toEqual({ index: 2, term: 1 });
    expect(log.findConflictByTerm(6, 0)).toEqual({ index: 0, term: 0 });
    expect(log.findConflictByTerm(3, 5)).toEqual({ index: 3, term: 2 });
  });

  test("append: truncates the unstable tail or the stable log; refuses at or below commit, at or below the anchor, or after a gap", () => {
    const s = storageOf([1, 1]);
    s.setHardState({ term: 1, vote: null, commit: 2 });
    const log = new RaftLog(s, 0);
    log.append([]);
    expect(log.lastIndex()).toBe(3);
    const a4 = next(s.entry(3), 2, "a4");
    const a5 = next(a4, 2, "a5");
    log.append([a4, a5]);
    expect([log.lastIndex(), log.unstableEntries().map((e) => e.index)]).toEqual([5, [4, 5]]);
    const b5 = next(a4, 3, "b5");
    log.append([b5]); // within the unstable tail
    expect(log.unstableEntries().map((e) => e.term)).toEqual([2, 3]);
    const c3 = chainEntry(3, 3, EntryKind.Record, s.entry(2).hash, utf8("c3"));
    log.append([c3]); // below the unstable tail: the stored entry 3 is shadowed
    expect([log.lastIndex(), log.entry(3)?.term, log.unstableEntries().map((e) => e.index)]).toEqual([3, 3, [3]]);
    expect(() => log.append([chainEntry(2, 3, EntryKind.Record, s.entry(1).hash, utf8("x"))])).toThrow("log: refusing to truncate at 2, below or at commit 2");
    expect(() => log.append([chainEntry(5, 3, EntryKind.Record, c3.hash, utf8("gap"))])).toThrow("log: gap appending 5 after 3");
  });

  test("commitTo never goes back nor past the log; appliedTo never past commit, never back", () => {
    const s = storageOf([1, 1]);
    const log = new RaftLog(s, 0);
    log.commitTo(2);
    log.commitTo(1);
    expect(log.committed).toBe(2);
    expect(() => log.commitTo(4)).toThrow("log: commit 4 beyond last index 3");
    log.appliedTo(2);
    log.appliedTo(1);
    expect(log.applied).toBe(2);
    expect(() => log.appliedTo(3)).toThrow("log: applied 3 beyond commit 2");
    expect([log.hasNextCommitted(), log.nextCommitted(1 << 20)]).toEqual([false, []]);
    log.commitTo(3);
    expect([log.hasNextCommitted(), log.nextCommitted(1 << 20).map((e) => e.index)]).toEqual([true, [3]]);
  });

  test("stableTo drops the persisted prefix of the unstable tail only for the same index and term", () => {
    const s = storageOf([1]);
    const log = new RaftLog(s, 0);
    const e3 = next(s.entry(2), 1, "e3");
    const e4 = next(e3, 2, "e4");
    log.append([e3, e4]);
    log.stableTo(2, 1); // below the tail: nothing
    log.stableTo(5, 2); // beyond it
    log.stableTo(3, 2); // wrong term
    expect(log.unstableEntries().map((e) => e.index)).toEqual([3, 4]);
    expect(log.stableLastIndex()).toBe(2);
    s.append([e3]);
    log.stableTo(3, 1);
    expect(log.unstableEntries().map((e) => e.index)).toEqual([4]);
    expect(log.stableLastIndex()).toBe(3);
    s.append([e4]);
    log.stableTo(4, 2);
    expect(log.unstableEntries()).toEqual([]);
    log.stableTo(4, 2); // nothing unstable: nothing to do
    expect(log.stableLastIndex()).toBe(4);
  });

  test("restore puts a snapshot above commit in place of the log; stableSnapTo clears it only at its index", () => {
    const s = storageOf([1, 1]);
    s.setHardState({ term: 1, vote: null, commit: 2 });
    const log = new RaftLog(s, 0);
    const donor = storageOf([1, 1, 1, 1]);
    expect(() => log.restore(snapshotAt(donor, 2))).toThrow("log: restoring a snapshot at or below commit");
    const snap = snapshotAt(donor, 5);
    log.restore(snap);
    expect([log.lastIndex(), log.committed, log.anchor().index, log.stableLastIndex()]).toEqual([5, 5, 5, 4]);
    expect(log.pendingSnapshot()).toBe(snap);
    log.stableSnapTo(4);
    expect(log.pendingSnapshot()).toBe(snap);
    log.stableSnapTo(5);
    expect(log.pendingSnapshot()).toBeNull();
  });
});

describe("Progress", () => {
  test("maybeUpdate moves match and next forward only, and ends a probe's wait", () => {
    const p = new Progress(5, 2, false);
    p.sentEntries(4, 0);
    expect([p.probeSent, p.isPaused()]).toEqual([true, true]);
    expect(p.maybeUpdate(3)).toBe(true);
    expect([p.match, p.next, p.probeSent]).toEqual([3, 5, false]);
    expect(p.maybeUpdate(3)).toBe(false);
    expect(p.maybeUpdate(2)).toBe(false);
    expect([p.match, p.next]).toEqual([3, 5]);
    expect(p.maybeUpdate(7)).toBe(true);
    expect([p.match, p.next]).toEqual([7, 8]);
  });

  test("maybeDecrTo: in Replicate, a rejection at or below match is stale; in Probe, only the rejection of what was sent counts", () => {
    const r = new Progress(1, 4, false);
    r.maybeUpdate(5);
    r.becomeReplicate();
    r.sentEntries(8, 3);
    expect(r.maybeDecrTo(5, 0)).toBe(false);
    expect(r.maybeDecrTo(6, 0)).toBe(true);
    expect(r.next).toBe(6);
    const p = new Progress(10, 4, false); // probe: next 10, match 0
    p.sentEntries(9, 0);
    expect(p.maybeDecrTo(8, 0)).toBe(false); // not the index it sent
    expect(p.maybeDecrTo(9, 4)).toBe(true); // the follower's hint: its last is 4
    expect([p.next, p.probeSent]).toEqual([5, false]);
    p.maybeUpdate(2);
    p.sentEntries(4, 0);
    expect(p.maybeDecrTo(4, 0)).toBe(true);
    expect(p.next).toBe(3); // never below match + 1
  });

  test("Replicate keeps at most maxInflight Appends in flight; acknowledgements free them in order", () => {
    const p = new Progress(1, 3, false);
    p.becomeReplicate();
    p.sentEntries(2, 0); // an empty Append takes no slot
    expect(p.isPaused()).toBe(false);
    p.sentEntries(3, 2);
    p.sentEntries(5, 2);
    expect([p.next, p.inflightFull()]).toEqual([6, false]);
    p.sentEntries(7, 2);
    expect([p.inflightFull(), p.isPaused()]).toEqual([true, true]);
    expect(() => p.sentEntries(9, 2)).toThrow("progress: inflight window overflow");
    p.freeUpTo(2); // below the first: nothing
    expect(p.inflightFull()).toBe(true);
    p.freeUpTo(5);
    expect(p.inflightFull()).toBe(false);
    p.sentEntries(9, 2);
    p.sentEntries(11, 2);
    expect(p.inflightFull()).toBe(true);
    p.freeFirstOne();
    expect(p.inflightFull()).toBe(false);
    p.freeUpTo(100);
    p.freeFirstOne(); // nothing in flight: nothing to do
    p.sentEntries(13, 1);
    p.sentEntries(14, 1);
    expect(p.inflightFull()).toBe(false);
  });

  test("from Snapshot, Probe resumes after the snapshot or the match, whichever is later; Snapshot is always paused", () => {
    const p = new Progress(3, 2, true);
    p.maybeUpdate(2);
    p.becomeSnapshot(9);
    expect([p.state, p.pendingSnapshot, p.isPaused()]).toEqual([ProgressState.Snapshot, 9, true]);
    p.becomeProbe();
    expect([p.state, p.next, p.pendingSnapshot]).toEqual([ProgressState.Probe, 10, 0]);
    p.becomeSnapshot(4);
    p.maybeUpdate(12);
    p.becomeProbe();
    expect(p.next).toBe(13);
    p.becomeReplicate();
    expect([p.state, p.next]).toEqual([ProgressState.Replicate, 13]);
    p.becomeProbe();
    expect(p.next).toBe(13);
  });
});

describe("a RawNode's configuration", () => {
  const base = { id: "n1", electionTick: 10, heartbeatTick: 1, preVote: true, checkQuorum: true, maxMsgBytes: 1 << 20, maxInflight: 4, rng: new Prng(1) };
  test.each([
    [{ heartbeatTick: 0 }, "raft: need 0 < heartbeatTick < electionTick"],
    [{ heartbeatTick: 10 }, "raft: need 0 < heartbeatTick < electionTick"],
    [{ maxInflight: 0 }, "raft: limits must be positive"],
    [{ maxMsgBytes: 0 }, "raft: limits must be positive"],
  ])("%j is refused", (over, message) => {
    expect(() => new RawNode({ ...base, storage: MemoryStorage.bootstrap("c", CFG), ...over })).toThrow(message);
  });

  test("heartbeatTick just under electionTick, and limits of 1, are taken", () => {
    expect(() => new RawNode({ ...base, storage: MemoryStorage.bootstrap("c", CFG), heartbeatTick: 9, maxInflight: 1, maxMsgBytes: 1 })).not.toThrow();
  });

  test("a snapshot at the anchor gives the base configuration; the CONFIG entries after it override it in order", () => {
    const s = storageOf([1, 1]);
    const four = configOfIds(["n1", "n2", "n3", "n4"]);
    s.append([chainEntry(4, 1, EntryKind.Config, s.entry(3).hash, encodeConfig(four))]);
    s.setHardState({ term: 1, vote: null, commit: 4 });
    s.createSnapshot({ meta: { index: 3, term: 1, hash: s.entry(3).hash, config: configOfIds(["n1", "n2"]) }, data: utf8("s") });
    const raw = new RawNode({ ...base, storage: s });
    expect(configsEqual(raw.configAt(3), configOfIds(["n1", "n2"]))).toBe(true);
    expect(configsEqual(raw.configAt(4), four)).toBe(true);
    expect(genesisHash("c")).toEqual(MemoryStorage.bootstrap("c", CFG).anchor().hash);
  });
});

describe("configsEqual", () => {
  test("compares voters and learners with address and key, in order; nothing else", () => {
    const a = configOfIds(["n1", "n2"], ["n3"]);
    expect(configsEqual(a, configOfIds(["n2", "n1"], ["n3"]))).toBe(true); // configOfIds sorts
    expect(configsEqual(a, configOfIds(["n1", "n2"]))).toBe(false);
    expect(configsEqual(a, configOfIds(["n1", "n2", "n3"]))).toBe(false);
    expect(configsEqual(a, configOfIds(["n1"], ["n2", "n3"]))).toBe(false);
    const moved = { ...a, voters: a.voters.map((m) => (m.id === "n2" ? { ...m, address: "10.0.0.2:1" } : m)) };
    expect(configsEqual(a, moved)).toBe(false);
    const rekeyed = { ...a, learners: a.learners.map((m) => ({ ...m, public_key: "ab".repeat(32) })) };
    expect(configsEqual(a, rekeyed)).toBe(false);
  });
});

describe("RawNode's Ready protocol", () => {
  const make = (s: MemoryStorage): RawNode =>
    new RawNode({ id: "n1", storage: s, electionTick: 10, heartbeatTick: 1, preVote: true, checkQuorum: true, maxMsgBytes: 1 << 20, maxInflight: 4, rng: new Prng(1) });

  test("no input while a Ready is outstanding, no advance without one", () => {
    const raw = make(MemoryStorage.bootstrap("c", CFG));
    expect(() => raw.advance(raw.ready())).not.toThrow();
    expect(() => raw.advance({ softState: null, hardState: null, snapshot: null, entries: [], committedEntries: [], messages: [], readStates: [], reports: [], halted: null }))
      .toThrow("rawnode: advance() without a Ready");
    const rd = raw.ready();
    expect(() => raw.tick()).toThrow("rawnode: call advance() before feeding more input");
    raw.advance(rd);
    expect(() => raw.tick()).not.toThrow();
  });

  test("the bootstrap entry is handed over committed once; a snapshot may be made only at an applied index", () => {
    const raw = make(MemoryStorage.bootstrap("c", CFG));
    expect(raw.hasReady()).toBe(true);
    expect(() => raw.snapshotMeta(1)).toThrow("rawnode: snapshot at 1 beyond applied 0");
    const rd = raw.ready();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([1]);
    raw.advance(rd);
    expect(raw.hasReady()).toBe(false);
    const meta = raw.snapshotMeta(1);
    expect([meta.index, meta.term]).toEqual([1, 1]);
    expect(configsEqual(meta.config, CFG)).toBe(true);
  });
});

describe("what a leader refuses, and why", () => {
  /** A one-voter cluster whose node has elected itself and applied its NOOP. */
  function soloLeader(maxProposalBytes?: number): RawNode {
    const s = MemoryStorage.bootstrap("c", configOfIds(["n1"]));
    const raw = new RawNode({
      id: "n1", storage: s, electionTick: 10, heartbeatTick: 1, preVote: true, checkQuorum: true, maxMsgBytes: 1 << 20, maxInflight: 4, rng: new Prng(1),
      ...(maxProposalBytes === undefined ? {} : { maxProposalBytes }),
    });
    for (let i = 0; i < 200 && !(raw.status().role === "leader" && !raw.hasReady()); i++) {
      if (!raw.hasReady()) raw.tick();
      while (raw.hasReady()) {
        const rd = raw.ready();
        if (rd.hardState !== null) s.setHardState(rd.hardState);
        s.append(rd.entries);
        raw.advance(rd);
      }
    }
    expect(raw.status().role).toBe("leader");
    return raw;
  }

  test("a proposal over maxProposalBytes is too_large (at it, taken); a CONFIG through propose is config_invalid", () => {
    const raw = soloLeader(100);
    expect(raw.propose(EntryKind.Record, new Uint8Array(100))).toMatchObject({ ok: true });
    expect(raw.propose(EntryKind.Record, new Uint8Array(101))).toEqual({ ok: false, reason: "too_large", leader: "n1" });
    expect(raw.propose(EntryKind.Config, encodeConfig(CFG))).toEqual({ ok: false, reason: "config_invalid", leader: "n1" });
    const big = soloLeader();
    expect(big.propose(EntryKind.Record, new Uint8Array(1 << 20))).toMatchObject({ ok: true });
    expect(big.propose(EntryKind.Record, new Uint8Array((1 << 20) + 1))).toMatchObject({ ok: false, reason: "too_large" });
  });

  test("a configuration without voters, or changing two voters at once, is config_invalid", () => {
    const raw = soloLeader();
    expect(raw.proposeConfig(configOfIds([], ["n1"]))).toMatchObject({ ok: false, reason: "config_invalid" });
    expect(raw.proposeConfig(configOfIds(["n1", "n2", "n3"]))).toMatchObject({ ok: false, reason: "config_invalid" });
    expect(raw.proposeConfig(configOfIds(["n2"]))).toMatchObject({ ok: false, reason: "config_invalid" }); // n1 out, n2 in
  });

  test("ReadIndex needs a positive ctx; a one-voter leader answers it at once", () => {
    const raw = soloLeader();
    expect(() => raw.readIndex(0)).toThrow("raft: read ctx must be positive");
    const r = raw.readIndex(7);
    expect(r).toMatchObject({ ok: true });
    expect(raw.ready().readStates).toEqual([{ ctx: 7, index: (r as { index: number }).index }]);
  });

  test("leadership goes only to another voter; a follower refuses proposals and transfers as not_leader", () => {
    const raw = soloLeader();
    expect(raw.transferLeader("n1")).toMatchObject({ ok: false, reason: "config_invalid" });
    expect(raw.transferLeader("n9")).toMatchObject({ ok: false, reason: "config_invalid" });
    const follower = new RawNode({ id: "n1", storage: MemoryStorage.bootstrap("c", CFG), electionTick: 10, heartbeatTick: 1, preVote: true, checkQuorum: true, maxMsgBytes: 1 << 20, maxInflight: 4, rng: new Prng(1) });
    expect(follower.propose(EntryKind.Record, new Uint8Array(1))).toEqual({ ok: false, reason: "not_leader", leader: null });
    expect(follower.proposeConfig(CFG)).toMatchObject({ ok: false, reason: "not_leader" });
    expect(follower.transferLeader("n2")).toMatchObject({ ok: false, reason: "not_leader" });
    expect(follower.readIndex(1)).toMatchObject({ ok: false, reason: "not_leader" });
  });
});

describe("terms of incoming messages (Raft 5.1, PreVote and CheckQuorum, thesis 9.6)", () => {
  /** n1 of n1..n3 at term 5, no vote, no leader known, its log the bootstrap entry; sent messages come back from out(). */
  function at5(opts: { checkQuorum?: boolean; preVote?: boolean; vote?: string } = {}): { raw: RawNode; out: () => readonly Message[] } {
    const s = MemoryStorage.bootstrap("c", CFG);
    s.setHardState({ term: 5, vote: opts.vote ?? null, commit: 1 });
    const raw = new RawNode({
      id: "n1", storage: s, electionTick: 10, heartbeatTick: 1, preVote: opts.preVote ?? true, checkQuorum: opts.checkQuorum ?? true,
      maxMsgBytes: 1 << 20, maxInflight: 4, rng: new Prng(1),
    });
    const out = (): readonly Message[] => {
      if (!raw.hasReady()) return [];
      const rd = raw.ready();
      if (rd.hardState !== null) s.setHardState(rd.hardState);
      s.append(rd.entries);
      raw.advance(rd);
      return rd.messages;
    };
    out();
    return { raw, out };
  }
  const genesis = MemoryStorage.bootstrap("c", CFG).entry(1);
  const appendAt = (term: number, from = "n2"): Message => ({ type: "Append", from, to: "n1", term, prevIndex: 1, prevTerm: 1, prevHash: genesis.hash, entries: [], commit: 1 });
  const heartbeatAt = (term: number): Message => ({ type: "Heartbeat", from: "n2", to: "n1", term, commit: 1, commitHash: genesis.hash, readCtx: 0 });
  const preVoteAt = (term: number, from = "n2", lastIndex = 1, lastTerm = 1): Message => ({ type: "PreVote", from, to: "n1", term, lastIndex, lastTerm });
  const voteAt = (term: number, from = "n2", transfer = false, lastIndex = 1, lastTerm = 1): Message => ({ type: "Vote", from, to: "n1", term, lastIndex, lastTerm, transfer });
  const staleReject = { type: "AppendResp", from: "n1", to: "n2", term: 5, reject: true, index: 0, hintIndex: 0, hintTerm: 0 };

  test("a Ready carries the soft state only when the role or the leader changed", () => {
    const s = MemoryStorage.bootstrap("c", CFG);
    s.setHardState({ term: 5, vote: null, commit: 1 });
    const raw = new RawNode({ id: "n1", storage: s, electionTick: 10, heartbeatTick: 1, preVote: true, checkQuorum: true, maxMsgBytes: 1 << 20, maxInflight: 4, rng: new Prng(1) });
    const soft = (): unknown => {
      expect(raw.hasReady()).toBe(true);
      const rd = raw.ready();
      if (rd.hardState !== null) s.setHardState(rd.hardState);
      s.append(rd.entries);
      raw.advance(rd);
      return rd.softState;
    };
    soft(); // the bootstrap entry
    raw.step(appendAt(5));
    expect(soft()).toEqual({ role: "follower", lead: "n2" }); // the leader changed, the role did not
    raw.step(appendAt(5));
    expect(soft()).toBeNull(); // nothing changed: an answer to send, no soft state
    raw.step(appendAt(6, "n3"));
    expect(soft()).toEqual({ role: "follower", lead: "n3" });
    raw.campaign();
    expect(soft()).toEqual({ role: "pre-candidate", lead: null }); // both changed
  });

  test("a stale Append or Heartbeat is told the term moved on (with CheckQuorum or PreVote), a stale PreVote is refused, a stale Vote ignored", () => {
    const { raw, out } = at5();
    raw.step(appendAt(3));
    expect(out()).toEqual([staleReject]);
    raw.step(heartbeatAt(4));
    expect(out()).toEqual([staleReject]);
    raw.step(preVoteAt(4));
    expect(out()).toEqual([{ type: "PreVoteResp", from: "n1", to: "n2", term: 5, reject: true }]);
    raw.step(voteAt(4));
    expect(out()).toEqual([]);
    expect(raw.status()).toMatchObject({ term: 5, role: "follower", lead: null });
    for (const o of [{ checkQuorum: false, preVote: true }, { checkQuorum: true, preVote: false }]) {
      const one = at5(o);
      one.raw.step(appendAt(3));
      expect(one.out()).toEqual([staleReject]);
    }
    const neither = at5({ checkQuorum: false, preVote: false });
    neither.raw.step(appendAt(3));
    neither.raw.step(heartbeatAt(3));
    expect(neither.out()).toEqual([]);
  });

  test("a higher term: a leader's message makes it the leader; a Vote moves the term without a leader; a PreVote, or a PreVote granted, moves nothing", () => {
    const a = at5();
    a.raw.step(appendAt(7));
    expect(a.raw.status()).toMatchObject({ term: 7, role: "follower", lead: "n2" });
    const v = at5();
    v.raw.step(voteAt(7, "n3"));
    expect(v.raw.status()).toMatchObject({ term: 7, lead: null, vote: "n3" });
    expect(v.out()).toEqual([{ type: "VoteResp", from: "n1", to: "n3", term: 7, reject: false }]);
    const p = at5();
    p.raw.step(preVoteAt(7, "n3"));
    expect(p.raw.status()).toMatchObject({ term: 5, vote: null });
    expect(p.out()).toEqual([{ type: "PreVoteResp", from: "n1", to: "n3", term: 7, reject: false }]);
    p.raw.step({ type: "PreVoteResp", from: "n3", to: "n1", term: 8, reject: false });
    expect(p.raw.status().term).toBe(5);
    p.raw.step({ type: "PreVoteResp", from: "n3", to: "n1", term: 8, reject: true });
    expect(p.raw.status()).toMatchObject({ term: 8, role: "follower" });
  });

  test("while it hears a leader (CheckQuorum), a PreVote or Vote of a higher term is ignored, unless the Vote is a leadership transfer", () => {
    const { raw, out } = at5();
    raw.step(appendAt(5));
    out();
    raw.step(preVoteAt(6, "n3"));
    raw.step(voteAt(6, "n3"));
    expect(out()).toEqual([]);
    expect(raw.status()).toMatchObject({ term: 5, lead: "n2" });
    raw.step(voteAt(6, "n3", true));
    expect(out()).toEqual([{ type: "VoteResp", from: "n1", to: "n3", term: 6, reject: false }]);
    const free = at5({ checkQuorum: false });
    free.raw.step(appendAt(5));
    free.out();
    free.raw.step(voteAt(6, "n3"));
    expect(free.out()).toEqual([{ type: "VoteResp", from: "n1", to: "n3", term: 6, reject: false }]);
  });

  test("one vote per term: again to the same candidate, never to another; never to a log behind its own", () => {
    const { raw, out } = at5({ vote: "n2" });
    raw.step(voteAt(5, "n2"));
    expect(out()).toEqual([{ type: "VoteResp", from: "n1", to: "n2", term: 5, reject: false }]);
    raw.step(voteAt(5, "n3"));
    expect(out()).toEqual([{ type: "VoteResp", from: "n1", to: "n3", term: 5, reject: true }]);
    // A PreVote for a later term is judged on the log alone, whatever this term's vote.
    raw.step(preVoteAt(6, "n3"));
    expect(out()).toEqual([{ type: "PreVoteResp", from: "n1", to: "n3", term: 6, reject: false }]);
    raw.step(preVoteAt(6, "n3", 0, 0));
    expect(out()).toEqual([{ type: "PreVoteResp", from: "n1", to: "n3", term: 5, reject: true }]);
    const fresh = at5();
    fresh.raw.step(voteAt(6, "n3", false, 0, 0));
    expect(fresh.out()).toEqual([{ type: "VoteResp", from: "n1", to: "n3", term: 6, reject: true }]);
    expect(fresh.raw.status()).toMatchObject({ term: 6, vote: null });
  });
});

describe("a follower checks what its leader sends (hash chain, committed history)", () => {
  /** n1 at term 2 following n2, its log 1..4 (terms 1,1,2,2), committed up to `commit`. */
  function follower(commit: number): { raw: RawNode; s: MemoryStorage; out: () => { messages: readonly Message[]; reports: readonly { kind: string; index: number; detail: string }[] } } {
    const s = storageOf([1, 2, 2]);
    s.setHardState({ term: 2, vote: null, commit });
    const raw = new RawNode({ id: "n1", storage: s, electionTick: 10, heartbeatTick: 1, preVote: true, checkQuorum: true, maxMsgBytes: 1 << 20, maxInflight: 4, rng: new Prng(1) });
    const out = () => {
      if (!raw.hasReady()) return { messages: [], reports: [] };
      const rd = raw.ready();
      if (rd.hardState !== null) s.setHardState(rd.hardState);
      s.append(rd.entries);
      raw.advance(rd);
      return { messages: rd.messages, reports: rd.reports };
    };
    out();
    return { raw, s, out };
  }
  const append = (s: MemoryStorage, prevIndex: number, entries: Entry[], extra: Record<string, unknown> = {}): Message =>
    ({ type: "Append", from: "n2", to: "n1", term: 2, prevIndex, prevTerm: s.entry(prevIndex).term, prevHash: s.entry(prevIndex).hash, entries, commit: 0, ...extra }) as Message;
  const resp = (over: Record<string, unknown>) => ({ type: "AppendResp", from: "n1", to: "n2", term: 2, hintIndex: 0, hintTerm: 0, ...over });

  test("an Append from below its commit index changes nothing and is answered with that index", () => {
    const { raw, s, out } = follower(3);
    raw.step(append(s, 2, []));
    expect(out().messages).toEqual([resp({ reject: false, index: 3 })]);
    expect(raw.status().lastIndex).toBe(4);
  });

  test("CONFIG entries it has not committed are undone with them: a new leader's entries in their place bring the configuration before back", () => {
    const { raw, s, out } = follower(1);
    const withN4 = configOfIds(["n1", "n2", "n3"], ["n4"]);
    const withN5 = configOfIds(["n1", "n2", "n3"], ["n4", "n5"]);
    const c5 = chainEntry(5, 2, EntryKind.Config, s.entry(4).hash, encodeConfig(withN4));
    const c6 = chainEntry(6, 2, EntryKind.Config, c5.hash, encodeConfig(withN5));
    raw.step(append(s, 4, [c5, c6]));
    out();
    expect(configsEqual(raw.status().config, withN5)).toBe(true);
    // A leader of term 3 keeps 5 and replaces 6: the configuration of 5 is in force again.
    const r6 = chainEntry(6, 3, EntryKind.Record, c5.hash, utf8("r6"));
    raw.step({ ...append(s, 5, [r6]), from: "n3", term: 3 } as Message);
    out();
    expect(raw.status().lastIndex).toBe(6);
    expect(configsEqual(raw.status().config, withN4)).toBe(true);
    // ...and replacing 5 as well brings back the one before both.
    const r5 = chainEntry(5, 3, EntryKind.Record, s.entry(4).hash, utf8("r5"));
    raw.step({ ...append(s, 4, [r5]), from: "n3", term: 3 } as Message);
    out();
    expect(raw.status().lastIndex).toBe(5);
    expect(configsEqual(raw.status().config, CFG)).toBe(true);
  });

  test("a halted node never campaigns: not when asked, not on TimeoutNow, not after any number of ticks", () => {
    const held = follower(3);
    held.raw.step({ ...append(held.s, 3, []), prevHash: new Uint8Array(32) } as Message);
    held.out();
    expect(held.raw.status().halted).not.toBeNull();
    held.raw.campaign();
    held.raw.step({ type: "TimeoutNow", from: "n2", to: "n1", term: 2 });
    for (let t = 0; t < 100; t++) held.raw.tick();
    expect(held.out().messages.filter((m) => m.type === "PreVote" || m.type === "Vote")).toEqual([]);
    expect(held.raw.status()).toMatchObject({ role: "follower", term: 2 });
    // The same node, not halted, campaigns when asked.
    const free = follower(1);
    free.raw.campaign();
    expect(free.out().messages.map((m) => m.type)).toEqual(["PreVote", "PreVote"]);
  });

  test("a prevTerm it does not have is rejected with the fast-backtracking hint", () => {
    const { raw, s, out } = follower(1);
    raw.step({ ...append(s, 4, []), prevTerm: 3 } as Message);
    expect(out().messages).toEqual([resp({ reject: true, index: 4, hintIndex: 4, hintTerm: 2 })]);
    raw.step({ ...append(s, 4, []), prevIndex: 9, prevTerm: 1 } as Message);
    expect(out().messages).toEqual([resp({ reject: true, index: 9, hintIndex: 2, hintTerm: 1 })]);
  });

  test("a different hash at prevIndex is reported and rejected; below commit it halts the node", () => {
    const free = follower(1);
    free.raw.step({ ...append(free.s, 3, []), prevHash: new Uint8Array(32) } as Message);
    const o = free.out();
    expect(o.messages).toEqual([resp({ reject: true, index: 3, hintIndex: 2, hintTerm: 0 })]);
    expect(o.reports.map((r) => [r.kind, r.index])).toEqual([["prev_hash", 3]]);
    expect(free.raw.status().halted).toBeNull();
    const held = follower(3);
    held.raw.step({ ...append(held.s, 3, []), prevHash: new Uint8Array(32) } as Message);
    held.out();
    expect(held.raw.status().halted).toMatch(/^committed history differs from leader n2: hash at 3 \(term 2\)/);
  });

  test("entries out of sequence, or whose hash does not recompute onto the chain, are reported and rejected; nothing is written", () => {
    const { raw, s, out } = follower(1);
    const e5 = next(s.entry(4), 2, "e5");
    const e6 = next(e5, 2, "e6");
    raw.step(append(s, 4, [e6]));
    let o = out();
    expect(o.messages).toEqual([resp({ reject: true, index: 4, hintIndex: 4 })]);
    expect(o.reports.map((r) => [r.kind, r.index, r.detail])).toEqual([["entry_hash", 5, "entry 6 out of sequence"]]);
    raw.step(append(s, 4, [{ ...e5, hash: new Uint8Array(32) }]));
    o = out();
    expect(o.messages).toEqual([resp({ reject: true, index: 4, hintIndex: 4 })]);
    expect(o.reports.map((r) => [r.kind, r.index])).toEqual([["entry_hash", 5]]);
    expect(raw.status().lastIndex).toBe(4);
    raw.step(append(s, 4, [e5, e6], { commit: 9 }));
    o = out();
    expect(o.messages).toEqual([resp({ reject: false, index: 6 })]);
    expect(raw.status()).toMatchObject({ lastIndex: 6, commit: 6 }); // commit: the leader's, at most what it sent
  });

  test("a Heartbeat's commit hash: equal advances commit; different is reported, and below commit halts", () => {
    const { raw, s, out } = follower(1);
    raw.step({ type: "Heartbeat", from: "n2", to: "n1", term: 2, commit: 3, commitHash: s.entry(3).hash, readCtx: 4 });
    expect(out().messages).toEqual([{ type: "HeartbeatResp", from: "n1", to: "n2", term: 2, readCtx: 4 }]);
    expect(raw.status().commit).toBe(3);
    raw.step({ type: "Heartbeat", from: "n2", to: "n1", term: 2, commit: 4, commitHash: new Uint8Array(32), readCtx: 0 });
    const o = out();
    expect(o.reports.map((r) => [r.kind, r.index])).toEqual([["commit_hash", 4]]);
    expect(raw.status()).toMatchObject({ commit: 3, halted: null });
    raw.step({ type: "Heartbeat", from: "n2", to: "n1", term: 2, commit: 9, commitHash: new Uint8Array(32), readCtx: 0 }); // beyond its log: nothing to compare
    expect(raw.status()).toMatchObject({ commit: 3, halted: null });
    raw.step({ type: "Heartbeat", from: "n2", to: "n1", term: 2, commit: 2, commitHash: new Uint8Array(32), readCtx: 0 });
    out();
    expect(raw.status().halted).toMatch(/^committed history differs from leader n2: hash at 2/);
  });

  test("an InstallSnapshot at or below commit is answered with the commit index; one of history it holds only commits it", () => {
    const { raw, s, out } = follower(3);
    raw.step({ type: "InstallSnapshot", from: "n2", to: "n1", term: 2, snapshot: snapshotAt(s, 2) });
    expect(out().messages).toEqual([resp({ reject: false, index: 3 })]);
    raw.step({ type: "InstallSnapshot", from: "n2", to: "n1", term: 2, snapshot: snapshotAt(s, 4) });
    expect(out().messages).toEqual([resp({ reject: false, index: 4 })]);
    expect(raw.status()).toMatchObject({ commit: 4, lastIndex: 4, firstIndex: 1 });
  });
});
