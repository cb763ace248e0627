/**
 * The client's memory of what it verified (issue 13; immudb's client state service is the model):
 * per cluster id, the last signed checkpoint it proved to extend everything it had seen before,
 * and where its trust in signer keys comes from. Without this file a client restarted tomorrow
 * would believe whatever a node tells it then, an older or a rewritten log included.
 *
 * One JSON file, rewritten whole on every change: a temp file in the same directory, fsync, rename
 * over the old one, fsync of the directory; mode 0600. A crash leaves the old file or the new one,
 * never half of either. A file that cannot be read or is not one this client wrote is a
 * StateFileError: starting afresh would silently forget every pin, which is the attack it exists to
 * stop. The file is asserted before it is written and after it is read back (the same validation).
 *
 *   {v:1, clusters: {<cluster id>: {anchor, genesis_config, endorsed, checkpoint, pinned_at}}}
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { canonicalJson } from "../ledger/canonical";
import { configProblem, MemberInfo } from "../ledger/config";
import { checkpointFromValue, PinnedCheckpoint } from "../ledger/trust";
import { assert } from "../util/assert";
import { StateFileError } from "./errors";
import { type Obj, isObj } from "../ledger/shapes";

/** Where a cluster's genesis configuration (the root of every signer key) came from. */
export type AnchorSource =
  /** A trust file the user gave (resonetics trust export, from a node trusted at a time trusted). */
  | "trust_file"
  /** The cluster's own entry 1, the first time this client met the cluster (trust on first use). */
  | "first_use";

export interface Membership {
  readonly voters: readonly MemberInfo[];
  readonly learners: readonly MemberInfo[];
}

/** What the client keeps of one cluster. */
export interface ClusterState {
  readonly anchor: AnchorSource;
  /** The genesis CONFIG (entry 1) every signer key is carried from. */
  readonly genesis_config: Membership;
  /**
   * The latest configuration whose keys are endorsed (reached from genesis through CONFIG entries,
   * each covered by a checkpoint of the configuration before it): its log index and members. The
   * pinned checkpoint's signer is one of them.
   */
  readonly endorsed: Membership & { readonly index: number };
  /** The last verified checkpoint, as served (with its own log index). */
  readonly checkpoint: PinnedCheckpoint;
  /** When it was pinned (ISO 8601), for the people reading the file. */
  readonly pinned_at: string;
}

/**
 * Clusters one state file may hold. The whole file is rewritten and fsync'd on every new pin, so
 * its size is the cost of a pin: an entry is ~1-2 KB (a checkpoint and two 3-5 member
 * configurations), 64 of them ~100 KB. A client talks to a handful of clusters; one that needs more
 * uses another file. Never evicted: dropping a pin would silently allow the rollback it prevents.
 */
export const CLUSTERS_MAX = 64;
/** A file larger than this is not one this client wrote (CLUSTERS_MAX entries with large configurations stay well below). */
const STATE_BYTES_MAX = 8 * 1024 * 1024;
const FILE_MODE = 0o600;

const CLUSTER_KEYS = ["anchor", "checkpoint", "endorsed", "genesis_config", "pinned_at"];

function exactKeys(o: Obj, keys: readonly string[], what: string): string | null {
  const have = Object.keys(o).sort();
  return have.length === keys.length && have.every((k, i) => k === keys[i]) ? null : `${what} has keys ${have.join(", ")}, not ${keys.join(", ")}`;
}

/** Why `v` is not a membership ({voters, learners} as a CONFIG payload holds them), or null. */
function membershipProblem(v: unknown, extra: readonly string[], what: string): string | null {
  if (!isObj(v)) return `${what} is not an object`;
  const keys = exactKeys(v, ["learners", "voters", ...extra].sort(), what);
  if (keys !== null) return keys;
  const p = configProblem({ v: 1, voters: v.voters, learners: v.learners });
  return p === null ? null : `${what}: ${p}`;
}

/** Why one cluster's entry is not a ClusterState, or null; the one check for what is written and what is read. */
export function clusterStateProblem(cluster: string, v: unknown): string | null {
  const what = `cluster ${JSON.stringify(cluster)}`;
  if (!isObj(v)) return `${what} is not an object`;
  const keys = exactKeys(v, CLUSTER_KEYS, what);
  if (keys !== null) return keys;
  if (v.anchor !== "trust_file" && v.anchor !== "first_use") return `${what}.anchor is neither trust_file nor first_use`;
  const g = membershipProblem(v.genesis_config, [], `${what}.genesis_config`);
  if (g !== null) return g;
  const e = membershipProblem(v.endorsed, ["index"], `${what}.endorsed`);
  if (e !== null) return e;
  const index = (v.endorsed as Obj).index;
  if (typeof index !== "number" || !Number.isSafeInteger(index) || index < 1) return `${what}.endorsed.index is not a log index`;
  const cp = checkpointFromValue(v.checkpoint, cluster);
  if (typeof cp === "string") return `${what}.checkpoint: ${cp}`;
  if (cp.size < 1) return `${what}.checkpoint has size 0: nothing to pin`;
  if (canonicalJson(cp) !== canonicalJson(v.checkpoint)) return `${what}.checkpoint has fields a checkpoint does not`;
  if (typeof v.pinned_at !== "string") return `${what}.pinned_at is not a string`;
  return null;
}

/** The clusters of a parsed state file, or why it is not one. */
function parseState(v: unknown): Map<string, ClusterState> | string {
  if (!isObj(v)) return "not a JSON object";
  const keys = exactKeys(v, ["clusters", "v"], "the state file");
  if (keys !== null) return keys;
  if (v.v !== 1) return `version ${JSON.stringify(v.v)}, not 1`;
  if (!isObj(v.clusters)) return "clusters is not an object";
  const entries = Object.entries(v.clusters);
  if (entries.length > CLUSTERS_MAX) return `${entries.length} clusters, more than ${CLUSTERS_MAX}`;
  const out = new Map<string, ClusterState>();
  for (const [cluster, s] of entries) {
    const p = clusterStateProblem(cluster, s);
    if (p !== null) return p;
    out.set(cluster, s as unknown as ClusterState);
  }
  return out;
}

/** Reads and validates the file; an absent file is an empty state (a first start), anything else unusable is an error. */
function readStateFile(file: string): Map<string, ClusterState> {
  let text: string;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new StateFileError("state_file_unreadable", file, "is not a regular file");
    if (st.size > STATE_BYTES_MAX) throw new StateFileError("state_file_unreadable", file, `is ${st.size} bytes, more than a state file can be (${STATE_BYTES_MAX})`);
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if (err instanceof StateFileError) throw err;
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw new StateFileError("state_file_unreadable", file, `cannot be read: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    if (err instanceof SyntaxError) throw new StateFileError("state_file_corrupt", file, `is not JSON (${err.message}); it is left as it is, for you to look at`);
    throw err;
  }
  const parsed = parseState(value);
  if (typeof parsed === "string") throw new StateFileError("state_file_corrupt", file, `is not a client state file: ${parsed}`);
  return parsed;
}

/** Writes text to file atomically: temp file (0600) + fsync + rename + fsync of the directory. */
function writeAtomically(file: string, text: string): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = fs.openSync(tmp, "wx", FILE_MODE);
  try {
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  // The rename is durable only once the directory is: without this a crash could bring back the old pin.
  const dfd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
}

/** Where a client keeps its pins: the state file, or (without one) its own memory for its lifetime. */
export interface StateStore {
  /** Where the pins live, to name it in an error: the file's path, or "(memory)". */
  readonly where: string;
  get(cluster: string): ClusterState | undefined;
  put(cluster: string, next: ClusterState): void;
}

/** Pins for the life of one client object only: what a client without a state file still checks. */
export class MemoryState implements StateStore {
  readonly where = "(memory)";
  private readonly clusters = new Map<string, ClusterState>();

  get(cluster: string): ClusterState | undefined {
    return this.clusters.get(cluster);
  }

  put(cluster: string, next: ClusterState): void {
    const problem = clusterStateProblem(cluster, next);
    assert(problem === null, () => `refusing to keep an invalid state: ${problem}`);
    // The same bound as the file's, for the same reason: a pin is never evicted.
    if (!this.clusters.has(cluster) && this.clusters.size >= CLUSTERS_MAX) {
      throw new StateFileError("state_file_full", "(memory)", `holds ${CLUSTERS_MAX} clusters already`);
    }
    this.clusters.set(cluster, next);
  }
}

/** The state file of one client: read at start, rewritten atomically on every change. */
export class ClientState implements StateStore {
  private clusters: Map<string, ClusterState>;
  readonly where: string;

  /** Reads `file` (absent: an empty state); a file that is there but unusable throws StateFileError. */
  constructor(readonly file: string) {
    this.where = file;
    this.clusters = readStateFile(file);
  }

  get(cluster: string): ClusterState | undefined {
    return this.clusters.get(cluster);
  }

  /** Cluster ids held, in the file's order. */
  list(): string[] {
    return [...this.clusters.keys()];
  }

  /**
   * Records a cluster's new state and writes the file. The file is read again first: entries of
   * other clusters written meanwhile are kept, and an entry of this cluster that changed since this
   * client read it is a conflict (two clients on one file would otherwise undo each other's pins).
   */
  put(cluster: string, next: ClusterState): void {
    const problem = clusterStateProblem(cluster, next);
    assert(problem === null, () => `refusing to write an invalid state: ${problem}`);
    const onDisk = readStateFile(this.file);
    const mine = this.clusters.get(cluster);
    const theirs = onDisk.get(cluster);
    const same = (a: ClusterState | undefined, b: ClusterState | undefined): boolean =>
      (a === undefined && b === undefined) || (a !== undefined && b !== undefined && canonicalJson(a) === canonicalJson(b));
    if (!same(mine, theirs)) {
      throw new StateFileError("state_file_conflict", this.file, `cluster ${cluster}'s entry was changed by another writer since this client read it (one client per state file)`);
    }
    onDisk.set(cluster, next);
    if (onDisk.size > CLUSTERS_MAX) {
      throw new StateFileError("state_file_full", this.file, `holds ${CLUSTERS_MAX} clusters already; use another state file for ${cluster}`);
    }
    const text = `${JSON.stringify({ v: 1, clusters: Object.fromEntries(onDisk) }, null, 2)}\n`;
    try {
      writeAtomically(this.file, text);
    } catch (err) {
      throw new StateFileError("state_file_unwritable", this.file, `cannot be written (the previous file is intact): ${(err as Error).message}`);
    }
    this.clusters = onDisk;
  }
}
