// Raft logs for the core's tests: entries of chosen terms, chained onto a MemoryStorage.
import { utf8 } from "../../src/ledger/bytes";
import { chainEntry, EntryKind, type Entry } from "../../src/ledger/entry";
import type { MemoryStorage } from "../../src/raft/storage";

/** Appends RECORD entries of the given terms after the storage's last entry, properly chained (payload "e<index>"). */
export function extend(storage: MemoryStorage, terms: readonly number[]): Entry[] {
  const out: Entry[] = [];
  let prev = storage.entry(storage.lastIndex());
  for (const t of terms) {
    const e = chainEntry(prev.index + 1, t, EntryKind.Record, prev.hash, utf8(`e${prev.index + 1}`));
    out.push(e);
    prev = e;
  }
  storage.append(out);
  return out;
}
