/**
 * Planted bugs, for tests that prove the simulator and the trace runner catch them (a green run
 * means something only if a red one is possible). Test tooling: the production core has no switch
 * for any of these. Each Raft mutant is a subclass of the core that overrides one of its protected
 * decisions (see raft.ts) and breaks the rule that decision enforces; "local-reads" is a bug in the
 * simulated client instead.
 */
import type { Entry } from "../../ledger/entry";
import { newRaft, Raft, type RaftConfig, type RaftFactory } from "../raft";
import type { AppendMsg, NodeId } from "../types";

/** Commits any majority-replicated entry, ignoring "only entries of the current term" (Figure 8). */
export class CommitAnyTermRaft extends Raft {
  protected override mayCommitAt(_index: number): boolean {
    return true;
  }
}

/** Reports hard state without the vote, so a restart forgets whom it voted for. */
export class ForgetVoteRaft extends Raft {
  protected override persistedVote(): NodeId | null {
    return null;
  }
}

/** Campaigns for real without first winning a PreVote round, although PreVote is on. */
export class SkipPreVoteRaft extends Raft {
  protected override campaignWithPreVote(_transfer: boolean): boolean {
    return false;
  }
}

/**
 * A follower takes every Append as the whole truth past prevIndex: its log ends where the Append
 * ends, even below its commit index (so stale Appends are no longer refused as such either). One
 * bug, two halves of the same rule (Leader Completeness: committed entries are never undone).
 */
export class TruncateBelowCommitRaft extends Raft {
  protected override appendIsStale(_m: AppendMsg): boolean {
    return false;
  }

  protected override writeAppended(m: AppendMsg): void {
    if (m.entries.length > 0) this.overwrite(m.entries);
    else if (this.log.lastIndex() > m.prevIndex) {
      const keep = this.log.entry(m.prevIndex);
      if (keep !== null) this.overwrite([keep]);
    }
  }

  /** Replaces the log from entries[0].index on, lowering commit when the cut goes below it. */
  private overwrite(entries: readonly Entry[]): void {
    const log = this.log;
    const commit = log.committed;
    // The log refuses a cut at or below commit; pretend commit was lower while cutting.
    log.committed = Math.min(commit, entries[0].index - 1);
    log.append(entries);
    log.committed = Math.min(commit, log.lastIndex());
    this.noteAppended(entries);
  }
}

export type MutationName = "figure8" | "vote-persistence" | "truncate-below-commit" | "prevote" | "local-reads";
export const MUTATION_NAMES: readonly MutationName[] = ["figure8", "vote-persistence", "truncate-below-commit", "prevote", "local-reads"];

/** How a harness builds one planted bug: the core to run, and whether the simulated clients read locally. */
export interface Mutant {
  readonly makeRaft: RaftFactory;
  /** Simulated clients answer reads from the contacted node's applied state, skipping ReadIndex. */
  readonly localReads: boolean;
}

const core = (make: (cfg: RaftConfig) => Raft): Mutant => ({ makeRaft: make, localReads: false });

export function mutant(name: MutationName): Mutant {
  switch (name) {
    case "figure8":
      return core((cfg) => new CommitAnyTermRaft(cfg));
    case "vote-persistence":
      return core((cfg) => new ForgetVoteRaft(cfg));
    case "truncate-below-commit":
      return core((cfg) => new TruncateBelowCommitRaft(cfg));
    case "prevote":
      return core((cfg) => new SkipPreVoteRaft(cfg));
    case "local-reads":
      return { makeRaft: newRaft, localReads: true };
    default: {
      const never: never = name;
      throw new Error(`unknown mutation ${String(never)}`);
    }
  }
}
