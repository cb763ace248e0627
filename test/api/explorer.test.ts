// GET /explorer (src/api/explorer.ts): the page's files from dist/explorer/ (built by jest's
// globalSetup), each under a Content-Security-Policy that runs only this origin's script (no inline
// script), with nosniff; other methods 405, other files 404; a node whose bundle is not built says so.
import express from "express";
import pino from "pino";
import { http } from "../support/server";
import { InProcessApp, startInProcessApp } from "../support/in-process-app";
import { MethodRouter } from "../../src/api/routes";
import { errorHandler } from "../../src/api/errors";
import { EXPLORER_CSP, explorerRoutes } from "../../src/api/explorer";
import { listen } from "../../src/api/server";

let app: InProcessApp;

beforeAll(async () => {
  app = await startInProcessApp();
});
afterAll(async () => {
  await app?.close();
});

test.each([
  ["/explorer", "text/html; charset=utf-8", "<script src=\"/explorer/explorer.js\" defer></script>"],
  ["/explorer/", "text/html; charset=utf-8", "id=\"entry-rows\""],
  ["/explorer/explorer.js", "text/javascript; charset=utf-8", "resonetics/checkpoint/v1"],
  ["/explorer/explorer.css", "text/css; charset=utf-8", "[data-state=\"failed\"]"],
  ["/explorer/favicon.svg", "image/svg+xml", "<svg"],
])("GET %s: %s under the strict policy", async (p, type, content) => {
  const r = await http(app.baseUrl, "GET", p);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe(type);
  expect(r.headers.get("content-security-policy")).toBe(EXPLORER_CSP);
  expect(r.headers.get("x-content-type-options")).toBe("nosniff");
  expect(r.text).toContain(content);
});

test("the policy allows no inline script and no other origin, and the page has no inline script", async () => {
  expect(EXPLORER_CSP).toMatch(/(^|; )default-src 'none'(;|$)/);
  expect(EXPLORER_CSP).toMatch(/(^|; )script-src 'self'(;|$)/);
  expect(EXPLORER_CSP).not.toMatch(/unsafe|\*|https?:/);
  const html = (await http(app.baseUrl, "GET", "/explorer")).text;
  expect(html.match(/<script\b[^>]*>/g)).toEqual(['<script src="/explorer/explorer.js" defer>']);
  expect(html).not.toMatch(/\son[a-z]+=/i);
});

test("other methods answer 405 with Allow, other files 404", async () => {
  const post = await http(app.baseUrl, "POST", "/explorer/explorer.js", { body: "x" });
  expect(post.status).toBe(405);
  expect(post.headers.get("allow")).toBe("GET, HEAD");
  expect((await http(app.baseUrl, "GET", "/explorer/verify.ts")).status).toBe(404);
});

test("a node whose bundle is not built answers 404 saying how to build it", async () => {
  const top = new MethodRouter();
  explorerRoutes(top, "/nonexistent/explorer");
  const bare = express();
  bare.use(top.allowOthers());
  bare.use(errorHandler(pino({ level: "silent" })));
  const { server, port } = await listen(bare, "127.0.0.1", 0);
  try {
    const r = await http(`http://127.0.0.1:${port}`, "GET", "/explorer");
    expect(r.status).toBe(404);
    expect(r.json).toEqual({ error: "not_found", message: expect.stringContaining("run npm run build") });
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
