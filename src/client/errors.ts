/**
 * The client's typed errors. Each has a stable `code` a caller can switch on; the ones about the
 * pinned checkpoint (RollbackError, ForkError) name both checkpoints, because an operator has to
 * find both: the one this client proved earlier and the one a node serves now.
 */
import type { PinnedCheckpoint } from "../ledger/trust";

/** An answer the server gave that is an error (status + code), or one that failed to verify (status 0). */
export class ClientError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly body?: unknown) {
    super(message);
    this.name = "ClientError";
  }
}

/** A checkpoint as an error names it: enough to find it again in a log or a state file. */
export interface CheckpointRef {
  readonly cluster: string;
  readonly size: number;
  readonly root: string;
  /** The log index of the CHECKPOINT entry (size + 1). */
  readonly index: number;
}

const refOf = (cp: PinnedCheckpoint): CheckpointRef => ({ cluster: cp.cluster, size: cp.size, root: cp.root, index: cp.index });
const show = (c: CheckpointRef): string => `size ${c.size}, root ${c.root}, index ${c.index}`;

/**
 * A node serves a checkpoint older than the one this client already verified (a smaller size), or
 * none at all (served null): it lost committed history it once signed (restored from an old backup
 * or an old copy of its data dir).
 */
export class RollbackError extends ClientError {
  declare readonly code: "rollback";
  readonly pinned: CheckpointRef;
  readonly served: CheckpointRef | null;

  constructor(pinned: PinnedCheckpoint, served: PinnedCheckpoint | null, readonly url: string) {
    const what = served === null ? "no checkpoint at all" : `the checkpoint of cluster ${served.cluster} at ${show(served)}`;
    super(0, "rollback", `rollback: ${url} serves ${what}, older than the one of cluster ${pinned.cluster} this client verified before (${show(pinned)})`);
    this.name = "RollbackError";
    this.pinned = refOf(pinned);
    this.served = served === null ? null : refOf(served);
  }
}

/**
 * A node serves a checkpoint that is not an extension of the one this client verified: the same
 * size with another root, or a larger one whose consistency proof from the pinned one fails. Two
 * histories exist under one cluster id (a split view, a rewritten log).
 */
export class ForkError extends ClientError {
  declare readonly code: "fork";
  readonly pinned: CheckpointRef;
  readonly served: CheckpointRef;

  constructor(pinned: PinnedCheckpoint, served: PinnedCheckpoint, readonly url: string, readonly reason: string) {
    super(0, "fork", `fork: ${url} serves the checkpoint of cluster ${served.cluster} at ${show(served)}, which does not extend the one this client verified before (${show(pinned)}): ${reason}`);
    this.name = "ForkError";
    this.pinned = refOf(pinned);
    this.served = refOf(served);
  }
}

/** Why the state file could not be used; never a reason to start afresh (that would forget a pin). */
export type StateFileErrorCode =
  /** It exists but cannot be read (permissions, a directory in its place, too large to be ours). */
  | "state_file_unreadable"
  /** It was read but is not a state file this client wrote (not JSON, wrong shape, a bad checkpoint). */
  | "state_file_corrupt"
  /** Writing the new state failed; the previous file is intact. */
  | "state_file_unwritable"
  /** Another client changed this cluster's entry since this one read it (one client per state file). */
  | "state_file_conflict"
  /** It holds as many clusters as it may (CLUSTERS_MAX in state.ts). */
  | "state_file_full";

export class StateFileError extends ClientError {
  declare readonly code: StateFileErrorCode;

  constructor(code: StateFileErrorCode, readonly path: string, message: string) {
    super(0, code, `${path}: ${message}`);
    this.name = "StateFileError";
  }
}
