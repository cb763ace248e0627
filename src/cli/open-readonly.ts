/** A data dir's ledger.db opened read-only for the offline tools, or why it cannot be (their exit 2). */
import * as fs from "node:fs";
import * as path from "node:path";
import { DB_FILE } from "../node/data-dir";
import { Store } from "../storage/store";

export function openLedgerReadonly(dataDir: string): Store | string {
  const db = path.join(dataDir, DB_FILE);
  if (!fs.existsSync(db)) return `${db} does not exist`;
  try {
    return new Store(db, { readonly: true });
  } catch (e) {
    return `cannot open ${db}: ${(e as Error).message}`;
  }
}
