/**
 * CORS is off by default; --cors-origin (or RESONETICS_CORS_ORIGIN) lets exactly one browser origin
 * call the API, preflight included, and a malformed origin is a usage error.
 */
import { cleanupAll, http, makeTempDir, runCli, Server, startServer, withFailureContext } from "../support/server";

const ORIGIN = "https://audit.example";

afterAll(cleanupAll, 60_000);

let server: Server | undefined;
const context = (): string => `npx jest test/e2e/cors.test.ts\n${server?.output() ?? "(no server)"}`;

test("the allowed origin gets Access-Control-Allow-Origin and a preflight answer; any other origin gets neither", () =>
  withFailureContext(context, [], async () => {
    server = await startServer(makeTempDir(), { extraArgs: ["--cors-origin", ORIGIN] });
    const s = server;
    const allowed = await http(s.baseUrl, "GET", "/v1/status", { headers: { origin: ORIGIN } });
    expect({ status: allowed.status, acao: allowed.headers.get("access-control-allow-origin"), vary: allowed.headers.get("vary") })
      .toEqual({ status: 200, acao: ORIGIN, vary: "Origin" });
    const other = await http(s.baseUrl, "GET", "/v1/status", { headers: { origin: "https://evil.example" } });
    expect({ status: other.status, acao: other.headers.get("access-control-allow-origin") }).toEqual({ status: 200, acao: null });

    const preflight = await http(s.baseUrl, "OPTIONS", "/v1/records", {
      headers: { origin: ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(preflight.headers.get("access-control-allow-methods")).toContain("POST");
    expect(preflight.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    // A preflight from another origin is a plain OPTIONS: the route does not take it.
    const foreign = await http(s.baseUrl, "OPTIONS", "/v1/records", { headers: { origin: "https://evil.example", "access-control-request-method": "POST" } });
    expect({ status: foreign.status, acao: foreign.headers.get("access-control-allow-origin") }).toEqual({ status: 405, acao: null });
    // Errors carry the header too, so a browser can read why it was refused.
    const refused = await http(s.baseUrl, "POST", "/v1/records", { headers: { origin: ORIGIN }, json: {} });
    expect({ status: refused.status, acao: refused.headers.get("access-control-allow-origin") }).toEqual({ status: 401, acao: ORIGIN });
    await s.stop();
  }));

test("without --cors-origin nobody gets CORS headers, not even for a preflight", () =>
  withFailureContext(context, [], async () => {
    server = await startServer(makeTempDir());
    const s = server;
    const r = await http(s.baseUrl, "OPTIONS", "/v1/records", { headers: { origin: ORIGIN, "access-control-request-method": "POST" } });
    expect({ status: r.status, acao: r.headers.get("access-control-allow-origin") }).toEqual({ status: 405, acao: null });
    const g = await http(s.baseUrl, "GET", "/v1/status", { headers: { origin: ORIGIN } });
    expect(g.headers.get("access-control-allow-origin")).toBeNull();
    await s.stop();
  }));

test.each(["audit.example", "https://audit.example/", "https://audit.example/path", "ftp://audit.example"])(
  "--cors-origin %s is a usage error (exit 2)",
  async (bad) => {
    const r = await runCli(["serve", "--data-dir", makeTempDir(), "--port", "0", "--cors-origin", bad], 30_000);
    expect({ code: r.code, says: /origin/.test(r.stderr) }).toEqual({ code: 2, says: true });
  },
);
