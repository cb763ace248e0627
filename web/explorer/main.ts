/**
 * The audit explorer page: pins the auditor's trust file, runs the audits of audit.ts over fetch,
 * and shows every item with its state (data-state = verified | failed | unverifiable) and reason.
 * Server data reaches the DOM only as text (textContent), never as markup.
 */
import { parseTrustFile, TrustFile } from "../../src/ledger/trust";
import { genesisKeys } from "../../src/ledger/trust";
import {
  Answer, auditEntries, auditHistory, auditLatestCheckpoint, auditSnapshots, Anchor, CheckpointItem, ENTRIES_DEFAULT, ENTRIES_MAX, EntryItem, Get,
  HistoryRecordItem, SnapshotItem,
} from "./audit";
import { short, unverifiable, Verdict } from "./verify";

/** Where the pinned trust file's text lives: the auditor's own browser, never the server. */
const TRUST_KEY = "resonetics.explorer.trust";
/** A request that has not answered in 15 s shows as unverifiable instead of holding the page. */
const FETCH_TIMEOUT_MS = 15_000;
/** A trust file lists a handful of members; 1 MiB is far past any real one and bounds what a wrong file costs to parse. */
const TRUST_FILE_BYTES_MAX = 1024 * 1024;

const byId = <T extends HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`the page has no #${id}`);
  return e as T;
};

const get: Get = async (path: string): Promise<Answer> => {
  let res: Response;
  let text: string;
  try {
    // no-store: an audit judges what the node serves now, not what a cache kept from earlier.
    res = await fetch(path, { cache: "no-store", headers: { accept: "application/json" }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    text = await res.text();
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    body = undefined; // not JSON: audit.ts says so in the item's reason
  }
  return { ok: true, status: res.status, body };
};

// ---------------------------------------------------------------- trust

function pinnedTrust(): TrustFile | null {
  const text = localStorage.getItem(TRUST_KEY);
  if (text === null) return null;
  // Parsed again at every load: what is pinned is checked the same way as a file just loaded.
  const t = parseTrustFile(text);
  return typeof t === "string" ? null : t;
}

function showTrust(trust: TrustFile | null, problem?: string): void {
  const s = byId("trust-status");
  if (problem !== undefined) {
    s.dataset.state = "invalid";
    s.textContent = `Not pinned: ${problem}`;
    return;
  }
  if (trust === null) {
    s.dataset.state = "none";
    s.textContent = "No trust file pinned: entries are shown, but nothing can be verified.";
    return;
  }
  s.dataset.state = "pinned";
  const members = [...genesisKeys(trust)].map(([id, key]) => `${id} (${short(key)})`).join(", ");
  const cp = trust.checkpoint === undefined ? "no checkpoint pinned" : `checkpoint ${trust.checkpoint.index} (size ${trust.checkpoint.size}) pinned`;
  s.textContent = `Pinned: cluster ${trust.cluster}, genesis ${short(trust.genesis_hash)}, signers ${members}; ${cp}.`;
}

function pin(text: string): void {
  const t = text.length > TRUST_FILE_BYTES_MAX ? `the file is larger than ${TRUST_FILE_BYTES_MAX} bytes` : parseTrustFile(text);
  if (typeof t === "string") {
    showTrust(null, t);
    return;
  }
  localStorage.setItem(TRUST_KEY, text);
  start();
}

// ---------------------------------------------------------------- rendering

function el(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

const badge = (v: Verdict): HTMLElement => el("span", { class: "badge", "data-state": v.state }, v.state);
const part = (label: string, v: Verdict): HTMLElement => el("span", { class: "part", "data-state": v.state, "data-check": label }, `${label}: ${v.state} — ${v.text}`);
const hashCell = (hex: string): HTMLElement => el("td", { class: "hash", title: hex }, short(hex));

function entryRow(e: EntryItem): HTMLElement {
  return el("tr", { class: "entry", "data-index": String(e.index), "data-state": e.verdict.state },
    el("td", {}, badge(e.verdict)), el("td", {}, String(e.index)), el("td", {}, e.term === null ? "" : String(e.term)), el("td", {}, e.kind),
    el("td", {}, e.summary), hashCell(e.hash), el("td", { class: "checks" }, part("chain", e.chain), el("br"), part("proof", e.proof)));
}

function checkpointLine(c: CheckpointItem): HTMLElement {
  const what = c.key === "latest" ? "Latest checkpoint" : `Checkpoint entry ${c.key}`;
  const facts = c.size === null ? "" : ` · size ${c.size} · root ${short(c.root ?? "")} · signer ${c.signer ?? "?"}`;
  const attrs: Record<string, string> = { class: "checkpoint", "data-key": c.key, "data-state": c.verdict.state };
  if (c.size !== null) attrs["data-size"] = String(c.size);
  if (c.key === "latest") attrs.id = "checkpoint-latest";
  else attrs["data-index"] = c.key;
  return el("li", attrs, badge(c.verdict), ` ${what}${facts}`, el("span", { class: "why" }, c.verdict.text));
}

function snapshotLine(s: SnapshotItem): HTMLElement {
  return el("li", { class: "snapshot", "data-index": String(s.index), "data-state": s.verdict.state },
    badge(s.verdict), ` Snapshot at ${s.index} · term ${s.term ?? "?"} · hash ${short(s.hash)} · by ${s.signer} · ${s.ts}`, el("span", { class: "why" }, s.verdict.text));
}

function historyRow(r: HistoryRecordItem): HTMLElement {
  return el("tr", { class: "history-record", "data-index": String(r.index), "data-state": r.verdict.state },
    el("td", {}, badge(r.verdict)), el("td", {}, String(r.version)), el("td", {}, String(r.index)), el("td", {}, r.summary), hashCell(r.hash),
    el("td", { class: "checks" }, r.verdict.text));
}

function summaryLine(id: string, label: string, v: Verdict): HTMLElement {
  return el("li", { id, "data-state": v.state }, badge(v), ` ${label}`, el("span", { class: "why" }, v.text));
}

function problem(id: string, text: string | null): void {
  const p = byId(id);
  p.hidden = text === null;
  p.textContent = text ?? "";
}

// ---------------------------------------------------------------- runs

/** Which run is current: a run that a newer one overtook (a second click) renders nothing more. */
let runSeq = 0;

function positiveInt(input: HTMLInputElement): number | null {
  const n = Number(input.value);
  return input.value !== "" && Number.isSafeInteger(n) && n >= 1 ? n : null;
}

/** The first index to show: the form's, or the latest `limit` entries the node reports (its word only picks what to show). */
async function firstIndex(limit: number): Promise<number> {
  const given = positiveInt(byId<HTMLInputElement>("entries-from"));
  if (given !== null) return given;
  const a = await get("/v1/status");
  const last = a.ok && a.status === 200 ? (a.body as { last_applied?: unknown }).last_applied : undefined;
  return typeof last === "number" && Number.isSafeInteger(last) ? Math.max(1, last - limit + 1) : 1;
}

async function runAll(): Promise<void> {
  const run = ++runSeq;
  const app = byId("app");
  const status = byId("run-status");
  const current = (): boolean => run === runSeq;
  app.dataset.phase = "running";
  status.textContent = "Verifying…";
  const trust = pinnedTrust();
  showTrust(trust);

  let latest: CheckpointItem = { key: "latest", index: null, size: null, signer: null, root: null, verdict: unverifiable("no trust file pinned") };
  let anchor: Anchor = { cp: null, why: "no trust file pinned" };
  if (trust !== null) ({ item: latest, anchor } = await auditLatestCheckpoint(get, trust));

  const limit = Math.min(positiveInt(byId<HTMLInputElement>("entries-limit")) ?? ENTRIES_DEFAULT, ENTRIES_MAX);
  const from = await firstIndex(limit);
  const entries = await auditEntries(get, trust, anchor, from, limit);
  if (!current()) return;
  byId("checkpoint-list").replaceChildren(checkpointLine(latest), ...entries.checkpoints.map(checkpointLine));
  byId("entry-rows").replaceChildren(...entries.entries.map(entryRow));
  problem("entries-problem", entries.problem);

  const subject = byId<HTMLInputElement>("history-subject").value;
  if (subject !== "") {
    const h = await auditHistory(get, trust, subject);
    if (!current()) return;
    byId("history-summary").replaceChildren(summaryLine("history-checkpoint", `Checkpoint of the history of ${h.subject}`, h.checkpoint),
      summaryLine("history-complete", "Complete", h.completeness), ...(h.problem === null ? [] : [el("li", { class: "problem" }, h.problem)]));
    byId("history-rows").replaceChildren(...h.records.map(historyRow));
  } else {
    byId("history-summary").replaceChildren();
    byId("history-rows").replaceChildren();
  }

  const snaps = await auditSnapshots(get, trust, anchor);
  if (!current()) return;
  byId("snapshot-list").replaceChildren(...(snaps.items.length === 0 && snaps.problem === null ? [el("li", {}, "No snapshot retained.")] : snaps.items.map(snapshotLine)));
  problem("snapshots-problem", snaps.problem);

  const states = [...document.querySelectorAll<HTMLElement>("main [data-state]")].filter((e) => !e.classList.contains("badge") && !e.classList.contains("part") && e.id !== "trust-status");
  const count = (s: string): number => states.filter((e) => e.dataset.state === s).length;
  status.textContent = `Done: ${count("verified")} verified, ${count("failed")} failed, ${count("unverifiable")} unverifiable.`;
  app.dataset.phase = "done";
}

/** Runs the audits; a bug in them shows on the page (phase "error") instead of leaving it "running". */
function start(): void {
  runAll().catch((err: unknown) => {
    byId("run-status").textContent = `The explorer stopped: ${err instanceof Error ? err.message : String(err)}`;
    byId("app").dataset.phase = "error";
  });
}

/** Fills the forms from the page's query (?from=&limit=&subject=), so a view can be linked. */
function fromQuery(): void {
  const q = new URLSearchParams(location.search);
  for (const [key, id] of [["from", "entries-from"], ["limit", "entries-limit"], ["subject", "history-subject"]] as const) {
    const v = q.get(key);
    if (v !== null) byId<HTMLInputElement>(id).value = v;
  }
}

function wire(): void {
  fromQuery();
  byId<HTMLInputElement>("trust-file").addEventListener("change", (ev) => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    if (f === undefined) return;
    if (f.size > TRUST_FILE_BYTES_MAX) {
      showTrust(null, `the file is larger than ${TRUST_FILE_BYTES_MAX} bytes`);
      return;
    }
    f.text().then(pin, (err: unknown) => showTrust(null, `the file could not be read: ${String(err)}`));
  });
  byId("trust-pin").addEventListener("click", () => pin(byId<HTMLTextAreaElement>("trust-text").value));
  byId("trust-forget").addEventListener("click", () => {
    localStorage.removeItem(TRUST_KEY);
    start();
  });
  for (const form of ["entries-form", "history-form"]) {
    byId(form).addEventListener("submit", (ev) => {
      ev.preventDefault();
      start();
    });
  }
  start();
}

wire();
