// Acceptance 5 of issue 4, on real node processes: a peer connection from a process without a
// configured node key is refused (close 4401, "peer connection refused" logged) and nothing it
// sends is applied; a forged AppendEntries (wrong entry hash) sent with a configured node's stolen
// key is rejected, logged ("verification failed") and not applied, and the follower still takes
// the real leader's entry at that index afterwards.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { TestCluster } from "../support/cluster";
import { cleanupAll, getJson, http, parseJsonOutput, pollUntil, runVerifyChain, withFailureContext } from "../support/server";
import { PeerTranscript, RaftPeerSocket, closeAllRaftPeers, listenerAuthMessage, waitForLogLine } from "../support/raft-peer";
import { canonicalJson, entryHash, hexToBuf, verifyEd25519 } from "../support/independent";
import { generateKeyPair } from "../../src/ledger/keys";
import { encodeFrame } from "../../src/node/peer-codec";
import { LedgerClient } from "../../src/client/client";

jest.setTimeout(120_000);

const KIND_RECORD = 1;
/** Every forged payload has this subject, so its bytes are recognisable wherever they land. */
const FORGED_MARK = '"subject":"forged"';
/** Polls that show a rejected frame stays unapplied: 20 x (50 ms + requests) spans many heartbeats (tick 20 ms). */
const NOT_APPLIED_POLLS = 20;

let cluster: TestCluster;
beforeAll(async () => {
  // No time-driven checkpoints: the log grows only when a test writes (or a new leader adds its NOOP).
  cluster = await TestCluster.start(3, { serveArgs: ["--checkpoint-interval-ms", "3600000"] });
});
afterAll(async () => {
  closeAllRaftPeers();
  await cluster?.stopAll();
  await cleanupAll();
});

interface EntryJson { index: number; term: number; kind: string; hash: string; payload_b64: string }
interface Quiet { leader: string; term: number; last: number; cluster: string }

/** Waits until every node is up, agrees on the leader and term, and has applied the same log. */
async function quiet(): Promise<Quiet> {
  const leader = await cluster.leader();
  return pollUntil(`all 3 nodes applied the same log under leader ${leader}`, async () => {
    const st = await cluster.statuses();
    const l = st.find((s) => s.node_id === leader);
    if (st.length !== 3 || l === undefined || l.role !== "leader" || l.last_applied < 2) return undefined;
    const same = st.every((s) => s.term === l.term && s.leader === leader && s.last_applied === l.last_applied &&
      s.commit_index === l.last_applied && s.head === l.head);
    return same ? { leader, term: l.term, last: l.last_applied, cluster: l.cluster } : undefined;
  }, 400, 50);
}

/** A record payload as the leader would write it (canonical JSON), marked so it is recognisable. */
function forgedPayload(tag: string): Buffer {
  return Buffer.from(canonicalJson({
    v: 1, type: "policy.set", subject: "forged", data: { name: tag, value: 1 }, ts: new Date().toISOString(),
  }), "utf8");
}

/** An Append from `from` to `to` carrying one entry after the follower's last entry. */
function appendFrame(from: string, to: string, q: Quiet, prev: EntryJson, entry: { payload: Buffer; hash: Buffer }): string {
  return encodeFrame({
    type: "Append", from, to, term: q.term,
    prevIndex: prev.index, prevTerm: prev.term, prevHash: new Uint8Array(hexToBuf(prev.hash)),
    entries: [{ index: prev.index + 1, term: q.term, kind: KIND_RECORD, payload: new Uint8Array(entry.payload), hash: new Uint8Array(entry.hash) }],
    commit: prev.index + 1,
  });
}

/**
 * Positive part first (the caller saw the rejection), then a bounded watch that nothing moved: no
 * node holds one of the forged entries at last+1, and none halted. (A spurious election under load
 * may put the new leader's NOOP there; that is not ours, so it is recognised by hash and payload.)
 */
async function expectNothingApplied(last: number, forgedHashes: readonly string[], tag: string): Promise<void> {
  for (let i = 0; i < NOT_APPLIED_POLLS; i++) {
    for (const id of cluster.ids) {
      const s = await cluster.status(id);
      expect({ id, halted: s.halted }).toEqual({ id, halted: null });
      const r = await http(cluster.url(id), "GET", `/v1/records/${last + 1}?consistency=local`);
      if (r.status === 404) continue;
      expect({ id, index: last + 1, status: r.status }).toEqual({ id, index: last + 1, status: 200 });
      const e = r.json as EntryJson;
      const forged = forgedHashes.includes(e.hash) || Buffer.from(e.payload_b64, "base64").toString("utf8").includes(tag);
      expect({ id, index: last + 1, forged }).toEqual({ id, index: last + 1, forged: false });
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One real write through the client; every node then holds the leader's entry at its index. */
async function realWriteLandsEverywhere(notHashes: readonly string[]): Promise<void> {
  const client = new LedgerClient({ urls: cluster.urls(), token: cluster.token });
  const ack = await client.append({ type: "policy.set", subject: "real", data: { name: "after-forgery", value: 1 } });
  await cluster.converged(ack.index);
  const entries = await Promise.all(cluster.ids.map((id) => getJson<EntryJson>(cluster.url(id), `/v1/records/${ack.index}?consistency=local`)));
  for (const e of entries) expect(e).toEqual(entries[0]);
  expect(entries[0].hash).toBe(ack.hash);
  for (const h of notHashes) expect(entries[0].hash).not.toBe(h);
}

describe("peer authentication on real nodes (acceptance 5)", () => {
  const cases = [
    { name: "a fresh key claiming to be n2", claim: "n2" as string | null, reason: "signature does not verify against n2" },
    { name: "a fresh key claiming an unknown id n9", claim: "n9" as string | null, reason: "is not in the configuration" },
    { name: "frames sent without any handshake", claim: null as string | null, reason: "handshake is not for this cluster" },
  ];
  test.each(cases)("$name: refused with 4401, logged, and nothing it sends is applied", ({ claim, reason }) =>
    withFailureContext(() => `cluster root ${cluster.root}; claim ${String(claim)}\n` +
      cluster.running().map((id) => cluster.servers.get(id)?.output() ?? "").join("\n"), [cluster.root], async () => {
      const q = await quiet();
      // A follower that is not n2, so claiming n2 is claiming some other configured node.
      const target = cluster.ids.find((id) => id !== q.leader && id !== "n2") as string;
      const server = cluster.servers.get(target);
      if (server === undefined) throw new Error(`${target} is not running`);
      const prev = await getJson<EntryJson>(cluster.url(target), `/v1/records/${q.last}?consistency=local`);

      const sock = await RaftPeerSocket.connect(cluster.port(target));
      expect(sock.challenge).toMatchObject({ t: "challenge", node: target, cluster: q.cluster });
      expect(sock.challenge.nonce).toMatch(/^[0-9a-f]{64}$/);
      // A correctly hashed entry: had the connection been accepted, the follower would apply it.
      const payload = forgedPayload(`impostor-${String(claim)}`);
      const hash = entryHash(q.last + 1, q.term, KIND_RECORD, hexToBuf(prev.hash), payload);
      const frame = appendFrame(claim ?? q.leader, target, q, prev, { payload, hash });
      if (claim !== null) sock.sendAuth(claim, generateKeyPair().secretKey, randomBytes(32).toString("hex"));
      // Sent at once, before the node answers the handshake: it must not slip through either.
      expect(sock.sendText(frame)).toBe(true);

      const answer = await sock.nextMessageOrClose();
      expect(answer).toEqual({ close: { code: 4401, reason: expect.stringContaining(reason) as unknown } });
      expect(sock.messages).toEqual([]); // never an "ok"
      await waitForLogLine(server, `peer connection refused: ${reason}`, (l) => l.includes("peer connection refused") && l.includes(reason));
      expect(sock.sendText(frame)).toBe(false); // closed: nothing more gets in

      await expectNothingApplied(q.last, [hash.toString("hex")], FORGED_MARK);
      await realWriteLandsEverywhere([hash.toString("hex")]);
    }));

  test("a forged AppendEntries (wrong entry hash) under a stolen leader key is rejected, logged and not applied", () =>
    withFailureContext(() => `cluster root ${cluster.root}\n` +
      cluster.running().map((id) => cluster.servers.get(id)?.output() ?? "").join("\n"), [cluster.root], async () => {
      const q = await quiet();
      const leader = q.leader;
      const target = cluster.ids.find((id) => id !== leader) as string;
      const server = cluster.servers.get(target);
      if (server === undefined) throw new Error(`${target} is not running`);
      const prev = await getJson<EntryJson>(cluster.url(target), `/v1/records/${q.last}?consistency=local`);
      const targetKey = (await getJson<{ public_key: string }>(cluster.url(target), "/v1/status")).public_key;

      // Authenticate AS the leader with its real key, read from its data dir.
      const secret = hexToBuf(fs.readFileSync(path.join(cluster.dir(leader), "node.key"), "utf8").trim());
      const sock = await RaftPeerSocket.connect(cluster.port(target));
      const nonce = randomBytes(32).toString("hex");
      sock.sendAuth(leader, new Uint8Array(secret), nonce);
      const answer = await sock.nextMessageOrClose();
      expect(answer).toEqual({ message: { t: "ok", sig: expect.stringMatching(/^[0-9a-f]{128}$/) as unknown } });
      const ok = (answer as { message: { sig: string } }).message;
      // The follower proved its own key over our nonce and X25519 key: we really talk to it, authenticated.
      expect(sock.transcript).toMatchObject({ cluster: q.cluster, dialer: leader, listener: target, dialerNonce: nonce });
      expect(verifyEd25519(targetKey, listenerAuthMessage(sock.transcript as PeerTranscript), ok.sig)).toBe(true);

      // 1: a record whose claimed hash is random bytes.
      const p1 = forgedPayload("forged-random-hash");
      const h1 = randomBytes(32);
      // 2: a tampered payload under the hash of a different (honest-looking) payload.
      const h2 = entryHash(q.last + 1, q.term, KIND_RECORD, hexToBuf(prev.hash), forgedPayload("the-payload-that-was-hashed"));
      const p2 = forgedPayload("the-payload-that-was-sent");
      for (const [payload, hash] of [[p1, h1], [p2, h2]] as const) {
        expect(sock.sendFrame(appendFrame(leader, target, q, prev, { payload, hash }))).toBe(true);
        const hex = hash.toString("hex");
        await waitForLogLine(server, `verification failed for the entry claiming ${hex}`, (l) => l.includes("verification failed") && l.includes(hex));
      }
      // A protocol-level rejection, not a dropped connection: the sender stays connected.
      expect(sock.isOpen()).toBe(true);

      await expectNothingApplied(q.last, [h1.toString("hex"), h2.toString("hex")], FORGED_MARK);
      await realWriteLandsEverywhere([h1.toString("hex"), h2.toString("hex")]);

      // Offline: every data dir verifies (the forged entries left no trace in any chain).
      sock.terminate();
      await cluster.stopAll();
      for (const id of cluster.ids) {
        const v = await runVerifyChain(cluster.dir(id));
        expect({ id, code: v.code, ok: parseJsonOutput(v.stdout)?.ok }).toEqual({ id, code: 0, ok: true });
      }
    }));
});
