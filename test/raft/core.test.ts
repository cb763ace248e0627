// Focused tests of single rules of the core, driven by hand-made messages.
import { utf8 } from "../../src/ledger/bytes";
import { chainEntry, EntryKind, genesisHash, type Entry } from "../../src/ledger/entry";
import { AssertionError } from "../../src/util/assert";
import { configOfIds, encodeConfig, makeConfig, mustDecodeConfig } from "../../src/raft/config";
import { RaftLog } from "../../src/raft/log";
import { Prng } from "../../src/raft/prng";
import type { RaftConfig } from "../../src/raft/raft";
import { RawNode } from "../../src/raft/rawnode";
import { MemoryStorage } from "../../src/raft/storage";
import { KvStateMachine, encodePut } from "../../src/raft/sim/kv";
import type { AppendMsg, Message, Ready } from "../../src/raft/types";
import { extend } from "../support/raft-log";

const CFG3 = configOfIds(["n1", "n2", "n3"]);

function node(id: string, storage: MemoryStorage, extra: Partial<RaftConfig> = {}): RawNode {
  return new RawNode({
    id,
    storage,
    electionTick: 10,
    heartbeatTick: 1,
    preVote: true,
    checkQuorum: true,
    maxMsgBytes: 1 << 20,
    maxInflight: 4,
    rng: new Prng(1),
    ...extra,
  });
}

/** Persists and applies a Ready the way the runtime must, returning it for inspection. */
function handle(raw: RawNode, storage: MemoryStorage): Ready {
  const rd = raw.ready();
  if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot);
  storage.append(rd.entries);
  if (rd.hardState !== null) storage.setHardState(rd.hardState);
  raw.advance(rd);
  return rd;
}


/** n1 campaigns (pre-vote off) and n2 grants its vote of `term`: n1 leads with its NOOP appended. Returns the election's Ready. */
function electN1(raw: RawNode, storage: MemoryStorage, term: number): Ready {
  raw.campaign();
  handle(raw, storage);
  raw.step({ type: "VoteResp", from: "n2", to: "n1", term, reject: false });
  return handle(raw, storage);
}

function append(storage: MemoryStorage, prevIndex: number, entries: Entry[], extra: Partial<AppendMsg> = {}): AppendMsg {
  const prev = storage.entry(prevIndex);
  return { type: "Append", from: "n1", to: "n2", term: 2, prevIndex, prevTerm: prev.term, prevHash: prev.hash, entries, commit: 0, ...extra };
}

describe("config payload", () => {
  test("round-trips as canonical JSON with members sorted by id", () => {
    const [a, b, c] = ["aa", "bb", "cc"].map((x) => x.repeat(32));
    const cfg = makeConfig(
      [
        { id: "n2", address: "127.0.0.1:8081", public_key: b },
        { id: "n1", address: "127.0.0.1:8080", public_key: a },
      ],
      [{ id: "n3", address: "127.0.0.1:8082", public_key: c }],
    );
    const bytes = encodeConfig(cfg);
    expect(new TextDecoder().decode(bytes)).toBe(
      `{"learners":[{"address":"127.0.0.1:8082","id":"n3","public_key":"${c}"}],"v":1,"voters":[{"address":"127.0.0.1:8080","id":"n1","public_key":"${a}"},{"address":"127.0.0.1:8081","id":"n2","public_key":"${b}"}]}`,
    );
    expect(mustDecodeConfig(bytes)).toEqual(cfg);
  });
  test("rejects duplicates and other versions", () => {
    expect(() => configOfIds(["n1", "n1"])).toThrow(/duplicate/);
    expect(() => configOfIds(["n1"], ["n1"])).toThrow(/duplicate/);
    expect(() => mustDecodeConfig(utf8('{"learners":[],"v":2,"voters":[]}'))).toThrow(/version/);
    expect(() => makeConfig([{ id: "n1", address: "", public_key: "aa" }])).toThrow(/public_key/);
  });
});

describe("follower checks the hash chain", () => {
  test("an entry whose hash does not recompute is rejected and reported; nothing is appended", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const raw = node("n2", s);
    const good = chainEntry(2, 2, EntryKind.Noop, s.entry(1).hash, new Uint8Array(0));
    const forged: Entry = { ...chainEntry(3, 2, EntryKind.Record, good.hash, utf8("real")), payload: utf8("forged") };
    raw.step(append(s, 1, [good, forged]));
    const rd = handle(raw, s);
    expect(rd.reports).toEqual([expect.objectContaining({ kind: "entry_hash", index: 3 })]);
    expect(rd.entries).toEqual([]);
    expect(rd.messages).toEqual([expect.objectContaining({ type: "AppendResp", reject: true })]);
    expect(raw.status().lastIndex).toBe(1);
  });

  test("a prevHash that differs from ours at a committed index halts the node loudly", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const raw = node("n2", s);
    raw.step({ ...append(s, 1, []), prevHash: new Uint8Array(32) });
    const rd = handle(raw, s);
    expect(rd.reports[0].kind).toBe("prev_hash");
    expect(rd.halted).toMatch(/committed history differs/);
    expect(raw.status().halted).not.toBeNull();
    raw.step(append(s, 1, []));
    expect(raw.hasReady()).toBe(false);
  });

  test("a heartbeat whose commit hash differs from our committed entry halts the node", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const raw = node("n2", s);
    raw.step({ type: "Heartbeat", from: "n1", to: "n2", term: 2, commit: 1, commitHash: new Uint8Array(32), readCtx: 0 });
    const rd = handle(raw, s);
    expect(rd.reports[0].kind).toBe("commit_hash");
    expect(rd.halted).toMatch(/differs/);
  });

  test("a correct chain is accepted and acknowledged only in the Ready that persists it", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const leaderLog = MemoryStorage.bootstrap("c", CFG3);
    const es = extend(leaderLog, [2, 2, 2]);
    const raw = node("n2", s);
    raw.step(append(leaderLog, 1, es, { commit: 3 }));
    const rd = handle(raw, s);
    expect(rd.entries.map((e) => e.index)).toEqual([2, 3, 4]);
    expect(rd.hardState).toEqual({ term: 2, vote: null, commit: 3 });
    expect(rd.messages).toEqual([expect.objectContaining({ type: "AppendResp", reject: false, index: 4 })]);
  });
});

describe("log rules", () => {
  test("the log refuses to truncate at or below the commit index", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    extend(s, [2, 2]);
    s.setHardState({ term: 2, vote: null, commit: 3 });
    const log = new RaftLog(s, 0);
    const other = chainEntry(3, 3, EntryKind.Noop, s.entry(2).hash, new Uint8Array(0));
    expect(() => log.append([other])).toThrow(AssertionError);
  });

  test("fast backtracking: the hint skips a whole conflicting term in one round trip", () => {
    const follower = MemoryStorage.bootstrap("c", CFG3);
    extend(follower, [2, 2, 2, 3, 3, 3, 3, 3, 3, 3]); // 2..11
    const log = new RaftLog(follower, 0);
    // Leader's Append at prevIndex 40 of term 5: the follower answers with its last index of term <= 5.
    expect(log.findConflictByTerm(Math.min(40, log.lastIndex()), 5)).toEqual({ index: 11, term: 3 });
    // A leader whose log has term 4 from index 5 gets back to index 4 (term 2) in one step.
    expect(log.findConflictByTerm(11, 2)).toEqual({ index: 4, term: 2 });
  });

  test("the conflicting uncommitted suffix is replaced, never merged", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    extend(s, [2, 2, 2]); // 2..4 of term 2, commit 1
    const raw = node("n2", s);
    const leader = MemoryStorage.bootstrap("c", CFG3);
    const es = extend(leader, [2, 3]);
    expect(es[0].hash).toEqual(s.entry(2).hash);
    raw.step(append(leader, 1, es, { term: 3 }));
    const rd = handle(raw, s);
    expect(rd.entries.map((e) => `${e.index}/${e.term}`)).toEqual(["3/3"]);
    expect(s.lastIndex()).toBe(3);
    expect(s.entry(3).term).toBe(3);
  });
});

describe("persistence contract", () => {
  test("a vote is in the same Ready as the reply that depends on it", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const raw = node("n2", s);
    raw.step({ type: "Vote", from: "n3", to: "n2", term: 2, lastIndex: 1, lastTerm: 1, transfer: false });
    const rd = handle(raw, s);
    expect(rd.hardState).toEqual({ term: 2, vote: "n3", commit: 1 });
    expect(rd.messages).toEqual([expect.objectContaining({ type: "VoteResp", reject: false })]);
    expect(s.hardState().vote).toBe("n3");
  });

  test("a leader counts its own entry toward commit only after it was persisted", () => {
    const s = MemoryStorage.bootstrap("c", configOfIds(["n1"]));
    const raw = node("n1", s);
    raw.campaign();
    const rd1 = handle(raw, s); // becomes leader, NOOP at 2 not yet durable
    expect(rd1.entries.map((e) => e.kind)).toEqual([EntryKind.Noop]);
    expect(rd1.committedEntries.map((e) => e.index)).toEqual([1]);
    const rd2 = handle(raw, s); // now durable: commits
    expect(rd2.hardState?.commit).toBe(2);
    expect(rd2.committedEntries.map((e) => e.index)).toEqual([2]);
    const p = raw.propose(EntryKind.Record, utf8("x"));
    expect(p).toEqual({ ok: true, index: 3, term: 2 });
    const rd3 = handle(raw, s);
    expect(rd3.committedEntries).toEqual([]);
    expect(handle(raw, s).committedEntries.map((e) => e.index)).toEqual([3]);
  });

  test("input between ready() and advance() is refused", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const raw = node("n2", s);
    raw.ready();
    expect(() => raw.tick()).toThrow(/advance/);
  });
});

describe("counting votes (Raft 5.2)", () => {
  const CFG5 = configOfIds(["n1", "n2", "n3", "n4", "n5"]);
  const vote = (from: string, term: number, reject: boolean, pre = false): Message =>
    ({ type: pre ? "PreVoteResp" : "VoteResp", from, to: "n1", term, reject }) as Message;

  test("of five voters, two refusals leave a candidate campaigning; the third sends it back to follower in its term", () => {
    const s = MemoryStorage.bootstrap("c", CFG5);
    const raw = node("n1", s, { preVote: false, checkQuorum: false });
    raw.campaign();
    handle(raw, s);
    expect(raw.status()).toMatchObject({ role: "candidate", term: 2, vote: "n1" });
    raw.step(vote("n2", 2, true));
    raw.step(vote("n3", 2, true));
    handle(raw, s);
    expect(raw.status()).toMatchObject({ role: "candidate", term: 2 });
    raw.step(vote("n4", 2, true));
    handle(raw, s);
    expect(raw.status()).toMatchObject({ role: "follower", term: 2, lead: null });
  });

  test("only the answers of the round's kind from voters count: a learner's grant, or a VoteResp to a pre-candidate, changes nothing", () => {
    const s = MemoryStorage.bootstrap("c", configOfIds(["n1", "n2", "n3"], ["n4"]));
    const raw = node("n1", s, { preVote: true, checkQuorum: false });
    raw.campaign();
    handle(raw, s);
    raw.step(vote("n4", 2, false, true)); // a learner's pre-vote grant
    raw.step(vote("n2", 1, false)); // a real vote of its own term, in a pre-vote round
    handle(raw, s);
    expect(raw.status()).toMatchObject({ role: "pre-candidate", term: 1 });
    raw.step(vote("n2", 2, false, true));
    handle(raw, s);
    expect(raw.status()).toMatchObject({ role: "candidate", term: 2 });
    raw.step(vote("n4", 2, false)); // the learner again, now for real: still no majority of voters
    raw.step(vote("n3", 3, false, true)); // a pre-vote grant (they carry the next term) in the real round
    handle(raw, s);
    expect(raw.status()).toMatchObject({ role: "candidate", term: 2 });
    raw.step(vote("n3", 2, false));
    handle(raw, s);
    expect(raw.status().role).toBe("leader");
  });

  test("a pre-candidate that wins its round asks for real votes, not as a leadership transfer; granted by a majority it leads", () => {
    const s = MemoryStorage.bootstrap("c", CFG5);
    const raw = node("n1", s, { preVote: true, checkQuorum: false });
    raw.campaign();
    const pre = handle(raw, s).messages.filter((m) => m.type === "PreVote");
    expect(pre.map((m) => m.to).sort()).toEqual(["n2", "n3", "n4", "n5"]);
    expect(raw.status()).toMatchObject({ role: "pre-candidate", term: 1 });
    raw.step(vote("n2", 2, false, true));
    handle(raw, s);
    expect(raw.status().role).toBe("pre-candidate"); // itself and n2: two of five
    raw.step(vote("n3", 2, false, true));
    const votes = handle(raw, s).messages.filter((m) => m.type === "Vote");
    expect(raw.status()).toMatchObject({ role: "candidate", term: 2 });
    expect(votes.map((m) => [m.to, m.term, m.type === "Vote" && m.transfer])).toEqual([["n2", 2, false], ["n3", 2, false], ["n4", 2, false], ["n5", 2, false]]);
    raw.step(vote("n4", 2, false));
    raw.step(vote("n5", 2, false));
    handle(raw, s);
    expect(raw.status()).toMatchObject({ role: "leader", term: 2, lead: "n1" });
  });
});

describe("leader replication limits", () => {
  function leaderWithFollowers(extra: Partial<RaftConfig>): { raw: RawNode; s: MemoryStorage; sent: Message[] } {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const raw = node("n1", s, extra);
    raw.campaign();
    handle(raw, s);
    raw.step({ type: "PreVoteResp", from: "n2", to: "n1", term: 2, reject: false });
    handle(raw, s);
    raw.step({ type: "VoteResp", from: "n2", to: "n1", term: 2, reject: false });
    handle(raw, s);
    expect(raw.status().role).toBe("leader");
    // n2 acknowledges the NOOP: it is now in Replicate state.
    raw.step({ type: "AppendResp", from: "n2", to: "n1", term: 2, reject: false, index: 2, hintIndex: 0, hintTerm: 0 });
    handle(raw, s);
    return { raw, s, sent: [] };
  }

  test("Appends are bounded by bytes and the inflight window bounds pipelining", () => {
    const { raw, s } = leaderWithFollowers({ maxMsgBytes: 300, maxInflight: 2 });
    const sent: AppendMsg[] = [];
    for (let i = 0; i < 20; i++) {
      raw.propose(EntryKind.Record, new Uint8Array(100));
      for (const m of handle(raw, s).messages) if (m.type === "Append" && m.to === "n2") sent.push(m);
    }
    const withEntries = sent.filter((m) => m.entries.length > 0);
    expect(withEntries.length).toBe(2); // window full: n2 has not answered
    for (const m of withEntries) expect(m.entries.reduce((b, e) => b + e.payload.length + 56, 0)).toBeLessThanOrEqual(300);
    // An acknowledgement frees the window and the rest streams in byte-bounded batches.
    const last = withEntries[1].prevIndex + withEntries[1].entries.length;
    raw.step({ type: "AppendResp", from: "n2", to: "n1", term: 2, reject: false, index: last, hintIndex: 0, hintTerm: 0 });
    const more = handle(raw, s).messages.filter((m): m is AppendMsg => m.type === "Append" && m.to === "n2");
    expect(more.length).toBe(2);
    expect(more[0].prevIndex).toBe(last);
  });

  test("a rejection in Probe moves next to the follower's hint (never below match + 1); a stale one is ignored", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const raw = node("n1", s, { preVote: false });
    electN1(raw, s, 2);
    for (let i = 0; i < 3; i++) raw.propose(EntryKind.Record, new Uint8Array(10));
    handle(raw, s); // log 1..5; n3's probe (prev 1, the NOOP) unanswered, so the proposals wait
    // n3 rejects prev 1, its hint the start of the log: the next probe sends everything.
    raw.step({ type: "AppendResp", from: "n3", to: "n1", term: 2, reject: true, index: 1, hintIndex: 0, hintTerm: 0 });
    const probe = handle(raw, s).messages.filter((m): m is AppendMsg => m.type === "Append" && m.to === "n3");
    expect(probe.map((m) => [m.prevIndex, m.entries.map((e) => e.index)])).toEqual([[0, [1, 2, 3, 4, 5]]]);
    // A rejection of an index it did not send now is stale: nothing is sent.
    raw.step({ type: "AppendResp", from: "n3", to: "n1", term: 2, reject: true, index: 4, hintIndex: 0, hintTerm: 0 });
    expect(handle(raw, s).messages.filter((m) => m.to === "n3")).toEqual([]);
    raw.step({ type: "AppendResp", from: "n3", to: "n1", term: 2, reject: false, index: 5, hintIndex: 0, hintTerm: 0 });
    handle(raw, s);
    expect(raw.status().commit).toBe(5);
  });

  test("a rejection's hint with a term backs next up to the leader's last index of at most that term; without one, to the hint itself", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    extend(s, [1, 1, 3, 3]); // 2..5: terms 1, 1, 3, 3
    s.setHardState({ term: 3, vote: null, commit: 1 });
    const raw = node("n1", s, { preVote: false, checkQuorum: false });
    const elected = electN1(raw, s, 4);
    expect(raw.status()).toMatchObject({ role: "leader", term: 4 });
    const probeTo = (rd: Ready, to: string): AppendMsg[] => rd.messages.filter((m): m is AppendMsg => m.type === "Append" && m.to === to);
    const first = probeTo(elected, "n3");
    expect(first.map((m) => m.prevIndex)).toEqual([5]);
    // n3 holds index 5 at term 2: the leader's last index of term <= 2 is 3, so it probes at 3.
    raw.step({ type: "AppendResp", from: "n3", to: "n1", term: 4, reject: true, index: 5, hintIndex: 5, hintTerm: 2 });
    expect(probeTo(handle(raw, s), "n3").map((m) => m.prevIndex)).toEqual([3]);
    // n2 gives no term (its log ends at 4): the probe goes to 4 as hinted.
    raw.step({ type: "AppendResp", from: "n2", to: "n1", term: 4, reject: true, index: 5, hintIndex: 4, hintTerm: 0 });
    expect(probeTo(handle(raw, s), "n2").map((m) => m.prevIndex)).toEqual([4]);
  });

  test("a follower left in Snapshot is probed again after two election timeouts without an answer, not a tick sooner", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    extend(s, [1, 1]); // 2..3
    s.setHardState({ term: 1, vote: null, commit: 1 });
    const raw = node("n1", s, { preVote: false, checkQuorum: false });
    electN1(raw, s, 2); // leader of term 2, its NOOP at 4
    raw.step({ type: "AppendResp", from: "n2", to: "n1", term: 2, reject: false, index: 4, hintIndex: 0, hintTerm: 0 });
    handle(raw, s);
    handle(raw, s);
    expect(raw.status()).toMatchObject({ commit: 4, applied: 4 });
    s.createSnapshot({ meta: raw.snapshotMeta(4), data: utf8("state@4") });
    // n3 has nothing the leader still holds: its probe (prev 3) is rejected down to 0, which is compacted away.
    raw.step({ type: "AppendResp", from: "n3", to: "n1", term: 2, reject: true, index: 3, hintIndex: 0, hintTerm: 0 });
    const sent = handle(raw, s).messages.filter((m) => m.to === "n3");
    expect(sent.map((m) => m.type)).toEqual(["InstallSnapshot"]);
    const toN3 = (): string[] => {
      raw.step({ type: "HeartbeatResp", from: "n3", to: "n1", term: 2, readCtx: 0 });
      return handle(raw, s).messages.filter((m) => m.to === "n3" && m.type !== "Heartbeat").map((m) => m.type);
    };
    const electionTick = 10;
    for (let t = 1; t < 2 * electionTick; t++) {
      raw.tick();
      handle(raw, s);
      expect({ t, sent: toN3() }).toEqual({ t, sent: [] }); // in Snapshot: paused, whatever n3 says
    }
    // The 20th tick gives up on the snapshot: Probe resumes after it, and the next answer gets an Append at the anchor.
    raw.tick();
    handle(raw, s);
    raw.step({ type: "HeartbeatResp", from: "n3", to: "n1", term: 2, readCtx: 0 });
    const retry = handle(raw, s).messages.filter((m): m is AppendMsg => m.to === "n3" && m.type === "Append");
    expect(retry.map((m) => [m.prevIndex, m.prevTerm])).toEqual([[4, 2]]);
  });

  test("a leadership transfer sends TimeoutNow once the transferee holds the whole log, and only to it", () => {
    const { raw, s } = leaderWithFollowers({ checkQuorum: false });
    for (let i = 0; i < 2; i++) raw.propose(EntryKind.Record, new Uint8Array(10));
    handle(raw, s); // log 1..4; n2 and n3 have 2 at most
    const timeouts = (rd: Ready): string[] => rd.messages.filter((m) => m.type === "TimeoutNow").map((m) => m.to);
    expect(raw.transferLeader("n3")).toMatchObject({ ok: true });
    expect(timeouts(handle(raw, s))).toEqual([]); // n3 is behind: it gets the entries first
    // n2 catching up is not the transferee: no TimeoutNow.
    raw.step({ type: "AppendResp", from: "n2", to: "n1", term: 2, reject: false, index: 4, hintIndex: 0, hintTerm: 0 });
    expect(timeouts(handle(raw, s))).toEqual([]);
    // n3 at 3 of 4: not yet.
    raw.step({ type: "AppendResp", from: "n3", to: "n1", term: 2, reject: false, index: 3, hintIndex: 0, hintTerm: 0 });
    expect(timeouts(handle(raw, s))).toEqual([]);
    raw.step({ type: "AppendResp", from: "n3", to: "n1", term: 2, reject: false, index: 4, hintIndex: 0, hintTerm: 0 });
    expect(timeouts(handle(raw, s))).toEqual(["n3"]);
  });

  test("a configuration entry takes effect on the leader when appended: a new member is replicated to, a removed one hears nothing more", () => {
    const { raw, s } = leaderWithFollowers({ checkQuorum: false });
    const to = (rd: Ready): string[] => [...new Set(rd.messages.map((m) => m.to))].sort();
    expect(raw.proposeConfig(configOfIds(["n1", "n2", "n3"], ["n4"]))).toMatchObject({ ok: true, index: 3 });
    const added = handle(raw, s);
    expect(to(added)).toEqual(["n2", "n4"]); // n3 still waits on its unanswered probe
    const probe = added.messages.find((m): m is AppendMsg => m.type === "Append" && m.to === "n4");
    expect(probe?.prevIndex).toBe(3); // a new member's progress starts after the leader's log
    raw.step({ type: "AppendResp", from: "n2", to: "n1", term: 2, reject: false, index: 3, hintIndex: 0, hintTerm: 0 });
    handle(raw, s);
    expect(raw.status().commit).toBe(3);
    // n3 leaves: from the CONFIG entry on, the leader sends it nothing, heartbeats included.
    expect(raw.proposeConfig(configOfIds(["n1", "n2"], ["n4"]))).toMatchObject({ ok: true, index: 4 });
    expect(to(handle(raw, s))).toEqual(["n2"]); // n4 waits on its unanswered probe
    raw.tick();
    expect(to(handle(raw, s))).toEqual(["n2", "n4"]); // heartbeats: to every member but n3
  });

  test("a heartbeat's answer frees one slot of a full inflight window: exactly one more Append goes out", () => {
    const { raw, s } = leaderWithFollowers({ maxMsgBytes: 300, maxInflight: 2, checkQuorum: false });
    const toN2 = (rd: Ready): AppendMsg[] => rd.messages.filter((m): m is AppendMsg => m.type === "Append" && m.to === "n2" && m.entries.length > 0);
    let sent = 0;
    for (let i = 0; i < 10; i++) {
      raw.propose(EntryKind.Record, new Uint8Array(100));
      sent += toN2(handle(raw, s)).length;
    }
    expect(sent).toBe(2); // the window is full
    raw.step({ type: "HeartbeatResp", from: "n2", to: "n1", term: 2, readCtx: 0 });
    expect(toN2(handle(raw, s)).length).toBe(1);
    raw.step({ type: "HeartbeatResp", from: "n2", to: "n1", term: 2, readCtx: 0 });
    expect(toN2(handle(raw, s)).length).toBe(1);
  });

  test("ReadIndex: only voters' answers for that ctx count, and a confirmation releases the earlier reads too", () => {
    const { raw, s } = leaderWithFollowers({});
    expect(raw.readIndex(5)).toMatchObject({ ok: true });
    expect(raw.readIndex(6)).toMatchObject({ ok: true });
    handle(raw, s);
    raw.step({ type: "HeartbeatResp", from: "n3", to: "n1", term: 2, readCtx: 99 }); // no such read
    expect(handle(raw, s).readStates).toEqual([]);
    raw.step({ type: "HeartbeatResp", from: "n2", to: "n1", term: 2, readCtx: 6 });
    expect(handle(raw, s).readStates.map((r) => r.ctx)).toEqual([5, 6]);
  });

  test("ReadIndex waits for the leader's NOOP to commit", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const raw = node("n1", s, { preVote: false });
    const elected = electN1(raw, s, 2);
    // Leader of term 2 with its NOOP at index 2, not yet on a majority: no read yet.
    expect(raw.status()).toEqual(expect.objectContaining({ role: "leader", term: 2, commit: 1 }));
    expect(elected.entries.map((e) => [e.index, e.term, e.kind])).toEqual([[2, 2, EntryKind.Noop]]);
    expect(raw.readIndex(1)).toEqual(expect.objectContaining({ ok: false, reason: "not_ready" }));

    // The NOOP commits (n2 holds it): now the read is accepted at the commit index and confirmed
    // by a heartbeat round carrying its ctx; its read state appears once a majority answered.
    raw.step({ type: "AppendResp", from: "n2", to: "n1", term: 2, reject: false, index: 2, hintIndex: 0, hintTerm: 0 });
    handle(raw, s);
    expect(raw.status().commit).toBe(2);
    expect(raw.readIndex(7)).toEqual({ ok: true, index: 2, term: 2 });
    const round = handle(raw, s);
    const beats = round.messages.filter((m) => m.type === "Heartbeat" && m.readCtx === 7).map((m) => m.to).sort();
    expect(beats).toEqual(["n2", "n3"]);
    expect(round.readStates).toEqual([]);
    raw.step({ type: "HeartbeatResp", from: "n3", to: "n1", term: 2, readCtx: 7 });
    expect(handle(raw, s).readStates).toEqual([{ ctx: 7, index: 2 }]);
  });

  test("a learner that has not caught up cannot be promoted", () => {
    const s = MemoryStorage.bootstrap("c", configOfIds(["n1", "n2", "n3"], ["n4"]));
    const raw = node("n1", s, { preVote: false });
    electN1(raw, s, 2);
    raw.step({ type: "AppendResp", from: "n2", to: "n1", term: 2, reject: false, index: 2, hintIndex: 0, hintTerm: 0 });
    handle(raw, s);
    expect(raw.status().commit).toBe(2);
    expect(raw.proposeConfig(configOfIds(["n1", "n2", "n3", "n4"]))).toEqual(expect.objectContaining({ ok: false, reason: "learner_behind" }));
    raw.step({ type: "AppendResp", from: "n4", to: "n1", term: 2, reject: false, index: 2, hintIndex: 0, hintTerm: 0 });
    handle(raw, s);
    expect(raw.proposeConfig(configOfIds(["n1", "n2", "n3", "n4"]))).toEqual(expect.objectContaining({ ok: true }));
  });
});

describe("client sessions in the simulated state machine", () => {
  test("a retried (client, request) is applied once", () => {
    const sm = new KvStateMachine();
    const g = genesisHash("c");
    const e1 = chainEntry(1, 1, EntryKind.Record, g, encodePut({ c: "a", s: 1, k: "k", v: "first" }));
    const e2 = chainEntry(2, 1, EntryKind.Record, e1.hash, encodePut({ c: "b", s: 1, k: "k", v: "other" }));
    const e3 = chainEntry(3, 2, EntryKind.Record, e2.hash, encodePut({ c: "a", s: 1, k: "k", v: "first" }));
    expect(sm.apply(e1).fresh).toBe(true);
    expect(sm.apply(e2).fresh).toBe(true);
    expect(sm.apply(e3).fresh).toBe(false);
    expect(sm.get("k")).toBe("other");
    expect(KvStateMachine.restore(sm.snapshot()).get("k")).toBe("other");
  });
});

describe("elections", () => {
  test("election timeouts are randomized in [electionTick, 2 * electionTick) by the injected PRNG", () => {
    const fired = new Set<number>();
    for (let seed = 1; seed <= 40; seed++) {
      const s = MemoryStorage.bootstrap("c", CFG3);
      const raw = node("n1", s, { rng: new Prng(seed) });
      let t = 0;
      while (raw.status().role === "follower" && t < 100) {
        raw.tick();
        t++;
        handle(raw, s);
      }
      expect(raw.status().role).toBe("pre-candidate");
      // PreVote: campaigning changed no durable state.
      expect(raw.status().term).toBe(1);
      fired.add(t);
    }
    for (const t of fired) expect(t >= 10 && t < 20).toBe(true);
    expect(fired.size).toBeGreaterThan(3);
  });

  test("the same seed gives the same timeout (determinism)", () => {
    const run = (): number => {
      const s = MemoryStorage.bootstrap("c", CFG3);
      const raw = node("n1", s, { rng: new Prng(99) });
      let t = 0;
      for (; raw.status().role === "follower"; t++) {
        raw.tick();
        handle(raw, s);
      }
      return t;
    };
    expect(run()).toBe(run());
  });

  test("a new leader's first entry is a NOOP of its term", () => {
    const s = MemoryStorage.bootstrap("c", configOfIds(["n1"]));
    const raw = node("n1", s);
    raw.campaign();
    const rd = handle(raw, s);
    expect(raw.status().role).toBe("leader");
    expect(rd.entries).toEqual([expect.objectContaining({ index: 2, term: 2, kind: EntryKind.Noop })]);
  });
});

describe("follower checks CONFIG payloads", () => {
  test("a correctly chained CONFIG entry with a malformed payload is rejected and reported", () => {
    const s = MemoryStorage.bootstrap("c", CFG3);
    const raw = node("n2", s);
    const bad = chainEntry(2, 2, EntryKind.Config, s.entry(1).hash, utf8('{"v":1,"voters":"n1"}'));
    raw.step(append(s, 1, [bad]));
    const rd = handle(raw, s);
    expect(rd.reports).toEqual([expect.objectContaining({ kind: "config_payload", index: 2 })]);
    expect(rd.entries).toEqual([]);
    expect(raw.status().config.voters.map((m) => m.id)).toEqual(["n1", "n2", "n3"]);
  });
});

describe("PreVote rounds", () => {
  test("a grant left over from an earlier pre-vote round does not count (found by sim seed 26552, 5 nodes)", () => {
    const s = MemoryStorage.bootstrap("c", configOfIds(["n1", "n2", "n3", "n4", "n5"]));
    const raw = node("n3", s, { checkQuorum: false });
    raw.campaign(); // pre-vote round for term 2
    handle(raw, s);
    for (const from of ["n1", "n2"]) raw.step({ type: "PreVoteResp", from, to: "n3", term: 2, reject: false });
    handle(raw, s); // 3 of 5: now a real candidate at term 2
    expect(raw.status()).toEqual(expect.objectContaining({ role: "candidate", term: 2 }));
    raw.campaign(); // that election failed to finish: a new pre-vote round, for term 3
    handle(raw, s);
    expect(raw.status()).toEqual(expect.objectContaining({ role: "pre-candidate", term: 2 }));
    raw.step({ type: "PreVoteResp", from: "n5", to: "n3", term: 2, reject: false }); // stale, for term 2
    raw.step({ type: "PreVoteResp", from: "n2", to: "n3", term: 3, reject: false });
    handle(raw, s);
    expect(raw.status()).toEqual(expect.objectContaining({ role: "pre-candidate", term: 2 }));
    raw.step({ type: "PreVoteResp", from: "n1", to: "n3", term: 3, reject: false });
    handle(raw, s);
    expect(raw.status()).toEqual(expect.objectContaining({ role: "candidate", term: 3 }));
  });
});

describe("configurations at start", () => {
  /** A log of 1 (bootstrap CONFIG n1..n3), records, a CONFIG of n1..n4 at 4, more records. */
  function storageWithConfigs(): MemoryStorage {
    const s = MemoryStorage.bootstrap("c", CFG3);
    extend(s, [1, 1]);
    const prev = s.entry(3);
    s.append([chainEntry(4, 1, EntryKind.Config, prev.hash, encodeConfig(configOfIds(["n1", "n2", "n3", "n4"])))]);
    extend(s, [1, 1]);
    return s;
  }

  test("the core takes each configuration from the entries the storage lists as CONFIG, not by reading every entry", () => {
    const s = storageWithConfigs();
    expect(s.configIndices(1, 6)).toEqual([1, 4]);
    expect(s.configIndices(2, 3)).toEqual([]);
    expect(s.configIndices(4, 4)).toEqual([4]);
    const read: number[] = [];
    const entry = s.entry.bind(s);
    s.entry = (i: number): Entry => {
      read.push(i);
      return entry(i);
    };
    const raw = node("n1", s);
    expect(raw.configAt(3).voters.map((m) => m.id)).toEqual(["n1", "n2", "n3"]);
    expect(raw.configAt(6).voters.map((m) => m.id)).toEqual(["n1", "n2", "n3", "n4"]);
    expect(read.filter((i) => i !== 6)).toEqual([1, 4]); // the last entry (its term) and the two CONFIG entries
  });

  test("a storage that lists a non-CONFIG entry as one is refused at start", () => {
    const s = storageWithConfigs();
    s.configIndices = () => [1, 2];
    expect(() => node("n1", s)).toThrow(/entry 2 was listed as a CONFIG entry and is not one/);
  });
});
