/**
 * Test certificates made with the system's openssl (no network, no fixtures from outside):
 * a self-signed P-256 certificate for 127.0.0.1, in a temp dir that cleanupAll() removes.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeTempDir } from "./server";

export interface TestCert {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly certFile: string;
  readonly keyFile: string;
}

/** A self-signed certificate with subjectAltName IP:127.0.0.1 and DNS:localhost. */
export function selfSignedCert(cn: string): TestCert {
  const dir = makeTempDir();
  const certFile = path.join(dir, `${cn}.crt`);
  const keyFile = path.join(dir, `${cn}.key`);
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyFile, "-out", certFile,
    "-days", "2", "-subj", `/CN=${cn}`, "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { stdio: "pipe", timeout: 30_000 });
  return { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), certFile, keyFile };
}
