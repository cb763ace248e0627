/** A data dir's ledger.db opened read-only for the offline tools, or why it cannot be (their exit 2). */
import * as fs from "node:fs";
import * as path from "node:path";
import { DB_FILE } from "../node/data-dir";
import { Store } from "../storage/store";

/**
 * Everything the tool reads then comes from one read transaction: one snapshot of the database
 * (WAL), so a node writing to the data dir meanwhile (a checkpoint row and its entry, a new Merkle
 * node) never shows the tool half of a commit. Closing the store ends it.
 */
export function openLedgerReadonly(dataDir: string): Store | string {
  const db = path.join(dataDir, DB_FILE);
  if (!fs.existsSync(db)) return `${db} does not exist`;
  let store: Store | undefined;
  try {
    store = new Store(db, { readonly: true });
    store.db.exec("BEGIN");
    return store;
  } catch (e) {
    store?.close();
    return `cannot open ${db}: ${(e as Error).message}`;
  }
}
