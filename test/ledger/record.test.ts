// RECORD payloads at their edges: the one validation the API and apply share (DESIGN.md "State
// machine" and "Input"). Each refusal is a schema_violation whose `path` reaches the client as a
// field of the 400 body (api/errors.ts spreads details), so the path is checked with the message.
import { LedgerError } from "../../src/util/errors";
import { decodeRecord, isUtcTimestamp, parseRecordPayload, RECORD_TEXT_MAX, requestDigest } from "../../src/ledger/record";
import * as ind from "../support/independent";

const TS = "2026-01-01T00:00:00Z";
const base = { v: 1, type: "t", subject: "s", data: null, ts: TS };
const digest = "ab".repeat(32);
const bytesOf = (value: unknown): Uint8Array => Buffer.from(ind.canonicalJson(value));

/** The refusal of parseRecordPayload as the client sees it: code, message and path. */
function refusal(payload: Uint8Array): { code: string; message: string; path: unknown } {
  try {
    parseRecordPayload(payload);
  } catch (err) {
    if (err instanceof LedgerError) return { code: err.code, message: err.message, path: err.details?.path };
    throw err;
  }
  throw new Error(`accepted: ${Buffer.from(payload).toString("utf8")}`);
}
const violation = (path: string, what: string) => ({ code: "schema_violation", message: `${path} ${what}`, path });

describe("each refusal names its field", () => {
  test.each([
    ["an array", [1], violation("payload", "must be an object")],
    ["null", null, violation("payload", "must be an object")],
    ["a string", "s", violation("payload", "must be an object")],
    ["an unknown field", { ...base, x: 1 }, violation("payload/x", "is not a field of a record")],
    ["v 2", { ...base, v: 2 }, violation("payload/v", "must be 1")],
    ["v \"1\"", { ...base, v: "1" }, violation("payload/v", "must be 1")],
    ["no v", { type: "t", subject: "s", data: null, ts: TS }, violation("payload/v", "must be 1")],
    ["type a number", { ...base, type: 1 }, violation("payload/type", "must be a string")],
    ["subject empty", { ...base, subject: "" }, violation("payload/subject", "must be 1..200 characters (code points), has 0")],
    ["actor null", { ...base, actor: null }, violation("payload/actor", "must be a string")],
    ["actor 201", { ...base, actor: "a".repeat(201) }, violation("payload/actor", "must be 1..200 characters (code points), has 201")],
    ["no data", { v: 1, type: "t", subject: "s", ts: TS }, violation("payload/data", "is required")],
    ["no ts", { v: 1, type: "t", subject: "s", data: 1 }, violation("payload/ts", "must be an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SS[.fraction]Z)")],
    ["idempotency_key a number", { ...base, idempotency_key: 1, request_digest: digest }, violation("payload/idempotency_key", "must be a string")],
    ["idempotency_key 402", { ...base, idempotency_key: "k".repeat(402), request_digest: digest }, violation("payload/idempotency_key", "must be 1..401 characters (code points), has 402")],
    ["a digest without a key", { ...base, request_digest: digest }, violation("payload/request_digest", "goes with idempotency_key")],
    ["a key without a digest", { ...base, idempotency_key: "k" }, violation("payload/request_digest", "goes with idempotency_key")],
    ["a digest with a prefix", { ...base, idempotency_key: "k", request_digest: `x${digest}` }, violation("payload/request_digest", "must be 64 lowercase hex digits")],
    ["a digest with a suffix", { ...base, idempotency_key: "k", request_digest: `${digest}x` }, violation("payload/request_digest", "must be 64 lowercase hex digits")],
    ["a digest of 63", { ...base, idempotency_key: "k", request_digest: digest.slice(1) }, violation("payload/request_digest", "must be 64 lowercase hex digits")],
    ["a digest of null", { ...base, idempotency_key: "k", request_digest: null }, violation("payload/request_digest", "must be 64 lowercase hex digits")],
    // A one-element array reads as its element in a pattern test: the type is checked first.
    ["a digest in an array", { ...base, idempotency_key: "k", request_digest: [digest] }, violation("payload/request_digest", "must be 64 lowercase hex digits")],
    ["a ts in an array", { ...base, ts: [TS] }, violation("payload/ts", "must be an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SS[.fraction]Z)")],
  ])("%s", (_name, value, want) => {
    expect(refusal(bytesOf(value))).toEqual(want);
  });

  test("bytes that are not canonical, or not I-JSON, are refused before any field is read", () => {
    expect(refusal(Buffer.from(`{"v":1,"type":"t","subject":"s","data":null,"ts":"${TS}" }`))).toEqual(violation("payload", "is not in canonical form (RFC 8785)"));
    expect(refusal(Buffer.from(`{"type":"t","v":1,"subject":"s","data":null,"ts":"${TS}"}`))).toEqual(violation("payload", "is not in canonical form (RFC 8785)"));
    // The I-JSON check runs on the payload with the pointer rooted at "payload".
    expect(refusal(Buffer.from('{"v":1,"v":1}'))).toMatchObject({ code: "invalid_json", path: "payload/v" });
  });
});

describe("the fields at their limits", () => {
  test("type, subject and actor count code points: 200 astral characters pass, 201 do not", () => {
    const astral = "\u{1F600}";
    for (const key of ["type", "subject", "actor"]) {
      expect(parseRecordPayload(bytesOf({ ...base, [key]: astral.repeat(RECORD_TEXT_MAX) }))).toMatchObject({ [key]: astral.repeat(200) });
      expect(refusal(bytesOf({ ...base, [key]: astral.repeat(201) }))).toEqual(violation(`payload/${key}`, "must be 1..200 characters (code points), has 201"));
    }
  });

  test("every field of a record together is one valid payload, returned as parsed", () => {
    const full = { ...base, actor: "me", data: { x: [1, "y"] }, idempotency_key: "c:r", request_digest: digest };
    expect(parseRecordPayload(bytesOf(full))).toEqual(full);
  });

  test("data may be any I-JSON value", () => {
    for (const data of [null, false, 0, "", [], {}, { a: [{ b: 1.5 }] }]) expect(parseRecordPayload(bytesOf({ ...base, data })).data).toEqual(data);
  });

  test("ts: every digit position must be a digit, the fraction 1..9 digits", () => {
    const good = ["2026-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "0000-01-01T00:00:00.0Z"];
    for (const ts of good) expect(parseRecordPayload(bytesOf({ ...base, ts })).ts).toBe(ts);
    const bad = ["2026-01-01T00:00:00.aZ", "2026-01-01T00:00:0aZ", "202a-01-01T00:00:00Z", "2026-01-01t00:00:00Z", "2026-01-01T00:00:00z", "26-01-01T00:00:00Z", "2026-1-01T00:00:00Z"];
    for (const ts of bad) expect(refusal(bytesOf({ ...base, ts }))).toEqual(violation("payload/ts", "must be an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SS[.fraction]Z)"));
  });

  test("ts: the date and time must exist (the pattern alone let month 13 and February 30 in)", () => {
    const exist = [
      "2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "0000-02-29T00:00:00Z", "2026-04-30T00:00:00Z", "2026-12-31T23:59:59Z",
      "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z", "2026-10-31T00:00:00Z",
    ];
    for (const ts of exist) expect({ ts, ok: isUtcTimestamp(ts) }).toEqual({ ts, ok: true });
    const missing = [
      "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-32T00:00:00Z", "2026-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
      "2026-02-30T00:00:00Z", "2026-04-31T00:00:00Z", "2026-06-31T00:00:00Z", "2026-09-31T00:00:00Z", "2026-11-31T00:00:00Z",
      "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z",
    ];
    for (const ts of missing) {
      expect({ ts, ok: isUtcTimestamp(ts) }).toEqual({ ts, ok: false });
      expect(refusal(bytesOf({ ...base, ts }))).toEqual(violation("payload/ts", "must be an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SS[.fraction]Z)"));
    }
    // Every day of a leap and a common year, against the calendar Date keeps.
    for (const year of [2023, 2024]) {
      for (let d = Date.UTC(year, 0, 1); d < Date.UTC(year + 1, 0, 1); d += 86_400_000) expect(isUtcTimestamp(new Date(d).toISOString())).toBe(true);
    }
  });
});

describe("requestDigest", () => {
  test("is over exactly type, subject, data and actor: each changes it", () => {
    const req = { type: "t", subject: "s", data: { x: 1 }, actor: "a" };
    const d = requestDigest(req);
    expect(d).toBe(ind.sha256(Buffer.from(ind.canonicalJson(req))).toString("hex"));
    for (const other of [{ ...req, type: "u" }, { ...req, subject: "u" }, { ...req, data: { x: 2 } }, { ...req, actor: "b" }]) {
      expect(requestDigest(other)).not.toBe(d);
    }
  });

  test("an absent actor is left out of the digested body, not written as null", () => {
    const req = { type: "t", subject: "s", data: null };
    expect(requestDigest(req)).toBe(ind.sha256(Buffer.from('{"data":null,"subject":"s","type":"t"}')).toString("hex"));
  });
});

describe("decodeRecord", () => {
  test("a record, or null for bytes that are not one (never a throw)", () => {
    expect(decodeRecord(bytesOf(base))).toEqual(base);
    for (const bad of [Buffer.from(""), Buffer.from([0xff]), Buffer.from([0x00, 0x7b]), bytesOf({ ...base, v: 2 }), Buffer.from("[]")]) {
      expect(decodeRecord(bad)).toBeNull();
    }
  });
});
