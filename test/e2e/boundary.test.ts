// Acceptance 1 of issue 7 against a real `resonetics serve` process: each hostile input the issue
// lists gets the exact 4xx with a JSON {error, message} body (and for the I-JSON boundary the
// reason and the JSON path), and the raw log table (idx, term, kind, payload, hash, read read-only
// from ledger.db) plus the status' commit index and head are byte-identical before and after. The
// inputs the contract accepts are committed exactly once, stored in canonical form, and at the end
// GET /v1/audit/verify is ok and `verify-chain` exits 0 on the data dir.
import * as fs from "node:fs";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import { canonicalJson } from "../support/independent";
import { EntryView, LogSnapshot, RawAnswer, StatusView, errorShapeProblem, getStatus, isAppendAck, readLogSnapshot, waitQuiescent } from "../support/ledger-client";
import { HttpResult, getJson, http } from "../support/server";
import { aroundLog, expectVerifiesAndStops, serverSuite } from "../support/suite";

const SEED_RECORDS = 6;
const E = "\u{1F600}"; // 😀: one code point, two UTF-16 units, four UTF-8 bytes

const { server: s, guarded } = serverSuite("test/e2e/boundary.test.ts", {
  seed: { count: SEED_RECORDS, record: (i) => ({ type: "policy.set", subject: `seed-${i % 2}`, data: { name: `n${i}`, value: i } }) },
});

// ---------------------------------------------------------------- requests

const auth = (): Record<string, string> => ({ authorization: `Bearer ${s().token}` });
const jsonHeaders = (): Record<string, string> => ({ ...auth(), "content-type": "application/json" });

/** POST /v1/records with exactly these body bytes. */
const post = (body: string | Uint8Array, headers: Record<string, string> = jsonHeaders()): Promise<HttpResult> =>
  http(s().baseUrl, "POST", "/v1/records", { body: typeof body === "string" ? Buffer.from(body, "utf8") : body, headers });

/** A policy.set body as raw text: subject and data are JSON texts pasted in as they are. */
const recordText = (subjectJson: string, dataJson = '{"name":"n","value":1}'): string => `{"type":"policy.set","subject":${subjectJson},"data":${dataJson}}`;
/** A policy.set body whose data.value is the given JSON text. */
const valueText = (valueJson: string, subject = '"boundary"'): string => recordText(subject, `{"name":"n","value":${valueJson}}`);
const bytes = (...parts: (string | number[])[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))));
const nested = (depth: number, inner = "0"): string => "[".repeat(depth) + inner + "]".repeat(depth);

// ---------------------------------------------------------------- expectations

interface Want {
  status: number;
  error: string;
  reason?: string | readonly string[];
  path?: string;
  /** The path must start with this (e.g. a key that holds a lone surrogate). */
  pathPrefix?: string;
  /** Headers whose value must contain the given text (e.g. Allow). */
  headerIncludes?: Record<string, readonly string[]>;
}

/** What is wrong with an error answer, or [] when it is exactly what `want` says. */
function refusalProblems(r: HttpResult | RawAnswer, want: Want): string[] {
  const p: string[] = [];
  const body = r.json as Record<string, unknown> | undefined;
  if (r.status !== want.status) p.push(`status ${r.status}, expected ${want.status}`);
  const shape = errorShapeProblem(r);
  if (shape !== null) p.push(shape);
  if (body?.error !== want.error) p.push(`error ${JSON.stringify(body?.error)}, expected ${JSON.stringify(want.error)}`);
  if (want.reason !== undefined) {
    const reasons = typeof want.reason === "string" ? [want.reason] : want.reason;
    if (!reasons.includes(body?.reason as string)) p.push(`reason ${JSON.stringify(body?.reason)}, expected ${reasons.join(" | ")}`);
  }
  if (want.path !== undefined && body?.path !== want.path) p.push(`path ${JSON.stringify(body?.path)}, expected ${JSON.stringify(want.path)}`);
  if (want.pathPrefix !== undefined && (typeof body?.path !== "string" || !body.path.startsWith(want.pathPrefix))) {
    p.push(`path ${JSON.stringify(body?.path)}, expected one starting with ${JSON.stringify(want.pathPrefix)}`);
  }
  for (const [h, parts] of Object.entries(want.headerIncludes ?? {})) {
    const v = (r.headers.get(h) ?? "").toUpperCase();
    for (const part of parts) if (!v.split(/\s*,\s*/).includes(part.toUpperCase())) p.push(`${h} ${JSON.stringify(r.headers.get(h))} lacks ${part}`);
  }
  return p;
}

interface LogState {
  readonly log: LogSnapshot;
  readonly status: StatusView;
}

async function logState(): Promise<LogState> {
  return { log: readLogSnapshot(s().dir), status: await getStatus(s().baseUrl) };
}

function sameLog(before: LogState, after: LogState): string[] {
  const p: string[] = [];
  if (after.log.digest !== before.log.digest) p.push(`log table changed: ${before.log.rows} rows (last ${before.log.lastIndex}) → ${after.log.rows} rows (last ${after.log.lastIndex})`);
  if (after.status.commit_index !== before.status.commit_index) p.push(`commit_index ${before.status.commit_index} → ${after.status.commit_index}`);
  if (after.status.head !== before.status.head) p.push(`head ${before.status.head} → ${after.status.head}`);
  return p;
}

/** Sends one hostile request on a quiet log: the exact refusal, and nothing written. */
async function expectRefused(what: string, send: () => Promise<HttpResult | RawAnswer | null>, want: Want): Promise<void> {
  await waitQuiescent(s().baseUrl);
  const before = await logState();
  const r = await send();
  const after = await logState();
  const problems = r === null ? ["the server closed the connection without an answer"] : refusalProblems(r, want);
  problems.push(...sameLog(before, after));
  const seen = r === null ? "(no answer)" : `${r.status} ${r.text.slice(0, 400)}`;
  expect({ what, seen, problems }).toEqual({ what, seen, problems: [] });
}

/** The entry of an accepted write, once the log is quiet again; asserts exactly one more record. */
async function expectAccepted(what: string, send: () => Promise<HttpResult>, status = 201): Promise<{ ack: { index: number; hash: string }; entry: EntryView; payload: string }> {
  const { value: ack, before, after } = await aroundLog(s(), async () => {
    const r = await send();
    const problems: string[] = [];
    if (r.status !== status) problems.push(`status ${r.status}, expected ${status}`);
    if (!isAppendAck(r.json)) problems.push("not an append ack {index, term, hash}");
    if (r.headers.get("x-content-type-options") !== "nosniff") problems.push(`X-Content-Type-Options ${JSON.stringify(r.headers.get("x-content-type-options"))}`);
    expect({ what, seen: `${r.status} ${r.text.slice(0, 400)}`, problems }).toEqual({ what, seen: `${r.status} ${r.text.slice(0, 400)}`, problems: [] });
    return r.json as { index: number; hash: string };
  });
  expect({ what, recordsAdded: after.records - before.records }).toEqual({ what, recordsAdded: status === 201 ? 1 : 0 });
  const entry = await getJson<EntryView>(s().baseUrl, `/v1/records/${ack.index}`);
  expect(entry.kind).toBe("record");
  expect(entry.hash).toBe(ack.hash);
  const payload = Buffer.from(entry.payload_b64, "base64").toString("utf8");
  // The stored bytes are their own canonical form (RFC 8785), rebuilt here independently.
  expect(payload).toBe(canonicalJson(JSON.parse(payload)));
  return { ack, entry, payload };
}

const invalidJson = (reason: string | readonly string[], p?: string): Want => (p === undefined ? { status: 400, error: "invalid_json", reason } : { status: 400, error: "invalid_json", reason, path: p });
const unsupported: Want = { status: 415, error: "unsupported_media_type" };
const badRequest: Want = { status: 400, error: "bad_request" };

// ---------------------------------------------------------------- the cases of the issue

describe("the I-JSON boundary refuses what its canonical form would change, and writes nothing", () => {
  test("a lone surrogate in subject (JSON escape \\ud800) → 400 invalid_json lone_surrogate at body/subject", guarded(async () => {
    await expectRefused("subject x\\ud800y", () => post(recordText('"x\\ud800y"')), invalidJson("lone_surrogate", "body/subject"));
    await expectRefused("subject with a lone low surrogate \\udc00", () => post(recordText('"\\udc00"')), invalidJson("lone_surrogate", "body/subject"));
    await expectRefused("reversed pair \\udc00\\ud800", () => post(recordText('"a\\udc00\\ud800"')), invalidJson("lone_surrogate", "body/subject"));
    await expectRefused("lone surrogate deep in data", () => post(valueText('{"x":["ok","\\ud83d"]}')), invalidJson("lone_surrogate", "body/data/value/x/1"));
  }));

  test("a key holding a lone surrogate → 400 lone_surrogate with a path that names the key", guarded(async () => {
    await expectRefused("key k\\udc00 in data", () => post(recordText('"boundary"', '{"name":"n","value":1,"k\\udc00":1}')), {
      ...invalidJson("lone_surrogate"),
      pathPrefix: "body/data/k",
    });
  }));

  test("201 × 😀 in subject (201 code points) → 400 schema_violation at body/subject", guarded(async () => {
    await expectRefused("subject of 201 astral code points", () => post(JSON.stringify({ type: "policy.set", subject: E.repeat(201), data: { name: "n", value: 1 } })), {
      status: 400,
      error: "schema_violation",
      path: "body/subject",
    });
  }));

  test("numbers the canonical form would change → 400 number_not_exact at their path", guarded(async () => {
    await expectRefused("12345678901234567890", () => post(valueText("12345678901234567890")), invalidJson("number_not_exact", "body/data/value"));
    await expectRefused("1e400", () => post(valueText("1e400")), invalidJson("number_not_exact", "body/data/value"));
    await expectRefused("-1e400", () => post(valueText("-1e400")), invalidJson("number_not_exact", "body/data/value"));
    await expectRefused("1e-400", () => post(valueText("1e-400")), invalidJson("number_not_exact", "body/data/value"));
    await expectRefused("3.14159265358979323846", () => post(valueText("3.14159265358979323846")), invalidJson("number_not_exact", "body/data/value"));
    await expectRefused("9007199254740993 (2^53 + 1)", () => post(valueText("[1, 9007199254740993]")), invalidJson("number_not_exact", "body/data/value/1"));
  }));

  test("invalid UTF-8 bytes in a string → 400 invalid_utf8 (never stored as U+FFFD)", guarded(async () => {
    const subj = (raw: number[]) => bytes('{"type":"policy.set","subject":"a', raw, 'b","data":{"name":"n","value":1}}');
    await expectRefused("lone continuation byte 0x80", () => post(subj([0x80])), invalidJson("invalid_utf8", "body/subject"));
    await expectRefused("byte 0xFF", () => post(subj([0xff])), invalidJson("invalid_utf8", "body/subject"));
    await expectRefused("truncated 2-byte sequence 0xC3 0x28", () => post(subj([0xc3, 0x28])), invalidJson("invalid_utf8", "body/subject"));
    await expectRefused("overlong '/' 0xC0 0xAF", () => post(subj([0xc0, 0xaf])), invalidJson("invalid_utf8", "body/subject"));
    await expectRefused("code point above U+10FFFF 0xF4 0x90 0x80 0x80", () => post(subj([0xf4, 0x90, 0x80, 0x80])), invalidJson("invalid_utf8", "body/subject"));
    // An encoded surrogate is invalid UTF-8 (RFC 3629); a decoder may also name it a surrogate.
    await expectRefused("UTF-8-encoded surrogate 0xED 0xA0 0x80", () => post(subj([0xed, 0xa0, 0x80])), invalidJson(["invalid_utf8", "lone_surrogate"], "body/subject"));
    await expectRefused("invalid UTF-8 in a key", () => post(bytes('{"type":"policy.set","subject":"a","data":{"name":"n","value":1,"k', [0xfe], '":1}}')), {
      ...invalidJson("invalid_utf8"),
      pathPrefix: "body/data",
    });
  }));

  test('a duplicate key ({"subject":"a","subject":"b"}) → 400 duplicate_key at body/subject', guarded(async () => {
    await expectRefused("subject twice", () => post('{"type":"policy.set","subject":"a","subject":"b","data":{"name":"n","value":1}}'), invalidJson("duplicate_key", "body/subject"));
    await expectRefused("the same key twice in data", () => post(recordText('"boundary"', '{"name":"n","name":"m","value":1}')), invalidJson("duplicate_key", "body/data/name"));
    await expectRefused("a duplicate spelled with an escape (\\u0061 = a)", () => post(valueText('{"a":1,"\\u0061":2}')), invalidJson("duplicate_key", "body/data/value/a"));
  }));

  test("nesting: 3,000 deep → too_deep, 65 deep → too_deep (64 is accepted further down)", guarded(async () => {
    await expectRefused("3,000 deep arrays in data.value", () => post(valueText(nested(2998))), invalidJson("too_deep"));
    await expectRefused("3,000 deep objects in data.value", () => post(valueText('{"a":'.repeat(2998) + "0" + "}".repeat(2998))), invalidJson("too_deep"));
    await expectRefused("a whole body 3,000 deep", () => post(nested(3000)), { ...invalidJson("too_deep"), pathPrefix: "body/0/0/0" });
    await expectRefused("3,000 unclosed brackets", () => post("[".repeat(3000)), invalidJson(["too_deep", "syntax"]));
    // body object (1) > data (2) > 63 arrays = 65 levels
    await expectRefused("a body 65 deep", () => post(valueText(nested(63))), invalidJson("too_deep"));
  }));

  test("a noncharacter (U+FFFE, U+FFFF, U+FDD0, U+10FFFF), escaped or raw → 400 noncharacter", guarded(async () => {
    await expectRefused("\\ufffe escaped", () => post(recordText('"a\\ufffeb"')), invalidJson("noncharacter", "body/subject"));
    await expectRefused("U+FFFE raw (EF BF BE)", () => post(bytes('{"type":"policy.set","subject":"a', [0xef, 0xbf, 0xbe], 'b","data":{"name":"n","value":1}}')), invalidJson("noncharacter", "body/subject"));
    await expectRefused("\\uffff escaped", () => post(recordText('"\\uffff"')), invalidJson("noncharacter", "body/subject"));
    await expectRefused("\\ufdd0 escaped", () => post(recordText('"\\ufdd0"')), invalidJson("noncharacter", "body/subject"));
    await expectRefused("U+10FFFF as \\udbff\\udfff", () => post(recordText('"\\udbff\\udfff"')), invalidJson("noncharacter", "body/subject"));
    await expectRefused("U+1FFFE raw (F0 9F BF BE) in data", () => post(bytes('{"type":"policy.set","subject":"a","data":{"name":"', [0xf0, 0x9f, 0xbf, 0xbe], '","value":1}}')), invalidJson("noncharacter", "body/data/name"));
    await expectRefused("a noncharacter in a key", () => post(recordText('"boundary"', '{"name":"n","value":1,"\\ufdef":1}')), { ...invalidJson("noncharacter"), pathPrefix: "body/data" });
  }));

  test("a byte-order mark → 400 bom; UTF-16/UTF-32 bodies and other charsets → 415", guarded(async () => {
    const text = recordText('"boundary"');
    await expectRefused("UTF-8 BOM then a valid body", () => post(bytes([0xef, 0xbb, 0xbf], text)), invalidJson("bom"));
    const utf16le = Buffer.from(text, "utf16le");
    const utf16be = Buffer.from(utf16le).swap16();
    await expectRefused("UTF-16LE with BOM", () => post(Buffer.concat([Buffer.from([0xff, 0xfe]), utf16le])), unsupported);
    await expectRefused("UTF-16BE with BOM", () => post(Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be])), unsupported);
    await expectRefused("UTF-16LE without BOM", () => post(utf16le), unsupported);
    await expectRefused("UTF-16BE without BOM", () => post(utf16be), unsupported);
    const utf32le = Buffer.alloc(text.length * 4);
    for (let i = 0; i < text.length; i++) utf32le.writeUInt32LE(text.charCodeAt(i), i * 4);
    await expectRefused("UTF-32LE with BOM", () => post(Buffer.concat([Buffer.from([0xff, 0xfe, 0, 0]), utf32le])), unsupported);
    await expectRefused("charset=utf-16 on UTF-8 bytes", () => post(text, { ...auth(), "content-type": "application/json; charset=utf-16" }), unsupported);
    await expectRefused("charset=iso-8859-1", () => post(text, { ...auth(), "content-type": "application/json; charset=iso-8859-1" }), unsupported);
  }));

  test("Content-Encoding other than identity → 415 (br or gzip garbage, and valid gzip too)", guarded(async () => {
    const garbage = Buffer.from("\x8b\x00not compressed at all\xff\xfe", "latin1");
    await expectRefused("Content-Encoding: br with garbage", () => post(garbage, { ...jsonHeaders(), "content-encoding": "br" }), unsupported);
    await expectRefused("Content-Encoding: gzip with garbage", () => post(garbage, { ...jsonHeaders(), "content-encoding": "gzip" }), unsupported);
    await expectRefused("Content-Encoding: deflate with garbage", () => post(garbage, { ...jsonHeaders(), "content-encoding": "deflate" }), unsupported);
    await expectRefused("Content-Encoding: gzip with a valid gzip of a valid body", () => post(gzipSync(recordText('"boundary"')), { ...jsonHeaders(), "content-encoding": "gzip" }), unsupported);
    await expectRefused("Content-Encoding: x-unknown", () => post(recordText('"boundary"'), { ...jsonHeaders(), "content-encoding": "x-unknown" }), unsupported);
  }));

  test("not JSON at all → 400 invalid_json syntax", guarded(async () => {
    await expectRefused("an empty body", () => post(""), invalidJson("syntax"));
    await expectRefused("trailing garbage", () => post(recordText('"boundary"') + "x"), invalidJson("syntax"));
    await expectRefused("two JSON texts", () => post(recordText('"boundary"') + recordText('"boundary"')), invalidJson("syntax"));
    await expectRefused("NaN", () => post(valueText("NaN")), invalidJson("syntax"));
    await expectRefused("a raw control character in a string", () => post(bytes('{"type":"policy.set","subject":"a', [0x01], '","data":{"name":"n","value":1}}')), invalidJson("syntax"));
  }));
});

describe("parameters that do not decode → 400, and other refusals of the contract", () => {
  /** GETs each path in turn, each expected to be refused 400 bad_request with nothing written; `note` says what the value is. */
  const expectGetsRefused = async (paths: readonly (readonly [path: string, note: string])[]): Promise<void> => {
    for (const [p, note] of paths) await expectRefused(note === "" ? p : `${p} (${note})`, () => http(s().baseUrl, "GET", p), badRequest);
  };

  test("GET /v1/subjects/%ZZ/history and x%ED%A0%80y → 400 bad_request", guarded(() => expectGetsRefused([
    ["/v1/subjects/%ZZ/history", ""],
    ["/v1/subjects/x%ED%A0%80y/history", "an encoded surrogate"],
    ["/v1/subjects/%FF/history", "invalid UTF-8"],
    ["/v1/subjects/a%/history", "truncated escape"],
  ])));

  test("GET /v1/records?subject=%ZZ and other undecodable subjects → 400 bad_request", guarded(() => expectGetsRefused([
    ["/v1/records?subject=%ZZ", ""],
    ["/v1/records?subject=x%ED%A0%80y", ""],
    ["/v1/records?subject=%C0%AF", "overlong"],
    ["/v1/records?subject=%", ""],
  ])));

  test("GET /v1/audit/verify?from=snapshot without a snapshot → a 4xx JSON error, not a 500", guarded(async () => {
    await waitQuiescent(s().baseUrl);
    const before = await logState();
    const r = await http(s().baseUrl, "GET", "/v1/audit/verify?from=snapshot", { token: s().token });
    const after = await logState();
    const problems = [...sameLog(before, after)];
    if (r.status < 400 || r.status > 499) problems.push(`status ${r.status}, expected 4xx`);
    const shape = errorShapeProblem(r);
    if (shape !== null) problems.push(shape);
    const body = r.json as Record<string, unknown> | undefined;
    if (body !== undefined && "ok" in body) problems.push("the body looks like a verification report (ok field)");
    expect({ seen: `${r.status} ${r.text.slice(0, 400)}`, problems }).toEqual({ seen: `${r.status} ${r.text.slice(0, 400)}`, problems: [] });
  }));

  test("tokens: none → 401, a wrong token of the same length → 403, longer/shorter → 403", guarded(async () => {
    const token = s().token;
    const flipLast = token.slice(0, -1) + (token.endsWith("0") ? "1" : "0");
    const flipFirst = (token.startsWith("0") ? "1" : "0") + token.slice(1);
    expect(flipLast.length).toBe(token.length);
    const body = recordText('"boundary"');
    const ct = { "content-type": "application/json" };
    await expectRefused("POST without Authorization", () => post(body, ct), { status: 401, error: "unauthorized" });
    await expectRefused("POST with 'Bearer' and nothing", () => post(body, { ...ct, authorization: "Bearer " }), { status: 401, error: "unauthorized" });
    await expectRefused("POST with a same-length token, last char wrong", () => post(body, { ...ct, authorization: `Bearer ${flipLast}` }), { status: 403, error: "forbidden" });
    await expectRefused("POST with a same-length token, first char wrong", () => post(body, { ...ct, authorization: `Bearer ${flipFirst}` }), { status: 403, error: "forbidden" });
    await expectRefused("POST with the token plus one char", () => post(body, { ...ct, authorization: `Bearer ${token}0` }), { status: 403, error: "forbidden" });
    await expectRefused("POST with the token minus one char", () => post(body, { ...ct, authorization: `Bearer ${token.slice(0, -1)}` }), { status: 403, error: "forbidden" });
    await expectRefused("GET /v1/audit/verify without a token", () => http(s().baseUrl, "GET", "/v1/audit/verify"), { status: 401, error: "unauthorized" });
    await expectRefused("GET /v1/audit/verify with a same-length wrong token", () => http(s().baseUrl, "GET", "/v1/audit/verify", { token: flipLast }), { status: 403, error: "forbidden" });
  }));

  test("the auditor token (<data-dir>/audit.token, 0600) verifies and can never write", guarded(async () => {
    const p = path.join(s().dir, "audit.token");
    expect(fs.existsSync(p)).toBe(true);
    expect(fs.statSync(p).mode & 0o777).toBe(0o600);
    const auditToken = fs.readFileSync(p, "utf8").trim();
    expect(auditToken).not.toBe(s().token);
    const v = await http(s().baseUrl, "GET", "/v1/audit/verify", { token: auditToken });
    expect({ status: v.status, ok: (v.json as { ok?: unknown } | undefined)?.ok }).toEqual({ status: 200, ok: true });
    await expectRefused("POST /v1/records with the auditor token", () => post(recordText('"boundary"'), { "content-type": "application/json", authorization: `Bearer ${auditToken}` }), { status: 403, error: "forbidden" });
  }));

  test("a known route with a wrong method → 405 method_not_allowed with Allow; an unknown route → 404", guarded(async () => {
    const call = (method: string, p: string) => () => http(s().baseUrl, method, p, { token: s().token });
    await expectRefused("DELETE /v1/records/1", call("DELETE", "/v1/records/1"), { status: 405, error: "method_not_allowed", headerIncludes: { allow: ["GET"] } });
    await expectRefused("PUT /v1/records", call("PUT", "/v1/records"), { status: 405, error: "method_not_allowed", headerIncludes: { allow: ["GET", "POST"] } });
    await expectRefused("PATCH /v1/records/1", call("PATCH", "/v1/records/1"), { status: 405, error: "method_not_allowed", headerIncludes: { allow: ["GET"] } });
    await expectRefused("POST /v1/status", call("POST", "/v1/status"), { status: 405, error: "method_not_allowed", headerIncludes: { allow: ["GET"] } });
    await expectRefused("DELETE /v1/audit/verify", call("DELETE", "/v1/audit/verify"), { status: 405, error: "method_not_allowed", headerIncludes: { allow: ["GET"] } });
    await expectRefused("GET /v1/no-such-route", call("GET", "/v1/no-such-route"), { status: 404, error: "not_found" });
  }));
});

describe("what the contract accepts is committed once, exactly as sent, in canonical form", () => {
  test("150 × 😀 subject (150 code points ≤ 200) → 201; a retry with the same Idempotency-Key → 200, one entry", guarded(async () => {
    const subject = E.repeat(150);
    const body = JSON.stringify({ type: "policy.set", subject, data: { name: "emoji", value: 150 } });
    const key = "boundary-emoji-150";
    const headers = { ...jsonHeaders(), "idempotency-key": key };
    const first = await expectAccepted("150 astral code points", () => post(body, headers));
    expect((JSON.parse(first.payload) as { subject: string }).subject).toBe(subject);
    const retry = await expectAccepted("the same request again", () => post(body, headers), 200);
    expect(retry.ack).toEqual(first.ack);
    const list = await http(s().baseUrl, "GET", `/v1/records?subject=${encodeURIComponent(subject)}`);
    expect({ status: list.status, entries: (list.json as { entries?: unknown[] } | undefined)?.entries?.length, text: list.text.slice(0, 200) }).toMatchObject({ status: 200, entries: 1 });
  }));

  test("200 × 😀 subject (exactly 200 code points, 400 UTF-16 units) → 201, applied", guarded(async () => {
    const subject = E.repeat(200);
    const { payload } = await expectAccepted("200 astral code points", () => post(JSON.stringify({ type: "policy.set", subject, data: { name: "emoji", value: 200 } })));
    expect((JSON.parse(payload) as { subject: string }).subject).toBe(subject);
    const st = await getStatus(s().baseUrl);
    expect(st.last_applied).toBe(st.commit_index);
  }));

  test("64 deep (body object > data > 62 arrays) → 201", guarded(async () => {
    const { payload } = await expectAccepted("a body exactly 64 deep", () => post(valueText(nested(62, '"deep"'), '"deep-64"')));
    expect(payload).toContain(`"value":${nested(62, '"deep"')}`);
  }));

  test("0.1, 1e21, 9007199254740992, 1.0, -1.5e-7 in data → 201, stored in their canonical form", guarded(async () => {
    const { payload } = await expectAccepted("exact numbers", () =>
      post(recordText('"numbers"', '{"name":"n","value":{"a":0.1,"b":1e21,"c":9007199254740992,"d":1.0,"e":-1.5e-7,"f":1E2}}')),
    );
    expect(payload).toContain('"value":{"a":0.1,"b":1e+21,"c":9007199254740992,"d":1,"e":-1.5e-7,"f":100}');
  }));

  test('"__proto__" as a key in data → 201, stored and served as an own key', guarded(async () => {
    const { entry, payload } = await expectAccepted("__proto__ key", () => post(recordText('"proto"', '{"__proto__":{"polluted":true},"name":"p","value":{"constructor":{"prototype":{"x":1}}}}')));
    expect(payload).toContain('"data":{"__proto__":{"polluted":true},"name":"p","value":{"constructor":{"prototype":{"x":1}}}}');
    const stored = JSON.parse(payload) as { data: Record<string, unknown> };
    expect(Object.prototype.hasOwnProperty.call(stored.data, "__proto__")).toBe(true);
    const served = (entry.record as { data?: Record<string, unknown> } | undefined)?.data;
    expect(served !== undefined && Object.prototype.hasOwnProperty.call(served, "__proto__")).toBe(true);
    // Nothing leaked into prototypes on the server: a plain record still reads back plainly.
    const again = await expectAccepted("a plain record after it", () => post(recordText('"proto"', '{"name":"q","value":1}')));
    expect(JSON.parse(again.payload).data).toEqual({ name: "q", value: 1 });
  }));

  test("strings I-JSON allows: U+0000 escaped, U+1BFFF, a surrogate pair, U+2028 → 201, exact", guarded(async () => {
    const { payload } = await expectAccepted("allowed strings", () =>
      post(bytes('{"type":"policy.set","subject":"ok-strings","data":{"name":"a\\u0000b","value":["', [0xf0, 0x9b, 0xbf, 0xbf], '","\\ud83d\\ude00","\u2028"]}}')),
    );
    const v = JSON.parse(payload) as { data: { name: string; value: string[] } };
    expect(v.data.name).toBe("a\u0000b");
    expect(v.data.value).toEqual(["\u{1BFFF}", E, "\u2028"]);
  }));
});

describe("response headers", () => {
  const cacheControl = async (p: string, token?: string): Promise<string> => {
    const r = await http(s().baseUrl, "GET", p, token === undefined ? {} : { token });
    if (r.status !== 200) throw new Error(`GET ${p} → ${r.status} ${r.text.slice(0, 300)}`);
    expect({ p, nosniff: r.headers.get("x-content-type-options") }).toEqual({ p, nosniff: "nosniff" });
    return r.headers.get("cache-control") ?? "(none)";
  };

  test("Cache-Control: no-store for live views, immutable for an entry and for proofs at a given size", guarded(async () => {
    const st = await waitQuiescent(s().baseUrl);
    const n = st.commit_index;
    const seen: Record<string, string> = {};
    for (const p of ["/v1/status", "/health", "/ready", "/metrics", "/v1/checkpoints/latest", "/v1/records?from=1&limit=2", `/v1/records?subject=seed-0`]) {
      seen[p] = await cacheControl(p);
    }
    seen["/v1/audit/verify"] = await cacheControl("/v1/audit/verify", s().token);
    const immutable = ["/v1/records/1", `/v1/proofs/inclusion/1?size=${n - 1}`, `/v1/proofs/consistency?from=1&to=${n - 1}`];
    for (const p of immutable) seen[p] = await cacheControl(p);
    const want: Record<string, string> = {};
    for (const p of Object.keys(seen)) want[p] = immutable.includes(p) ? "public, max-age=31536000, immutable" : "no-store";
    expect(seen).toEqual(want);
  }));

  test("an answer that can change later is never immutable (a missing index, a proof at the latest size)", guarded(async () => {
    const missing = await http(s().baseUrl, "GET", "/v1/records/999999");
    expect(missing.status).toBe(404);
    expect(errorShapeProblem(missing)).toBeNull();
    expect(missing.headers.get("cache-control") ?? "").not.toContain("immutable");
    const latest = await http(s().baseUrl, "GET", "/v1/proofs/inclusion/1");
    expect(latest.status).toBe(200);
    expect(latest.headers.get("cache-control") ?? "").not.toContain("immutable");
  }));

  test("X-Content-Type-Options: nosniff on every answer, errors included; no CORS by default", guarded(async () => {
    const answers: [string, HttpResult][] = [
      ["GET /v1/status", await http(s().baseUrl, "GET", "/v1/status", { headers: { origin: "http://evil.example" } })],
      ["GET /v1/records/0", await http(s().baseUrl, "GET", "/v1/records/0")],
      ["GET /nope", await http(s().baseUrl, "GET", "/nope")],
      ["POST /v1/records unauthenticated", await http(s().baseUrl, "POST", "/v1/records", { body: "{}", headers: { "content-type": "application/json", origin: "http://evil.example" } })],
      ["OPTIONS /v1/records preflight", await http(s().baseUrl, "OPTIONS", "/v1/records", { headers: { origin: "http://evil.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization" } })],
      ["GET /metrics", await http(s().baseUrl, "GET", "/metrics")],
    ];
    const problems: string[] = [];
    for (const [what, r] of answers) {
      if (r.status >= 500) problems.push(`${what} → ${r.status} ${r.text.slice(0, 200)}`);
      if (r.headers.get("x-content-type-options") !== "nosniff") problems.push(`${what}: X-Content-Type-Options ${JSON.stringify(r.headers.get("x-content-type-options"))}`);
      for (const h of ["access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers", "access-control-allow-credentials"]) {
        if (r.headers.get(h) !== null) problems.push(`${what}: ${h}: ${r.headers.get(h)} (CORS is off by default)`);
      }
      if (r.status >= 400 && what !== "OPTIONS /v1/records preflight") {
        const shape = errorShapeProblem(r);
        if (shape !== null) problems.push(`${what} → ${r.status}: ${shape}`);
      }
    }
    expect(problems).toEqual([]);
  }));
});

describe("afterwards the ledger still verifies", () => {
  test("GET /v1/audit/verify ok, then verify-chain exits 0 on the stopped data dir", guarded(() => expectVerifiesAndStops(s())), 120_000);
});
