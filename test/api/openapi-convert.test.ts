// The parts of src/api/openapi.ts that the schemas/ files of today do not reach, on planted input:
// the draft-07 → 2020-12 conversion of every keyword that holds subschemas, the refusals of schema
// files it cannot place in the document (with their messages), how schemas/ is read, and the
// If-None-Match forms GET /v1/openapi.json answers 304 to. openapi.test.ts checks the real document
// against the code; openapi-document.test.ts holds it to its fixture.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import express from "express";
import { DIALECT_2020, JsonObject, SchemaFile, buildOpenApi, loadSchemaFiles, openApiRoute, toDialect2020 } from "../../src/api/openapi";
import { SCHEMAS_DIR } from "../../src/node/record-types";
import { listen } from "../../src/api/server";
import { http } from "../support/server";

const DRAFT_07 = "http://json-schema.org/draft-07/schema#";
/** A draft-07 subschema whose conversion shows: an items list becomes prefixItems. */
const LISTED: JsonObject = { items: [{ type: "string" }] };
const CONVERTED: JsonObject = { prefixItems: [{ type: "string" }] };

describe("draft-07 → 2020-12: every keyword that holds subschemas is converted inside", () => {
  const one = ["additionalProperties", "unevaluatedProperties", "items", "additionalItems", "unevaluatedItems", "contains", "propertyNames", "not", "if", "then", "else", "contentSchema"];
  test.each(one)("%s: one subschema", (k) => {
    // items and additionalItems are themselves rewritten beside an items list; under an object items they keep their place.
    const schema: JsonObject = k === "additionalItems" ? { $schema: DRAFT_07, items: { type: "array" }, [k]: LISTED } : { $schema: DRAFT_07, [k]: LISTED };
    const out = toDialect2020(schema, "planted");
    if (k === "additionalItems") expect(out).toEqual({ $schema: DIALECT_2020, items: { type: "array" } }); // ignored in draft-07 beside an object items: dropped
    else expect(out).toEqual({ $schema: DIALECT_2020, [k]: CONVERTED });
  });

  test.each(["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"])("%s: a map of subschemas", (k) => {
    const out = toDialect2020({ $schema: DRAFT_07, [k]: { x: LISTED } }, "planted");
    expect(out).toEqual({ $schema: DIALECT_2020, [k === "definitions" ? "$defs" : k]: { x: CONVERTED } });
  });

  test.each(["allOf", "anyOf", "oneOf", "prefixItems"])("%s: a list of subschemas", (k) => {
    expect(toDialect2020({ $schema: DRAFT_07, [k]: [LISTED, true] }, "planted")).toEqual({ $schema: DIALECT_2020, [k]: [CONVERTED, true] });
  });

  test("items as a list of subschemas under items: each converted", () => {
    expect(toDialect2020({ $schema: DRAFT_07, items: [LISTED] }, "planted")).toEqual({ $schema: DIALECT_2020, prefixItems: [CONVERTED] });
  });

  test("dependencies split by kind: only the kinds present appear, and dependencies is gone", () => {
    expect(toDialect2020({ $schema: DRAFT_07, dependencies: { a: ["b"] } }, "p")).toEqual({ $schema: DIALECT_2020, dependentRequired: { a: ["b"] } });
    expect(toDialect2020({ $schema: DRAFT_07, dependencies: { c: { required: ["a"] } } }, "p")).toEqual({ $schema: DIALECT_2020, dependentSchemas: { c: { required: ["a"] } } });
    expect(toDialect2020({ $schema: DRAFT_07, dependencies: { a: ["b"], c: { required: ["a"] } } }, "p"))
      .toEqual({ $schema: DIALECT_2020, dependentRequired: { a: ["b"] }, dependentSchemas: { c: { required: ["a"] } } });
  });

  test("an items list and additionalItems: prefixItems, and additionalItems becomes items", () => {
    expect(toDialect2020({ $schema: DRAFT_07, items: [{ type: "string" }], additionalItems: { type: "integer" } }, "p"))
      .toEqual({ $schema: DIALECT_2020, prefixItems: [{ type: "string" }], items: { type: "integer" } });
  });

  test("a $ref into this file's definitions points at $defs; refs elsewhere are left alone", () => {
    expect(toDialect2020({ $schema: DRAFT_07, $ref: "#/definitions/a" }, "p")).toEqual({ $schema: DIALECT_2020, $ref: "#/$defs/a" });
    expect(toDialect2020({ $schema: DRAFT_07, $ref: "other#/properties/a" }, "p")).toEqual({ $schema: DIALECT_2020, $ref: "other#/properties/a" });
  });

  test("a 2020-12 file is taken as it is; any other dialect, or none, is refused naming the file and what it said", () => {
    const mine: JsonObject = { $schema: DIALECT_2020, items: [1] };
    expect(toDialect2020(mine, "p")).toBe(mine);
    expect(() => toDialect2020({ $schema: "http://json-schema.org/draft-04/schema#" }, "old.json"))
      .toThrow('old.json: $schema must be draft-07 or 2020-12, got "http://json-schema.org/draft-04/schema#"');
    expect(() => toDialect2020({ type: "object" }, "none.json")).toThrow("none.json: $schema must be draft-07 or 2020-12, got null");
  });
});

describe("schema files placed in the document: refused when they cannot be", () => {
  const file = (name: string, schema: JsonObject): SchemaFile => ({ name, schema: { $schema: DIALECT_2020, ...schema } });
  const real = (): SchemaFile[] => loadSchemaFiles();

  test("a $ref to another file by its $id lands on that file's component; one to no file is refused, naming both", () => {
    const doc = buildOpenApi("0.0.0", [...real(), file("x-a", { $id: "test:a", properties: { b: { $ref: "test:b#/$defs/n" }, whole: { $ref: "test:b" } } }), file("x-b", { $id: "test:b", $defs: { n: { type: "integer" } } })]);
    const a = (doc.components.schemas as JsonObject)["x-a"] as { properties: { b: { $ref: string }; whole: { $ref: string } } };
    expect(a.properties.b.$ref).toBe("#/components/schemas/x-b/$defs/n");
    expect(a.properties.whole.$ref).toBe("#/components/schemas/x-b");
    expect(() => buildOpenApi("0.0.0", [...real(), file("x-a", { $id: "test:a", $ref: "test:missing#/x" })]))
      .toThrow('x-a: $ref "test:missing#/x" names no schema file in schemas/');
  });

  test("a nested $id is refused (it would move where the refs under it resolve); the file's own is dropped", () => {
    expect(() => buildOpenApi("0.0.0", [...real(), file("x-a", { $id: "test:a", properties: { b: { $id: "test:inner", type: "string" } } })]))
      .toThrow("x-a: a nested $id would change where its $refs resolve; use $defs");
    const doc = buildOpenApi("0.0.0", [...real(), file("x-a", { $id: "test:a", type: "string" })]);
    expect((doc.components.schemas as JsonObject)["x-a"]).toEqual({ type: "string" });
  });

  test("a file without $id, or two files with one $id, are refused", () => {
    expect(() => buildOpenApi("0.0.0", [...real(), file("x-a", { type: "string" })])).toThrow("schema x-a has no $id");
    expect(() => buildOpenApi("0.0.0", [...real(), file("x-a", { $id: "test:a" }), file("x-b", { $id: "test:a" })])).toThrow("two schema files have $id test:a");
  });
});

describe("schemas/ as read", () => {
  let dir = "";
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-openapi-schemas-"));
    fs.mkdirSync(path.join(dir, "api"));
    fs.mkdirSync(path.join(dir, "records"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("only .json files, in name order: api/ by file name, records/ as record.<type>", () => {
    for (const [sub, name] of [["api", "zeta.json"], ["api", "alpha.json"], ["api", "notes.md"], ["records", "b.set.json"], ["records", "a.set.json"], ["records", "README"]]) {
      fs.writeFileSync(path.join(dir, sub, name), JSON.stringify({ $id: `test:${sub}:${name}` }));
    }
    expect(loadSchemaFiles(dir).map((f) => f.name)).toEqual(["alpha", "zeta", "record.a.set", "record.b.set"]);
  });

  test("a file that is JSON but not an object is refused, naming it", () => {
    for (const body of ["null", "[]", "3"]) {
      fs.writeFileSync(path.join(dir, "api", "bad.json"), body);
      expect(() => loadSchemaFiles(dir)).toThrow(`${path.join(dir, "api", "bad.json")}: not a JSON object`);
    }
  });

  test("the real schemas/ is what the default reads", () => {
    expect(loadSchemaFiles().map((f) => f.name)).toEqual(loadSchemaFiles(SCHEMAS_DIR).map((f) => f.name));
  });
});

describe("GET /v1/openapi.json and If-None-Match", () => {
  test("304 for the ETag alone, in a list, with W/, or spaced; 200 for others, and for a list that does not hold it", async () => {
    const app = express();
    app.get("/doc", openApiRoute());
    const { server, port } = await listen(app, "127.0.0.1", 0);
    try {
      const base = `http://127.0.0.1:${port}`;
      const first = await http(base, "GET", "/doc");
      expect(first.status).toBe(200);
      const etag = String(first.headers.get("etag"));
      const status = async (inm: string): Promise<number> => (await http(base, "GET", "/doc", { headers: { "if-none-match": inm } })).status;
      expect(await status(etag)).toBe(304);
      expect(await status(`"other", ${etag}`)).toBe(304);
      expect(await status(`W/${etag}`)).toBe(304);
      expect(await status(`  ${etag}  ,"x"`)).toBe(304);
      expect(await status(`"other"`)).toBe(200);
      expect(await status(`"a", "b"`)).toBe(200);
      // W/ only as a prefix: the tag with W/ inside is another tag.
      expect(await status(etag.replace('"', '"W/'))).toBe(200);
      expect(await status(`xW/${etag}`)).toBe(200);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
