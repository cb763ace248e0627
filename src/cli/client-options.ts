/**
 * What every client command shares (etcdctl's global flags): the option set --endpoints,
 * --token-file, -o/--output, --cacert/--cert/--key, --timeout-ms, each also read from an
 * environment variable and accepted before the command (`resonetics --endpoints URL get 4`) or
 * after it; the client built from them; and the exit codes:
 *   0 ok · 1 a verification failure (hash chain, proof, signature) · 2 usage, or a request the
 *   server refused as the user's fault (4xx) · 3 unavailable (no endpoint answered, timeouts,
 *   503 after retries).
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { readFileSync } from "node:fs";
import { LedgerClient } from "../client/client";
import { ClientError } from "../client/errors";
import type { TlsClientOptions } from "../client/http";
import { readCaBundle, readCertificatePair } from "../node/tls";
import { StartRefused } from "../node/data-dir";
import { LedgerError } from "../util/errors";
import type { Writer } from "./verify-chain";

export const EXIT_OK = 0;
export const EXIT_VERIFICATION = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNAVAILABLE = 3;

export type Output = "json" | "text";

export interface ClientFlags {
  readonly endpoints: readonly string[];
  readonly token?: string;
  readonly output: Output;
  readonly tls?: TlsClientOptions;
  readonly timeoutMs: number;
  /** --trust: the auditor's trust file; signer keys come from its genesis configuration, not from the node. */
  readonly trust?: string;
  /** --state-file: the last verified checkpoint per cluster; every newer one must be proven consistent with it. */
  readonly stateFile?: string;
}

/** What `npm start` serves: a client with no --endpoints talks to it. */
const DEFAULT_ENDPOINT = "http://127.0.0.1:8080";
/**
 * Attempts per endpoint before a command gives up (exit 3): the first round finds the dead
 * endpoints, the other two ride out a leader election (10-20 ticks of 50 ms, plus PreVote) while
 * the client's backoff grows from 50 ms; 3 endpoints give up after ~8 s, 1 after ~0.4 s.
 */
const ATTEMPTS_PER_ENDPOINT = 3;
const BACKOFF_MS = 25;

/** A whole number in [min, max], as commander's argParser: a bad one is a usage error naming the flag. */
export function int(min: number, max: number) {
  return (raw: string): number => {
    if (!/^[0-9]+$/.test(raw)) throw new InvalidArgumentError(`expected a whole number, got ${raw}`);
    const n = Number(raw);
    if (n < min || n > max) throw new InvalidArgumentError(`expected ${min}..${max}, got ${raw}`);
    return n;
  };
}

/** A usage error (exit 2) that commander prints: it throws, through the program's exitOverride. */
export function usage(cmd: Command, message: string): never {
  return cmd.error(`error: ${message}`, { exitCode: EXIT_USAGE, code: "commander.invalidArgument" });
}

/**
 * --cacert, --cert, --key of a client command, read and checked (the CA parses, the key is the
 * certificate's); a missing or bad file is a usage error (exit 2) naming it. Undefined: none given.
 */
export function clientTls(cmd: Command, o: { cacert?: string; cert?: string; key?: string }): TlsClientOptions | undefined {
  if ((o.cert === undefined) !== (o.key === undefined)) usage(cmd, "--cert and --key go together: a client certificate needs its key");
  try {
    const pair = o.cert !== undefined && o.key !== undefined ? readCertificatePair(o.cert, o.key) : undefined;
    const ca = o.cacert === undefined ? undefined : readCaBundle(o.cacert);
    return ca === undefined && pair === undefined ? undefined : { ...(ca === undefined ? {} : { ca }), ...(pair ?? {}) };
  } catch (e) {
    if (!(e instanceof StartRefused)) throw e;
    return usage(cmd, e.message);
  }
}

/**
 * Adds the client option set. On the program (`global`) the flags have no default and read no
 * variable: they only count when given there, before the command; the command's own copy carries
 * the variables and defaults (clientFlags picks).
 */
export function withClientOptions(cmd: Command, global = false): Command {
  const opt = (flags: string, help: string, env: string, dflt?: string | number): Option => {
    const o = new Option(flags, help);
    return global ? o : dflt === undefined ? o.env(env) : o.env(env).default(dflt);
  };
  return cmd
    .addOption(opt("--endpoints <urls>", "node URLs, comma-separated, tried in order (fail-over)", "RESONETICS_ENDPOINTS", DEFAULT_ENDPOINT))
    .addOption(opt("--token-file <file>", "bearer token file (appends need <data-dir>/admin.token)", "RESONETICS_TOKEN_FILE"))
    .addOption(opt("-o, --output <format>", "text (one line per item) or json (the server's JSON)", "RESONETICS_OUTPUT", "text").choices(["text", "json"]))
    .addOption(opt("--cacert <file>", "trust this CA for https:// endpoints (instead of the system's store)", "RESONETICS_CACERT"))
    .addOption(opt("--cert <file>", "client certificate, for a node started with --tls-client-ca", "RESONETICS_CERT"))
    .addOption(opt("--key <file>", "the private key of --cert", "RESONETICS_KEY"))
    .addOption(opt("--trust <file>", "a trust file (resonetics trust export): checkpoint signers are taken from its genesis configuration, not from the node", "RESONETICS_TRUST"))
    .addOption(opt("--state-file <file>", "keep the last verified checkpoint here; a newer one must be proven consistent with it (rollback and fork: exit 1)", "RESONETICS_STATE_FILE"))
    // 10 s: a write waits up to the server's --write-timeout-ms (5 s) for commit before its 503.
    .addOption(opt("--timeout-ms <ms>", "per request", "RESONETICS_TIMEOUT_MS", 10_000).argParser(int(100, 600_000)));
}

/** A flag's value: given on this command, else given before it (on a parent), else this command's variable or default. */
function flag(cmd: Command, key: string): unknown {
  for (let c: Command | null = cmd; c !== null; c = c.parent) {
    if (c.getOptionValueSource(key) === "cli") return c.getOptionValue(key);
  }
  return cmd.getOptionValue(key);
}

const optionalString = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/** The client option set of a command, read and checked; a bad one is a usage error (exit 2). */
export function clientFlags(cmd: Command): ClientFlags {
  const endpoints = String(flag(cmd, "endpoints")).split(",").map((u) => u.trim()).filter((u) => u.length > 0);
  if (endpoints.length === 0) usage(cmd, "--endpoints needs at least one URL");
  for (const u of endpoints) {
    if (!/^https?:\/\/[^/\s]+\/?$/.test(u)) usage(cmd, `--endpoints takes http(s)://host:port URLs, comma-separated; got ${JSON.stringify(u)}`);
  }
  const tokenFile = optionalString(flag(cmd, "tokenFile"));
  let token: string | undefined;
  if (tokenFile !== undefined) {
    try {
      token = readFileSync(tokenFile, "utf8").trim();
    } catch (e) {
      return usage(cmd, `--token-file ${tokenFile}: ${(e as Error).message}`);
    }
    if (token.length === 0) usage(cmd, `--token-file ${tokenFile} is empty`);
  }
  const tls = clientTls(cmd, { cacert: optionalString(flag(cmd, "cacert")), cert: optionalString(flag(cmd, "cert")), key: optionalString(flag(cmd, "key")) });
  const trust = optionalString(flag(cmd, "trust"));
  const stateFile = optionalString(flag(cmd, "stateFile"));
  return {
    endpoints, output: flag(cmd, "output") === "json" ? "json" : "text", timeoutMs: Number(flag(cmd, "timeoutMs")),
    ...(token === undefined ? {} : { token }), ...(tls === undefined ? {} : { tls }),
    ...(trust === undefined ? {} : { trust }), ...(stateFile === undefined ? {} : { stateFile }),
  };
}

/** A client over these endpoints (all of them by default), failing over in order. */
export function clientOf(f: ClientFlags, endpoints: readonly string[] = f.endpoints, attemptsPerEndpoint = ATTEMPTS_PER_ENDPOINT): LedgerClient {
  return new LedgerClient({
    urls: endpoints, timeoutMs: f.timeoutMs, maxAttempts: attemptsPerEndpoint * endpoints.length, backoffMs: BACKOFF_MS,
    ...(f.token === undefined ? {} : { token: f.token }), ...(f.tls === undefined ? {} : { tls: f.tls }),
    ...(f.trust === undefined ? {} : { trust: f.trust }), ...(f.stateFile === undefined ? {} : { stateFile: f.stateFile }),
  });
}

/** Codes of a client-side check that failed (status 0): the answer does not verify. */
const VERIFICATION_CODES = new Set(["verification_failed", "bad_answer", "rollback", "fork", "untrusted_signer", "cluster_mismatch", "trust_mismatch"]);

/** An error fetch throws when no answer came: refused, reset, unresolvable, timed out. */
function isUnanswered(e: unknown): e is Error {
  return e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError" || (e instanceof TypeError && e.message === "fetch failed"));
}

/** An unanswered request's reason, with the socket's own (fetch says only "fetch failed"). */
export function unansweredReason(e: Error): string {
  const cause = (e as { cause?: unknown }).cause;
  if (!(cause instanceof Error)) return e.message;
  const code = (cause as { code?: unknown }).code;
  const inner = cause instanceof AggregateError ? cause.errors.map((x: unknown) => (x instanceof Error ? x.message : String(x))).join("; ") : cause.message;
  return `${e.message}: ${inner || String(code)}`;
}

/** The exit code and the one line to say for what a client command threw; null for anything else (a bug: rethrown). */
export function failure(e: unknown): { readonly exit: number; readonly line: string } | null {
  if (e instanceof ClientError) {
    if (e.status === 0) return { exit: VERIFICATION_CODES.has(e.code) ? EXIT_VERIFICATION : e.code === "unavailable" ? EXIT_UNAVAILABLE : EXIT_USAGE, line: `${e.code}: ${e.message}` };
    // 408 and 429 say "later", not "wrong": like a 5xx, worth retrying.
    const userFault = e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429;
    return { exit: userFault ? EXIT_USAGE : EXIT_UNAVAILABLE, line: `${e.status} ${e.code}: ${e.message}` };
  }
  if (e instanceof LedgerError) return { exit: e.code === "verification_failed" ? EXIT_VERIFICATION : EXIT_USAGE, line: `${e.code}: ${e.message}` };
  if (isUnanswered(e)) return { exit: EXIT_UNAVAILABLE, line: `unavailable: ${unansweredReason(e)}` };
  return null;
}

/** Runs a client command: its exit code, or that of what it threw, said in one line on stderr. */
export async function runClient(name: string, err: Writer, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    const f = failure(e);
    if (f === null) throw e;
    err(`resonetics ${name}: ${f.line}\n`);
    return f.exit;
  }
}
