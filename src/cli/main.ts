/** The `resonetics` command line. Every flag also reads an environment variable. */
import { Command, InvalidArgumentError, Option } from "commander";
import { serve } from "./serve";
import { verifyChainCommand } from "./verify-chain";

const out = (text: string): void => {
  process.stdout.write(text);
};
const err = (text: string): void => {
  process.stderr.write(text);
};

function int(min: number, max: number) {
  return (raw: string): number => {
    if (!/^[0-9]+$/.test(raw)) throw new InvalidArgumentError(`expected a whole number, got ${raw}`);
    const n = Number(raw);
    if (n < min || n > max) throw new InvalidArgumentError(`expected ${min}..${max}, got ${raw}`);
    return n;
  };
}

export function program(): Command {
  const p = new Command("resonetics").description("Resonetics: a verifiable, hash-chained audit-log ledger");
  p.exitOverride();
  p.command("serve")
    .description("run a node (initializes a single-node cluster on an empty data dir)")
    .addOption(new Option("--data-dir <dir>", "data directory").env("RESONETICS_DATA_DIR").default("./data"))
    .addOption(new Option("--host <host>", "address to listen on").env("RESONETICS_HOST").default("127.0.0.1"))
    .addOption(new Option("--port <port>", "port (0 = any free port)").env("RESONETICS_PORT").default(8080).argParser(int(0, 65535)))
    .addOption(new Option("--checkpoint-every <n>", "sign a checkpoint after this many entries").env("RESONETICS_CHECKPOINT_EVERY").default(1000).argParser(int(1, 1_000_000)))
    .addOption(new Option("--checkpoint-interval-ms <ms>", "...or after this long with new entries").env("RESONETICS_CHECKPOINT_INTERVAL_MS").default(1000).argParser(int(10, 3_600_000)))
    .addOption(new Option("--body-limit <bytes>", "largest request body").env("RESONETICS_BODY_LIMIT").default(65536).argParser(int(1024, 16 * 1024 * 1024)))
    .addOption(new Option("--log-level <level>", "pino log level").env("RESONETICS_LOG_LEVEL").default("info"))
    .action(async (o: { dataDir: string; host: string; port: number; checkpointEvery: number; checkpointIntervalMs: number; bodyLimit: number; logLevel: string }) => {
      await serve({ ...o, bodyLimitBytes: o.bodyLimit });
    });
  p.command("verify-chain")
    .description("verify a data directory offline (exit 0 verified, 1 violation, 2 usage/unreadable)")
    .argument("<data-dir>", "the node's data directory")
    .addOption(new Option("--from <where>", "genesis or snapshot").default("genesis"))
    .option("--json", "one JSON report on stdout", false)
    .action((dataDir: string, o: { from: string; json: boolean }) => {
      process.exitCode = verifyChainCommand(dataDir, { ...o, progress: !o.json && process.stderr.isTTY === true }, out, err);
    });
  return p;
}

/** Parses argv and runs; usage errors exit 2. */
export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "commander.helpDisplayed" || code === "commander.version" || code === "commander.help") {
      process.exitCode = 0;
      return;
    }
    if (typeof code === "string" && code.startsWith("commander.")) {
      process.exitCode = 2;
      return;
    }
    err(`resonetics: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}

if (require.main === module) void main(process.argv);
