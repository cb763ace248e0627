/** `resonetics verify-chain`: read-only offline verification of a data dir. Exit 0/1/2. */
import * as fs from "node:fs";
import * as path from "node:path";
import { SingleBar, Presets } from "cli-progress";
import { Store } from "../storage/store";
import { DB_FILE } from "../node/data-dir";
import { verifyChain, VerifyReport } from "../ledger/verify";

export interface VerifyCliOptions {
  readonly from: string;
  readonly json: boolean;
  readonly progress: boolean;
}

export type Writer = (text: string) => void;

/** Returns the exit code: 0 verified, 1 a violation, 2 usage or unreadable input. */
export function verifyChainCommand(dataDir: string, o: VerifyCliOptions, out: Writer, err: Writer): number {
  const fail = (message: string): number => {
    if (o.json) out(JSON.stringify({ ok: false, error: "unreadable", message }) + "\n");
    else err(`verify-chain: ${message}\n`);
    return 2;
  };
  if (o.from !== "genesis" && o.from !== "snapshot") return fail(`--from must be genesis or snapshot, got ${o.from}`);
  const db = path.join(dataDir, DB_FILE);
  if (!fs.existsSync(db)) return fail(`${db} does not exist`);
  let store: Store;
  try {
    store = new Store(db, { readonly: true });
  } catch (e) {
    return fail(`cannot open ${db}: ${(e as Error).message}`);
  }
  try {
    if (o.from === "snapshot" && store.latestSnapshot() === undefined) return fail("this data dir holds no snapshot; use --from genesis");
    let bar: SingleBar | undefined;
    const report: VerifyReport = verifyChain(store, {
      from: o.from,
      onProgress: o.progress
        ? (done, total) => {
            if (bar === undefined && total >= 50_000) {
              bar = new SingleBar({ stream: process.stderr, format: "verify {bar} {value}/{total} entries" }, Presets.shades_classic);
              bar.start(total, 0);
            }
            bar?.update(done);
          }
        : undefined,
    });
    bar?.stop();
    if (o.json) out(JSON.stringify(report) + "\n");
    else if (report.ok) {
      out(`verified: ${report.entries} entries, ${report.checkpoints} checkpoints; head ${report.head}; root ${report.root}; state_root ${report.state_root}\n`);
    } else {
      out(`VIOLATION at index ${report.first_bad_index}: ${report.reason}\n`);
    }
    return report.ok ? 0 : 1;
  } catch (e) {
    return fail(`cannot read ${db}: ${(e as Error).message}`);
  } finally {
    store.close();
  }
}
