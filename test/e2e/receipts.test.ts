// Issue 10, acceptance 4: receipts. On a single node with a few thousand records, receipts for 1,000
// random indices verify with src/ledger/receipt.ts (in process; a few through `resonetics receipt`
// and `resonetics verify-receipt`) and with an independent verifier (test/support/receipt-verifier.ts,
// node:crypto, nothing from src/); a receipt with any single byte changed fails both. Across a
// membership change: a node added later becomes leader and signs, and its receipts verify through
// signer_chain against the trust file of the original genesis.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { isAppendAck, postRecord } from "../support/ledger-client";
import { REPO_ROOT, Server, cleanupAll, getJson, http, makeTempDir, mapPool, pollUntil, runCli, startServer, withFailureContext } from "../support/server";
import { TestCluster, freePortRange } from "../support/cluster";
import { canonicalJson, prng, testSeed } from "../support/independent";
import { IndTrust, independentReceiptProblem } from "../support/receipt-verifier";
import { verifyReceiptBytes } from "../../src/ledger/receipt";
import { parseTrustFile, TrustFile } from "../../src/ledger/trust";

jest.setTimeout(240_000);

const SEED = testSeed();
const RECORDS = 3000;
const RECEIPTS = 1000;
/** Requests in flight at once: enough to load the node, few enough for a 2-core machine. */
const CONCURRENCY = 16;
const CLI_TIMEOUT_MS = 60_000;

let server: Server | undefined;
let cluster: TestCluster | undefined;
const spawned = new Set<ChildProcess>();
const notes: string[] = [];
const context = (): string => `RESONETICS_SEED=${SEED} npx jest test/e2e/receipts.test.ts\nnotes: ${notes.join(" | ")}\n` +
  (server ? server.output() : "") + (cluster ? [...cluster.servers.entries()].map(([id, s]) => `=== ${id}\n${s.output()}`).join("\n") : "");

afterAll(async () => {
  await Promise.all([...spawned].map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once("exit", () => resolve());
    c.kill("SIGKILL");
  })));
  await cluster?.stopAll();
  await server?.stop();
  await cleanupAll();
}, 60_000);

async function exportTrust(dir: string): Promise<{ file: string; trust: TrustFile; ind: IndTrust }> {
  const r = await runCli(["trust", "export", dir], CLI_TIMEOUT_MS);
  if (r.code !== 0) throw new Error(`trust export ${dir} → ${r.code}: ${r.stderr}`);
  const file = path.join(makeTempDir(), "trust.json");
  fs.writeFileSync(file, r.stdout);
  const trust = parseTrustFile(r.stdout);
  if (typeof trust === "string") throw new Error(`trust export printed no trust file: ${trust}`);
  return { file, trust, ind: JSON.parse(r.stdout) as IndTrust };
}

/** The receipt's bytes as served, waiting (bounded) while the node answers 202. */
async function fetchReceipt(base: string, index: number): Promise<Buffer> {
  return pollUntil(`a receipt for ${index} from ${base}`, async () => {
    const r = await http(base, "GET", `/v1/receipts/${index}`);
    if (r.status === 202) {
      expect(r.headers.get("retry-after")).toMatch(/^[0-9]+$/);
      return undefined;
    }
    if (r.status !== 200) throw new Error(`GET /v1/receipts/${index} → ${r.status} ${r.text.slice(0, 300)}`);
    return Buffer.from(r.text, "utf8");
  }, 200, 50);
}

/** Every single-byte change of `bytes` at `positions` (each byte XORed with a non-zero value) fails both verifiers. */
function everyChangeFails(bytes: Buffer, positions: readonly number[], trust: TrustFile, ind: IndTrust, rnd: () => number): string[] {
  const passed: string[] = [];
  for (const at of positions) {
    const changed = Buffer.from(bytes);
    changed[at] ^= 1 + Math.floor(rnd() * 255);
    if (verifyReceiptBytes(changed, trust).ok) passed.push(`src verifier accepted byte ${at} changed to 0x${changed[at].toString(16)}`);
    if (independentReceiptProblem(changed, ind) === null) passed.push(`independent verifier accepted byte ${at} changed`);
  }
  return passed;
}

test(`receipts for ${RECEIPTS} random indices of a ${RECORDS}-record node verify (src and independent); any changed byte fails`, () => {
  const dir = path.join(makeTempDir(), "node");
  return withFailureContext(context, [path.dirname(dir)], async () => {
    server = await startServer(dir, { extraArgs: ["--checkpoint-every", "100", "--checkpoint-interval-ms", "200"] });
    const s = server;
    // 202 before any checkpoint covers the index: write one record and ask at once.
    const first = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: "r-first", data: { name: "first", value: 0 } });
    if (!isAppendAck(first.json)) throw new Error(`append → ${first.status} ${first.text}`);
    const early = await http(s.baseUrl, "GET", `/v1/receipts/${first.json.index}`);
    notes.push(`first receipt asked at once: ${early.status}`);
    if (early.status === 202) expect(early.headers.get("retry-after")).toBe("1");
    else expect(early.status).toBe(200); // a checkpoint already landed (interval 200 ms): fine, both are honest

    const rnd = prng(SEED);
    await mapPool(Array.from({ length: RECORDS }, (_, i) => i), CONCURRENCY, async (i) => {
      const r = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: `r-${i % 50}`, data: { name: `n${i}`, value: i } });
      if (r.status !== 201 || !isAppendAck(r.json)) throw new Error(`append ${i} → ${r.status} ${r.text}`);
    });
    const covered = await pollUntil("a checkpoint covering every record", async () => {
      const st = await getJson<{ commit_index: number }>(s.baseUrl, "/v1/status");
      const cp = await getJson<{ size: number; index: number }>(s.baseUrl, "/v1/checkpoints/latest");
      return cp.index === st.commit_index ? cp.size : undefined;
    }, 200, 50);
    const { file: trustFile, trust, ind } = await exportTrust(dir);

    const indices = Array.from({ length: RECEIPTS }, () => 1 + Math.floor(rnd() * covered));
    const receipts = await mapPool(indices, CONCURRENCY, (i) => fetchReceipt(s.baseUrl, i));
    const failures: string[] = [];
    receipts.forEach((bytes, k) => {
      const src = verifyReceiptBytes(bytes, trust);
      const indep = independentReceiptProblem(bytes, ind);
      if (!src.ok || src.index !== indices[k]) failures.push(`${indices[k]}: src ${JSON.stringify(src)}`);
      if (indep !== null) failures.push(`${indices[k]}: independent: ${indep}`);
    });
    expect(failures.slice(0, 10)).toEqual([]);

    // Any single byte changed fails: every position of two receipts, 20 random positions of 50 more.
    const passed: string[] = [];
    for (const k of [0, 1]) passed.push(...everyChangeFails(receipts[k], Array.from({ length: receipts[k].length }, (_, i) => i), trust, ind, rnd));
    for (let k = 2; k < 52; k++) passed.push(...everyChangeFails(receipts[k], Array.from({ length: 20 }, () => Math.floor(rnd() * receipts[k].length)), trust, ind, rnd));
    expect(passed.slice(0, 10)).toEqual([]);

    // Through the CLI: fetch with `resonetics receipt`, verify with `resonetics verify-receipt`.
    const tmp = makeTempDir();
    for (const i of indices.slice(0, 3)) {
      const got = await runCli(["receipt", String(i), "--endpoints", s.baseUrl, "--token-file", path.join(dir, "admin.token")], CLI_TIMEOUT_MS);
      expect({ i, code: got.code, stderr: got.stderr }).toEqual({ i, code: 0, stderr: "" });
      const f = path.join(tmp, `r${i}.json`);
      fs.writeFileSync(f, got.stdout);
      const ok = await runCli(["verify-receipt", f, "--trust", trustFile], CLI_TIMEOUT_MS);
      expect({ i, code: ok.code }).toEqual({ i, code: 0 });
      expect(ok.stdout).toMatch(new RegExp(`^receipt verified: entry ${i} is in root\\(\\d+\\), signed by n1, a member of the pinned genesis configuration\\n$`));
    }
    const bad = path.join(tmp, "bad.json");
    const b = Buffer.from(receipts[0]);
    b[Math.floor(b.length / 2)] ^= 0x01;
    fs.writeFileSync(bad, b);
    const refused = await runCli(["verify-receipt", bad, "--trust", trustFile], CLI_TIMEOUT_MS);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/^receipt does NOT verify: /);
    const missing = await runCli(["verify-receipt", path.join(tmp, "missing.json"), "--trust", trustFile], CLI_TIMEOUT_MS);
    expect(missing.code).toBe(2);
    await s.stop();
    server = undefined;
  });
});

/** Spawns `resonetics join` for a new node; resolves once it printed "joined: ". */
function join(c: TestCluster, id: string, dir: string, port: number): Promise<ChildProcess> {
  const args = ["--import", "tsx", "src/cli/main.ts", "join", "--data-dir", dir, "--id", id, "--seed", c.url("n1"),
    "--token-file", path.join(c.dir("n1"), "admin.token"), "--port", String(port), "--log-level", "warn"];
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: process.env, stdio: ["ignore", "pipe", "pipe"] });
  spawned.add(child);
  child.once("exit", () => spawned.delete(child));
  const errs: string[] = [];
  readline.createInterface({ input: child.stderr! }).on("line", (l) => { if (errs.length < 50) errs.push(l); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`join did not print "joined" within 90 s: ${errs.join("\n")}`)), 90_000);
    readline.createInterface({ input: child.stdout! }).on("line", (l) => {
      if (l.startsWith("joined: ")) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`join exited with ${code} before "joined": ${errs.join("\n")}`));
    });
  });
}

test("across a membership change: a node added later leads and signs; its receipts verify through signer_chain", () => {
  const joinRoot = makeTempDir();
  return withFailureContext(context, [joinRoot], async () => {
    const serveArgs = ["--checkpoint-every", "20", "--checkpoint-interval-ms", "200"];
    const c = await TestCluster.start(3, { serveArgs });
    cluster = c;
    const lead = await c.leader();
    for (let i = 0; i < 30; i++) {
      const r = await postRecord(c.url(lead), c.token, { type: "policy.set", subject: `m-${i % 3}`, data: { name: `n${i}`, value: i } });
      if (r.status !== 201) throw new Error(`append ${i} → ${r.status} ${r.text}`);
    }
    const { trust, ind } = await exportTrust(c.dir("n1"));

    // n4 joins (learner, then voter), then serves again with a short tick so that it, not an old
    // member, is the first to campaign when the leader goes.
    const port = await freePortRange(1);
    const dir4 = path.join(joinRoot, "n4");
    const joiner = await join(c, "n4", dir4, port);
    await new Promise<void>((resolve) => {
      joiner.once("exit", () => resolve());
      joiner.kill("SIGTERM");
    });
    const n4 = await startServer(dir4, { extraArgs: ["--port", String(port), "--tick-ms", "10", ...serveArgs] });
    const url4 = n4.baseUrl;
    const status4 = (): Promise<{ role: string; leader: string | null; voters: string[] }> => getJson(url4, "/v1/status");
    await pollUntil("n4 a voter that knows the leader", async () => {
      const st = await status4();
      return st.voters.includes("n4") && st.leader !== null ? true : undefined;
    }, 400, 50);

    // Make n4 the leader: stop whichever old member leads (bounded rounds), restarting it after.
    for (let round = 0; round < 8; round++) {
      const st = await status4();
      if (st.role === "leader") break;
      const old = st.leader;
      if (old === null || old === "n4") {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      notes.push(`round ${round}: stopping leader ${old}`);
      await c.kill9(old);
      await pollUntil("a new leader after the stop", async () => {
        const s4 = await status4().catch(() => null);
        return s4 !== null && s4.leader !== null && s4.leader !== old ? true : undefined;
      }, 400, 50);
      await c.startNode(old);
    }
    const st = await status4();
    expect(st.role).toBe("leader");

    // n4 signs: records, then a checkpoint by n4 covering them.
    let lastIndex = 0;
    for (let i = 0; i < 10; i++) {
      const r = await postRecord(url4, c.token, { type: "policy.set", subject: `m4-${i}`, data: { name: `n4-${i}`, value: i } });
      if (r.status !== 201 || !isAppendAck(r.json)) throw new Error(`append via n4 ${i} → ${r.status} ${r.text}`);
      lastIndex = r.json.index;
    }
    await pollUntil("a checkpoint signed by n4 covering the records", async () => {
      const cp = await getJson<{ signer: string; size: number }>(url4, "/v1/checkpoints/latest");
      return cp.signer === "n4" && cp.size >= lastIndex ? true : undefined;
    }, 400, 50);
    const bytes = await fetchReceipt(url4, lastIndex);
    const receipt = JSON.parse(bytes.toString("utf8")) as { checkpoint: { signer: string }; signer_chain: Array<{ config: { index: number; payload_b64: string } }> };
    notes.push(`receipt for ${lastIndex}: signer ${receipt.checkpoint.signer}, chain ${receipt.signer_chain.map((l) => l.config.index).join(",")}`);
    expect(receipt.checkpoint.signer).toBe("n4");
    expect(receipt.signer_chain.length).toBeGreaterThanOrEqual(1);
    const lastCfg = Buffer.from(receipt.signer_chain[receipt.signer_chain.length - 1].config.payload_b64, "base64").toString("utf8");
    expect(lastCfg).toContain('"id":"n4"');
    const src = verifyReceiptBytes(bytes, trust);
    expect(src).toEqual({ ok: true, index: lastIndex, size: expect.any(Number), signer: "n4", chain: receipt.signer_chain.length });
    expect(independentReceiptProblem(bytes, ind)).toBeNull();

    // Without the chain the signer is unknown to the genesis: the chain is what makes it verify.
    const cut = Buffer.from(canonicalJson({ ...(JSON.parse(bytes.toString("utf8")) as object), signer_chain: [] }), "utf8");
    expect(verifyReceiptBytes(cut, trust).ok).toBe(false);
    expect(independentReceiptProblem(cut, ind)).not.toBeNull();
    const passed = everyChangeFails(bytes, Array.from({ length: bytes.length }, (_, i) => i).filter((i) => i % 3 === 0), trust, ind, prng(SEED));
    expect(passed.slice(0, 10)).toEqual([]);
    await n4.stop();
  });
});
