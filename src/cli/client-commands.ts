/**
 * The client commands (DESIGN.md "Command line"), etcdctl-like: append, get, list, history, tail,
 * proof inclusion|consistency, receipt, checkpoint, status, members. Each reads through
 * LedgerClient, which verifies what it is given, and prints text (one key=value line per item,
 * src/cli/format.ts) or, with -o json, the server's JSON as is. Options and exit codes:
 * src/cli/client-options.ts.
 */
import { Command, Option } from "commander";
import { readFileSync } from "node:fs";
import type { RecordRequest } from "../ledger/record";
import { parseIJson } from "../ledger/ijson";
import { utf8 } from "../ledger/bytes";
import { clientFlags, ClientFlags, clientOf, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, failure, int, runClient, usage, withClientOptions } from "./client-options";
import { entryLine, kv } from "./format";
import { tailCommand } from "./tail";
import { receiptCommand } from "./receipt";
import type { Writer } from "./verify-chain";

const INDEX = int(1, Number.MAX_SAFE_INTEGER);
/** The server's bounds of a GET /v1/records page (src/api/routes.ts): checked here to say so before asking. */
const LIST_LIMIT_MAX = 1000;

const json = (v: unknown): string => `${JSON.stringify(v)}\n`;

interface AppendFlags {
  type?: string;
  subject?: string;
  data?: string;
  actor?: string;
  file?: string;
  idempotencyKey?: string;
}

/**
 * The record to append: the whole body from --file (- = stdin), or --type/--subject/--data
 * [--actor]. JSON is read with the ledger's own I-JSON parser, so what the server would refuse as
 * not I-JSON is refused here the same way (and the value sent is exactly what the text says).
 */
function appendBody(cmd: Command, o: AppendFlags): RecordRequest {
  if (o.file !== undefined) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(o.file === "-" ? 0 : o.file);
    } catch (e) {
      return usage(cmd, `--file ${o.file}: ${(e as Error).message}`);
    }
    const body = parseIJson(bytes, "body");
    if (typeof body !== "object" || body === null || Array.isArray(body)) usage(cmd, `--file ${o.file} must hold one JSON object {type, subject, data, actor?}`);
    return body as RecordRequest;
  }
  if (o.type === undefined || o.subject === undefined || o.data === undefined) usage(cmd, "give --type, --subject and --data (JSON), or the whole body with --file (- for stdin)");
  const data = parseIJson(utf8(o.data), "data");
  return { type: o.type, subject: o.subject, data, ...(o.actor === undefined ? {} : { actor: o.actor }) };
}

/** A client command: the shared options, and an action that gets the flags and sets the exit code. */
function clientCommand<A extends unknown[]>(
  parent: Command, name: string, description: string, configure: (c: Command) => Command, err: Writer,
  run: (f: ClientFlags, cmd: Command, ...args: A) => Promise<number>,
): Command {
  const c = withClientOptions(configure(parent.command(name).description(description)));
  c.action(async (...raw: unknown[]) => {
    const cmd = raw[raw.length - 1] as Command;
    const args = raw.slice(0, -2) as A; // commander passes the arguments, then the options, then the command
    const f = clientFlags(cmd);
    process.exitCode = await runClient(parent.parent === null ? name : `${parent.name()} ${name}`, err, () => run(f, cmd, ...args));
  });
  return c;
}

/** Registers the client commands on the program. */
export function addClientCommands(p: Command, out: Writer, err: Writer): void {
  clientCommand<[]>(p, "append", "append a record; answers after it is committed and applied (a retry with the same --idempotency-key is safe)", (c) => c
    .addOption(new Option("--type <type>", "record type: a schema in schemas/records/ (policy.set, proposal.open, vote.cast, decision.record)"))
    .addOption(new Option("--subject <subject>", "what the record is about; a subject's records form one chain"))
    .addOption(new Option("--data <json>", "the record's data, JSON (validated by the type's schema)"))
    .addOption(new Option("--actor <actor>", "who acts (optional)"))
    .addOption(new Option("--file <file>", "the whole body {type, subject, data, actor?} from a JSON file; - reads stdin").conflicts(["type", "subject", "data", "actor"]))
    .addOption(new Option("--idempotency-key <key>", "1..200 visible ASCII characters; the same key and body return the original answer (default: a fresh key per command)")),
  err, async (f, cmd) => {
    const o = cmd.opts<AppendFlags>();
    const body = appendBody(cmd, o);
    const ack = await clientOf(f).append(body, ...(o.idempotencyKey === undefined ? [] : [o.idempotencyKey]));
    out(f.output === "json" ? json(ack) : `${kv([["index", ack.index], ["term", ack.term], ["hash", ack.hash]])}\n`);
    return EXIT_OK;
  });

  clientCommand<[number]>(p, "get", "one entry, its hash recomputed from its contents", (c) => c
    .argument("<index>", "the entry's log index", INDEX),
  err, async (f, _cmd, index) => {
    const e = await clientOf(f).entry(index);
    out(f.output === "json" ? json(e) : `${entryLine(e)}\n`);
    return EXIT_OK;
  });

  clientCommand<[]>(p, "list", "a page of entries (or of a subject's records), each hash recomputed, consecutive ones chained", (c) => c
    .addOption(new Option("--subject <subject>", "only this subject's records"))
    .addOption(new Option("--from <index>", "the first log index").argParser(INDEX))
    .addOption(new Option("--limit <n>", `entries in the page (server default 100, at most ${LIST_LIMIT_MAX})`).argParser(int(1, LIST_LIMIT_MAX))),
  err, async (f, cmd) => {
    const o = cmd.opts<{ subject?: string; from?: number; limit?: number }>();
    const page = await clientOf(f).records(o);
    if (f.output === "json") out(json(page));
    else {
      for (const e of page.entries) out(`${entryLine(e)}\n`);
      // Not an item: where the next page starts, for a person reading it.
      if (page.next !== null) err(`more: --from ${page.next}\n`);
    }
    return EXIT_OK;
  });

  clientCommand<[string]>(p, "history", "every record of a subject, verified: hashes, the subject's chain, inclusion proofs, the checkpoint's signature and the completeness proof", (c) => c
    .argument("<subject>", "the subject"),
  err, async (f, _cmd, subject) => {
    const { history, complete } = await clientOf(f).history(subject);
    if (f.output === "json") {
      out(json(history));
      return EXIT_OK;
    }
    for (const r of history.records) out(`${kv([["version", r.version], ["subject_head", r.subject_head]])} ${entryLine(r.entry)}\n`);
    const proven = complete === null ? "completeness not provable yet (no checkpoint signs this subject's leaf)"
      : `complete up to entry ${complete.size} (subjects_root signed by ${complete.signer} in checkpoint ${complete.checkpointIndex})`;
    out(`verified: ${history.records.length} record(s), head ${history.head}; ${proven}\n`);
    return EXIT_OK;
  });

  clientCommand<[]>(p, "tail", "follow the log: one line per entry as it commits, each verified (chain, hashes, checkpoint signatures and heads); exit 1 at the first that fails", (c) => c
    .addOption(new Option("--from <index>", "the first index (default: the next entry to commit)").argParser(INDEX))
    .addOption(new Option("--count <n>", "stop after this many entries (default: follow until interrupted)").argParser(int(0, Number.MAX_SAFE_INTEGER))),
  err, async (f, cmd) => tailCommand(f, cmd.opts<{ from?: number; count?: number }>(), out, err));

  const proof = p.command("proof").description("RFC 9162 proofs, fetched and verified here");
  clientCommand<[number]>(proof, "inclusion", "prove an entry is in root(size): the latest checkpoint covering it by default", (c) => c
    .argument("<index>", "the entry's log index", INDEX)
    .addOption(new Option("--size <n>", "the tree size to prove against").argParser(INDEX)),
  err, async (f, cmd, index) => {
    const size = cmd.opts<{ size?: number }>().size;
    const pr = await clientOf(f).signedInclusion(index, size);
    out(f.output === "json" ? json(pr)
      : `verified: entry ${pr.index} is in root(${pr.size})=${pr.root} (${pr.path.length} path hashes)${signedBy(pr.checkpoint, pr.size)}\n`);
    return EXIT_OK;
  });
  clientCommand<[number, number]>(proof, "consistency", "prove root(from) is a prefix of root(to): the log only grew", (c) => c
    .argument("<from>", "the smaller tree size", INDEX)
    .argument("<to>", "the larger tree size", INDEX),
  err, async (f, _cmd, from, to) => {
    const pr = await clientOf(f).signedConsistency(from, to);
    out(f.output === "json" ? json(pr)
      : `verified: root(${pr.from})=${pr.root_from} is a prefix of root(${pr.to})=${pr.root_to} (${pr.path.length} path hashes)${signedBy(pr.checkpoint, pr.to)}\n`);
    return EXIT_OK;
  });

  clientCommand<[number]>(p, "receipt", "the offline receipt of an entry (GET /v1/receipts/:index), the bytes as served, in either output", (c) => c
    .argument("<index>", "the entry's log index", INDEX)
    .addOption(new Option("--wait-ms <ms>", "keep asking this long while no checkpoint covers the index").env("RESONETICS_WAIT_MS").default(0).argParser(int(0, 3_600_000))),
  err, async (f, cmd, index) => receiptCommand(index, { ...f, waitMs: cmd.opts<{ waitMs: number }>().waitMs }, out, err));

  clientCommand<[]>(p, "checkpoint", "the latest signed checkpoint, its signature checked with the signer's key in the configuration", (c) => c,
    err, async (f) => {
      const cp = await clientOf(f).signedCheckpoint();
      out(f.output === "json" ? json(cp)
        : `${kv([["index", cp.index], ["size", cp.size], ["root", cp.root], ["head", cp.head], ["term", cp.term], ["signer", cp.signer], ["ts", cp.ts], ["subjects_root", cp.subjects_root]])}\n`);
      return EXIT_OK;
    });

  clientCommand<[]>(p, "status", "every endpoint's status, one row each (like etcdctl endpoint status); exit 3 only when none answers", (c) => c,
    err, async (f) => statusCommand(f, out, err));

  clientCommand<[]>(p, "members", "the cluster's configuration: each member's id, role (voter or learner), address and Ed25519 key", (c) => c,
    err, async (f) => {
      const config = await clientOf(f).members();
      if (f.output === "json") out(json(config));
      else {
        for (const [role, list] of [["voter", config.voters], ["learner", config.learners]] as const) {
          for (const m of list) out(`${kv([["id", m.id], ["role", role], ["address", m.address], ["public_key", m.public_key]])}\n`);
        }
      }
      return EXIT_OK;
    });
}

/** The tail of a proof's text line: the checkpoint that signs its root, when the node has one. */
const signedBy = (cp: { index: number; signer: string } | undefined, size: number): string =>
  cp === undefined ? `; no checkpoint signs root(${size})` : `, signed by ${cp.signer} (checkpoint ${cp.index})`;

/** Every endpoint asked (not only the first that answers), once each, at the same time. */
async function statusCommand(f: ClientFlags, out: Writer, err: Writer): Promise<number> {
  type Row = { readonly endpoint: string; readonly status: Record<string, unknown> } | { readonly endpoint: string; readonly error: string; readonly exit: number };
  const rows = await Promise.all(f.endpoints.map(async (endpoint): Promise<Row> => {
    try {
      // Asked once: a status is that node's own answer, there is no election to wait out for it.
      return { endpoint, status: await clientOf(f, [endpoint], 1).status() };
    } catch (e) {
      const why = failure(e);
      if (why === null) throw e;
      return { endpoint, error: why.line, exit: why.exit };
    }
  }));
  if (f.output === "json") out(json(rows.map((r) => ("status" in r ? { endpoint: r.endpoint, status: r.status } : { endpoint: r.endpoint, error: r.error }))));
  else {
    for (const r of rows) {
      if (!("status" in r)) {
        out(`${kv([["endpoint", r.endpoint], ["error", r.error]])}\n`);
        continue;
      }
      const s = r.status;
      const field = (k: string): string | number | null => (typeof s[k] === "string" || typeof s[k] === "number" ? (s[k] as string | number) : null);
      out(`${kv([["endpoint", r.endpoint], ["node", field("node_id")], ["role", field("role")], ["term", field("term")], ["leader", field("leader")],
        ["commit_index", field("commit_index")], ["last_applied", field("last_applied")], ["head", field("head")]])}\n`);
    }
  }
  if (rows.some((r) => "status" in r)) return EXIT_OK;
  err(`resonetics status: no endpoint answered\n`);
  // A refusal (a 4xx: a client certificate missing, say) is an answer: the user's to fix.
  return rows.some((r) => "exit" in r && r.exit === EXIT_USAGE) ? EXIT_USAGE : EXIT_UNAVAILABLE;
}
