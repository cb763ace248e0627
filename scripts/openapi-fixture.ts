/**
 * `npm run openapi:fixture`: writes the OpenAPI document this build serves at GET /v1/openapi.json
 * to test/fixtures/openapi.json, pretty-printed. test/api/openapi-document.test.ts holds the build
 * to that file, so a change of the published API (a route, a status, a parameter, a schema, a
 * description) is a reviewed diff of the fixture, never a side effect. Run it after a deliberate
 * change and commit the fixture with the change.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { openApiDocument } from "../src/api/openapi";

export const OPENAPI_FIXTURE = path.resolve(__dirname, "..", "test", "fixtures", "openapi.json");

/** The document as the fixture holds it: two-space JSON and a final newline. */
export function fixtureText(): string {
  return `${JSON.stringify(openApiDocument(), null, 2)}\n`;
}

if (require.main === module) {
  fs.writeFileSync(OPENAPI_FIXTURE, fixtureText());
  process.stdout.write(`wrote ${path.relative(process.cwd(), OPENAPI_FIXTURE)}\n`);
}
