/**
 * A node: the runtime (the only writer), the writes module and the reader, put together. The layers
 * above see three ports (ports.ts): `writes`, `reader` and the node's own NodeInfo; the store stays
 * inside. A single-node ledger is the same node with one voter.
 */
import { performance } from "node:perf_hooks";
import type { ClusterConfig } from "../raft";
import type { DataDir } from "./data-dir";
import type { PeerTransport } from "./peer-transport";
import type { NodeFigures, NodeInfo, NodeStatus, Readiness } from "./ports";
import { Reader } from "./reader";
import { LedgerRuntime, PeerMessage, RuntimeOptions } from "./runtime";
import { RecordTypes } from "./record-types";
import { MAX_PENDING_WRITES_DEFAULT, MAX_UNCOMMITTED_BYTES_DEFAULT, Writes } from "./writes";

export type { AppendResult, NodeStatus } from "./ports";

export interface RaftNodeOptions extends RuntimeOptions {
  /** How long a write waits for commit before answering 503. */
  readonly writeTimeoutMs: number;
  /** Payload bytes proposed and not yet applied, at most (default 32 MiB). */
  readonly maxUncommittedBytes?: number;
  /** Writes waiting for their fate, at most (default 4,096). */
  readonly maxPendingWrites?: number;
  /** The record types a forwarded write is validated with on the leader (the API's own instance; default: schemas/). */
  readonly types?: RecordTypes;
}

export class RaftLedgerNode implements NodeInfo {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly publicKey: string;
  readonly writes: Writes;
  readonly reader: Reader;
  private readonly rt: LedgerRuntime;

  constructor(dd: DataDir, opts: RaftNodeOptions) {
    this.rt = new LedgerRuntime(dd, opts);
    this.nodeId = this.rt.nodeId;
    this.clusterId = this.rt.clusterId;
    this.publicKey = this.rt.publicKey;
    this.reader = new Reader(this.rt.dbPath, this.clusterId, () => this.rt.lastApplied(), dd.key, this.rt.subjects);
    this.writes = new Writes(this.rt, this.reader, {
      writeTimeoutMs: opts.writeTimeoutMs,
      maxUncommittedBytes: opts.maxUncommittedBytes ?? MAX_UNCOMMITTED_BYTES_DEFAULT,
      maxPendingWrites: opts.maxPendingWrites ?? MAX_PENDING_WRITES_DEFAULT,
      types: opts.types ?? new RecordTypes(),
    });
  }

  /** The transport takes over /v1/raft upgrades on the HTTP server. */
  get peers(): PeerTransport<PeerMessage> {
    return this.rt.peers;
  }

  status(): NodeStatus {
    return this.rt.status();
  }

  readiness(): Readiness {
    return this.rt.readiness();
  }

  currentTerm(): number {
    return this.rt.currentTerm();
  }

  isLeader(): boolean {
    return this.rt.isLeader();
  }

  config(): ClusterConfig {
    return this.rt.config();
  }

  figures(): NodeFigures {
    const w = this.writes.figures();
    const wal = this.rt.walCheckpoints();
    return {
      commitIndex: this.rt.commitIndex(), lastApplied: this.rt.lastApplied(),
      uncommittedBytes: w.uncommittedBytes, pendingWrites: w.pendingWrites, writesRefused: w.refused,
      peerFramesDropped: this.rt.peers.dropped(), peerConnectionsRefused: this.rt.peers.refused, peerFramesRejected: this.rt.peers.badFrames,
      tickLag: this.rt.tickLag.summary(performance.now()),
      clockBehindLogSeconds: this.rt.clockBehindLogSeconds(),
      walCheckpointsWorker: wal.answered - wal.failed, walCheckpointsWriter: wal.onWriter,
    };
  }

  drainTickLags(): number[] {
    return this.rt.tickLag.drain();
  }

  tickDueInMs(): number {
    return this.rt.tickDueInMs();
  }

  tickLateMs(): number {
    return this.rt.tickLag.latest() * 1000;
  }

  onApplied(fn: (lastApplied: number) => void): () => void {
    return this.rt.onApplied(fn);
  }

  /** Resolves once a leader is known (this node with its NOOP applied, or another). */
  leaderKnown(timeoutMs?: number): Promise<string> {
    return this.rt.leaderKnown(timeoutMs);
  }

  /** Stops the runtime (failing what waits), then the reader's connection. */
  async close(): Promise<void> {
    await this.rt.close();
    this.reader.close();
  }
}
