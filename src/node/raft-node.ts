/**
 * The node runtime around the pure Raft core (DESIGN.md "node/"): ticks from a timer, messages
 * from the peer transport, proposals from the API; each Ready handled in order — persist (one
 * transaction: group commit), send, apply (state machine + last_applied atomically), advance.
 * A single-node ledger is the same runtime with one voter.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { Entry, EntryKind, genesisHash } from "../ledger/entry";
import { consistencyProof, inclusionProof, leafHash, rootAt } from "../ledger/merkle";
import { encodeRecord, parseRecordPayload, RecordPayload, RecordRequest, requestDigest } from "../ledger/record";
import { encodeCheckpoint, signCheckpoint } from "../ledger/checkpoint";
import { applyEntry, ApplyResult, stateRoot } from "../ledger/state-machine";
import { toHex } from "../ledger/bytes";
import { decodeConfig } from "../ledger/config";
import { verifyChain, VerifyReport } from "../ledger/verify";
import { ClusterConfig, Member, Message, Prng, ProposeResult, Ready, Role, RawNode, makeConfig } from "../raft";
import { Store, StoredCheckpoint } from "../storage/store";
import { DataDir } from "./data-dir";
import { RaftStorage, VerificationFailure } from "./raft-storage";
import { PeerTransport } from "./peer-transport";
import { isRaftMessage } from "./raft-messages";
import { compactToSnapshot, createSnapshot } from "./snapshots";
import { LedgerError, notFound } from "../util/errors";
import { assert } from "../util/assert";

export interface RaftNodeOptions {
  readonly tickMs: number;
  readonly electionTick: number;
  readonly heartbeatTick: number;
  /** A checkpoint after this many entries since the last one... */
  readonly checkpointEvery: number;
  /** ...or after this long with uncheckpointed entries. */
  readonly checkpointIntervalMs: number;
  /** Snapshot and compact after this many applied entries since the last snapshot (0 = never). */
  readonly snapshotEvery: number;
  /** How long a write waits for commit before answering 503. */
  readonly writeTimeoutMs: number;
  /** Peer addresses that override the configuration's (tests put fault proxies in between). */
  readonly peerAddresses?: ReadonlyMap<string, string>;
  readonly now: () => Date;
  readonly logger: Logger;
}

export interface AppendResult {
  readonly index: number;
  readonly term: number;
  readonly hash: string;
  /** True when an earlier request with the same idempotency key made this record. */
  readonly duplicate: boolean;
}

export interface NodeStatus {
  readonly node_id: string;
  readonly public_key: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly leader_address: string | null;
  readonly commit_index: number;
  readonly last_applied: number;
  readonly head: string;
  readonly cluster: string;
  readonly voters: string[];
  readonly learners: string[];
  readonly halted: string | null;
}

/** An entry this leader proposed, waiting for its fate: applied, or overwritten by another term's. */
interface Waiter {
  readonly term: number;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: Error) => void;
}

interface ReadWaiter {
  index: number | null;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class RaftLedgerNode {
  readonly store: Store;
  readonly nodeId: string;
  readonly clusterId: string;
  readonly publicKey: string;
  private readonly secretKey: Uint8Array;
  private readonly storage: RaftStorage;
  private readonly raw: RawNode;
  private readonly transport: PeerTransport<Message>;
  private log: Logger;
  private readonly ticker: NodeJS.Timeout;
  private readonly waiters = new Map<number, Waiter>();
  private readonly reads = new Map<number, ReadWaiter>();
  private readonly inflight = new Map<string, { digest: string; done: Promise<AppendResult> }>();
  private readonly appliedListeners = new Set<(lastApplied: number) => void>();
  private appliedNotify = 0; // the last_applied listeners are told next (0: nothing pending)
  private nextReadCtx = 1;
  private readyTerm = -1;
  private processing = false;
  private scheduled = false;
  private closed = false;
  private halted: string | null = null;
  private sinceCheckpoint: number;
  private firstUncheckpointedAt: number;
  private lastSnapshotIndex: number;
  private readonly bootstrapPeers: readonly Member[];

  constructor(dd: DataDir, private readonly opts: RaftNodeOptions) {
    assert(opts.checkpointEvery >= 1, "checkpointEvery must be >= 1");
    this.store = dd.store;
    this.nodeId = dd.nodeId;
    this.clusterId = dd.clusterId;
    this.publicKey = toHex(dd.key.publicKey);
    this.secretKey = dd.key.secretKey;
    this.log = opts.logger.child({ node_id: this.nodeId });
    this.storage = new RaftStorage(this.store, this.clusterId, this.log);
    // Entries committed but not applied before a crash are applied first, from the store.
    this.applyFromStore();
    const seed = randomBytes(4).readUInt32BE(0);
    this.raw = new RawNode({
      id: this.nodeId, storage: this.storage, applied: this.store.hardState().lastApplied,
      electionTick: opts.electionTick, heartbeatTick: opts.heartbeatTick, preVote: true, checkQuorum: true,
      maxMsgBytes: 1 << 20, maxInflight: 256, maxCommittedBytes: 8 << 20, maxProposalBytes: 1 << 20, rng: new Prng(seed),
    });
    const cp = this.store.latestCheckpoint(this.clusterId);
    this.sinceCheckpoint = this.storage.lastIndex() - (cp?.index ?? 0);
    this.firstUncheckpointedAt = opts.now().getTime();
    this.lastSnapshotIndex = this.store.latestSnapshot()?.index ?? 0;
    const boot = this.store.getMeta("bootstrap_peers");
    const bootCfg = boot === undefined ? null : decodeConfig(Buffer.from(boot, "utf8"));
    this.bootstrapPeers = bootCfg === null ? [] : [...bootCfg.voters, ...bootCfg.learners];
    this.transport = new PeerTransport<Message>({
      nodeId: this.nodeId, clusterId: this.clusterId, secretKey: this.secretKey, logger: this.log.child({ component: "transport" }),
      peer: (id) => this.peerInfo(id), isMessage: isRaftMessage,
      onMessage: (m) => this.input(() => this.raw.step(m)),
    });
    this.log = this.log.child({ term: this.raw.status().term });
    // A lone voter need not wait out an election timeout to lead.
    const cfg = this.raw.status().config;
    if (cfg.voters.length === 1 && cfg.voters[0].id === this.nodeId) this.input(() => this.raw.campaign());
    this.ticker = setInterval(() => this.input(() => this.raw.tick()), opts.tickMs);
    this.ticker.unref();
    this.log.info({ seed, last_index: this.storage.lastIndex(), last_applied: this.store.hardState().lastApplied }, "raft node started");
  }

  /** The transport takes over /v1/raft upgrades on the HTTP server. */
  get peers(): PeerTransport<Message> {
    return this.transport;
  }

  /** True once the entry at last_applied is of the current term (the leader's NOOP is applied). */
  private appliedOwnTerm(): boolean {
    const term = this.raw.status().term;
    if (this.readyTerm === term) return true;
    const applied = this.store.hardState().lastApplied;
    const anchor = this.store.anchor();
    const appliedTerm = this.store.entry(applied)?.term ?? (anchor?.index === applied ? anchor.term : undefined);
    if (appliedTerm !== term) return false;
    this.readyTerm = term;
    return true;
  }

  /** Resolves once a leader is known (this node or another), polling the core each tick. */
  async leaderKnown(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = this.raw.status();
      const lead = st.lead;
      if (lead !== null && lead !== this.nodeId) return lead;
      // A leader counts once its first entry of the term (the NOOP) is applied here.
      if (lead === this.nodeId && st.role === Role.Leader && this.appliedOwnTerm()) return lead;
      if (this.closed || this.halted !== null || Date.now() > deadline) throw new LedgerError("unavailable", "no leader elected in time");
      await new Promise((r) => setTimeout(r, this.opts.tickMs));
    }
  }

  currentTerm(): number {
    return this.raw.status().term;
  }

  config(): ClusterConfig {
    return this.raw.status().config;
  }

  isLeader(): boolean {
    return this.raw.status().role === Role.Leader;
  }

  /** A member's client-facing address, as the configuration has it (--peers overrides only dialing). */
  memberAddress(id: string): string | null {
    const cfg = this.raw.status().config;
    return [...cfg.voters, ...cfg.learners].find((m) => m.id === id)?.address ?? null;
  }

  private peerInfo(id: string): { address: string; publicKey: string } | undefined {
    const cfg = this.raw.status().config;
    // A joining node trusts the members it was told of until its own log names its cluster.
    const m: Member | undefined = [...cfg.voters, ...cfg.learners].find((x) => x.id === id) ??
      (isVoterOrLearner(cfg, this.nodeId) ? undefined : this.bootstrapPeers.find((x) => x.id === id));
    if (m === undefined) return undefined;
    return { address: this.opts.peerAddresses?.get(id) ?? m.address, publicKey: m.public_key };
  }

  private keysOf(config: ClusterConfig | null): Map<string, string> {
    const cfg = config ?? this.raw.status().config;
    return new Map([...cfg.voters, ...cfg.learners].map((m) => [m.id, m.public_key]));
  }

  status(): NodeStatus {
    const s = this.raw.status();
    const hard = this.store.hardState();
    return {
      // A halted node does not lead or follow anyone, whatever its frozen core last believed.
      node_id: this.nodeId, public_key: this.publicKey, role: this.halted === null ? s.role : "halted", term: s.term,
      leader: this.halted === null ? s.lead : null,
      leader_address: s.lead === null || this.halted !== null ? null : this.memberAddress(s.lead),
      commit_index: hard.commitIndex, last_applied: hard.lastApplied, head: toHex(this.storage.treeHead().head), cluster: this.clusterId,
      voters: s.config.voters.map((m) => m.id), learners: s.config.learners.map((m) => m.id), halted: this.halted,
    };
  }

  // ---- the loop ----

  /** Feeds one input to the core, then handles whatever Ready it produced. */
  private input(fn: () => void): void {
    if (this.closed || this.halted !== null) return;
    assert(!this.processing, "raft input while a Ready is being handled");
    fn();
    this.schedule();
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
    if (this.closed || this.halted !== null) return;
    this.processing = true;
    try {
      for (let rounds = 0; rounds < 64 && this.raw.hasReady(); rounds++) this.handle(this.raw.ready());
    } catch (err) {
      this.halt(err instanceof VerificationFailure ? `verification failed at index ${err.index}: ${err.message}` : `runtime failure: ${(err as Error).message}`, err);
    } finally {
      this.processing = false;
    }
    if (this.halted === null && this.raw.hasReady()) this.schedule();
    if (this.halted === null) this.maybeCheckpoint();
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
    const early = new Set<Message>(leading ? rd.messages.filter((m) => m.type === "Append" || m.type === "Heartbeat") : []);
    for (const m of early) this.transport.send(m);
    // Committed entries are applied in the same transaction that persists this Ready: they are
    // committed already (a majority holds them), so applying before the sends is safe, and the
    // node pays one fsync per Ready instead of two.
    let applied: Array<[Entry, ApplyResult]> = [];
    this.storage.persist(rd, (c) => this.keysOf(c), rd.committedEntries.length === 0 ? null : () => {
      applied = this.applyInTxn(rd.committedEntries);
    });
    if (rd.snapshot !== null) this.lastSnapshotIndex = rd.snapshot.meta.index;
    for (const m of rd.messages) if (!early.has(m)) this.transport.send(m);
    if (applied.length > 0) this.afterApply(applied);
    this.raw.advance(rd);
    for (const rs of rd.readStates) {
      const w = this.reads.get(rs.ctx);
      if (w !== undefined) w.index = rs.index;
    }
    this.releaseReads();
    for (const e of rd.entries) {
      this.sinceCheckpoint = e.kind === EntryKind.Checkpoint ? 0 : this.sinceCheckpoint + 1;
      if (this.sinceCheckpoint === 1) this.firstUncheckpointedAt = this.opts.now().getTime();
    }
    this.maybeSnapshot();
  }

  /** Applies committed entries and moves last_applied; the caller holds the transaction. */
  private applyInTxn(entries: readonly Entry[]): Array<[Entry, ApplyResult]> {
    const results: Array<[Entry, ApplyResult]> = [];
    const last = entries[entries.length - 1].index;
    for (const e of entries) results.push([e, applyEntry(this.store, e)]);
    this.store.setLastApplied(last);
    if (this.store.hardState().commitIndex < last) this.store.setCommitIndex(last);
    return results;
  }

  /** Once the apply is durable: answer waiters, wake streams. */
  private afterApply(results: ReadonlyArray<[Entry, ApplyResult]>): void {
    for (const [e, r] of results) this.settle(e, r);
    // Listeners (streams) run after this Ready is handled, never inside it: once per turn, with the latest index.
    if (this.appliedNotify === 0) setImmediate(() => { const at = this.appliedNotify; this.appliedNotify = 0; for (const l of this.appliedListeners) l(at); });
    this.appliedNotify = results[results.length - 1][0].index;
  }

  /** Calls fn with the new last_applied after each apply; returns the unsubscribe function. */
  onApplied(fn: (lastApplied: number) => void): () => void {
    this.appliedListeners.add(fn);
    return () => this.appliedListeners.delete(fn);
  }

  private settle(e: Entry, r: ApplyResult): void {
    const w = this.waiters.get(e.index);
    if (w === undefined) return;
    this.waiters.delete(e.index);
    if (e.term !== w.term) {
      w.reject(new LedgerError("unavailable", `leadership changed before index ${e.index} committed; retry with the same Idempotency-Key`));
    } else if (e.kind === EntryKind.Config) {
      w.resolve({ index: e.index, term: e.term, hash: toHex(e.hash), duplicate: false });
    } else if (r.kind === "record") {
      w.resolve({ index: r.index, term: r.term, hash: toHex(r.hash), duplicate: false });
    } else if (r.kind === "duplicate") {
      w.resolve({ index: r.original.index, term: r.original.term, hash: toHex(r.original.hash), duplicate: true });
    } else {
      // applyEntry answers "record" or "duplicate" for every RECORD entry, or throws.
      assert(false, `entry ${e.index} of kind ${e.kind} had a waiter but applied as ${r.kind}`);
    }
  }

  /** Applies (last_applied, commit_index] from the store: recovery after a crash mid-apply. */
  private applyFromStore(): void {
    const hard = this.store.hardState();
    for (let from = hard.lastApplied + 1; from <= hard.commitIndex; from += 1024) {
      const to = Math.min(hard.commitIndex, from + 1023);
      const entries = [...this.store.entries(from, to)];
      assert(entries.length === to - from + 1, `committed entries ${from}..${to} missing from the store`);
      this.store.transaction(() => {
        for (const e of entries) applyEntry(this.store, e);
        this.store.setLastApplied(to);
      });
    }
  }

  private halt(reason: string, err: unknown): void {
    this.halted = reason;
    this.log.fatal({ err, reason }, "node halted: it will not make progress until an operator intervenes");
    for (const [i, w] of this.waiters) {
      w.reject(new LedgerError("unavailable", `node halted: ${reason}`));
      this.waiters.delete(i);
    }
    for (const [c, r] of this.reads) {
      clearTimeout(r.timer);
      r.reject(new LedgerError("unavailable", `node halted: ${reason}`));
      this.reads.delete(c);
    }
  }

  // ---- leader duties: checkpoints; every node: snapshots ----

  private maybeCheckpoint(): void {
    if (!this.isLeader() || this.sinceCheckpoint === 0) return;
    const due = this.sinceCheckpoint >= this.opts.checkpointEvery ||
      this.opts.now().getTime() - this.firstUncheckpointedAt >= this.opts.checkpointIntervalMs;
    // Sign only what is durable here: nothing may be waiting in the core's unstable tail.
    if (!due || this.raw.status().lastIndex !== this.storage.lastIndex()) return;
    const head = this.storage.treeHead();
    const cp = signCheckpoint({
      v: 1, cluster: this.clusterId, size: head.size, root: toHex(head.root), head: toHex(head.head),
      term: this.raw.status().term, signer: this.nodeId, ts: this.opts.now().toISOString(),
    }, this.secretKey);
    this.input(() => {
      const r = this.raw.propose(EntryKind.Checkpoint, encodeCheckpoint(cp));
      if (r.ok) assert(r.index === head.size + 1, `checkpoint landed at ${r.index}, expected ${head.size + 1}`);
    });
  }

  private maybeSnapshot(): void {
    if (this.opts.snapshotEvery <= 0) return;
    const applied = this.store.hardState().lastApplied;
    if (applied - this.lastSnapshotIndex < this.opts.snapshotEvery) return;
    const { row } = createSnapshot(this.store, { cluster: this.clusterId, nodeId: this.nodeId, secretKey: this.secretKey, now: this.opts.now });
    compactToSnapshot(this.store, row);
    this.storage.forgetUpTo(row.index);
    this.lastSnapshotIndex = row.index;
    this.log.info({ index: row.index }, "snapshot taken; log compacted");
  }

  // ---- client operations ----

  private notLeader(): LedgerError {
    const lead = this.raw.status().lead;
    if (lead === null || lead === this.nodeId) return new LedgerError("unavailable", "no leader is known yet; retry");
    return new LedgerError("not_leader", `node ${this.nodeId} is not the leader; ${lead} is`, { leader: lead, leader_address: this.memberAddress(lead) });
  }

  private refusal(r: Extract<ProposeResult, { ok: false }>): LedgerError {
    switch (r.reason) {
      case "not_leader":
        return this.notLeader();
      case "too_large":
        return new LedgerError("payload_too_large", "record is larger than a proposal may be");
      case "transferring":
      case "not_ready":
      case "config_pending":
      case "learner_behind":
      case "halted":
        return new LedgerError("unavailable", `cannot propose now (${r.reason}); retry`);
      case "config_invalid":
        return new LedgerError("bad_request", "configuration change is not a single voter added or removed");
      default: {
        const never: never = r.reason;
        return never;
      }
    }
  }

  /** Appends a validated record; resolves only after it is committed and applied here. */
  async append(record: RecordRequest, idempotencyKey?: string): Promise<AppendResult> {
    if (this.closed) throw new LedgerError("unavailable", "node is shutting down");
    if (this.halted !== null) throw new LedgerError("unavailable", `node halted: ${this.halted}`);
    if (!this.isLeader()) throw this.notLeader();
    // Until this leader applied an entry of its own term (its NOOP), entries of earlier terms may be
    // committed but not applied: a retried key would miss the dedup table and land twice.
    if (!this.appliedOwnTerm()) throw new LedgerError("unavailable", "new leader is applying earlier entries; retry");
    const digest = requestDigest(record);
    if (idempotencyKey !== undefined) {
      const prior = this.store.getDedup(idempotencyKey);
      if (prior !== undefined) {
        if (prior.digest !== digest) throw idempotencyConflict(idempotencyKey);
        return { index: prior.index, term: prior.term, hash: toHex(prior.hash), duplicate: true };
      }
      const running = this.inflight.get(idempotencyKey);
      if (running !== undefined) {
        if (running.digest !== digest) throw idempotencyConflict(idempotencyKey);
        return { ...(await this.withinWriteTimeout(running.done)), duplicate: true };
      }
    }
    const payload: RecordPayload = {
      v: 1, ...record, ts: this.opts.now().toISOString(),
      ...(idempotencyKey === undefined ? {} : { idempotency_key: idempotencyKey, request_digest: digest }),
    };
    const bytes = encodeRecord(payload);
    // The exact bytes go through apply's own validation first: an entry that reaches the log applies.
    parseRecordPayload(bytes);
    const fate = this.propose(EntryKind.Record, bytes);
    if (idempotencyKey !== undefined) {
      // The key stays in flight until the entry's fate is known, not merely until the client gave
      // up waiting: a retry after a 503 then waits for the same entry instead of proposing a copy.
      this.inflight.set(idempotencyKey, { digest, done: fate });
      const clear = (): void => {
        this.inflight.delete(idempotencyKey);
      };
      fate.then(clear, clear);
    }
    return this.withinWriteTimeout(fate);
  }

  /** The answer to a client: fate, or 503 once the write timeout passes (the entry may still commit). */
  private withinWriteTimeout(fate: Promise<AppendResult>): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new LedgerError("unavailable", `not committed within ${this.opts.writeTimeoutMs} ms (no quorum?); retry with the same Idempotency-Key`));
      }, this.opts.writeTimeoutMs);
      fate.then(
        (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  /** Proposes an entry; the promise settles with the entry's fate (no timeout: callers add one). */
  private propose(kind: EntryKind, payload: Uint8Array): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => {
      let result: ProposeResult | undefined;
      this.input(() => {
        result = this.raw.propose(kind, payload);
      });
      if (result === undefined) {
        reject(new LedgerError("unavailable", "node is not running"));
        return;
      }
      if (!result.ok) {
        reject(this.refusal(result));
        return;
      }
      this.waiters.set(result.index, { term: result.term, resolve, reject });
    });
  }

  /** ReadIndex: resolves once this leader confirmed its lead and applied up to the read index. */
  async readBarrier(): Promise<void> {
    if (this.halted !== null) throw new LedgerError("unavailable", `node halted: ${this.halted}`);
    if (!this.isLeader()) throw this.notLeader();
    const ctx = this.nextReadCtx++;
    return new Promise<void>((resolve, reject) => {
      let result: ProposeResult | undefined;
      this.input(() => {
        result = this.raw.readIndex(ctx);
      });
      if (result === undefined || !result.ok) {
        reject(result === undefined ? new LedgerError("unavailable", "node is not running") : this.refusal(result));
        return;
      }
      const timer = setTimeout(() => {
        this.reads.delete(ctx);
        reject(new LedgerError("unavailable", "leadership not confirmed in time for a linearizable read; retry"));
      }, this.opts.writeTimeoutMs);
      this.reads.set(ctx, { index: null, resolve, reject, timer });
    });
  }

  private releaseReads(): void {
    const applied = this.store.hardState().lastApplied;
    for (const [ctx, w] of this.reads) {
      if (w.index !== null && w.index <= applied) {
        clearTimeout(w.timer);
        this.reads.delete(ctx);
        w.resolve();
      }
    }
  }

  /** Adds a node as a learner, or promotes a learner to voter, or removes a member. */
  async changeMembership(change: { add?: Member; promote?: string; remove?: string }): Promise<{ index: number }> {
    if (!this.isLeader()) throw this.notLeader();
    const cur = this.config();
    let next: ClusterConfig;
    if (change.add !== undefined) {
      const m = change.add;
      if ([...cur.voters, ...cur.learners].some((x) => x.id === m.id)) throw new LedgerError("conflict", `${m.id} is already a member`);
      next = makeConfig(cur.voters, [...cur.learners, m]);
    } else if (change.promote !== undefined) {
      const m = cur.learners.find((x) => x.id === change.promote);
      if (m === undefined) throw notFound(`${change.promote} is not a learner`);
      next = makeConfig([...cur.voters, m], cur.learners.filter((x) => x.id !== m.id));
    } else if (change.remove !== undefined) {
      const id = change.remove;
      if (![...cur.voters, ...cur.learners].some((x) => x.id === id)) throw notFound(`${id} is not a member`);
      next = makeConfig(cur.voters.filter((x) => x.id !== id), cur.learners.filter((x) => x.id !== id));
    } else {
      throw new LedgerError("bad_request", "nothing to change");
    }
    const fate = new Promise<AppendResult>((resolve, reject) => {
      let result: ProposeResult | undefined;
      this.input(() => {
        result = this.raw.proposeConfig(next);
      });
      if (result === undefined || !result.ok) {
        reject(result === undefined ? new LedgerError("unavailable", "node is not running") : this.refusal(result));
        return;
      }
      this.waiters.set(result.index, { term: result.term, resolve, reject });
    });
    const r = await this.withinWriteTimeout(fate);
    return { index: r.index };
  }

  /** Promotes a learner once the core accepts it (it refuses while the learner lags). */
  async promoteWhenCaughtUp(id: string): Promise<{ index: number }> {
    const deadline = Date.now() + Math.max(30_000, this.opts.writeTimeoutMs);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.changeMembership({ promote: id });
      } catch (err) {
        const retryable = err instanceof LedgerError && err.code === "unavailable";
        if (!retryable || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 500)));
      }
    }
  }

  // ---- reads (from this node's applied state) ----

  commitIndex(): number {
    return this.store.hardState().lastApplied;
  }

  entry(index: number): Entry {
    const applied = this.commitIndex();
    const e = index <= applied ? this.store.entry(index) : undefined;
    if (e === undefined) {
      const anchor = this.store.anchor();
      if (anchor !== undefined && index <= anchor.index) throw notFound(`entry ${index} was compacted into the snapshot at ${anchor.index}`);
      throw notFound(`no committed entry at index ${index} (commit index ${applied})`);
    }
    return e;
  }

  prevHash(index: number): Uint8Array {
    if (index === 1) return genesisHash(this.clusterId);
    const anchor = this.store.anchor();
    if (anchor !== undefined && anchor.index === index - 1) return anchor.hash;
    return this.entry(index - 1).hash;
  }

  latestCheckpoint(): StoredCheckpoint | undefined {
    const cp = this.store.latestCheckpoint(this.clusterId);
    return cp !== undefined && cp.index <= this.commitIndex() ? cp : undefined;
  }

  checkpointBySize(size: number): StoredCheckpoint | undefined {
    const cp = this.store.checkpointBySize(size, this.clusterId);
    return cp !== undefined && cp.index <= this.commitIndex() ? cp : undefined;
  }

  private provable(size: number): void {
    const anchor = this.store.anchor();
    if (anchor !== undefined && anchor.index > 0 && this.store.latestSnapshot()?.index === anchor.index && this.store.findNode(0, 0) === undefined) {
      // A node that installed a snapshot holds only the Merkle peaks at the anchor.
      if (size < anchor.index) throw notFound(`this node's history starts at snapshot ${anchor.index}; ask a node with the full tree`);
    }
  }

  inclusion(index: number, size?: number): { index: number; size: number; leaf_hash: string; path: string[]; root: string; checkpoint?: StoredCheckpoint } {
    const commit = this.commitIndex();
    if (index > commit) throw notFound(`no committed entry at index ${index} (commit index ${commit})`);
    let n = size;
    if (n === undefined) {
      const cp = this.store.checkpointCovering(index, this.clusterId);
      if (cp === undefined || cp.index > commit) throw notFound(`no signed checkpoint covers index ${index} yet; pass ?size=N (<= ${commit}) or retry`);
      n = cp.size;
    }
    if (n < index) throw new LedgerError("bad_request", `size ${n} is smaller than index ${index}`);
    if (n > commit) throw notFound(`size ${n} is beyond the commit index ${commit}`);
    this.provable(index);
    const leaf = leafHash(this.entry(index).hash);
    const path = inclusionProof(this.store.readNode, index - 1, n).map(toHex);
    const cp = this.checkpointBySize(n);
    return { index, size: n, leaf_hash: toHex(leaf), path, root: toHex(rootAt(this.store.readNode, n)), ...(cp ? { checkpoint: cp } : {}) };
  }

  consistency(from: number, to?: number): { from: number; to: number; path: string[]; root_from: string; root_to: string; checkpoint?: StoredCheckpoint } {
    const commit = this.commitIndex();
    let n = to;
    if (n === undefined) {
      const cp = this.latestCheckpoint();
      if (cp === undefined) throw notFound("no signed checkpoint yet; pass &to=N");
      n = cp.size;
    }
    if (from > n) throw new LedgerError("bad_request", `from ${from} is larger than to ${n}`);
    if (n > commit) throw notFound(`to ${n} is beyond the commit index ${commit}`);
    this.provable(from);
    const path = consistencyProof(this.store.readNode, from, n).map(toHex);
    const cp = this.checkpointBySize(n);
    return {
      from, to: n, path, root_from: toHex(rootAt(this.store.readNode, from)), root_to: toHex(rootAt(this.store.readNode, n)),
      ...(cp ? { checkpoint: cp } : {}),
    };
  }

  verify(to?: number, from: "genesis" | "snapshot" = "genesis"): VerifyReport {
    return verifyChain(this.store, { from, ...(to === undefined ? {} : { to }) });
  }

  stateRoot(): string {
    return toHex(stateRoot(this.store.allSubjects(), this.store.allDedup()));
  }

  /** Stops ticking and taking input, fails what waits, closes the transport and the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Let a Ready already scheduled finish: what it persists may have been promised to peers.
    if (this.scheduled) await new Promise<void>((r) => setImmediate(r));
    this.closed = true;
    clearInterval(this.ticker);
    for (const w of this.waiters.values()) w.reject(new LedgerError("unavailable", "node is shutting down"));
    this.waiters.clear();
    for (const r of this.reads.values()) {
      clearTimeout(r.timer);
      r.reject(new LedgerError("unavailable", "node is shutting down"));
    }
    this.reads.clear();
    this.transport.close();
    this.store.close();
    this.log.info("node closed");
  }
}

const isVoterOrLearner = (cfg: ClusterConfig, id: string): boolean => [...cfg.voters, ...cfg.learners].some((m) => m.id === id);

const idempotencyConflict = (key: string): LedgerError =>
  new LedgerError("idempotency_conflict", `Idempotency-Key ${JSON.stringify(key)} was used with a different request body`);

/** The configuration a data dir's genesis entry holds (cluster init writes every member there). */
export function genesisConfig(store: Store): ClusterConfig | null {
  const e = store.entry(1);
  return e === undefined || e.kind !== EntryKind.Config ? null : decodeConfig(e.payload);
}
