/**
 * The client commands' text output: one line per item, `key=value` pairs (like etcdctl's simple
 * output, greppable), values bare when they are one plain word and JSON-quoted otherwise; a
 * record's data is its JSON. What a line shows of an entry comes from its payload bytes (the
 * ones its hash covers), never from the server's parsed copy beside them.
 */
import type { EntryJson } from "../client/client";
import { payloadOf } from "../client/checks";
import { decodeCheckpoint } from "../ledger/checkpoint";
import { decodeConfig } from "../ledger/config";
import { EntryKindName } from "../ledger/entry";
import { decodeRecord } from "../ledger/record";

/** A value printed as is: JSON text that is already one token (a record's data). */
export class Raw {
  constructor(readonly text: string) {}
}

type Value = string | number | boolean | null | Raw;

const PLAIN = /^[A-Za-z0-9._:/@+,-]+$/;

const show = (v: Value): string =>
  v instanceof Raw ? v.text : typeof v === "string" ? (PLAIN.test(v) ? v : JSON.stringify(v)) : String(v);

/** `k1=v1 k2=v2 ...`; pairs whose value is undefined are left out. */
export function kv(pairs: ReadonlyArray<readonly [string, Value | undefined]>): string {
  return pairs.filter((p): p is readonly [string, Value] => p[1] !== undefined).map(([k, v]) => `${k}=${show(v)}`).join(" ");
}

/** What an entry's payload says, by kind: a record's type, subject and data, a checkpoint's size and signer, a configuration's members. */
function payloadPairs(e: EntryJson): Array<readonly [string, Value | undefined]> {
  const payload = payloadOf(e);
  if (payload === null) return [];
  const kind = e.kind as EntryKindName;
  switch (kind) {
    case "record": {
      const r = decodeRecord(payload);
      return r === null ? [] : [["ts", r.ts], ["type", r.type], ["subject", r.subject], ["actor", r.actor], ["data", new Raw(JSON.stringify(r.data))]];
    }
    case "checkpoint": {
      const cp = decodeCheckpoint(payload);
      return cp === null ? [] : [["ts", cp.ts], ["size", cp.size], ["root", cp.root], ["signer", cp.signer]];
    }
    case "config": {
      const c = decodeConfig(payload);
      return c === null ? [] : [["voters", c.voters.map((m) => m.id).join(",")], ["learners", c.learners.map((m) => m.id).join(",")]];
    }
    case "noop":
      return [];
    default: {
      const never: never = kind;
      return never;
    }
  }
}

/** One entry: index, term, kind, hash, then what its payload says. */
export function entryLine(e: EntryJson): string {
  return kv([["index", e.index], ["term", e.term], ["kind", e.kind], ["hash", e.hash], ...payloadPairs(e)]);
}
