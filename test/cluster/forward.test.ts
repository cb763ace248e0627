// Issue 13, acceptance 2: a write sent to each follower with plain curl (no -L) is forwarded to the
// leader over the peer link, committed once and answered 201; retries and conflicts are judged by
// the leader and relayed; ?redirect=1 still answers 307 for clients that want it.
import { execFile } from "node:child_process";
import { TestCluster } from "../support/cluster";
import { cleanupAll, getJson, mapPool, withFailureContext } from "../support/server";

jest.setTimeout(120_000);

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await TestCluster.start(3);
});
afterAll(async () => {
  await cluster?.stopAll();
  await cleanupAll();
});

interface CurlAnswer { readonly status: number; readonly body: Record<string, unknown>; readonly headers: string }

/** POST /v1/records with the real curl, no -L: what the answer is, status, headers and JSON body. */
function curlPost(url: string, body: unknown, headers: Readonly<Record<string, string>>): Promise<CurlAnswer> {
  const args = ["-s", "-D", "-", "-X", "POST", `${url}`, "-H", "Content-Type: application/json", "--max-time", "20", "--data-binary", JSON.stringify(body)];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  return new Promise((resolve, reject) => {
    execFile("curl", args, { timeout: 30_000 }, (err, stdout) => {
      if (err !== null) {
        reject(new Error(`curl ${url}: ${err.message}`));
        return;
      }
      const split = stdout.indexOf("\r\n\r\n");
      const head = stdout.slice(0, split);
      const status = Number(/^HTTP\/[0-9.]+ (\d{3})/.exec(head)?.[1] ?? "0");
      resolve({ status, headers: head, body: JSON.parse(stdout.slice(split + 4)) as Record<string, unknown> });
    });
  });
}

interface EntryJson { index: number; hash: string; kind: string; record?: { idempotency_key?: string; data?: { name?: string } } }

const body = (name: string) => ({ type: "policy.set", subject: "forwarded", data: { name, value: 1 } });

test("each follower takes a write without -L: forwarded, committed once, 201; retry 200 and conflict 409 come from the leader; ?redirect=1 is a 307", () =>
  withFailureContext(() => `cluster root ${cluster.root}\n` + cluster.running().map((id) => cluster.servers.get(id)?.output() ?? "").join("\n"), [cluster.root], async () => {
    const leader = await cluster.leader();
    const followers = cluster.ids.filter((id) => id !== leader);
    const auth = { Authorization: `Bearer ${cluster.token}` };
    const acks = new Map<string, { index: number; hash: string }>();
    for (const f of followers) {
      const key = `fwd-${f}`;
      const r = await curlPost(`${cluster.url(f)}/v1/records`, body(key), { ...auth, "Idempotency-Key": key });
      expect({ f, status: r.status, keys: Object.keys(r.body).sort() }).toEqual({ f, status: 201, keys: ["hash", "index", "term"] });
      acks.set(key, r.body as { index: number; hash: string });
    }
    // The same key and body again, through the other follower: the leader's dedup answers 200 with the first index.
    const [f1, f2] = followers;
    const retry = await curlPost(`${cluster.url(f2)}/v1/records`, body(`fwd-${f1}`), { ...auth, "Idempotency-Key": `fwd-${f1}` });
    expect({ status: retry.status, body: retry.body }).toEqual({ status: 200, body: { ...acks.get(`fwd-${f1}`), term: expect.any(Number) as unknown } });
    // The same key with another body: the leader's 409, relayed with its code.
    const conflict = await curlPost(`${cluster.url(f1)}/v1/records`, body("something else"), { ...auth, "Idempotency-Key": `fwd-${f1}` });
    expect({ status: conflict.status, error: conflict.body.error }).toEqual({ status: 409, error: "idempotency_conflict" });
    // The follower checks the token and the body itself, before forwarding anything.
    expect((await curlPost(`${cluster.url(f1)}/v1/records`, body("no token"), {})).status).toBe(401);
    const invalid = await curlPost(`${cluster.url(f1)}/v1/records`, { type: "policy.set", subject: "x", data: {} }, auth);
    expect({ status: invalid.status, error: invalid.body.error }).toEqual({ status: 400, error: "schema_violation" });
    // ?redirect=1: the 307 to the leader for a client that asks for it; nothing is written.
    const redirected = await curlPost(`${cluster.url(f1)}/v1/records?redirect=1`, body("redirected"), auth);
    expect(redirected.status).toBe(307);
    expect(redirected.headers).toContain(`Location: ${cluster.url(leader)}/v1/records?redirect=1`);

    // Data that looks like the peer codec's byte marker, under a client_id/request_id key with a space
    // and a non-ASCII letter: forwarded and stored exactly as sent.
    const tricky = { type: "policy.set", subject: "forwarded", data: { name: "tricky", value: { $b: "aGk=" }, odd: { $b: "a" } }, client_id: "billing service é", request_id: "1" };
    const t = await curlPost(`${cluster.url(f2)}/v1/records`, tricky, auth);
    expect(t.status).toBe(201);
    acks.set("billing service é:1", t.body as { index: number; hash: string });

    // Committed once each, at the acknowledged index with the acknowledged hash, on every node.
    const last = Math.max(...[...acks.values()].map((a) => a.index));
    await cluster.converged(last);
    for (const id of cluster.ids) {
      const log = await mapPool(Array.from({ length: last }, (_, i) => i + 1), 16, (i) => getJson<EntryJson>(cluster.url(id), `/v1/records/${i}?consistency=local`));
      for (const [key, a] of acks) {
        expect({ id, key, hash: log[a.index - 1].hash }).toEqual({ id, key, hash: a.hash });
        expect({ id, key, copies: log.filter((e) => e.record?.idempotency_key === key).length }).toEqual({ id, key, copies: 1 });
      }
      expect(log.filter((e) => e.record?.data?.name === "redirected" || e.record?.data?.name === "something else")).toEqual([]);
      expect(log[(t.body as { index: number }).index - 1].record?.data).toEqual(tricky.data);
    }
  }));
