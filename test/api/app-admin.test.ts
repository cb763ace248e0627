// The HTTP API in-process with stand-ins where a single voter cannot show the case (a follower, a
// halted node, a learner that catches up, retained snapshots): /ready answers 503 with the reasons,
// CORS answers only the configured origin, POST /v1/admin/members and DELETE answer the shapes of
// DESIGN.md, and POST /v1/admin/prune checks its body and that what remains can be verified.
// The app and the node are real (test/support/in-process-app.ts); only the named methods are swapped.
import type { MemberInfo } from "../../src/ledger/config";
import type { AppendResult, Readiness, SnapshotView } from "../../src/node/ports";
import type { RecordRequest } from "../../src/ledger/record";
import { HttpResult, http } from "../support/server";
import { InProcessApp, sharedInProcessApp } from "../support/in-process-app";

jest.setTimeout(60_000);

const ORIGIN = "https://console.example";
/** The swapped behaviours; null = the real node's. Reset before each test. */
const swap: {
  readiness: Readiness | null;
  leader: boolean | null;
  historyFrom: number | null;
  snapshots: SnapshotView[] | null;
  appended: Array<{ record: RecordRequest; key?: string }>;
  members: string[];
  /** The redirect flag of each append the route handed to appendOrForward. */
  redirects: boolean[];
} = { readiness: null, leader: null, historyFrom: null, snapshots: null, appended: [], members: [], redirects: [] };
beforeEach(() => {
  Object.assign(swap, { readiness: null, leader: null, historyFrom: null, snapshots: null, appended: [], members: [], redirects: [] });
});

let app: InProcessApp;
// One node for the file, a new app over it (and over the swapped deps) per test: see sharedInProcessApp.
const shared = sharedInProcessApp({
  app: { corsOrigin: ORIGIN },
  wrap: (d) => {
    const node = d.node;
    const reader = d.reader;
    const writes = d.writes;
    return {
      ...d,
      node: {
        nodeId: node.nodeId, clusterId: node.clusterId, status: () => node.status(), currentTerm: () => node.currentTerm(),
        readiness: () => swap.readiness ?? node.readiness(), isLeader: () => swap.leader ?? node.isLeader(),
        config: () => ({ ...node.config(), voters: [...node.config().voters, ...swap.members.map((id) => ({ id, address: "h:1", public_key: "00".repeat(32) }))] }),
        figures: () => node.figures(), drainTickLags: () => node.drainTickLags(), tickLateMs: () => node.tickLateMs(), tickDueInMs: () => node.tickDueInMs(), onApplied: (fn) => node.onApplied(fn),
      },
      reader: Object.assign(Object.create(reader) as typeof reader, {
        historyFrom: () => swap.historyFrom ?? reader.historyFrom(),
        snapshots: () => swap.snapshots ?? reader.snapshots(),
      }),
      writes: {
        readBarrier: () => writes.readBarrier(),
        append: async (record: RecordRequest, key?: string): Promise<AppendResult> => {
          swap.appended.push({ record, ...(key === undefined ? {} : { key }) });
          return { index: 77, term: 5, hash: "ab".repeat(32), duplicate: false };
        },
        appendOrForward: (record: RecordRequest, key: string | undefined, redirect: boolean) => {
          swap.redirects.push(redirect);
          return writes.appendOrForward(record, key, redirect);
        },
        addMember: async (m: MemberInfo) => {
          swap.members.push(m.id);
          return { index: 40 };
        },
        promoteWhenCaughtUp: async () => ({ index: 41 }),
        removeMember: async (id: string) => {
          swap.members = swap.members.filter((x) => x !== id);
          return { index: 42 };
        },
      },
    };
  },
});
beforeEach(async () => {
  app = await shared.open();
});
afterEach(async () => {
  await app?.close();
});
afterAll(async () => {
  await shared.close();
});

const call = (method: string, p: string, json?: unknown, token: string | null = app.adminToken, headers: Record<string, string> = {}): Promise<HttpResult> =>
  http(app.baseUrl, method, p, { headers, ...(json === undefined ? {} : { json }), ...(token === null ? {} : { token }) });
const errorOf = (r: HttpResult): { status: number; error: unknown; message: unknown } => {
  const j = r.json as { error?: unknown; message?: unknown } | undefined;
  return { status: r.status, error: j?.error, message: j?.message };
};

describe("/ready", () => {
  test("POST /v1/records asks for a redirect (a follower's 307) only with ?redirect=1", async () => {
    const body = { type: "policy.set", subject: "redirect-flag", data: { name: "n", value: 1 } };
    for (const q of ["?redirect=1", "", "?redirect=0", "?redirect=true", "?redirect=11"]) {
      const r = await http(app.baseUrl, "POST", `/v1/records${q}`, { token: app.adminToken, json: body });
      expect({ q, status: r.status }).toEqual({ q, status: 201 });
    }
    expect(swap.redirects).toEqual([true, false, false, false, false]);
  });

  test("a node that cannot serve answers 503 with its reasons and how far behind it is", async () => {
    swap.readiness = { ready: false, reasons: ["halted", "behind"], behind: 12 };
    const r = await call("GET", "/ready");
    expect(r.status).toBe(503);
    expect(r.json).toMatchObject({ ready: false, reasons: ["halted", "behind"], behind: 12, node_id: app.node.nodeId });
  });
});

describe("CORS (--cors-origin)", () => {
  test("the configured origin gets Allow-Origin and Vary on a request; no credentials header", async () => {
    const r = await call("GET", "/health", undefined, null, { Origin: ORIGIN });
    expect([r.headers.get("access-control-allow-origin"), r.headers.get("vary")]).toEqual([ORIGIN, "Origin"]);
    expect(r.headers.get("access-control-allow-credentials")).toBeNull();
    expect(r.headers.get("access-control-allow-methods")).toBeNull();
  });

  test("its preflight is 204 with the methods, the headers and a max age", async () => {
    const r = await call("OPTIONS", "/v1/records", undefined, null, { Origin: ORIGIN, "Access-Control-Request-Method": "POST" });
    expect(r.status).toBe(204);
    expect(r.text).toBe("");
    expect({
      origin: r.headers.get("access-control-allow-origin"), methods: r.headers.get("access-control-allow-methods"),
      headers: r.headers.get("access-control-allow-headers"), maxAge: r.headers.get("access-control-max-age"),
    }).toEqual({ origin: ORIGIN, methods: "GET, HEAD, POST, DELETE", headers: "Authorization, Content-Type, Idempotency-Key", maxAge: "600" });
  });

  test("another origin, or none, gets no CORS headers, and OPTIONS from it is the 405 of any unknown method", async () => {
    const origins: Array<Record<string, string>> = [{ Origin: "https://evil.example" }, { Origin: `${ORIGIN}.evil` }, {}];
    for (const headers of origins) {
      const r = await call("GET", "/health", undefined, null, headers);
      expect([r.status, r.headers.get("access-control-allow-origin"), r.headers.get("vary")]).toEqual([200, null, null]);
      const pre = await call("OPTIONS", "/v1/records", undefined, null, headers);
      expect([pre.status, pre.headers.get("access-control-allow-methods")]).toEqual([405, null]);
    }
  });
});

describe("POST /v1/admin/members and DELETE /v1/admin/members/:id", () => {
  const key = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"; // RFC 8032 test 1 public key
  const member = { id: "n2", address: "10.0.0.2:7000", public_key: key };

  test("a valid member is added as a learner, promoted, and the answer lists the voters", async () => {
    const r = await call("POST", "/v1/admin/members", member);
    expect(r.status).toBe(201);
    expect(r.json).toEqual({ id: "n2", learner_index: 40, voter_index: 41, voters: [app.node.nodeId, "n2"] });
    const d = await call("DELETE", "/v1/admin/members/n2");
    expect([d.status, d.json]).toEqual([200, { id: "n2", index: 42, voters: [app.node.nodeId] }]);
  });

  test("each malformed field is a schema_violation; a key no verifier accepts says so, with its path", async () => {
    const msg = "body must be {id: [A-Za-z0-9_-]{1,64}, address: host:port, public_key: 64 lowercase hex}";
    const bad: unknown[] = [
      null, [], "x", {}, { ...member, id: 7 }, { ...member, id: "" }, { ...member, id: "a".repeat(65) }, { ...member, id: "a b" }, { ...member, id: "é" },
      { ...member, address: 7 }, { ...member, address: "host" }, { ...member, address: "h:123456" }, { ...member, address: "h/x:1" }, { ...member, address: "h :1" }, { ...member, address: ":1" },
      { ...member, public_key: 7 }, { ...member, public_key: key.toUpperCase() }, { ...member, public_key: key.slice(2) }, { ...member, public_key: `${key}00` },
    ];
    for (const body of bad) {
      const r = await call("POST", "/v1/admin/members", body);
      expect({ body, answer: errorOf(r) }).toEqual({ body, answer: { status: 400, error: "schema_violation", message: msg } });
    }
    const ok64 = await call("POST", "/v1/admin/members", { ...member, id: "A-z_9".padEnd(64, "x"), address: "h:12345" });
    expect(ok64.status).toBe(201);
    const small = await call("POST", "/v1/admin/members", { ...member, public_key: "01".padEnd(64, "0") }); // the identity point: small order
    expect(errorOf(small)).toEqual({
      status: 400, error: "schema_violation", message: "public_key is not an Ed25519 public key any verifier accepts (not a point, or of small order)",
    });
    expect((small.json as { path?: string }).path).toBe("body/public_key");
  });

  test("both need the admin token; the id to remove is 1..64 characters", async () => {
    expect((await call("POST", "/v1/admin/members", member, null)).status).toBe(401);
    expect((await call("DELETE", "/v1/admin/members/n2", undefined, app.auditToken)).status).toBe(403);
    expect(errorOf(await call("DELETE", `/v1/admin/members/${"a".repeat(65)}`))).toEqual({ status: 400, error: "bad_request", message: "id must be 1..64 characters, has 65" });
    expect((await call("DELETE", `/v1/admin/members/${"a".repeat(64)}`)).status).toBe(200);
  });
});

describe("POST /v1/admin/prune", () => {
  const anchor = (index: number): SnapshotView => ({ index, term: 1, hash: "00".repeat(32), state_root: "11".repeat(32), signer: "n1", ts: "t" });

  test("the body must be exactly {below: N}, N a whole number >= 2", async () => {
    for (const body of [{}, { below: 1 }, { below: 0 }, { below: -3 }, { below: 2.5 }, { below: "3" }, { below: 3, extra: 1 }, [3], null, 3, { below: 9007199254740992 }]) {
      const r = await call("POST", "/v1/admin/prune", body);
      expect({ body, answer: errorOf(r) }).toEqual({ body, answer: { status: 400, error: "schema_violation", message: 'body must be {"below": N} with N a whole number >= 2 (history starts at N afterwards)' } });
      expect((r.json as { path?: string }).path).toBe("body/below");
    }
    expect(swap.appended).toEqual([]);
    expect((await call("POST", "/v1/admin/prune", { below: 2 }, null)).status).toBe(401);
  });

  test("on the leader, nothing to prune at or below history_from is a 409 with history_from", async () => {
    swap.historyFrom = 10;
    swap.snapshots = [anchor(20)];
    for (const below of [2, 10]) {
      const r = await call("POST", "/v1/admin/prune", { below });
      expect(errorOf(r)).toEqual({ status: 409, error: "conflict", message: `history already starts at 10: nothing below ${below} to prune` });
      expect((r.json as { history_from?: number }).history_from).toBe(10);
    }
    expect((await call("POST", "/v1/admin/prune", { below: 11 })).status).toBe(201);
  });

  test("on the leader, a retained snapshot at below - 1 or later must start what is left; else 409 listing the anchors", async () => {
    swap.snapshots = [anchor(30), anchor(9)];
    const r = await call("POST", "/v1/admin/prune", { below: 32 });
    expect(errorOf(r)).toEqual({
      status: 409, error: "conflict",
      message: "no retained snapshot at 31 or later, so nothing could verify the history left after a prune below 32; retained anchors: 9, 30 (wait for the next snapshot, or prune below one of them + 1)",
    });
    expect((r.json as { snapshots?: number[] }).snapshots).toEqual([9, 30]);
    swap.snapshots = [];
    expect(errorOf(await call("POST", "/v1/admin/prune", { below: 5 })).message).toMatch(/; retained anchors: none \(wait/);
  });

  test("the earliest anchor at below - 1 or later is recorded with below, and the ack says so", async () => {
    swap.snapshots = [anchor(30), anchor(12), anchor(9)];
    const r = await call("POST", "/v1/admin/prune", { below: 10 }); // 9 + 1 >= 10: 9 starts what is left
    expect(r.status).toBe(201);
    expect(r.json).toEqual({ index: 77, term: 5, hash: "ab".repeat(32), below: 10, snapshot: 9, history_from: 1 });
    expect(swap.appended).toEqual([{ record: expect.objectContaining({ type: "resonetics.prune", data: { below: 10, snapshot: 9 } }) }]);
    const next = await call("POST", "/v1/admin/prune", { below: 11 }); // 9 + 1 < 11: 12 is the first that can
    expect((next.json as { snapshot: number }).snapshot).toBe(12);
    expect((await call("POST", "/v1/admin/prune", { below: 31 })).json).toMatchObject({ snapshot: 30 });
  });

  test("a follower does not judge: it forwards the prune with snapshot 1 in the record and 0 in the answer", async () => {
    swap.leader = false;
    swap.snapshots = [];
    const r = await call("POST", "/v1/admin/prune", { below: 50 });
    expect(r.status).toBe(201);
    expect((r.json as { snapshot: number }).snapshot).toBe(0);
    expect(swap.appended.map((a) => (a.record as { data: unknown }).data)).toEqual([{ below: 50, snapshot: 1 }]);
  });
});
