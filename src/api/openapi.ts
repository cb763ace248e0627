/**
 * The OpenAPI 3.1 document of the REST API (DESIGN.md "REST API"), served at GET /v1/openapi.json.
 * It is assembled, not written by hand: the operations from ROUTES below, every schema from the
 * JSON Schema files in schemas/ (schemas/api/*.json: bodies and answers; schemas/records/*.json:
 * the data of each record type). test/api/openapi.test.ts holds it to the routes express serves
 * and to real answers, so the document cannot drift from the code unnoticed.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Request, RequestHandler, Response } from "express";
import { RESERVED_TYPE_PREFIX, SCHEMAS_DIR } from "../node/record-types";
import { assert } from "../util/assert";

/** A JSON value, as schemas/ files and the document hold them. */
export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

/** The document: the OpenAPI 3.1 fields this API fills in (paths and components are plain JSON). */
export interface OpenApiDocument {
  readonly openapi: "3.1.0";
  readonly jsonSchemaDialect: string;
  readonly info: { readonly title: string; readonly version: string; readonly description: string };
  readonly servers: ReadonlyArray<{ readonly url: string; readonly description: string }>;
  readonly tags: ReadonlyArray<{ readonly name: string; readonly description: string }>;
  readonly paths: JsonObject;
  readonly components: JsonObject;
}

/** A schema file as a named component: its name in components/schemas, and its JSON. */
export interface SchemaFile {
  readonly name: string;
  readonly schema: JsonObject;
}

/** OpenAPI 3.1's own dialect is 2020-12; schemas/ files in draft-07 are converted to it (toDialect2020). */
export const DIALECT_2020 = "https://json-schema.org/draft/2020-12/schema";
const DIALECT_07 = "http://json-schema.org/draft-07/schema#";
/** Record type schemas are components named record.<type>; schemas/api files keep their file name. */
export const RECORD_COMPONENT_PREFIX = "record.";

// ---------------------------------------------------------------------------------------------
// Schemas: schemas/ files → components/schemas

/** Keywords whose value is one subschema, a map of subschemas, or a list of them (draft-07 and 2020-12). */
const ONE_SCHEMA = ["additionalProperties", "unevaluatedProperties", "items", "additionalItems", "unevaluatedItems", "contains", "propertyNames", "not", "if", "then", "else", "contentSchema"];
const SCHEMA_MAP = ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"];
const SCHEMA_LIST = ["allOf", "anyOf", "oneOf", "prefixItems"];

const isObject = (v: Json | undefined): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Applies f to a schema and then to each of its subschemas, top-down, by keyword: data keywords
 * (enum, const, default, examples) and property names are never mistaken for schemas.
 */
function mapSchema(schema: Json, f: (s: JsonObject) => JsonObject): Json {
  if (!isObject(schema)) return schema; // true / false
  const out: JsonObject = { ...f(schema) };
  for (const k of ONE_SCHEMA) if (k in out) out[k] = Array.isArray(out[k]) ? (out[k] as Json[]).map((s) => mapSchema(s, f)) : mapSchema(out[k], f);
  for (const k of SCHEMA_MAP) {
    const m = out[k];
    if (isObject(m)) out[k] = Object.fromEntries(Object.entries(m).map(([name, s]) => [name, mapSchema(s, f)]));
  }
  for (const k of SCHEMA_LIST) {
    const l = out[k];
    if (Array.isArray(l)) out[k] = l.map((s) => mapSchema(s, f));
  }
  return out;
}

/**
 * One draft-07 schema node in 2020-12 terms. Only these keywords changed meaning between the two:
 * items as a list (now prefixItems, and additionalItems became items), dependencies (split into
 * dependentRequired and dependentSchemas) and definitions (now $defs). A $ref's siblings keep
 * theirs: draft-07 says to ignore them, but the server validates with ajv, which applies them in
 * draft-07 too, and the document describes what the server accepts.
 */
function nodeTo2020(s: JsonObject): JsonObject {
  const out: JsonObject = { ...s };
  if (typeof s.$ref === "string") out.$ref = s.$ref.replace(/^#\/definitions\//, "#/$defs/");
  if (Array.isArray(s.items)) {
    out.prefixItems = s.items;
    delete out.items;
    if ("additionalItems" in s) out.items = s.additionalItems;
    delete out.additionalItems;
  } else {
    delete out.additionalItems; // ignored in draft-07 unless items is a list
  }
  if (isObject(s.dependencies)) {
    const required: JsonObject = {};
    const schemas: JsonObject = {};
    for (const [k, v] of Object.entries(s.dependencies)) (Array.isArray(v) ? required : schemas)[k] = v;
    delete out.dependencies;
    if (Object.keys(required).length > 0) out.dependentRequired = required;
    if (Object.keys(schemas).length > 0) out.dependentSchemas = schemas;
  }
  if ("definitions" in s) {
    out.$defs = s.definitions;
    delete out.definitions;
  }
  return out;
}

/** A schema file's JSON in the 2020-12 dialect, converting draft-07; any other dialect is refused. */
export function toDialect2020(schema: JsonObject, file: string): JsonObject {
  if (schema.$schema === DIALECT_2020) return schema;
  assert(schema.$schema === DIALECT_07, `${file}: $schema must be draft-07 or 2020-12, got ${JSON.stringify(schema.$schema ?? null)}`);
  const converted = mapSchema(schema, nodeTo2020);
  assert(isObject(converted), `${file}: not a schema object`);
  return { ...converted, $schema: DIALECT_2020 };
}

const componentRef = (name: string, pointer = ""): string => `#/components/schemas/${name}${pointer}`;

/**
 * A file's schema as a component: without $schema (the document's dialect) and $id (its place in
 * the document is its identity), every $ref rewritten to point inside the document: "#/..." of
 * the file itself, or "<$id of a file>[#/...]" of another.
 */
function relocate(schema: JsonObject, name: string, ids: ReadonlyMap<string, string>): JsonObject {
  const { $schema: _dialect, $id: _id, ...rest } = schema;
  const out = mapSchema(rest, (s) => {
    if (s !== rest) assert(!("$id" in s), `${name}: a nested $id would change where its $refs resolve; use $defs`);
    if (typeof s.$ref !== "string") return s;
    const ref = s.$ref;
    if (ref.startsWith("#")) return { ...s, $ref: componentRef(name, ref.slice(1)) };
    const hash = ref.indexOf("#");
    const target = ids.get(hash < 0 ? ref : ref.slice(0, hash));
    assert(target !== undefined, `${name}: $ref ${JSON.stringify(ref)} names no schema file in schemas/`);
    return { ...s, $ref: componentRef(target, hash < 0 ? "" : ref.slice(hash + 1)) };
  });
  assert(isObject(out), `${name}: not a schema object`);
  return out;
}

function readJsonObject(file: string): JsonObject {
  const v = JSON.parse(fs.readFileSync(file, "utf8")) as Json;
  assert(isObject(v), `${file}: not a JSON object`);
  return v;
}

/** The schema files of schemas/: api/*.json by file name, records/*.json as record.<type>. */
export function loadSchemaFiles(dir: string = SCHEMAS_DIR): SchemaFile[] {
  const jsonFiles = (sub: string): string[] => fs.readdirSync(path.join(dir, sub)).filter((f) => f.endsWith(".json")).sort();
  return [
    ...jsonFiles("api").map((f) => ({ name: f.slice(0, -".json".length), schema: readJsonObject(path.join(dir, "api", f)) })),
    ...jsonFiles("records").map((f) => ({ name: RECORD_COMPONENT_PREFIX + f.slice(0, -".json".length), schema: readJsonObject(path.join(dir, "records", f)) })),
  ];
}

/** components/schemas from the files: each in 2020-12, relocated; refs between files by $id. */
function componentSchemas(files: readonly SchemaFile[]): JsonObject {
  const ids = new Map<string, string>();
  for (const f of files) {
    assert(typeof f.schema.$id === "string", `schema ${f.name} has no $id`);
    assert(!ids.has(f.schema.$id), `two schema files have $id ${f.schema.$id}`);
    ids.set(f.schema.$id, f.name);
  }
  return Object.fromEntries(files.map((f) => [f.name, relocate(toDialect2020(f.schema, f.name), f.name, ids)]));
}

// ---------------------------------------------------------------------------------------------
// Operations: the route table

type Method = "get" | "post" | "delete";
type Tag = "records" | "proofs" | "audit" | "admin" | "node" | "stream" | "explorer";

/** Bearer tokens of a data dir: admin.token writes; audit.token (or admin.token) runs the audit. */
type Auth = "admin" | "audit";

/** Answers that are an error body, by status: components/responses. */
const ERRORS = {
  307: { name: "NotLeader", headers: ["Location"], description: "This node is not the leader: Location is the same request on the leader (a write with ?redirect=1, or a linearizable read on a follower); the body names it (`leader`, `leader_address`)." },
  400: { name: "BadRequest", headers: [], description: "Bad input (a parameter, a body that is not I-JSON or breaks its schema, an unknown record type), with the reason; nothing changed." },
  401: { name: "Unauthorized", headers: [], description: "No or malformed `Authorization: Bearer <token>` (or, with --tls-client-ca, no verified client certificate)." },
  403: { name: "Forbidden", headers: [], description: "The token is not valid for this route." },
  404: { name: "NotFound", headers: [], description: "Nothing there (yet): an index beyond the commit index, no checkpoint yet, an unknown subject or member." },
  409: { name: "Conflict", headers: [], description: "Conflicts with the ledger's state (an Idempotency-Key reused with another body, a member that already is one, a prune or audit start it cannot serve)." },
  410: { name: "Gone", headers: [], description: "Below this node's history_from: pruned by a recorded prune, or before an installed snapshot." },
  413: { name: "PayloadTooLarge", headers: [], description: "The body is larger than --body-limit." },
  415: { name: "UnsupportedMediaType", headers: [], description: "Content-Type is not application/json in UTF-8, or the body is compressed." },
  429: { name: "TooManyRequests", headers: ["Retry-After"], description: "One at a time: retry after Retry-After seconds." },
  500: { name: "VerificationFailed", headers: [], description: "The node found its own stored state inconsistent (verification_failed) and says where." },
  503: { name: "Unavailable", headers: ["Retry-After"], description: "Not now (no quorum or leader within the timeout, too many pending writes, shutting down): retry after Retry-After seconds. A write that got this was not acknowledged, and is never acknowledged unless committed." },
} as const;
type ErrorStatus = keyof typeof ERRORS;

type HeaderName = "Location" | "Retry-After" | "X-Resonetics-Consistency" | "Cache-Control" | "ETag";

/** A success answer: a component schema (or an inline one) in JSON, or another media type. */
interface Answer {
  readonly description: string;
  readonly schema?: string | JsonObject;
  readonly mediaType?: string;
  readonly headers?: readonly HeaderName[];
}

interface RouteDoc {
  readonly method: Method;
  /** In express's syntax (":index"), as routes.ts registers it. */
  readonly path: string;
  readonly operationId: string;
  readonly tag: Tag;
  readonly summary: string;
  readonly description?: string;
  readonly auth?: Auth;
  /** Reads through the read-consistency middleware: ?consistency, 307 on a follower, 503, X-Resonetics-Consistency. */
  readonly read?: true;
  readonly query?: readonly JsonObject[];
  readonly headers?: readonly JsonObject[];
  /** A component schema name for a JSON request body. */
  readonly body?: string;
  readonly answers: Readonly<Record<number, Answer>>;
  readonly errors: readonly ErrorStatus[];
}

const schemaRef = (name: string, pointer = ""): JsonObject => ({ $ref: componentRef(name, pointer) });
const INDEX = (): JsonObject => schemaRef("common", "/$defs/index");

const param = (where: "query" | "header", name: string, schema: JsonObject, description: string, required = false): JsonObject =>
  ({ name, in: where, required, schema, description });

/** Path parameters by name: every ":name" in ROUTES has one. */
const PATH_PARAMS = (): Readonly<Record<string, { schema: JsonObject; description: string }>> => ({
  index: { schema: INDEX(), description: "a log index (whole decimal number >= 1)" },
  subject: { schema: schemaRef("common", "/$defs/text"), description: "a record subject (1..200 characters)" },
  id: { schema: { type: "string", minLength: 1, maxLength: 64 }, description: "a member's node id" },
});

const Q = () => ({
  from: (description: string, fallback?: number): JsonObject => param("query", "from", fallback === undefined ? INDEX() : { ...INDEX(), default: fallback }, description),
  limit: (fallback: number, max: number): JsonObject => param("query", "limit", { type: "integer", minimum: 1, maximum: max, default: fallback }, `at most this many (${fallback} by default, at most ${max})`),
  redirect: param("query", "redirect", { enum: ["1"] }, "On a follower, 1 answers 307 with Location of the leader instead of forwarding the write to it."),
});

/**
 * The audit explorer's static files (src/api/explorer.ts) by path and media type: a page, not an
 * API, listed so that the document names every route a node serves.
 */
const EXPLORER_FILES = (): ReadonlyArray<readonly [string, string]> => [
  ["/explorer", "text/html"], ["/explorer/index.html", "text/html"], ["/explorer/explorer.js", "text/javascript"],
  ["/explorer/explorer.css", "text/css"], ["/explorer/favicon.svg", "image/svg+xml"],
];

const IMMUTABLE_NOTE = (): string => "Cache-Control: public, max-age=31536000, immutable";

const ROUTES = (): readonly RouteDoc[] => [
  {
    method: "get", path: "/health", operationId: "health", tag: "node", summary: "Alive: the process runs (a halted node is alive too and says why in /ready and /v1/status)",
    answers: { 200: { description: "alive", schema: "health" } }, errors: [],
  },
  {
    method: "get", path: "/ready", operationId: "ready", tag: "node", summary: "Ready to serve: not halted, a leader known, caught up",
    answers: { 200: { description: "ready", schema: "ready" }, 503: { description: "not ready; reasons say why", schema: "ready" } }, errors: [],
  },
  {
    method: "get", path: "/metrics", operationId: "metrics", tag: "node", summary: "Prometheus metrics",
    answers: { 200: { description: "the Prometheus text exposition format", mediaType: "text/plain; version=0.0.4; charset=utf-8", schema: { type: "string" } } }, errors: [],
  },
  {
    method: "post", path: "/v1/records", operationId: "appendRecord", tag: "records", auth: "admin", body: "record-append",
    summary: "Append a record; answers only after it is committed and applied",
    description: "Any node takes a write: a follower forwards it to the leader and relays the answer (or, with redirect=1, answers 307). " +
      "Retrying with the same idempotency key (the Idempotency-Key header, or client_id and request_id in the body, not both) and the same body answers 200 with the original record; with another body, 409. " +
      "The body's pair is the key client_id:request_id, one namespace with the header's (client_id may not contain ':', so no two pairs make one key).",
    query: [Q().redirect],
    headers: [param("header", "Idempotency-Key", { type: "string", pattern: "^[\\x21-\\x7e]{1,200}$" }, "1..200 visible ASCII characters: a retry with the same key and body is answered with the original record")],
    answers: {
      201: { description: "committed and applied", schema: "append-ack" },
      200: { description: "an earlier request with the same idempotency key and body made this record", schema: "append-ack" },
    },
    errors: [307, 400, 401, 403, 409, 413, 415, 503],
  },
  {
    method: "get", path: "/v1/records/:index", operationId: "getRecord", tag: "records", read: true, summary: "The entry at an index: hashes, term, kind, the exact payload",
    answers: { 200: { description: `the entry (${IMMUTABLE_NOTE()})`, schema: "entry", headers: ["Cache-Control"] } }, errors: [400, 404, 410],
  },
  {
    method: "get", path: "/v1/records", operationId: "listRecords", tag: "records", read: true, summary: "A page of entries from an index, or of a subject's records",
    query: [Q().from("the first index of the page", 1), Q().limit(100, 1000), param("query", "subject", schemaRef("common", "/$defs/text"), "only this subject's records")],
    answers: { 200: { description: "a page; next is the from of the following one", schema: "records-page" } }, errors: [400, 410],
  },
  {
    method: "get", path: "/v1/subjects/:subject/history", operationId: "subjectHistory", tag: "records", read: true,
    summary: "How did we get here: a subject's records with subject heads and inclusion proofs against the latest checkpoint",
    query: [
      Q().from("the log index this page starts at", 1), Q().limit(100, 500),
      param("query", "head", schemaRef("common", "/$defs/hex32"), "the subject_head of the record before this page (the last of the page before); without it the server replays at most 1000 records"),
    ],
    answers: { 200: { description: "a page of the history", schema: "history" } }, errors: [400, 404, 410, 500],
  },
  {
    method: "get", path: "/v1/proofs/inclusion/:index", operationId: "inclusionProof", tag: "proofs", read: true, summary: "RFC 9162 inclusion proof of an entry",
    query: [param("query", "size", INDEX(), `the tree size to prove against (${IMMUTABLE_NOTE()}); default: the latest checkpoint covering the index`)],
    answers: { 200: { description: "the proof", schema: "inclusion", headers: ["Cache-Control"] } }, errors: [400, 404, 410],
  },
  {
    method: "get", path: "/v1/proofs/consistency", operationId: "consistencyProof", tag: "proofs", read: true, summary: "RFC 9162 consistency proof between two tree sizes",
    query: [param("query", "from", INDEX(), "the smaller tree size", true), param("query", "to", INDEX(), `the larger tree size (${IMMUTABLE_NOTE()}); default: the latest checkpoint's`)],
    answers: { 200: { description: "the proof", schema: "consistency", headers: ["Cache-Control"] } }, errors: [400, 404, 410],
  },
  {
    method: "get", path: "/v1/checkpoints/latest", operationId: "latestCheckpoint", tag: "proofs", read: true, summary: "The latest signed checkpoint",
    answers: { 200: { description: "the checkpoint and its own log index", schema: "checkpoint" } }, errors: [404],
  },
  {
    method: "get", path: "/v1/receipts/:index", operationId: "receipt", tag: "proofs", read: true, summary: "The offline receipt of an entry (verify it with the trust file and no server)",
    answers: {
      200: { description: `the receipt, canonical JSON (${IMMUTABLE_NOTE()})`, schema: "receipt", headers: ["Cache-Control"] },
      202: { description: "no checkpoint covers the entry yet: retry after Retry-After seconds", schema: "receipt-pending", headers: ["Retry-After"] },
    },
    errors: [400, 404, 410],
  },
  {
    method: "get", path: "/v1/checkpoint", operationId: "checkpointNote", tag: "proofs", read: true, summary: "The latest checkpoint as a C2SP signed note, signed by this node's key",
    answers: { 200: { description: "a C2SP signed note", mediaType: "text/plain; charset=utf-8", schema: { type: "string" } } }, errors: [404],
  },
  {
    method: "get", path: "/v1/audit/verify", operationId: "auditVerify", tag: "audit", auth: "audit", summary: "Replay and verify this node's chain; a report",
    description: "Needs the admin or the auditor token unless the node runs with --public-audit. One audit runs at a time per node; it runs in a worker and never stalls the node.",
    query: [
      param("query", "from", { oneOf: [{ enum: ["genesis", "snapshot"] }, INDEX()], default: "genesis" }, "genesis, snapshot (the latest anchor), or the index of a retained snapshot anchor (GET /v1/snapshots)"),
      param("query", "to", INDEX(), "stop after this index (default: the last)"),
    ],
    answers: {
      200: { description: "the chain verifies", schema: "audit-report" },
      500: { description: "the chain does not verify: the report with ok false, first_bad_index and reason (or an internal error body)", schema: { oneOf: [schemaRef("audit-report"), schemaRef("error")] } },
    },
    errors: [400, 401, 403, 404, 409, 429, 503],
  },
  {
    method: "get", path: "/v1/snapshots", operationId: "snapshots", tag: "audit", summary: "Retained snapshot anchors, newest first: each starts a verification",
    answers: { 200: { description: "the anchors", schema: "snapshots" } }, errors: [],
  },
  {
    method: "post", path: "/v1/admin/prune", operationId: "prune", tag: "admin", auth: "admin", body: "prune-request",
    summary: "Delete history below an index, recorded in the log as a resonetics.prune record",
    answers: { 201: { description: "the prune record is committed; every node answers 410 below `below` once it applied it", schema: "prune-result" } },
    errors: [307, 400, 401, 403, 409, 413, 415, 503],
  },
  {
    method: "post", path: "/v1/admin/members", operationId: "addMember", tag: "admin", auth: "admin", body: "member-request",
    summary: "Add a node: as a learner, promoted to voter once it has caught up",
    answers: { 201: { description: "added and promoted", schema: "member-added" } }, errors: [307, 400, 401, 403, 409, 413, 415, 503],
  },
  {
    method: "get", path: "/v1/admin/config", operationId: "clusterConfig", tag: "admin", summary: "The cluster membership this node applies",
    answers: { 200: { description: "voters and learners", schema: "cluster-config" } }, errors: [],
  },
  {
    method: "delete", path: "/v1/admin/members/:id", operationId: "removeMember", tag: "admin", auth: "admin", summary: "Remove a member",
    answers: { 200: { description: "removed", schema: "member-removed" } }, errors: [307, 400, 401, 403, 404, 409, 503],
  },
  {
    method: "get", path: "/v1/status", operationId: "status", tag: "node", summary: "Node id, public key, role, term, leader, commit and applied index, head hash",
    answers: { 200: { description: "the node's status", schema: "status" } }, errors: [],
  },
  {
    method: "get", path: "/v1/stream", operationId: "stream", tag: "stream", summary: "WebSocket: committed entries in order, checkpoints among them, then each new commit",
    description: "A WebSocket endpoint (Connection: Upgrade, Upgrade: websocket). Each text frame is a `stream-frame` {\"type\":\"entry\",\"entry\":<as GET /v1/records/{index}>}; " +
      "check each entry's prev_hash against the hash before it, and resume with from = last index + 1. One-way: the client sends only ping, pong and close " +
      "(a data frame closes it with 1008). Close codes: 1001 shutting down, 1008 policy violation, 1011 internal error, 4004 the next entry is not in this node's log " +
      "(pruned), 4008 slow consumer; the reason says \"resume with from=N\" where that applies. A plain GET without the upgrade is a 400.",
    query: [Q().from("the first index to send", 1)],
    answers: { 101: { description: "Switching Protocols: frames follow (components/schemas/stream-frame)" } }, errors: [400, 503],
  },
  {
    method: "get", path: "/v1/openapi.json", operationId: "openapi", tag: "node", summary: "This document",
    answers: {
      200: { description: "the OpenAPI 3.1 document; ETag changes only with a new build", schema: { type: "object", required: ["openapi", "info", "paths"] }, headers: ["ETag", "Cache-Control"] },
      304: { description: "If-None-Match matched the ETag: the document has not changed" },
    },
    errors: [],
  },
  ...EXPLORER_FILES().map(([p, mediaType]): RouteDoc => ({
    method: "get", path: p, operationId: `explorer${p.slice("/explorer".length).replace(/[^A-Za-z0-9]+([A-Za-z0-9])/g, (_m, c: string) => c.toUpperCase())}`,
    tag: "explorer", summary: "The audit explorer page (it verifies in the browser with the auditor's trust file)",
    answers: { 200: { description: "the file, under a Content-Security-Policy that runs only this node's own script and stylesheet", mediaType, schema: { type: "string" } } },
    errors: [404],
  })),
];

const HEADERS = (): Readonly<Record<HeaderName, JsonObject>> => ({
  Location: { description: "the same request on the leader", schema: { type: "string" } },
  "Retry-After": { description: "seconds to wait before retrying", schema: { type: "integer", minimum: 1 } },
  "X-Resonetics-Consistency": { description: "how the read was served: linearizable (the leader confirmed its lead first) or local (this node's applied state as is)", schema: { enum: ["linearizable", "local"] } },
  "Cache-Control": { description: "public, max-age=31536000, immutable where the answer can never change; no-store otherwise", schema: { type: "string" } },
  ETag: { description: "a digest of the document", schema: { type: "string" } },
});
const headerRefs = (names: readonly HeaderName[]): JsonObject => Object.fromEntries(names.map((h) => [h, { $ref: `#/components/headers/${h}` }]));

const CONSISTENCY = (): JsonObject => param("query", "consistency", { enum: ["linearizable", "local"], default: "linearizable" },
  "linearizable (default): the leader confirms its lead before it answers, and a follower answers 307; local: this node's applied state as is, on any node");

const SECURITY = (): Readonly<Record<Auth, Json>> => ({
  admin: [{ adminToken: [] }],
  audit: [{ adminToken: [] }, { auditToken: [] }],
});

/** ":index" → "{index}": express's path syntax in OpenAPI's. */
export const pathTemplate = (expressPath: string): string => expressPath.replace(/:([A-Za-z0-9_]+)/g, "{$1}");

function content(a: Answer): JsonObject | undefined {
  if (a.schema === undefined) return undefined;
  return { [a.mediaType ?? "application/json"]: { schema: typeof a.schema === "string" ? schemaRef(a.schema) : a.schema } };
}

function operation(r: RouteDoc): JsonObject {
  const pathParams = [...r.path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => {
    const p = PATH_PARAMS()[m[1]];
    assert(p !== undefined, `${r.path}: no description of path parameter ${m[1]}`);
    return { name: m[1], in: "path", required: true, schema: p.schema, description: p.description };
  });
  const responses: JsonObject = {};
  for (const [status, a] of Object.entries(r.answers)) {
    const headers = [...(a.headers ?? []), ...(r.read === true && status === "200" ? (["X-Resonetics-Consistency"] as const) : [])];
    const c = content(a);
    responses[status] = { description: a.description, ...(headers.length > 0 ? { headers: headerRefs(headers) } : {}), ...(c === undefined ? {} : { content: c }) };
  }
  const errors: ErrorStatus[] = r.read === true ? [...r.errors, 307, 400, 503] : [...r.errors];
  for (const s of [...new Set(errors)].sort((a, b) => a - b)) {
    assert(!(s in responses), `${r.method} ${r.path}: status ${s} is both an answer and an error`);
    responses[String(s)] = { $ref: `#/components/responses/${ERRORS[s].name}` };
  }
  const parameters = [...pathParams, ...(r.read === true ? [CONSISTENCY()] : []), ...(r.query ?? []), ...(r.headers ?? [])];
  return {
    operationId: r.operationId, tags: [r.tag], summary: r.summary,
    ...(r.description === undefined ? {} : { description: r.description }),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(r.body === undefined ? {} : { requestBody: { required: true, content: { "application/json": { schema: schemaRef(r.body) } } } }),
    responses,
    ...(r.auth === undefined ? {} : { security: SECURITY()[r.auth] }),
  };
}

/**
 * POST /v1/records bodies: record-request whose data is valid against its type's schema, one
 * alternative per record type a client may write (the ledger's own resonetics.* types excluded).
 */
function recordAppendSchema(files: readonly SchemaFile[]): JsonObject {
  const types = files.filter((f) => f.name.startsWith(RECORD_COMPONENT_PREFIX)).map((f) => f.name.slice(RECORD_COMPONENT_PREFIX.length))
    .filter((t) => !t.startsWith(RESERVED_TYPE_PREFIX));
  return {
    description: "A record of one of the known types; its data is valid against that type's schema (records/<type>.json).",
    allOf: [schemaRef("record-request")],
    oneOf: types.map((t) => ({ required: ["type", "data"], properties: { type: { const: t }, data: schemaRef(RECORD_COMPONENT_PREFIX + t) } })),
  };
}

const TAGS = (): ReadonlyArray<{ name: Tag; description: string }> => [
  { name: "records", description: "Append and read records" },
  { name: "proofs", description: "Checkpoints, RFC 9162 proofs and offline receipts" },
  { name: "audit", description: "Verification of the chain, and where it can start" },
  { name: "admin", description: "Membership and retention (admin token)" },
  { name: "node", description: "What a node says of itself" },
  { name: "stream", description: "Committed entries as they happen" },
  { name: "explorer", description: "The audit explorer web page" },
];

const DESCRIPTION = (): string => [
  "Resonetics: a verifiable, hash-chained, Raft-replicated audit-log ledger (DESIGN.md \"REST API\").",
  "Errors are JSON {\"error\": code, \"message\": ...} (components/schemas/error). A known path asked with another method answers 405 with Allow; an unknown path 404.",
  "Writes need the admin token (<data-dir>/admin.token) as a bearer token; GET /v1/audit/verify takes it or the auditor token (<data-dir>/audit.token); other reads need none.",
  "With --tls-client-ca, every request also needs a client certificate signed by that CA (401 otherwise).",
].join("\n\n");

/** The document from the package version and the schema files (pure: no I/O). */
export function buildOpenApi(version: string, files: readonly SchemaFile[]): OpenApiDocument {
  const schemas = componentSchemas(files);
  assert(!("record-append" in schemas), "schemas/api/record-append.json would shadow the generated POST /v1/records body");
  schemas["record-append"] = recordAppendSchema(files);
  const paths: JsonObject = {};
  for (const r of ROUTES()) {
    const p = pathTemplate(r.path);
    const item = isObject(paths[p]) ? paths[p] : {};
    assert(!(r.method in item), `${r.method} ${r.path} is in ROUTES twice`);
    paths[p] = { ...item, [r.method]: operation(r) };
  }
  const responses = Object.fromEntries(Object.values(ERRORS).map((e) => [e.name, {
    description: e.description,
    ...(e.headers.length > 0 ? { headers: headerRefs(e.headers) } : {}),
    content: { "application/json": { schema: schemaRef("error") } },
  }]));
  return {
    openapi: "3.1.0",
    jsonSchemaDialect: DIALECT_2020,
    info: { title: "Resonetics REST API", version, description: DESCRIPTION() },
    servers: [{ url: "/", description: "the node that served this document; every node of a cluster serves the same API" }],
    tags: TAGS(),
    paths,
    components: {
      schemas,
      responses,
      headers: { ...HEADERS() },
      securitySchemes: {
        adminToken: { type: "http", scheme: "bearer", description: "the admin token, <data-dir>/admin.token: writes and admin" },
        auditToken: { type: "http", scheme: "bearer", description: "the read-only auditor token, <data-dir>/audit.token: GET /v1/audit/verify" },
      },
    },
  };
}

/** The version in package.json: src/api and dist/api both sit two folders below it. */
function packageVersion(): string {
  const pkg = readJsonObject(path.resolve(__dirname, "..", "..", "package.json"));
  assert(typeof pkg.version === "string", "package.json has no version");
  return pkg.version;
}

/** The document of this build: the package version and the schema files in schemas/. */
export function openApiDocument(dir: string = SCHEMAS_DIR): OpenApiDocument {
  return buildOpenApi(packageVersion(), loadSchemaFiles(dir));
}

/** The document encoded as served, and its ETag (a digest of those bytes). */
interface Encoded {
  readonly body: Buffer;
  readonly etag: string;
}

function encodeDocument(dir: string): Encoded {
  // A schemas/ that does not load throws here: a 500 "internal error" (src/api/errors.ts logs why).
  const body = Buffer.from(JSON.stringify(openApiDocument(dir)), "utf8");
  return { body, etag: `"${createHash("sha256").update(body).digest("hex").slice(0, 32)}"` };
}

/** Documents built at start (preloadOpenApi), by schemas dir: what the routes over that dir serve. */
const preloaded = new Map<string, Encoded>();

/**
 * Builds the document now and keeps it for GET /v1/openapi.json (serve, before the node starts): a
 * broken install refuses to start, and the document served is the one of the files read at start,
 * whatever happens to them later. Throws what building throws.
 */
export function preloadOpenApi(dir: string = SCHEMAS_DIR): void {
  preloaded.set(dir, encodeDocument(dir));
}

/**
 * GET /v1/openapi.json. The document changes only with a build: the one preloaded at start, else
 * (an app without serve's start, as in tests) built and encoded on the first request and kept. The
 * ETag lets a cache keep it and revalidate, since the same URL serves a new document after an upgrade.
 */
export function openApiRoute(dir: string = SCHEMAS_DIR): RequestHandler {
  let encoded: Encoded | undefined;
  return (req: Request, res: Response): void => {
    encoded ??= preloaded.get(dir) ?? encodeDocument(dir);
    const { body, etag } = encoded;
    res.setHeader("Cache-Control", "public, no-cache");
    res.setHeader("ETag", etag);
    const match = req.headers["if-none-match"];
    if (match !== undefined && match.split(",").some((t) => t.trim().replace(/^W\//, "") === etag)) {
      res.status(304).end();
      return;
    }
    res.type("application/json").send(body);
  };
}
