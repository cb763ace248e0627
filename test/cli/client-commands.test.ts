// Issue 13: the client commands of `resonetics` (DESIGN.md "Command line") against a real 3-node
// cluster started through the project's bin: each command's output in text and in json, exact
// against what the REST API serves; the exit codes (0 ok, 1 verification failure, 2 usage or a
// 4xx, 3 unavailable); --endpoints listing a dead endpoint first; fail-over after kill -9 of the
// leader; and `tail` ending with exit 1, naming the entry, when a man in the middle alters one
// byte of one stream frame on its way to the client.
import * as fs from "node:fs";
import * as http1 from "node:http";
import * as net from "node:net";
import * as path from "node:path";
import { TestCluster, freePortRange } from "../support/cluster";
import { CliOptions, ProcessResult, REPO_ROOT, cleanupAll, getJson, http, makeTempDir, mapPool, pollUntil, runCli, withFailureContext } from "../support/server";
import { EntryView, waitQuiescent } from "../support/ledger-client";
import { MitmProxy, closeAllMitm } from "../support/mitm-proxy";

/** A CLI process that does not exit within this fails the test (and is killed). */
const CLI_TIMEOUT_MS = 30_000;
/** Usage checks run side by side: two cores, shared with the team. */
const CONCURRENCY = 2;

jest.setTimeout(90_000);

let c: TestCluster;
let leader: string;
let tokenFile: string;
let lastOutput = "";

const version = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;

beforeAll(async () => {
  c = await TestCluster.start(3, { serveArgs: ["--checkpoint-interval-ms", "200"] });
  leader = await c.leader();
  tokenFile = path.join(c.dir("n1"), "admin.token");
}, 60_000);

afterAll(async () => {
  await closeAllMitm();
  await cleanupAll();
}, 60_000);

/** `resonetics args...` with --endpoints = every node (RESONETICS_ENDPOINTS) unless the args or opts say otherwise. */
async function cli(args: readonly string[], opts: CliOptions = {}): Promise<ProcessResult> {
  const r = await runCli(args, CLI_TIMEOUT_MS, { ...opts, env: { RESONETICS_ENDPOINTS: c.urls().join(","), ...(opts.env ?? {}) } });
  lastOutput = `$ resonetics ${args.join(" ")}\nexit ${r.code}\n--- stdout ---\n${r.stdout.slice(0, 4000)}\n--- stderr ---\n${r.stderr.slice(0, 4000)}`;
  return r;
}

/** Exit 0, and nothing but the bin's stale-build note on stderr. */
function ok(r: ProcessResult): string {
  expect({ code: r.code, stderr: r.stderr.replace(/^resonetics: dist\/ is missing.*\n/m, "") }).toEqual({ code: 0, stderr: "" });
  return r.stdout;
}

const guarded = (name: string, fn: () => Promise<void>) => (): Promise<void> =>
  withFailureContext(() => `npx jest test/cli/client-commands.test.ts -t ${JSON.stringify(name)}\ncluster dir ${c.root}\n${lastOutput}`, [c.root], fn);

type Entry = EntryView;

const entryAt = (i: number): Promise<Entry> => getJson<Entry>(c.url(leader), `/v1/records/${i}`);
const payloadOf = (e: Entry): Record<string, unknown> => e.kind === "noop" ? {} : JSON.parse(Buffer.from(e.payload_b64, "base64").toString("utf8")) as Record<string, unknown>;

/** The text line of an entry, written out here by the contract (README "Client commands"). */
function line(e: Entry): string {
  const head = `index=${e.index} term=${e.term} kind=${e.kind} hash=${e.hash}`;
  const p = payloadOf(e);
  if (e.kind === "record") return `${head} ts=${p.ts} type=${p.type} subject=${p.subject} data=${JSON.stringify(p.data)}`;
  if (e.kind === "checkpoint") return `${head} ts=${p.ts} size=${p.size} root=${p.root} signer=${p.signer}`;
  if (e.kind === "config") {
    const ids = (k: string): string => (p[k] as Array<{ id: string }>).map((m) => m.id).join(",");
    return `${head} voters=${ids("voters")} learners=${ids("learners") === "" ? '""' : ids("learners")}`;
  }
  return head;
}

const record = (subject: string, n: number) => ({ type: "policy.set", subject, data: { name: `${subject}-${n}`, value: n } });

/** Appends through the CLI (-o json) and returns the acknowledgement. */
async function append(subject: string, n: number, extra: string[] = []): Promise<{ index: number; term: number; hash: string }> {
  const r = record(subject, n);
  const out = ok(await cli(["append", "--type", r.type, "--subject", subject, "--data", JSON.stringify(r.data), "--token-file", tokenFile, "-o", "json", ...extra]));
  return JSON.parse(out) as { index: number; term: number; hash: string };
}

describe("usage: commander's own help and errors; exit 2", () => {
  test("--version, --help of a command, unknown commands and flags, bad values", guarded("usage", async () => {
    const cases: Array<{ args: string[]; code: number; stdout?: RegExp; stderr?: RegExp }> = [
      { args: ["--version"], code: 0, stdout: new RegExp(`^${version.replace(/\./g, "\\.")}\\n$`) },
      { args: ["append", "--help"], code: 0, stdout: /^Usage: resonetics append \[options\][\s\S]*--idempotency-key <key>[\s\S]*--endpoints <urls>[\s\S]*--token-file <file>/ },
      { args: ["proof", "inclusion", "--help"], code: 0, stdout: /^Usage: resonetics proof inclusion \[options\] <index>[\s\S]*--size <n>/ },
      { args: ["frobnicate"], code: 2, stderr: /error: unknown command 'frobnicate'/ },
      { args: ["get"], code: 2, stderr: /error: missing required argument 'index'/ },
      { args: ["get", "zero"], code: 2, stderr: /error: command-argument value 'zero' is invalid for argument 'index'\. expected a whole number/ },
      { args: ["get", "1", "--bogus"], code: 2, stderr: /error: unknown option '--bogus'/ },
      { args: ["-o", "yaml", "get", "1"], code: 2, stderr: /argument 'yaml' is invalid\. Allowed choices are text, json/ },
      { args: ["proof"], code: 2, stderr: /Usage: resonetics proof \[options\] \[command\]/ },
      { args: ["append", "--token-file", "/nonexistent/admin.token", "--type", "policy.set", "--subject", "s", "--data", "{}"], code: 2, stderr: /error: --token-file \/nonexistent\/admin\.token: ENOENT/ },
      { args: ["append", "--type", "policy.set"], code: 2, stderr: /error: give --type, --subject and --data \(JSON\), or the whole body with --file/ },
      { args: ["append", "--file", "x.json", "--type", "policy.set"], code: 2, stderr: /error: option '--file <file>' cannot be used with option '--type <type>'/ },
      { args: ["get", "1", "--endpoints", "ftp://127.0.0.1:1"], code: 2, stderr: /error: --endpoints takes http\(s\):\/\/host:port URLs/ },
    ];
    const results = await mapPool(cases, CONCURRENCY, (k) => cli(k.args));
    results.forEach((r, i) => {
      const k = cases[i];
      expect({ args: k.args, code: r.code }).toEqual({ args: k.args, code: k.code });
      if (k.stdout !== undefined) expect(r.stdout).toMatch(k.stdout);
      if (k.stderr !== undefined) expect(r.stderr).toMatch(k.stderr);
    });
  }));
});

describe("commands against a real 3-node cluster, text and json", () => {
  test("append: from flags, a file and stdin; idempotency; 4xx is exit 2 with the server's code", guarded("append", async () => {
    const r = record("cli-append", 1);
    const text = ok(await cli(["append", "--type", r.type, "--subject", r.subject, "--data", JSON.stringify(r.data), "--token-file", tokenFile]));
    const m = /^index=(\d+) term=(\d+) hash=([0-9a-f]{64})\n$/.exec(text);
    expect(m).not.toBeNull();
    const e = await entryAt(Number(m![1]));
    expect({ term: e.term, hash: e.hash, data: payloadOf(e).data }).toEqual({ term: Number(m![2]), hash: m![3], data: r.data });

    // json: the server's answer as is; the same key and body give the same answer, another body 409.
    const first = await append("cli-append", 2, ["--idempotency-key", "cli-key-2"]);
    expect(Object.keys(first).sort()).toEqual(["hash", "index", "term"]);
    expect(await append("cli-append", 2, ["--idempotency-key", "cli-key-2"])).toEqual(first);
    const conflict = await cli(["append", "--type", "policy.set", "--subject", "cli-append", "--data", '{"name":"other","value":0}', "--token-file", tokenFile, "--idempotency-key", "cli-key-2"]);
    expect({ code: conflict.code, stdout: conflict.stdout }).toEqual({ code: 2, stdout: "" });
    expect(conflict.stderr).toMatch(/^resonetics append: 409 idempotency_conflict: Idempotency-Key "cli-key-2" was used with a different request body$/m);

    const dir = makeTempDir();
    const file = path.join(dir, "record.json");
    fs.writeFileSync(file, JSON.stringify(record("cli-append", 3)));
    expect(ok(await cli(["append", "--file", file, "--token-file", tokenFile]))).toMatch(/^index=\d+ term=\d+ hash=[0-9a-f]{64}\n$/);
    const viaStdin = JSON.parse(ok(await cli(["append", "--file", "-", "--token-file", tokenFile, "-o", "json"], { input: JSON.stringify(record("cli-append", 4)) }))) as { index: number };
    expect(payloadOf(await entryAt(viaStdin.index)).data).toEqual(record("cli-append", 4).data);

    // A follower that answers 307 to the leader (as with ?redirect=1): followed, with the token re-sent.
    const redirecting = http1.createServer((req, res) => {
      res.writeHead(307, { location: `${c.url(leader)}${req.url ?? "/"}`, "content-type": "application/json" });
      res.end(JSON.stringify({ error: "not_leader", leader }));
    });
    await new Promise<void>((done) => redirecting.listen(0, "127.0.0.1", done));
    try {
      const via = JSON.parse(ok(await cli(["append", "--file", file, "--token-file", tokenFile, "-o", "json", "--endpoints", `http://127.0.0.1:${(redirecting.address() as net.AddressInfo).port}`]))) as { index: number };
      expect(payloadOf(await entryAt(via.index)).data).toEqual(record("cli-append", 3).data);
    } finally {
      await new Promise<void>((done) => redirecting.close(() => done()));
    }

    const noToken = await cli(["append", "--type", "policy.set", "--subject", "s", "--data", '{"name":"n","value":1}']);
    expect({ code: noToken.code, stderr: noToken.stderr }).toMatchObject({ code: 2, stderr: expect.stringMatching(/^resonetics append: 401 unauthorized: /m) });
    const schema = await cli(["append", "--type", "policy.set", "--subject", "s", "--data", '{"value":1}', "--token-file", tokenFile]);
    expect({ code: schema.code, stderr: schema.stderr }).toMatchObject({ code: 2, stderr: expect.stringMatching(/^resonetics append: 400 schema_violation: /m) });
    // Refused here by the same I-JSON parser the server runs, before anything is sent.
    const inexact = await cli(["append", "--type", "policy.set", "--subject", "s", "--data", '{"name":"n","value":12345678901234567890}', "--token-file", tokenFile]);
    expect({ code: inexact.code, stderr: inexact.stderr }).toMatchObject({ code: 2, stderr: expect.stringMatching(/^resonetics append: invalid_json: data\/value: /m) });
  }));

  test("get and list: the entry line, the server's JSON; 404 is exit 2", guarded("get list", async () => {
    const acks = [await append("cli-list", 1), await append("cli-list", 2)];
    const e = await entryAt(acks[0].index);
    expect(ok(await cli(["get", String(e.index)]))).toBe(`${line(e)}\n`);
    expect(JSON.parse(ok(await cli(["get", String(e.index), "-o", "json"])))).toEqual(e);
    // Options before the command count too (etcdctl's global flags), and the genesis CONFIG entry reads as one.
    const genesis = await entryAt(1);
    expect(line(genesis)).toBe(`index=1 term=${genesis.term} kind=config hash=${genesis.hash} voters=n1,n2,n3 learners=""`);
    expect(ok(await cli(["-o", "text", "--endpoints", c.url("n2"), "get", "1"]))).toBe(`${line(genesis)}\n`);
    const missing = await cli(["get", "999999"]);
    expect({ code: missing.code, stdout: missing.stdout }).toEqual({ code: 2, stdout: "" });
    expect(missing.stderr).toMatch(/^resonetics get: 404 not_found: no committed entry at index 999999/m);

    const page = await getJson<{ entries: Entry[]; next: number | null }>(c.url(leader), "/v1/records?subject=cli-list");
    expect(page.entries.map((x) => x.index)).toEqual(acks.map((a) => a.index));
    expect(ok(await cli(["list", "--subject", "cli-list"]))).toBe(page.entries.map((x) => `${line(x)}\n`).join(""));
    expect(JSON.parse(ok(await cli(["list", "--subject", "cli-list", "-o", "json"])))).toEqual(page);
    // A page by index; where the next one starts goes to stderr in text.
    const byIndex = await cli(["list", "--from", "1", "--limit", "2"]);
    expect(byIndex.code).toBe(0);
    expect(byIndex.stdout).toBe(`${line(await entryAt(1))}\n${line(await entryAt(2))}\n`);
    expect(byIndex.stderr).toMatch(/^more: --from 3$/m);
  }));

  test("history: every record verified, complete up to a signed checkpoint", guarded("history", async () => {
    await append("cli-history", 1);
    await append("cli-history", 2);
    await waitQuiescent(c.url(leader));
    const h = await getJson<{ head: string; checkpoint: { size: number; index: number; signer: string }; records: Array<{ version: number; subject_head: string; entry: Entry }> }>(c.url(leader), "/v1/subjects/cli-history/history");
    expect(h.records.length).toBe(2);
    const text = ok(await cli(["history", "cli-history"]));
    expect(text).toBe([
      ...h.records.map((r) => `version=${r.version} subject_head=${r.subject_head} ${line(r.entry)}`),
      `verified: 2 record(s), head ${h.head}; complete up to entry ${h.checkpoint.size} (subjects_root signed by ${h.checkpoint.signer} in checkpoint ${h.checkpoint.index})`,
      "",
    ].join("\n"));
    expect(JSON.parse(ok(await cli(["history", "cli-history", "-o", "json"])))).toEqual(h);
    const none = await cli(["history", "no-such-subject"]);
    expect({ code: none.code, stderr: none.stderr }).toMatchObject({ code: 2, stderr: expect.stringMatching(/404 not_found/) });
  }));

  test("proofs, checkpoint, receipt, members: verified here, the server's JSON as is", guarded("proofs", async () => {
    const ack = await append("cli-proof", 1);
    const st = await waitQuiescent(c.url(leader));
    const cp = await getJson<{ index: number; size: number; root: string; head: string; term: number; signer: string; ts: string; subjects_root: string }>(c.url(leader), "/v1/checkpoints/latest");
    expect(ok(await cli(["checkpoint"]))).toBe(`index=${cp.index} size=${cp.size} root=${cp.root} head=${cp.head} term=${cp.term} signer=${cp.signer} ts=${cp.ts} subjects_root=${cp.subjects_root}\n`);
    expect(JSON.parse(ok(await cli(["checkpoint", "-o", "json"])))).toEqual(cp);

    const inc = await getJson<{ size: number; root: string; path: string[]; checkpoint?: { index: number; signer: string } }>(c.url(leader), `/v1/proofs/inclusion/${ack.index}`);
    expect(inc.checkpoint).toBeDefined();
    expect(ok(await cli(["proof", "inclusion", String(ack.index)]))).toBe(
      `verified: entry ${ack.index} is in root(${inc.size})=${inc.root} (${inc.path.length} path hashes), signed by ${inc.checkpoint!.signer} (checkpoint ${inc.checkpoint!.index})\n`);
    expect(JSON.parse(ok(await cli(["proof", "inclusion", String(ack.index), "-o", "json"])))).toEqual(inc);
    // A size no checkpoint signs (the checkpoint's own index is one past the size it signs).
    const unsigned = await getJson<{ root: string; path: string[] }>(c.url(leader), `/v1/proofs/inclusion/${ack.index}?size=${st.commit_index}`);
    expect(ok(await cli(["proof", "inclusion", String(ack.index), "--size", String(st.commit_index)]))).toBe(
      `verified: entry ${ack.index} is in root(${st.commit_index})=${unsigned.root} (${unsigned.path.length} path hashes); no checkpoint signs root(${st.commit_index})\n`);
    const cons = await getJson<{ root_from: string; root_to: string; path: string[]; checkpoint?: { index: number; signer: string } }>(c.url(leader), `/v1/proofs/consistency?from=2&to=${cp.size}`);
    expect(ok(await cli(["proof", "consistency", "2", String(cp.size)]))).toBe(
      `verified: root(2)=${cons.root_from} is a prefix of root(${cp.size})=${cons.root_to} (${cons.path.length} path hashes), signed by ${cp.signer} (checkpoint ${cp.index})\n`);
    expect(JSON.parse(ok(await cli(["proof", "consistency", "2", String(cp.size), "-o", "json"])))).toEqual(cons);
    const backwards = await cli(["proof", "consistency", "5", "2"]);
    expect({ code: backwards.code, stderr: backwards.stderr }).toMatchObject({ code: 2, stderr: expect.stringMatching(/400 bad_request: from 5 is larger than to 2/) });

    // receipt: the bytes as served, in either output; a 4xx is exit 2 (the common exit codes).
    const served = await http(c.url(leader), "GET", `/v1/receipts/${ack.index}`);
    expect(served.status).toBe(200);
    expect(ok(await cli(["receipt", String(ack.index)]))).toBe(`${served.text}\n`);
    expect(ok(await cli(["receipt", String(ack.index), "-o", "json"]))).toBe(`${served.text}\n`);
    expect((await cli(["receipt", "999999"])).code).toBe(2);

    const config = await getJson<{ voters: Array<{ id: string; address: string; public_key: string }>; learners: unknown[] }>(c.url(leader), "/v1/admin/config");
    expect(config.voters.map((m) => m.id)).toEqual(["n1", "n2", "n3"]);
    expect(ok(await cli(["members"]))).toBe(config.voters.map((m) => `id=${m.id} role=voter address=${m.address} public_key=${m.public_key}\n`).join(""));
    expect(JSON.parse(ok(await cli(["members", "-o", "json"])))).toEqual(config);
  }));

  test("tail: one line per entry, the frames as is in json, new entries by default", guarded("tail", async () => {
    const st = await waitQuiescent(c.url(leader));
    const count = Math.min(st.commit_index, 8);
    const entries = await Promise.all(Array.from({ length: count }, (_, i) => entryAt(i + 1)));
    expect(ok(await cli(["tail", "--from", "1", "--count", String(count)]))).toBe(entries.map((e) => `${line(e)}\n`).join(""));
    const frames = ok(await cli(["tail", "--from", "3", "--count", "3", "-o", "json"])).trimEnd().split("\n").map((l) => JSON.parse(l) as unknown);
    expect(frames).toEqual(entries.slice(2, 5).map((entry) => ({ type: "entry", entry })));

    // Without --from it follows what commits after it started: keep appending until it has printed one.
    const following = cli(["tail", "--count", "1"]);
    let exited = false;
    void following.then(() => {
      exited = true;
    });
    for (let n = 0; !exited && n < 40; n++) {
      await append("cli-tail", n);
      await new Promise((r) => setTimeout(r, 250));
    }
    const first = /^index=(\d+) /.exec(ok(await following));
    expect(Number(first?.[1])).toBeGreaterThan(st.commit_index);
  }));

  test("status: a row per endpoint (a dead one says so); exit 3 only when none answers", guarded("status", async () => {
    const dead = `http://127.0.0.1:${await freePortRange(1)}`;
    const rows = ok(await cli(["status", "--endpoints", [dead, ...c.urls()].join(",")])).trimEnd().split("\n");
    expect(rows.length).toBe(4);
    expect(rows[0]).toMatch(new RegExp(`^endpoint=${dead} error="unavailable: fetch failed: .*ECONNREFUSED.*"$`));
    const statuses = await c.statuses();
    for (const [i, id] of c.ids.entries()) {
      expect(rows[i + 1]).toMatch(new RegExp(`^endpoint=${c.url(id)} node=${id} role=(leader|follower) term=\\d+ leader=${leader} commit_index=\\d+ last_applied=\\d+ head=[0-9a-f]{64}$`));
    }
    expect(rows.filter((r) => r.includes(" role=leader ")).length).toBe(1);
    expect(statuses.length).toBe(3);
    const doc = JSON.parse(ok(await cli(["status", "-o", "json", "--endpoints", [dead, c.url(leader)].join(",")]))) as Array<{ endpoint: string; status?: { node_id: string }; error?: string }>;
    expect(doc).toEqual([{ endpoint: dead, error: expect.stringMatching(/^unavailable: /) }, { endpoint: c.url(leader), status: expect.objectContaining({ node_id: leader, role: "leader" }) }]);
    const none = await cli(["status", "--endpoints", dead]);
    expect({ code: none.code }).toEqual({ code: 3 });
    expect(none.stdout).toMatch(new RegExp(`^endpoint=${dead} error=`));
  }));

  test("--endpoints: a dead one first is skipped; only dead ones, or 503s after retries, is exit 3", guarded("endpoints", async () => {
    const dead = `http://127.0.0.1:${await freePortRange(1)}`;
    const e = await entryAt(1);
    expect(ok(await cli(["get", "1", "--endpoints", `${dead},${c.url("n3")}`]))).toBe(`${line(e)}\n`);
    expect(ok(await cli(["get", "1"], { env: { RESONETICS_ENDPOINTS: `${dead},${c.url("n2")}` } }))).toBe(`${line(e)}\n`);
    const gone = await cli(["get", "1", "--endpoints", dead]);
    expect({ code: gone.code, stdout: gone.stdout }).toEqual({ code: 3, stdout: "" });
    expect(gone.stderr).toMatch(/^resonetics get: unavailable: fetch failed: .*ECONNREFUSED/m);
    // A node that answers, but only 503 (no quorum): retried, then exit 3 with its error.
    let asked = 0;
    const busy = http1.createServer((_req, res) => {
      asked++;
      res.writeHead(503, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "unavailable", message: "no leader known" }));
    });
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    try {
      const refused = await cli(["get", "1", "--endpoints", `http://127.0.0.1:${(busy.address() as net.AddressInfo).port}`]);
      expect({ code: refused.code, stdout: refused.stdout, asked }).toEqual({ code: 3, stdout: "", asked: 3 });
      expect(refused.stderr).toMatch(/^resonetics get: 503 unavailable: no leader known$/m);
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  }));
});

describe("verification failures: exit 1, naming what failed", () => {
  test("get, proof and history through a node that changes what it serves", guarded("lying node", async () => {
    const ack = await append("cli-lie", 1);
    await waitQuiescent(c.url(leader));
    // A stand-in node: the real answers, with one base64 character of a payload or one proof hash changed.
    const liar = http1.createServer((req, res) => {
      void (async () => {
        const real = await http(c.url(leader), "GET", req.url ?? "/");
        const body = real.json as Record<string, unknown>;
        if (typeof body.payload_b64 === "string") {
          const b = body.payload_b64;
          const at = b.length >> 1;
          body.payload_b64 = `${b.slice(0, at)}${b[at] === "A" ? "B" : "A"}${b.slice(at + 1)}`;
        }
        if (Array.isArray(body.path) && body.path.length > 0) body.path[0] = (body.path[0] as string).replace(/^./, (ch) => (ch === "0" ? "1" : "0"));
        // A subject's history: the first record's subject head (a record left out would change it).
        const first = (body.records as Array<{ subject_head: string }> | undefined)?.[0];
        if (first !== undefined) first.subject_head = first.subject_head.replace(/^./, (ch) => (ch === "0" ? "1" : "0"));
        res.writeHead(real.status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      })();
    });
    await new Promise<void>((r) => liar.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(liar.address() as net.AddressInfo).port}`;
    try {
      const got = await cli(["get", String(ack.index), "--endpoints", url]);
      expect({ code: got.code, stdout: got.stdout }).toEqual({ code: 1, stdout: "" });
      expect(got.stderr).toMatch(new RegExp(`^resonetics get: verification_failed: entry ${ack.index}: hash does not match its contents`, "m"));
      const proof = await cli(["proof", "inclusion", String(ack.index), "--endpoints", url]);
      expect({ code: proof.code, stdout: proof.stdout }).toEqual({ code: 1, stdout: "" });
      expect(proof.stderr).toMatch(/verification_failed: /);
      const history = await cli(["history", "cli-lie", "--endpoints", url]);
      expect({ code: history.code, stdout: history.stdout }).toEqual({ code: 1, stdout: "" });
      expect(history.stderr).toMatch(new RegExp(`^resonetics history: verification_failed: history of "cli-lie": version 1 \\(entry ${ack.index}\\): subject_head [0-9a-f]{64}, but the chain gives`, "m"));
    } finally {
      await new Promise<void>((r) => liar.close(() => r()));
    }
  }));

  test("tail stops with exit 1 at the frame a man in the middle changed", guarded("tail mitm", async () => {
    const st = await waitQuiescent(c.url(leader));
    // Frames from entry 2 on; the 4th (entry 5) has one bit changed in the middle of its payload.
    const at = 3;
    const proxy = await MitmProxy.start({ target: c.port(leader), label: "stream", mode: "ws", tamper: "change", at, direction: "listener-to-dialer" });
    const r = await cli(["tail", "--from", "2", "--count", String(st.commit_index), "--endpoints", `http://127.0.0.1:${proxy.port}`]);
    expect(proxy.stats.tampered).toBe(1);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^resonetics tail: entry ${2 + at} does not verify: `, "m"));
    // Every entry before it was printed, verified; nothing after it.
    const before = await Promise.all([2, 3, 4].map(entryAt));
    expect(r.stdout).toBe(before.map((e) => `${line(e)}\n`).join(""));
  }));
});

describe("fail-over (last: they stop nodes)", () => {
  test("tail resumes on the next endpoint when its node shuts down (close 1001)", guarded("tail 1001", async () => {
    const [follower, other] = c.ids.filter((id) => id !== leader);
    // A pass-through proxy in front of the follower, only to see when tail has subscribed.
    const seen = await MitmProxy.start({ target: c.port(follower), label: "stream", mode: "ws", tamper: "change", at: Number.MAX_SAFE_INTEGER, direction: "listener-to-dialer" });
    const tailing = cli(["tail", "--count", "2", "--endpoints", `http://127.0.0.1:${seen.port},${c.url(other)}`]);
    await pollUntil("tail subscribed through the proxy", async () => (seen.stats.upgrades >= 1 ? true : undefined), 200, 50);
    await c.stopNode(follower);
    const ack = await append("cli-resume", 1);
    const lines = ok(await tailing).trimEnd().split("\n");
    expect(lines[0]).toBe(line(await entryAt(ack.index)));
    expect(lines[1]).toMatch(new RegExp(`^index=${ack.index + 1} term=\\d+ kind=checkpoint `));
    await c.startNode(follower);
  }));


  test("append still succeeds through the others after kill -9 of the leader, listed first", guarded("fail-over", async () => {
    const old = leader;
    const endpoints = [c.url(old), ...c.ids.filter((id) => id !== old).map((id) => c.url(id))].join(",");
    await c.kill9(old);
    const ack = JSON.parse(ok(await cli(["append", "--type", "policy.set", "--subject", "cli-failover", "--data", '{"name":"after-kill","value":1}', "--token-file", tokenFile, "--endpoints", endpoints, "-o", "json"]))) as { index: number; hash: string };
    leader = await c.leader();
    expect(leader).not.toBe(old);
    const got = ok(await cli(["get", String(ack.index), "--endpoints", endpoints, "-o", "json"]));
    expect(JSON.parse(got)).toMatchObject({ index: ack.index, hash: ack.hash });
    const rows = ok(await cli(["status", "--endpoints", endpoints])).trimEnd().split("\n");
    expect(rows[0]).toMatch(new RegExp(`^endpoint=${c.url(old)} error="unavailable: `));
    expect(rows.slice(1).every((row) => row.includes(` leader=${leader} `))).toBe(true);
  }));
});

/** A stand-in node on 127.0.0.1: GETs relayed to the leader, changed by `edit`; a WebSocket upgrade answered `upgradeStatus`. */
async function standIn(edit: (url: string, body: unknown) => unknown, upgradeStatus = 401): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http1.createServer((req, res) => {
    void (async () => {
      const real = await http(c.url(leader), "GET", req.url ?? "/");
      res.writeHead(real.status, { "content-type": "application/json" });
      res.end(JSON.stringify(edit(req.url ?? "/", real.json)));
    })();
  });
  server.on("upgrade", (_req, socket: net.Socket) => {
    const body = JSON.stringify({ error: "unauthorized", message: "a client certificate signed by the configured CA is required: none was presented" });
    socket.end(`HTTP/1.1 ${upgradeStatus} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

describe("refusals and gaps (review fixes)", () => {
  test("receipt passes a 5xx to the next endpoint, like every client command", guarded("receipt 5xx", async () => {
    const ack = await append("cli-receipt-5xx", 1);
    const busy = http1.createServer((_req, res) => {
      res.writeHead(503, { "content-type": "application/json", "retry-after": "1" });
      res.end(JSON.stringify({ error: "unavailable", message: "no leader known" }));
    });
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    try {
      const r = await cli(["receipt", String(ack.index), "--wait-ms", "10000", "--endpoints", `http://127.0.0.1:${(busy.address() as net.AddressInfo).port},${c.url(leader)}`]);
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as { entry: { index: number; hash: string } }).entry).toMatchObject({ index: ack.index, hash: ack.hash });
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  }));

  test("tail exits 2 at once when the stream is refused with a 4xx (no reconnect loop, no exit 3)", guarded("tail refused", async () => {
    const node = await standIn((_url, body) => body);
    try {
      const r = await cli(["tail", "--from", "1", "--endpoints", node.url]);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: "" });
      // Before, it reconnected ten times and ended "no endpoint streams" with exit 3.
      expect(r.stderr).toMatch(/^resonetics tail: .* refused the stream from 1: answered 401$/m);
    } finally {
      await node.close();
    }
  }));

  test("list without --subject refuses a page that leaves an index out (exit 1)", guarded("list gap", async () => {
    await append("cli-list-gap", 1);
    const node = await standIn((url, body) => {
      if (!url.startsWith("/v1/records?")) return body;
      const page = body as { entries: unknown[] };
      return { ...page, entries: page.entries.filter((_e, i) => i !== 2) };
    });
    try {
      const r = await cli(["list", "--from", "1", "--limit", "5", "--endpoints", node.url]);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 1, stdout: "" });
      expect(r.stderr).toMatch(/^resonetics list: verification_failed: entry 4: listed after entry 2, leaving out 3$/m);
    } finally {
      await node.close();
    }
  }));
});

describe("--trust and --state-file: the signer keys and the last verified checkpoint are the auditor's, not the node's", () => {
  test("checkpoint pins under the trust file; a trust file with another key for the signers fails with exit 1", guarded("trust", async () => {
    await append("cli-trust", 1);
    await waitQuiescent(c.url(leader));
    const dir = makeTempDir();
    const exported = await runCli(["trust", "export", c.dir(leader)], CLI_TIMEOUT_MS);
    expect(exported.code).toBe(0);
    const trustFile = path.join(dir, "trust.json");
    fs.writeFileSync(trustFile, exported.stdout);
    const stateFile = path.join(dir, "state.json");
    const pinned = ok(await cli(["checkpoint", "--trust", trustFile, "--state-file", stateFile, "-o", "json"]));
    const cp = JSON.parse(pinned) as { cluster: string; size: number; root: string };
    expect(fs.readFileSync(stateFile, "utf8")).toContain(cp.root);

    // The same trust file with every genesis member's key replaced: the node's signatures are not the pinned keys'.
    const forged = JSON.parse(exported.stdout) as { genesis_config: { voters: Array<{ public_key: string }> } };
    for (const v of forged.genesis_config.voters) v.public_key = "11".repeat(32);
    const forgedFile = path.join(dir, "forged-trust.json");
    fs.writeFileSync(forgedFile, JSON.stringify(forged));
    const refused = await cli(["checkpoint", "--trust", forgedFile]);
    expect({ code: refused.code, stdout: refused.stdout }).toEqual({ code: 1, stdout: "" });
    expect(refused.stderr).toMatch(/^resonetics checkpoint: (untrusted_signer|trust_mismatch): /m);
  }));
});
