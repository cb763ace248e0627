/**
 * Shape checks for Raft messages arriving from peers. An authenticated peer can still be buggy or
 * hostile: a frame that is not a well-formed message is dropped with its connection, before the
 * core sees it.
 */
import type { Message } from "../raft";
import { configProblem, type ClusterConfig } from "../raft";
import { isObj, isU64 as u64 } from "../ledger/shapes";

const bool = (v: unknown): boolean => typeof v === "boolean";
const hash32 = (v: unknown): boolean => v instanceof Uint8Array && v.length === 32;
const bytes = (v: unknown): boolean => v instanceof Uint8Array;

function isEntry(v: unknown): boolean {
  return isObj(v) && u64(v.index) && (v.index as number) >= 1 && u64(v.term) && typeof v.kind === "number" &&
    Number.isInteger(v.kind) && (v.kind as number) >= 0 && (v.kind as number) <= 3 && bytes(v.payload) && hash32(v.hash);
}

/** The ledger's one rule for a configuration (src/ledger/config.ts), on the decoded frame. */
const isConfig = (v: unknown): v is ClusterConfig => configProblem(v) === null;

/** True when v is a well-formed Raft message (every field of its type present and typed). */
export function isRaftMessage(v: unknown): v is Message {
  if (!isObj(v) || typeof v.type !== "string" || typeof v.from !== "string" || typeof v.to !== "string" || !u64(v.term)) return false;
  switch (v.type) {
    case "PreVote":
      return u64(v.lastIndex) && u64(v.lastTerm);
    case "Vote":
      return u64(v.lastIndex) && u64(v.lastTerm) && bool(v.transfer);
    case "PreVoteResp":
    case "VoteResp":
      return bool(v.reject);
    case "Append":
      return u64(v.prevIndex) && u64(v.prevTerm) && hash32(v.prevHash) && u64(v.commit) && Array.isArray(v.entries) && v.entries.length <= 100_000 && v.entries.every(isEntry);
    case "AppendResp":
      return bool(v.reject) && u64(v.index) && u64(v.hintIndex) && u64(v.hintTerm);
    case "Heartbeat":
      return u64(v.commit) && (v.commitHash === null || hash32(v.commitHash)) && u64(v.readCtx);
    case "HeartbeatResp":
      return u64(v.readCtx);
    case "InstallSnapshot": {
      const s = v.snapshot;
      if (!isObj(s) || !isObj(s.meta) || !bytes(s.data)) return false;
      const m = s.meta;
      return u64(m.index) && u64(m.term) && hash32(m.hash) && isConfig(m.config);
    }
    case "TimeoutNow":
      return true;
    default:
      return false;
  }
}
