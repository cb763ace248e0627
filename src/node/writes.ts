/**
 * Writes: append (with idempotency), membership changes and ReadIndex, all on one helper that
 * proposes and waits for the entry's fate. The leader accepts only so much at once: at most
 * maxUncommittedBytes of proposed payload not yet applied and maxPendingWrites writes waiting
 * (like etcd's MaxUncommittedEntriesSize); past either, a write is refused at once with 503 and
 * Retry-After, so a flood of clients meets a fast "not now" instead of a queue that grows until
 * every one of them times out.
 */
import { Entry, EntryKind } from "../ledger/entry";
import { encodeRecord, parseRecordPayload, RecordPayload, RecordRequest, requestDigest } from "../ledger/record";
import { ApplyResult } from "../ledger/state-machine";
import { toHex } from "../ledger/bytes";
import type { MemberInfo } from "../ledger/config";
import { ClusterConfig, makeConfig, ProposeResult, ReadState } from "../raft";
import { LedgerError, notFound } from "../util/errors";
import { assert } from "../util/assert";
import type { AppendResult, LedgerWrites } from "./ports";
import type { LedgerRuntime, ReadyListener } from "./runtime";
import type { Reader } from "./reader";
import type { RecordTypes } from "./record-types";
import { FORWARD_PENDING_MAX, Forwarder } from "./forward";
import { pruneAnchorOf } from "./snapshots";

export interface WritesOptions {
  /** How long a write waits for commit before answering 503 (the entry may still commit). */
  readonly writeTimeoutMs: number;
  /** Payload bytes proposed by this leader and not yet applied, at most. */
  readonly maxUncommittedBytes: number;
  /** Writes (records and membership changes) waiting for their fate, at most. */
  readonly maxPendingWrites: number;
  /** Validates a record forwarded by a follower, as the API validates a client's. */
  readonly types: RecordTypes;
}

/** Defaults: 32 MiB is ~100k typical records in flight, far above what a disk commits per second; 4,096 waiters at ~1 KiB each. */
export const MAX_UNCOMMITTED_BYTES_DEFAULT = 32 << 20;
export const MAX_PENDING_WRITES_DEFAULT = 4096;
/** Linearizable reads waiting for their ReadIndex: each is a promise and a timer; 4,096 is far above a busy node's concurrency. */
const PENDING_READS_MAX = 4096;
/** How long promoteWhenCaughtUp keeps asking before it gives up (a learner catching up a long log). */
const PROMOTE_TIMEOUT_MS = 30_000;

/** An entry this leader proposed, waiting for its fate: applied, or overwritten by another term's. */
interface Waiter {
  readonly term: number;
  readonly bytes: number;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: Error) => void;
}

interface ReadWaiter {
  index: number | null;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class Writes implements LedgerWrites, ReadyListener {
  private readonly waiters = new Map<number, Waiter>();
  private readonly reads = new Map<number, ReadWaiter>();
  private readonly inflight = new Map<string, { digest: string; done: Promise<AppendResult> }>();
  private nextReadCtx = 1;
  private uncommitted = 0;
  private refusedCount = 0;

  private readonly forwarder: Forwarder;

  constructor(private readonly rt: LedgerRuntime, private readonly reader: Reader, private readonly opts: WritesOptions) {
    rt.subscribe(this);
    this.forwarder = new Forwarder(
      { nodeId: rt.nodeId, leader: () => rt.leader(), send: (m) => rt.sendForward(m) },
      // A forwarded record is validated here like a client's body, then appended as this leader's own write.
      (record, key) => this.append(opts.types.validate(record).record, key),
      { writeTimeoutMs: opts.writeTimeoutMs, maxPending: Math.min(opts.maxPendingWrites, FORWARD_PENDING_MAX) },
    );
    rt.onForward((m) => this.forwarder.receive(m));
  }

  /** Bytes proposed and not yet applied; writes waiting; writes refused for the bounds so far. */
  figures(): { uncommittedBytes: number; pendingWrites: number; refused: number } {
    return { uncommittedBytes: this.uncommitted, pendingWrites: this.waiters.size, refused: this.refusedCount };
  }

  // ---- what the runtime tells us, after each Ready ----

  applied(results: ReadonlyArray<readonly [Entry, ApplyResult]>): void {
    for (const [e, r] of results) this.settle(e, r);
    this.releaseReads();
  }

  readStates(states: readonly ReadState[]): void {
    for (const rs of states) {
      const w = this.reads.get(rs.ctx);
      if (w !== undefined) w.index = rs.index;
    }
    this.releaseReads();
  }

  /** Reads whose ReadIndex is applied here now may go. */
  private releaseReads(): void {
    const applied = this.rt.lastApplied();
    for (const [ctx, w] of this.reads) {
      if (w.index !== null && w.index <= applied) {
        clearTimeout(w.timer);
        this.reads.delete(ctx);
        w.resolve();
      }
    }
  }

  snapshotInstalled(index: number): void {
    for (const [i, w] of this.waiters) {
      if (i > index) continue;
      this.waiters.delete(i);
      this.uncommitted -= w.bytes;
      w.reject(new LedgerError("unavailable", `a snapshot at ${index} replaced this node's log before index ${i} was applied here; retry with the same Idempotency-Key`));
    }
  }

  stopped(reason: string): void {
    this.forwarder.stopped(reason);
    for (const w of this.waiters.values()) w.reject(new LedgerError("unavailable", reason));
    this.waiters.clear();
    this.uncommitted = 0;
    for (const r of this.reads.values()) {
      clearTimeout(r.timer);
      r.reject(new LedgerError("unavailable", reason));
    }
    this.reads.clear();
  }

  private settle(e: Entry, r: ApplyResult): void {
    const w = this.waiters.get(e.index);
    if (w === undefined) return;
    this.waiters.delete(e.index);
    this.uncommitted -= w.bytes;
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

  // ---- refusals ----

  private notLeader(): LedgerError {
    const lead = this.rt.leader();
    if (lead === null || lead === this.rt.nodeId) return new LedgerError("unavailable", "no leader is known yet; retry");
    return new LedgerError("not_leader", `node ${this.rt.nodeId} is not the leader; ${lead} is`, { leader: lead, leader_address: this.rt.memberAddress(lead) });
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

  /** Throws unless this node can take a write now: running, leading, its NOOP applied. */
  private mustLead(): void {
    const halted = this.rt.halted;
    if (halted !== null) throw new LedgerError("unavailable", `node halted: ${halted}`);
    if (!this.rt.running) throw new LedgerError("unavailable", "node is shutting down");
    if (!this.rt.isLeader()) throw this.notLeader();
  }

  /** The bounds: refused at once, before anything is proposed. */
  private admit(bytes: number): void {
    const over = this.waiters.size >= this.opts.maxPendingWrites
      ? `${this.waiters.size} writes are waiting for commit (at most ${this.opts.maxPendingWrites})`
      : this.uncommitted + bytes > this.opts.maxUncommittedBytes
        ? `${this.uncommitted} uncommitted bytes are waiting for commit (at most ${this.opts.maxUncommittedBytes})`
        : null;
    if (over === null) return;
    this.refusedCount++;
    throw new LedgerError("unavailable", `the leader is at its write bound: ${over}; retry`, { reason: "overloaded" });
  }

  /** The one way to write: admit, propose, and wait for the entry's fate (no timeout: callers add one). */
  private proposeAndWait(propose: () => ProposeResult | null, bytes: number): Promise<AppendResult> {
    this.admit(bytes);
    const r = propose();
    if (r === null) return Promise.reject(new LedgerError("unavailable", "node is not running"));
    if (!r.ok) return Promise.reject(this.refusal(r));
    // An index is proposed once per term; a waiter still there is from an earlier term whose entry
    // this log no longer holds: its fate is no longer this entry's.
    const stale = this.waiters.get(r.index);
    if (stale !== undefined) {
      this.uncommitted -= stale.bytes;
      stale.reject(new LedgerError("unavailable", `leadership changed before index ${r.index} committed; retry with the same Idempotency-Key`));
    }
    this.uncommitted += bytes;
    return new Promise<AppendResult>((resolve, reject) => {
      this.waiters.set(r.index, { term: r.term, bytes, resolve, reject });
    });
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

  // ---- the writes ----

  async append(record: RecordRequest, idempotencyKey?: string): Promise<AppendResult> {
    this.mustLead();
    // Until this leader applied an entry of its own term (its NOOP), entries of earlier terms may be
    // committed but not applied: a retried key would miss the dedup table and land twice.
    if (!this.rt.appliedOwnTerm()) throw new LedgerError("unavailable", "new leader is applying earlier entries; retry");
    // The request's digest tells a retry from a reused key: without a key there is nothing to tell apart.
    const digest = idempotencyKey === undefined ? "" : requestDigest(record);
    if (idempotencyKey !== undefined) {
      const prior = this.reader.dedup(idempotencyKey);
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
      v: 1, ...record, ts: this.rt.stamp(),
      ...(idempotencyKey === undefined ? {} : { idempotency_key: idempotencyKey, request_digest: digest }),
    };
    const bytes = encodeRecord(payload);
    // The exact bytes go through apply's own validation first: an entry that reaches the log applies.
    parseRecordPayload(bytes);
    // A prune names a snapshot as the start of what it leaves: retention keeps that snapshot until the
    // prune is applied (the log is cut there then), whatever snapshots are taken meanwhile.
    const anchor = pruneAnchorOf(record);
    const unpin = anchor === null ? null : this.rt.pinSnapshot(anchor);
    let fate: Promise<AppendResult>;
    try {
      fate = this.proposeAndWait(() => this.rt.propose(EntryKind.Record, bytes), bytes.length);
    } catch (err) {
      unpin?.();
      throw err;
    }
    if (unpin !== null) fate.then(unpin, unpin);
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

  /**
   * A client's append on any node: appended here when this node leads; otherwise forwarded to the
   * leader over the peer link and answered with the leader's answer, or, with redirect, refused with
   * not_leader (a 307 to the leader). A halted or stopping node, or one that knows no leader, refuses.
   */
  appendOrForward(record: RecordRequest, idempotencyKey: string | undefined, redirect: boolean): Promise<AppendResult> {
    const lead = this.rt.leader();
    if (redirect || lead === null || lead === this.rt.nodeId || this.rt.halted !== null || !this.rt.running) return this.append(record, idempotencyKey);
    return this.forwarder.forward(lead, record, idempotencyKey);
  }

  async readBarrier(): Promise<void> {
    this.mustLead();
    if (this.reads.size >= PENDING_READS_MAX) {
      this.refusedCount++;
      throw new LedgerError("unavailable", `${this.reads.size} linearizable reads are waiting (at most ${PENDING_READS_MAX}); retry`, { reason: "overloaded" });
    }
    const ctx = this.nextReadCtx++;
    const r = this.rt.readIndex(ctx);
    if (r === null) throw new LedgerError("unavailable", "node is not running");
    if (!r.ok) throw this.refusal(r);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reads.delete(ctx);
        reject(new LedgerError("unavailable", "leadership not confirmed in time for a linearizable read; retry"));
      }, this.opts.writeTimeoutMs);
      this.reads.set(ctx, { index: null, resolve, reject, timer });
    });
  }

  addMember(m: MemberInfo): Promise<{ index: number }> {
    return this.changeMembership((cur) => {
      if ([...cur.voters, ...cur.learners].some((x) => x.id === m.id)) throw new LedgerError("conflict", `${m.id} is already a member`);
      return makeConfig(cur.voters, [...cur.learners, m]);
    });
  }

  removeMember(id: string): Promise<{ index: number }> {
    return this.changeMembership((cur) => {
      if (![...cur.voters, ...cur.learners].some((x) => x.id === id)) throw notFound(`${id} is not a member`);
      return makeConfig(cur.voters.filter((x) => x.id !== id), cur.learners.filter((x) => x.id !== id));
    });
  }

  private promote(id: string): Promise<{ index: number }> {
    return this.changeMembership((cur) => {
      const m = cur.learners.find((x) => x.id === id);
      if (m === undefined) throw notFound(`${id} is not a learner`);
      return makeConfig([...cur.voters, m], cur.learners.filter((x) => x.id !== m.id));
    });
  }

  private async changeMembership(next: (cur: ClusterConfig) => ClusterConfig): Promise<{ index: number }> {
    this.mustLead();
    const cfg = next(this.rt.config());
    const r = await this.withinWriteTimeout(this.proposeAndWait(() => this.rt.proposeConfig(cfg), 0));
    return { index: r.index };
  }

  async promoteWhenCaughtUp(id: string): Promise<{ index: number }> {
    const deadline = Date.now() + Math.max(PROMOTE_TIMEOUT_MS, this.opts.writeTimeoutMs);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.promote(id);
      } catch (err) {
        const retryable = err instanceof LedgerError && err.code === "unavailable";
        if (!retryable || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 500)));
      }
    }
  }
}

const idempotencyConflict = (key: string): LedgerError =>
  new LedgerError("idempotency_conflict", `Idempotency-Key ${JSON.stringify(key)} was used with a different request body`);
