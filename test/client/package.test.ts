// `import { Client } from "resonetics"` works from the compiled package (issue 13): package.json
// main/types/exports point at dist/client/index.js, which jest's globalSetup builds. A program in a
// temp dir whose node_modules/resonetics is a link to this repo (what `npm install <path>` makes)
// loads it by the package name through require and through an ESM import, and a TypeScript file
// there type-checks against the emitted declarations.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "../support/server";

jest.setTimeout(60_000);

let consumer: string;
beforeAll(() => {
  consumer = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-consumer-"));
  fs.mkdirSync(path.join(consumer, "node_modules"));
  fs.symlinkSync(REPO_ROOT, path.join(consumer, "node_modules", "resonetics"), "dir");
});
afterAll(() => {
  fs.rmSync(consumer, { recursive: true, force: true });
});

/** Runs node (or tsc) in the consumer dir, bounded; its stdout, or a failure that says how to reproduce. */
function run(args: readonly string[]): string {
  const r = spawnSync(process.execPath, args, { cwd: consumer, encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) throw new Error(`node ${args.join(" ")} in ${consumer} → ${r.status} ${r.signal ?? ""}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test("require(\"resonetics\") gives Client (the LedgerClient) and the error types", () => {
  const out = run(["-e", `
    const r = require("resonetics");
    const c = new r.Client({ urls: ["http://127.0.0.1:1"] });
    console.log(JSON.stringify({
      resolved: require.resolve("resonetics"),
      client: typeof r.Client, same: r.Client === r.LedgerClient, instance: c instanceof r.LedgerClient,
      errors: ["ClientError", "RollbackError", "ForkError", "StateFileError"].filter((n) => typeof r[n] === "function"),
      rollbackIsClientError: r.RollbackError.prototype instanceof r.ClientError,
    }));
  `]);
  expect(JSON.parse(out)).toEqual({
    resolved: path.join(REPO_ROOT, "dist", "client", "index.js"),
    client: "function", same: true, instance: true,
    errors: ["ClientError", "RollbackError", "ForkError", "StateFileError"],
    rollbackIsClientError: true,
  });
});

test("an ES module imports { Client } by name", () => {
  const out = run(["--input-type=module", "-e", `import { Client, RollbackError } from "resonetics"; console.log(typeof Client, typeof RollbackError);`]);
  expect(out.trim()).toBe("function function");
});

test("TypeScript finds the declarations: a consumer using Client, its options and errors type-checks", () => {
  fs.writeFileSync(path.join(consumer, "use.ts"), [
    'import { Client, RollbackError, type ClientOptions } from "resonetics";',
    'const opts: ClientOptions = { urls: ["http://127.0.0.1:8080"], stateFile: "state.json" };',
    "const c: Client = new Client(opts);",
    "export async function read(): Promise<number> {",
    "  try { return (await c.entry(1)).index; } catch (e) { if (e instanceof RollbackError) return e.pinned.size; throw e; }",
    "}",
    "",
  ].join("\n"));
  fs.writeFileSync(path.join(consumer, "tsconfig.json"), JSON.stringify({
    // skipLibCheck: the declarations name Node's and undici's types, which this bare consumer does not install.
    compilerOptions: { strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext", target: "ES2022", types: [], skipLibCheck: true },
    files: ["use.ts"],
  }));
  run([require.resolve("typescript/bin/tsc"), "-p", path.join(consumer, "tsconfig.json")]);
  // The same file with a wrong option fails: the check above saw real types, not `any`.
  fs.writeFileSync(path.join(consumer, "use.ts"), 'import { Client } from "resonetics";\nnew Client({ urls: ["x"], stateFile: 42 });\n');
  expect(() => run([require.resolve("typescript/bin/tsc"), "-p", path.join(consumer, "tsconfig.json")])).toThrow(/use.ts\(2,27\): error TS2322/);
});
