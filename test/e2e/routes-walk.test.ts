// Issue 7, "a test that walks every route with malformed parameters and asserts no 5xx": every route
// of src/api/routes.ts and src/api/server.ts (plus /v1/stream and /v1/raft asked as plain HTTP)
// with every method and a catalogue of malformed path and query parameters, against a real node.
// No answer is a 5xx, every error is JSON {error, message} with nosniff, and since no request in
// the walk is a valid write, the log table is byte-identical before and after it.
import { RawAnswer, errorShapeProblem, rawHttp } from "../support/ledger-client";
import { HttpResult, http, mapPool } from "../support/server";
import { expectNothingWritten, serverSuite } from "../support/suite";

const { server, guarded } = serverSuite("test/e2e/routes-walk.test.ts", {
  seed: { count: 4, record: (i) => ({ type: "policy.set", subject: "walk", data: { name: `n${i}`, value: i } }) },
});

/**
 * Every route, with ":p" where a path parameter goes and the query parameters it reads. Read from
 * src/api/routes.ts and src/api/server.ts; /v1/stream and /v1/raft are upgrade endpoints asked here
 * as plain requests.
 */
const ROUTES: readonly { path: string; query: readonly string[] }[] = [
  { path: "/health", query: [] },
  { path: "/ready", query: [] },
  { path: "/metrics", query: [] },
  { path: "/v1/records", query: ["from", "limit", "subject", "consistency"] },
  { path: "/v1/records/:p", query: ["consistency"] },
  { path: "/v1/subjects/:p/history", query: ["consistency"] },
  { path: "/v1/proofs/inclusion/:p", query: ["size", "consistency"] },
  { path: "/v1/proofs/consistency", query: ["from", "to", "consistency"] },
  { path: "/v1/checkpoints/latest", query: ["consistency"] },
  { path: "/v1/audit/verify", query: ["from", "to"] },
  { path: "/v1/admin/members", query: [] },
  { path: "/v1/admin/members/:p", query: [] },
  { path: "/v1/admin/config", query: [] },
  { path: "/v1/status", query: [] },
  { path: "/v1/stream", query: ["from"] },
  { path: "/v1/openapi.json", query: [] },
  { path: "/v1/raft", query: [] },
];

/** Values as they appear in the URL (already percent-encoded, or deliberately not decodable). */
const BAD_VALUES: readonly string[] = [
  // bad percent-encoding
  "%ZZ", "%", "%4", "a%2", "%%", "%u0041", "%%30",
  // invalid UTF-8, encoded surrogates, overlong forms
  "%FF", "%80", "%C0%AF", "%E2%82", "%ED%A0%80", "x%ED%A0%80y", "%ED%B0%80", "%F4%90%80%80", "%F8%88%80%80%80",
  // numbers that are not whole decimal numbers in range
  "99999999999999999999999", "18446744073709551616", "9007199254740993", "9007199254740992", "00000000000000000001",
  "-1", "0", "-0", "+1", "0x10", "0b1", "0o7", "1e3", "1E3", "1.5", "1.", ".5", "NaN", "Infinity", "-Infinity",
  "1%00", "%201", "1%20", "%091", "1,2", "1_000",
  // unicode digits (Arabic-Indic one, fullwidth one, superscript one, mathematical bold one)
  "%D9%A1", "%EF%BC%91", "%C2%B9", "%F0%9D%9F%8F",
  // empty, huge, odd characters
  "", "1".repeat(2000), "a".repeat(5000), "%00", "%0A", "%0D%0A", "%EF%BF%BE", "%EF%BB%BF1", "%F0%9F%98%80".repeat(201),
  // structure in a value
  "%5B%5D", "[1]", "{}", "%7B%7D", "..", "%2E%2E", "%2F", "a%2Fb", "__proto__", "constructor",
];

/** Whole query strings that are malformed as a whole, for every route. */
const BAD_QUERIES: readonly string[] = [
  "?from=1&from=2", "?to=1&to=2", "?size=1&size=2", "?subject=a&subject=b", "?consistency=local&consistency=local",
  "?from[]=1", "?from[0]=1", "?from%5B%5D=1", "?__proto__=1", "?__proto__[from]=1", "?constructor=1",
  "?%ZZ=1", "?%FF=1", "?=1", "?from", "?&&&", "?from=1&&&to=2", "?from=%ZZ&to=%FF",
  "?" + Array.from({ length: 40 }, (_, i) => `p${i}=1`).join("&"),
  "?subject=" + "a".repeat(5000),
  "?consistency=LOCAL", "?consistency=", "?consistency=%00",
  "?from=snapshot", "?from=genesis&to=0", "?from=genesis&to=-1", "?from=1e3", "?from=999999999",
];

const METHODS: readonly string[] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

interface Answer {
  what: string;
  status: number;
  text: string;
  problem: string | null;
}

/** Null when the answer keeps the contract for a walk request: not 5xx; an error is JSON {error, message}. */
function judge(method: string, r: HttpResult | RawAnswer): string | null {
  if (r.status >= 500) return `${r.status} (a 5xx)`;
  if (r.status >= 400 && method !== "HEAD") return errorShapeProblem(r);
  if (r.headers.get("x-content-type-options") !== "nosniff") return "no X-Content-Type-Options: nosniff";
  return null;
}

async function send(method: string, urlPath: string, token: string | undefined): Promise<Answer> {
  const what = `${method} ${urlPath.length > 160 ? urlPath.slice(0, 160) + "…" : urlPath}${token === undefined ? " (no token)" : ""}`;
  // Never a valid write: POST/PUT/PATCH bodies are empty JSON objects, which no route accepts.
  const withBody = method === "POST" || method === "PUT" || method === "PATCH";
  const r = await http(server().baseUrl, method, urlPath, {
    token,
    body: withBody ? "{}" : undefined,
    headers: withBody ? { "content-type": "application/json" } : {},
  });
  return { what, status: r.status, text: r.text.slice(0, 300), problem: judge(method, r) };
}

function report(answers: readonly Answer[]): { bad: string[]; statuses: Record<string, number> } {
  const statuses: Record<string, number> = {};
  for (const a of answers) statuses[String(a.status)] = (statuses[String(a.status)] ?? 0) + 1;
  const bad = answers.filter((a) => a.problem !== null).map((a) => `${a.what} → ${a.status} ${a.text}: ${a.problem}`);
  return { bad: bad.slice(0, 40).concat(bad.length > 40 ? [`… and ${bad.length - 40} more`] : []), statuses };
}

describe("every route, every method, malformed parameters: no 5xx, every error JSON", () => {
  test(
    "path and query parameters from the catalogue, with the admin token, and the log is unchanged",
    guarded(async () => {
      const s = server();
      const requests: { method: string; path: string }[] = [];
      for (const route of ROUTES) {
        const paths = route.path.includes(":p") ? BAD_VALUES.map((v) => route.path.replace(":p", v)) : [route.path];
        for (const p of paths) for (const m of METHODS) requests.push({ method: m, path: p });
        const base = route.path.replace(":p", "1");
        for (const q of route.query) for (const v of BAD_VALUES) for (const m of ["GET", "POST"]) requests.push({ method: m, path: `${base}?${q}=${v}` });
        for (const q of BAD_QUERIES) requests.push({ method: "GET", path: base + q });
      }
      // Parameters in the path of a route with a text parameter, reaching the handler with its query too.
      for (const v of BAD_VALUES) requests.push({ method: "GET", path: `/v1/subjects/walk/history?consistency=${v}` });
      await expectNothingWritten(s, async () => {
        const answers = await mapPool(requests, 8, (r) => send(r.method, r.path, s.token));
        const { bad, statuses } = report(answers);
        process.stdout.write(`routes walk: ${answers.length} requests, statuses ${JSON.stringify(statuses)}\n`);
        expect(bad).toEqual([]);
        expect(s.running()).toBe(true);
      });
    }),
    120_000,
  );

  test(
    "the same routes without a token, and with a wrong one: 401/403 or a read, never a 5xx",
    guarded(async () => {
      const s = server();
      const wrong = s.token.slice(0, -1) + (s.token.endsWith("0") ? "1" : "0");
      const requests: { method: string; path: string; token?: string }[] = [];
      for (const route of ROUTES) {
        for (const v of ["1", "%ZZ", "%ED%A0%80", ""]) {
          const p = route.path.replace(":p", v);
          for (const m of METHODS) {
            requests.push({ method: m, path: p });
            requests.push({ method: m, path: p, token: wrong });
          }
        }
      }
      const answers = await mapPool(requests, 8, (r) => send(r.method, r.path, r.token));
      const { bad } = report(answers);
      expect(bad).toEqual([]);
      // A write-capable route never answers 2xx without the token.
      const writes = answers.filter((a) => /^(POST|DELETE) \/v1\/(records|admin\/members)/.test(a.what) && a.status < 300);
      expect(writes.map((a) => `${a.what} → ${a.status} ${a.text}`)).toEqual([]);
    }),
    120_000,
  );

  test(
    "raw requests fetch will not send: non-ASCII bytes in the target, odd targets, oversized and malformed HTTP",
    guarded(async () => {
      const s = server();
      const req = (line: string | Buffer, headers = `Host: 127.0.0.1\r\nAuthorization: Bearer ${s.token}\r\nConnection: close\r\n`): Buffer =>
        Buffer.concat([typeof line === "string" ? Buffer.from(line, "latin1") : line, Buffer.from(`\r\n${headers}\r\n`, "latin1")]);
      const cases: { what: string; bytes: Buffer; status?: number }[] = [
        { what: "raw 0xFF in a path parameter", bytes: req(Buffer.concat([Buffer.from("GET /v1/subjects/a"), Buffer.from([0xff]), Buffer.from("/history HTTP/1.1")])) },
        { what: "raw UTF-8 surrogate bytes in a path", bytes: req(Buffer.concat([Buffer.from("GET /v1/subjects/x"), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from("y/history HTTP/1.1")])) },
        { what: "raw 0xFF in a query", bytes: req(Buffer.concat([Buffer.from("GET /v1/records?subject="), Buffer.from([0xff]), Buffer.from(" HTTP/1.1")])) },
        { what: "asterisk-form target", bytes: req("GET * HTTP/1.1") },
        { what: "absolute-form target", bytes: req("GET http://127.0.0.1/v1/status HTTP/1.1") },
        { what: "a target without a leading slash", bytes: req("GET v1/status HTTP/1.1") },
        { what: "dot segments", bytes: req("GET /v1/records/../../../etc/passwd HTTP/1.1") },
        { what: "a 12,000-byte target", bytes: req(`GET /v1/records/${"1".repeat(12_000)} HTTP/1.1`) },
        { what: "an unknown method", bytes: req("BREW /v1/status HTTP/1.1") },
        { what: "TRACE", bytes: req("TRACE /v1/status HTTP/1.1") },
        { what: "headers over 64 KiB", bytes: req("GET /v1/status HTTP/1.1", `Host: 127.0.0.1\r\nX-Big: ${"a".repeat(70_000)}\r\nConnection: close\r\n`), status: 431 },
        { what: "not HTTP at all", bytes: Buffer.from("HELLO\r\n\r\n"), status: 400 },
        // llhttp reads this as HTTP/0.9-style and may answer it: any answer but a 5xx is fine.
        { what: "a request line without a version", bytes: Buffer.from("GET /v1/status\r\n\r\n") },
        { what: "a header line without a colon", bytes: req("GET /v1/status HTTP/1.1", "Host: 127.0.0.1\r\nno colon here\r\n"), status: 400 },
        { what: "a NUL byte in a header value", bytes: req("GET /v1/status HTTP/1.1", "Host: 127.0.0.1\r\nX-A: a\x00b\r\nConnection: close\r\n"), status: 400 },
        { what: "Content-Length and Transfer-Encoding both", bytes: req("POST /v1/records HTTP/1.1", `Host: 127.0.0.1\r\nAuthorization: Bearer ${s.token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n`), status: 400 },
        { what: "a negative Content-Length", bytes: req("POST /v1/records HTTP/1.1", "Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: -1\r\nConnection: close\r\n"), status: 400 },
        { what: "a bad chunk size", bytes: Buffer.concat([req("POST /v1/records HTTP/1.1", `Host: 127.0.0.1\r\nAuthorization: Bearer ${s.token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n`), Buffer.from("zz\r\n{}\r\n0\r\n\r\n")]) },
      ];
      const problems: string[] = [];
      for (const c of cases) {
        const r = await rawHttp(s.port, c.bytes);
        if (r === null) {
          // Closing without a word is allowed only where there is no HTTP request to answer.
          if (c.status !== undefined) problems.push(`${c.what}: closed without an answer (expected ${c.status} JSON)`);
          continue;
        }
        if (c.status !== undefined && r.status !== c.status) problems.push(`${c.what} → ${r.status} ${r.text.slice(0, 200)} (expected ${c.status})`);
        const p = judge("GET", r);
        if (p !== null) problems.push(`${c.what} → ${r.status} ${r.text.slice(0, 200)}: ${p}`);
      }
      expect(problems).toEqual([]);
      expect(s.running()).toBe(true);
      const health = await http(s.baseUrl, "GET", "/health");
      expect(health.status).toBe(200);
    }),
    60_000,
  );
});
