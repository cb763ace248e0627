/** The leader's view of one follower: match/next indices, replication state and the inflight window. */
import { assert } from "../util/assert";

export enum ProgressState {
  /** Unknown match: one Append at a time until a reply says where the logs meet. */
  Probe = "probe",
  /** Known match: stream Appends optimistically, up to maxInflight outstanding. */
  Replicate = "replicate",
  /** The follower needs a snapshot; nothing else is sent until it is acknowledged. */
  Snapshot = "snapshot",
}

export class Progress {
  match = 0;
  next: number;
  state = ProgressState.Probe;
  /** Index of the snapshot in flight while in Snapshot state. */
  pendingSnapshot = 0;
  /** Heard from within the current election timeout (CheckQuorum). */
  recentActive = false;
  /** In Probe: an Append is outstanding, wait for its reply or a heartbeat reply. */
  probeSent = false;
  /** Last index of each Append in flight, oldest first (bounded by maxInflight). */
  private inflights: number[] = [];

  constructor(
    next: number,
    readonly maxInflight: number,
    public isLearner: boolean,
  ) {
    this.next = next;
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }
  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }
  becomeSnapshot(index: number): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = index;
  }
  private resetState(s: ProgressState): void {
    this.state = s;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights = [];
  }

  /** A successful reply up to n; returns whether it moved match forward. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** A rejection of `rejected`; returns false when the reply is stale and must be ignored. */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Records that an Append ending at lastIndex was sent (or an empty probe when count is 0). */
  sentEntries(lastIndex: number, count: number): void {
    if (this.state === ProgressState.Replicate) {
      if (count > 0) {
        this.next = lastIndex + 1;
        assert(this.inflights.length < this.maxInflight, "progress: inflight window overflow");
        this.inflights.push(lastIndex);
      }
    } else if (this.state === ProgressState.Probe) {
      this.probeSent = true;
    }
  }

  /** Frees inflight slots for Appends acknowledged up to index. */
  freeUpTo(index: number): void {
    let k = 0;
    while (k < this.inflights.length && this.inflights[k] <= index) k++;
    if (k > 0) this.inflights = this.inflights.slice(k);
  }
  freeFirstOne(): void {
    if (this.inflights.length > 0) this.inflights = this.inflights.slice(1);
  }
  inflightFull(): boolean {
    return this.inflights.length >= this.maxInflight;
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflightFull();
      case ProgressState.Snapshot:
        return true;
      default: {
        const never: never = this.state;
        throw new Error(`unknown progress state ${String(never)}`);
      }
    }
  }
}
