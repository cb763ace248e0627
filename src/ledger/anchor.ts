/**
 * What a verification is anchored to, and how each range of the log is graded (DESIGN.md "Offline
 * verification"). The verifier (verify.ts) calls it entry by entry:
 *
 * - With a trust file, the data dir must be of the pinned cluster, chain from the pinned genesis
 *   hash, and hold the pinned genesis CONFIG byte for byte at entry 1; with a pinned checkpoint,
 *   root(size) and head(size) must be the pinned ones (a copy cut back before it, or forked, fails).
 * - Keys are endorsed, never taken from the log alone: the genesis configuration's keys are trusted;
 *   a later CONFIG's keys become trusted once a checkpoint signed by a member of the configuration
 *   before it (under the key that one gave it) covers it, the rule a receipt's signer_chain follows.
 *   A checkpoint signed by a key not endorsed yet is still checked, but signs nothing: the entries
 *   after the last endorsed checkpoint are "chained, not yet signed".
 * - Timestamps (records and checkpoints) never go backwards along the log.
 */
import { Entry, EntryKind, genesisHash } from "./entry";
import { bytesEqual, toHex } from "./bytes";
import { Checkpoint, encodeCheckpoint } from "./checkpoint";
import { decodeRecord } from "./record";
import { genesisConfigPayload, PinnedCheckpoint, TrustFile } from "./trust";

export type GradeName = "signed" | "chained, not yet signed" | "self-consistent, not anchored";

/** Entries from..to (inclusive) and what a verifier can say of them. */
export interface Grade {
  readonly from: number;
  readonly to: number;
  readonly grade: GradeName;
}

export interface AnchorReport {
  /** "trust file": checked against the pinned genesis (and checkpoint); otherwise only self-consistent. */
  readonly anchor: "trust file" | "self-consistent, not anchored";
  /** Entries 1..signed_size are covered by a checkpoint signed under an endorsed key (0 without a trust file). */
  readonly signed_size: number;
  /** The same under the data dir's own genesis, trust file or not: what its checkpoints cover. */
  readonly checkpointed_size: number;
  readonly grades: readonly Grade[];
}

/** A violation the verifier reports at `index` (0: not at an entry). */
export interface AnchorProblem {
  readonly index: number;
  readonly reason: string;
}

type Keys = ReadonlyMap<string, string>;

/** A RECORD entry's ts (undefined when its payload is no record), a checkpoint's, or none. */
export function entryTs(e: Entry, cp: Checkpoint | null): string | undefined {
  return e.kind === EntryKind.Record ? decodeRecord(e.payload)?.ts : cp?.ts;
}

export class AnchorTracker {
  /** Keys of the last endorsed configuration; null until the first one (the genesis CONFIG, or the start snapshot's). */
  private endorsed: Keys | null = null;
  /** CONFIG entries after the endorsed one, not yet covered by a checkpoint of the configuration before them. */
  private readonly pending: Keys[] = [];
  private checkpointed = 0;
  private lastTsMs = Number.NEGATIVE_INFINITY;
  private lastTsIndex = 0;

  constructor(private readonly trust: TrustFile | undefined, private readonly pinned: PinnedCheckpoint | undefined) {}

  /** Why this data dir cannot be checked against the trust file at all (before any entry), or null. */
  refusal(cluster: string, fromGenesis: boolean): AnchorProblem | null {
    const t = this.trust;
    if (t !== undefined) {
      if (t.cluster !== cluster) return { index: 0, reason: `genesis differs from the trust file: this data dir is of cluster ${cluster}, the trust file pins ${t.cluster}` };
      if (t.genesis_hash !== toHex(genesisHash(cluster))) return { index: 0, reason: `genesis differs from the trust file: genesis hash ${toHex(genesisHash(cluster))}, pinned ${t.genesis_hash}` };
      if (!fromGenesis) return { index: 0, reason: "a trust file anchors a verification from genesis only: a snapshot's configuration is not chained from the pinned genesis here" };
    }
    if (this.pinned !== undefined && this.pinned.cluster !== cluster) {
      return { index: 0, reason: `the pinned checkpoint is of cluster ${this.pinned.cluster}, this data dir of ${cluster}` };
    }
    return null;
  }

  /** The start's configuration (a snapshot's), when the verification does not start at genesis. */
  startFrom(keys: Keys): void {
    if (keys.size > 0) this.endorsed = new Map(keys);
  }

  /** A CONFIG entry whose members `keys` now holds; entry 1 must be the pinned genesis configuration. */
  config(e: Entry, keys: Keys): AnchorProblem | null {
    if (e.index === 1 && this.trust !== undefined && !bytesEqual(e.payload, genesisConfigPayload(this.trust))) {
      return { index: 1, reason: "genesis CONFIG differs from the trust file's genesis_config (other members or keys)" };
    }
    if (this.endorsed === null) this.endorsed = new Map(keys);
    else this.pending.push(new Map(keys));
    return null;
  }

  /** A checkpoint entry that verified under the configuration in force (`keys`). */
  checkpoint(cp: Checkpoint, keys: Keys): void {
    const key = keys.get(cp.signer);
    // Each configuration in turn whose predecessor gave this signer this key becomes endorsed.
    while (this.endorsed !== null && this.pending.length > 0 && this.endorsed.get(cp.signer) === key) {
      this.endorsed = this.pending.shift() as Keys;
    }
    if (this.pending.length === 0) this.checkpointed = cp.size;
  }

  /**
   * After entry e is in the tree: the pinned checkpoint's root and head, and time's order. `ts` is
   * the entry's time: a record's (none when its payload is no record: the replay reports that),
   * a checkpoint's; the caller passes it when it has parsed the payload already.
   */
  appended(e: Entry, root: () => Uint8Array, cp: Checkpoint | null, ts: string | undefined = entryTs(e, cp)): AnchorProblem | null {
    const p = this.pinned;
    if (p !== undefined && e.index === p.size) {
      const got = toHex(root());
      if (got !== p.root) return { index: e.index, reason: `root(${p.size}) is ${got}, not the pinned checkpoint's root ${p.root}: this history differs from the one pinned (forked or rewritten)` };
      if (toHex(e.hash) !== p.head) return { index: e.index, reason: `entry_hash(${p.size}) is not the pinned checkpoint's head ${p.head}` };
      // The auditor vouches for this prefix: what it holds is signed, its configurations endorsed.
      if (this.pending.length > 0) this.endorsed = this.pending.splice(0).pop() as Keys;
      this.checkpointed = Math.max(this.checkpointed, p.size);
    }
    if (p !== undefined && e.index === p.index) {
      const { index: _i, ...body } = p;
      if (e.kind !== EntryKind.Checkpoint || !bytesEqual(e.payload, encodeCheckpoint(body))) {
        return { index: e.index, reason: `entry ${e.index} is not the pinned checkpoint` };
      }
    }
    if (ts !== undefined) {
      const ms = Date.parse(ts);
      if (!Number.isFinite(ms)) return { index: e.index, reason: `ts ${JSON.stringify(ts)} is not a date-time` };
      if (ms < this.lastTsMs) {
        return { index: e.index, reason: `ts ${ts} is earlier than ${new Date(this.lastTsMs).toISOString()} at index ${this.lastTsIndex}: time in the log runs backwards` };
      }
      this.lastTsMs = ms;
      this.lastTsIndex = e.index;
    }
    return null;
  }

  /** At the end of a full verification: a log that ends before the pinned checkpoint was cut back. */
  finish(size: number): AnchorProblem | null {
    const p = this.pinned;
    if (p !== undefined && size < p.size) {
      return { index: size + 1, reason: `the log ends at ${size}, before the pinned checkpoint's size ${p.size}: this history was cut back (or the copy is older than the pin)` };
    }
    return null;
  }

  /** The graded report of entries start..size. */
  report(start: number, size: number): AnchorReport {
    const anchored = this.trust !== undefined;
    const signed = anchored ? Math.min(this.checkpointed, size) : 0;
    const grades: Grade[] = [];
    if (!anchored) {
      if (size >= start) grades.push({ from: start, to: size, grade: "self-consistent, not anchored" });
    } else {
      if (signed >= start) grades.push({ from: start, to: signed, grade: "signed" });
      if (size > Math.max(signed, start - 1)) grades.push({ from: Math.max(signed, start - 1) + 1, to: size, grade: "chained, not yet signed" });
    }
    return { anchor: anchored ? "trust file" : "self-consistent, not anchored", signed_size: signed, checkpointed_size: Math.min(this.checkpointed, size), grades };
  }
}
