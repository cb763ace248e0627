/**
 * GET /v1/subjects/:subject/history is paginated and bounded: pages of at most 500 records, `next`
 * to continue, and subject heads that chain across pages, checked here with node:crypto.
 */
import { createHash } from "node:crypto";
import { http } from "../support/server";
import { serverSuite } from "../support/suite";

const RECORDS = 230;
const SUBJECT = "paged";

const { server: srv, guarded } = serverSuite("test/e2e/history-pages.test.ts", {
  seed: { count: RECORDS, concurrency: 16, record: (i) => ({ type: "policy.set", subject: i % 3 === 0 ? "other" : SUBJECT, data: { name: "n", value: i } }) },
  // Quiescent (the default): the tests compare two pages fetched one after the other, and a
  // checkpoint signed between them (the 1 s timer after the seed's last record) added inclusion
  // proofs to the second only (1 run in 10 of the whole suite, at load ~9).
  setupTimeoutMs: 120_000,
});

interface Page {
  version: number;
  head: string;
  prev_subject_head: string;
  next: number | null;
  records: Array<{ version: number; subject_head: string; entry: { index: number; hash: string } }>;
}

const nextHead = (prev: string, entryHash: string): string =>
  createHash("sha256").update(Buffer.from(prev, "hex")).update(Buffer.from(entryHash, "hex")).digest("hex");

test("pages of `limit` records chain from 32 zero bytes to the stored head, with `next` to continue", guarded(async () => {
  const pages: Page[] = [];
  let url = `/v1/subjects/${SUBJECT}/history?limit=50`;
  for (let n = 0; n < 20; n++) {
    const r = await http(srv().baseUrl, "GET", url);
    expect(r.status).toBe(200);
    const p = r.json as Page;
    pages.push(p);
    if (p.next === null) break;
    url = `/v1/subjects/${SUBJECT}/history?limit=50&from=${p.next}`;
  }
  const records = pages.flatMap((p) => p.records);
  const total = pages[0].version;
  expect(total).toBe(Array.from({ length: RECORDS }, (_, i) => i).filter((i) => i % 3 !== 0).length);
  expect(pages.map((p) => p.records.length)).toEqual([...Array(Math.floor(total / 50)).fill(50), ...(total % 50 === 0 ? [] : [total % 50])]);
  expect(records.map((r) => r.version)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  let head = "0".repeat(64);
  for (const [i, p] of pages.entries()) {
    expect({ page: i, prev: p.prev_subject_head }).toEqual({ page: i, prev: head });
    for (const r of p.records) {
      head = nextHead(head, r.entry.hash);
      expect({ version: r.version, head: r.subject_head }).toEqual({ version: r.version, head });
    }
    if (i < pages.length - 1) expect(p.next).toBe(p.records[p.records.length - 1].entry.index + 1);
  }
  expect(head).toBe(pages[0].head);
  expect(pages[pages.length - 1].next).toBeNull();
}));

test("the page size is bounded, and a page past the end is empty and starts at the head", guarded(async () => {
  const s = srv();
  expect((await http(s.baseUrl, "GET", `/v1/subjects/${SUBJECT}/history?limit=501`)).status).toBe(400);
  expect((await http(s.baseUrl, "GET", `/v1/subjects/${SUBJECT}/history?limit=0`)).status).toBe(400);
  const all = await http(s.baseUrl, "GET", `/v1/subjects/${SUBJECT}/history?limit=500`);
  const p = all.json as Page;
  expect(p.records).toHaveLength(p.version);
  expect(p.next).toBeNull();
  const past = (await http(s.baseUrl, "GET", `/v1/subjects/${SUBJECT}/history?from=${p.records[p.records.length - 1].entry.index + 1}`)).json as Page;
  expect({ records: past.records, prev: past.prev_subject_head, next: past.next }).toEqual({ records: [], prev: p.head, next: null });
  const dflt = (await http(s.baseUrl, "GET", `/v1/subjects/${SUBJECT}/history`)).json as Page;
  expect(dflt.records).toHaveLength(100);
}));

test("a page may start from the head the client carries: the same page as a replay, and a malformed head is a 400", guarded(async () => {
  const s = srv();
  const first = (await http(s.baseUrl, "GET", `/v1/subjects/${SUBJECT}/history?limit=40`)).json as Page;
  const carried = first.records[first.records.length - 1].subject_head;
  const replayed = await http(s.baseUrl, "GET", `/v1/subjects/${SUBJECT}/history?limit=40&from=${first.next}`);
  const withHead = await http(s.baseUrl, "GET", `/v1/subjects/${SUBJECT}/history?limit=40&from=${first.next}&head=${carried}`);
  expect(withHead.status).toBe(200);
  expect(withHead.json).toEqual(replayed.json);
  expect((withHead.json as Page).prev_subject_head).toBe(carried);
  for (const bad of ["xyz", carried.toUpperCase(), carried.slice(1), `${carried}&head=${carried}`]) {
    const r = await http(s.baseUrl, "GET", `/v1/subjects/${SUBJECT}/history?from=${first.next}&head=${bad}`);
    expect({ bad, status: r.status }).toEqual({ bad, status: 400 });
  }
}));
