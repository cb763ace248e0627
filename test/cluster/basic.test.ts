import { TestCluster } from "../support/cluster";
import { cleanupAll, getJson, runVerifyChain, parseJsonOutput, withFailureContext } from "../support/server";
import { LedgerClient } from "../../src/client/client";

jest.setTimeout(120_000);

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await TestCluster.start(3, { serveArgs: ["--checkpoint-every", "20"] });
});
afterAll(async () => {
  await cluster?.stopAll();
  await cleanupAll();
});

interface EntryJson { index: number; term: number; kind: string; hash: string; payload_b64: string }

describe("a 3-node cluster of real processes", () => {
  test("elects a leader; writes through any node succeed; all data dirs verify and agree", () =>
    withFailureContext(() => `cluster root ${cluster.root}`, [cluster.root], async () => {
      const leader = await cluster.leader();
      expect(cluster.ids).toContain(leader);
      // Each client starts at a different node: followers forward its writes to the leader.
      const acks = [];
      for (let i = 0; i < 60; i++) {
        const start = cluster.ids[i % 3];
        const c = new LedgerClient({ urls: [cluster.url(start)], token: cluster.token });
        acks.push(await c.append({ type: "vote.cast", subject: `p${i % 4}`, data: { proposal: `p${i % 4}`, choice: "yes" } }));
      }
      const last = Math.max(...acks.map((a) => a.index));
      await cluster.converged(last);
      // Asked to (?redirect=1), a follower answers a write with 307 + Location of the leader and a not_leader body.
      const follower = cluster.ids.find((id) => id !== leader) as string;
      const res = await fetch(`${cluster.url(follower)}/v1/records?redirect=1`, {
        method: "POST", redirect: "manual",
        headers: { "content-type": "application/json", authorization: `Bearer ${cluster.token}` },
        body: JSON.stringify({ type: "policy.set", subject: "x", data: { name: "a", value: 1 } }),
      });
      expect(res.status).toBe(307);
      expect(res.headers.get("location")).toBe(`${cluster.url(leader)}/v1/records?redirect=1`);
      expect(await res.json()).toMatchObject({ error: "not_leader", leader });
      // Same entries and hashes on every node up to the commit index (local reads, no redirect).
      const commit = Math.min(...(await cluster.statuses()).map((s) => s.last_applied));
      const logs = await Promise.all(cluster.ids.map(async (id) => {
        const out: EntryJson[] = [];
        for (let i = 1; i <= commit; i++) out.push(await getJson<EntryJson>(cluster.url(id), `/v1/records/${i}?consistency=local`));
        return out;
      }));
      expect(logs[1]).toEqual(logs[0]);
      expect(logs[2]).toEqual(logs[0]);
      for (const a of acks) expect(logs[0][a.index - 1].hash).toBe(a.hash);
      await cluster.stopAll();
      for (const id of cluster.ids) {
        const v = await runVerifyChain(cluster.dir(id));
        expect({ id, code: v.code, ok: parseJsonOutput(v.stdout)?.ok }).toEqual({ id, code: 0, ok: true });
      }
    }));
});
