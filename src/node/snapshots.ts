/** Making a signed snapshot of the applied state, and compacting the log behind it. */
import { Store, StoredSnapshot } from "../storage/store";
import { CompactRange } from "../ledger/merkle";
import { encodeSnapshot, makeSnapshot, SnapshotDoc } from "../ledger/snapshot";
import { assert } from "../util/assert";

export interface SnapshotSigner {
  readonly cluster: string;
  readonly nodeId: string;
  readonly secretKey: Uint8Array;
  readonly now: () => Date;
}

/** Snapshots the state at last_applied and stores it (the log is untouched). */
export function createSnapshot(store: Store, signer: SnapshotSigner): { row: StoredSnapshot; doc: SnapshotDoc } {
  const index = store.hardState().lastApplied;
  const e = store.entry(index);
  const prior = store.latestSnapshot();
  assert(e !== undefined || prior?.index === index, `no entry at last_applied ${index} to snapshot`);
  const term = e?.term ?? (prior as StoredSnapshot).term;
  const hash = e?.hash ?? (prior as StoredSnapshot).hash;
  const config = store.configAt(index);
  assert(config !== undefined, `no configuration in force at ${index}`);
  const doc = makeSnapshot({
    cluster: signer.cluster, index, term, hash, range: CompactRange.fromStore(store.readNode, index), config,
    subjects: store.allSubjects(), subjectRecords: store.allSubjectRecords(), dedup: store.allDedup(),
    signer: signer.nodeId, ts: signer.now().toISOString(),
  }, signer.secretKey);
  const row: StoredSnapshot = {
    index, term, hash, root: doc.root, compactRange: JSON.stringify(doc.compact_range), config, stateRoot: doc.state_root,
    data: encodeSnapshot(doc), signer: doc.signer, sig: doc.sig, createdAt: doc.ts,
  };
  store.transaction(() => store.saveSnapshot(row));
  return { row, doc };
}

/** Drops log entries up to the snapshot's index; the anchor row keeps (index, term, hash). */
export function compactToSnapshot(store: Store, snap: StoredSnapshot): void {
  store.transaction(() => store.compactTo({ index: snap.index, term: snap.term, hash: snap.hash }));
}
