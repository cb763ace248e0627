/**
 * Writes accepted on any node (DESIGN.md, REST API): a follower forwards a client's append to the
 * leader over the authenticated peer link and relays the leader's answer, so any HTTP client can
 * write to any node without knowing which one leads.
 *
 *   follower → leader  {type:"ForwardAppend", from, to, id, record, key}
 *   leader → follower  {type:"ForwardAnswer", from, to, id, ok: {index, term, hash, duplicate} | null, error: {code, message, details?} | null}
 *
 * The follower has checked the client's token and validated the body (fast 400s); the leader
 * validates the record again with the same record types before it appends (a peer is
 * authenticated, not trusted to be bug-free), and appends it as its own client's write: the same
 * admission bounds, idempotency and write timeout. A leader never forwards a forwarded write (no
 * loops): if it no longer leads, the answer is "unavailable, retry". Each message travels on the
 * sender's own outbound link, tagged under that link's session key like every peer frame.
 */
import type { RecordRequest } from "../ledger/record";
import { ErrorCode, LedgerError } from "../util/errors";
import type { AppendResult } from "./ports";

export interface ForwardAppend {
  readonly type: "ForwardAppend";
  readonly from: string;
  readonly to: string;
  readonly id: number;
  readonly record: RecordRequest;
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

/** What the leader does with a forwarded record: validate it with the record types, append it here. */
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
/** An idempotency key: the header's 1..200 visible ASCII, or client_id:request_id (two of at most 200 each). */
const KEY = /^[\x21-\x7e]{1,401}$/;
/**
 * The leader answers a forwarded write within its write timeout (503 at the latest); this margin
 * covers the two hops and a busy loop, after which the follower answers 503 itself.
 */
export const FORWARD_MARGIN_MS = 2000;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const u64 = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isScalarDetails = (v: unknown): boolean =>
  isObj(v) && Object.keys(v).length <= DETAILS_MAX && Object.values(v).every((x) => ["string", "number", "boolean"].includes(typeof x));

/** True when v is a well-formed forward message (the record itself is validated by the leader, like a client's). */
export function isForwardMessage(v: unknown): v is ForwardMessage {
  if (!isObj(v) || typeof v.from !== "string" || typeof v.to !== "string" || !u64(v.id)) return false;
  if (v.type === "ForwardAppend") return isObj(v.record) && (v.key === null || (typeof v.key === "string" && KEY.test(v.key)));
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
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: LedgerError) => void;
  readonly timer: NodeJS.Timeout;
}

export interface ForwarderOptions {
  /** The leader's write timeout; a forwarded write waits this plus FORWARD_MARGIN_MS for the answer. */
  readonly writeTimeoutMs: number;
  /** Forwarded writes waiting for their answer, at most (the writes' own bound: each is one waiter). */
  readonly maxPending: number;
}

export class Forwarder {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Forwarded writes this leader is appending now (bounded by the writes' own admission). */
  private serving = 0;

  constructor(private readonly link: ForwardLink, private readonly local: LocalAppend, private readonly opts: ForwarderOptions) {}

  /** Sends a validated record to the leader and resolves with its answer (LedgerError for a refusal). */
  forward(leader: string, record: RecordRequest, key: string | undefined): Promise<AppendResult> {
    if (this.pending.size >= this.opts.maxPending) {
      return Promise.reject(new LedgerError("unavailable", `${this.pending.size} forwarded writes are waiting for the leader (at most ${this.opts.maxPending}); retry`, { reason: "overloaded" }));
    }
    const id = this.nextId++;
    return new Promise<AppendResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new LedgerError("unavailable", `the leader ${leader} did not answer the forwarded write in time; retry with the same Idempotency-Key`));
      }, this.opts.writeTimeoutMs + FORWARD_MARGIN_MS);
      this.pending.set(id, { leader, resolve, reject, timer });
      this.link.send({ type: "ForwardAppend", from: this.link.nodeId, to: leader, id, record, key: key ?? null });
    });
  }

  /** A forward message from an authenticated peer. */
  receive(m: ForwardMessage): void {
    if (m.type === "ForwardAppend") {
      this.serve(m);
      return;
    }
    const p = this.pending.get(m.id);
    // An answer for nothing we wait for (timed out, or from another node than asked) is dropped.
    if (p === undefined || p.leader !== m.from) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.ok !== null) p.resolve(m.ok);
    else if (m.error !== null) p.reject(relayed(m.error, m.from));
  }

  private serve(m: ForwardAppend): void {
    this.serving++;
    const answer = (ok: AppendResult | null, error: ForwardAnswer["error"]): void => {
      this.serving--;
      this.link.send({ type: "ForwardAnswer", from: this.link.nodeId, to: m.from, id: m.id, ok, error });
    };
    this.local(m.record, m.key ?? undefined).then(
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
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new LedgerError("unavailable", reason));
    }
    this.pending.clear();
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
