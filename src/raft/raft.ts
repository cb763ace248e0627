/**
 * The Raft state machine: step(msg) and tick() in, messages and log changes out (collected by
 * RawNode into a Ready). Terms are checked once in step(); per-role behaviour is dispatched in one
 * place (stepLeader / stepCandidate / stepFollower). No I/O, no clock, no ambient randomness.
 */
import { entryHash, EntryKind, type Entry } from "../ledger/entry";
import { bytesEqual, toHex } from "../ledger/bytes";
import { assert } from "../util/assert";
import {
  configPayloadProblem,
  EMPTY_CONFIG,
  encodeConfig,
  isMember,
  isVoter,
  learnerIds,
  quorumSize,
  voterDelta,
  voterIds,
  configProblem,
  mustDecodeConfig,
  type ClusterConfig,
} from "./config";
import { RaftLog } from "./log";
import type { Rng } from "./prng";
import { Progress, ProgressState } from "./progress";
import type { Storage } from "./storage";
import {
  Role,
  type AppendMsg,
  type HardState,
  type HeartbeatMsg,
  type InstallSnapshotMsg,
  type Message,
  type NodeId,
  type ProposeResult,
  type ReadState,
  type VerificationReport,
} from "./types";

export interface RaftConfig {
  readonly id: NodeId;
  readonly storage: Storage;
  /** Last index the caller's state machine applied (persisted with the state). */
  readonly applied?: number;
  /** Ticks without a leader before campaigning (randomized in [electionTick, 2*electionTick)). */
  readonly electionTick: number;
  /** Ticks between leader heartbeats; must be < electionTick. */
  readonly heartbeatTick: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Upper bound of entry bytes in one Append (always at least one entry). */
  readonly maxMsgBytes: number;
  /** Appends in flight per follower in Replicate state. */
  readonly maxInflight: number;
  /** Upper bound of committed entry bytes handed out per Ready. */
  readonly maxCommittedBytes?: number;
  /** Largest proposal payload accepted. */
  readonly maxProposalBytes?: number;
  readonly rng: Rng;
}

interface PendingRead {
  readonly ctx: number;
  readonly index: number;
  readonly acks: Set<NodeId>;
}

/** Ticks a follower may stay in Snapshot state before the leader retries (the snapshot may be lost). */
const SNAPSHOT_RETRY_ELECTIONS = 2;
/** Bound on pending ReadIndex rounds. */
const MAX_PENDING_READS = 4096;

/** Builds the core a RawNode drives: `new Raft(cfg)`, or a harness's subclass (src/raft/sim/mutants.ts). */
export type RaftFactory = (cfg: RaftConfig) => Raft;

export const newRaft: RaftFactory = (cfg) => new Raft(cfg);

export class Raft {
  readonly id: NodeId;
  term: number;
  vote: NodeId | null;
  lead: NodeId | null = null;
  role: Role = Role.Follower;
  readonly log: RaftLog;

  /** Config from the snapshot/anchor, then every CONFIG entry in the log (newest last). */
  private baseConfig: ClusterConfig;
  private configs: { index: number; config: ClusterConfig }[] = [];

  readonly prs = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  reports: VerificationReport[] = [];
  halted: string | null = null;

  electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private snapshotTicks = new Map<NodeId, number>();
  leadTransferee: NodeId | null = null;
  private pendingReads: PendingRead[] = [];
  /** Index of the NOOP this leader appended on election; config changes wait for it to commit. */
  private termStartIndex = 0;

  constructor(private readonly cfg: RaftConfig) {
    assert(cfg.heartbeatTick > 0 && cfg.heartbeatTick < cfg.electionTick, "raft: need 0 < heartbeatTick < electionTick");
    assert(cfg.maxInflight > 0 && cfg.maxMsgBytes > 0, "raft: limits must be positive");
    this.id = cfg.id;
    this.log = new RaftLog(cfg.storage, cfg.applied ?? 0);
    const hs = cfg.storage.hardState();
    // A torn write may keep entries of a newer term than the hard state; never run behind our own log.
    const lastTerm = this.log.lastTerm();
    this.term = Math.max(hs.term, lastTerm);
    this.vote = this.term === hs.term ? hs.vote : null;
    const snap = cfg.storage.snapshot();
    const anchor = cfg.storage.anchor();
    this.baseConfig = snap !== null && snap.meta.index === anchor.index ? snap.meta.config : EMPTY_CONFIG;
    for (const i of cfg.storage.configIndices(anchor.index + 1, this.log.lastIndex())) {
      const e = this.log.entry(i) as Entry;
      assert(e.kind === EntryKind.Config, `storage: entry ${i} was listed as a CONFIG entry and is not one`);
      this.configs.push({ index: i, config: mustDecodeConfig(e.payload) });
    }
    this.becomeFollower(this.term, null);
  }

  // ---- configuration ----

  config(): ClusterConfig {
    return this.configs.length > 0 ? this.configs[this.configs.length - 1].config : this.baseConfig;
  }
  lastConfigIndex(): number {
    return this.configs.length > 0 ? this.configs[this.configs.length - 1].index : this.log.anchor().index;
  }
  /** The configuration in force at index (for snapshots made there). */
  configAt(index: number): ClusterConfig {
    for (let k = this.configs.length - 1; k >= 0; k--) if (this.configs[k].index <= index) return this.configs[k].config;
    return this.baseConfig;
  }
  private promotable(): boolean {
    return this.halted === null && isVoter(this.config(), this.id);
  }

  /** Tracks CONFIG entries among entries just appended at entries[0].index (after truncation). */
  protected noteAppended(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0].index;
    const before = this.configs.length;
    while (this.configs.length > 0 && this.configs[this.configs.length - 1].index >= first) this.configs.pop();
    let changed = this.configs.length !== before;
    for (const e of entries) {
      if (e.kind === EntryKind.Config) {
        this.configs.push({ index: e.index, config: mustDecodeConfig(e.payload) });
        changed = true;
      }
    }
    if (changed) this.onConfigChanged();
  }

  private onConfigChanged(): void {
    if (this.role !== Role.Leader) return;
    const cfg = this.config();
    const members = new Set([...voterIds(cfg), ...learnerIds(cfg)]);
    for (const id of members) {
      const pr = this.prs.get(id);
      if (pr === undefined) {
        this.prs.set(id, new Progress(this.log.lastIndex() + 1, this.cfg.maxInflight, !isVoter(cfg, id)));
      } else {
        pr.isLearner = !isVoter(cfg, id);
      }
    }
    for (const id of [...this.prs.keys()]) if (id !== this.id && !members.has(id)) this.prs.delete(id);
    if (this.leadTransferee !== null && !isVoter(cfg, this.leadTransferee)) this.leadTransferee = null;
  }

  // ---- role transitions ----

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = null;
    }
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.cfg.electionTick + this.cfg.rng.int(this.cfg.electionTick);
    this.votes.clear();
    this.leadTransferee = null;
    this.pendingReads = [];
    this.snapshotTicks.clear();
    this.prs.clear();
  }

  becomeFollower(term: number, lead: NodeId | null): void {
    this.reset(term);
    this.role = Role.Follower;
    this.lead = lead;
  }

  private becomePreCandidate(): void {
    assert(this.role !== Role.Leader, "raft: leader cannot become pre-candidate");
    // Term and vote stay: a PreVote round changes nothing durable (no term inflation).
    this.votes.clear();
    this.lead = null;
    this.role = Role.PreCandidate;
  }

  private becomeCandidate(): void {
    assert(this.role !== Role.Leader, "raft: leader cannot become candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
  }

  private becomeLeader(): void {
    assert(this.role === Role.Candidate, "raft: only a candidate becomes leader");
    this.reset(this.term);
    this.role = Role.Leader;
    this.lead = this.id;
    const cfg = this.config();
    const next = this.log.lastIndex() + 1;
    for (const id of [...voterIds(cfg), ...learnerIds(cfg)]) {
      this.prs.set(id, new Progress(next, this.cfg.maxInflight, !isVoter(cfg, id)));
    }
    if (!this.prs.has(this.id)) this.prs.set(this.id, new Progress(next, this.cfg.maxInflight, true));
    const self = this.prs.get(this.id) as Progress;
    self.maybeUpdate(this.log.stableLastIndex());
    self.becomeReplicate();
    // Leadership is confirmed by a NOOP of this term: it is what commits every earlier entry.
    this.termStartIndex = next;
    this.appendLocal(EntryKind.Noop, new Uint8Array(0));
  }

  /** Starts a PreVote round (or a real election when transferring or PreVote is off). */
  campaign(transfer: boolean): void {
    if (!this.promotable() || this.role === Role.Leader) return;
    const pre = this.campaignWithPreVote(transfer);
    if (pre) this.becomePreCandidate();
    else this.becomeCandidate();
    this.requestVotes(pre, transfer);
  }

  /**
   * Decision: whether a campaign starts with a PreVote round (thesis 9.6). It does whenever PreVote
   * is on, except for a leadership transfer, which the old leader asked for: a node that cannot win
   * never bumps the term and so never disrupts a live leader.
   */
  protected campaignWithPreVote(transfer: boolean): boolean {
    return this.cfg.preVote && !transfer;
  }

  private requestVotes(pre: boolean, transfer: boolean): void {
    const voteTerm = pre ? this.term + 1 : this.term;
    this.votes.set(this.id, true);
    if (this.tallyAndAct()) return;
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of voterIds(this.config())) {
      if (id === this.id) continue;
      if (pre) this.send({ type: "PreVote", from: this.id, to: id, term: voteTerm, lastIndex, lastTerm });
      else this.send({ type: "Vote", from: this.id, to: id, term: voteTerm, lastIndex, lastTerm, transfer });
    }
  }

  /** Counts votes; wins or loses the round. Returns whether the round ended. */
  private tallyAndAct(): boolean {
    const voters = voterIds(this.config());
    let granted = 0;
    let rejected = 0;
    for (const id of voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    const q = quorumSize(this.config());
    if (granted >= q) {
      if (this.role === Role.PreCandidate) {
        this.becomeCandidate();
        this.requestVotes(false, false);
      } else {
        this.becomeLeader();
        this.bcastAppend();
      }
      return true;
    }
    if (voters.length - rejected < q) {
      this.becomeFollower(this.term, null);
      return true;
    }
    return false;
  }

  // ---- time ----

  tick(): void {
    if (this.halted !== null) return;
    if (this.role === Role.Leader) this.tickLeader();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.campaign(false);
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTick) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) {
        if (!this.quorumActive()) {
          this.becomeFollower(this.term, null);
          return;
        }
        for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
      }
      this.leadTransferee = null;
    }
    for (const [id, pr] of this.prs) {
      if (pr.state !== ProgressState.Snapshot) continue;
      const t = (this.snapshotTicks.get(id) ?? 0) + 1;
      this.snapshotTicks.set(id, t);
      if (t >= SNAPSHOT_RETRY_ELECTIONS * this.cfg.electionTick) {
        this.snapshotTicks.delete(id);
        pr.becomeProbe();
      }
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTick) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(0);
    }
  }

  private quorumActive(): boolean {
    const cfg = this.config();
    let active = 0;
    for (const id of voterIds(cfg)) {
      if (id === this.id) active++;
      else if (this.prs.get(id)?.recentActive === true) active++;
    }
    return active >= quorumSize(cfg);
  }

  // ---- messages in ----

  step(m: Message): void {
    if (this.halted !== null) return;
    assert(m.to === this.id, () => `raft: message for ${m.to} delivered to ${this.id}`);
    if (m.term > this.term) {
      if (m.type === "PreVote" || m.type === "Vote") {
        const transfer = m.type === "Vote" && m.transfer;
        // Leader stickiness: while we hear from a live leader, ignore would-be disruptors.
        const inLease = this.cfg.checkQuorum && this.lead !== null && this.electionElapsed < this.cfg.electionTick;
        if (!transfer && inLease) return;
      }
      if (m.type === "PreVote" || (m.type === "PreVoteResp" && !m.reject)) {
        // Neither changes our term: a PreVote round is hypothetical until it wins.
      } else {
        const isLeaderMsg = m.type === "Append" || m.type === "Heartbeat" || m.type === "InstallSnapshot";
        this.becomeFollower(m.term, isLeaderMsg ? m.from : null);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === "Append" || m.type === "Heartbeat")) {
        // Tell a stale leader (e.g. back from a partition) that the term moved on.
        this.send({ type: "AppendResp", from: this.id, to: m.from, term: this.term, reject: true, index: 0, hintIndex: 0, hintTerm: 0 });
      } else if (m.type === "PreVote") {
        this.send({ type: "PreVoteResp", from: this.id, to: m.from, term: this.term, reject: true });
      }
      return;
    }

    switch (m.type) {
      case "PreVote":
      case "Vote":
        this.handleVoteRequest(m);
        return;
      default:
        break;
    }
    switch (this.role) {
      case Role.Leader:
        this.stepLeader(m);
        return;
      case Role.Candidate:
      case Role.PreCandidate:
        this.stepCandidate(m);
        return;
      case Role.Follower:
        this.stepFollower(m);
        return;
      default: {
        const never: never = this.role;
        throw new Error(`unknown role ${String(never)}`);
      }
    }
  }

  private handleVoteRequest(m: Extract<Message, { type: "PreVote" | "Vote" }>): void {
    const pre = m.type === "PreVote";
    const canVote =
      this.vote === m.from || (this.vote === null && this.lead === null) || (pre && m.term > this.term);
    const grant = canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm);
    if (grant) {
      if (!pre) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
      this.send({ type: pre ? "PreVoteResp" : "VoteResp", from: this.id, to: m.from, term: m.term, reject: false });
    } else {
      this.send({ type: pre ? "PreVoteResp" : "VoteResp", from: this.id, to: m.from, term: this.term, reject: true });
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case "AppendResp":
        this.handleAppendResp(m);
        return;
      case "HeartbeatResp": {
        const pr = this.prs.get(m.from);
        if (pr === undefined) return;
        pr.recentActive = true;
        pr.probeSent = false;
        if (pr.state === ProgressState.Replicate && pr.inflightFull()) pr.freeFirstOne();
        if (pr.match < this.log.lastIndex() || pr.state === ProgressState.Probe) this.maybeSendAppend(m.from, true);
        if (m.readCtx !== 0) this.ackRead(m.from, m.readCtx);
        return;
      }
      case "PreVote":
      case "Vote":
      case "PreVoteResp":
      case "VoteResp":
      case "Append":
      case "Heartbeat":
      case "InstallSnapshot":
      case "TimeoutNow":
        // Same-term messages a leader has no use for (late vote replies; never another leader).
        return;
      default: {
        const never: never = m;
        throw new Error(`unknown message ${JSON.stringify(never)}`);
      }
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case "Append":
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case "Heartbeat":
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case "InstallSnapshot":
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case "PreVoteResp":
      case "VoteResp": {
        const wanted = this.role === Role.PreCandidate ? "PreVoteResp" : "VoteResp";
        if (m.type !== wanted) return;
        if (!isVoter(this.config(), m.from)) return;
        // A grant from an earlier pre-vote round (for the term we are now at) is stale: ignore it.
        if (m.type === "PreVoteResp" && !m.reject && m.term !== this.term + 1) return;
        this.votes.set(m.from, !m.reject);
        this.tallyAndAct();
        return;
      }
      case "PreVote":
      case "Vote":
      case "AppendResp":
      case "HeartbeatResp":
      case "TimeoutNow":
        return;
      default: {
        const never: never = m;
        throw new Error(`unknown message ${JSON.stringify(never)}`);
      }
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case "Append":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case "Heartbeat":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case "InstallSnapshot":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case "TimeoutNow":
        this.campaign(true);
        return;
      case "PreVote":
      case "Vote":
      case "PreVoteResp":
      case "VoteResp":
      case "AppendResp":
      case "HeartbeatResp":
        return;
      default: {
        const never: never = m;
        throw new Error(`unknown message ${JSON.stringify(never)}`);
      }
    }
  }

  // ---- follower side of replication ----

  private report(kind: VerificationReport["kind"], m: Message, index: number, detail: string): void {
    this.reports.push({ kind, from: m.from, term: m.term, index, detail });
  }

  private halt(reason: string): void {
    this.halted = reason;
  }

  private reject(m: AppendMsg, hintIndex: number, hintTerm: number): void {
    this.send({ type: "AppendResp", from: this.id, to: m.from, term: this.term, reject: true, index: m.prevIndex, hintIndex, hintTerm });
  }
  private ack(to: NodeId, index: number): void {
    this.send({ type: "AppendResp", from: this.id, to, term: this.term, reject: false, index, hintIndex: 0, hintTerm: 0 });
  }

  private handleAppend(m: AppendMsg): void {
    if (this.appendIsStale(m)) {
      this.ack(m.from, this.log.committed);
      return;
    }
    if (!this.log.matchTerm(m.prevIndex, m.prevTerm)) {
      const hint = this.log.findConflictByTerm(Math.min(m.prevIndex, this.log.lastIndex()), m.prevTerm);
      this.reject(m, hint.index, hint.term);
      return;
    }
    const myPrevHash = this.log.hash(m.prevIndex) as Uint8Array;
    if (!bytesEqual(myPrevHash, m.prevHash)) {
      const detail = `hash at ${m.prevIndex} (term ${m.prevTerm}) is ${toHex(myPrevHash)}, leader says ${toHex(m.prevHash)}`;
      this.report("prev_hash", m, m.prevIndex, detail);
      if (m.prevIndex <= this.log.committed) this.halt(`committed history differs from leader ${m.from}: ${detail}`);
      this.reject(m, Math.max(m.prevIndex - 1, this.log.anchor().index), 0);
      return;
    }
    // Recompute the chain: every new entry must hash onto its predecessor exactly as the leader says.
    let prevHash = m.prevHash;
    let expect = m.prevIndex + 1;
    for (const e of m.entries) {
      if (e.index !== expect) {
        this.report("entry_hash", m, expect, `entry ${e.index} out of sequence`);
        this.reject(m, m.prevIndex, 0);
        return;
      }
      const mine = this.log.entry(e.index);
      if (mine !== null && mine.term === e.term) {
        if (!bytesEqual(mine.hash, e.hash)) {
          const detail = `entry ${e.index} term ${e.term}: ours ${toHex(mine.hash)}, leader's ${toHex(e.hash)}`;
          this.report("entry_hash", m, e.index, detail);
          if (e.index <= this.log.committed) this.halt(`committed history differs from leader ${m.from}: ${detail}`);
          this.reject(m, m.prevIndex, 0);
          return;
        }
      } else {
        const h = entryHash(e.index, e.term, e.kind, prevHash, e.payload);
        if (!bytesEqual(h, e.hash)) {
          this.report("entry_hash", m, e.index, `entry ${e.index} claims ${toHex(e.hash)}, recomputed ${toHex(h)}`);
          this.reject(m, m.prevIndex, 0);
          return;
        }
        // One definition of a valid CONFIG (ledger/config.ts): what we accept, the verifier accepts.
        const bad = e.kind === EntryKind.Config ? configPayloadProblem(e.payload) : null;
        if (bad !== null) {
          this.report("config_payload", m, e.index, `entry ${e.index}: bad CONFIG payload: ${bad}`);
          this.reject(m, m.prevIndex, 0);
          return;
        }
      }
      prevHash = e.hash;
      expect++;
    }
    const lastNew = m.prevIndex + m.entries.length;
    this.writeAppended(m);
    this.log.commitTo(Math.min(m.commit, lastNew));
    this.ack(m.from, lastNew);
  }

  /**
   * Decision: an Append that starts below our commit index is stale (reordered or duplicated): the
   * entries up to commit are final (Leader Completeness, §5.4), so it changes nothing and is only
   * acknowledged with our commit index.
   */
  protected appendIsStale(m: AppendMsg): boolean {
    return m.prevIndex < this.log.committed;
  }

  /**
   * Writes a verified Append's entries (Log Matching, §5.3): keep every entry that matches, replace
   * the log from the first conflicting one on (never merge), and never below commit, so an old or
   * duplicated Append cannot shorten the log either.
   */
  protected writeAppended(m: AppendMsg): void {
    const conflict = this.log.findConflict(m.entries);
    if (conflict === 0) return;
    assert(conflict > this.log.committed, () => `raft: conflict at ${conflict} below commit ${this.log.committed}`);
    const tail = m.entries.slice(conflict - m.entries[0].index);
    this.log.append(tail);
    this.noteAppended(tail);
  }

  private handleHeartbeat(m: HeartbeatMsg): void {
    const c = m.commit;
    if (m.commitHash !== null && c > this.log.anchor().index && c <= this.log.lastIndex()) {
      const mine = this.log.hash(c) as Uint8Array;
      if (!bytesEqual(mine, m.commitHash)) {
        const detail = `hash at ${c}: ours ${toHex(mine)}, leader's ${toHex(m.commitHash)}`;
        this.report("commit_hash", m, c, detail);
        if (c <= this.log.committed) {
          this.halt(`committed history differs from leader ${m.from}: ${detail}`);
          return;
        }
      } else {
        this.log.commitTo(c);
      }
    }
    this.send({ type: "HeartbeatResp", from: this.id, to: m.from, term: this.term, readCtx: m.readCtx });
  }

  private handleSnapshot(m: InstallSnapshotMsg): void {
    const meta = m.snapshot.meta;
    if (meta.index <= this.log.committed) {
      this.ack(m.from, this.log.committed);
      return;
    }
    const myHash = this.log.hash(meta.index);
    if (this.log.matchTerm(meta.index, meta.term) && myHash !== null && bytesEqual(myHash, meta.hash)) {
      // We already hold the snapshot's history: just learn that it is committed.
      this.log.commitTo(meta.index);
      this.ack(m.from, meta.index);
      return;
    }
    const problem = configProblem(meta.config);
    assert(problem === null, () => `raft: snapshot config invalid: ${problem}`);
    this.log.restore(m.snapshot);
    this.configs = [];
    this.baseConfig = meta.config;
    this.ack(m.from, meta.index);
  }

  // ---- leader side of replication ----

  private handleAppendResp(m: Extract<Message, { type: "AppendResp" }>): void {
    const pr = this.prs.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (m.reject) {
      let nextProbe = m.hintIndex;
      if (m.hintTerm > 0) nextProbe = this.log.findConflictByTerm(m.hintIndex, m.hintTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.maybeSendAppend(m.from, false);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) {
      if (pr.state === ProgressState.Snapshot && pr.match >= pr.pendingSnapshot) {
        pr.becomeProbe();
        this.maybeSendAppend(m.from, false);
      }
      return;
    }
    switch (pr.state) {
      case ProgressState.Probe:
        pr.becomeReplicate();
        break;
      case ProgressState.Snapshot:
        if (pr.match >= pr.pendingSnapshot) {
          this.snapshotTicks.delete(m.from);
          pr.becomeProbe();
          pr.becomeReplicate();
        }
        break;
      case ProgressState.Replicate:
        pr.freeUpTo(m.index);
        break;
      default: {
        const never: never = pr.state;
        throw new Error(`unknown progress state ${String(never)}`);
      }
    }
    if (this.maybeCommit()) {
      if (this.role !== Role.Leader) return;
      this.bcastAppend();
    } else if (wasPaused) {
      this.maybeSendAppend(m.from, false);
    }
    // Fill the inflight window (pipelining); bounded by maxInflight.
    for (let k = 0; k < this.cfg.maxInflight && this.maybeSendAppend(m.from, false); k++);
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.send({ type: "TimeoutNow", from: this.id, to: m.from, term: this.term });
    }
  }

  /** Sends entries (or a snapshot) to a peer unless its progress is paused. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (pr === undefined || to === this.id || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const prevHash = this.log.hash(prevIndex);
    if (prevTerm === null || prevHash === null) {
      // The entries it needs were compacted away: send the latest snapshot instead.
      const snap = this.log.storage.snapshot();
      if (snap === null) return false;
      this.send({ type: "InstallSnapshot", from: this.id, to, term: this.term, snapshot: snap });
      pr.becomeSnapshot(snap.meta.index);
      this.snapshotTicks.set(to, 0);
      return true;
    }
    const last = this.log.lastIndex();
    const entries = pr.next <= last ? this.log.slice(pr.next, last + 1, this.cfg.maxMsgBytes) : [];
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({ type: "Append", from: this.id, to, term: this.term, prevIndex, prevTerm, prevHash, entries, commit: this.log.committed });
    pr.sentEntries(prevIndex + entries.length, entries.length);
    return true;
  }

  private bcastAppend(): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.maybeSendAppend(id, true);
  }

  private bcastHeartbeat(readCtx: number): void {
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      const commit = Math.min(pr.match, this.log.committed);
      this.send({ type: "Heartbeat", from: this.id, to: id, term: this.term, commit, commitHash: this.log.hash(commit), readCtx });
    }
  }

  /** Advances commit to the highest index on a quorum, if it is of this term (Figure 8). */
  maybeCommit(): boolean {
    const cfg = this.config();
    const voters = voterIds(cfg);
    if (voters.length === 0) return false;
    const matches = voters.map((id) => this.prs.get(id)?.match ?? 0).sort((a, b) => b - a);
    const mci = matches[quorumSize(cfg) - 1];
    if (mci <= this.log.committed) return false;
    if (!this.mayCommitAt(mci)) return false;
    this.log.commitTo(mci);
    this.afterLeaderCommit();
    return true;
  }

  /**
   * Decision: a leader commits a quorum-replicated index only if its entry is of the current term;
   * older entries commit indirectly with it (Raft Figure 8: an old-term entry on a majority can
   * still be overwritten by a leader that never saw it).
   */
  protected mayCommitAt(index: number): boolean {
    return this.log.term(index) === this.term;
  }

  private afterLeaderCommit(): void {
    // A leader removed by a committed config steps down (Raft thesis 4.2.2).
    if (!isVoter(this.config(), this.id) && this.lastConfigIndex() <= this.log.committed) {
      this.becomeFollower(this.term, null);
      return;
    }
    this.releaseReadsIfSingle();
  }

  /** The leader's own persisted entries count toward its match (only after they are durable). */
  selfPersisted(index: number): void {
    if (this.role !== Role.Leader) return;
    const self = this.prs.get(this.id);
    if (self === undefined) return;
    if (self.maybeUpdate(index) && this.maybeCommit() && this.role === Role.Leader) this.bcastAppend();
  }

  private appendLocal(kind: EntryKind, payload: Uint8Array): Entry {
    const index = this.log.lastIndex() + 1;
    const prev = this.log.hash(index - 1) as Uint8Array;
    const e: Entry = { index, term: this.term, kind, payload, hash: entryHash(index, this.term, kind, prev, payload) };
    this.log.append([e]);
    this.noteAppended([e]);
    return e;
  }

  // ---- requests from the caller ----

  private refuse(reason: Extract<ProposeResult, { ok: false }>["reason"]): ProposeResult {
    return { ok: false, reason, leader: this.lead };
  }

  propose(kind: EntryKind, payload: Uint8Array): ProposeResult {
    if (this.halted !== null) return this.refuse("halted");
    if (this.role !== Role.Leader) return this.refuse("not_leader");
    if (this.leadTransferee !== null) return this.refuse("transferring");
    if (kind === EntryKind.Config) return this.refuse("config_invalid");
    if (payload.length > (this.cfg.maxProposalBytes ?? 1 << 20)) return this.refuse("too_large");
    const e = this.appendLocal(kind, payload);
    this.bcastAppend();
    return { ok: true, index: e.index, term: e.term };
  }

  /** Proposes a new membership; at most one voter added or removed versus the current one. */
  proposeConfig(next: ClusterConfig): ProposeResult {
    if (this.halted !== null) return this.refuse("halted");
    if (this.role !== Role.Leader) return this.refuse("not_leader");
    if (this.leadTransferee !== null) return this.refuse("transferring");
    if (this.log.committed < this.termStartIndex) return this.refuse("not_ready");
    if (this.lastConfigIndex() > this.log.committed) return this.refuse("config_pending");
    if (configProblem(next) !== null || next.voters.length === 0) return this.refuse("config_invalid");
    const cur = this.config();
    const d = voterDelta(cur, next);
    if (d.added.length + d.removed.length > 1) return this.refuse("config_invalid");
    for (const id of d.added) {
      // A learner must have caught up before it may vote; otherwise commits could stall.
      const pr = this.prs.get(id);
      if (isMember(cur, id) && (pr === undefined || pr.match < this.log.committed)) return this.refuse("learner_behind");
    }
    const e = this.appendLocal(EntryKind.Config, encodeConfig(next));
    this.bcastAppend();
    return { ok: true, index: e.index, term: e.term };
  }

  /** Starts a ReadIndex round; the read state appears in a later Ready once a quorum confirmed. */
  readIndex(ctx: number): ProposeResult {
    assert(ctx > 0, "raft: read ctx must be positive");
    if (this.halted !== null) return this.refuse("halted");
    if (this.role !== Role.Leader) return this.refuse("not_leader");
    // Until our NOOP commits we do not know the full committed prefix.
    if (this.log.term(this.log.committed) !== this.term) return this.refuse("not_ready");
    if (this.pendingReads.length >= MAX_PENDING_READS) return this.refuse("not_ready");
    const read: PendingRead = { ctx, index: this.log.committed, acks: new Set([this.id]) };
    this.pendingReads.push(read);
    if (!this.releaseReadsIfSingle()) this.bcastHeartbeat(ctx);
    return { ok: true, index: read.index, term: this.term };
  }

  private releaseReadsIfSingle(): boolean {
    const cfg = this.config();
    if (!(voterIds(cfg).length === 1 && isVoter(cfg, this.id))) return false;
    for (const r of this.pendingReads) this.readStates.push({ ctx: r.ctx, index: r.index });
    this.pendingReads = [];
    return true;
  }

  private ackRead(from: NodeId, ctx: number): void {
    const cfg = this.config();
    if (!isVoter(cfg, from)) return;
    const k = this.pendingReads.findIndex((r) => r.ctx === ctx);
    if (k < 0) return;
    const r = this.pendingReads[k];
    r.acks.add(from);
    let n = 0;
    for (const id of r.acks) if (isVoter(cfg, id)) n++;
    if (n < quorumSize(cfg)) return;
    // A quorum confirmed leadership at or after every earlier request too.
    for (let i = 0; i <= k; i++) this.readStates.push({ ctx: this.pendingReads[i].ctx, index: this.pendingReads[i].index });
    this.pendingReads = this.pendingReads.slice(k + 1);
  }

  /** Hands leadership to a caught-up voter with TimeoutNow; proposals wait meanwhile. */
  transferLeader(to: NodeId): ProposeResult {
    if (this.role !== Role.Leader) return this.refuse("not_leader");
    if (to === this.id || !isVoter(this.config(), to)) return this.refuse("config_invalid");
    this.leadTransferee = to;
    this.electionElapsed = 0;
    const pr = this.prs.get(to) as Progress;
    if (pr.match === this.log.lastIndex()) this.send({ type: "TimeoutNow", from: this.id, to, term: this.term });
    else this.maybeSendAppend(to, true);
    return { ok: true, index: this.log.lastIndex(), term: this.term };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.persistedVote(), commit: this.log.committed };
  }

  /**
   * Decision: the vote that goes to disk with the term. It is the vote cast: a node that forgot it
   * after a restart could vote twice in one term and elect two leaders (Election Safety, §5.2).
   */
  protected persistedVote(): NodeId | null {
    return this.vote;
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }
}
