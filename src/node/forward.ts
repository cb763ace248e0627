/**
 * Writes accepted on any node (DESIGN.md, REST API): a follower forwards a client's append to the
 * leader over the authenticated peer link and relays the leader's answer, so any HTTP client can
 * write to any node without knowing which one leads.
 *
 *   follower → leader  {type:"ForwardAppend", from, to, id, record: <the record's JSON as bytes>, key}
 *   leader → follower  {type:"ForwardAnswer", from, to, id, ok: {index, term, hash, duplicate} | null, error: {code, message, details?} | null}
 *
 * The record travels as the bytes of its JSON, opaque to the peer codec (whose {"$b": …} byte
 * marker a client's data may well contain), so the leader appends exactly what the client sent.
 * The follower has checked the client's token and validated the body (fast 400s); the leader
 * parses the bytes as I-JSON and validates the record again with the same record types before it
 * appends (a peer is authenticated, not trusted to be bug-free), as its own client's write: the same
 * admission bounds, idempotency and write timeout. A leader never forwards a forwarded write (no
 * loops): if it no longer leads, the answer is "unavailable, retry". Each message travels on the
 * sender's own outbound link, tagged under that link's session key like every peer frame.
 */
import { randomInt } from "node:crypto";
import type { RecordRequest } from "../ledger/record";
import { parseIJson } from "../ledger/ijson";
import { utf8 } from "../ledger/bytes";
import { ErrorCode, LedgerError } from "../util/errors";
import type { AppendResult } from "./ports";
import { isObj, isU64 as u64 } from "../ledger/shapes";

export interface ForwardAppend {
  readonly type: "ForwardAppend";
  readonly from: string;
  readonly to: string;
  readonly id: number;
  /** The validated record's JSON, as bytes. */
  readonly record: Uint8Array;
  readonly key: string | null;
}

export interface ForwardAnswer {
  readonly type: "ForwardAnswer";
  readonly from: string;
  readonly to: string;
  readonly id: number;
  readonly ok: AppendResult | null;
  readonly error: { readonly code: ErrorCode; readonly message: string; readonly details?: Record<string, string | number | boolean> } | null;
}

export type ForwardMessage = ForwardAppend | ForwardAnswer;

/** What the forwarder needs of the node: who leads, and a way to send a frame to a peer. */
export interface ForwardLink {
  readonly nodeId: string;
  leader(): string | null;
  send(msg: ForwardMessage): void;
}

/** What the leader does with a forwarded record (parsed, not yet validated): validate it with the record types, append it here. */
export type LocalAppend = (record: unknown, key: string | undefined) => Promise<AppendResult>;

/**
 * Errors a leader's append may answer that the client should see as they are. Anything else (a
 * bug, a code a buggy peer made up) is relayed as "unavailable": the write may be retried.
 */
const RELAYED: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "bad_request", "invalid_json", "schema_violation", "unknown_record_type", "payload_too_large", "idempotency_conflict", "unavailable",
]);
/** Bounds on what a relayed error carries: its message and a few scalar details (e.g. reason: "overloaded"). */
const MESSAGE_CHARS_MAX = 1000;
const DETAILS_MAX = 8;
/**
 * An idempotency key: the header's 1..200 visible ASCII, or client_id:request_id, two strings of at
 * most 200 code points each (any Unicode): at most 802 UTF-16 units. The follower's API validated it.
 */
const KEY_UNITS_MAX = 802;
/**
 * Forwarded writes waiting for the leader's answer, at most: each holds a body (<= --body-limit,
 * 64 KiB by default) in the peer link's queue, which Raft's own frames share. 256 x 64 KiB = 16 MiB
 * in flight, far above what one link commits per round trip, and most of the queue's 4,096 frames
 * stay free for heartbeats and acks.
 */
export const FORWARD_PENDING_MAX = 256;
/** ...and at most this many record bytes in flight to the leader (16 MiB: the same envelope by bytes, for larger --body-limit). */
export const FORWARD_BYTES_MAX = 16 << 20;
/**
 * The leader answers a forwarded write within its write timeout (503 at the latest); this margin
 * covers the two hops and a busy loop, after which the follower answers 503 itself.
 */
export const FORWARD_MARGIN_MS = 2000;

const isScalarDetails = (v: unknown): boolean =>
  isObj(v) && Object.keys(v).length <= DETAILS_MAX && Object.values(v).every((x) => ["string", "number", "boolean"].includes(typeof x));

/** True when v is a well-formed forward message (the record itself is validated by the leader, like a client's). */
export function isForwardMessage(v: unknown): v is ForwardMessage {
  if (!isObj(v) || typeof v.from !== "string" || typeof v.to !== "string" || !u64(v.id)) return false;
  if (v.type === "ForwardAppend") return v.record instanceof Uint8Array && (v.key === null || (typeof v.key === "string" && v.key.length >= 1 && v.key.length <= KEY_UNITS_MAX));
  if (v.type !== "ForwardAnswer") return false;
  const ok = v.ok;
  const error = v.error;
  if (ok === null) {
    return isObj(error) && typeof error.code === "string" && typeof error.message === "string" && error.message.length <= MESSAGE_CHARS_MAX &&
      (error.details === undefined || isScalarDetails(error.details));
  }
  return error === null && isObj(ok) && u64(ok.index) && u64(ok.term) && typeof ok.hash === "string" && /^[0-9a-f]{64}$/.test(ok.hash) && typeof ok.duplicate === "boolean";
}

interface Pending {
  readonly leader: string;
  readonly bytes: number;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: LedgerError) => void;
  readonly timer: NodeJS.Timeout;
}

export interface ForwarderOptions {
  /** The leader's write timeout; a forwarded write waits this plus FORWARD_MARGIN_MS for the answer. */
  readonly writeTimeoutMs: number;
  /** Forwarded writes waiting for their answer, at most (default FORWARD_PENDING_MAX). */
  readonly maxPending?: number;
  /** Record bytes of those, at most (default FORWARD_BYTES_MAX). */
  readonly maxBytes?: number;
}

export class Forwarder {
  /**
   * Ids start at a random point: after a restart this node's new forwards must not be taken for the
   * answers its earlier process still has coming (a stale 201 would acknowledge another write).
   */
  private nextId = randomInt(1, 2 ** 47);
  private readonly pending = new Map<number, Pending>();
  private pendingBytes = 0;
  /** Forwarded writes this leader is appending now (bounded by the writes' own admission). */
  private serving = 0;

  constructor(private readonly link: ForwardLink, private readonly local: LocalAppend, private readonly opts: ForwarderOptions) {}

  /** Sends a validated record to the leader and resolves with its answer (LedgerError for a refusal). */
  forward(leader: string, record: RecordRequest, key: string | undefined): Promise<AppendResult> {
    const body = utf8(JSON.stringify(record));
    const maxPending = this.opts.maxPending ?? FORWARD_PENDING_MAX;
    const maxBytes = this.opts.maxBytes ?? FORWARD_BYTES_MAX;
    if (this.pending.size >= maxPending || this.pendingBytes + body.length > maxBytes) {
      return Promise.reject(new LedgerError("unavailable",
        `${this.pending.size} forwarded writes (${this.pendingBytes} bytes) are waiting for the leader (at most ${maxPending}, ${maxBytes} bytes); retry`, { reason: "overloaded" }));
    }
    const id = this.nextId++;
    return new Promise<AppendResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(id);
        reject(new LedgerError("unavailable", `the leader ${leader} did not answer the forwarded write in time; retry with the same Idempotency-Key`));
      }, this.opts.writeTimeoutMs + FORWARD_MARGIN_MS);
      this.pending.set(id, { leader, bytes: body.length, resolve, reject, timer });
      this.pendingBytes += body.length;
      this.link.send({ type: "ForwardAppend", from: this.link.nodeId, to: leader, id, record: body, key: key ?? null });
    });
  }

  /** Forgets a pending forward (answered, timed out): its slot and bytes are free again. */
  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (p === undefined) return undefined;
    this.pending.delete(id);
    this.pendingBytes -= p.bytes;
    clearTimeout(p.timer);
    return p;
  }

  /** A forward message from an authenticated peer. */
  receive(m: ForwardMessage): void {
    if (m.type === "ForwardAppend") {
      this.serve(m);
      return;
    }
    // An answer for nothing we wait for (timed out, or from another node than asked) is dropped.
    if (this.pending.get(m.id)?.leader !== m.from) return;
    const p = this.settle(m.id) as Pending;
    if (m.ok !== null) p.resolve(m.ok);
    else if (m.error !== null) p.reject(relayed(m.error, m.from));
  }

  private serve(m: ForwardAppend): void {
    this.serving++;
    const answer = (ok: AppendResult | null, error: ForwardAnswer["error"]): void => {
      this.serving--;
      this.link.send({ type: "ForwardAnswer", from: this.link.nodeId, to: m.from, id: m.id, ok, error });
    };
    // Whatever the record is, the sender gets an answer: a parse or validation error (thrown before
    // any promise exists) is a refusal like any other, never a dropped link.
    Promise.resolve().then(() => this.local(parseIJson(m.record), m.key ?? undefined)).then(
      (r) => answer({ index: r.index, term: r.term, hash: r.hash, duplicate: r.duplicate }, null),
      (err: unknown) => {
        const e = err instanceof LedgerError ? err : new LedgerError("internal", "the leader failed the forwarded write");
        const details = e.details !== undefined && isScalarDetails(e.details) ? (e.details as Record<string, string | number | boolean>) : undefined;
        answer(null, { code: e.code, message: e.message.slice(0, MESSAGE_CHARS_MAX), ...(details === undefined ? {} : { details }) });
      },
    );
  }

  /** Fails every forwarded write still waiting (the node stops). */
  stopped(reason: string): void {
    for (const id of [...this.pending.keys()]) this.settle(id)?.reject(new LedgerError("unavailable", reason));
  }

  figures(): { forwarding: number; serving: number } {
    return { forwarding: this.pending.size, serving: this.serving };
  }
}

/** The leader's refusal as this node answers it: the client's own errors as they are, anything else "unavailable, retry". */
function relayed(e: NonNullable<ForwardAnswer["error"]>, leader: string): LedgerError {
  if (RELAYED.has(e.code)) return new LedgerError(e.code, e.message, e.details);
  if (e.code === "not_leader") return new LedgerError("unavailable", `leadership moved while ${leader} took the forwarded write; retry with the same Idempotency-Key`);
  return new LedgerError("unavailable", `the leader ${leader} could not take the forwarded write (${e.code}); retry with the same Idempotency-Key`);
}
