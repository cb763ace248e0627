// Issue 13, the audit explorer, in a real headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core; no browser is downloaded). A real node started through bin/resonetics, records
// appended, the trust file exported with the CLI; the page opened through a proxy in front of the
// node and the trust file loaded through its file input. Asserted: the page shows the entries and
// marks every one a checkpoint covers verified; then, with the proxy altering one byte of one
// entry's inclusion proof, that entry is failed and every other item keeps its state.
// Screenshots: printed paths; one good and one tampered copy in /tmp/explorer-shots/.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Browser, chromium, Page } from "playwright-core";
import { isAppendAck, postRecord } from "../support/ledger-client";
import { cleanupAll, getJson, http, makeTempDir, pollUntil, runCli, Server, startServer, withFailureContext } from "../support/server";
import { TamperProxy } from "../support/tamper-proxy";

jest.setTimeout(180_000);

const CHROMIUM = "/usr/bin/chromium";
/** The flags this machine's closed network needs (.library/env/machines/node.md); playwright adds --headless and a fresh profile. */
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const RECORDS = 12;
const SUBJECTS = ["explorer-a", "explorer-b"];
/** A page of 60 holds every entry here: 12 records, the genesis, the NOOP, a checkpoint every few records. */
const PAGE_LIMIT = 60;
/** The page verifies ~30 entries with one proof each on loopback in well under a second; 30 s bounds a hang. */
const PAGE_DONE_MS = 30_000;
const SHOTS_FOR_LEAD = "/tmp/explorer-shots";

let server: Server | undefined;
let proxy: TamperProxy | undefined;
let browser: Browser | undefined;
let trustFile = "";
let shotsDir = "";
const notes: string[] = [];
const context = (): string => `npx jest test/e2e/explorer.test.ts\nnotes: ${notes.join(" | ")}\n${server?.output() ?? ""}`;

afterAll(async () => {
  await browser?.close();
  await proxy?.close();
  await server?.stop();
  await cleanupAll();
  // This run's screenshots: their copies in SHOTS_FOR_LEAD stay (the last run's); the run's own dir goes.
  if (shotsDir !== "") fs.rmSync(shotsDir, { recursive: true, force: true });
}, 60_000);

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  const dir = makeTempDir();
  // Checkpoints every 100 ms of activity and a snapshot every 8 entries, so the page has both to check.
  server = await startServer(dir, { extraArgs: ["--checkpoint-interval-ms", "100", "--snapshot-every", "8"] });
  const s = server;
  await withFailureContext(context, [dir], async () => {
    let last = 0;
    for (let i = 0; i < RECORDS; i++) {
      const r = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: SUBJECTS[i % 2], data: { name: `limit-${i}`, value: i } });
      if (!isAppendAck(r.json)) throw new Error(`append ${i} → ${r.status} ${r.text}`);
      last = r.json.index;
      // Half way, a snapshot first: the records after it make the next checkpoint cover its anchor.
      if (i === RECORDS / 2) await pollUntil("a snapshot", async () => ((await getJson<unknown[]>(s.baseUrl, "/v1/snapshots")).length > 0 ? true : undefined));
    }
    // Every record under a signed checkpoint before the page looks (the tail after it is "not yet signed").
    await pollUntil(`a checkpoint covering entry ${last}`, async () => {
      const r = await http(s.baseUrl, "GET", "/v1/checkpoints/latest");
      return r.status === 200 && (r.json as { size: number }).size >= last ? true : undefined;
    }, 200, 50);
    const t = await runCli(["trust", "export", dir], 60_000);
    if (t.code !== 0) throw new Error(`trust export → ${t.code}: ${t.stderr}`);
    trustFile = path.join(makeTempDir(), "trust.json");
    fs.writeFileSync(trustFile, t.stdout);
    notes.push(`records up to ${last}; trust file ${trustFile}`);
  });
  proxy = await TamperProxy.start(s.port);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  shotsDir = fs.mkdtempSync(path.join(os.tmpdir(), "resonetics-explorer-shots-"));
  fs.mkdirSync(SHOTS_FOR_LEAD, { recursive: true });
});

interface Row {
  index: number;
  state: string;
  text: string;
}

/** Waits (bounded) until the page's run is done, then reads the state of every entry row. */
async function doneRows(page: Page): Promise<Row[]> {
  await page.waitForSelector('#app[data-phase="done"]', { timeout: PAGE_DONE_MS });
  return page.$$eval("#entry-rows tr.entry", (rows) => rows.map((r) => ({
    index: Number(r.getAttribute("data-index")), state: r.getAttribute("data-state") ?? "", text: r.textContent ?? "",
  })));
}

async function screenshot(page: Page, name: string): Promise<string> {
  const file = path.join(shotsDir, name);
  await page.screenshot({ path: file, fullPage: true });
  fs.copyFileSync(file, path.join(SHOTS_FOR_LEAD, name));
  process.stderr.write(`[explorer test] screenshot ${file} (copy: ${path.join(SHOTS_FOR_LEAD, name)})\n`);
  return file;
}

describe("the audit explorer in headless Chromium", () => {
  let page: Page;
  let signedSize = 0;
  let good: Row[] = [];

  test("serves the page with strict headers, shows the entries and marks every signed one verified", async () => {
    const s = server!;
    const p = proxy!;
    await withFailureContext(context, [s.dir], async () => {
      const ctx = await browser!.newContext();
      page = await ctx.newPage();
      const consoleErrors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") consoleErrors.push(m.text());
      });
      page.on("pageerror", (e) => consoleErrors.push(e.message));
      const res = await page.goto(`${p.baseUrl}/explorer?from=1&limit=${PAGE_LIMIT}&subject=${SUBJECTS[0]}`, { timeout: PAGE_DONE_MS });
      expect(res?.status()).toBe(200);
      const headers = res!.headers();
      expect(headers["content-security-policy"]).toContain("script-src 'self'");
      expect(headers["content-security-policy"]).not.toContain("unsafe-inline");
      expect(headers["x-content-type-options"]).toBe("nosniff");

      // Before a trust file is pinned, entries are shown but nothing is verified.
      const bare = await doneRows(page);
      expect(bare.length).toBeGreaterThan(RECORDS);
      expect(bare.every((r) => r.state === "unverifiable")).toBe(true);

      await page.setInputFiles("#trust-file", trustFile);
      await page.waitForSelector('#trust-status[data-state="pinned"]', { timeout: PAGE_DONE_MS });
      good = await doneRows(page);
      const latest = page.locator("#checkpoint-latest");
      expect(await latest.getAttribute("data-state")).toBe("verified");
      signedSize = Number(await latest.getAttribute("data-size"));
      notes.push(`page verified against checkpoint size ${signedSize}`);

      // Exactly the node's entries from 1 on, in order.
      const listed = await getJson<{ entries: { index: number }[] }>(s.baseUrl, `/v1/records?from=1&limit=${PAGE_LIMIT}`);
      expect(good.map((r) => r.index)).toEqual(listed.entries.map((e) => e.index));
      expect(signedSize).toBeGreaterThanOrEqual(RECORDS);
      for (const r of good) {
        if (r.index <= signedSize) expect(r).toEqual(expect.objectContaining({ state: "verified" }));
        else expect(r.text).toContain("not yet signed");
      }
      expect(good.filter((r) => r.state === "failed")).toEqual([]);

      // Checkpoint entries, the subject's history (complete) and the snapshots: all verified too.
      const states = (sel: string): Promise<string[]> => page.$$eval(sel, (els) => els.map((e) => e.getAttribute("data-state") ?? ""));
      const cps = await states("#checkpoint-list li.checkpoint");
      expect(cps.length).toBeGreaterThan(1);
      expect(new Set(cps)).toEqual(new Set(["verified"]));
      const history = await states("#history-rows tr.history-record");
      expect(history.length).toBe(RECORDS / 2);
      expect(new Set(history)).toEqual(new Set(["verified"]));
      expect(await page.locator("#history-complete").getAttribute("data-state")).toBe("verified");
      const snaps = await page.$$eval("#snapshot-list li.snapshot", (els) => els.map((e) => [Number(e.getAttribute("data-index")), e.getAttribute("data-state")] as const));
      expect(snaps.length).toBeGreaterThan(0);
      // A snapshot taken at the latest checkpoint's own entry lies after what that checkpoint signs.
      expect(snaps).toEqual(snaps.map(([i]) => [i, i <= signedSize ? "verified" : "unverifiable"]));
      expect(snaps.some(([, st]) => st === "verified")).toBe(true);
      expect(consoleErrors).toEqual([]); // no CSP violation, no failed load, no exception
      await screenshot(page, "explorer-verified.png");
    });
  });

  test("marks an entry failed when the proxy alters one byte of its inclusion proof, and only that one", async () => {
    const p = proxy!;
    await withFailureContext(context, [server!.dir], async () => {
      expect(good.length).toBeGreaterThan(0); // the first test ran
      // A record in the middle of the signed range.
      const target = good.filter((r) => r.index <= signedSize && r.text.includes("policy.set"))[Math.floor(RECORDS / 2)].index;
      notes.push(`tampering with the inclusion proof of entry ${target}`);
      p.tamperInclusion(target);
      try {
        await page.reload({ timeout: PAGE_DONE_MS });
        // The pin survives the reload (localStorage): the page verifies again at once.
        await page.waitForSelector('#trust-status[data-state="pinned"]', { timeout: PAGE_DONE_MS });
        const rows = await doneRows(page);
        expect(p.tampered).toBeGreaterThan(0);
        const hit = rows.find((r) => r.index === target);
        expect(hit?.state).toBe("failed");
        expect(hit?.text).toMatch(/proof: failed — the inclusion proof leads to root [0-9a-f]{12}…, not [0-9a-f]{12}…/);
        expect(hit?.text).toContain("chain: verified");
        // Everything else as before.
        expect(rows.filter((r) => r.index !== target).map((r) => [r.index, r.state])).toEqual(good.filter((r) => r.index !== target).map((r) => [r.index, r.state]));
        expect(await page.locator("#checkpoint-latest").getAttribute("data-state")).toBe("verified");
        expect(await page.locator(`#entry-rows tr[data-index="${target}"] .badge`).textContent()).toBe("failed");
        await page.locator(`#entry-rows tr[data-index="${target}"]`).scrollIntoViewIfNeeded();
        await screenshot(page, "explorer-tampered.png");
      } finally {
        p.tamperInclusion(null);
      }
    });
  });
});
