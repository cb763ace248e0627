// Acceptance 6 of issue 7, as real request bodies: the 318 parsing cases of JSONTestSuite
// (test/fixtures/json-test-suite/test_parsing, see its README) sent byte for byte as the body of
// POST /v1/records to a real node, every one of them (a superset of the per-class sample the issue
// asks for). A refused file answers 400 invalid_json with the reason the README implies (or 415
// for a UTF-16 text) and writes nothing; a file that is I-JSON is never refused as invalid_json
// (it is no record, so it fails schema validation instead). Then each I-JSON y_ file's value is
// embedded as data.value of a valid record: 201, stored in canonical form, one record each; each
// non-I-JSON y_ file and each i_ file embedded the same way is refused with the same reason.
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO_ROOT, http, mapPool } from "../support/server";
import { canonicalJson } from "../support/independent";
import { EntryView, errorShapeProblem, isAppendAck } from "../support/ledger-client";
import { aroundLog, expectNothingWritten, expectVerifiesAndStops, serverSuite } from "../support/suite";

const SUITE_DIR = path.join(REPO_ROOT, "test", "fixtures", "json-test-suite", "test_parsing");
/** Above the largest suite file (250,001 bytes), so every file reaches the parser rather than the 413. */
const BODY_LIMIT = 300_000;

const { server, guarded } = serverSuite("test/e2e/json-suite-requests.test.ts", { start: { extraArgs: ["--body-limit", String(BODY_LIMIT)] } });

const files = fs.readdirSync(SUITE_DIR).filter((f) => f.endsWith(".json")).sort();
const read = (f: string): Buffer => fs.readFileSync(path.join(SUITE_DIR, f));

/**
 * The y_ files that are valid JSON but not I-JSON, each with why (README: "name each such
 * exception in the test, with why"). No y_ number is among them: each y_ number literal keeps its
 * decimal value through the shortest round-trip form (123e65 → 1.23e+67, -0 → 0, 1E22 → 1e+22).
 */
const Y_NOT_IJSON: Readonly<Record<string, { reason: string; why: string }>> = {
  "y_object_duplicated_key.json": { reason: "duplicate_key", why: '{"a":"b","a":"c"}: a duplicate key (RFC 7493 2.3)' },
  "y_object_duplicated_key_and_value.json": { reason: "duplicate_key", why: '{"a":"b","a":"b"}: a duplicate key, even with the same value' },
  "y_string_escaped_noncharacter.json": { reason: "noncharacter", why: "\\uFFFF escaped: a noncharacter (RFC 7493 2.1)" },
  "y_string_last_surrogates_1_and_2.json": { reason: "noncharacter", why: "\\uDBFF\\uDFFF is U+10FFFF, a noncharacter" },
  "y_string_nonCharacterInUTF-8_U+10FFFF.json": { reason: "noncharacter", why: "U+10FFFF raw in UTF-8" },
  "y_string_nonCharacterInUTF-8_U+FFFF.json": { reason: "noncharacter", why: "U+FFFF raw in UTF-8" },
  "y_string_unicode_U+10FFFE_nonchar.json": { reason: "noncharacter", why: "\\uDBFF\\uDFFE is U+10FFFE" },
  "y_string_unicode_U+1FFFE_nonchar.json": { reason: "noncharacter", why: "\\uD83F\\uDFFE is U+1FFFE" },
  "y_string_unicode_U+FDD0_nonchar.json": { reason: "noncharacter", why: "U+FDD0, in the U+FDD0..U+FDEF block" },
  "y_string_unicode_U+FFFE_nonchar.json": { reason: "noncharacter", why: "\\uFFFE" },
};

/** i_ files: the README's classes, each with the reason the boundary gives (or 415 for UTF-16). */
function iExpectation(f: string): { status: 400; reasons: readonly string[] } | { status: 415 } {
  if (/UTF-16|utf16/.test(f)) return { status: 415 };
  if (f === "i_structure_UTF-8_BOM_empty_object.json") return { status: 400, reasons: ["bom"] };
  if (f === "i_structure_500_nested_arrays.json") return { status: 400, reasons: ["too_deep"] };
  if (f.startsWith("i_number_")) return { status: 400, reasons: ["number_not_exact"] };
  // A surrogate written as raw UTF-8 bytes (ED A0 80) is invalid UTF-8 (RFC 3629) and a surrogate.
  if (f === "i_string_UTF8_surrogate_U+D800.json") return { status: 400, reasons: ["invalid_utf8", "lone_surrogate"] };
  if (/surrogate/.test(f)) return { status: 400, reasons: ["lone_surrogate"] };
  // invalid sequences, overlong forms, truncation, Latin-1, beyond U+10FFFF
  return { status: 400, reasons: ["invalid_utf8"] };
}

/** A text whose first bytes look like UTF-16/32 (a BOM, or a NUL among the first four): 415 is a fair answer. */
const looksWide = (b: Buffer): boolean =>
  (b.length >= 2 && ((b[0] === 0xff && b[1] === 0xfe) || (b[0] === 0xfe && b[1] === 0xff))) || b.subarray(0, 4).includes(0);

const post = (body: Buffer): ReturnType<typeof http> =>
  http(server().baseUrl, "POST", "/v1/records", { body, headers: { authorization: `Bearer ${server().token}`, "content-type": "application/json" } });

interface Seen {
  file: string;
  status: number;
  error?: unknown;
  reason?: unknown;
  path?: unknown;
  /** What is wrong with the error body's shape, or null. */
  shape: string | null;
  text: string;
}

/**
 * Sends body(f) for every name (4 in flight) and expects judge to find no problem with any answer,
 * and the log table byte-identical afterwards: none of these bodies may be written.
 */
async function expectAllRefused(names: readonly string[], body: (f: string) => Buffer, judge: (s: Seen) => readonly string[]): Promise<void> {
  await expectNothingWritten(server(), async () => {
    const seen = await mapPool(names, 4, async (f): Promise<Seen> => {
      const r = await post(body(f));
      const shape = r.status >= 400 ? errorShapeProblem(r) : null;
      const j = r.json as { error?: unknown; reason?: unknown; path?: unknown } | undefined;
      return { file: f, status: r.status, error: j?.error, reason: j?.reason, path: j?.path, shape, text: r.text.slice(0, 200) };
    });
    expect(seen.flatMap(judge)).toEqual([]);
  });
}

const show = (s: Seen): string => `${s.file} → ${s.status} ${s.text}${s.shape === null ? "" : ` (${s.shape})`}`;

describe("JSONTestSuite files as request bodies", () => {
  test("the fixture holds the 318 parsing cases (95 y_, 188 n_, 35 i_)", () => {
    const count = (p: string) => files.filter((f) => f.startsWith(p)).length;
    expect({ total: files.length, y: count("y_"), n: count("n_"), i: count("i_") }).toEqual({ total: 318, y: 95, n: 188, i: 35 });
    for (const f of Object.keys(Y_NOT_IJSON)) expect(files).toContain(f);
  });

  test(
    "every file as the raw body: refused files answer 400 invalid_json (415 for UTF-16), I-JSON files never do, nothing is written",
    guarded(async () => {
      const tally: Record<string, Record<string, number>> = { y_: {}, n_: {}, i_: {} };
      const judged = expectAllRefused(files, read, (s) => {
        const f = s.file;
        const problems: string[] = [];
        const cls = f.slice(0, 2);
        const key = `${s.status} ${String(s.error)}${s.reason === undefined ? "" : "/" + String(s.reason)}`;
        tally[cls][key] = (tally[cls][key] ?? 0) + 1;
        if (s.status >= 500 || s.shape !== null) problems.push(`bad answer: ${show(s)}`);
        if (cls === "n_") {
          const refused = (s.status === 400 && s.error === "invalid_json") || (s.status === 415 && s.error === "unsupported_media_type" && looksWide(read(f)));
          if (!refused) problems.push(`n_ not refused as invalid JSON: ${show(s)}`);
        } else if (cls === "i_") {
          const want = iExpectation(f);
          const ok = want.status === 415 ? s.status === 415 && s.error === "unsupported_media_type" : s.status === 400 && s.error === "invalid_json" && want.reasons.includes(s.reason as string);
          if (!ok) problems.push(`i_ expected ${want.status === 415 ? "415 unsupported_media_type" : `400 invalid_json/${want.reasons.join("|")}`}: ${show(s)}`);
        } else {
          const exception = Y_NOT_IJSON[f];
          if (exception !== undefined) {
            if (!(s.status === 400 && s.error === "invalid_json" && s.reason === exception.reason)) problems.push(`y_ exception (${exception.why}) expected 400 invalid_json/${exception.reason}: ${show(s)}`);
          } else if (!(s.status === 400 && s.error === "schema_violation")) {
            // I-JSON, so past the parser; no suite file is a record, so schema validation refuses it.
            problems.push(`y_ I-JSON file expected 400 schema_violation (past the parser): ${show(s)}`);
          }
        }
        return problems;
      });
      // The tally is printed whether or not the files were judged right: it is what a failure needs.
      await judged.finally(() => process.stdout.write(`JSONTestSuite as bodies: ${JSON.stringify(tally)}\n`));
    }),
    60_000,
  );

  test(
    "each I-JSON y_ file's value as data.value of a valid record: 201, stored exactly in canonical form, once each",
    guarded(async () => {
      const yes = files.filter((f) => f.startsWith("y_") && Y_NOT_IJSON[f] === undefined);
      const embed = (f: string): Buffer => Buffer.concat([Buffer.from(`{"type":"policy.set","subject":"suite","data":{"name":${JSON.stringify(f)},"value":`), read(f), Buffer.from("}}")]);
      const { before, after } = await aroundLog(server(), async () => {
        const problems: string[] = [];
        // One at a time, so the log order is the file order and a failure names one file.
        for (const f of yes) {
          const r = await post(embed(f));
          if (r.status !== 201 || !isAppendAck(r.json)) {
            problems.push(`${f} → ${r.status} ${r.text.slice(0, 200)} (expected 201)`);
            continue;
          }
          const e = await http(server().baseUrl, "GET", `/v1/records/${(r.json as { index: number }).index}`);
          const payload = Buffer.from((e.json as EntryView).payload_b64, "base64").toString("utf8");
          // The file parses the same with JSON.parse (I-JSON: no duplicates, exact numbers), so its
          // canonical form is what the payload must hold, byte for byte.
          const value = JSON.parse(read(f).toString("utf8")) as unknown;
          const want = `"data":{"name":${JSON.stringify(f)},"value":${canonicalJson(value)}}`;
          if (payload !== canonicalJson(JSON.parse(payload))) problems.push(`${f}: payload is not canonical: ${payload.slice(0, 200)}`);
          if (!payload.includes(want)) problems.push(`${f}: payload ${payload.slice(0, 300)} lacks ${want.slice(0, 200)}`);
        }
        expect(problems).toEqual([]);
      });
      expect(after.records - before.records).toBe(yes.length);
    }),
    60_000,
  );

  test(
    "each non-I-JSON y_ file and each (UTF-8) i_ file as data.value: refused with the same reason, nothing written",
    guarded(async () => {
      const names = [
        ...Object.keys(Y_NOT_IJSON),
        // UTF-16 texts and a BOM are properties of a whole body; inside one they are other errors.
        ...files.filter((f) => f.startsWith("i_") && iExpectation(f).status === 400 && f !== "i_structure_UTF-8_BOM_empty_object.json"),
      ];
      const embed = (f: string): Buffer => Buffer.concat([Buffer.from('{"type":"policy.set","subject":"suite","data":{"name":"n","value":'), read(f), Buffer.from("}}")]);
      await expectAllRefused(names, embed, (s) => {
        const problems: string[] = [];
        const want = Y_NOT_IJSON[s.file] !== undefined ? [Y_NOT_IJSON[s.file].reason] : (iExpectation(s.file) as { reasons: readonly string[] }).reasons;
        if (!(s.status === 400 && s.error === "invalid_json" && want.includes(s.reason as string))) problems.push(`${show(s)} (expected 400 invalid_json/${want.join("|")})`);
        if (typeof s.path !== "string" || !s.path.startsWith("body/data/value")) problems.push(`${s.file}: path ${JSON.stringify(s.path)} is not under body/data/value`);
        return problems;
      });
    }),
    60_000,
  );

  test("afterwards: GET /v1/audit/verify ok and verify-chain exits 0", guarded(() => expectVerifiesAndStops(server())), 120_000);
});
