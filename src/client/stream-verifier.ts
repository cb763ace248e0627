/**
 * Checks the frames of WS /v1/stream as they arrive (`resonetics tail`): each one is the next
 * entry, chains to the one before (prev_hash), and has the hash the entry formula gives; a
 * CHECKPOINT entry is signed by its signer's key in the configuration, its head is the hash of
 * entry `size` when that entry was seen, and, when the stream started at entry 1, its root is the
 * RFC 9162 root of every entry up to `size`. A CONFIG entry replaces the configuration whose keys
 * later checkpoints are checked with. The first frame that fails stops it: an auditor needs the
 * index and the why.
 */
import { fromHex, toHex } from "../ledger/bytes";
import { decodeCheckpoint } from "../ledger/checkpoint";
import { ClusterConfig, decodeConfig, memberKeys } from "../ledger/config";
import { CompactRange } from "../ledger/merkle";
import type { EntryJson } from "./client";
import { entryProblem, payloadOf, signatureProblem } from "./checks";

export type FrameCheck =
  | { readonly ok: true; readonly entry: EntryJson }
  | { readonly ok: false; readonly index: number; readonly reason: string };

/**
 * Hashes of the latest entries kept for checkpoint heads. A checkpoint's size is the index just
 * before its own (the runtime asserts it), so one would do; 64 also covers a leader that signs a
 * little behind, at 64 x ~100 B.
 */
const RECENT_HASHES_MAX = 64;

export interface StreamStart {
  /** The index of the first entry expected. */
  readonly from: number;
  /** The hash of entry from - 1 (the genesis hash for from = 1), already checked by the caller. */
  readonly prevHash: Uint8Array;
  readonly cluster: string;
  /** The configuration to check checkpoint signatures with until a CONFIG entry arrives. */
  readonly config: ClusterConfig;
}

export class StreamVerifier {
  private nextIndex: number;
  private prev: Uint8Array;
  private keys: Map<string, string>;
  private readonly recent = new Map<number, string>();
  /** The Merkle tree of every entry seen, only when the stream started at entry 1. */
  private readonly tree: CompactRange | null;

  constructor(private readonly start: StreamStart) {
    this.nextIndex = start.from;
    this.prev = start.prevHash;
    this.keys = memberKeys(start.config);
    this.tree = start.from === 1 ? new CompactRange() : null;
    if (start.from > 1) this.remember(start.from - 1, toHex(start.prevHash));
  }

  /** The index the next frame must carry (where to resume after a reconnect). */
  get next(): number {
    return this.nextIndex;
  }

  /** Checks one text frame of the stream. */
  accept(text: string): FrameCheck {
    const index = this.nextIndex;
    const fail = (reason: string): FrameCheck => ({ ok: false, index, reason });
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch (err) {
      if (err instanceof SyntaxError) return fail(`the frame is not JSON (${err.message})`);
      throw err;
    }
    const f = frame as { type?: unknown; entry?: EntryJson } | null;
    if (typeof f !== "object" || f === null || f.type !== "entry" || typeof f.entry !== "object" || f.entry === null || Object.keys(f).length !== 2) {
      return fail("the frame is not {\"type\":\"entry\",\"entry\":{...}}");
    }
    const e = f.entry;
    const bad = entryProblem(e, index);
    if (bad !== null) return fail(bad);
    if (e.prev_hash !== toHex(this.prev)) return fail(`prev_hash ${e.prev_hash} is not the hash of entry ${index - 1} (${toHex(this.prev)})`);
    const kindProblem = this.kindProblem(e, payloadOf(e) as Uint8Array);
    if (kindProblem !== null) return fail(kindProblem);
    this.prev = fromHex(e.hash) as Uint8Array;
    this.tree?.append(this.prev);
    this.remember(index, e.hash);
    this.nextIndex = index + 1;
    return { ok: true, entry: e };
  }

  private kindProblem(e: EntryJson, payload: Uint8Array): string | null {
    if (e.kind === "config") {
      const config = decodeConfig(payload);
      if (config === null) return "the CONFIG payload is not a configuration";
      this.keys = memberKeys(config);
      return null;
    }
    if (e.kind !== "checkpoint") return null;
    const cp = decodeCheckpoint(payload);
    if (cp === null) return "the CHECKPOINT payload is not a signed checkpoint";
    if (cp.cluster !== this.start.cluster) return `the checkpoint is of cluster ${cp.cluster}, not ${this.start.cluster}`;
    const unsigned = signatureProblem(cp, this.keys);
    if (unsigned !== null) return unsigned;
    const head = this.recent.get(cp.size);
    if (head !== undefined && head !== cp.head) return `the checkpoint's head ${cp.head} is not the hash of entry ${cp.size} (${head})`;
    if (this.tree !== null && this.tree.size === cp.size && toHex(this.tree.root()) !== cp.root) {
      return `the checkpoint's root ${cp.root} is not root(${cp.size}) of the entries streamed (${toHex(this.tree.root())})`;
    }
    return null;
  }

  private remember(index: number, hash: string): void {
    this.recent.set(index, hash);
    this.recent.delete(index - RECENT_HASHES_MAX);
  }
}
