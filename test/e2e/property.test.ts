// Issue 7's property test against a real `resonetics serve`: fast-check sends arbitrary JSON-like
// bodies (any JSON value, records with hostile strings and numbers, mutated valid records, random
// bytes, deep nesting), random header combinations (Content-Type, Content-Encoding, a wrong
// Content-Length, chunked, junk Idempotency-Keys, missing or wrong tokens) and random parameter
// strings, each as exact bytes over a socket. Every answer is 2xx or 4xx, every error JSON
// {error, message}; a 201 stored exactly what was sent; the log grows by exactly the number of
// 201s; GET /v1/audit/verify is ok and `verify-chain` exits 0 at the end.
// Reproduce a failure with RESONETICS_SEED=<seed printed> npx jest test/e2e/property.test.ts.
import fc from "fast-check";
import { canonicalJson, testSeed } from "../support/independent";
import { EntryView, RawAnswer, errorShapeProblem, isAppendAck, rawHttp } from "../support/ledger-client";
import { getJson } from "../support/server";
import { aroundLog, expectVerifiesAndStops, serverSuite } from "../support/suite";

const SEED = testSeed();
/** Requests per run: enough to hit every generator branch many times, and well under a minute. */
const NUM_RUNS = 500;

const { server, guarded } = serverSuite("test/e2e/property.test.ts", { reproduce: `seed ${SEED} (numRuns ${NUM_RUNS}): RESONETICS_SEED=${SEED} ` });

// ---------------------------------------------------------------- generators

const TYPES = ["policy.set", "proposal.open", "vote.cast", "decision.record"];
/** A few keys, so that retries (200) and reuse with another body (409) both happen. */
const KEY_POOL = ["prop-k1", "prop-k2", "prop-k3"];

/** Header values with any byte but CR/LF (those would reframe the request, which the walk test covers). */
const headerJunk = fc.string({ unit: fc.integer({ min: 0, max: 255 }).filter((b) => b !== 10 && b !== 13).map((b) => String.fromCharCode(b)), maxLength: 40 });

const hostileString = fc.oneof(
  fc.string({ unit: "binary", minLength: 1, maxLength: 12 }), // lone surrogates, noncharacters, astral
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }),
  fc.string({ minLength: 1, maxLength: 12 }),
  fc.constantFrom("\u{1F600}".repeat(150), "\u{1F600}".repeat(201), "x\ud800y", "\ufffe", "\u0000", "a".repeat(201), "__proto__"),
);

const numberLiteral = fc.oneof(
  fc.double().map((d) => String(d)), // NaN and Infinity are not JSON: a syntax refusal
  fc.bigInt({ min: -(10n ** 25n), max: 10n ** 25n }).map((b) => b.toString()),
  fc.tuple(fc.integer({ min: -99999, max: 99999 }), fc.integer({ min: -400, max: 400 })).map(([m, e]) => `${m}e${e}`),
  fc.tuple(fc.integer({ min: 0, max: 999 }), fc.stringMatching(/^[0-9]{1,25}$/)).map(([i, f]) => `${i}.${f}`),
  fc.constantFrom("0.1", "1e21", "9007199254740992", "9007199254740993", "12345678901234567890", "1e400", "1e-400", "-0", "1E+2", "-0.0e0"),
);

const jsonDepth = (depth: number, inner: string): string => "[".repeat(depth) + inner + "]".repeat(depth);

/** A record body as a JS value (for JSON.stringify), sometimes valid, sometimes not quite. */
const recordValue = fc.record(
  {
    type: fc.oneof(fc.constantFrom(...TYPES), hostileString),
    subject: hostileString,
    data: fc.oneof(
      fc.record({ name: hostileString, value: fc.jsonValue({ maxDepth: 3 }) }),
      fc.record({ title: hostileString }),
      fc.record({ proposal: hostileString, choice: fc.constantFrom("yes", "no", "abstain", "maybe") }),
      fc.jsonValue({ maxDepth: 3 }),
      fc.object({ maxDepth: 2 }),
    ),
    actor: hostileString,
  },
  { requiredKeys: ["type", "subject", "data"] },
);

const validText = fc.record({ subject: fc.string({ minLength: 1, maxLength: 20 }), name: fc.string({ minLength: 1, maxLength: 10 }), value: fc.jsonValue({ maxDepth: 2 }) }).map(
  (r) => JSON.stringify({ type: "policy.set", subject: r.subject, data: { name: r.name, value: r.value } }),
);

type Mutation = { kind: "set" | "insert" | "delete"; at: number; byte: number } | { kind: "escape"; at: number; esc: string };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constantFrom<"set" | "insert" | "delete">("set", "insert", "delete"), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant<"escape">("escape"), at: fc.nat(), esc: fc.constantFrom("\\ud800", "\\udfff", "\\ufffe", "\\uffff", "\\ufdd0", "\\u0000", "\\", "\\x", "\\u12") }),
);

function mutate(text: string, muts: readonly Mutation[]): Buffer {
  let b = Buffer.from(text, "utf8");
  for (const m of muts) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    if (m.kind === "escape") {
      // An escape lands inside a string: just after some quote at or after `at`.
      const q = b.indexOf(0x22, at);
      const pos = q < 0 ? at : q + 1;
      b = Buffer.concat([b.subarray(0, pos), Buffer.from(m.esc), b.subarray(pos)]);
    } else if (m.kind === "set") b[at] = m.byte;
    else if (m.kind === "insert") b = Buffer.concat([b.subarray(0, at), Buffer.from([m.byte]), b.subarray(at)]);
    else b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
  }
  return b;
}

interface Body {
  readonly what: string;
  readonly bytes: Buffer;
}

const body: fc.Arbitrary<Body> = fc.oneof(
  { weight: 6, arbitrary: validText.map((t) => ({ what: "valid policy.set", bytes: Buffer.from(t) })) },
  { weight: 3, arbitrary: recordValue.map((v) => ({ what: "record-like value", bytes: Buffer.from(JSON.stringify(v)) })) },
  { weight: 2, arbitrary: fc.jsonValue().map((v) => ({ what: "any JSON value", bytes: Buffer.from(JSON.stringify(v) ?? "null") })) },
  { weight: 3, arbitrary: fc.tuple(validText, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([t, m]) => ({ what: "mutated valid record", bytes: mutate(t, m) })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((u) => ({ what: "random bytes", bytes: Buffer.from(u) })) },
  {
    weight: 2,
    arbitrary: numberLiteral.map((n) => ({ what: `number ${n.slice(0, 40)}`, bytes: Buffer.from(`{"type":"policy.set","subject":"numbers","data":{"name":"n","value":${n}}}`) })),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 200 }).map((d) => ({ what: `value nested ${d} deep`, bytes: Buffer.from(`{"type":"policy.set","subject":"deep","data":{"name":"n","value":${jsonDepth(d, "1")}}}`) })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(validText, fc.constantFrom<"bom" | "utf16le" | "dupkey" | "trailing">("bom", "utf16le", "dupkey", "trailing")).map(([t, how]) => ({
      what: `valid record, ${how}`,
      bytes:
        how === "bom" ? Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(t)])
        : how === "utf16le" ? Buffer.from(t, "utf16le")
        : how === "dupkey" ? Buffer.from(t.replace('{"type":"policy.set"', '{"type":"policy.set","type":"policy.set"'))
        : Buffer.from(t + " x"),
    })),
  },
);

const contentType = fc.oneof(
  { weight: 16, arbitrary: fc.constant<string | undefined>("application/json") },
  {
    weight: 4,
    arbitrary: fc.constantFrom<string | undefined>(
      undefined, "application/json; charset=utf-8", "APPLICATION/JSON", 'application/json;charset="UTF-8"', "application/json; charset=utf-16",
      "application/json; charset=latin1", "text/plain", "application/jsonx", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "*/*",
    ),
  },
  { weight: 1, arbitrary: headerJunk.map<string | undefined>((j) => j) },
);
const contentEncoding = fc.oneof(
  { weight: 16, arbitrary: fc.constant<string | undefined>(undefined) },
  { weight: 2, arbitrary: fc.constantFrom<string | undefined>("identity", "gzip", "br", "deflate", "gzip, identity", "x-unknown", "IDENTITY") },
);
const idempotencyKey = fc.oneof(
  { weight: 5, arbitrary: fc.constant<string | undefined>(undefined) },
  { weight: 3, arbitrary: fc.constantFrom<string | undefined>(...KEY_POOL) },
  { weight: 1, arbitrary: headerJunk.map<string | undefined>((j) => j) },
  { weight: 1, arbitrary: fc.constantFrom<string | undefined>("", " ", "a".repeat(201), "ключ", "k\x7f") },
);
type Auth = "token" | "none" | "wrong" | "malformed";
const authKind = fc.oneof({ weight: 16, arbitrary: fc.constant<Auth>("token") }, { weight: 1, arbitrary: fc.constantFrom<Auth>("none", "wrong", "malformed") });
type Framing = "exact" | "short" | "long" | "chunked" | "two-lengths";
const framing = fc.oneof({ weight: 10, arbitrary: fc.constant<Framing>("exact") }, { weight: 2, arbitrary: fc.constantFrom<Framing>("short", "long", "chunked", "two-lengths") });

/** Bytes of a path or query parameter: some percent-encoded, some raw, some broken escapes. */
const paramText = fc
  .array(
    fc.oneof(
      fc.integer({ min: 0x30, max: 0x39 }).map((b) => String.fromCharCode(b)),
      fc.integer({ min: 0, max: 255 }).map((b) => `%${b.toString(16).padStart(2, "0").toUpperCase()}`),
      fc.constantFrom("%", "%Z", "%ZZ", "%ED%A0%80", "%F0%9F%98%80", "-", "e", ".", "x", "&", "=", "+", "[]", "%2F"),
      fc.integer({ min: 0x80, max: 0xff }).map((b) => String.fromCharCode(b)), // a raw non-ASCII byte in the target
    ),
    { maxLength: 12 },
  )
  .map((parts) => parts.join(""));

const ROUTE_TEMPLATES = [
  "/v1/records/{p}", "/v1/records?from={p}&limit={q}", "/v1/records?subject={p}", "/v1/subjects/{p}/history", "/v1/proofs/inclusion/{p}?size={q}",
  "/v1/proofs/consistency?from={p}&to={q}", "/v1/audit/verify?from={p}&to={q}", "/v1/checkpoints/latest?consistency={p}", "/v1/status?{p}={q}", "/v1/stream?from={p}",
];

type Req =
  | { kind: "post"; body: Body; contentType: string | undefined; contentEncoding: string | undefined; idempotencyKey: string | undefined; auth: Auth; framing: Framing }
  | { kind: "get"; template: string; p: string; q: string; auth: Auth };

const request: fc.Arbitrary<Req> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant<"post">("post"), body, contentType, contentEncoding, idempotencyKey, auth: authKind, framing }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant<"get">("get"), template: fc.constantFrom(...ROUTE_TEMPLATES), p: paramText, q: paramText, auth: authKind }) },
);

// ---------------------------------------------------------------- sending

function authHeader(auth: Auth, token: string): string {
  switch (auth) {
    case "token":
      return `Authorization: Bearer ${token}\r\n`;
    case "none":
      return "";
    case "wrong":
      return `Authorization: Bearer ${token.slice(0, -1)}${token.endsWith("0") ? "1" : "0"}\r\n`;
    case "malformed":
      return `Authorization: Basic ${token}\r\n`;
  }
}

function encode(r: Req, token: string): { bytes: Buffer; halfClose: boolean } {
  if (r.kind === "get") {
    const target = r.template.replace("{p}", r.p).replace("{q}", r.q);
    return { bytes: Buffer.from(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${authHeader(r.auth, token)}Connection: close\r\n\r\n`, "latin1"), halfClose: false };
  }
  let h = `POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n${authHeader(r.auth, token)}`;
  if (r.contentType !== undefined) h += `Content-Type: ${r.contentType}\r\n`;
  if (r.contentEncoding !== undefined) h += `Content-Encoding: ${r.contentEncoding}\r\n`;
  if (r.idempotencyKey !== undefined) h += `Idempotency-Key: ${r.idempotencyKey}\r\n`;
  const b = r.body.bytes;
  switch (r.framing) {
    case "exact":
      return { bytes: Buffer.concat([Buffer.from(`${h}Content-Length: ${b.length}\r\nConnection: close\r\n\r\n`, "latin1"), b]), halfClose: false };
    case "short": // the server reads fewer bytes than were sent: a truncated body
      return { bytes: Buffer.concat([Buffer.from(`${h}Content-Length: ${Math.max(0, b.length - 1 - (b.length >> 2))}\r\nConnection: close\r\n\r\n`, "latin1"), b]), halfClose: false };
    case "long": // more promised than sent, then EOF: nothing can be answered but nothing may be written
      return { bytes: Buffer.concat([Buffer.from(`${h}Content-Length: ${b.length + 7}\r\nConnection: close\r\n\r\n`, "latin1"), b]), halfClose: true };
    case "chunked": {
      const mid = b.length >> 1;
      const chunk = (c: Buffer): Buffer => Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from("\r\n")]);
      return { bytes: Buffer.concat([Buffer.from(`${h}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n`, "latin1"), chunk(b.subarray(0, mid)), chunk(b.subarray(mid)), Buffer.from("0\r\n\r\n")]), halfClose: false };
    }
    case "two-lengths":
      return { bytes: Buffer.concat([Buffer.from(`${h}Content-Length: ${b.length}\r\nContent-Length: ${b.length + 1}\r\nConnection: close\r\n\r\n`, "latin1"), b]), halfClose: true };
  }
}

const describeReq = (r: Req): string =>
  r.kind === "get"
    ? `GET ${r.template} p=${JSON.stringify(r.p)} q=${JSON.stringify(r.q)} auth=${r.auth}`
    : `POST ${r.body.what} (${r.body.bytes.length} bytes: ${JSON.stringify(r.body.bytes.subarray(0, 120).toString("latin1"))}) ct=${JSON.stringify(r.contentType)} ce=${JSON.stringify(r.contentEncoding)} key=${JSON.stringify(r.idempotencyKey)} auth=${r.auth} framing=${r.framing}`;

/** The body bytes the server reads for this framing (a short Content-Length cuts the body). */
function bytesRead(r: Extract<Req, { kind: "post" }>): Buffer {
  const b = r.body.bytes;
  return r.framing === "short" ? b.subarray(0, Math.max(0, b.length - 1 - (b.length >> 2))) : b;
}

/** I-JSON rules a parsed value still shows (strings, keys, depth; DESIGN.md "Input"); null when none is broken. */
function iJsonProblem(v: unknown, depth = 0): string | null {
  const text = (s: string): string | null => {
    for (const ch of s) {
      const cp = ch.codePointAt(0) as number;
      if (cp >= 0xd800 && cp <= 0xdfff) return `lone surrogate U+${cp.toString(16)} in ${JSON.stringify(s)}`;
      if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return `noncharacter U+${cp.toString(16)} in ${JSON.stringify(s)}`;
    }
    return null;
  };
  if (typeof v === "string") return text(v);
  if (v === null || typeof v !== "object") return null;
  if (depth + 1 > 64) return `nesting deeper than 64`;
  if (Array.isArray(v)) {
    for (const x of v) {
      const p = iJsonProblem(x, depth + 1);
      if (p !== null) return p;
    }
    return null;
  }
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const p = text(k) ?? iJsonProblem(x, depth + 1);
    if (p !== null) return p;
  }
  return null;
}

/** The body as strict UTF-8 JSON, or undefined: the oracle for what a 201 must have stored. */
function strictParse(bytes: Buffer): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes));
  } catch {
    return undefined; // not JSON in UTF-8: such a body must never be accepted (checked by the caller)
  }
}

// ---------------------------------------------------------------- the property

describe("arbitrary requests never break the ledger", () => {
  test(
    `${NUM_RUNS} random requests: 2xx or 4xx with a JSON error, the log grows by exactly the 201s, verify-chain 0 (seed ${SEED})`,
    guarded(async () => {
      const s = server();
      let created = 0;
      const statuses: Record<string, number> = {};
      const property = fc.asyncProperty(request, async (r) => {
        const { bytes, halfClose } = encode(r, s.token);
        const a: RawAnswer | null = await rawHttp(s.port, bytes, 15_000, { halfClose });
        if (a === null) {
          // Only a request the server could not read to its end may go unanswered.
          if (!(r.kind === "post" && (r.framing === "long" || r.framing === "two-lengths"))) throw new Error(`no answer to ${describeReq(r)}`);
          statuses.none = (statuses.none ?? 0) + 1;
          return;
        }
        statuses[String(a.status)] = (statuses[String(a.status)] ?? 0) + 1;
        const where = `${describeReq(r)} → ${a.status} ${a.text.slice(0, 300)}`;
        if (!((a.status >= 200 && a.status < 300) || (a.status >= 400 && a.status < 500))) throw new Error(`not 2xx/4xx: ${where}`);
        if (a.status >= 400) {
          const shape = errorShapeProblem(a);
          if (shape !== null) throw new Error(`${shape}: ${where}`);
        }
        if (a.headers.get("x-content-type-options") !== "nosniff") throw new Error(`no nosniff: ${where}`);
        if (r.kind === "get") return;
        if (a.status === 201) {
          created++;
          if (!isAppendAck(a.json)) throw new Error(`201 without an append ack: ${where}`);
          if (r.auth !== "token") throw new Error(`201 without the token: ${where}`);
          if (r.framing === "long" || r.framing === "two-lengths") throw new Error(`201 for a misframed body: ${where}`);
          const sent = strictParse(bytesRead(r)) as { type?: unknown; subject?: unknown; data?: unknown; actor?: unknown } | undefined;
          if (sent === undefined) throw new Error(`201 for a body that is not strict UTF-8 JSON: ${where}`);
          const notIJson = iJsonProblem(sent);
          if (notIJson !== null) throw new Error(`201 for a body that is not I-JSON (${notIJson}): ${where}`);
          const entry = await getJson<EntryView>(s.baseUrl, `/v1/records/${(a.json as { index: number }).index}`);
          const stored = JSON.parse(Buffer.from(entry.payload_b64, "base64").toString("utf8")) as Record<string, unknown>;
          const sentView = canonicalJson({ type: sent.type, subject: sent.subject, data: sent.data, actor: sent.actor });
          const storedView = canonicalJson({ type: stored.type, subject: stored.subject, data: stored.data, actor: stored.actor });
          if (sentView !== storedView) throw new Error(`stored something other than what was sent: sent ${sentView.slice(0, 300)} stored ${storedView.slice(0, 300)}: ${where}`);
        } else if (a.status === 200) {
          if (r.idempotencyKey === undefined || !KEY_POOL.includes(r.idempotencyKey)) throw new Error(`200 to a POST that is no retry: ${where}`);
        } else if (a.status >= 200 && a.status < 300) {
          throw new Error(`unexpected ${a.status} to a POST: ${where}`);
        }
      });
      const { before, after } = await aroundLog(s, () => fc.assert(property, {
        seed: SEED,
        numRuns: NUM_RUNS,
        endOnFailure: true, // no shrinking: each run writes to the server, so a replay is not the same run
        reporter: (out) => {
          if (out.failed) throw new Error(`property failed (seed ${SEED}, RESONETICS_SEED=${SEED} to replay) after ${out.numRuns} runs: ${String(out.errorInstance)}\ncounterexample: ${JSON.stringify(out.counterexample)?.slice(0, 1000)}`);
        },
      }));
      process.stdout.write(`property (seed ${SEED}): ${NUM_RUNS} requests, ${created} created, statuses ${JSON.stringify(statuses)}\n`);
      expect(s.running()).toBe(true);
      expect({ recordsAdded: after.records - before.records }).toEqual({ recordsAdded: created });
      await expectVerifiesAndStops(s);
    }),
    120_000,
  );
});
