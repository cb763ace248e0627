/**
 * The runtime: the one writer of a node's data dir. Inputs (ticks, peer messages, proposals) go to
 * the pure Raft core; each Ready is handled in order — persist (one transaction: group commit),
 * send, apply (state machine + last_applied in the same transaction), advance — and only then are
 * listeners told what was applied. It owns the store, the cached hard state (in RaftStorage), the
 * leader's duties (checkpoints), every node's snapshots, and the storage-fault policy.
 */
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { Entry, EntryKind } from "../ledger/entry";
import { decodeCheckpoint, encodeCheckpoint, signCheckpoint } from "../ledger/checkpoint";
import { decodeRecord } from "../ledger/record";
import { applyEntry, ApplyResult, StateStore } from "../ledger/state-machine";
import { SubjectCommitments } from "./subjects";
import { toHex } from "../ledger/bytes";
import { decodeConfig } from "../ledger/config";
import { ClusterConfig, coalesceAppends, Member, Message, Prng, ProposeResult, RawNode, ReadState, Ready, Role } from "../raft";
import type { Store } from "../storage/store";
import { DataDir, DB_FILE } from "./data-dir";
import { RaftStorage, VerificationFailure } from "./raft-storage";
import { PeerTransport } from "./peer-transport";
import { isRaftMessage } from "./raft-messages";
import { ForwardMessage, isForwardMessage } from "./forward";
import { createSnapshot, cutPrunedHistory, hasRetainedStart, markPruned, SNAPSHOTS_KEEP_DEFAULT } from "./snapshots";
import { LagProbe } from "./lag-probe";
import { snapshotInWorker } from "./snapshot-worker";
import { WalCheckpointer, WalCheckpointStats, workerCheckpointRunner } from "./wal-checkpointer";
import { storageFaultCode } from "./storage-fault";
import type { NodeStatus, Readiness } from "./ports";
import { assert } from "../util/assert";

/** What peers send each other: Raft messages, and writes a follower forwards to the leader with their answers. */
export type PeerMessage = Message | ForwardMessage;
const isForward = (m: PeerMessage): m is ForwardMessage => m.type === "ForwardAppend" || m.type === "ForwardAnswer";
const isPeerMessage = (v: unknown): v is PeerMessage => isRaftMessage(v) || isForwardMessage(v);

export interface RuntimeOptions {
  readonly tickMs: number;
  readonly electionTick: number;
  readonly heartbeatTick: number;
  /** A checkpoint after this many entries since the last one... */
  readonly checkpointEvery: number;
  /** ...or after this long with uncheckpointed entries. */
  readonly checkpointIntervalMs: number;
  /** Snapshot after this many applied entries since the last snapshot (0 = never). A snapshot deletes no entry. */
  readonly snapshotEvery: number;
  /** Snapshots kept (default 3), besides the one at the log's anchor after a prune or an install. */
  readonly snapshotsKeep?: number;
  /** /ready answers 503 "behind" when last_applied trails the leader's commit index by more than this. */
  readonly readyMaxLag?: number;
  /** Peer addresses that override the configuration's (tests put fault proxies in between). */
  readonly peerAddresses?: ReadonlyMap<string, string>;
  /** Dial peers over TLS (wss://): set when this node serves TLS; every node of a cluster does or none. */
  readonly peerTls?: boolean;
  /** Called once when storage failed (disk full, EIO): the process should exit for its supervisor. */
  readonly onStorageFault?: (reason: string) => void;
  readonly now: () => Date;
  readonly logger: Logger;
}

/** What the runtime tells its listeners after each Ready, in this order. */
export interface ReadyListener {
  /** Entries applied by the Ready just handled, with what applying them did. */
  applied(results: ReadonlyArray<readonly [Entry, ApplyResult]>): void;
  /** ReadIndex answers of the Ready just handled; last_applied is already moved. */
  readStates(states: readonly ReadState[]): void;
  /** A snapshot replaced the log up to `index`: entries at or below it will never be applied here one by one. */
  snapshotInstalled(index: number): void;
  /** The node stopped (halted or closed): fail everything that waits. */
  stopped(reason: string): void;
}

/**
 * Raft core limits. The follower that catches up thousands of entries is where a node gets busy: a
 * Ready's work is bounded by what the leader sends at once (messages of at most MSG_BYTES_MAX, at
 * most INFLIGHT_MAX unacknowledged per peer: 512 KiB, ~1,700 typical entries, each hashed about
 * four times and written) and by what one Ready applies (COMMITTED_BYTES_MAX), so no Ready holds
 * the event loop for more than some tens of ms and heartbeats stay on time. Catch-up then runs at
 * 512 KiB per round trip: tens of thousands of entries a second on a LAN.
 */
const MSG_BYTES_MAX = 64 << 10;
const INFLIGHT_MAX = 8;
const COMMITTED_BYTES_MAX = 256 << 10;
/** A proposal is one record (the API's body limit is at most 16 MiB; records are far smaller in practice). */
const PROPOSAL_BYTES_MAX = 1 << 20;
/** Readys handled in one turn before yielding to timers and sockets: a bound in count... */
const READYS_PER_TURN_MAX = 64;
/** ...and in time: after this long, the rest waits for the next turn (ticks fire in between). */
const TURN_BUDGET_MS = 5;
/** Entries applied per transaction when recovering (last_applied, commit_index] at start. */
const RECOVERY_BATCH = 1024;
/** Entries scanned back at start for the log's last ts: checkpoints carry one at least every --checkpoint-every (<= 1,000 by default). */
const TS_SCAN_MAX = 100_000;
/** A leader's clock this far behind the log's last ts is worth an operator's look (NTP)... */
const CLOCK_BEHIND_WARN_MS = 1000;
/** ...said at most once a minute, not on every write. */
const CLOCK_WARN_EVERY_MS = 60_000;
/** Default for readyMaxLag: ~1 s of writes at a busy node's rate. */
const READY_MAX_LAG_DEFAULT = 1000;

export class LedgerRuntime {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly publicKey: string;
  readonly dbPath: string;
  readonly tickLag = new LagProbe();
  /** When the next tick is due (performance.now() time). */
  private tickDue = 0;
  private readonly store: Store;
  private readonly secretKey: Uint8Array;
  private readonly storage: RaftStorage;
  private readonly raw: RawNode;
  private readonly transport: PeerTransport<PeerMessage>;
  /** Who takes forwarded writes and their answers (src/node/forward.ts); until set, they are dropped. */
  private forwardHandler: ((m: ForwardMessage) => void) | null = null;
  private log: Logger;
  private ticker: NodeJS.Timeout | null = null;
  private readonly listeners = new Set<ReadyListener>();
  private readonly appliedListeners = new Set<(lastApplied: number) => void>();
  private appliedNotify = 0; // the last_applied listeners are told next (0: nothing pending)
  private readyTerm = -1;
  private processing = false;
  private scheduled = false;
  private closed = false;
  private haltReason: string | null = null;
  private sinceCheckpoint: number;
  private firstUncheckpointedAt: number;
  private lastSnapshotIndex: number;
  /** The first index this node holds history for (the store's meta; moved by a prune or an install). */
  private historyFrom = 1;
  /** The highest commit index a leader told this node of (Append and Heartbeat carry it). */
  private leaderCommit = 0;
  /** The latest ts in this node's log (records and checkpoints), ms since the epoch: stamps never go below it. */
  private lastTsMs = 0;
  /** How far this node's clock was behind the log's last ts when it last stamped one (ms, 0 when not). */
  private clockBehindMs = 0;
  private clockWarnedAt = Number.NEGATIVE_INFINITY;
  private readonly bootstrapPeers: readonly Member[];
  /** Said once: the snapshot worker runs at the loop's priority (src/node/background.ts). */
  private warnedPriority = false;
  /**
   * Snapshots that prunes on their way name as their anchor (index → prunes naming it): retention
   * keeps them until the prune is applied and the log is cut there. Without this a snapshot taken
   * between the prune's check and its apply could drop the anchor (keep 3: the oldest goes), and the
   * leader was left without the start its prune recorded. Bounded by the writes in flight
   * (maxPendingWrites): a pin lives from a prune's proposal to its fate.
   */
  private readonly pinnedSnapshots = new Map<number, number>();
  /** Stops the snapshot being made in a worker; null when none is. */
  private stopSnapshot: (() => void) | null = null;
  /** WAL checkpoints in a worker thread, not inside the Ready's commit (src/node/wal-checkpointer.ts). */
  private readonly wal: WalCheckpointer;

  /** subjects_root: the tree of the applied state and its copy at the latest applied checkpoint. */
  readonly subjects: SubjectCommitments;
  /** The store as apply writes it: subject writes also reach the subjects tree. */
  private readonly state: StateStore;

  constructor(dd: DataDir, private readonly opts: RuntimeOptions) {
    assert(opts.checkpointEvery >= 1, "checkpointEvery must be >= 1");
    this.store = dd.store;
    this.dbPath = path.join(dd.dir, DB_FILE);
    this.nodeId = dd.nodeId;
    this.clusterId = dd.clusterId;
    this.publicKey = toHex(dd.key.publicKey);
    this.secretKey = dd.key.secretKey;
    this.log = opts.logger.child({ node_id: this.nodeId });
    this.store.setAutoCheckpoint(0);
    this.wal = new WalCheckpointer(() => workerCheckpointRunner(this.dbPath), () => this.store.checkpointWal(), this.log.child({ component: "wal" }));
    this.storage = new RaftStorage(this.store, this.clusterId, this.log);
    this.subjects = new SubjectCommitments(this.store);
    this.state = this.subjects.tracking(this.store);
    this.loadSubjects();
    // Entries committed but not applied before a crash are applied first, from the store.
    this.applyFromStore();
    // A prune applied before a crash finishes now, before the core reads the log's anchor.
    this.enforcePrune(true);
    const seed = randomBytes(4).readUInt32BE(0);
    this.raw = new RawNode({
      id: this.nodeId, storage: this.storage, applied: this.storage.durable().lastApplied,
      electionTick: opts.electionTick, heartbeatTick: opts.heartbeatTick, preVote: true, checkQuorum: true,
      maxMsgBytes: MSG_BYTES_MAX, maxInflight: INFLIGHT_MAX, maxCommittedBytes: COMMITTED_BYTES_MAX, maxProposalBytes: PROPOSAL_BYTES_MAX, rng: new Prng(seed),
    });
    this.lastTsMs = this.lastLogTs();
    const cp = this.store.latestCheckpoint(this.clusterId);
    this.sinceCheckpoint = this.storage.lastIndex() - (cp?.index ?? 0);
    this.firstUncheckpointedAt = opts.now().getTime();
    this.lastSnapshotIndex = this.store.latestSnapshot()?.index ?? 0;
    const boot = this.store.getMeta("bootstrap_peers");
    const bootCfg = boot === undefined ? null : decodeConfig(Buffer.from(boot, "utf8"));
    this.bootstrapPeers = bootCfg === null ? [] : [...bootCfg.voters, ...bootCfg.learners];
    this.transport = new PeerTransport<PeerMessage>({
      nodeId: this.nodeId, clusterId: this.clusterId, secretKey: this.secretKey, logger: this.log.child({ component: "transport" }),
      peer: (id) => this.peerInfo(id), isMessage: isPeerMessage, tls: opts.peerTls === true,
      // Forwarded writes are not Raft input: they go to the writes module, off the Ready loop.
      onMessage: (m) => (isForward(m) ? this.forwardHandler?.(m) : this.input(() => this.step(m))),
    });
    this.log = this.log.child({ term: this.raw.status().term });
    // A lone voter need not wait out an election timeout to lead.
    const cfg = this.raw.status().config;
    if (cfg.voters.length === 1 && cfg.voters[0].id === this.nodeId) this.input(() => this.raw.campaign());
    this.scheduleTick(performance.now() + opts.tickMs);
    this.log.info({ seed, last_index: this.storage.lastIndex(), last_applied: this.storage.durable().lastApplied }, "raft node started");
  }

  /** The tick timer, re-armed each time, so the probe sees how late each one fired. */
  private scheduleTick(due: number): void {
    this.tickDue = due;
    this.ticker = setTimeout(() => {
      const now = performance.now();
      this.tickLag.record(due, now);
      if (this.closed || this.haltReason !== null) return;
      this.input(() => this.raw.tick());
      this.scheduleTick(now + this.opts.tickMs);
    }, Math.max(0, due - performance.now()));
    this.ticker.unref();
  }

  /** Milliseconds until the next tick is due (<= 0: due now, its timer not run yet); Infinity when none will come. */
  tickDueInMs(): number {
    if (this.closed || this.haltReason !== null) return Number.POSITIVE_INFINITY;
    return this.tickDue - performance.now();
  }

  private step(m: Message): void {
    if ((m.type === "Append" || m.type === "Heartbeat") && m.commit > this.leaderCommit) this.leaderCommit = m.commit;
    this.raw.step(m);
  }

  /** The transport takes over /v1/raft upgrades on the HTTP server. */
  get peers(): PeerTransport<PeerMessage> {
    return this.transport;
  }

  /** Forwarded writes and their answers from authenticated peers go to `handler` (one: the writes module). */
  onForward(handler: (m: ForwardMessage) => void): void {
    this.forwardHandler = handler;
  }

  /** Sends a forwarded write or its answer to a peer, on this node's link to it. */
  sendForward(m: ForwardMessage): void {
    if (this.running) this.transport.send(m);
  }

  subscribe(l: ReadyListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Calls fn with the new last_applied after applies: once per turn, after the Ready was handled. */
  onApplied(fn: (lastApplied: number) => void): () => void {
    this.appliedListeners.add(fn);
    return () => this.appliedListeners.delete(fn);
  }

  get halted(): string | null {
    return this.haltReason;
  }

  get running(): boolean {
    return !this.closed && this.haltReason === null;
  }

  lastApplied(): number {
    return this.storage.durable().lastApplied;
  }

  commitIndex(): number {
    return this.storage.durable().commitIndex;
  }

  currentTerm(): number {
    return this.raw.status().term;
  }

  config(): ClusterConfig {
    return this.raw.status().config;
  }

  isLeader(): boolean {
    return this.haltReason === null && this.raw.status().role === Role.Leader;
  }

  leader(): string | null {
    return this.haltReason === null ? this.raw.status().lead : null;
  }

  /** A member's client-facing address, as the configuration has it (--peers overrides only dialing). */
  memberAddress(id: string): string | null {
    const cfg = this.raw.status().config;
    return [...cfg.voters, ...cfg.learners].find((m) => m.id === id)?.address ?? null;
  }

  /** True once the entry at last_applied is of the current term (the leader's NOOP is applied). */
  appliedOwnTerm(): boolean {
    const term = this.raw.status().term;
    if (this.readyTerm === term) return true;
    const applied = this.lastApplied();
    const anchor = this.storage.anchor();
    const appliedTerm = anchor.index === applied ? anchor.term : applied > anchor.index && applied <= this.storage.lastIndex() ? this.storage.entry(applied).term : undefined;
    if (appliedTerm !== term) return false;
    this.readyTerm = term;
    return true;
  }

  private peerInfo(id: string): { address: string; publicKey: string } | undefined {
    const cfg = this.raw.status().config;
    // A joining node trusts the members it was told of until its own log names its cluster.
    const m: Member | undefined = [...cfg.voters, ...cfg.learners].find((x) => x.id === id) ??
      (isMemberOf(cfg, this.nodeId) ? undefined : this.bootstrapPeers.find((x) => x.id === id));
    if (m === undefined) return undefined;
    return { address: this.opts.peerAddresses?.get(id) ?? m.address, publicKey: m.public_key };
  }

  private keysOf(config: ClusterConfig | null): Map<string, string> {
    const cfg = config ?? this.raw.status().config;
    return new Map([...cfg.voters, ...cfg.learners].map((m) => [m.id, m.public_key]));
  }

  status(): NodeStatus {
    const s = this.raw.status();
    const hard = this.storage.durable();
    const halted = this.haltReason;
    return {
      // A halted node does not lead or follow anyone, whatever its frozen core last believed.
      node_id: this.nodeId, public_key: this.publicKey, role: halted === null ? s.role : "halted", term: s.term,
      leader: halted === null ? s.lead : null,
      leader_address: s.lead === null || halted !== null ? null : this.memberAddress(s.lead),
      // head: the hash of the last entry this node stored (an uncommitted suffix included: a cut-off
      // leader shows what it holds); it equals the entry at commit_index once the node is quiescent.
      commit_index: hard.commitIndex, last_applied: hard.lastApplied, head: toHex(this.storage.treeHead().head), cluster: this.clusterId,
      voters: s.config.voters.map((m) => m.id), learners: s.config.learners.map((m) => m.id), halted,
      history_from: this.historyFrom,
    };
  }

  /** Can this node serve now: running, a leader known (itself with its NOOP applied, or another), not far behind. */
  readiness(): Readiness {
    const s = this.raw.status();
    const hard = this.storage.durable();
    const lead = this.leader();
    const max = this.opts.readyMaxLag ?? READY_MAX_LAG_DEFAULT;
    const behind = lead === null || lead === this.nodeId ? Math.max(0, hard.commitIndex - hard.lastApplied) : Math.max(0, this.leaderCommit - hard.lastApplied);
    const reasons = [
      ...(this.closed ? ["closed: the node is shutting down"] : []),
      ...(this.haltReason !== null ? [`halted: ${this.haltReason}`] : []),
      ...(this.haltReason === null && lead === null ? ["no known leader"] : []),
      ...(lead === this.nodeId && s.role === Role.Leader && !this.appliedOwnTerm() ? ["leader: applying entries of earlier terms"] : []),
      ...(hard.lastApplied !== hard.commitIndex ? [`applying: last_applied ${hard.lastApplied} < commit_index ${hard.commitIndex}`] : []),
      ...(behind > max ? [`behind: last_applied ${hard.lastApplied} trails the leader's commit index ${this.leaderCommit} by ${behind} (> ${max})`] : []),
    ];
    return { ready: reasons.length === 0, reasons, behind };
  }

  // ---- the loop ----

  /** Feeds one input to the core, then handles whatever Ready it produced. False when not running. */
  input(fn: () => void): boolean {
    if (!this.running) return false;
    assert(!this.processing, "raft input while a Ready is being handled");
    fn();
    this.schedule();
    return true;
  }

  /** Proposes an entry; null when the node is not running. */
  propose(kind: EntryKind, payload: Uint8Array): ProposeResult | null {
    let r: ProposeResult | null = null;
    this.input(() => {
      r = this.raw.propose(kind, payload);
    });
    return r;
  }

  proposeConfig(next: ClusterConfig): ProposeResult | null {
    let r: ProposeResult | null = null;
    this.input(() => {
      r = this.raw.proposeConfig(next);
    });
    return r;
  }

  readIndex(ctx: number): ProposeResult | null {
    let r: ProposeResult | null = null;
    this.input(() => {
      r = this.raw.readIndex(ctx);
    });
    return r;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // setImmediate lets every input of this turn join one Ready: one transaction, one fsync.
    setImmediate(() => {
      this.scheduled = false;
      this.process();
    });
  }

  private process(): void {
    if (!this.running) return;
    this.processing = true;
    const started = performance.now();
    let failure: unknown = null;
    try {
      for (let rounds = 0; rounds < READYS_PER_TURN_MAX && this.raw.hasReady() && (rounds === 0 || performance.now() - started < TURN_BUDGET_MS); rounds++) {
        this.handle(this.raw.ready());
        this.wal.committed();
      }
      if (this.raw.hasReady()) this.schedule();
    } catch (err) {
      failure = err;
    } finally {
      this.processing = false;
    }
    try {
      if (failure === null) this.maybeCheckpoint();
    } catch (err) {
      failure = err;
    }
    if (failure !== null) this.fail(failure);
  }

  private handle(rd: Ready): void {
    if (rd.softState !== null) {
      this.log = this.opts.logger.child({ node_id: this.nodeId, term: this.raw.status().term });
      this.log.info({ role: rd.softState.role, leader: rd.softState.lead }, "role changed");
    }
    for (const r of rd.reports) this.log.warn({ report: r }, "rejected what a peer sent: verification failed");
    if (rd.halted !== null) throw new VerificationFailure(0, rd.halted);
    // Raft thesis 10.2.1: a leader's Append/Heartbeat messages need not wait for its own fsync
    // (it counts itself toward a majority only once advance() reports its entries durable), so
    // they leave first and replication overlaps the local write. Everything else (votes, acks)
    // depends on what this Ready persists and goes after it.
    const leading = this.raw.status().role === Role.Leader;
    // One Append per peer where the core made several that continue one another (src/raft/coalesce.ts).
    const messages = coalesceAppends(rd.messages, MSG_BYTES_MAX);
    const early = new Set<Message>(leading ? messages.filter((m) => m.type === "Append" || m.type === "Heartbeat") : []);
    for (const m of early) this.transport.send(m);
    // Committed entries are applied in the same transaction that persists this Ready: they are
    // committed already (a majority holds them), so applying before the sends is safe, and the
    // node pays one fsync per Ready instead of two.
    let applied: Array<[Entry, ApplyResult]> = [];
    let pruned = false;
    this.storage.persist(rd, (c, at) => this.keysOf(c ?? (at === undefined ? null : this.raw.configAt(at))), rd.committedEntries.length === 0 ? null : () => {
      applied = rd.committedEntries.map((e) => [e, this.apply(e)]);
      // A recorded prune moves history_from in the same transaction as its apply (deterministic).
      for (const e of rd.committedEntries) if (markPruned(this.store, e)) pruned = true;
      this.storage.markApplied(rd.committedEntries[rd.committedEntries.length - 1].index);
    });
    if (rd.snapshot !== null) {
      this.lastSnapshotIndex = rd.snapshot.meta.index;
      this.historyFrom = this.store.historyFrom();
      this.loadSubjects();
    }
    for (const m of messages) if (!early.has(m)) this.transport.send(m);
    this.raw.advance(rd);
    this.followTs(rd.entries);
    for (const e of rd.entries) {
      this.sinceCheckpoint = e.kind === EntryKind.Checkpoint ? 0 : this.sinceCheckpoint + 1;
      if (this.sinceCheckpoint === 1) this.firstUncheckpointedAt = this.opts.now().getTime();
    }
    this.maybeSnapshot();
    if (pruned) this.enforcePrune(false);
    // The Ready is handled: now the listeners (writes' waiters, ReadIndex) hear of it.
    for (const l of this.listeners) {
      if (rd.snapshot !== null) l.snapshotInstalled(rd.snapshot.meta.index);
      if (applied.length > 0) l.applied(applied);
      if (rd.readStates.length > 0) l.readStates(rd.readStates);
    }
    if (applied.length > 0) this.notifyApplied(applied[applied.length - 1][0].index);
  }

  /** Streams and other last_applied listeners run on a later turn, once, with the latest index. */
  private notifyApplied(index: number): void {
    if (this.appliedNotify === 0) {
      setImmediate(() => {
        const at = this.appliedNotify;
        this.appliedNotify = 0;
        for (const l of this.appliedListeners) l(at);
      });
    }
    this.appliedNotify = index;
  }

  /** Applies one committed entry (the ones before it applied); a checkpoint whose subjects_root is not the state's halts the node. */
  private apply(e: Entry): ApplyResult {
    const result = applyEntry(this.state, e);
    const problem = this.subjects.applied(e);
    if (problem !== null) throw new VerificationFailure(e.index, problem);
    return result;
  }

  /** Rebuilds the subjects trees from the store (start-up, an installed snapshot). */
  private loadSubjects(): void {
    const applied = this.lastApplied();
    const problem = this.subjects.load(applied, this.store.latestCheckpoint(this.clusterId, applied));
    if (problem !== null) throw new VerificationFailure(this.store.latestCheckpoint(this.clusterId, applied)?.index ?? 0, problem);
  }

  /** Applies (last_applied, commit_index] from the store: recovery after a crash mid-apply. */
  private applyFromStore(): void {
    const hard = this.storage.durable();
    for (let from = hard.lastApplied + 1; from <= hard.commitIndex; from += RECOVERY_BATCH) {
      const to = Math.min(hard.commitIndex, from + RECOVERY_BATCH - 1);
      const entries = [...this.store.entries(from, to)];
      assert(entries.length === to - from + 1, `committed entries ${from}..${to} missing from the store`);
      this.storage.transaction(() => {
        for (const e of entries) {
          this.apply(e);
          markPruned(this.store, e);
        }
        this.storage.markApplied(to);
      });
    }
  }

  /** A storage fault stops the node for its supervisor; anything else halts it for an operator. */
  private fail(err: unknown): void {
    const code = storageFaultCode(err);
    if (code !== null) {
      this.stop(`storage fault: ${code}: ${(err as Error).message}`, err, "fatal");
      this.log.fatal({ code }, "storage fault: exiting for the supervisor to restart");
      this.opts.onStorageFault?.(`${code}: ${(err as Error).message}`);
      return;
    }
    const reason = err instanceof VerificationFailure ? `verification failed at index ${err.index}: ${err.message}` : `runtime failure: ${(err as Error).message}`;
    this.stop(reason, err, "halt");
  }

  /**
   * Stops taking input for good: no ticks (so no heartbeats: the others elect a leader), peer links
   * closed, everything that waits failed. What is durable stays durable; a restart recovers it.
   */
  private stop(reason: string, err: unknown, how: "halt" | "fatal"): void {
    if (this.haltReason !== null) return;
    this.haltReason = reason;
    if (this.ticker !== null) clearTimeout(this.ticker);
    this.stopSnapshot?.();
    this.stopSnapshot = null;
    this.wal.stop();
    if (how === "halt") this.log.fatal({ err, reason }, "node halted: it will not make progress until an operator intervenes");
    else this.log.error({ err, reason }, "node stopped");
    this.transport.close();
    for (const l of this.listeners) l.stopped(`node halted: ${reason}`);
  }

  // ---- time: a leader's timestamps never go below the log's ----

  /** The ts of the last record or checkpoint in the stored log, scanning back at most TS_SCAN_MAX entries. */
  private lastLogTs(): number {
    const last = this.storage.lastIndex();
    const first = Math.max(this.storage.anchor().index + 1, last - TS_SCAN_MAX + 1);
    for (let i = last; i >= first; i--) {
      const t = entryTs(this.storage.entry(i));
      if (t !== null) return t;
    }
    return 0;
  }

  /** Follows the log's latest ts through the entries a Ready persisted (one payload decoded per Ready). */
  private followTs(entries: readonly Entry[]): void {
    for (let i = entries.length - 1; i >= 0; i--) {
      const t = entryTs(entries[i]);
      if (t === null) continue;
      if (t > this.lastTsMs) this.lastTsMs = t;
      return;
    }
  }

  /**
   * The ts for a new record or checkpoint: max(this clock, the last ts in the log), so time never
   * runs backwards along the log, even when a leader with a slow clock takes over (DESIGN.md "The
   * log"). A clock behind the log by more than CLOCK_BEHIND_WARN_MS is logged and exported.
   */
  stamp(): string {
    const now = this.opts.now().getTime();
    this.clockBehindMs = Math.max(0, this.lastTsMs - now);
    if (this.clockBehindMs > CLOCK_BEHIND_WARN_MS && now - this.clockWarnedAt > CLOCK_WARN_EVERY_MS) {
      this.clockWarnedAt = now;
      this.log.warn({ behind_ms: this.clockBehindMs, clock: new Date(now).toISOString(), log_ts: new Date(this.lastTsMs).toISOString() },
        "this node's clock is behind the log's last timestamp: stamping the log's time instead (check NTP)");
    }
    const t = Math.max(now, this.lastTsMs);
    this.lastTsMs = t;
    return new Date(t).toISOString();
  }

  /** Seconds this node's clock was behind the log's last ts at its latest stamp. */
  clockBehindLogSeconds(): number {
    return this.clockBehindMs / 1000;
  }

  // ---- leader duties: checkpoints; every node: snapshots ----

  private maybeCheckpoint(): void {
    if (!this.isLeader() || this.sinceCheckpoint === 0) return;
    // A leader that removed itself leads until the change commits (thesis 4.2.2), but its key is no
    // longer one the log's configuration names: a checkpoint it signed now would fail every verifier.
    const cfg = this.raw.status().config;
    if (![...cfg.voters, ...cfg.learners].some((m) => m.id === this.nodeId)) return;
    const due = this.sinceCheckpoint >= this.opts.checkpointEvery ||
      this.opts.now().getTime() - this.firstUncheckpointedAt >= this.opts.checkpointIntervalMs;
    // Sign only what is durable here: nothing may be waiting in the core's unstable tail.
    if (!due || this.raw.status().lastIndex !== this.storage.lastIndex()) return;
    const head = this.storage.treeHead();
    // The state after entry head.size: the applied state with the durable tail replayed on a copy.
    const subjectsRoot = this.subjects.rootAfter(this.store.entries(this.lastApplied() + 1, head.size));
    const cp = signCheckpoint({
      v: 1, cluster: this.clusterId, size: head.size, root: toHex(head.root), head: toHex(head.head),
      term: this.raw.status().term, signer: this.nodeId, ts: this.stamp(), subjects_root: subjectsRoot,
    }, this.secretKey);
    const r = this.propose(EntryKind.Checkpoint, encodeCheckpoint(cp));
    if (r !== null && r.ok) assert(r.index === head.size + 1, `checkpoint landed at ${r.index}, expected ${head.size + 1}`);
  }

  /**
   * A snapshot every snapshotEvery applied entries; it compresses recovery and deletes no entry.
   * It is made in a worker thread (one at a time), so the loop keeps ticking meanwhile; the row
   * comes back here, to the only writer, to be stored.
   */
  private maybeSnapshot(): void {
    if (this.opts.snapshotEvery <= 0 || this.stopSnapshot !== null) return;
    if (this.lastApplied() - this.lastSnapshotIndex < this.opts.snapshotEvery) return;
    this.snapshotInBackground("every");
  }

  /** Makes a snapshot in the worker and stores it; then the next due one, or the prune waiting for it. */
  private snapshotInBackground(why: "every" | "prune"): void {
    if (this.stopSnapshot !== null) return;
    const applied = this.lastApplied();
    const job = { dbPath: this.dbPath, cluster: this.clusterId, nodeId: this.nodeId, secretKey: this.secretKey, ts: this.opts.now().toISOString() };
    const started = performance.now();
    this.stopSnapshot = snapshotInWorker(job, (outcome) => {
      this.stopSnapshot = null;
      if (outcome.priority !== undefined && !this.warnedPriority) {
        this.warnedPriority = true;
        this.log.warn({ reason: outcome.priority }, "the snapshot worker could not lower its priority");
      }
      if (!this.running) return;
      if (!outcome.ok) {
        // The disk failing under the worker is a storage fault like any other.
        if (outcome.code !== undefined && storageFaultCode(outcome) !== null) {
          this.fail(Object.assign(new Error(outcome.message), { code: outcome.code }));
          return;
        }
        // Not a fault of the log: the next one is tried after another snapshotEvery entries.
        this.lastSnapshotIndex = applied;
        this.log.error({ reason: outcome.message }, "snapshot failed");
        return;
      }
      const row = outcome.row;
      // A prune may have moved the log's anchor past it meanwhile: then it starts nothing.
      if (row.index <= (this.store.anchor()?.index ?? 0) || row.index <= this.lastSnapshotIndex) return;
      try {
        this.store.transaction(() => this.store.saveSnapshot(row));
        const dropped = this.store.retainSnapshots(this.opts.snapshotsKeep ?? SNAPSHOTS_KEEP_DEFAULT, this.pinnedSnapshot());
        this.lastSnapshotIndex = row.index;
        this.log.info({ index: row.index, why, snapshots_dropped: dropped, ms: Math.round(performance.now() - started) }, "snapshot taken (the log is untouched)");
      } catch (err) {
        this.fail(err);
        return;
      }
      // A prune waiting for a snapshot to start what is left cuts now; entries applied meanwhile
      // may make the next snapshot due already.
      if (this.store.historyFrom() > 1) this.enforcePrune(false);
      this.maybeSnapshot();
    });
  }

  /**
   * Keeps the snapshot at `index` from retention until the returned function is called (once the
   * prune that names it is applied, or failed). Prunes come one by one from an operator, so only
   * the earliest pinned index is protected when several are on their way.
   */
  pinSnapshot(index: number): () => void {
    this.pinnedSnapshots.set(index, (this.pinnedSnapshots.get(index) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.pinnedSnapshots.get(index) ?? 1) - 1;
      if (n <= 0) this.pinnedSnapshots.delete(index);
      else this.pinnedSnapshots.set(index, n);
    };
  }

  /** The earliest snapshot a prune on its way names (0: none). */
  private pinnedSnapshot(): number {
    let min = 0;
    for (const i of this.pinnedSnapshots.keys()) if (min === 0 || i < min) min = i;
    return min;
  }

  /** Snapshots the applied state now, on this thread (a prune needs it before it cuts), then keeps the last snapshotsKeep. */
  private snapshotNow(why: "prune"): void {
    const { row } = createSnapshot(this.store, { cluster: this.clusterId, nodeId: this.nodeId, secretKey: this.secretKey, now: this.opts.now });
    const dropped = this.store.retainSnapshots(this.opts.snapshotsKeep ?? SNAPSHOTS_KEEP_DEFAULT, this.pinnedSnapshot());
    this.lastSnapshotIndex = row.index;
    this.log.info({ index: row.index, why, snapshots_dropped: dropped }, "snapshot taken (the log is untouched)");
  }

  /**
   * After a recorded prune was applied (src/node/snapshots.ts): make sure a snapshot starts what is
   * left, then delete the log up to the newest snapshot before history_from. Also run at start, so
   * a crash between the apply and the deletion is finished by the restart.
   */
  private enforcePrune(atStart: boolean): void {
    this.historyFrom = this.store.historyFrom();
    if (this.historyFrom <= 1) return;
    if (!hasRetainedStart(this.store)) {
      // At start nothing is served yet: make it here. Running, the worker makes it off the loop and
      // this is called again once it is stored (history_from already answers 410 meanwhile).
      if (!atStart) {
        this.snapshotInBackground("prune");
        return;
      }
      this.snapshotNow("prune");
    }
    const cut = cutPrunedHistory(this.store);
    if (cut === null) return;
    this.storage.forgetUpTo(cut);
    this.log.warn({ history_from: this.historyFrom, anchor: cut }, "history pruned by a recorded prune: entries up to the anchor deleted");
  }

  /** Resolves once a leader is known (this node or another), polling each tick; for start-up and tests. */
  async leaderKnown(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = this.raw.status();
      const lead = st.lead;
      if (this.running && lead !== null && lead !== this.nodeId) return lead;
      // A leader counts once its first entry of the term (the NOOP) is applied here.
      if (this.running && lead === this.nodeId && st.role === Role.Leader && this.appliedOwnTerm()) return lead;
      if (!this.running || Date.now() > deadline) throw new Error(`no leader elected in ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, this.opts.tickMs));
    }
  }

  walCheckpoints(): WalCheckpointStats {
    return this.wal.stats();
  }

  /** Stops ticking and taking input, fails what waits, closes the transport and the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Let a Ready already scheduled finish: what it persists may have been promised to peers.
    if (this.scheduled) await new Promise<void>((r) => setImmediate(r));
    this.closed = true;
    if (this.ticker !== null) clearTimeout(this.ticker);
    this.stopSnapshot?.();
    this.stopSnapshot = null;
    for (const l of this.listeners) l.stopped("node is shutting down");
    this.transport.close();
    // The worker's connection first, so the writer's close can empty the WAL (Store.close).
    await this.wal.close();
    this.store.close();
    this.log.info("node closed");
  }
}

/** The ts a record or checkpoint entry carries (ms since the epoch); null for other kinds or an unreadable one. */
function entryTs(e: Entry): number | null {
  const payload = e.kind === EntryKind.Record ? decodeRecord(e.payload) : e.kind === EntryKind.Checkpoint ? decodeCheckpoint(e.payload) : null;
  if (payload === null) return null;
  const t = Date.parse(payload.ts);
  return Number.isFinite(t) ? t : null;
}

const isMemberOf = (cfg: ClusterConfig, id: string): boolean => [...cfg.voters, ...cfg.learners].some((m) => m.id === id);
