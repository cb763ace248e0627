// Acceptance 7 of issue 2 against a real `resonetics serve` process: each kind of bad input gets
// the right 4xx with {"error": code, "message": string}, and the log is byte-identical before and
// after. Plus Idempotency-Key semantics (same key + same body → 200 original; other body → 409).
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { canonicalJson } from "../support/independent";
import { isAppendAck, getStatus, postRecord } from "../support/ledger-client";
import { HttpResult, Server, cleanupAll, getJson, http, makeTempDir, mapPool, pollUntil, startServer, withFailureContext } from "../support/server";

let dir = "";
let server: Server | undefined;
const context = (): string => `npx jest test/e2e/bad-input.test.ts; data dir ${dir}\n` + (server ? server.output() : "(no server)");
const guarded = (fn: () => Promise<void>) => (): Promise<void> => withFailureContext(context, dir === "" ? [] : [dir], fn);

const SEED_RECORDS = 40;

/** The digest of every entry's JSON (1..commit_index) and the status' commit index and head. */
async function logDigest(s: Server): Promise<{ commit_index: number; head: string; digest: string }> {
  const st = await getStatus(s.baseUrl);
  const indices = Array.from({ length: st.commit_index }, (_, i) => i + 1);
  const texts = await mapPool(indices, 16, async (i) => {
    const r = await http(s.baseUrl, "GET", `/v1/records/${i}`);
    if (r.status !== 200) throw new Error(`GET /v1/records/${i} → ${r.status} ${r.text}`);
    return r.text;
  });
  const h = createHash("sha256");
  for (const t of texts) h.update(t).update("\n");
  return { commit_index: st.commit_index, head: st.head, digest: h.digest("hex") };
}

/**
 * Waits until the log is quiet: its last entry is a checkpoint of everything before it, so no
 * timer-driven checkpoint can be appended while bad requests are sent (that would be a legitimate
 * change the byte-identical comparison would misread as damage).
 */
async function waitQuiescent(s: Server): Promise<void> {
  await pollUntil(
    "the last entry is a checkpoint covering everything before it",
    async () => {
      const st = await getStatus(s.baseUrl);
      const e = await getJson<{ kind: string; payload_b64: string }>(s.baseUrl, `/v1/records/${st.commit_index}`);
      if (e.kind !== "checkpoint") return undefined;
      const cp = JSON.parse(Buffer.from(e.payload_b64, "base64").toString("utf8")) as { size: number };
      return cp.size === st.commit_index - 1 ? true : undefined;
    },
    300,
    100,
  );
}

interface Expect {
  status: number | number[];
  error: string | string[];
}

/** Asserts status and the error body shape; returns a readable mismatch or null. */
function mismatch(what: string, r: HttpResult, want: Expect): string | null {
  const codes = Array.isArray(want.error) ? want.error : [want.error];
  const statuses = Array.isArray(want.status) ? want.status : [want.status];
  const body = r.json as Record<string, unknown> | undefined;
  const okShape = body !== undefined && typeof body === "object" && body !== null && typeof body.error === "string" && typeof body.message === "string" && (body.message as string).length > 0;
  if (statuses.includes(r.status) && okShape && codes.includes(body.error as string)) return null;
  return `${what} → ${r.status} ${r.text.slice(0, 300)}  (expected ${statuses.join("|")} {"error": ${codes.join("|")}, "message": "..."})`;
}

beforeAll(
  guarded(async () => {
    dir = makeTempDir();
    server = await startServer(dir);
    const s = server;
    for (let i = 0; i < SEED_RECORDS; i++) {
      const r = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: `seed-${i % 3}`, data: { name: `n${i}`, value: i } });
      if (r.status !== 201) throw new Error(`seeding: POST → ${r.status} ${r.text}`);
    }
  }),
  120_000,
);

afterAll(async () => {
  await cleanupAll();
}, 60_000);

describe("bad input is refused with a reason and changes nothing", () => {
  test(
    "every bad request gets the right 4xx and the log is byte-identical before and after",
    guarded(async () => {
      const s = server!;
      await waitQuiescent(s);
      const before = await logDigest(s);
      const last = before.commit_index;
      const valid = { type: "policy.set", subject: "bad-input", data: { name: "x", value: 1 } };
      const auth = { authorization: `Bearer ${s.token}` };
      const json = { ...auth, "content-type": "application/json" };
      const post = (body: string | Uint8Array, headers: Record<string, string>) => http(s.baseUrl, "POST", "/v1/records", { body, headers });
      const problems: string[] = [];
      const check = async (what: string, r: Promise<HttpResult>, want: Expect): Promise<void> => {
        const m = mismatch(what, await r, want);
        if (m !== null) problems.push(m);
      };

      // Bodies
      await check("POST invalid JSON", post('{"type": "policy.set", "subject": ', json), { status: 400, error: "invalid_json" });
      await check("POST JSON with trailing garbage", post(JSON.stringify(valid) + "}", json), { status: 400, error: "invalid_json" });
      await check("POST text/plain", post(JSON.stringify(valid), { ...auth, "content-type": "text/plain" }), { status: 415, error: "unsupported_media_type" });
      await check("POST form-urlencoded", post("type=policy.set", { ...auth, "content-type": "application/x-www-form-urlencoded" }), {
        status: 415,
        error: "unsupported_media_type",
      });
      await check("POST without content-type", post(Buffer.from(JSON.stringify(valid)), auth), { status: 415, error: "unsupported_media_type" });
      const big = JSON.stringify({ ...valid, data: { name: "big", value: "x".repeat(70 * 1024) } });
      await check(`POST ${big.length}-byte body`, post(big, json), { status: 413, error: "payload_too_large" });
      await check("POST unknown record type", post(JSON.stringify({ ...valid, type: "no.such.type" }), json), { status: 400, error: "unknown_record_type" });
      await check("POST JSON array", post("[1,2]", json), { status: 400, error: ["bad_request", "schema_violation"] });
      await check("POST JSON string", post('"policy.set"', json), { status: 400, error: ["bad_request", "schema_violation", "invalid_json"] });
      await check("POST missing subject", post(JSON.stringify({ type: "policy.set", data: { name: "x", value: 1 } }), json), {
        status: 400,
        error: ["bad_request", "schema_violation"],
      });
      await check("POST empty subject", post(JSON.stringify({ ...valid, subject: "" }), json), { status: 400, error: ["bad_request", "schema_violation"] });
      await check("POST 201-char subject", post(JSON.stringify({ ...valid, subject: "s".repeat(201) }), json), {
        status: 400,
        error: ["bad_request", "schema_violation"],
      });

      // Schema violations name the failing path.
      const violations: [string, unknown, RegExp][] = [
        ["data.name is a number", { ...valid, data: { name: 5, value: 1 } }, /name/],
        ["data.name is missing", { ...valid, data: { value: 1 } }, /name/],
        ["data.name is 201 chars", { ...valid, data: { name: "n".repeat(201), value: 1 } }, /name/],
        ["vote.cast choice is 'maybe'", { type: "vote.cast", subject: "p1", data: { proposal: "p1", choice: "maybe" } }, /choice/],
        ["proposal.open closes_at is not a date-time", { type: "proposal.open", subject: "p2", data: { title: "t", closes_at: "tomorrow" } }, /closes_at/],
      ];
      for (const [what, body, path] of violations) {
        const r = await post(JSON.stringify(body), json);
        const m = mismatch(`POST ${what}`, r, { status: 400, error: "schema_violation" });
        if (m !== null) problems.push(m);
        else {
          const b = r.json as Record<string, unknown>;
          if (!path.test(String(b.message)) && !path.test(JSON.stringify(b.details ?? null))) {
            problems.push(`POST ${what} → ${r.text}: neither message nor details name the failing path ${path}`);
          }
        }
      }

      // Auth
      await check("POST without a token", post(JSON.stringify(valid), { "content-type": "application/json" }), { status: 401, error: "unauthorized" });
      await check("POST with a wrong token", post(JSON.stringify(valid), { authorization: "Bearer not-the-token", "content-type": "application/json" }), {
        status: 403,
        error: "forbidden",
      });
      await check("POST with a Basic credential", post(JSON.stringify(valid), { authorization: `Basic ${s.token}`, "content-type": "application/json" }), {
        status: [401, 403],
        error: ["unauthorized", "forbidden"],
      });
      await check("POST with an empty body", post("", json), { status: 400, error: ["invalid_json", "bad_request", "schema_violation"] });
      await check("POST with the token minus its last char", post(JSON.stringify(valid), { authorization: `Bearer ${s.token.slice(0, -1)}`, "content-type": "application/json" }), {
        status: 403,
        error: "forbidden",
      });
      // Wrong tokens of exactly the right length: a check that compares only lengths (or a prefix,
      // or a suffix) accepts one of these. The read-only auditor token can never write either.
      const other = (c: string): string => (c === "a" ? "b" : "a");
      const auditToken = fs.readFileSync(path.join(s.dir, "audit.token"), "utf8").trim();
      const sameLength: [string, string][] = [
        [`${s.token.length} × "x"`, "x".repeat(s.token.length)],
        ["the token with its last char changed", s.token.slice(0, -1) + other(s.token.slice(-1))],
        ["the token with its first char changed", other(s.token[0]) + s.token.slice(1)],
        ["the token reversed", [...s.token].reverse().join("")],
        ["the auditor token", auditToken],
      ];
      for (const [what, t] of sameLength) expect({ what, differs: t !== s.token && t.length > 0 }).toEqual({ what, differs: true });
      for (const [what, token] of sameLength) {
        await check(`POST with ${what}`, post(JSON.stringify(valid), { authorization: `Bearer ${token}`, "content-type": "application/json" }), {
          status: 403,
          error: "forbidden",
        });
      }

      // Indices and sizes
      const get = (p: string) => http(s.baseUrl, "GET", p);
      const malformed = ["-1", "abc", "1.5", "1e3", "0x10", "99999999999999999999999", "9007199254740993", "%20"];
      for (const bad of malformed) {
        await check(`GET /v1/records/${bad}`, get(`/v1/records/${bad}`), { status: 400, error: "bad_request" });
        await check(`GET /v1/proofs/inclusion/${bad}?size=${last}`, get(`/v1/proofs/inclusion/${bad}?size=${last}`), { status: 400, error: "bad_request" });
        await check(`GET /v1/proofs/inclusion/1?size=${bad}`, get(`/v1/proofs/inclusion/1?size=${bad}`), { status: 400, error: "bad_request" });
        await check(`GET /v1/proofs/consistency?from=${bad}&to=${last}`, get(`/v1/proofs/consistency?from=${bad}&to=${last}`), { status: 400, error: "bad_request" });
        await check(`GET /v1/proofs/consistency?from=1&to=${bad}`, get(`/v1/proofs/consistency?from=1&to=${bad}`), { status: 400, error: "bad_request" });
      }
      for (const q of ["limit=-1", "limit=abc", "limit=1.5", "from=-1", "from=abc", "limit=99999999999999999999"]) {
        await check(`GET /v1/records?subject=seed-0&${q}`, get(`/v1/records?subject=seed-0&${q}`), { status: 400, error: "bad_request" });
      }
      // Unknown routes and methods answer JSON errors too, and change nothing.
      await check("GET /v1/nope", get("/v1/nope"), { status: 404, error: "not_found" });
      await check("DELETE /v1/records/1", http(s.baseUrl, "DELETE", "/v1/records/1", { headers: auth }), { status: [404, 405], error: ["not_found", "method_not_allowed"] });
      await check("PUT /v1/records/1", http(s.baseUrl, "PUT", "/v1/records/1", { body: JSON.stringify(valid), headers: json }), {
        status: [404, 405],
        error: ["not_found", "method_not_allowed"],
      });
      await check(`GET /v1/records/${last + 1}`, get(`/v1/records/${last + 1}`), { status: 404, error: "not_found" });
      await check("GET /v1/records/1000000000000", get("/v1/records/1000000000000"), { status: 404, error: "not_found" });
      await check("GET /v1/records/0", get("/v1/records/0"), { status: [400, 404], error: ["bad_request", "not_found"] });
      // index beyond the end: 404; index beyond the size inside the log: 400
      await check(`GET /v1/proofs/inclusion/${last + 1}?size=${last}`, get(`/v1/proofs/inclusion/${last + 1}?size=${last}`), {
        status: [400, 404],
        error: ["bad_request", "not_found"],
      });
      await check(`GET /v1/proofs/inclusion/${last}?size=${last - 1}`, get(`/v1/proofs/inclusion/${last}?size=${last - 1}`), {
        status: 400,
        error: "bad_request",
      });
      await check(`GET /v1/proofs/inclusion/1?size=0`, get(`/v1/proofs/inclusion/1?size=0`), { status: 400, error: "bad_request" });
      await check(`GET /v1/proofs/inclusion/1?size=${last + 1000}`, get(`/v1/proofs/inclusion/1?size=${last + 1000}`), {
        status: [400, 404],
        error: ["not_found", "bad_request"],
      });
      await check(`GET /v1/proofs/consistency?from=5&to=3`, get(`/v1/proofs/consistency?from=5&to=3`), { status: 400, error: "bad_request" });
      await check(`GET /v1/proofs/consistency?from=1&to=${last + 1000}`, get(`/v1/proofs/consistency?from=1&to=${last + 1000}`), {
        status: [400, 404],
        error: ["not_found", "bad_request"],
      });

      expect(problems).toEqual([]);
      const after = await logDigest(s);
      expect(after).toEqual(before);
    }),
    120_000,
  );

  test(
    "a record just under the 64 KiB body limit is accepted (the 413 is about size)",
    guarded(async () => {
      const s = server!;
      const body = { type: "policy.set", subject: "big", data: { name: "big", value: "y".repeat(60 * 1024) } };
      const r = await postRecord(s.baseUrl, s.token, body);
      expect({ status: r.status, ack: isAppendAck(r.json) }).toEqual({ status: 201, ack: true });
      const e = await getJson<{ record?: { data?: { value?: string } } }>(s.baseUrl, `/v1/records/${(r.json as { index: number }).index}`);
      expect(e.record?.data?.value).toBe(body.data.value);
    }),
  );

  test(
    "awkward but valid input is stored byte-exactly: __proto__ keys, path characters, non-ASCII",
    guarded(async () => {
      const s = server!;
      const cases: { subject: string; raw: string }[] = [
        { subject: "__proto__", raw: '{"type":"policy.set","subject":"__proto__","data":{"name":"p","value":1}}' },
        { subject: "constructor", raw: '{"type":"policy.set","subject":"constructor","data":{"name":"c","value":{"__proto__":{"x":1}},"__proto__":{"polluted":true}}}' },
        { subject: "a/b?c#d%e", raw: JSON.stringify({ type: "policy.set", subject: "a/b?c#d%e", data: { name: "slash", value: [1, "two", null] } }) },
        { subject: "Grüße ✓ 日本", raw: JSON.stringify({ type: "policy.set", subject: "Grüße ✓ 日本", data: { name: "ünï", value: "\u0000 \n \"" } }) },
      ];
      for (const c of cases) {
        const r = await http(s.baseUrl, "POST", "/v1/records", { body: c.raw, headers: { authorization: `Bearer ${s.token}`, "content-type": "application/json" } });
        expect({ subject: c.subject, status: r.status }).toEqual({ subject: c.subject, status: 201 });
        const index = (r.json as { index: number }).index;
        const e = await getJson<{ payload_b64: string }>(s.baseUrl, `/v1/records/${index}`);
        const stored = JSON.parse(Buffer.from(e.payload_b64, "base64").toString("utf8")) as Record<string, unknown>;
        const sent = JSON.parse(c.raw) as Record<string, unknown>;
        // Compare as canonical text: a __proto__ key lost to an Object.assign would show here.
        expect(canonicalJson({ type: stored.type, subject: stored.subject, data: stored.data })).toBe(canonicalJson(sent));
        const h = await getJson<{ records: { entry: { index: number } }[] }>(s.baseUrl, `/v1/subjects/${encodeURIComponent(c.subject)}/history`);
        expect(h.records.map((x) => x.entry.index)).toEqual([index]);
      }
    }),
  );

  test(
    "Idempotency-Key: a retry of the same record serialized differently (key order, whitespace) is the same body",
    guarded(async () => {
      const s = server!;
      const key = `idem-${process.pid}-reordered`;
      const headers = { authorization: `Bearer ${s.token}`, "content-type": "application/json", "idempotency-key": key };
      const a = await http(s.baseUrl, "POST", "/v1/records", { body: '{"type":"policy.set","subject":"idem-o","data":{"name":"o","value":1}}', headers });
      expect(a.status).toBe(201);
      const b = await http(s.baseUrl, "POST", "/v1/records", { body: '{ "data": {"value": 1, "name": "o"}, "subject": "idem-o", "type": "policy.set" }\n', headers });
      expect({ status: b.status, body: b.json }).toEqual({ status: 200, body: a.json });
    }),
  );

  test(
    "a refused request does not consume its Idempotency-Key",
    guarded(async () => {
      const s = server!;
      const key = `idem-${process.pid}-refused`;
      const bad = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: "idem-r", data: { value: 1 } }, key);
      expect(bad.status).toBe(400);
      const good = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: "idem-r", data: { name: "ok", value: 1 } }, key);
      expect({ status: good.status, ack: isAppendAck(good.json) }).toEqual({ status: 201, ack: true });
    }),
  );

  test(
    "concurrent retries with one Idempotency-Key append one record and all get its result",
    guarded(async () => {
      const s = server!;
      const key = `idem-${process.pid}-concurrent`;
      const body = { type: "policy.set", subject: "idem-c", data: { name: "once", value: 42 } };
      const answers = await Promise.all(Array.from({ length: 8 }, () => postRecord(s.baseUrl, s.token, body, key)));
      const statuses = answers.map((a) => a.status);
      expect(statuses.every((st) => st === 200 || st === 201)).toBe(true);
      expect(statuses.filter((st) => st === 201).length).toBeLessThanOrEqual(1);
      const acks = answers.map((a) => JSON.stringify(a.json));
      expect(new Set(acks).size).toBe(1);
      const history = await getJson<{ records: unknown[] }>(s.baseUrl, "/v1/subjects/idem-c/history");
      expect(history.records.length).toBe(1);
    }),
  );

  test(
    "Idempotency-Key: same key + same body → 200 with the original result; other body → 409",
    guarded(async () => {
      const s = server!;
      const key = `idem-${process.pid}-1`;
      const body = { type: "policy.set", subject: "idem", data: { name: "first", value: 1 } };
      const first = await postRecord(s.baseUrl, s.token, body, key);
      expect(first.status).toBe(201);
      expect(isAppendAck(first.json)).toBe(true);
      const again = await postRecord(s.baseUrl, s.token, body, key);
      expect({ status: again.status, body: again.json }).toEqual({ status: 200, body: first.json });
      const stBefore = await getStatus(s.baseUrl);
      const other = await postRecord(s.baseUrl, s.token, { ...body, data: { name: "second", value: 2 } }, key);
      expect(mismatch("POST same key, different body", other, { status: 409, error: "idempotency_conflict" })).toBeNull();
      const thirdTry = await postRecord(s.baseUrl, s.token, body, key);
      expect({ status: thirdTry.status, body: thirdTry.json }).toEqual({ status: 200, body: first.json });
      // Neither the retry nor the conflict appended a record.
      const stAfter = await getStatus(s.baseUrl);
      const between = await mapPool(
        Array.from({ length: stAfter.commit_index - stBefore.commit_index }, (_, i) => stBefore.commit_index + 1 + i),
        8,
        (i) => getJson<{ kind: string }>(s.baseUrl, `/v1/records/${i}`),
      );
      expect(between.filter((e) => e.kind === "record")).toEqual([]);
      // A different key with the same body is a new record.
      const fresh = await postRecord(s.baseUrl, s.token, body, `${key}-b`);
      expect(fresh.status).toBe(201);
      expect((fresh.json as { index: number }).index).toBeGreaterThan((first.json as { index: number }).index);
    }),
  );
});
