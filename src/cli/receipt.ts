/**
 * `resonetics receipt <index> --endpoints URL[,URL]`: fetches an entry's offline receipt to stdout.
 * `resonetics verify-receipt <file> --trust trust.json`: checks one with no server (exit 0/1/2).
 */
import * as fs from "node:fs";
import { parseTrustFile } from "../ledger/trust";
import { verifyReceiptBytes } from "../ledger/receipt";
import type { Writer } from "./verify-chain";
import { Fetch, fetchWith, TlsClientOptions } from "../client/http";
import { EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, unansweredReason } from "./client-options";

export interface ReceiptCliOptions {
  readonly endpoints: readonly string[];
  readonly token?: string;
  /** Keep asking while the node answers 202 (no checkpoint covers the index yet), at most this long. */
  readonly waitMs: number;
  readonly timeoutMs: number;
  /** --cacert, --cert, --key: for https:// endpoints. */
  readonly tls?: TlsClientOptions;
}

/** Polls between 202 answers: the server's Retry-After, but at most this often and at least this rarely. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

type Fetched = { kind: "receipt"; text: string } | { kind: "pending"; message: string; retryMs: number } | { kind: "refused"; status: number; message: string };

async function fetchOnce(fetcher: Fetch, base: string, index: number, o: ReceiptCliOptions): Promise<Fetched> {
  const res = await fetcher(`${base.replace(/\/+$/, "")}/v1/receipts/${index}`, {
    headers: o.token === undefined ? {} : { authorization: `Bearer ${o.token}` },
    signal: AbortSignal.timeout(o.timeoutMs),
  });
  const text = await res.text();
  if (res.status === 200) return { kind: "receipt", text };
  let message = text.slice(0, 500);
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === "string") message = body.message;
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e; // not JSON: the raw text says it
  }
  if (res.status === 202) {
    const after = Number(res.headers.get("retry-after") ?? "1");
    return { kind: "pending", message, retryMs: Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, (Number.isFinite(after) ? after : 1) * 1000)) };
  }
  return { kind: "refused", status: res.status, message };
}

/**
 * Exit 0 printed; 2 the node refused (a 4xx: no such entry, a client certificate missing); 3 no
 * endpoint answered, a 5xx, or no checkpoint covers the index yet (when --wait-ms ran out).
 */
export async function receiptCommand(index: number, o: ReceiptCliOptions, out: Writer, err: Writer): Promise<number> {
  const deadline = Date.now() + o.waitMs;
  const failures: string[] = [];
  const fetcher = fetchWith(o.tls);
  // Ends: each round either answers, or waits at least RETRY_MIN_MS, until the deadline.
  for (;;) {
    let pending: Extract<Fetched, { kind: "pending" }> | null = null;
    for (const base of o.endpoints) {
      let r: Fetched;
      try {
        r = await fetchOnce(fetcher, base, index, o);
      } catch (e) {
        failures.push(`${base}: ${unansweredReason(e as Error)}`);
        continue;
      }
      if (r.kind === "receipt") {
        out(r.text.endsWith("\n") ? r.text : `${r.text}\n`);
        return EXIT_OK;
      }
      if (r.kind === "refused" && r.status >= 500) {
        // Like every client command: an endpoint that answers 5xx passes the request to the next.
        failures.push(`${base}: ${r.status} ${r.message}`);
        continue;
      }
      if (r.kind === "refused") {
        err(`resonetics receipt: ${base} answered ${r.status}: ${r.message}\n`);
        return r.status >= 400 && r.status < 500 ? EXIT_USAGE : EXIT_UNAVAILABLE;
      }
      pending = r;
      break;
    }
    if (pending === null) {
      err(`resonetics receipt: no endpoint answered: ${failures.slice(-3).join("; ")}\n`);
      return EXIT_UNAVAILABLE;
    }
    if (Date.now() + pending.retryMs > deadline) {
      err(`resonetics receipt: not yet: ${pending.message}; retry in ${Math.ceil(pending.retryMs / 1000)} s (or pass --wait-ms)\n`);
      return EXIT_UNAVAILABLE;
    }
    await new Promise((r) => setTimeout(r, pending?.retryMs ?? RETRY_MIN_MS));
  }
}

/** Exit 0 the receipt verifies, 1 it does not, 2 usage or an unreadable file. */
export function verifyReceiptCommand(file: string, trustPath: string, out: Writer, err: Writer): number {
  let bytes: Uint8Array;
  let trustText: string;
  try {
    bytes = fs.readFileSync(file);
    trustText = fs.readFileSync(trustPath, "utf8");
  } catch (e) {
    err(`verify-receipt: ${(e as Error).message}\n`);
    return 2;
  }
  const trust = parseTrustFile(trustText);
  if (typeof trust === "string") {
    err(`verify-receipt: ${trustPath} is not a trust file: ${trust}\n`);
    return 2;
  }
  const r = verifyReceiptBytes(bytes, trust);
  if (!r.ok) {
    out(`receipt does NOT verify: ${r.reason}\n`);
    return 1;
  }
  const via = r.chain === 0 ? "a member of the pinned genesis configuration" : `a member reached through ${r.chain} configuration change${r.chain === 1 ? "" : "s"} from the pinned genesis`;
  out(`receipt verified: entry ${r.index} is in root(${r.size}), signed by ${r.signer}, ${via}\n`);
  return 0;
}
