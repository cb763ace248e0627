/** `resonetics trust export <data-dir>`: the trust file an auditor pins (DESIGN.md "Offline verification"). */
import * as path from "node:path";
import type { StoredCheckpoint } from "../storage/store";
import { DB_FILE } from "../node/data-dir";
import { openLedgerReadonly } from "./open-readonly";
import { verifyChain } from "../ledger/verify";
import { decodeConfig } from "../ledger/config";
import { EntryKind } from "../ledger/entry";
import { makeTrustFile } from "../ledger/trust";
import type { Writer } from "./verify-chain";

/**
 * Prints the trust file of a data dir: its cluster, genesis hash and genesis configuration, and its
 * latest committed checkpoint. Read-only. It exports only a chain that verifies (exit 1 otherwise):
 * pinning a history that is already wrong would make the auditor trust the wrong one.
 * Exit 0 printed, 1 the chain does not verify, 2 unreadable or not exportable.
 */
export function trustExportCommand(dataDir: string, out: Writer, err: Writer): number {
  const fail = (message: string, code = 2): number => {
    err(`trust export: ${message}\n`);
    return code;
  };
  const db = path.join(dataDir, DB_FILE);
  const store = openLedgerReadonly(dataDir);
  if (typeof store === "string") return fail(store);
  try {
    const cluster = store.getMeta("cluster_id");
    if (cluster === undefined) return fail(`${db} has no cluster_id: not a Resonetics data dir`);
    const genesis = store.entry(1);
    if (genesis === undefined || genesis.kind !== EntryKind.Config) return fail("this data dir does not hold the genesis CONFIG entry (entry 1): export the trust file from a node with the full history");
    const config = decodeConfig(genesis.payload);
    if (config === null) return fail("entry 1 is not a configuration");
    const report = verifyChain(store);
    if (!report.ok) return fail(`the chain does not verify, so there is nothing to pin: VIOLATION at index ${report.first_bad_index}: ${report.reason}`, 1);
    // Only a committed checkpoint: an uncommitted tail could still be replaced.
    const commit = store.hardState().commitIndex;
    let latest: StoredCheckpoint | undefined;
    for (const cp of store.checkpoints(cluster)) if (cp.index <= commit) latest = cp;
    out(`${JSON.stringify(makeTrustFile(cluster, config, latest), null, 2)}\n`);
    return 0;
  } catch (e) {
    return fail(`cannot read ${db}: ${(e as Error).message}`);
  } finally {
    store.close();
  }
}
