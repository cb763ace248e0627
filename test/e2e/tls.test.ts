// Issue 12, "TLS on every link", the client-facing side, against real processes:
// - serve --tls-cert/--tls-key (and RESONETICS_TLS_CERT/KEY) answers HTTPS: a record written and read
//   back with the CA trusted, the stream over wss://, and plain HTTP to the TLS port fails;
// - --tls-client-ca: no client certificate, or one of another CA, is a 401 JSON with the reason, on
//   REST and on a /v1/stream upgrade; a CA-signed one is served (LedgerClient and `receipt` with
//   --cacert/--cert/--key); /v1/raft is exempt (peers use their node keys);
// - plain HTTP on a non-loopback address is refused (exit 2, before anything is written) unless
//   --insecure, and TLS needs no --insecure;
// - bad material is refused with exit 2 naming the file: a key of another certificate, a file that
//   is not PEM, a certificate without its key;
// - cluster init --tls-generate / --tls-dir write every node's tls/ (keys 0600) and the nodes serve
//   HTTPS from them; a 3-node TLS cluster elects a leader and commits over https.
// Certificates are made here with openssl, in temp dirs. Everything listens on 127.0.0.1 (a 0.0.0.0
// bind is reached through 127.0.0.1 only).
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { createPrivateKey, X509Certificate } from "node:crypto";
import WebSocket from "ws";
import { LedgerClient } from "../../src/client/client";
import { fetchWith } from "../../src/client/http";
import { isAppendAck, postRecord } from "../support/ledger-client";
import { BIN, REPO_ROOT, cleanupAll, getJson, http, makeTempDir, pollUntil, runCli, Server, startServer, trustTestCa, withFailureContext, ExitedBeforeListening } from "../support/server";
import { freePortRange, TestCluster } from "../support/cluster";

/** Each wait of this file (a stream frame, a refused upgrade) is bounded by this. */
const WAIT_MS = 15_000;
const RECORD = { type: "policy.set", subject: "retention", data: { name: "retention-days", value: 90 } };

/** `resonetics join` processes (startServer tracks only serve): killed after the file. */
const joins = new Set<ChildProcess>();

afterAll(async () => {
  for (const c of joins) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await cleanupAll();
}, 60_000);

// ---------------------------------------------------------------- certificates for the tests

interface Pem {
  readonly cert: string;
  readonly key: string;
}

const openssl = (cwd: string, args: readonly string[]): void => {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
};

const newKey = (dir: string, name: string): string => {
  openssl(dir, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`]);
  return path.join(dir, `${name}.key`);
};

/** A self-signed CA certificate (it also serves as "a self-signed client certificate of another CA"). */
function makeCa(dir: string, name: string): Pem {
  fs.writeFileSync(path.join(dir, `${name}.cnf`), ["[req]", "distinguished_name = dn", "[dn]", "[ext]",
    "basicConstraints = critical,CA:TRUE", "keyUsage = critical,keyCertSign,cRLSign,digitalSignature", "extendedKeyUsage = serverAuth,clientAuth", ""].join("\n"));
  const key = newKey(dir, name);
  openssl(dir, ["req", "-config", `${name}.cnf`, "-x509", "-new", "-key", key, "-subj", `/CN=${name}`, "-days", "2", "-extensions", "ext", "-out", `${name}.crt`]);
  return { cert: path.join(dir, `${name}.crt`), key };
}

/** A leaf certificate signed by ca for 127.0.0.1/localhost, for TLS servers and clients. */
function makeLeaf(dir: string, ca: Pem, name: string): Pem {
  fs.writeFileSync(path.join(dir, `${name}.cnf`), ["[req]", "distinguished_name = dn", "[dn]", "[ext]", "basicConstraints = critical,CA:FALSE",
    "keyUsage = critical,digitalSignature", "extendedKeyUsage = serverAuth,clientAuth", "subjectAltName = IP:127.0.0.1,DNS:localhost", ""].join("\n"));
  const key = newKey(dir, name);
  openssl(dir, ["req", "-config", `${name}.cnf`, "-new", "-key", key, "-subj", `/CN=${name}`, "-out", `${name}.csr`]);
  openssl(dir, ["x509", "-req", "-in", `${name}.csr`, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial", String(Date.now()), "-days", "2",
    "-extfile", `${name}.cnf`, "-extensions", "ext", "-out", `${name}.crt`]);
  return { cert: path.join(dir, `${name}.crt`), key };
}

/** Made once: a server CA with a server certificate, a client CA with a client certificate, and a stranger. */
const certDir = makeTempDir();
const serverCa = makeCa(certDir, "server-ca");
const serverLeaf = makeLeaf(certDir, serverCa, "server");
const otherLeaf = makeLeaf(certDir, serverCa, "other"); // its key is "a key of another certificate"
const clientCa = makeCa(certDir, "client-ca");
const clientLeaf = makeLeaf(certDir, clientCa, "client");
const stranger = makeCa(certDir, "stranger");
trustTestCa(fs.readFileSync(serverCa.cert));

const tlsArgs = (leaf: Pem = serverLeaf): string[] => ["--tls-cert", leaf.cert, "--tls-key", leaf.key];

/** The "listening" record a server logged (startServer's output keeps the stdout tail). */
function listeningRecord(s: Server): Record<string, unknown> {
  const line = s.output().split("\n").find((l) => l.includes('"msg":"listening"'));
  if (line === undefined) throw new Error(`no listening line\n${s.output()}`);
  return JSON.parse(line) as Record<string, unknown>;
}

/** Reads /v1/stream?from=1 until the entry at `index` arrives; the indexes seen, in order. */
function streamUntil(url: string, index: number, opts: WebSocket.ClientOptions): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    const seen: number[] = [];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`${url}: entry ${index} not streamed within ${WAIT_MS} ms (saw ${seen.join(",")})`));
    }, WAIT_MS);
    ws.on("message", (data: WebSocket.RawData) => {
      const frame = JSON.parse(data.toString()) as { type: string; entry?: { index: number } };
      if (frame.type === "entry" && frame.entry !== undefined) seen.push(frame.entry.index);
      if (seen.includes(index)) {
        clearTimeout(timer);
        ws.close();
        resolve(seen);
      }
    });
    ws.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Opens a WebSocket that must be refused before the upgrade; its HTTP status and body. */
function refusedUpgrade(url: string, opts: WebSocket.ClientOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`${url}: neither refused nor opened within ${WAIT_MS} ms`));
    }, WAIT_MS);
    ws.once("open", () => {
      clearTimeout(timer);
      ws.terminate();
      resolve({ status: 101, body: "" });
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (b: Buffer) => {
        body += b.toString("utf8");
      });
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    ws.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** A refused start: startServer must fail with the process's exit code 2; the reason is in its output. */
async function refusedStart(dir: string, extraArgs: readonly string[], env: Record<string, string> = {}): Promise<string> {
  let caught: unknown = null;
  try {
    const s = await startServer(dir, { extraArgs: [...extraArgs], env });
    await s.stop();
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof ExitedBeforeListening)) throw new Error(`serve ${extraArgs.join(" ")} was not refused before listening: ${String(caught)}`);
  expect(caught.status.code).toBe(2);
  return caught.message;
}

// ---------------------------------------------------------------- HTTPS

describe("serve --tls-cert/--tls-key: HTTPS and wss://", () => {
  test("a record is appended and read back over https; the stream delivers it over wss://; plain http to the port fails", async () => {
    const dir = path.join(makeTempDir(), "node");
    const s = await startServer(dir, { extraArgs: tlsArgs() });
    await withFailureContext(() => `npx jest test/e2e/tls.test.ts -t 'over https'\n${s.output()}`, [dir], async () => {
      expect(s.baseUrl).toBe(`https://127.0.0.1:${s.port}`);
      expect(listeningRecord(s)).toMatchObject({ tls: true, tls_from: "flag" });
      const ack = await postRecord(s.baseUrl, s.token, RECORD, "tls-1");
      expect(ack.status).toBe(201);
      if (!isAppendAck(ack.json)) throw new Error(`not an append ack: ${ack.text}`);
      const back = await http(s.baseUrl, "GET", `/v1/records/${ack.json.index}`);
      expect(back.status).toBe(200);
      expect(back.json).toMatchObject({ index: ack.json.index, hash: ack.json.hash });

      const seen = await streamUntil(`wss://127.0.0.1:${s.port}/v1/stream?from=1`, ack.json.index, { ca: fs.readFileSync(serverCa.cert) });
      expect(seen.slice(0, ack.json.index)).toEqual(Array.from({ length: ack.json.index }, (_, i) => i + 1));

      // A plain-HTTP request to the TLS port gets no HTTP answer: the handshake fails and the socket closes.
      await expect(fetch(`http://127.0.0.1:${s.port}/health`, { signal: AbortSignal.timeout(WAIT_MS) })).rejects.toThrow();
      // An https client that does not trust the CA refuses the server.
      await expect(fetch(`https://127.0.0.1:${s.port}/health`, { signal: AbortSignal.timeout(WAIT_MS) })).rejects.toThrow();
    });
    await s.stop();
  });

  test("RESONETICS_TLS_CERT and RESONETICS_TLS_KEY work like the flags", async () => {
    const dir = path.join(makeTempDir(), "node");
    const s = await startServer(dir, { env: { RESONETICS_TLS_CERT: serverLeaf.cert, RESONETICS_TLS_KEY: serverLeaf.key } });
    await withFailureContext(() => `npx jest test/e2e/tls.test.ts -t RESONETICS_TLS_CERT\n${s.output()}`, [dir], async () => {
      expect(listeningRecord(s)).toMatchObject({ tls: true, tls_from: "flag" });
      expect((await http(s.baseUrl, "GET", "/health")).status).toBe(200);
    });
    await s.stop();
  });
});

test("<data-dir>/tls/ put in place before the first start is served (tls_from data-dir); half a pair is refused", async () => {
  const dir = path.join(makeTempDir(), "node");
  fs.mkdirSync(path.join(dir, "tls"), { recursive: true });
  fs.copyFileSync(serverLeaf.cert, path.join(dir, "tls", "node.crt"));
  const half = await refusedStart(dir, []);
  expect(half).toContain(`${path.join(dir, "tls", "node.crt")} exists without ${path.join(dir, "tls", "node.key")}`);
  expect(fs.existsSync(path.join(dir, "ledger.db"))).toBe(false);
  fs.copyFileSync(serverLeaf.key, path.join(dir, "tls", "node.key"));
  const s = await startServer(dir);
  await withFailureContext(() => `npx jest test/e2e/tls.test.ts -t 'put in place'\n${s.output()}`, [dir], async () => {
    expect(listeningRecord(s)).toMatchObject({ tls: true, tls_from: "data-dir" });
    expect((await http(s.baseUrl, "GET", "/health")).status).toBe(200);
  });
  await s.stop();
});

describe("--tls-client-ca: client certificates", () => {
  let s: Server;
  let dir: string;
  const ca = fs.readFileSync(serverCa.cert);
  beforeAll(async () => {
    dir = path.join(makeTempDir(), "node");
    s = await startServer(dir, { extraArgs: [...tlsArgs(), "--tls-client-ca", clientCa.cert] });
  });
  afterAll(async () => {
    await s.stop();
  });
  const ctx = (name: string) => (): string => `npx jest test/e2e/tls.test.ts -t '${name}'\n${s.output()}`;

  test("no client certificate: 401 JSON naming the requirement and the reason", async () => {
    await withFailureContext(ctx("no client certificate"), [dir], async () => {
      expect(listeningRecord(s)).toMatchObject({ tls: true, client_certificates: true });
      const r = await http(s.baseUrl, "GET", "/v1/status");
      expect(r.status).toBe(401);
      expect(r.json).toMatchObject({ error: "unauthorized" });
      const body = r.json as { message: string; reason: string };
      expect(body.message).toContain("a client certificate signed by the configured CA is required");
      expect(body.message).toContain("none was presented");
      expect(body.reason.length).toBeGreaterThan(0);
      expect(body.message).toContain(body.reason);
    });
  });

  test("a client certificate signed by the CA: 201 (LedgerClient), and `receipt` with --cacert/--cert/--key", async () => {
    await withFailureContext(ctx("signed by the CA"), [dir], async () => {
      const client = new LedgerClient({ urls: [s.baseUrl], token: s.token, tls: { ca, cert: fs.readFileSync(clientLeaf.cert), key: fs.readFileSync(clientLeaf.key) } });
      const ack = await client.append(RECORD, "client-cert-1");
      expect((await client.entry(ack.index)).hash).toBe(ack.hash);
      const r = await runCli(["receipt", String(ack.index), "--endpoints", s.baseUrl, "--wait-ms", String(WAIT_MS),
        "--cacert", serverCa.cert, "--cert", clientLeaf.cert, "--key", clientLeaf.key], 60_000);
      // stderr shows in a failure; it is not asserted empty (bin notes a stale dist/ there).
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
      expect(JSON.parse(r.stdout)).toMatchObject({ entry: { index: ack.index } });
      // Without the client certificate the same command is refused by the node (exit 2, a 4xx: the user's to fix, with the 401's message).
      const bare = await runCli(["receipt", String(ack.index), "--endpoints", s.baseUrl, "--cacert", serverCa.cert], 60_000);
      expect(bare.code).toBe(2);
      expect(bare.stderr).toContain("401");
    });
  });

  test("a self-signed client certificate of another CA: 401 with the reason", async () => {
    await withFailureContext(ctx("another CA"), [dir], async () => {
      const client = new LedgerClient({ urls: [s.baseUrl], tls: { ca, cert: fs.readFileSync(stranger.cert), key: fs.readFileSync(stranger.key) } });
      const err = await client.status().then(() => null, (e: unknown) => e);
      expect(err).toMatchObject({ status: 401, code: "unauthorized" });
      const message = (err as Error).message;
      expect(message).toContain("the certificate presented does not verify");
      // OpenSSL's verify code for a self-signed leaf: the why, as the socket's authorizationError says it.
      expect(message).toContain("(DEPTH_ZERO_SELF_SIGNED_CERT)");
    });
  });

  test("a /v1/stream upgrade without a certificate is refused with 401; with one it streams; /v1/raft is exempt", async () => {
    await withFailureContext(ctx("upgrade"), [dir], async () => {
      const url = `wss://127.0.0.1:${s.port}`;
      const refused = await refusedUpgrade(`${url}/v1/stream?from=1`, { ca });
      expect(refused.status).toBe(401);
      expect(JSON.parse(refused.body)).toMatchObject({ error: "unauthorized" });
      expect(refused.body).toContain("client certificate signed by the configured CA is required");
      const seen = await streamUntil(`${url}/v1/stream?from=1`, 1, { ca, cert: fs.readFileSync(clientLeaf.cert), key: fs.readFileSync(clientLeaf.key) });
      expect(seen[0]).toBe(1);
      // The peer endpoint answers whatever its own handshake says, never the client-certificate 401.
      const raft = await refusedUpgrade(`${url}/v1/raft`, { ca });
      expect(raft.body).not.toContain("client certificate");
    });
  });
});

// ---------------------------------------------------------------- where a node may listen in clear

describe("plain HTTP on a non-loopback address", () => {
  test("--host 0.0.0.0 without TLS or --insecure: exit 2 before listening, the reason on stderr, no data dir", async () => {
    const dir = path.join(makeTempDir(), "never");
    const r = await runCli(["serve", "--data-dir", dir, "--host", "0.0.0.0", "--port", "0"], 60_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("not a loopback address");
    expect(r.stderr).toContain("the admin token and every record would cross the network in clear");
    expect(r.stderr).toContain("--insecure");
    expect(r.stdout).not.toContain('"msg":"listening"');
    expect(fs.existsSync(dir)).toBe(false);
    // RESONETICS_INSECURE is read strictly: a value that is not yes or no is a usage error.
    const env = await refusedStart(path.join(makeTempDir(), "never"), ["--host", "0.0.0.0"], { RESONETICS_INSECURE: "maybe" });
    expect(env).toContain("RESONETICS_INSECURE must be");
  });

  test("with --insecure (or RESONETICS_INSECURE=1) it starts", async () => {
    for (const how of [{ extraArgs: ["--host", "0.0.0.0", "--insecure"] }, { extraArgs: ["--host", "0.0.0.0"], env: { RESONETICS_INSECURE: "1" } }]) {
      const dir = path.join(makeTempDir(), "node");
      const s = await startServer(dir, how);
      await withFailureContext(() => `npx jest test/e2e/tls.test.ts -t insecure\n${s.output()}`, [dir], async () => {
        expect(listeningRecord(s)).toMatchObject({ host: "0.0.0.0", tls: false });
        expect((await http(`http://127.0.0.1:${s.port}`, "GET", "/health")).status).toBe(200);
      });
      await s.stop();
    }
  });

  test("with TLS it starts without --insecure", async () => {
    const dir = path.join(makeTempDir(), "node");
    const s = await startServer(dir, { extraArgs: ["--host", "0.0.0.0", ...tlsArgs()] });
    await withFailureContext(() => `npx jest test/e2e/tls.test.ts -t 'without --insecure'\n${s.output()}`, [dir], async () => {
      expect(listeningRecord(s)).toMatchObject({ host: "0.0.0.0", tls: true });
      expect((await http(`https://127.0.0.1:${s.port}`, "GET", "/health")).status).toBe(200);
    });
    await s.stop();
  });
});

// ---------------------------------------------------------------- bad material

describe("bad TLS material: exit 2 naming the file, nothing written", () => {
  const refused = async (args: readonly string[]): Promise<string> => {
    const dir = path.join(makeTempDir(), "never");
    const r = await runCli(["serve", "--data-dir", dir, "--port", "0", ...args], 60_000);
    expect({ code: r.code, listening: r.stdout.includes('"msg":"listening"'), dataDir: fs.existsSync(dir) }).toEqual({ code: 2, listening: false, dataDir: false });
    return r.stderr;
  };

  test("a key that does not match the certificate", async () => {
    const stderr = await refused(["--tls-cert", serverLeaf.cert, "--tls-key", otherLeaf.key]);
    expect(stderr).toContain(`${otherLeaf.key} is not the key of the certificate ${serverLeaf.cert}`);
    expect(stderr).toContain("key values mismatch");
  });

  test("a certificate file that is not PEM", async () => {
    const junk = path.join(certDir, "junk.crt");
    fs.writeFileSync(junk, "not a certificate\n");
    const stderr = await refused(["--tls-cert", junk, "--tls-key", serverLeaf.key]);
    expect(stderr).toContain(`${junk} is not a PEM certificate`);
  });

  test("--tls-cert without --tls-key, and a missing file", async () => {
    expect(await refused(["--tls-cert", serverLeaf.cert])).toContain("--tls-cert without --tls-key");
    const missing = path.join(certDir, "absent.key");
    expect(await refused(["--tls-cert", serverLeaf.cert, "--tls-key", missing])).toContain(`cannot read the TLS key ${missing} (ENOENT)`);
  });

  test("--tls-client-ca that holds no certificate", async () => {
    expect(await refused([...tlsArgs(), "--tls-client-ca", serverLeaf.key])).toContain(`${serverLeaf.key} holds no PEM certificate`);
  });
});

// ---------------------------------------------------------------- cluster init

describe("cluster init --tls-generate / --tls-dir", () => {
  const modeOf = (f: string): number => fs.statSync(f).mode & 0o777;

  test("--tls-generate writes the CA and every node's tls/ (keys 0600); a node served from it answers https", async () => {
    const root = makeTempDir();
    const basePort = await freePortRange(3);
    const r = await runCli(["cluster", "init", "--dir", root, "--nodes", "3", "--base-port", String(basePort), "--tls-generate"], 60_000);
    // stderr shows in a failure; it is not asserted empty (bin notes a stale dist/ there).
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    const caPath = path.join(root, "ca.crt");
    expect(r.stdout).toContain(caPath);
    expect(modeOf(path.join(root, "ca.key"))).toBe(0o600);
    const ca = new X509Certificate(fs.readFileSync(caPath));
    expect(ca.ca).toBe(true);
    for (const id of ["n1", "n2", "n3"]) {
      const tlsDir = path.join(root, id, "tls");
      expect(modeOf(path.join(tlsDir, "node.key"))).toBe(0o600);
      expect(fs.readFileSync(path.join(tlsDir, "ca.crt"))).toEqual(fs.readFileSync(caPath));
      const cert = new X509Certificate(fs.readFileSync(path.join(tlsDir, "node.crt")));
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.subjectAltName).toContain("IP Address:127.0.0.1");
      expect(cert.subjectAltName).toContain("DNS:localhost");
      expect(cert.checkPrivateKey(createPrivateKey(fs.readFileSync(path.join(tlsDir, "node.key"))))).toBe(true);
    }
    // The printed serve lines stay valid as they are; here one single-node cluster is served over https.
    const one = makeTempDir();
    const r1 = await runCli(["cluster", "init", "--dir", one, "--nodes", "1", "--base-port", String(basePort), "--tls-generate"], 60_000);
    expect(r1.code).toBe(0);
    trustTestCa(fs.readFileSync(path.join(one, "ca.crt")));
    const s = await startServer(path.join(one, "n1"));
    await withFailureContext(() => `npx jest test/e2e/tls.test.ts -t 'tls-generate writes'\n${s.output()}`, [one], async () => {
      expect(listeningRecord(s)).toMatchObject({ tls: true, tls_from: "data-dir" });
      const ack = await postRecord(s.baseUrl, s.token, RECORD, "generated-1");
      expect(ack.status).toBe(201);
    });
    await s.stop();
  });

  test("--tls-dir copies existing material; a missing file is refused before anything is written; --tls-dir with --tls-generate is a usage error", async () => {
    const material = makeTempDir();
    fs.copyFileSync(serverCa.cert, path.join(material, "ca.crt"));
    fs.copyFileSync(serverLeaf.cert, path.join(material, "n1.crt"));
    fs.copyFileSync(serverLeaf.key, path.join(material, "n1.key"));
    const basePort = await freePortRange(2);
    const missingRoot = path.join(makeTempDir(), "cluster");
    const missing = await runCli(["cluster", "init", "--dir", missingRoot, "--nodes", "2", "--base-port", String(basePort), "--tls-dir", material], 60_000);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(path.join(material, "n2.crt"));
    expect(missing.stderr).toContain(path.join(material, "n2.key"));
    expect(fs.existsSync(missingRoot)).toBe(false);
    const both = await runCli(["cluster", "init", "--dir", missingRoot, "--nodes", "1", "--tls-dir", material, "--tls-generate"], 60_000);
    expect(both.code).toBe(2);

    const root = makeTempDir();
    const r = await runCli(["cluster", "init", "--dir", root, "--nodes", "1", "--base-port", String(basePort), "--tls-dir", material], 60_000);
    // stderr shows in a failure; it is not asserted empty (bin notes a stale dist/ there).
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(fs.readFileSync(path.join(root, "n1", "tls", "node.crt"))).toEqual(fs.readFileSync(serverLeaf.cert));
    expect(modeOf(path.join(root, "n1", "tls", "node.key"))).toBe(0o600);
    const s = await startServer(path.join(root, "n1"));
    await withFailureContext(() => `npx jest test/e2e/tls.test.ts -t 'tls-dir copies'\n${s.output()}`, [root], async () => {
      expect(listeningRecord(s)).toMatchObject({ tls: true, tls_from: "data-dir" });
      expect((await http(s.baseUrl, "GET", "/health")).status).toBe(200);
    });
    await s.stop();
  });
});

// ---------------------------------------------------------------- a TLS cluster (needs the TLS peer link)

describe("a 3-node TLS cluster (peer link over wss://)", () => {
  test("3-node TLS cluster: elects a leader and commits a write over https; a follower forwards a write over wss, or redirects to https", async () => {
    const c = await TestCluster.start(3, { tls: true });
    await withFailureContext(() => `npx jest test/e2e/tls.test.ts -t '3-node TLS cluster'\n${[...c.servers.values()].map((s) => s.output()).join("\n")}`, [c.root], async () => {
      const leader = await c.leader();
      const client = new LedgerClient({ urls: c.urls(), token: c.token, tls: { ca: fs.readFileSync(path.join(c.root, "ca.crt")) } });
      const ack = await client.append(RECORD, "cluster-tls-1");
      await c.converged(ack.index);
      const follower = c.ids.find((id) => id !== leader) ?? "n1";
      const post = (query: string, key: string) => fetchWith({ ca: fs.readFileSync(path.join(c.root, "ca.crt")) })(`${c.url(follower)}/v1/records${query}`, {
        method: "POST", redirect: "manual", signal: AbortSignal.timeout(WAIT_MS),
        headers: { authorization: `Bearer ${c.token}`, "content-type": "application/json", "idempotency-key": key }, body: JSON.stringify(RECORD),
      });
      // A write to a follower is forwarded to the leader over the wss peer link and answered 201 there.
      const forwarded = await post("", "cluster-tls-2");
      expect(forwarded.status).toBe(201);
      expect(((await forwarded.json()) as { index: number }).index).toBeGreaterThan(ack.index);
      // Asked to redirect, it names the leader over the scheme the cluster serves.
      const res = await post("?redirect=1", "cluster-tls-3");
      expect(res.status).toBe(307);
      expect(res.headers.get("location")).toBe(`${c.url(leader)}/v1/records?redirect=1`);
    });
    await c.stopAll();
  });

  test("join --tls-cert/--tls-key/--cacert: a node joins a TLS cluster through an https seed and serves https from its tls/", async () => {
    const c = await TestCluster.start(1, { tls: true });
    const caFile = path.join(c.root, "ca.crt");
    const n2 = makeLeaf(makeTempDir(), { cert: caFile, key: path.join(c.root, "ca.key") }, "n2");
    const dir = path.join(makeTempDir(), "n2");
    const port = await freePortRange(1);
    const args = [BIN, "join", "--data-dir", dir, "--id", "n2", "--seed", c.url("n1"), "--token-file", path.join(c.dir("n1"), "admin.token"),
      "--port", String(port), "--tls-cert", n2.cert, "--tls-key", n2.key, "--cacert", caFile];
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: process.env, stdio: ["ignore", "pipe", "pipe"] });
    joins.add(child);
    const lines: string[] = [];
    readline.createInterface({ input: child.stderr! }).on("line", (l) => lines.push(`[stderr] ${l}`));
    const joined = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`join did not print "joined" within 90 s`)), 90_000);
      readline.createInterface({ input: child.stdout! }).on("line", (l) => {
        if (lines.length < 500) lines.push(l);
        if (!l.startsWith("joined: ")) return;
        clearTimeout(timer);
        resolve(l.slice("joined: ".length));
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`join exited with ${code} before printing "joined"`));
      });
    });
    await withFailureContext(() => `npx jest test/e2e/tls.test.ts -t 'join --tls-cert'
$ ${args.join(" ")}
${lines.slice(-40).join("\n")}\n${c.servers.get("n1")?.output() ?? ""}`, [c.root, dir], async () => {
      expect(JSON.parse(await joined)).toMatchObject({ id: "n2" });
      expect(fs.statSync(path.join(dir, "tls", "node.key")).mode & 0o777).toBe(0o600);
      expect(fs.readFileSync(path.join(dir, "tls", "ca.crt"))).toEqual(fs.readFileSync(caFile));
      expect(lines.find((l) => l.includes('"msg":"listening"'))).toContain('"tls_from":"data-dir"');
      const url = `https://127.0.0.1:${port}`;
      await pollUntil("n2 lists n1 and n2 as voters and has applied n1's commit", async () => {
        const [a, b] = await Promise.all([getJson<{ voters: string[]; commit_index: number }>(c.url("n1"), "/v1/status"), getJson<{ voters: string[]; last_applied: number }>(url, "/v1/status")]);
        return [...b.voters].sort().join() === "n1,n2" && b.last_applied >= a.commit_index ? true : undefined;
      }, 300, 50);
    });
    child.kill("SIGTERM");
    await c.stopAll();
  });
});
