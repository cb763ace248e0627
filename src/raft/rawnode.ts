/**
 * The caller's handle on the core: feed it ticks, messages and requests; take a Ready, do what it
 * says (persist, then send, then apply), and call advance(). This is the whole contract a node
 * runtime or the simulator programs against.
 */
import type { EntryKind } from "../ledger/entry";
import { assert } from "../util/assert";
import type { ClusterConfig } from "./config";
import { newRaft, type Raft, type RaftConfig, type RaftFactory } from "./raft";
import type { HardState, Message, NodeId, ProposeResult, Ready, SnapshotMeta, SoftState } from "./types";
import { Role } from "./types";

const sameHard = (a: HardState, b: HardState): boolean => a.term === b.term && a.vote === b.vote && a.commit === b.commit;

/** A read-only summary for status endpoints and tests. */
export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId | null;
  readonly lead: NodeId | null;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly config: ClusterConfig;
  readonly halted: string | null;
}

export class RawNode {
  readonly raft: Raft;
  private prevSoft: SoftState;
  private prevHard: HardState;
  private haltReported = false;
  /** A Ready was handed out and advance() has not been called yet. */
  private outstanding = false;
  private readonly maxCommittedBytes: number;

  /** makeRaft builds the core; only a test harness passes another (a mutant, src/raft/sim/mutants.ts). */
  constructor(cfg: RaftConfig, makeRaft: RaftFactory = newRaft) {
    this.raft = makeRaft(cfg);
    this.prevSoft = { role: this.raft.role, lead: this.raft.lead };
    this.prevHard = cfg.storage.hardState();
    this.maxCommittedBytes = cfg.maxCommittedBytes ?? 1 << 20;
  }

  tick(): void {
    this.checkIdle();
    this.raft.tick();
  }
  step(m: Message): void {
    this.checkIdle();
    this.raft.step(m);
  }
  /** Starts an election now (tests, or a single-node cluster at start). */
  campaign(): void {
    this.checkIdle();
    this.raft.campaign(false);
  }
  /** Appends a RECORD/NOOP/CHECKPOINT entry if this node is leader; CONFIG goes via proposeConfig. */
  propose(kind: EntryKind, payload: Uint8Array): ProposeResult {
    this.checkIdle();
    return this.raft.propose(kind, payload);
  }
  proposeConfig(next: ClusterConfig): ProposeResult {
    this.checkIdle();
    return this.raft.proposeConfig(next);
  }
  /** ReadIndex: ctx (> 0, unique per request) comes back in Ready.readStates once confirmed. */
  readIndex(ctx: number): ProposeResult {
    this.checkIdle();
    return this.raft.readIndex(ctx);
  }
  transferLeader(to: NodeId): ProposeResult {
    this.checkIdle();
    return this.raft.transferLeader(to);
  }

  private checkIdle(): void {
    assert(!this.outstanding, "rawnode: call advance() before feeding more input");
  }

  private softState(): SoftState {
    return { role: this.raft.role, lead: this.raft.lead };
  }

  hasReady(): boolean {
    const r = this.raft;
    const soft = this.softState();
    return (
      soft.role !== this.prevSoft.role ||
      soft.lead !== this.prevSoft.lead ||
      !sameHard(r.hardState(), this.prevHard) ||
      r.log.unstableEntries().length > 0 ||
      r.log.pendingSnapshot() !== null ||
      r.msgs.length > 0 ||
      r.readStates.length > 0 ||
      r.reports.length > 0 ||
      (r.halted !== null && !this.haltReported) ||
      r.log.hasNextCommitted()
    );
  }

  /** Everything to persist, send and apply now; call advance(ready) when done. */
  ready(): Ready {
    this.checkIdle();
    const r = this.raft;
    const soft = this.softState();
    const hard = r.hardState();
    const rd: Ready = {
      softState: soft.role !== this.prevSoft.role || soft.lead !== this.prevSoft.lead ? soft : null,
      hardState: sameHard(hard, this.prevHard) ? null : hard,
      snapshot: r.log.pendingSnapshot(),
      entries: r.log.unstableEntries().slice(),
      committedEntries: r.log.nextCommitted(this.maxCommittedBytes),
      messages: r.msgs,
      readStates: r.readStates,
      reports: r.reports,
      halted: r.halted !== null && !this.haltReported ? r.halted : null,
    };
    r.msgs = [];
    r.readStates = [];
    r.reports = [];
    if (rd.halted !== null) this.haltReported = true;
    this.prevSoft = soft;
    if (rd.hardState !== null) this.prevHard = rd.hardState;
    this.outstanding = true;
    return rd;
  }

  /** The caller persisted, sent and applied everything in rd. */
  advance(rd: Ready): void {
    assert(this.outstanding, "rawnode: advance() without a Ready");
    this.outstanding = false;
    const log = this.raft.log;
    if (rd.snapshot !== null) {
      log.stableSnapTo(rd.snapshot.meta.index);
      log.appliedTo(rd.snapshot.meta.index);
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1];
      log.stableTo(last.index, last.term);
    }
    if (rd.committedEntries.length > 0) log.appliedTo(rd.committedEntries[rd.committedEntries.length - 1].index);
    this.raft.selfPersisted(log.stableLastIndex());
  }

  /** The configuration in effect at `index`: the latest CONFIG entry at or before it in this log (thesis 4.1). */
  configAt(index: number): ClusterConfig {
    return this.raft.configAt(index);
  }

  /** The anchor and config to put in a snapshot the caller makes at an applied index. */
  snapshotMeta(index: number): SnapshotMeta {
    const log = this.raft.log;
    assert(index <= log.applied, () => `rawnode: snapshot at ${index} beyond applied ${log.applied}`);
    const term = log.term(index);
    const hash = log.hash(index);
    assert(term !== null && hash !== null, () => `rawnode: no entry at ${index} to snapshot`);
    return { index, term, hash, config: this.raft.configAt(index) };
  }

  status(): RaftStatus {
    const r = this.raft;
    return {
      id: r.id,
      role: r.role,
      term: r.term,
      vote: r.vote,
      lead: r.lead,
      commit: r.log.committed,
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      firstIndex: r.log.firstIndex(),
      config: r.config(),
      halted: r.halted,
    };
  }
}
