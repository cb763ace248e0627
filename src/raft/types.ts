/**
 * The vocabulary of the Raft core: node ids, hard state, snapshots, messages and the Ready.
 * Everything here is plain data; the core never does I/O (DESIGN.md "Raft").
 */
import type { Entry } from "../ledger/entry";
import type { ClusterConfig } from "./config";

export type NodeId = string;

/** What must be durable before any message that depends on it is sent. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId | null;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: null, commit: 0 };

/** The point a compacted log starts after: entries <= index are gone, hash chains onward from here. */
export interface Anchor {
  readonly index: number;
  readonly term: number;
  readonly hash: Uint8Array;
}

/** Metadata of a snapshot: its anchor plus the configuration in force at that index. */
export interface SnapshotMeta extends Anchor {
  readonly config: ClusterConfig;
}

/** A state-machine snapshot; data is opaque to the core (the caller builds and restores it). */
export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

export enum Role {
  Follower = "follower",
  PreCandidate = "pre-candidate",
  Candidate = "candidate",
  Leader = "leader",
}

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  /** Sender's term (for PreVote: the term it would campaign at). */
  readonly term: number;
}

/** Asks whether the receiver would vote, without anyone changing term (Raft thesis 9.6). */
export interface PreVoteMsg extends MessageBase {
  readonly type: "PreVote";
  readonly lastIndex: number;
  readonly lastTerm: number;
}
export interface PreVoteRespMsg extends MessageBase {
  readonly type: "PreVoteResp";
  readonly reject: boolean;
}
export interface VoteMsg extends MessageBase {
  readonly type: "Vote";
  readonly lastIndex: number;
  readonly lastTerm: number;
  /** Set by a leadership transfer: the receiver must not ignore it because of leader stickiness. */
  readonly transfer: boolean;
}
export interface VoteRespMsg extends MessageBase {
  readonly type: "VoteResp";
  readonly reject: boolean;
}
/** AppendEntries. prevHash lets the follower check the chain before accepting anything. */
export interface AppendMsg extends MessageBase {
  readonly type: "Append";
  readonly prevIndex: number;
  readonly prevTerm: number;
  readonly prevHash: Uint8Array;
  readonly entries: readonly Entry[];
  readonly commit: number;
}
/**
 * Reply to Append and InstallSnapshot. On success index is the highest index known to match.
 * On rejection index is the rejected prevIndex and hintIndex/hintTerm let the leader skip a whole
 * term of conflicting entries at once (fast backtracking).
 */
export interface AppendRespMsg extends MessageBase {
  readonly type: "AppendResp";
  readonly reject: boolean;
  readonly index: number;
  readonly hintIndex: number;
  readonly hintTerm: number;
}
/** Keeps followers quiet; carries the leader's hash at commit so divergent committed history halts. */
export interface HeartbeatMsg extends MessageBase {
  readonly type: "Heartbeat";
  readonly commit: number;
  /** Leader's entry hash at `commit`, or null when the leader no longer has it (compacted). */
  readonly commitHash: Uint8Array | null;
  /** ReadIndex round this heartbeat confirms leadership for (0 = none). */
  readonly readCtx: number;
}
export interface HeartbeatRespMsg extends MessageBase {
  readonly type: "HeartbeatResp";
  readonly readCtx: number;
}
export interface InstallSnapshotMsg extends MessageBase {
  readonly type: "InstallSnapshot";
  readonly snapshot: Snapshot;
}
/** Leadership transfer: the receiver starts an election at once, skipping PreVote. */
export interface TimeoutNowMsg extends MessageBase {
  readonly type: "TimeoutNow";
}

export type Message =
  | PreVoteMsg
  | PreVoteRespMsg
  | VoteMsg
  | VoteRespMsg
  | AppendMsg
  | AppendRespMsg
  | HeartbeatMsg
  | HeartbeatRespMsg
  | InstallSnapshotMsg
  | TimeoutNowMsg;

export type MessageType = Message["type"];

/** A linearizable read the leader confirmed: serve `ctx` once the state machine applied `index`. */
export interface ReadState {
  readonly ctx: number;
  readonly index: number;
}

/** Volatile state the caller may show (status endpoint); never persisted. */
export interface SoftState {
  readonly role: Role;
  readonly lead: NodeId | null;
}

/** A chain or history mismatch found while checking what a leader sent. */
export interface VerificationReport {
  readonly kind: "entry_hash" | "prev_hash" | "commit_hash" | "config_payload";
  readonly from: NodeId;
  readonly term: number;
  readonly index: number;
  readonly detail: string;
}

/**
 * Everything the caller must do, in this order:
 *   1. make snapshot (if any), entries and hardState (if any) durable (entries[0].index may be
 *      <= the stored last index: drop the stored suffix from there first);
 *   2. only then send `messages` (each may depend on the state just persisted: votes, acks);
 *   3. apply `committedEntries` in order (after restoring `snapshot`, if any), serve readStates
 *      once applied >= their index;
 *   4. call advance(ready).
 */
export interface Ready {
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
  readonly reports: readonly VerificationReport[];
  /** Set once when this node stopped because its committed history differs from the leader's. */
  readonly halted: string | null;
}

/** Outcome of a proposal or request made to the core. */
export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly reason: ProposeRejection; readonly leader: NodeId | null };

export type ProposeRejection =
  | "not_leader"
  | "transferring"
  | "config_pending"
  | "config_invalid"
  | "learner_behind"
  | "not_ready"
  | "too_large"
  | "halted";
