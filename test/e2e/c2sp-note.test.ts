// Issue 10, acceptance 5: GET /v1/checkpoint is the latest checkpoint as a C2SP signed note
// (c2sp.org/signed-note, c2sp.org/tlog-checkpoint), checked here by an independent signed-note
// verifier: node:crypto Ed25519 with the node's raw key wrapped in SPKI DER, nothing from src/.
import { createHash, createPublicKey, verify as cryptoVerify } from "node:crypto";
import * as path from "node:path";
import { isAppendAck, postRecord } from "../support/ledger-client";
import { Server, cleanupAll, getJson, http, makeTempDir, pollUntil, startServer, withFailureContext } from "../support/server";

jest.setTimeout(90_000);

const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

interface Note { body: string; origin: string; size: number; root: Buffer; sigs: Array<{ name: string; keyId: Buffer; sig: Buffer }> }

/** Splits a signed note per c2sp.org/signed-note; throws on anything malformed. */
function parseNote(text: string): Note {
  const at = text.indexOf("\n\n");
  if (at < 0 || !text.endsWith("\n")) throw new Error("no blank line, or no final newline");
  const body = text.slice(0, at + 1);
  const lines = body.slice(0, -1).split("\n");
  if (lines.length < 3 || !/^[0-9]+$/.test(lines[1])) throw new Error(`not a tlog-checkpoint body: ${JSON.stringify(body)}`);
  const sigs = text.slice(at + 2, -1).split("\n").map((l) => {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(l);
    if (m === null) throw new Error(`not a signature line: ${JSON.stringify(l)}`);
    const raw = Buffer.from(m[2], "base64");
    // Only the one canonical base64 spelling: spare bits in the last character must not pass.
    if (raw.toString("base64") !== m[2]) throw new Error("signature is not canonical base64");
    return { name: m[1], keyId: raw.subarray(0, 4), sig: raw.subarray(4) };
  });
  return { body, origin: lines[0], size: Number(lines[1]), root: Buffer.from(lines[2], "base64"), sigs };
}

/** True when one signature line by `name` with the key's id verifies over the body. */
function noteVerifies(text: string, name: string, rawPublicKey: Buffer): boolean {
  let n: Note;
  try {
    n = parseNote(text);
  } catch {
    return false; // a malformed note does not verify
  }
  const keyId = createHash("sha256").update(name).update(Buffer.from([0x0a, 0x01])).update(rawPublicKey).digest().subarray(0, 4);
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, rawPublicKey]), format: "der", type: "spki" });
  return n.sigs.some((s) => s.name === name && s.keyId.equals(keyId) && s.sig.length === 64 && cryptoVerify(null, Buffer.from(n.body, "utf8"), key, s.sig));
}

let server: Server | undefined;
afterAll(async () => {
  await server?.stop();
  await cleanupAll();
}, 60_000);

test("GET /v1/checkpoint: a signed note of the latest checkpoint that an independent verifier accepts under the node's key, and no changed byte", () => {
  const dir = path.join(makeTempDir(), "node");
  return withFailureContext(() => `npx jest test/e2e/c2sp-note.test.ts\n${server?.output() ?? ""}`, [path.dirname(dir)], async () => {
    server = await startServer(dir, { extraArgs: ["--checkpoint-every", "5", "--checkpoint-interval-ms", "200"] });
    const s = server;
    const none = await http(s.baseUrl, "GET", "/v1/checkpoint");
    expect([200, 404]).toContain(none.status); // 404 before the first checkpoint, unless one already landed
    for (let i = 0; i < 12; i++) {
      const r = await postRecord(s.baseUrl, s.token, { type: "policy.set", subject: "note", data: { name: `n${i}`, value: i } });
      if (!isAppendAck(r.json)) throw new Error(`append → ${r.status} ${r.text}`);
    }
    const cp = await pollUntil("a checkpoint covering the records", async () => {
      const st = await getJson<{ commit_index: number }>(s.baseUrl, "/v1/status");
      const c = await getJson<{ index: number; size: number; root: string }>(s.baseUrl, "/v1/checkpoints/latest");
      return c.index === st.commit_index ? c : undefined;
    });
    const status = await getJson<{ cluster: string; public_key: string }>(s.baseUrl, "/v1/status");
    const r = await http(s.baseUrl, "GET", "/v1/checkpoint");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^text\/plain/);
    const origin = `resonetics/${status.cluster}`;
    const note = parseNote(r.text);
    expect({ origin: note.origin, size: note.size, root: note.root.toString("hex"), lines: note.body.split("\n").length, sigs: note.sigs.length })
      .toEqual({ origin, size: cp.size, root: cp.root, lines: 4, sigs: 1 });
    expect(r.text.split("\n\n")[1].startsWith(`\u2014 ${origin} `)).toBe(true);
    const key = Buffer.from(status.public_key, "hex");
    expect(noteVerifies(r.text, origin, key)).toBe(true);
    // Another key, another name, or any changed byte: it does not verify.
    expect(noteVerifies(r.text, origin, Buffer.alloc(32, 7))).toBe(false);
    expect(noteVerifies(r.text, `${origin}x`, key)).toBe(false);
    const bytes = Buffer.from(r.text, "utf8");
    const accepted: number[] = [];
    for (let i = 0; i < bytes.length; i++) {
      const b = Buffer.from(bytes);
      b[i] ^= 0x01;
      if (noteVerifies(b.toString("utf8"), origin, key)) accepted.push(i);
    }
    expect(accepted).toEqual([]);
    // The same checkpoint gives the same note (signed once per checkpoint, Ed25519 is deterministic).
    const again = await http(s.baseUrl, "GET", "/v1/checkpoint");
    const latest = await getJson<{ index: number }>(s.baseUrl, "/v1/checkpoints/latest");
    if (latest.index === cp.index) expect(again.text).toBe(r.text);
  });
});
