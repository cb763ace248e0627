/**
 * The simulator's state machine: registers keyed by string, with client sessions. A RECORD payload
 * is canonical JSON {c, s, k, v}; a (client c, request s) pair is applied at most once, so a client
 * retrying the same request after a failover cannot write twice.
 */
import { canonicalBytes } from "../../ledger/canonical";
import { fromUtf8 } from "../../ledger/bytes";
import { EntryKind, type Entry } from "../../ledger/entry";
import { assert } from "../../util/assert";

export interface PutCommand {
  /** Client id. */
  readonly c: string;
  /** Request id, increasing per client. */
  readonly s: number;
  readonly k: string;
  readonly v: string;
}

export const encodePut = (cmd: PutCommand): Uint8Array => canonicalBytes({ c: cmd.c, s: cmd.s, k: cmd.k, v: cmd.v });

export function decodePut(payload: Uint8Array): PutCommand {
  const x = JSON.parse(fromUtf8(payload)) as PutCommand;
  assert(typeof x.c === "string" && typeof x.s === "number" && typeof x.k === "string" && typeof x.v === "string", "kv: bad put payload");
  return x;
}

/** What applying an entry did, so the simulator can answer the client that asked. */
export interface ApplyResult {
  readonly cmd: PutCommand | null;
  /** False for a retry the session table recognised (nothing changed). */
  readonly fresh: boolean;
}

export class KvStateMachine {
  private kv = new Map<string, string>();
  private sessions = new Map<string, number>();
  applied = 0;

  apply(e: Entry): ApplyResult {
    assert(e.index === this.applied + 1, () => `kv: applying ${e.index} after ${this.applied}`);
    this.applied = e.index;
    if (e.kind !== EntryKind.Record) return { cmd: null, fresh: false };
    const cmd = decodePut(e.payload);
    const last = this.sessions.get(cmd.c) ?? 0;
    if (cmd.s <= last) return { cmd, fresh: false };
    this.sessions.set(cmd.c, cmd.s);
    this.kv.set(cmd.k, cmd.v);
    return { cmd, fresh: true };
  }

  get(key: string): string | null {
    return this.kv.get(key) ?? null;
  }

  snapshot(): Uint8Array {
    const sorted = <V>(m: Map<string, V>): [string, V][] => [...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return canonicalBytes({ applied: this.applied, kv: sorted(this.kv), sessions: sorted(this.sessions) });
  }

  static restore(data: Uint8Array): KvStateMachine {
    const x = JSON.parse(fromUtf8(data)) as { applied: number; kv: [string, string][]; sessions: [string, number][] };
    const sm = new KvStateMachine();
    sm.applied = x.applied;
    sm.kv = new Map(x.kv);
    sm.sessions = new Map(x.sessions);
    return sm;
  }
}
