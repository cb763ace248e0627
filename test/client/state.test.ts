// The client's state file (src/client/state.ts) and the checks made against the checkpoint it pins
// (src/client/checkpoint-guard.ts), issue 13. The file: one entry per cluster, written atomically
// (0600, no temp file left, a failed write leaves the old file), a corrupt or unreadable file a
// typed error that leaves the file as it is, a bounded number of clusters. The checks, against the
// real API in this process: first use pins checkpoint and genesis, a newer checkpoint is pinned only
// after its consistency proof, and a rollback, a one-byte change of a proof, a real fork (a copy of
// the data dir that went its own way), a renamed signer and a tampered pin each fail with their code.
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { LedgerClient } from "../../src/client/client";
import { ClientError, ForkError, RollbackError, StateFileError } from "../../src/client/errors";
import { ClientState, ClusterState, CLUSTERS_MAX } from "../../src/client/state";
import { signCheckpoint } from "../../src/ledger/checkpoint";
import { generateKeyPair } from "../../src/ledger/keys";
import { toHex } from "../../src/ledger/bytes";
import { makeTrustFile } from "../../src/ledger/trust";
import { InProcessApp, startInProcessApp } from "../support/in-process-app";
import { cleanupAll, makeTempDir as tempDir } from "../support/server";

jest.setTimeout(60_000);

afterAll(async () => {
  await cleanupAll();
});

// ---------------------------------------------------------------- the file

const kp = generateKeyPair(new Uint8Array(32).fill(7));
const member = { id: "n1", address: "127.0.0.1:1", public_key: toHex(kp.publicKey) };

/** A well-formed cluster entry with a checkpoint really signed by n1 (the file checks shape, the guard signatures). */
function entryOf(cluster: string, size: number): ClusterState {
  const cp = signCheckpoint({ v: 1, cluster, size, root: "ab".repeat(32), head: "cd".repeat(32), term: 1, signer: "n1", ts: "2026-01-01T00:00:00.000Z" }, kp.secretKey);
  return {
    anchor: "first_use", genesis_config: { voters: [member], learners: [] }, endorsed: { index: 1, voters: [member], learners: [] },
    checkpoint: { ...cp, index: size + 1 }, pinned_at: "2026-01-01T00:00:01.000Z",
  };
}

const codeOf = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    if (err instanceof StateFileError) return err.code;
    throw err;
  }
  return "no error";
};

describe("the state file", () => {
  test("absent: an empty state; a put writes it 0600 through a temp file that does not stay; a new reader sees it", () => {
    const dir = tempDir();
    const file = path.join(dir, "state.json");
    const s = new ClientState(file);
    expect(s.list()).toEqual([]);
    expect(fs.existsSync(file)).toBe(false);
    s.put("c1", entryOf("c1", 5));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir)).toEqual(["state.json"]);
    expect(new ClientState(file).get("c1")).toEqual(entryOf("c1", 5));
    const onDisk = JSON.parse(fs.readFileSync(file, "utf8")) as { v: number; clusters: Record<string, unknown> };
    expect(onDisk.v).toBe(1);
    expect(Object.keys(onDisk.clusters)).toEqual(["c1"]);
  });

  test("one entry per cluster: a writer keeps what another wrote for other clusters, and a changed entry of its own is a conflict", () => {
    const file = path.join(tempDir(), "state.json");
    const a = new ClientState(file);
    const b = new ClientState(file);
    a.put("c1", entryOf("c1", 5));
    b.put("c2", entryOf("c2", 9)); // b never read c1: it keeps a's entry
    expect(new ClientState(file).list().sort()).toEqual(["c1", "c2"]);
    a.put("c1", entryOf("c1", 6));
    // b read c1 at size 5 (as its put re-read the file); a moved it on: b must not undo a's pin.
    expect(codeOf(() => b.put("c1", entryOf("c1", 7)))).toBe("state_file_conflict");
    expect(new ClientState(file).get("c1")?.checkpoint.size).toBe(6);
  });

  const good = JSON.stringify({ v: 1, clusters: { c1: entryOf("c1", 5) } });
  const corrupt: Array<[string, string]> = [
    ["not JSON", "{not json"],
    ["cut short mid-write", good.slice(0, good.length - 20)],
    ["another version", good.replace('"v":1', '"v":2')],
    ["an unexpected top-level key", good.replace('"v":1', '"v":1,"extra":true')],
    ["a checkpoint whose index is not size + 1", good.replace('"index":6', '"index":7')],
    ["a checkpoint signature that is not hex", good.replace(/"sig":"[0-9a-f]{4}/, '"sig":"zzzz')],
    ["an anchor of no known kind", good.replace('"first_use"', '"guessed"')],
    ["a configuration key that is not hex", good.replace(member.public_key, "xy".repeat(32))],
  ];
  test.each(corrupt)("%s: state_file_corrupt, and the file is left as it is", (_what, text) => {
    const file = path.join(tempDir(), "state.json");
    fs.writeFileSync(file, text);
    expect(codeOf(() => new ClientState(file))).toBe("state_file_corrupt");
    expect(fs.readFileSync(file, "utf8")).toBe(text);
  });

  test("a directory where the file should be: state_file_unreadable (never a fresh start)", () => {
    const file = path.join(tempDir(), "state.json");
    fs.mkdirSync(file);
    expect(codeOf(() => new ClientState(file))).toBe("state_file_unreadable");
  });

  test("a write that fails at the rename leaves the previous file whole and no temp file", () => {
    const dir = tempDir();
    const file = path.join(dir, "state.json");
    const s = new ClientState(file);
    s.put("c1", entryOf("c1", 5));
    const before = fs.readFileSync(file, "utf8");
    // The module object itself (state.ts reads its functions through it), not this file's namespace copy.
    const spy = jest.spyOn(jest.requireActual<typeof fs>("node:fs"), "renameSync").mockImplementation(() => {
      throw Object.assign(new Error("EIO: simulated"), { code: "EIO" });
    });
    try {
      expect(codeOf(() => s.put("c1", entryOf("c1", 6)))).toBe("state_file_unwritable");
    } finally {
      spy.mockRestore();
    }
    expect(fs.readFileSync(file, "utf8")).toBe(before);
    expect(fs.readdirSync(dir)).toEqual(["state.json"]);
    expect(s.get("c1")?.checkpoint.size).toBe(5);
  });

  test(`at most ${CLUSTERS_MAX} clusters: one more is state_file_full, and none is evicted`, () => {
    const file = path.join(tempDir(), "state.json");
    const s = new ClientState(file);
    for (let i = 0; i < CLUSTERS_MAX; i++) s.put(`c${i}`, entryOf(`c${i}`, 5));
    expect(codeOf(() => s.put("one-more", entryOf("one-more", 5)))).toBe("state_file_full");
    const again = new ClientState(file);
    expect(again.list().length).toBe(CLUSTERS_MAX);
    again.put("c0", entryOf("c0", 6)); // an entry already held still moves on
    expect(new ClientState(file).get("c0")?.checkpoint.size).toBe(6);
  });
});

// ---------------------------------------------------------------- the checks, against the API in this process

interface Proxy {
  readonly url: string;
  /** Paths asked through the proxy, in order. */
  readonly seen: string[];
  close(): Promise<void>;
}

/** A GET-only proxy on 127.0.0.1 to `target()`, passing each answer body through `rewrite`. */
async function proxy(target: () => string, rewrite: (url: string, body: string) => string = (_u, b) => b): Promise<Proxy> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    const url = req.url ?? "/";
    seen.push(url);
    void (async () => {
      const upstream = await fetch(target() + url, { signal: AbortSignal.timeout(10_000) });
      const body = rewrite(url, await upstream.text());
      res.writeHead(upstream.status, { "Content-Type": upstream.headers.get("content-type") ?? "application/json" });
      res.end(body);
    })().catch((err: unknown) => {
      res.writeHead(502, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: "proxy", message: String(err) }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`, seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

const rec = (i: number) => ({ type: "policy.set", subject: "pin", data: { name: "n", value: i } });

/** Appends n records and waits (bounded) until a checkpoint covers the last; its index. */
async function appendCovered(app: InProcessApp, n: number): Promise<number> {
  const writer = new LedgerClient({ urls: [app.baseUrl], token: app.adminToken });
  let last = 0;
  for (let i = 0; i < n; i++) last = (await writer.append(rec(i))).index;
  const covered = (): boolean => (app.node.reader.latestCheckpoint()?.size ?? 0) >= last;
  if (!covered()) {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`no checkpoint covered index ${last} within 10 s (data dir ${app.dir})`));
      }, 10_000);
      const off = app.node.onApplied(() => {
        if (!covered()) return;
        clearTimeout(timer);
        off();
        resolve();
      });
    });
  }
  return last;
}

const pinOf = (file: string, cluster: string): ClusterState | undefined => new ClientState(file).get(cluster);
/** Every entry a checkpoint, so that each record is covered as soon as it commits. */
const NODE = { checkpointEvery: 1 };

describe("checks against the pinned checkpoint (in-process API)", () => {
  let app: InProcessApp;
  beforeAll(async () => {
    app = await startInProcessApp({ node: NODE });
    await appendCovered(app, 3);
  });
  afterAll(async () => {
    await app?.close();
  });

  test("first use pins the checkpoint and the genesis; a newer one only after its consistency proof; the next client goes on from the file", async () => {
    const file = path.join(tempDir(), "state.json");
    const p = await proxy(() => app.baseUrl);
    try {
      const c = new LedgerClient({ urls: [p.url], stateFile: file });
      const first = await c.checkpoint();
      const s1 = pinOf(file, app.clusterId);
      expect(s1?.anchor).toBe("first_use");
      expect(s1?.genesis_config).toEqual({ voters: app.node.config().voters, learners: app.node.config().learners });
      expect(s1?.checkpoint).toEqual(first);
      expect(p.seen).toContain("/v1/records/1");
      expect(p.seen).toContain(`/v1/proofs/inclusion/1?size=${first.size}`);
      const last = await appendCovered(app, 2);
      const second = await c.checkpoint();
      expect(second.size).toBeGreaterThanOrEqual(last);
      expect(p.seen).toContain(`/v1/proofs/consistency?from=${first.size}&to=${second.size}`);
      expect(pinOf(file, app.clusterId)?.checkpoint).toEqual(second);

      // A new client object (a restarted program) reads the pin from the file, and proves reads against it.
      const next = new LedgerClient({ urls: [p.url], stateFile: file });
      p.seen.length = 0;
      const e = await next.entry(last);
      expect(e.index).toBe(last);
      const pin = next.pinnedCheckpoint();
      expect(pin?.size).toBeGreaterThanOrEqual(second.size);
      expect(p.seen).toContain(`/v1/proofs/inclusion/${last}?size=${pin?.size}`);
      expect(p.seen).not.toContain("/v1/records/1"); // the genesis was checked on first use, not again
    } finally {
      await p.close();
    }
  });

  test("a node that serves a checkpoint older than the pin: RollbackError naming both, and the pin stays", async () => {
    const file = path.join(tempDir(), "state.json");
    const old = await new LedgerClient({ urls: [app.baseUrl] }).request("GET", "/v1/checkpoints/latest");
    await appendCovered(app, 2);
    const c = new LedgerClient({ urls: [app.baseUrl], stateFile: file });
    const pinned = await c.checkpoint();
    const p = await proxy(() => app.baseUrl, (url, body) => (url === "/v1/checkpoints/latest" ? JSON.stringify(old) : body));
    try {
      const err = await new LedgerClient({ urls: [p.url], stateFile: file }).entry(2).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(RollbackError);
      const r = err as RollbackError;
      const served = old as { size: number; root: string; index: number };
      expect(r.code).toBe("rollback");
      expect(r.pinned).toEqual({ cluster: app.clusterId, size: pinned.size, root: pinned.root, index: pinned.index });
      expect(r.served).toEqual({ cluster: app.clusterId, size: served.size, root: served.root, index: served.index });
      expect(r.message).toContain(pinned.root);
      expect(r.message).toContain(served.root);
      expect(pinOf(file, app.clusterId)?.checkpoint).toEqual(pinned);
    } finally {
      await p.close();
    }
  });

  test("one byte of the consistency proof changed: ForkError, and nothing new is pinned", async () => {
    const file = path.join(tempDir(), "state.json");
    const pinned = await new LedgerClient({ urls: [app.baseUrl], stateFile: file }).checkpoint();
    await appendCovered(app, 2);
    const flip = (body: string): string => body.replace(/"path":\["([0-9a-f])/, (_m, d: string) => `"path":["${d === "0" ? "1" : "0"}`);
    const p = await proxy(() => app.baseUrl, (url, body) => (url.startsWith("/v1/proofs/consistency") ? flip(body) : body));
    try {
      const err = await new LedgerClient({ urls: [p.url], stateFile: file }).checkpoint().then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(ForkError);
      const f = err as ForkError;
      expect(f.code).toBe("fork");
      expect(f.pinned.size).toBe(pinned.size);
      expect(f.served.size).toBeGreaterThan(pinned.size);
      expect(f.reason).toMatch(/consistency proof/);
      expect(pinOf(file, app.clusterId)?.checkpoint).toEqual(pinned);
    } finally {
      await p.close();
    }
  });

  test("an inclusion proof with a changed byte, or a root beyond the pin, is refused", async () => {
    const file = path.join(tempDir(), "state.json");
    const c = new LedgerClient({ urls: [app.baseUrl], stateFile: file });
    const pin = await c.checkpoint();
    const flip = (body: string): string => body.replace(/"path":\["([0-9a-f])/, (_m, d: string) => `"path":["${d === "0" ? "1" : "0"}`);
    const p = await proxy(() => app.baseUrl, (url, body) => (url.startsWith("/v1/proofs/inclusion") ? flip(body) : body));
    try {
      await expect(new LedgerClient({ urls: [p.url], stateFile: file }).entry(2)).rejects.toMatchObject({ code: "verification_failed" });
    } finally {
      await p.close();
    }
    // The checkpoint entry after the pinned size is committed, but no signed checkpoint covers root(size + 1).
    await expect(c.inclusion(2, pin.size + 1)).rejects.toMatchObject({ code: "not_signed" });
    const proof = await c.inclusion(2, pin.size - 1); // an older root: bound to the pin by a consistency proof
    expect(proof.size).toBe(pin.size - 1);
  });

  test("a renamed signer needs a receipt that carries its key: untrusted_signer", async () => {
    const p = await proxy(() => app.baseUrl, (url, body) => (url === "/v1/checkpoints/latest" ? body.replace(/"signer":"[^"]*"/, '"signer":"n9"') : body));
    try {
      const err = await new LedgerClient({ urls: [p.url], stateFile: path.join(tempDir(), "state.json") }).checkpoint().then(() => null, (e: unknown) => e);
      expect(err).toMatchObject({ code: "untrusted_signer" });
      expect(p.seen.some((u) => u.startsWith("/v1/receipts/"))).toBe(true);
    } finally {
      await p.close();
    }
  });

  test("a pin changed in the file is caught when it is first relied on: state_file_corrupt", async () => {
    const file = path.join(tempDir(), "state.json");
    await new LedgerClient({ urls: [app.baseUrl], stateFile: file }).checkpoint();
    const text = fs.readFileSync(file, "utf8");
    fs.writeFileSync(file, text.replace(/"root": "([0-9a-f])/, (_m, d: string) => `"root": "${d === "0" ? "1" : "0"}`));
    await expect(new LedgerClient({ urls: [app.baseUrl], stateFile: file }).entry(2)).rejects.toMatchObject({ code: "state_file_corrupt" });
  });

  test("a trust file pins the genesis: anchored when it agrees; another genesis is trust_mismatch, another cluster cluster_mismatch", async () => {
    const trust = makeTrustFile(app.clusterId, app.node.config());
    const file = path.join(tempDir(), "state.json");
    // A state taken on first use becomes anchored once a trust file agrees with it.
    await new LedgerClient({ urls: [app.baseUrl], stateFile: file }).checkpoint();
    await new LedgerClient({ urls: [app.baseUrl], stateFile: file, trust }).entry(2);
    expect(pinOf(file, app.clusterId)?.anchor).toBe("trust_file");
    // Without a state file, the pins of a trusted client last as long as the object.
    const mem = new LedgerClient({ urls: [app.baseUrl], trust });
    expect((await mem.checkpoint()).cluster).toBe(app.clusterId);

    const other = generateKeyPair(new Uint8Array(32).fill(9));
    const forged = makeTrustFile(app.clusterId, { v: 1, voters: [{ ...app.node.config().voters[0], public_key: toHex(other.publicKey) }], learners: [] });
    await expect(new LedgerClient({ urls: [app.baseUrl], trust: forged }).checkpoint()).rejects.toMatchObject({ code: "trust_mismatch" });
    const elsewhere = makeTrustFile("another-cluster", app.node.config());
    await expect(new LedgerClient({ urls: [app.baseUrl], trust: elsewhere }).checkpoint()).rejects.toMatchObject({ code: "cluster_mismatch" });
  });

  test("a client with neither state file nor trust file pins nothing, as before", async () => {
    const c = new LedgerClient({ urls: [app.baseUrl] });
    expect((await c.entry(2)).index).toBe(2);
    expect(c.pinnedCheckpoint()).toBeUndefined();
    await expect(c.checkpoint()).rejects.toBeInstanceOf(ClientError);
    await expect(c.checkpoint()).rejects.toMatchObject({ code: "no_state" });
  });
});

describe("a node that has signed no checkpoint", () => {
  test("before the first pin: reads pass unsigned; after it, a copy from before any checkpoint is a RollbackError with served null", async () => {
    const dirA = tempDir();
    const dirB = tempDir();
    const bare = await startInProcessApp({ dir: dirA }); // the test default: no checkpoint for an hour
    const file = path.join(tempDir(), "state.json");
    const c = new LedgerClient({ urls: [bare.baseUrl], stateFile: file });
    expect((await c.entry(1)).kind).toBe("config");
    expect(c.pinnedCheckpoint()).toBeUndefined();
    await expect(c.checkpoint()).rejects.toMatchObject({ status: 404, code: "not_found" });
    await expect(c.inclusion(1, 1)).rejects.toMatchObject({ code: "not_signed" });
    await bare.close();
    fs.rmSync(dirB, { recursive: true, force: true });
    fs.cpSync(dirA, dirB, { recursive: true });

    const signing = await startInProcessApp({ dir: dirA, node: NODE });
    const pinned = await (async () => {
      try {
        await appendCovered(signing, 1);
        return await new LedgerClient({ urls: [signing.baseUrl], stateFile: file }).checkpoint();
      } finally {
        await signing.close();
      }
    })();
    const copy = await startInProcessApp({ dir: dirB });
    try {
      const err = await new LedgerClient({ urls: [copy.baseUrl], stateFile: file }).entry(1).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(RollbackError);
      expect((err as RollbackError).served).toBeNull();
      expect((err as RollbackError).pinned.root).toBe(pinned.root);
      expect((err as RollbackError).message).toContain("no checkpoint at all");
    } finally {
      await copy.close();
    }
  });
});

describe("a copy of the data dir that went its own way (two histories under one cluster id)", () => {
  test("a client that pinned one history refuses the other, at the same size and at a larger one: ForkError", async () => {
    const dirA = tempDir();
    const dirB = tempDir();
    const first = await startInProcessApp({ dir: dirA, node: NODE });
    await appendCovered(first, 2);
    await first.close();
    fs.rmSync(dirB, { recursive: true, force: true });
    fs.cpSync(dirA, dirB, { recursive: true });
    const a = await startInProcessApp({ dir: dirA, node: NODE });
    const b = await startInProcessApp({ dir: dirB, node: NODE });
    try {
      expect(b.clusterId).toBe(a.clusterId);
      await appendCovered(a, 1);
      await appendCovered(b, 1); // the same shape of log after the copy, other records (their ts differ)
      const file = path.join(tempDir(), "state.json");
      const pinned = await new LedgerClient({ urls: [a.baseUrl], stateFile: file }).checkpoint();
      const fork = (): Promise<unknown> => new LedgerClient({ urls: [b.baseUrl], stateFile: file }).entry(2).then(() => null, (e: unknown) => e);
      const same = await fork();
      expect(same).toBeInstanceOf(ForkError);
      expect((same as ForkError).pinned).toEqual({ cluster: a.clusterId, size: pinned.size, root: pinned.root, index: pinned.index });
      expect((same as ForkError).served.size).toBe(pinned.size);
      expect((same as ForkError).reason).toBe("the same size with another root");
      await appendCovered(b, 2); // now b's checkpoint is newer than a's, yet not a's future
      const longer = await fork();
      expect(longer).toBeInstanceOf(ForkError);
      expect((longer as ForkError).served.size).toBeGreaterThan(pinned.size);
      expect((longer as ForkError).reason).toMatch(/consistency proof/);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
