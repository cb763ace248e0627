/**
 * What the node offers the layers above it (api/, cli/): three ports, and nothing else. The store
 * stays private to the runtime (the only writer) and to the reader (its own read-only connection):
 *
 *   LedgerWrites — append (idempotency), membership, ReadIndex: every write waits on one helper,
 *                  bounded in uncommitted bytes and pending waiters (over a bound: 503 at once).
 *   LedgerReader — every GET, the stream, history, proofs and audits, from this node's applied state.
 *   NodeInfo     — what a node says of itself: status, health, the figures /metrics exports.
 */
import type { Entry } from "../ledger/entry";
import type { RecordRequest } from "../ledger/record";
import type { ClusterConfig, MemberInfo } from "../ledger/config";
import type { StoredCheckpoint } from "../storage/store";
import type { Receipt } from "../ledger/receipt";
import type { AuditHandle, AuditJob } from "./audit-worker";
import type { LagSummary } from "./lag-probe";

export type { StoredCheckpoint } from "../storage/store";
export type { AuditHandle, AuditJob, AuditResult } from "./audit-worker";
export type { LagSummary } from "./lag-probe";
/** The reserved record of a prune (POST /v1/admin/prune writes it; src/node/snapshots.ts applies it). */
export { PRUNE_RECORD_TYPE, PRUNE_SUBJECT } from "./snapshots";

export interface AppendResult {
  readonly index: number;
  readonly term: number;
  readonly hash: string;
  /** True when an earlier request with the same idempotency key made this record. */
  readonly duplicate: boolean;
}

export interface LedgerWrites {
  /** Appends a validated record; resolves only after it is committed and applied here. */
  append(record: RecordRequest, idempotencyKey?: string): Promise<AppendResult>;
  /** A client's append on any node: here when leading, else forwarded to the leader (redirect: not_leader instead). */
  appendOrForward(record: RecordRequest, idempotencyKey: string | undefined, redirect: boolean): Promise<AppendResult>;
  /** ReadIndex: resolves once this leader confirmed its lead and applied up to the read index. */
  readBarrier(): Promise<void>;
  /** Adds a member as a learner. */
  addMember(member: MemberInfo): Promise<{ index: number }>;
  /** Promotes a learner once the core accepts it (it refuses while the learner lags). */
  promoteWhenCaughtUp(id: string): Promise<{ index: number }>;
  removeMember(id: string): Promise<{ index: number }>;
}

export interface InclusionView {
  readonly index: number;
  readonly size: number;
  readonly leaf_hash: string;
  readonly path: string[];
  readonly root: string;
  readonly checkpoint?: StoredCheckpoint;
}

export interface ConsistencyView {
  readonly from: number;
  readonly to: number;
  readonly path: string[];
  readonly root_from: string;
  readonly root_to: string;
  readonly checkpoint?: StoredCheckpoint;
}

export interface SubjectSummary {
  readonly version: number;
  readonly head: Uint8Array;
  readonly lastIndex: number;
}

/**
 * A subject's completeness proof: its leaf in the subjects tree that `checkpoint` signs (its
 * subjects_root), i.e. how many records it had after entry checkpoint.size and the head they chain to.
 */
export interface CompletenessView {
  readonly checkpoint: StoredCheckpoint;
  readonly version: number;
  readonly head: string;
  readonly leaf_index: number;
  readonly tree_size: number;
  readonly path: string[];
}

export interface LedgerReader {
  /** The last index applied here: every read answers from (1, lastApplied]. */
  lastApplied(): number;
  entry(index: number): Entry;
  /** The hash entry `index` chains to (the genesis hash for index 1). */
  prevHash(index: number): Uint8Array;
  /** Applied entries in [from, to], in order; the caller bounds the range. */
  entries(from: number, to: number): Iterable<Entry>;
  subject(subject: string): SubjectSummary | undefined;
  /** Up to `limit` records of a subject from log index `from` on: version and index. */
  subjectRecords(subject: string, from: number, limit: number): Array<{ version: number; index: number }>;
  /** Entry hashes of a subject's records before log index `before`, in order. */
  subjectHashesBefore(subject: string, before: number): Iterable<Uint8Array>;
  latestCheckpoint(): StoredCheckpoint | undefined;
  /**
   * The subject's leaf and path under the latest applied checkpoint's subjects_root; null when there
   * is none to prove against yet (no such checkpoint applied since start) or the subject had no
   * record by then.
   */
  completeness(subject: string): CompletenessView | null;
  inclusion(index: number, size?: number): InclusionView;
  consistency(from: number, to?: number): ConsistencyView;
  /**
   * Verifies this node's chain in a worker thread at background priority, on a read snapshot of its
   * own (src/node/audit-worker.ts). onProgress gets (done, total) entries now and then; onNote why
   * the worker runs at normal priority, if it does.
   */
  audit(job: AuditJob, onProgress: (done: number, total: number) => void, onNote: (reason: string) => void): AuditHandle;
  /** The first index this node serves history for; reads below it answer 410 Gone. */
  historyFrom(): number;
  /** The retained snapshot anchors that can start a verification, newest first. */
  snapshots(): SnapshotView[];
  /** The offline receipt of entry `index` (DESIGN.md "Offline verification"), or why it is not ready yet. */
  receipt(index: number): ReceiptAnswer;
  /** The latest checkpoint as a C2SP signed note, signed by this node's key (not_found before the first). */
  checkpointNote(): string;
}

/** A receipt, or "pending" while no checkpoint covers the index (or links its signer to genesis) yet. */
export type ReceiptAnswer =
  | { readonly ready: true; readonly receipt: Receipt }
  | { readonly ready: false; readonly reason: string };

/** A retained snapshot anchor as GET /v1/snapshots lists it. */
export interface SnapshotView {
  readonly index: number;
  readonly term: number;
  readonly hash: string;
  readonly state_root: string;
  readonly signer: string;
  readonly ts: string;
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
  /** The first index whose history this node holds: 1, unless pruned or joined by InstallSnapshot. */
  readonly history_from: number;
}

export interface Readiness {
  readonly ready: boolean;
  /** Why not: "halted", "no_leader", "behind", "closed"... empty when ready. */
  readonly reasons: string[];
  /** Entries this node's last_applied is behind the leader's commit index, as last heard. */
  readonly behind: number;
}

/** Figures for /metrics, sampled at scrape time. */
export interface NodeFigures {
  readonly commitIndex: number;
  readonly lastApplied: number;
  readonly uncommittedBytes: number;
  readonly pendingWrites: number;
  readonly writesRefused: number;
  readonly peerFramesDropped: number;
  readonly peerConnectionsRefused: number;
  /** Frames from authenticated peers that failed their session tag (changed, injected, replayed or reordered on the way). */
  readonly peerFramesRejected: number;
  /** How late the Raft tick timer fired over the last minute. */
  readonly tickLag: LagSummary;
  /** How far this node's clock was behind the log's last ts when it last stamped one (0: not behind). */
  readonly clockBehindLogSeconds: number;
  /** WAL checkpoints run by the checkpoint worker, and by the writer itself (no worker, or one that did not answer). */
  readonly walCheckpointsWorker: number;
  readonly walCheckpointsWriter: number;
}

export interface NodeInfo {
  readonly nodeId: string;
  readonly clusterId: string;
  status(): NodeStatus;
  readiness(): Readiness;
  currentTerm(): number;
  isLeader(): boolean;
  config(): ClusterConfig;
  figures(): NodeFigures;
  /** Tick lags observed since the last call (seconds), for a Summary; bounded by the probe. */
  drainTickLags(): number[];
  /** How late the latest Raft tick fired (ms): background work (stream backlogs) backs off while it is high. */
  tickLateMs(): number;
  /** Milliseconds until the next Raft tick is due (<= 0: due now); heavy work does not start a slice the tick would wait for. */
  tickDueInMs(): number;
  /** Calls fn with the new last_applied after applies, once per turn, after the Ready was handled. */
  onApplied(fn: (lastApplied: number) => void): () => void;
}
