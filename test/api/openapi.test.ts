// The OpenAPI 3.1 document at GET /v1/openapi.json (src/api/openapi.ts, issue 13), held to the code:
// (1) the routes the express app serves (read from its router stacks, built by createApp with the
//     in-process node's deps) are exactly the documented operations, and each one answers;
// (2) the document is OpenAPI 3.1 in structure: required fields, parameters, every $ref resolves,
//     every schema compiles as JSON Schema 2020-12 (ajv, strict), enums agree with the code;
// (3) real answers of the in-process app (test/support/in-process-app.ts) have a documented status,
//     media type and a body valid against the documented schema (ajv).
// Reproduce: npx jest test/api/openapi.test.ts (a failing answer check names the data dir).
import * as fs from "node:fs";
import * as path from "node:path";
import Ajv from "ajv";
import Ajv2020 from "ajv/dist/2020";
import addFormats from "ajv-formats";
import express, { Express } from "express";
import pino from "pino";
import WebSocket from "ws";
import { createApp, listen } from "../../src/api/server";
import { EntryStream, STREAM_PATH } from "../../src/api/stream";
import { routeUpgrades } from "../../src/api/upgrade";
import type { RouteDeps } from "../../src/api/routes";
import { STATUS, errorHandler } from "../../src/api/errors";
import { ENTRY_KIND_NAMES } from "../../src/ledger/entry";
import { DIALECT_2020, Json, JsonObject, OpenApiDocument, loadSchemaFiles, openApiRoute, pathTemplate, toDialect2020 } from "../../src/api/openapi";
import { HttpResult, http } from "../support/server";
import { InProcessApp, sharedInProcessApp } from "../support/in-process-app";

jest.setTimeout(60_000);

let app: InProcessApp;
let deps: RouteDeps | undefined;
let doc: OpenApiDocument;
/** Small, so a 413 needs only a small body (one the server reads whole before it answers and closes). */
const BODY_LIMIT = 1024;
const records: Array<{ index: number; body: JsonObject }> = [];
const context = (): string => `npx jest test/api/openapi.test.ts; data dir ${app?.dir ?? "(none)"}`;

const get = (p: string, headers: Record<string, string> = {}, token?: string): Promise<HttpResult> =>
  http(app.baseUrl, "GET", p, { headers, ...(token === undefined ? {} : { token }) });
const rec = (i: number): JsonObject => ({ type: "policy.set", subject: "oa", data: { name: "n", value: i } });

// One node for the file, a new app over it per test (see sharedInProcessApp): the document is built
// on an app's first GET /v1/openapi.json, so each test's beforeEach builds it again, inside the test.
// A checkpoint every 4 entries, so proofs, receipts and checkpoints/latest have one to show.
const shared = sharedInProcessApp({ node: { checkpointEvery: 4 }, bodyLimitBytes: BODY_LIMIT, wrap: (d) => (deps = d) }, async (first) => {
  app = first;
  for (let i = 0; i < 6; i++) {
    const r = await http(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, json: rec(i) });
    if (r.status !== 201) throw new Error(`append → ${r.status} ${r.text} (${context()})`);
    records.push({ index: (r.json as { index: number }).index, body: rec(i) });
  }
  // The checkpoint covering the 4th record follows its batch: poll the node, for at most 10 s.
  for (let waitedMs = 0; (app.node.reader.latestCheckpoint()?.size ?? 0) < records[3].index; waitedMs += 10) {
    if (waitedMs >= 10_000) throw new Error(`no checkpoint covers index ${records[3].index} after 10 s (${context()})`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
});
beforeEach(async () => {
  app = await shared.open();
  const r = await get("/v1/openapi.json");
  if (r.status !== 200) throw new Error(`GET /v1/openapi.json → ${r.status} ${r.text} (${context()})`);
  doc = r.json as OpenApiDocument;
});
afterEach(async () => {
  await app?.close();
});
afterAll(async () => {
  await shared.close();
});

const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** "GET /v1/records/{index}" for every operation of the document. */
function documentedOperations(d: OpenApiDocument): string[] {
  return Object.entries(d.paths).flatMap(([p, item]) => (isObject(item) ? Object.keys(item).filter((m) => HTTP_METHODS.includes(m)).map((m) => `${m.toUpperCase()} ${p}`) : []));
}

/** The parts of express's router (v2) read here: a route's path and methods, a mounted router's stack and mount path. */
interface RouterLayer {
  route?: { path: unknown; methods: Record<string, boolean> };
  handle?: unknown;
  rawPath?: unknown;
}

/**
 * "GET /v1/records/{index}" for every route the app serves: each route of each router mounted on
 * it (MethodRouter's allowOthers() adds an all-methods route per path for the 405, not an operation).
 */
function servedOperations(express: Express): string[] {
  const out: string[] = [];
  const walk = (stack: unknown, prefix: string, depth: number): void => {
    expect(Array.isArray(stack) && depth <= 3).toBe(true);
    for (const layer of stack as RouterLayer[]) {
      if (layer.route !== undefined) {
        expect(typeof layer.route.path).toBe("string");
        for (const m of Object.keys(layer.route.methods)) if (m !== "_all") out.push(`${m.toUpperCase()} ${pathTemplate(prefix + String(layer.route.path))}`);
        continue;
      }
      const sub = (layer.handle as { stack?: unknown } | undefined)?.stack;
      if (sub === undefined) continue; // a middleware, not a router
      expect(typeof layer.rawPath).toBe("string");
      walk(sub, layer.rawPath === "/" ? prefix : prefix + String(layer.rawPath), depth + 1);
    }
  };
  walk((express as unknown as { router: { stack: unknown } }).router.stack, "", 0);
  return out;
}

/** The value at a local "#/a/b" reference of the document, or undefined. */
function resolvePointer(root: unknown, ref: string): unknown {
  if (!ref.startsWith("#/")) return undefined;
  let at: unknown = root;
  for (const raw of ref.slice(2).split("/")) {
    const key = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
    if (!isObject(at) && !Array.isArray(at)) return undefined;
    at = (at as Record<string, unknown>)[key];
  }
  return at;
}

/** Every $ref in the document with where it is. */
function refsOf(v: unknown, where: string, out: Array<{ ref: string; where: string }> = []): Array<{ ref: string; where: string }> {
  if (Array.isArray(v)) v.forEach((x, i) => refsOf(x, `${where}/${i}`, out));
  else if (isObject(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (k === "$ref" && typeof x === "string") out.push({ ref: x, where });
      else refsOf(x, `${where}/${k}`, out);
    }
  }
  return out;
}

const operationOf = (method: string, template: string): JsonObject => {
  const item = doc.paths[template];
  const op = isObject(item) ? item[method.toLowerCase()] : undefined;
  if (!isObject(op)) throw new Error(`${method} ${template} is not in the document`);
  return op;
};

/** A second app of the same deps, as createApp builds it, for its router stacks and a WebSocket endpoint. */
function secondApp(): Express {
  if (deps === undefined) throw new Error(`startInProcessApp did not pass the deps (${context()})`);
  return createApp(deps, pino({ level: "silent" }));
}

describe("(1) the document and the routes express serves", () => {
  test("every served route is documented with its method and path template, and every documented one is served", () => {
    const served = [...new Set(servedOperations(secondApp()))].sort();
    // The walk found both routers (top-level and /v1) and the route added with the document.
    expect(served).toEqual(expect.arrayContaining(["GET /health", "POST /v1/records", "GET /v1/records/{index}", "GET /v1/openapi.json"]));
    expect(documentedOperations(doc).sort()).toEqual(served);
  });

  test("every documented operation answers on its route: never the 404 of an unknown path, never 405", async () => {
    const fill: Record<string, string> = { index: "1", subject: "oa", id: "nobody" };
    const problems: string[] = [];
    for (const op of documentedOperations(doc)) {
      const [method, template] = op.split(" ");
      const url = template.replace(/\{([^}]+)\}/g, (_, name: string) => fill[name] ?? "x");
      // No token: writes answer 401, reads answer; neither reaches "no such route".
      const r = await http(app.baseUrl, method, url);
      const body = r.json as { error?: unknown; message?: unknown } | undefined;
      if (r.status === 405 || (r.status === 404 && body?.message === "no such route")) problems.push(`${op} → ${r.status} ${r.text.slice(0, 200)}`);
    }
    expect(problems).toEqual([]);
  });
});

describe("(2) the document is OpenAPI 3.1", () => {
  test("the top level: openapi 3.1.0, info with the package version, the 2020-12 dialect, a relative server", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8")) as { version: string };
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.jsonSchemaDialect).toBe(DIALECT_2020);
    expect(typeof doc.info.title).toBe("string");
    expect(doc.info.version).toBe(pkg.version);
    expect(doc.servers.map((s) => s.url)).toEqual(["/"]);
    for (const k of Object.keys(doc)) expect(["openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks", "components", "security", "tags", "externalDocs"]).toContain(k);
  });

  test("every operation: a unique operationId, known tags, parameters that match the path, responses with descriptions", () => {
    const problems: string[] = [];
    const ids = new Set<string>();
    const tags = new Set(doc.tags.map((t) => t.name));
    const schemes = Object.keys((doc.components.securitySchemes ?? {}) as JsonObject);
    const deref = (v: Json): Json => (isObject(v) && typeof v.$ref === "string" ? (resolvePointer(doc, v.$ref) as Json) : v);
    for (const op of documentedOperations(doc)) {
      const [method, template] = op.split(" ");
      if (!template.startsWith("/")) problems.push(`${op}: a path must start with /`);
      const o = operationOf(method, template);
      if (typeof o.operationId !== "string" || ids.has(o.operationId)) problems.push(`${op}: operationId missing or not unique`);
      ids.add(String(o.operationId));
      for (const t of (o.tags ?? []) as Json[]) if (!tags.has(String(t))) problems.push(`${op}: tag ${String(t)} is not declared`);
      const params = ((o.parameters ?? []) as Json[]).map(deref).filter(isObject);
      const seen = new Set<string>();
      for (const p of params) {
        if (typeof p.name !== "string" || !["query", "header", "path", "cookie"].includes(String(p.in)) || !isObject(p.schema)) problems.push(`${op}: malformed parameter ${JSON.stringify(p)}`);
        if (seen.has(`${String(p.in)} ${String(p.name)}`)) problems.push(`${op}: parameter ${String(p.name)} twice`);
        seen.add(`${String(p.in)} ${String(p.name)}`);
      }
      const inPath = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      const pathParams = params.filter((p) => p.in === "path");
      if (JSON.stringify(pathParams.map((p) => p.name).sort()) !== JSON.stringify(inPath)) problems.push(`${op}: path parameters ${JSON.stringify(pathParams.map((p) => p.name))} vs template ${JSON.stringify(inPath)}`);
      if (pathParams.some((p) => p.required !== true)) problems.push(`${op}: a path parameter must be required`);
      const responses = o.responses;
      if (!isObject(responses) || Object.keys(responses).length === 0) problems.push(`${op}: no responses`);
      for (const [status, resp] of Object.entries(isObject(responses) ? responses : {})) {
        const r = deref(resp);
        if (!/^[1-5][0-9][0-9]$/.test(status)) problems.push(`${op}: status ${status}`);
        if (!isObject(r) || typeof r.description !== "string") problems.push(`${op} ${status}: no description`);
      }
      for (const req of (o.security ?? []) as Json[]) {
        for (const name of Object.keys(isObject(req) ? req : {})) if (!schemes.includes(name)) problems.push(`${op}: security scheme ${name} is not declared`);
      }
    }
    expect(problems).toEqual([]);
  });

  test("everything says what it is: every operation has a summary, every parameter, response and tag a description, and none of them is blank", () => {
    const problems: string[] = [];
    const deref = (v: Json): Json => (isObject(v) && typeof v.$ref === "string" ? (resolvePointer(doc, v.$ref) as Json) : v);
    const said = (v: unknown): boolean => typeof v === "string" && v.trim().length > 0;
    for (const op of documentedOperations(doc)) {
      const [method, template] = op.split(" ");
      const o = operationOf(method, template);
      if (!said(o.summary)) problems.push(`${op}: no summary`);
      for (const p of ((o.parameters ?? []) as Json[]).map(deref)) if (!isObject(p) || !said(p.description)) problems.push(`${op}: parameter ${JSON.stringify(p)} has no description`);
      for (const [status, r] of Object.entries((o.responses ?? {}) as JsonObject)) {
        const resp = deref(r);
        if (!isObject(resp) || !said(resp.description)) problems.push(`${op} ${status}: no description`);
        for (const [name, h] of Object.entries((isObject(resp) && isObject(resp.headers) ? resp.headers : {}) as JsonObject)) {
          const header = deref(h);
          if (!isObject(header) || !said(header.description)) problems.push(`${op} ${status}: header ${name} has no description`);
        }
      }
    }
    for (const t of doc.tags) if (!said(t.description)) problems.push(`tag ${t.name}: no description`);
    if (!said(doc.info.description) || !said(doc.info.title)) problems.push("info: no title or description");
    // Anywhere else in the document (schemas included), a summary or description given as text is not blank.
    const walk = (v: unknown, where: string): void => {
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${where}/${i}`));
      else if (isObject(v)) {
        for (const [k, x] of Object.entries(v)) {
          if ((k === "description" || k === "summary") && typeof x === "string" && !said(x)) problems.push(`${where}/${k}: blank`);
          walk(x, `${where}/${k}`);
        }
      }
    };
    walk(doc, "#");
    expect(problems).toEqual([]);
  });

  test("writes need the admin token, the audit the admin or auditor token; security schemes are bearer", () => {
    const schemes = doc.components.securitySchemes as Record<string, JsonObject>;
    for (const name of ["adminToken", "auditToken"]) expect(schemes[name]).toMatchObject({ type: "http", scheme: "bearer" });
    for (const op of documentedOperations(doc).filter((o) => /^(POST|DELETE) /.test(o))) {
      const [method, template] = op.split(" ");
      expect({ op, security: operationOf(method, template).security }).toEqual({ op, security: [{ adminToken: [] }] });
    }
    expect(operationOf("GET", "/v1/audit/verify").security).toEqual([{ adminToken: [] }, { auditToken: [] }]);
  });

  test("every $ref resolves inside the document", () => {
    const broken = refsOf(doc, "#").filter((r) => resolvePointer(doc, r.ref) === undefined).map((r) => `${r.where}: ${r.ref}`);
    expect(broken).toEqual([]);
  });

  test("every component schema compiles as JSON Schema 2020-12 (ajv, strict)", () => {
    const ajv = answersAjv();
    const failed: string[] = [];
    for (const name of Object.keys(doc.components.schemas as JsonObject)) {
      try {
        ajv.getSchema(`${DOC_ID}#/components/schemas/${encodeURIComponent(name)}`);
      } catch (err) {
        failed.push(`${name}: ${(err as Error).message}`);
      }
    }
    expect(failed).toEqual([]);
  });

  test("the schemas agree with the code: entry kinds, error codes; schemas/ files are draft-07 or 2020-12", () => {
    const schemas = doc.components.schemas as Record<string, JsonObject>;
    expect((schemas.entry.properties as Record<string, JsonObject>).kind.enum).toEqual([...ENTRY_KIND_NAMES]);
    // Every code errors.ts maps, plus request_timeout (server.ts answers it before express sees the request).
    expect([...((schemas.error.properties as Record<string, JsonObject>).error.enum as string[])].sort()).toEqual([...Object.keys(STATUS), "request_timeout"].sort());
    for (const f of loadSchemaFiles()) expect({ file: f.name, dialect: toDialect2020(f.schema, f.name).$schema }).toEqual({ file: f.name, dialect: DIALECT_2020 });
  });

  test("a draft-07 schema converts to 2020-12 with the verdicts of the server's draft-07 ajv (items lists, dependencies, definitions, $ref siblings)", () => {
    const draft07: JsonObject = {
      $schema: "http://json-schema.org/draft-07/schema#",
      $id: "resonetics:test:planted",
      type: "object",
      definitions: { small: { type: "integer", maximum: 9 } },
      properties: {
        pair: { type: "array", items: [{ type: "string" }, { $ref: "#/definitions/small" }], additionalItems: false },
        list: { type: "array", items: { $ref: "#/definitions/small" } },
        // The server's ajv applies a $ref's siblings in draft-07 too (the spec says to ignore them): kept.
        sib: { $ref: "#/definitions/small", minimum: 7 },
        a: {}, b: {}, c: { type: "string" },
        // Property names that are keywords elsewhere are names, not schemas to convert.
        items: { type: "array" }, dependencies: { type: "object" },
      },
      dependencies: { a: ["b"], c: { required: ["a"] } },
    };
    const converted = toDialect2020(draft07, "planted");
    // As src/node/record-types.ts validates record data: ajv's draft-07 default.
    const v07 = new Ajv({ strict: false }).compile(draft07);
    const v2020 = new Ajv2020({ strict: false }).compile({ ...converted, $id: "resonetics:test:planted-2020" });
    const samples: Json[] = [
      { pair: ["x", 3] }, { pair: ["x", 30] }, { pair: ["x", 3, "extra"] }, { list: [1, 2] }, { list: [1, 20] },
      { sib: 5 }, { sib: 50 }, { a: 1 }, { a: 1, b: 2 }, { c: "x" }, { c: "x", a: 1, b: 1 }, { items: [] }, { items: 1 }, { dependencies: {} },
    ];
    const verdicts = samples.map((s) => ({ s, draft07: v07(s), converted: v2020(s) }));
    expect(verdicts.filter((v) => v.draft07 !== v.converted)).toEqual([]);
    // Both verdicts occur, so the comparison above compared something.
    expect(new Set(verdicts.map((v) => v.draft07)).size).toBe(2);
  });
});

const DOC_ID = "resonetics:openapi-under-test";
let ajvCache: Ajv2020 | null = null;
/** ajv 2020-12 holding the served document, so any schema in it is reached by its JSON pointer. */
function answersAjv(): Ajv2020 {
  if (ajvCache !== null) return ajvCache;
  // Strict: unknown keywords and formats are errors. Not ajv's own style rules (strictTypes wants
  // "type" beside every "required", strictRequired a property declared beside it), which an object
  // composed with $ref, or an if: {required: [...]}, does not follow and JSON Schema does not ask.
  const ajv = new Ajv2020({ strict: true, strictTypes: false, strictRequired: false, allErrors: true });
  addFormats(ajv);
  // The document is not a schema: ajv compiles its top level (as an empty one, its fields declared
  // as annotations) on the way to a subschema, which it reaches by JSON pointer and compiles strictly.
  ajv.addVocabulary(Object.keys(doc));
  ajv.addSchema({ ...doc, $id: DOC_ID } as unknown as JsonObject);
  ajvCache = ajv;
  return ajv;
}

const pointer = (...parts: string[]): string => parts.map((p) => encodeURIComponent(p.replace(/~/g, "~0").replace(/\//g, "~1"))).join("/");

/**
 * The answer's status is documented for the operation, its media type too, and its JSON body is
 * valid against the documented schema. Returns the body for further checks.
 */
function expectDocumented(method: string, template: string, r: HttpResult): unknown {
  const what = `${method} ${template} → ${r.status} ${r.text.slice(0, 300)} (${context()})`;
  const responses = operationOf(method, template).responses as JsonObject;
  let resp = responses[String(r.status)];
  if (resp === undefined) throw new Error(`status not documented: ${what}`);
  let at = pointer("paths", template, method.toLowerCase(), "responses", String(r.status));
  if (isObject(resp) && typeof resp.$ref === "string") {
    at = resp.$ref.slice(2);
    resp = resolvePointer(doc, resp.$ref) as Json;
  }
  const contentTypes = Object.keys(isObject(resp) && isObject(resp.content) ? resp.content : {});
  if (contentTypes.length === 0) {
    expect({ what, body: r.text }).toEqual({ what, body: "" });
    return undefined;
  }
  const got = r.headers.get("content-type") ?? "";
  const media = contentTypes.find((t) => t.split(";")[0].trim() === got.split(";")[0].trim());
  if (media === undefined) throw new Error(`media type ${got} not documented (${contentTypes.join(", ")}): ${what}`);
  const body: unknown = media.startsWith("application/json") ? JSON.parse(r.text) : r.text;
  const validate = answersAjv().getSchema(`${DOC_ID}#/${at}/${pointer("content", media, "schema")}`);
  if (validate === undefined) throw new Error(`no schema at ${at} ${media}: ${what}`);
  if (!validate(body)) throw new Error(`${what}\ndoes not match its schema: ${JSON.stringify(validate.errors?.slice(0, 5), null, 1)}`);
  return body;
}

describe("(3) real answers match the documented statuses and schemas", () => {
  test("append: 201, then 200 for a retry with the same Idempotency-Key; the bodies sent match record-append", async () => {
    const validate = answersAjv().getSchema(`${DOC_ID}#/components/schemas/record-append`);
    expect(validate?.(rec(1))).toBe(true);
    expect(validate?.({ type: "policy.set", subject: "oa", data: { value: 1 } })).toBe(false); // no data.name: the type's schema applies
    expect(validate?.({ type: "no.such.type", subject: "oa", data: {} })).toBe(false);
    const post = (): Promise<HttpResult> => http(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, json: rec(99), headers: { "idempotency-key": "oa-1" } });
    const first = await post();
    expect(first.status).toBe(201);
    expectDocumented("POST", "/v1/records", first);
    const again = await post();
    expect(again.status).toBe(200);
    expectDocumented("POST", "/v1/records", again);
  });

  test("entries of every kind, pages, a subject's history", async () => {
    const kinds = new Set<string>();
    for (let i = 1; i <= records[records.length - 1].index; i++) {
      const body = expectDocumented("GET", "/v1/records/{index}", await get(`/v1/records/${i}`)) as { kind: string };
      kinds.add(body.kind);
    }
    expect([...kinds].sort()).toEqual(["checkpoint", "config", "noop", "record"]);
    expectDocumented("GET", "/v1/records", await get("/v1/records?limit=3"));
    expectDocumented("GET", "/v1/records", await get("/v1/records?subject=oa&consistency=local"));
    const h = expectDocumented("GET", "/v1/subjects/{subject}/history", await get("/v1/subjects/oa/history")) as { records: Array<{ inclusion: unknown }> };
    // Both forms of a history record's inclusion occur: a proof (covered) and null (past the checkpoint).
    expect(h.records.some((x) => x.inclusion === null) && h.records.some((x) => x.inclusion !== null)).toBe(true);
    expectDocumented("GET", "/v1/subjects/{subject}/history", await get("/v1/subjects/oa/history?from=5&limit=2"));
  });

  test("proofs, checkpoints and receipts", async () => {
    const idx = records[0].index;
    expectDocumented("GET", "/v1/proofs/inclusion/{index}", await get(`/v1/proofs/inclusion/${idx}`));
    expectDocumented("GET", "/v1/proofs/inclusion/{index}", await get(`/v1/proofs/inclusion/${idx}?size=${idx + 1}`));
    expectDocumented("GET", "/v1/proofs/consistency", await get("/v1/proofs/consistency?from=2"));
    expectDocumented("GET", "/v1/proofs/consistency", await get(`/v1/proofs/consistency?from=2&to=${idx + 1}`));
    expectDocumented("GET", "/v1/checkpoints/latest", await get("/v1/checkpoints/latest"));
    expectDocumented("GET", "/v1/checkpoint", await get("/v1/checkpoint"));
    const receipt = await get(`/v1/receipts/${idx}`);
    expect(receipt.status).toBe(200);
    expectDocumented("GET", "/v1/receipts/{index}", receipt);
    const lastApplied = app.node.reader.lastApplied();
    const pending = await get(`/v1/receipts/${lastApplied}`);
    expect({ status: pending.status, covered: (app.node.reader.latestCheckpoint()?.size ?? 0) >= lastApplied }).toEqual({ status: 202, covered: false });
    expectDocumented("GET", "/v1/receipts/{index}", pending);
  });

  test("node, admin and audit reads", async () => {
    expectDocumented("GET", "/health", await get("/health"));
    expectDocumented("GET", "/ready", await get("/ready"));
    expectDocumented("GET", "/metrics", await get("/metrics"));
    expectDocumented("GET", "/v1/status", await get("/v1/status"));
    expectDocumented("GET", "/v1/admin/config", await get("/v1/admin/config"));
    expectDocumented("GET", "/v1/snapshots", await get("/v1/snapshots"));
    const audit = await get("/v1/audit/verify", {}, app.auditToken);
    expect(audit.status).toBe(200);
    expectDocumented("GET", "/v1/audit/verify", audit);
  });

  test("error bodies: 400, 401, 403, 404, 409, 413, 415, and the stream asked without an upgrade", async () => {
    const keyed = (value: number): Promise<HttpResult> => http(app.baseUrl, "POST", "/v1/records", { json: rec(value), token: app.adminToken, headers: { "idempotency-key": "oa-409" } });
    expect((await keyed(50)).status).toBe(201);
    const cases: Array<[string, string, () => Promise<HttpResult>, number]> = [
      ["GET", "/v1/records/{index}", () => get("/v1/records/abc"), 400],
      ["GET", "/v1/records/{index}", () => get("/v1/records/999999"), 404],
      ["GET", "/v1/proofs/consistency", () => get("/v1/proofs/consistency"), 400],
      ["GET", "/v1/subjects/{subject}/history", () => get("/v1/subjects/nobody/history"), 404],
      ["POST", "/v1/records", () => http(app.baseUrl, "POST", "/v1/records", { json: rec(1) }), 401],
      ["POST", "/v1/records", () => http(app.baseUrl, "POST", "/v1/records", { json: rec(1), token: "wrong" }), 403],
      ["GET", "/v1/audit/verify", () => get("/v1/audit/verify"), 401],
      ["POST", "/v1/records", () => keyed(51), 409],
      ["POST", "/v1/records", () => http(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, body: "x".repeat(BODY_LIMIT + 1), headers: { "content-type": "application/json" } }), 413],
      ["POST", "/v1/records", () => http(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, body: "{}", headers: { "content-type": "text/plain" } }), 415],
      ["POST", "/v1/records", () => http(app.baseUrl, "POST", "/v1/records", { token: app.adminToken, json: { type: "policy.set", subject: "oa", data: {} } }), 400],
      ["GET", "/v1/stream", () => get("/v1/stream"), 400],
    ];
    for (const [method, template, answer, status] of cases) {
      const r = await answer();
      expect({ method, template, status: r.status }).toEqual({ method, template, status });
      expectDocumented(method, template, r);
    }
  });

  test("the documented page limits are the enforced ones", async () => {
    for (const [method, template, base] of [["GET", "/v1/records", "/v1/records?"], ["GET", "/v1/subjects/{subject}/history", "/v1/subjects/oa/history?"]]) {
      const limit = ((operationOf(method, template).parameters as JsonObject[]).find((p) => p.name === "limit")?.schema as { maximum: number });
      expectDocumented(method, template, await get(`${base}limit=${limit.maximum}`));
      const over = await get(`${base}limit=${limit.maximum + 1}`);
      expect({ template, status: over.status }).toEqual({ template, status: 400 });
    }
  });

  test("GET /v1/openapi.json: the document, with an ETag that answers 304", async () => {
    const r = await get("/v1/openapi.json");
    expectDocumented("GET", "/v1/openapi.json", r);
    const etag = r.headers.get("etag");
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(r.headers.get("cache-control")).toBe("public, no-cache");
    const again = await get("/v1/openapi.json", { "if-none-match": String(etag) });
    expect(again.status).toBe(304);
    expectDocumented("GET", "/v1/openapi.json", again);
  });

  test("WS /v1/stream: 101, then frames that match stream-frame", async () => {
    // The in-process app has no upgrade listener: wire the stream as `serve` does, on a second server of the same node.
    const log = pino({ level: "silent" });
    const { server, port } = await listen(secondApp(), "127.0.0.1", 0);
    const stream = new EntryStream((deps as RouteDeps).reader, (deps as RouteDeps).node, log);
    routeUpgrades(server, new Map([[STREAM_PATH, stream]]), log);
    const validate = answersAjv().getSchema(`${DOC_ID}#/components/schemas/stream-frame`);
    const want = 4;
    let status = 0;
    const frames = await new Promise<unknown[]>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream?from=1`);
      ws.on("upgrade", (res) => (status = res.statusCode ?? 0));
      const got: unknown[] = [];
      ws.on("message", (data: Buffer) => {
        got.push(JSON.parse(data.toString("utf8")));
        if (got.length === want) {
          ws.close();
          resolve(got);
        }
      });
      ws.on("error", reject);
    }).finally(() => {
      stream.close();
      server.closeAllConnections();
      server.close();
    });
    expect(status).toBe(101);
    expect(Object.keys(operationOf("GET", "/v1/stream").responses as JsonObject)).toContain("101");
    expect(frames.filter((f) => validate?.(f) !== true)).toEqual([]);
  });
});

describe("(4) without serve's preload, the route builds the document on its first request", () => {
  test("schemas that do not load: creating the route reads nothing; each request is a 500 internal error that hides the cause", async () => {
    const missing = path.join(app.dir, "no-such-schemas");
    const bare = express();
    bare.disable("etag"); // as createApp: an ETag here would be the route's
    bare.get("/openapi.json", openApiRoute(missing)); // creating the route reads nothing
    bare.use(errorHandler(pino({ level: "silent" })));
    const { server, port } = await listen(bare, "127.0.0.1", 0);
    try {
      for (let i = 0; i < 2; i++) {
        const r = await http(`http://127.0.0.1:${port}`, "GET", "/openapi.json");
        expect({ status: r.status, error: (r.json as { error?: unknown }).error, etag: r.headers.get("etag") }).toEqual({ status: 500, error: "internal", etag: null });
        expect((r.json as { message: string }).message).toBe("internal error");
      }
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
