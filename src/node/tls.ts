/**
 * TLS material of a node: which certificate and key `serve` uses (flags, else <data-dir>/tls/),
 * checked with OpenSSL before anything listens, and the certificates `cluster init` writes (a
 * cluster CA and one certificate per node, made with the system `openssl`, or copied from a dir).
 */
import { execFileSync } from "node:child_process";
import { randomBytes, X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import { LedgerError } from "../util/errors";
import { assert } from "../util/assert";
import { StartRefused } from "./data-dir";

/** Inside a data dir: this node's certificate, its key (0600) and the cluster CA's certificate. */
export const TLS_DIR = "tls";
export const TLS_CERT_FILE = "node.crt";
export const TLS_KEY_FILE = "node.key";
export const TLS_CA_FILE = "ca.crt";

/** What `serve` listens with: PEM bytes read once, and where they came from (for messages and the log). */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** --tls-client-ca: every client request must carry a certificate that verifies against it. */
  readonly clientCa?: Buffer;
  readonly certPath: string;
  readonly keyPath: string;
  readonly clientCaPath?: string;
  readonly from: "flag" | "data-dir";
}

/** --tls-cert, --tls-key, --tls-client-ca as given (paths), each optional. */
export interface TlsFlags {
  readonly cert?: string;
  readonly key?: string;
  readonly clientCa?: string;
}

/** A certificate (chain) and its private key, PEM, checked to belong together. */
export interface CertificatePair {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** The cluster CA's certificate, its key when made here, and each node's pair by node id. */
export interface ClusterCertificates {
  readonly ca: Buffer;
  readonly caKey?: Buffer;
  readonly nodes: ReadonlyMap<string, CertificatePair>;
}

/** OpenSSL's reason for a refusal, as it said it (the library prefix says which check failed). */
const opensslReason = (err: unknown): string => {
  const e = err as { code?: string; message?: string };
  return `${e.code ?? "error"}: ${e.message ?? String(err)}`;
};

/** Reads one TLS file or refuses the start, naming it. */
function readTlsFile(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new StartRefused(`cannot read the ${what} ${file} (${e.code ?? e.message})`, file);
  }
}

/** Runs one OpenSSL parse; its failure is a refused start naming the file and OpenSSL's reason. */
function checkWithOpenssl(file: string, problem: string, options: tls.SecureContextOptions): void {
  try {
    tls.createSecureContext(options);
  } catch (err) {
    throw new StartRefused(`${file} ${problem} (OpenSSL ${opensslReason(err)})`, file);
  }
}

/**
 * Reads a certificate and its key and checks them as the server will use them: each one parses
 * as PEM, and the key is the certificate's (OpenSSL's own checks, so what passes here listens).
 */
export function readCertificatePair(certPath: string, keyPath: string): CertificatePair {
  const cert = readTlsFile(certPath, "TLS certificate");
  const key = readTlsFile(keyPath, "TLS key");
  checkWithOpenssl(certPath, "is not a PEM certificate", { cert });
  checkWithOpenssl(keyPath, "is not a PEM private key (an unencrypted one)", { key });
  checkWithOpenssl(keyPath, `is not the key of the certificate ${certPath}`, { cert, key });
  return { cert, key };
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;
/** A CA bundle of more certificates than this is not a CA file (a whole system store, a wrong file). */
const CA_BUNDLE_CERTIFICATES_MAX = 1000;

/**
 * Reads a CA file: one or more PEM certificates, each parsed. OpenSSL itself ignores what is not
 * a certificate in a CA list, so a wrong file would otherwise trust nobody without a word.
 */
export function readCaBundle(file: string): Buffer {
  const pem = readTlsFile(file, "CA certificate");
  const blocks = pem.toString("latin1").match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new StartRefused(`${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, file);
  if (blocks.length > CA_BUNDLE_CERTIFICATES_MAX) throw new StartRefused(`${file} holds ${blocks.length} certificates (at most ${CA_BUNDLE_CERTIFICATES_MAX}): not a CA file`, file);
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new StartRefused(`${file}: certificate ${i + 1} does not parse (OpenSSL ${opensslReason(err)})`, file);
    }
  });
  return pem;
}

/**
 * What `serve` listens with: --tls-cert and --tls-key (both or neither), else <data-dir>/tls/node.crt
 * and node.key when the data dir has them, else nothing (plain HTTP). Everything is read and checked
 * here, before the node listens or writes; a problem is a StartRefused naming the file.
 */
export function loadTlsMaterial(dataDir: string, flags: TlsFlags): TlsMaterial | undefined {
  if ((flags.cert === undefined) !== (flags.key === undefined)) {
    const given = flags.cert === undefined ? "--tls-key" : "--tls-cert";
    throw new StartRefused(`${given} without ${given === "--tls-key" ? "--tls-cert" : "--tls-key"}: a certificate and its key go together (pass both, or neither)`, flags.cert ?? flags.key ?? dataDir);
  }
  let certPath: string;
  let keyPath: string;
  let from: TlsMaterial["from"];
  if (flags.cert !== undefined && flags.key !== undefined) {
    [certPath, keyPath, from] = [path.resolve(flags.cert), path.resolve(flags.key), "flag"];
  } else {
    certPath = path.join(dataDir, TLS_DIR, TLS_CERT_FILE);
    keyPath = path.join(dataDir, TLS_DIR, TLS_KEY_FILE);
    from = "data-dir";
    const [hasCert, hasKey] = [fs.existsSync(certPath), fs.existsSync(keyPath)];
    if (!hasCert && !hasKey) {
      if (flags.clientCa !== undefined) throw new StartRefused(`--tls-client-ca ${flags.clientCa} needs TLS: pass --tls-cert and --tls-key (or put ${TLS_CERT_FILE} and ${TLS_KEY_FILE} in ${path.join(dataDir, TLS_DIR)})`, flags.clientCa);
      return undefined;
    }
    // Half a pair is a mistake, never a reason to fall back to plain HTTP.
    if (!hasCert || !hasKey) throw new StartRefused(`${hasCert ? certPath : keyPath} exists without ${hasCert ? keyPath : certPath}: a certificate and its key go together (add the other, or remove both to serve plain HTTP)`, hasCert ? certPath : keyPath);
  }
  const pair = readCertificatePair(certPath, keyPath);
  if (flags.clientCa === undefined) return { ...pair, certPath, keyPath, from };
  const clientCaPath = path.resolve(flags.clientCa);
  return { ...pair, clientCa: readCaBundle(clientCaPath), certPath, keyPath, clientCaPath, from };
}

// ---------------------------------------------------------------- writing certificates

/** Writes a file whole (temp file, fsync, rename), so a crash leaves the old one or the new one. */
function writeFileAtomic(file: string, content: Buffer, mode: number): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, "w", mode);
  try {
    fs.writeSync(fd, content);
    // The mode of a file that existed (a temp left by a killed run) is not changed by open.
    fs.fchmodSync(fd, mode);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Writes a node's tls/node.crt, tls/node.key (0600) and, when given, tls/ca.crt into its data dir. */
export function installNodeTls(nodeDir: string, pair: CertificatePair, ca?: Buffer): void {
  const dir = path.join(nodeDir, TLS_DIR);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(path.join(dir, TLS_KEY_FILE), pair.key, 0o600);
  writeFileAtomic(path.join(dir, TLS_CERT_FILE), pair.cert, 0o644);
  if (ca !== undefined) writeFileAtomic(path.join(dir, TLS_CA_FILE), ca, 0o644);
}

/** Writes DIR/ca.crt (and ca.key 0600 when made here) and every node's tls/ files into DIR/<id>. */
export function installClusterCertificates(root: string, certs: ClusterCertificates): { caPath: string } {
  for (const [id, pair] of certs.nodes) installNodeTls(path.join(root, id), pair, certs.ca);
  if (certs.caKey !== undefined) writeFileAtomic(path.join(root, "ca.key"), certs.caKey, 0o600);
  const caPath = path.join(root, TLS_CA_FILE);
  writeFileAtomic(caPath, certs.ca, 0o644);
  return { caPath };
}

/**
 * Reads existing material for `cluster init --tls-dir`: DIR/ca.crt and DIR/<id>.crt + DIR/<id>.key
 * per node, each pair checked; refuses (naming every missing file) before anything is written.
 */
export function readClusterCertificates(dir: string, ids: readonly string[]): ClusterCertificates {
  const wanted = [TLS_CA_FILE, ...ids.flatMap((id) => [`${id}.crt`, `${id}.key`])].map((f) => path.join(dir, f));
  const missing = wanted.filter((f) => !fs.existsSync(f));
  if (missing.length > 0) throw new StartRefused(`--tls-dir ${dir} lacks ${missing.join(", ")} (it needs ${TLS_CA_FILE} and <id>.crt, <id>.key for ${ids.join(", ")})`, missing[0]);
  const nodes = new Map(ids.map((id) => [id, readCertificatePair(path.join(dir, `${id}.crt`), path.join(dir, `${id}.key`))] as const));
  return { ca: readCaBundle(path.join(dir, TLS_CA_FILE)), nodes };
}

/**
 * 825 days: the longest validity Apple's TLS clients accept for a server certificate (and the
 * CA/Browser Forum's limit until 2020), long enough that a cluster is not re-keyed every year. The
 * CA gets the same: its nodes' certificates cannot outlive it anyway.
 */
const CERT_VALIDITY_DAYS = 825;
/** One openssl run makes a key or signs one certificate in milliseconds; this bounds a hung one. */
const OPENSSL_TIMEOUT_MS = 30_000;
/** openssl's error output kept in a message: its reason is in the first lines. */
const OPENSSL_STDERR_SHOWN_MAX = 500;

/** Runs the system openssl (no shell) in `cwd`; a missing binary or a failure is a LedgerError saying which. */
function openssl(cwd: string, args: readonly string[]): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"], timeout: OPENSSL_TIMEOUT_MS });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === "ENOENT") throw new LedgerError("unavailable", "openssl was not found on PATH: install OpenSSL, or make the certificates yourself and pass --tls-dir");
    const said = (e.stderr?.toString("utf8") ?? e.message).trim().slice(0, OPENSSL_STDERR_SHOWN_MAX);
    throw new LedgerError("internal", `openssl ${args[0]} failed: ${said}`);
  }
}

/** A P-256 key: what every TLS 1.2 and 1.3 stack takes, and a fast handshake. */
const newKey = (cwd: string, file: string): void => openssl(cwd, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file]);

/** A random positive 127-bit serial: unique per certificate without a serial file to keep. */
const newSerial = (): string => {
  const b = randomBytes(16);
  b[0] &= 0x7f;
  return `0x${b.toString("hex")}`;
};

/** subjectAltName of a node: its configured host (IP or DNS name), and loopback for local clients. */
function subjectAltNames(host: string): string {
  const names = [net.isIP(host) !== 0 ? `IP:${host}` : `DNS:${host}`, "IP:127.0.0.1", "DNS:localhost"];
  return [...new Set(names)].join(",");
}

/** The OpenSSL configuration of both steps, written to the temp dir: nothing read from the system's openssl.cnf. */
function opensslConfig(nodeHostByName: ReadonlyMap<string, string>): string {
  const sections = [...nodeHostByName].map(([id, host]) => [
    `[node_${id}]`,
    "basicConstraints = critical,CA:FALSE",
    "keyUsage = critical,digitalSignature",
    "extendedKeyUsage = serverAuth,clientAuth",
    `subjectAltName = ${subjectAltNames(host)}`,
    "subjectKeyIdentifier = hash",
    "authorityKeyIdentifier = keyid",
  ].join("\n"));
  return [
    "[req]", "distinguished_name = dn", "prompt = no", "[dn]",
    "[cluster_ca]", "basicConstraints = critical,CA:TRUE,pathlen:0", "keyUsage = critical,keyCertSign,cRLSign", "subjectKeyIdentifier = hash",
    ...sections, "",
  ].join("\n");
}

/** Node ids become file and section names: the ids `cluster init` makes (n1..n9), nothing else. */
const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Makes a cluster's certificates with the system openssl, in memory: a P-256 CA (CA:TRUE,
 * keyCertSign) and per node a P-256 key and a certificate the CA signs for serverAuth and clientAuth,
 * with the node's host, 127.0.0.1 and localhost as subjectAltName. The temp dir goes afterwards.
 */
export function makeClusterCertificates(nodes: readonly { readonly id: string; readonly host: string }[]): ClusterCertificates {
  assert(nodes.length > 0, "a cluster has at least one node");
  for (const n of nodes) assert(NODE_ID.test(n.id) && /^[^\s,]+$/.test(n.host), `node ${JSON.stringify(n.id)} at ${JSON.stringify(n.host)}: not a name a certificate can carry`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-tls-"));
  try {
    fs.writeFileSync(path.join(tmp, "openssl.cnf"), opensslConfig(new Map(nodes.map((n) => [n.id, n.host]))));
    const days = String(CERT_VALIDITY_DAYS);
    newKey(tmp, "ca.key");
    openssl(tmp, ["req", "-config", "openssl.cnf", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", days, "-set_serial", newSerial(),
      "-subj", `/O=Resonetics/CN=Resonetics cluster CA ${randomBytes(4).toString("hex")}`, "-extensions", "cluster_ca", "-out", "ca.crt"]);
    const pairs = new Map<string, CertificatePair>();
    for (const { id } of nodes) {
      newKey(tmp, `${id}.key`);
      openssl(tmp, ["req", "-config", "openssl.cnf", "-new", "-key", `${id}.key`, "-subj", `/O=Resonetics/CN=${id}`, "-out", `${id}.csr`]);
      openssl(tmp, ["x509", "-req", "-in", `${id}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", newSerial(), "-days", days, "-sha256",
        "-extfile", "openssl.cnf", "-extensions", `node_${id}`, "-out", `${id}.crt`]);
      pairs.set(id, readCertificatePair(path.join(tmp, `${id}.crt`), path.join(tmp, `${id}.key`)));
    }
    return { ca: readCaBundle(path.join(tmp, "ca.crt")), caKey: fs.readFileSync(path.join(tmp, "ca.key")), nodes: pairs };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * `cluster init --tls-generate`: a CA (root/ca.crt, root/ca.key 0600) and, for each node, its
 * data dir's tls/node.crt, tls/node.key (0600) and tls/ca.crt. Returns where ca.crt is.
 */
export function generateClusterCertificates(root: string, nodes: readonly { readonly id: string; readonly host: string }[]): { caPath: string } {
  return installClusterCertificates(root, makeClusterCertificates(nodes));
}
