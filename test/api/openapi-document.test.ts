// The OpenAPI document is a contract (clients and checks outside this repository read it): the one
// this build serves is exactly test/fixtures/openapi.json, so any change of it (a route, a status,
// a parameter, a header, a schema, a description) shows as a diff of that file in review.
// openapi.test.ts checks the document against the code and real answers; this checks it changed
// only on purpose. After a deliberate change: npm run openapi:fixture, and commit the fixture.
import * as fs from "node:fs";
import { openApiDocument } from "../../src/api/openapi";
import { OPENAPI_FIXTURE, fixtureText } from "../../scripts/openapi-fixture";

test("the document is the committed fixture, test/fixtures/openapi.json (npm run openapi:fixture rewrites it)", () => {
  const committed = fs.readFileSync(OPENAPI_FIXTURE, "utf8");
  // Compared as values first, for a readable diff of what changed; then as text, for the file's form.
  expect(openApiDocument()).toEqual(JSON.parse(committed));
  expect(fixtureText()).toBe(committed);
});
