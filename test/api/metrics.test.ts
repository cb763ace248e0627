import { cleanupAll, makeTempDir, startServer, Server } from "../support/server";

jest.setTimeout(60_000);
let server: Server;
beforeAll(async () => {
  server = await startServer(makeTempDir());
});
afterAll(async () => {
  await server.stop();
  await cleanupAll();
});

const metric = (text: string, name: string): number => {
  const line = text.split("\n").find((l) => l.startsWith(name));
  if (line === undefined) throw new Error(`metric ${name} missing`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
};

test("GET /metrics exposes node state and counts appends by result", async () => {
  const post = (body: unknown) => fetch(`${server.baseUrl}/v1/records`, {
    method: "POST", headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" }, body: JSON.stringify(body),
  });
  expect((await post({ type: "policy.set", subject: "m", data: { name: "a", value: 1 } })).status).toBe(201);
  const res = await fetch(`${server.baseUrl}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  const status = (await (await fetch(`${server.baseUrl}/v1/status`)).json()) as { commit_index: number; term: number };
  expect(metric(text, 'resonetics_appends_total{result="created"')).toBe(1);
  expect(metric(text, "resonetics_is_leader")).toBe(1);
  expect(metric(text, "resonetics_term")).toBe(status.term);
  expect(metric(text, "resonetics_commit_index")).toBeGreaterThanOrEqual(3);
});
