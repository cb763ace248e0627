/**
 * Appends of one Ready merged per peer before they are sent. A leader under load proposes many
 * entries between two Readys, and each proposal sends every follower an Append of that one entry
 * (and each commit advance an empty Append that only carries the commit index): measured at 64
 * clients, ~7 Appends per follower per Ready, each its own frame, tag, socket write, follower
 * step and AppendResp. An Append that continues the one before it to the same peer, with nothing
 * else to that peer in between, says nothing the two do not say together, so they go as one.
 *
 * Why the merge is the same to a follower: the second Append's prevIndex/prevTerm/prevHash are
 * the first one's last entry (checked here, not assumed), so the follower that accepts the first
 * accepts the second exactly when it accepts the merged one, with the same entries in its log; a
 * follower that rejects the first rejects the merged one at the same prevIndex. The merged commit
 * is the later one (a leader's commit index only grows). The leader's own bookkeeping
 * (Progress.next, the inflight window) already counted both sends; the follower's one answer
 * acknowledges the last index, which frees both. Only messages to other peers may lie between two
 * merged Appends, and per-peer order is what a link keeps.
 *
 * Bounded like the core's own Appends: a merge that would carry more than maxBytes of entries
 * (entrySizeBytes, as RaftLog.slice counts) is not made.
 */
import { bytesEqual } from "../ledger/bytes";
import type { Entry } from "../ledger/entry";
import { entrySizeBytes } from "./storage";
import type { AppendMsg, Message, NodeId } from "./types";

/** messages, with each run of Appends to a peer that continue one another merged into one; the rest as they were, in order. */
export function coalesceAppends(messages: readonly Message[], maxBytes: number): Message[] {
  const out: Message[] = [];
  /** Per peer: where in `out` its last message is, when that message is an Append others may join. */
  const open = new Map<NodeId, { at: number; entries: Entry[]; bytes: number }>();
  for (const m of messages) {
    const run = open.get(m.to);
    if (m.type === "Append" && run !== undefined) {
      const prev = out[run.at] as AppendMsg;
      const bytes = run.bytes + m.entries.reduce((n, e) => n + entrySizeBytes(e), 0);
      if (continues(prev, m) && (m.entries.length === 0 || run.entries.length === 0 || bytes <= maxBytes)) {
        run.entries.push(...m.entries);
        run.bytes = bytes;
        out[run.at] = { ...prev, entries: run.entries, commit: Math.max(prev.commit, m.commit) };
        continue;
      }
    }
    out.push(m);
    if (m.type === "Append") {
      open.set(m.to, { at: out.length - 1, entries: [...m.entries], bytes: m.entries.reduce((n, e) => n + entrySizeBytes(e), 0) });
    } else {
      open.delete(m.to);
    }
  }
  return out;
}

/** b, of the same leader and term, starts right after a's last entry (a's prevIndex when a carries none). */
function continues(a: AppendMsg, b: AppendMsg): boolean {
  if (a.from !== b.from || a.term !== b.term) return false;
  const last = a.entries.length > 0 ? a.entries[a.entries.length - 1] : null;
  const lastIndex = last === null ? a.prevIndex : last.index;
  const lastTerm = last === null ? a.prevTerm : last.term;
  const lastHash = last === null ? a.prevHash : last.hash;
  return b.prevIndex === lastIndex && b.prevTerm === lastTerm && bytesEqual(b.prevHash, lastHash);
}
