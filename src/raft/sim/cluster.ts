/**
 * Deterministic cluster simulator: whole Raft clusters in one process, every fault drawn from one
 * seeded PRNG, so any run replays exactly from its seed. Each simulated tick: faults change, clients
 * act, every live node ticks, due messages are delivered; after each event the node's Ready is
 * handled exactly as the contract says (persist, then send, then apply) and the safety invariants are
 * checked. The first violation ends the run.
 */
import { bytesEqual, toHex } from "../../ledger/bytes";
import { EntryKind, type Entry } from "../../ledger/entry";
import { AssertionError } from "../../util/assert";
import { configOfIds, idOnlyMember, isMember, isVoter, learnerIds, makeConfig, quorumSize, voterIds, type ClusterConfig } from "../config";
import { coalesceAppends } from "../coalesce";
import { Prng } from "../prng";
import type { RaftFactory } from "../raft";
import { RawNode } from "../rawnode";
import { MemoryStorage } from "../storage";
import { Role, type Message, type NodeId, type Ready } from "../types";
import { checkLinearizability, kvModel, type KvInput, type KvOutput, type Operation } from "./linearizability";
import { encodePut, KvStateMachine } from "./kv";

/** Probabilities are per simulated tick unless noted. */
export interface FaultRates {
  /** Per message. */
  readonly drop: number;
  /** Per message. */
  readonly duplicate: number;
  /** Per message: delayed up to maxDelay ticks instead of 1 (reordering). */
  readonly delay: number;
  readonly maxDelay: number;
  readonly partitionStart: number;
  readonly partitionEnd: number;
  /** Per tick: one random live node crashes. */
  readonly crash: number;
  /** Per Ready with something to persist: crash before the write is synced (it is lost or torn). */
  readonly crashDuringPersist: number;
  readonly restartMinTicks: number;
  readonly restartMaxTicks: number;
  readonly membership: number;
  readonly transfer: number;
  /** A node snapshots and compacts once it applied this many entries past its anchor (range). */
  readonly snapshotMin: number;
  readonly snapshotMax: number;
}

export const DEFAULT_FAULTS: FaultRates = {
  drop: 0.05,
  duplicate: 0.02,
  delay: 0.1,
  maxDelay: 6,
  partitionStart: 0.01,
  partitionEnd: 0.03,
  crash: 0.008,
  crashDuringPersist: 0.004,
  restartMinTicks: 3,
  restartMaxTicks: 60,
  membership: 0.01,
  transfer: 0.004,
  snapshotMin: 8,
  snapshotMax: 40,
};

export const NO_FAULTS: FaultRates = {
  ...DEFAULT_FAULTS,
  drop: 0,
  duplicate: 0,
  delay: 0,
  partitionStart: 0,
  crash: 0,
  crashDuringPersist: 0,
  membership: 0,
  transfer: 0,
};

export interface SimOptions {
  readonly seed: number;
  readonly nodes: number;
  /** Total ticks; the last healTicks of them run without faults (liveness phase). */
  readonly steps: number;
  readonly healTicks?: number;
  readonly clients?: number;
  readonly maxClientOps?: number;
  readonly faults?: Partial<FaultRates>;
  /** The core each node runs (default the real one); a mutant from ./mutants for checking the checker. */
  readonly makeRaft?: RaftFactory;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  readonly electionTick?: number;
  readonly heartbeatTick?: number;
  /** Planted client bug for checking the checker: reads served locally, skipping ReadIndex. */
  readonly unsafeLocalReads?: boolean;
  /**
   * As the node runtime works: a client's proposal or read joins the node's next Ready (the one of
   * its tick, with every other request of the same step) instead of getting a Ready of its own, and
   * each Ready's messages go through coalesceAppends. Off, seeds replay as they always did.
   */
  readonly coalesce?: boolean;
}

export interface SimStats {
  ticks: number;
  events: number;
  elections: number;
  commits: number;
  messages: number;
  /** Appends merged into the one before them by coalesceAppends (coalesce mode only). */
  appendsMerged: number;
  faults: {
    drops: number;
    duplicates: number;
    delays: number;
    partitions: number;
    crashes: number;
    persistCrashes: number;
    tornWrites: number;
    snapshots: number;
    snapshotInstalls: number;
    configChanges: number;
    transfers: number;
  };
  clientOps: { ok: number; unknown: number; failed: number };
}

export interface SimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violation: string | null;
  readonly atTick: number;
  readonly stats: SimStats;
}

/** A broken invariant; ends the run. */
export class SimViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SimViolation";
  }
}

interface InFlight {
  readonly at: number;
  readonly order: number;
  readonly m: Message;
}

interface PendingRead {
  readonly client: Client;
  readonly ctx: number;
  index: number | null;
}

interface SimNode {
  readonly id: NodeId;
  readonly disk: MemoryStorage;
  raw: RawNode | null;
  sm: KvStateMachine;
  restartAt: number;
  readonly snapshotEvery: number;
  reads: PendingRead[];
  durableTerm: number;
  durableVote: NodeId | null;
  durableCommit: number;
  /** PreVote grants received, per pre-vote term. */
  preVoteGrants: Map<number, Set<NodeId>>;
}

type ClientOp =
  | {
      kind: "put";
      key: string;
      value: string;
      seq: number;
      call: number;
      attempt: { node: NodeId; index: number; term: number } | null;
      retryAt: number;
    }
  | { kind: "get"; key: string; call: number; ctx: number; node: NodeId | null; retryAt: number };

interface Client {
  readonly id: string;
  seq: number;
  op: ClientOp | null;
  hint: NodeId | null;
  /** Acknowledged puts: (seq, index) to check nothing acknowledged is lost. */
  acked: { seq: number; index: number }[];
}

const CLUSTER_ID = "sim";
const KEYS = ["k0", "k1", "k2"];

export class Simulation {
  readonly stats: SimStats = {
    ticks: 0,
    events: 0,
    elections: 0,
    commits: 0,
    messages: 0,
    appendsMerged: 0,
    faults: {
      drops: 0,
      duplicates: 0,
      delays: 0,
      partitions: 0,
      crashes: 0,
      persistCrashes: 0,
      tornWrites: 0,
      snapshots: 0,
      snapshotInstalls: 0,
      configChanges: 0,
      transfers: 0,
    },
    clientOps: { ok: 0, unknown: 0, failed: 0 },
  };
  private readonly rng: Prng;
  private readonly f: FaultRates;
  private readonly ids: NodeId[];
  private readonly nodes = new Map<NodeId, SimNode>();
  private net: InFlight[] = [];
  private blocked = new Set<string>();
  private partitionUntil = 0;
  private now = 0;
  private readonly healAt: number;
  private readonly healTicks: number;
  private clients: Client[] = [];
  private history: Operation<KvInput, KvOutput>[] = [];
  private opsStarted = 0;
  private nextCtx = 1;
  // Invariant state.
  private leaders = new Map<number, NodeId>();
  private chain = new Map<string, Uint8Array>();
  /** Hash at each committed index (as far as known) and the highest index any node committed. */
  private committedHash: (Uint8Array | undefined)[] = [];
  private maxCommit = 0;
  private appliedEntry: (Entry | undefined)[] = [];
  private livenessMark: { index: number; leader: NodeId } | null = null;
  /** Per-seed replication limits: from one entry per Append to large batches. */
  private readonly maxMsgBytes: number;
  private readonly maxInflight: number;

  constructor(readonly opts: SimOptions) {
    this.rng = new Prng(opts.seed);
    // Each seed draws a fault intensity, so some runs are calm and some are storms.
    const k = this.rng.pick([0.5, 1, 2, 4]);
    const base = { ...DEFAULT_FAULTS, ...opts.faults };
    this.f = {
      ...base,
      drop: Math.min(0.5, base.drop * k),
      duplicate: Math.min(0.5, base.duplicate * k),
      partitionStart: base.partitionStart * k,
      crash: base.crash * k,
      crashDuringPersist: base.crashDuringPersist * k,
      restartMaxTicks: Math.max(base.restartMinTicks, Math.round(base.restartMaxTicks / k)),
    };
    this.healTicks = opts.healTicks ?? 200;
    this.healAt = Math.max(0, opts.steps - this.healTicks);
    this.maxMsgBytes = this.rng.pick([1, 200, 1024, 65536]);
    this.maxInflight = this.rng.pick([1, 2, 4, 16]);
    this.ids = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
    const cfg = configOfIds(this.ids);
    for (const id of this.ids) {
      const disk = MemoryStorage.bootstrap(CLUSTER_ID, cfg);
      const hs = disk.hardState();
      const node: SimNode = {
        id,
        disk,
        raw: null,
        sm: new KvStateMachine(),
        restartAt: 0,
        snapshotEvery: this.f.snapshotMin + this.rng.int(this.f.snapshotMax - this.f.snapshotMin + 1),
        reads: [],
        durableTerm: hs.term,
        durableVote: hs.vote,
        durableCommit: hs.commit,
        preVoteGrants: new Map(),
      };
      this.nodes.set(id, node);
      this.start(node);
    }
    for (let i = 0; i < (opts.clients ?? 3); i++) this.clients.push({ id: `c${i + 1}`, seq: 0, op: null, hint: null, acked: [] });
  }

  private start(node: SimNode): void {
    const snap = node.disk.snapshot();
    node.sm = snap !== null && snap.meta.index === node.disk.anchor().index ? KvStateMachine.restore(snap.data) : new KvStateMachine();
    node.raw = new RawNode({
      id: node.id,
      storage: node.disk,
      applied: node.sm.applied,
      electionTick: this.opts.electionTick ?? 10,
      heartbeatTick: this.opts.heartbeatTick ?? 2,
      preVote: this.opts.preVote ?? true,
      checkQuorum: this.opts.checkQuorum ?? true,
      maxMsgBytes: this.maxMsgBytes,
      maxInflight: this.maxInflight,
      rng: this.rng.fork(),
    }, this.opts.makeRaft);
    node.reads = [];
    node.preVoteGrants = new Map();
  }

  /** Runs to the end or the first violation. */
  run(): SimResult {
    try {
      for (this.now = 1; this.now <= this.opts.steps; this.now++) this.step();
      this.finalChecks();
      return { seed: this.opts.seed, ok: true, violation: null, atTick: this.now, stats: this.stats };
    } catch (err) {
      if (err instanceof SimViolation || err instanceof AssertionError) {
        const what = err instanceof AssertionError ? `core assertion: ${err.message}` : err.message;
        return { seed: this.opts.seed, ok: false, violation: what, atTick: this.now, stats: this.stats };
      }
      throw err;
    }
  }

  private fail(msg: string): never {
    throw new SimViolation(msg);
  }

  private faulty(): boolean {
    return this.now < this.healAt;
  }

  private step(): void {
    this.stats.ticks++;
    if (this.now === this.healAt) this.heal();
    if (this.faulty()) this.injectFaults();
    for (const node of this.nodes.values()) {
      if (node.raw === null && node.restartAt <= this.now) {
        this.start(node);
        this.processReady(node, null);
      }
    }
    this.clientsAct();
    for (const id of this.shuffled(this.ids)) {
      const node = this.nodes.get(id) as SimNode;
      if (node.raw === null) continue;
      node.raw.tick();
      this.processReady(node, null);
    }
    this.deliver();
    this.checkCommitPoints();
    this.liveness();
  }

  private shuffled<T>(xs: readonly T[]): T[] {
    const out = xs.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.rng.int(i + 1);
      const t = out[i];
      out[i] = out[j];
      out[j] = t;
    }
    return out;
  }

  // ---- faults ----

  private heal(): void {
    this.blocked.clear();
    for (const node of this.nodes.values()) node.restartAt = Math.min(node.restartAt, this.now);
  }

  private injectFaults(): void {
    const f = this.f;
    if (this.blocked.size > 0 && (this.now >= this.partitionUntil || this.rng.chance(f.partitionEnd))) this.blocked.clear();
    else if (this.blocked.size === 0 && this.rng.chance(f.partitionStart)) this.partition();
    if (this.rng.chance(f.crash)) {
      // Half the crashes hit the leader: the moments around a leader's death are where Raft is subtle.
      const leader = this.currentLeader();
      const up = this.ids.filter((id) => this.nodes.get(id)?.raw !== null);
      if (leader !== null && this.rng.chance(0.5)) this.crash(leader);
      else if (up.length > 0) this.crash(this.nodes.get(this.rng.pick(up)) as SimNode);
    }
    if (this.rng.chance(f.membership)) this.changeMembership();
    if (this.rng.chance(f.transfer)) {
      const leader = this.currentLeader();
      if (leader !== null) {
        const raw = leader.raw as RawNode;
        const others = voterIds(raw.status().config).filter((id) => id !== leader.id);
        if (others.length > 0) {
          const r = raw.transferLeader(this.rng.pick(others));
          if (r.ok) this.stats.faults.transfers++;
          this.processReady(leader, null);
        }
      }
    }
  }

  private partition(): void {
    this.stats.faults.partitions++;
    this.partitionUntil = this.now + 10 + this.rng.int(150);
    const kind = this.rng.int(3);
    const ids = this.shuffled(this.ids);
    if (kind === 0) {
      // Symmetric split into two sides.
      const k = 1 + this.rng.int(ids.length - 1);
      const a = new Set(ids.slice(0, k));
      for (const x of ids) for (const y of ids) if (a.has(x) !== a.has(y)) this.blocked.add(`${x}>${y}`);
    } else if (kind === 1) {
      // Isolate the leader (if any) from everyone.
      const leader = this.currentLeader();
      const x = leader !== null ? leader.id : ids[0];
      for (const y of ids) if (y !== x) this.blocked.add(`${x}>${y}`).add(`${y}>${x}`);
    } else {
      // Asymmetric: some directed links go dark.
      for (const x of ids) for (const y of ids) if (x !== y && this.rng.chance(0.3)) this.blocked.add(`${x}>${y}`);
    }
  }

  private crash(node: SimNode): void {
    this.stats.faults.crashes++;
    node.raw = null;
    node.reads = [];
    const lo = this.f.restartMinTicks;
    node.restartAt = this.now + lo + this.rng.int(this.f.restartMaxTicks - lo + 1);
  }

  private currentLeader(): SimNode | null {
    let best: SimNode | null = null;
    let bestTerm = -1;
    for (const node of this.nodes.values()) {
      const raw = node.raw;
      if (raw === null) continue;
      const st = raw.raft;
      if (st.role === Role.Leader && st.term > bestTerm) {
        best = node;
        bestTerm = st.term;
      }
    }
    return best;
  }

  private changeMembership(): void {
    const leader = this.currentLeader();
    if (leader === null) return;
    const raw = leader.raw as RawNode;
    const cfg = raw.status().config;
    const byId = (ids: NodeId[]): ClusterConfig["voters"] => ids.map(idOnlyMember);
    const voters = voterIds(cfg);
    const learners = learnerIds(cfg);
    const outsiders = this.ids.filter((id) => !isMember(cfg, id));
    let next: ClusterConfig | null = null;
    if (learners.length > 0) {
      const l = this.rng.pick(learners);
      next = makeConfig(byId([...voters, l]), byId(learners.filter((x) => x !== l)));
    } else if (outsiders.length > 0) {
      next = makeConfig(byId(voters), byId([...learners, this.rng.pick(outsiders)]));
    } else if (voters.length > Math.max(2, this.ids.length - 2)) {
      const v = this.rng.pick(voters);
      next = makeConfig(byId(voters.filter((x) => x !== v)), byId(learners));
    }
    if (next === null) return;
    const r = raw.proposeConfig(next);
    if (r.ok) this.stats.faults.configChanges++;
    this.processReady(leader, null);
  }

  // ---- network ----

  private send(m: Message): void {
    this.stats.messages++;
    if (this.faulty() && this.rng.chance(this.f.drop)) {
      this.stats.faults.drops++;
      return;
    }
    const copies = this.faulty() && this.rng.chance(this.f.duplicate) ? 2 : 1;
    if (copies === 2) this.stats.faults.duplicates++;
    for (let i = 0; i < copies; i++) {
      let delay = 1;
      if (this.faulty() && this.rng.chance(this.f.delay)) {
        delay = 1 + this.rng.int(this.f.maxDelay);
        this.stats.faults.delays++;
      }
      this.net.push({ at: this.now + delay, order: this.rng.u32(), m });
    }
  }

  private deliver(): void {
    const due: InFlight[] = [];
    const rest: InFlight[] = [];
    for (const x of this.net) (x.at <= this.now ? due : rest).push(x);
    this.net = rest;
    due.sort((a, b) => a.at - b.at || a.order - b.order);
    for (const { m } of due) {
      if (this.blocked.has(`${m.from}>${m.to}`)) {
        this.stats.faults.drops++;
        continue;
      }
      const node = this.nodes.get(m.to);
      if (node === undefined || node.raw === null) continue;
      if (m.type === "PreVoteResp" && !m.reject) {
        let s = node.preVoteGrants.get(m.term);
        if (s === undefined) node.preVoteGrants.set(m.term, (s = new Set()));
        s.add(m.from);
      }
      node.raw.step(m);
      this.processReady(node, m);
    }
  }

  // ---- the Ready contract ----

  private processReady(node: SimNode, cause: Message | null): void {
    const raw = node.raw;
    if (raw === null) return;
    const termBefore = this.observedTerm.get(node.id) ?? 0;
    for (let guard = 0; raw.hasReady(); guard++) {
      if (guard > 1000) this.fail(`${node.id}: Ready loop did not settle`);
      this.stats.events++;
      const rd = raw.ready();
      if (rd.reports.length > 0) this.fail(`${node.id}: verification report: ${rd.reports[0].kind} ${rd.reports[0].detail}`);
      if (rd.halted !== null) this.fail(`${node.id}: halted: ${rd.halted}`);
      if (!this.persist(node, rd)) return;
      const messages = this.opts.coalesce === true ? coalesceAppends(rd.messages, this.maxMsgBytes) : rd.messages;
      this.stats.appendsMerged += rd.messages.length - messages.length;
      for (const m of messages) this.send(m);
      this.apply(node, rd);
      raw.advance(rd);
      this.maybeSnapshot(node);
    }
    this.observe(node, termBefore, cause);
  }

  private readonly observedTerm = new Map<NodeId, number>();

  /** Persists what the Ready says; returns false if the node crashed before the write was synced. */
  private persist(node: SimNode, rd: Ready): boolean {
    const disk = node.disk;
    const something = rd.snapshot !== null || rd.entries.length > 0 || rd.hardState !== null;
    for (const e of rd.entries) this.noteEntry(node, e);
    if (something && this.faulty() && this.rng.chance(this.f.crashDuringPersist)) {
      this.stats.faults.persistCrashes++;
      if (rd.snapshot === null && rd.entries.length > 0 && this.rng.chance(0.5)) {
        // Torn write: a prefix of the entries reached the disk, the hard state did not.
        this.stats.faults.tornWrites++;
        disk.append(rd.entries.slice(0, 1 + this.rng.int(rd.entries.length)));
      }
      this.crash(node);
      return false;
    }
    if (rd.snapshot !== null) {
      const meta = rd.snapshot.meta;
      const known = this.committedHash[meta.index];
      if (known !== undefined && !bytesEqual(known, meta.hash))
        this.fail(`${node.id}: installed snapshot at ${meta.index} differs from committed history`);
      disk.applySnapshot(rd.snapshot);
      node.sm = KvStateMachine.restore(rd.snapshot.data);
      node.reads = node.reads.filter((r) => r.index === null);
      this.stats.faults.snapshotInstalls++;
    }
    disk.append(rd.entries);
    const hs = rd.hardState;
    if (hs !== null) {
      if (hs.term < node.durableTerm) this.fail(`${node.id}: durable term went back ${node.durableTerm} -> ${hs.term}`);
      if (hs.commit < node.durableCommit) this.fail(`${node.id}: durable commit went back ${node.durableCommit} -> ${hs.commit}`);
      if (hs.term === node.durableTerm && node.durableVote !== null && hs.vote !== node.durableVote)
        this.fail(`${node.id}: durable vote in term ${hs.term} changed ${node.durableVote} -> ${String(hs.vote)}`);
      disk.setHardState(hs);
      node.durableTerm = hs.term;
      node.durableVote = hs.vote;
      node.durableCommit = hs.commit;
    }
    return true;
  }

  /** Log Matching: one (index, term) names one entry everywhere (the hash covers its whole prefix). */
  private noteEntry(node: SimNode, e: Entry): void {
    const key = `${e.index}:${e.term}`;
    const h = this.chain.get(key);
    if (h === undefined) this.chain.set(key, e.hash);
    else if (!bytesEqual(h, e.hash)) this.fail(`Log Matching: ${node.id} has entry ${key} with hash ${toHex(e.hash)}, another node ${toHex(h)}`);
  }

  private apply(node: SimNode, rd: Ready): void {
    for (const rs of rd.readStates) {
      const r = node.reads.find((x) => x.ctx === rs.ctx);
      if (r !== undefined) r.index = rs.index;
    }
    for (const e of rd.committedEntries) {
      const prev = this.appliedEntry[e.index];
      if (prev === undefined) {
        this.appliedEntry[e.index] = e;
        this.stats.commits = Math.max(this.stats.commits, e.index);
      } else if (!bytesEqual(prev.hash, e.hash)) {
        this.fail(`State Machine Safety: ${node.id} applied ${e.index} with hash ${toHex(e.hash)}, another node ${toHex(prev.hash)}`);
      }
      const known = this.committedHash[e.index];
      if (known !== undefined && !bytesEqual(known, e.hash)) this.fail(`State Machine Safety: ${node.id} applied ${e.index} off the committed chain`);
      const res = node.sm.apply(e);
      if (res.cmd !== null) this.putApplied(node, res.cmd.c, res.cmd.s, e.index);
    }
    for (const r of node.reads) {
      if (r.index === null || node.sm.applied < r.index) continue;
      const op = r.client.op;
      if (op !== null && op.kind === "get" && op.ctx === r.ctx) {
        this.history.push({ clientId: r.client.id, input: { type: "get", key: op.key }, output: node.sm.get(op.key), call: op.call, return: this.now });
        this.stats.clientOps.ok++;
        r.client.op = null;
      }
    }
    node.reads = node.reads.filter((r) => r.index === null || node.sm.applied < r.index);
  }

  private maybeSnapshot(node: SimNode): void {
    const raw = node.raw;
    if (raw === null) return;
    const applied = node.sm.applied;
    if (applied - node.disk.anchor().index < node.snapshotEvery || applied > node.disk.lastIndex()) return;
    const meta = raw.snapshotMeta(applied);
    node.disk.createSnapshot({ meta, data: node.sm.snapshot() });
    this.stats.faults.snapshots++;
  }

  // ---- invariants ----

  /** Election Safety, PreVote, Leader Completeness: checked after every event on a node. */
  private observe(node: SimNode, termBefore: number, cause: Message | null): void {
    const raw = node.raw;
    if (raw === null) return;
    const r = raw.raft;
    this.observedTerm.set(node.id, r.term);
    if (r.role === Role.Leader) {
      const other = this.leaders.get(r.term);
      if (other === undefined) {
        this.leaders.set(r.term, node.id);
        this.stats.elections++;
        this.checkLeaderComplete(node);
      } else if (other !== node.id) {
        this.fail(`Election Safety: ${other} and ${node.id} are both leader in term ${r.term}`);
      }
    }
    // PreVote: a node only raises its own term for an election it won a PreVote round for.
    const selfStarted = r.term > termBefore && r.vote === node.id && cause?.type !== "TimeoutNow";
    if ((this.opts.preVote ?? true) && selfStarted) {
      const cfg = r.config();
      const grants = node.preVoteGrants.get(r.term) ?? new Set<NodeId>();
      let n = isVoter(cfg, node.id) ? 1 : 0;
      for (const id of grants) if (id !== node.id && isVoter(cfg, id)) n++;
      if (n < quorumSize(cfg)) this.fail(`PreVote: ${node.id} started an election at term ${r.term} with ${n} of ${quorumSize(cfg)} pre-votes`);
    }
  }

  private checkLeaderComplete(node: SimNode): void {
    const log = (node.raw as RawNode).raft.log;
    const c = this.maxCommit;
    const h = this.committedHash[c];
    if (h === undefined) return;
    if (log.lastIndex() < c) this.fail(`Leader Completeness: new leader ${node.id} ends at ${log.lastIndex()}, before committed ${c}`);
    const mine = log.hash(c);
    if (mine === null) return;
    if (!bytesEqual(mine, h)) this.fail(`Leader Completeness: new leader ${node.id} lacks committed entry ${c}`);
  }

  /** Every node's log holds the committed history up to its commit index; commit never goes back. */
  private checkCommitPoints(): void {
    for (const node of this.nodes.values()) {
      const raw = node.raw;
      if (raw === null) continue;
      const log = raw.raft.log;
      const c = log.committed;
      const h = log.hash(c);
      if (h === null) this.fail(`${node.id}: no entry at its commit index ${c}`);
      if (c <= this.maxCommit) {
        const known = this.committedHash[c];
        if (known === undefined) this.committedHash[c] = h;
        else if (!bytesEqual(known, h)) this.fail(`State Machine Safety: ${node.id} committed a different entry at ${c}`);
      } else {
        // New high-water mark: the chain must run through the previous one; record the new range.
        const prevTop = this.committedHash[this.maxCommit];
        const mineAtPrev = log.hash(this.maxCommit);
        if (prevTop !== undefined && mineAtPrev !== null && !bytesEqual(prevTop, mineAtPrev))
          this.fail(`State Machine Safety: ${node.id} committed ${c} on a chain that differs at ${this.maxCommit}`);
        for (let i = Math.max(this.maxCommit + 1, log.firstIndex()); i <= c; i++) this.committedHash[i] = log.hash(i) as Uint8Array;
        this.committedHash[c] = h;
        this.maxCommit = c;
      }
      // A node must never lose a committed entry it holds (truncation below commit).
      if (log.lastIndex() < c) this.fail(`${node.id}: log ends at ${log.lastIndex()} below its commit ${c}`);
      for (const cl of this.clients) {
        for (const a of cl.acked) {
          if (a.index > c || a.index < log.firstIndex()) continue;
          const e = log.entry(a.index);
          const applied = this.appliedEntry[a.index];
          if (e === null || applied === undefined || !bytesEqual(e.hash, applied.hash))
            this.fail(`acknowledged put ${cl.id}/${a.seq} at ${a.index} is gone from ${node.id}`);
        }
      }
    }
  }

  private liveness(): void {
    if (this.now < this.healAt) return;
    const since = this.now - this.healAt;
    const settle = Math.floor(this.healTicks / 2);
    if (since === settle) {
      const leader = this.currentLeader();
      if (leader === null) this.fail(`Liveness: no leader ${settle} ticks after faults healed`);
      this.livenessMark = { index: leader.raw?.raft.log.lastIndex() ?? 0, leader: leader.id };
    }
  }

  private finalChecks(): void {
    const mark = this.livenessMark;
    if (mark !== null) {
      const leader = this.nodes.get(mark.leader) as SimNode;
      const cfg = (leader.raw as RawNode).raft.config();
      for (const id of voterIds(cfg)) {
        const n = this.nodes.get(id) as SimNode;
        if (n.raw === null || n.sm.applied < mark.index)
          this.fail(`Liveness: ${id} applied ${n.sm.applied}, below ${mark.index} which the leader held at heal+${this.healTicks / 2}`);
      }
      for (const c of this.clients) {
        if (c.op !== null && c.op.call <= this.healAt + this.healTicks / 2)
          this.fail(`Liveness: client ${c.id} op called at ${c.op.call} still pending at the end`);
      }
    }
    for (const c of this.clients) {
      if (c.op === null) continue;
      if (c.op.kind === "put") {
        this.history.push({ status: "unknown", clientId: c.id, input: { type: "put", key: c.op.key, value: c.op.value }, call: c.op.call });
        this.stats.clientOps.unknown++;
      } else this.stats.clientOps.failed++;
    }
    const res = checkLinearizability(kvModel, this.history, { maxSteps: 2_000_000 });
    if (res.ok === false) this.fail(`Linearizability: ${res.reason}\n${res.explanation}`);
  }

  // ---- clients ----

  private clientsAct(): void {
    const budget = this.opts.maxClientOps ?? 100;
    for (const c of this.clients) {
      if (c.op === null) {
        if (this.opsStarted >= budget || !this.rng.chance(0.3)) continue;
        this.opsStarted++;
        const key = this.rng.pick(KEYS);
        if (this.rng.chance(0.6)) {
          c.seq++;
          c.op = { kind: "put", key, value: `${c.id}.${c.seq}`, seq: c.seq, call: this.now, attempt: null, retryAt: this.now };
        } else {
          c.op = { kind: "get", key, call: this.now, ctx: 0, node: null, retryAt: this.now };
        }
      }
      const op = c.op;
      if (op === null) continue;
      // Clients give up only while faults last; after the heal every call must complete (liveness).
      if (this.faulty() && this.now - op.call > 150) {
        if (op.kind === "put") {
          this.history.push({ status: "unknown", clientId: c.id, input: { type: "put", key: op.key, value: op.value }, call: op.call });
          this.stats.clientOps.unknown++;
        } else this.stats.clientOps.failed++;
        c.op = null;
        continue;
      }
      if (op.kind === "put") this.drivePut(c, op);
      else this.driveGet(c, op);
    }
  }

  private pickTarget(c: Client): SimNode | null {
    const hinted = c.hint !== null ? this.nodes.get(c.hint) : undefined;
    if (hinted !== undefined && hinted.raw !== null && this.rng.chance(0.8)) return hinted;
    const up = this.ids.filter((id) => this.nodes.get(id)?.raw !== null);
    return up.length === 0 ? null : (this.nodes.get(this.rng.pick(up)) as SimNode);
  }

  private drivePut(c: Client, op: Extract<ClientOp, { kind: "put" }>): void {
    const a = op.attempt;
    if (a !== null) {
      const node = this.nodes.get(a.node) as SimNode;
      const stale = node.raw === null || node.raw.raft.log.term(a.index) !== a.term;
      if (!stale && this.now < op.retryAt) return;
    } else if (this.now < op.retryAt) return;
    const node = this.pickTarget(c);
    if (node === null || node.raw === null) return;
    const r = node.raw.propose(EntryKind.Record, encodePut({ c: c.id, s: op.seq, k: op.key, v: op.value }));
    if (r.ok) {
      op.attempt = { node: node.id, index: r.index, term: r.term };
      op.retryAt = this.now + 60;
      c.hint = node.id;
    } else {
      op.attempt = null;
      op.retryAt = this.now + 2;
      c.hint = r.leader;
    }
    if (this.opts.coalesce !== true) this.processReady(node, null);
  }

  private putApplied(node: SimNode, clientId: string, seq: number, index: number): void {
    const c = this.clients.find((x) => x.id === clientId);
    if (c === undefined) return;
    const op = c.op;
    if (op === null || op.kind !== "put" || op.seq !== seq || op.attempt === null || op.attempt.node !== node.id) return;
    this.history.push({ clientId: c.id, input: { type: "put", key: op.key, value: op.value }, output: null, call: op.call, return: this.now });
    this.stats.clientOps.ok++;
    c.acked.push({ seq, index });
    c.op = null;
  }

  private driveGet(c: Client, op: Extract<ClientOp, { kind: "get" }>): void {
    if (op.node !== null) {
      const node = this.nodes.get(op.node) as SimNode;
      if (node.raw !== null && this.now < op.retryAt) return;
    } else if (this.now < op.retryAt) return;
    const node = this.pickTarget(c);
    if (node === null || node.raw === null) return;
    if (this.opts.unsafeLocalReads === true) {
      // Planted bug: answer from whatever the contacted node has applied, without ReadIndex.
      this.history.push({ clientId: c.id, input: { type: "get", key: op.key }, output: node.sm.get(op.key), call: op.call, return: this.now });
      this.stats.clientOps.ok++;
      c.op = null;
      return;
    }
    const ctx = this.nextCtx++;
    const r = node.raw.readIndex(ctx);
    if (r.ok) {
      op.ctx = ctx;
      op.node = node.id;
      op.retryAt = this.now + 40;
      node.reads.push({ client: c, ctx, index: null });
      c.hint = node.id;
    } else {
      op.node = null;
      op.retryAt = this.now + 2;
      c.hint = r.leader;
    }
    if (this.opts.coalesce !== true) this.processReady(node, null);
  }
}

/** Runs one seed. */
export function simulate(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}
