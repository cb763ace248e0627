// Acceptance 5 of issue 7 ("no token appears in any log line written during the test suite") is
// checked by test/support/server.ts on every line every server child writes; cleanupAll() throws
// when one held a secret. These tests prove that check can fail, and that it is wired to real
// server output (a line that holds the token is caught; the report never repeats the token).
import * as fs from "node:fs";
import * as path from "node:path";
import { SecretLineChecker, cleanupAll, forgetSecretLeaks, http, makeTempDir, pollUntil, readSecrets, redactedExcerpt, secretLeakReport, startServer } from "../support/server";

const TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const AUDIT = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

afterAll(async () => {
  await cleanupAll();
}, 60_000);

describe("the secret-in-log-line check", () => {
  test("a line holding the admin token is a leak, with the token redacted from the report", () => {
    const c = new SecretLineChecker("/nowhere", () => new Map([[TOKEN, "admin.token"]]));
    c.refresh();
    c.line("stdout", JSON.stringify({ msg: "request completed", req: { headers: { authorization: "[Redacted]" } } }));
    expect(c.leakCount).toBe(0);
    c.line("stdout", JSON.stringify({ msg: "request completed", req: { headers: { authorization: `Bearer ${TOKEN}` } } }));
    expect(c.leakCount).toBe(1);
    expect(c.leaks[0].file).toBe("admin.token");
    expect(c.leaks[0].excerpt).not.toContain(TOKEN);
    expect(c.leaks[0].excerpt).toContain("<REDACTED:64 chars>");
    const report = secretLeakReport([c]);
    expect(report).not.toBeNull();
    expect(report).toContain("test/e2e/log-secrets.test.ts");
    expect(report).toContain("acceptance 5");
    expect(report).not.toContain(TOKEN);
  });

  test("lines written before the token files were read are held and checked once they are", () => {
    let files = new Map<string, string>();
    const c = new SecretLineChecker("/nowhere", () => files);
    c.line("stderr", `early line with ${AUDIT} in it`);
    expect(c.leakCount).toBe(0); // not known yet: held, not passed
    files = new Map([[TOKEN, "admin.token"], [AUDIT, "audit.token"]]);
    c.refresh();
    expect(c.leakCount).toBe(1);
    expect(c.leaks[0]).toMatchObject({ source: "stderr", file: "audit.token" });
    c.line("stdout", "a clean line");
    c.finish();
    expect(c.leakCount).toBe(1);
  });

  test("the token as a substring anywhere in a long line is found; a clean report is null", () => {
    const c = new SecretLineChecker("/nowhere", () => new Map([[TOKEN, "admin.token"]]));
    c.refresh();
    expect(secretLeakReport([c])).toBeNull();
    c.line("stdout", "x".repeat(10_000) + TOKEN.toUpperCase()); // a different string: not this token
    expect(c.leakCount).toBe(0);
    c.line("stdout", "x".repeat(10_000) + TOKEN + "y".repeat(10_000));
    expect(c.leakCount).toBe(1);
    expect(c.leaks[0].excerpt.length).toBeLessThan(400);
  });

  test("redactedExcerpt replaces every occurrence of every secret", () => {
    const e = redactedExcerpt(`a ${TOKEN} b ${AUDIT} c ${TOKEN}`, [TOKEN, AUDIT]);
    expect(e).not.toContain(TOKEN);
    expect(e).not.toContain(AUDIT);
  });

  test(
    "readSecrets reads the real token files of a served data dir (what the checker compares against)",
    async () => {
      const dir = makeTempDir();
      const s = await startServer(dir);
      const secrets = readSecrets(dir);
      expect(secrets.get(s.token)).toBe("admin.token");
      // Every data dir has both secrets now (audit.token since issue 7).
      expect(fs.existsSync(path.join(dir, "audit.token"))).toBe(true);
      expect([...secrets.values()]).toContain("audit.token");
      const st = await s.stop();
      expect(st.forced).toBe(false);
    },
    60_000,
  );

  test(
    "wired to a real server's output: a token a client put in a URL path reaches the request log and is caught",
    async () => {
      const dir = makeTempDir();
      const s = await startServer(dir);
      expect(secretLeakReport()).toBeNull();
      // The request log records the URL; a client that puts the token in a path makes a line hold it.
      const r = await http(s.baseUrl, "GET", `/v1/subjects/planted-${s.token}/history`);
      expect(r.status).toBeLessThan(500);
      const report = await pollUntil("the checker saw the planted line", async () => secretLeakReport() ?? undefined);
      expect(report).toContain(dir);
      expect(report).toContain("admin.token");
      expect(report).not.toContain(s.token);
      forgetSecretLeaks(); // planted on purpose: cleanupAll must not fail this file for it
      expect(secretLeakReport()).toBeNull();
      await s.stop();
    },
    60_000,
  );
});
