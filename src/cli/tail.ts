/**
 * `resonetics tail [--from N] [--count N]`: follows WS /v1/stream, verifies every entry as it
 * arrives (src/client/stream-verifier.ts) and prints one line per entry (-o json: each frame as the
 * server sent it). The chain starts at the entry before N, fetched with its own hash recomputed
 * (the genesis hash for N = 1). The first entry that fails ends it with exit 1, naming the index and
 * why. A close that names where to resume (4008 slow consumer: the same node; 1001 shutting down,
 * or a dropped connection: the next endpoint) reconnects with from = the next index.
 */
import { CLOSE_NOT_IN_LOG, CLOSE_SLOW_CONSUMER } from "../api/stream";
import { fromHex } from "../ledger/bytes";
import { genesisHash } from "../ledger/entry";
import { StreamEnd, subscribe } from "../client/stream";
import { FrameCheck, StreamVerifier } from "../client/stream-verifier";
import { ClientError } from "../client/errors";
import { ClientFlags, clientOf, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, EXIT_VERIFICATION } from "./client-options";
import { entryLine } from "./format";
import type { Writer } from "./verify-chain";

export interface TailOptions {
  /** The first index to print; default: the next entry to commit (new entries only). */
  readonly from?: number;
  /** Stop (exit 0) after this many entries; default: follow until interrupted. */
  readonly count?: number;
}

/**
 * Reconnects in a row without a new entry before tail gives up (exit 3): every endpoint refused
 * or closed it several times over, so more attempts would only spin.
 */
const RECONNECTS_IDLE_MAX = 10;
/** The pause before a reconnect: a node that just closed with 1001 is shutting down, an election takes ~1 s. */
const RECONNECT_DELAY_MS = 250;

const describe = (end: StreamEnd): string =>
  end.kind === "failed" ? end.message : end.kind === "refused" ? `answered ${end.status}` : end.kind === "closed" ? `closed ${end.code}${end.reason === "" ? "" : ` (${end.reason})`}` : "stopped";

/** Runs tail: 0 after --count entries, 1 at the first entry that does not verify, 2 when refused (4xx, pruned), 3 when no endpoint streams. */
export async function tailCommand(f: ClientFlags, o: TailOptions, out: Writer, err: Writer): Promise<number> {
  const client = clientOf(f);
  const status = await client.status();
  const cluster = status.cluster;
  const applied = status.last_applied;
  if (typeof cluster !== "string" || typeof applied !== "number") throw new ClientError(0, "bad_answer", "/v1/status has no cluster or last_applied", status);
  const from = o.from ?? applied + 1;
  const prevHash = from === 1 ? genesisHash(cluster) : (fromHex((await client.entry(from - 1)).hash) as Uint8Array);
  const verifier = new StreamVerifier({ from, prevHash, cluster, config: await client.members() });
  if (o.count === 0) return EXIT_OK;

  let printed = 0;
  let progressed = false;
  let bad: Extract<FrameCheck, { ok: false }> | null = null;
  const onFrame = (text: string): "more" | "stop" => {
    const r = verifier.accept(text);
    if (!r.ok) {
      bad = r;
      return "stop";
    }
    out(f.output === "json" ? `${text}\n` : `${entryLine(r.entry)}\n`);
    printed++;
    progressed = true;
    return o.count !== undefined && printed >= o.count ? "stop" : "more";
  };
  let endpoint = 0;
  // Ends: each turn prints an entry (bounded by --count, or followed until interrupted) or counts
  // toward RECONNECTS_IDLE_MAX.
  for (let idle = 0; ; ) {
    const base = f.endpoints[endpoint % f.endpoints.length];
    const end = await subscribe(base, verifier.next, { timeoutMs: f.timeoutMs, ...(f.tls === undefined ? {} : { tls: f.tls }) }, onFrame);
    const failed = bad as Extract<FrameCheck, { ok: false }> | null;
    if (failed !== null) {
      err(`resonetics tail: entry ${failed.index} does not verify: ${failed.reason}\n`);
      return EXIT_VERIFICATION;
    }
    if (end.kind === "stopped") return EXIT_OK;
    // A refusal that another try cannot change: a 4xx to the handshake (a client certificate or the
    // index is wrong), or 4004 (the entry was pruned, which a recorded prune did on every node).
    if ((end.kind === "refused" && end.status >= 400 && end.status < 500 && end.status !== 429) || (end.kind === "closed" && end.code === CLOSE_NOT_IN_LOG)) {
      err(`resonetics tail: ${base} refused the stream from ${verifier.next}: ${describe(end)}\n`);
      return EXIT_USAGE;
    }
    idle = progressed ? 0 : idle + 1;
    progressed = false;
    if (idle > RECONNECTS_IDLE_MAX) {
      err(`resonetics tail: no endpoint streams from ${verifier.next}: ${base}: ${describe(end)}\n`);
      return EXIT_UNAVAILABLE;
    }
    // A slow consumer resumes on the same node (it is fine, this reader was behind); anything else on the next.
    if (!(end.kind === "closed" && end.code === CLOSE_SLOW_CONSUMER)) endpoint++;
    await new Promise((r) => setTimeout(r, RECONNECT_DELAY_MS));
  }
}
