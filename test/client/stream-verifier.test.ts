// What `resonetics tail` checks of each stream frame (src/client/stream-verifier.ts), in process, on
// a chain built with the ledger's own code: a genesis CONFIG, a record, a signed checkpoint. Each
// planted fault (a frame, a key, a head, a root, a signer, a parsed copy that is not the payload)
// must stop it at that entry with the reason; the untouched chain must pass.
import { entryView } from "../../src/api/views";
import { toHex } from "../../src/ledger/bytes";
import { encodeCheckpoint, signCheckpoint } from "../../src/ledger/checkpoint";
import { ClusterConfig, encodeConfig } from "../../src/ledger/config";
import { chainEntry, Entry, EntryKind, genesisHash } from "../../src/ledger/entry";
import { generateKeyPair } from "../../src/ledger/keys";
import { CompactRange } from "../../src/ledger/merkle";
import { encodeRecord } from "../../src/ledger/record";
import { StreamVerifier } from "../../src/client/stream-verifier";

const CLUSTER = "stream-verifier-test";
const n1 = generateKeyPair(new Uint8Array(32).fill(1));
const stranger = generateKeyPair(new Uint8Array(32).fill(2));
const config: ClusterConfig = { v: 1, voters: [{ id: "n1", address: "127.0.0.1:7001", public_key: toHex(n1.publicKey) }], learners: [] };

interface CheckpointFaults {
  readonly key?: Uint8Array;
  readonly signer?: string;
  readonly head?: string;
  readonly root?: string;
}

/** Entries 1..4: CONFIG, RECORD, RECORD, CHECKPOINT of size 3 (signed by n1 unless a fault says otherwise). */
function chain(f: CheckpointFaults = {}): Entry[] {
  const out: Entry[] = [];
  const tree = new CompactRange();
  const add = (kind: EntryKind, payload: Uint8Array): void => {
    const prev = out.length === 0 ? genesisHash(CLUSTER) : out[out.length - 1].hash;
    const e = chainEntry(out.length + 1, 1, kind, prev, payload);
    out.push(e);
    tree.append(e.hash);
  };
  add(EntryKind.Config, encodeConfig(config));
  add(EntryKind.Record, encodeRecord({ v: 1, type: "policy.set", subject: "s", data: { name: "a", value: 1 }, ts: "2026-01-01T00:00:00Z" }));
  add(EntryKind.Record, encodeRecord({ v: 1, type: "policy.set", subject: "s", data: { name: "b", value: 2 }, ts: "2026-01-01T00:00:01Z" }));
  const cp = signCheckpoint({
    v: 1, cluster: CLUSTER, size: 3, root: f.root ?? toHex(tree.root()), head: f.head ?? toHex(out[2].hash), term: 1,
    signer: f.signer ?? "n1", ts: "2026-01-01T00:00:02Z",
  }, f.key ?? n1.secretKey);
  add(EntryKind.Checkpoint, encodeCheckpoint(cp));
  return out;
}

/** The frames as the server sends them. */
const frames = (entries: readonly Entry[]): string[] =>
  entries.map((e, i) => JSON.stringify({ type: "entry", entry: entryView(e, i === 0 ? genesisHash(CLUSTER) : entries[i - 1].hash) }));

/** Feeds frames from entry `from` on; the first failure, or "ok". */
function run(list: readonly string[], from = 1, entries = chain()): string {
  const v = new StreamVerifier({ from, prevHash: from === 1 ? genesisHash(CLUSTER) : entries[from - 2].hash, cluster: CLUSTER, config });
  for (const f of list.slice(from - 1)) {
    const r = v.accept(f);
    if (!r.ok) return `entry ${r.index}: ${r.reason}`;
  }
  return `ok, next ${v.next}`;
}

describe("StreamVerifier (what tail checks per frame)", () => {
  test("the untouched chain passes, from 1 (with the Merkle root) and from the middle", () => {
    expect(run(frames(chain()))).toBe("ok, next 5");
    expect(run(frames(chain()), 3)).toBe("ok, next 5");
  });

  test("a frame that does not chain, does not parse, or carries something else", () => {
    const f = frames(chain());
    const swapped = [f[0], f[2], f[1], f[3]];
    expect(run(swapped)).toMatch(/^entry 2: expected entry 2, got index 3$/);
    expect(run([f[0], f[1].slice(0, -1)])).toMatch(/^entry 2: the frame is not JSON/);
    expect(run([f[0], JSON.stringify({ type: "entry", entry: JSON.parse(f[1]).entry, extra: 1 })])).toMatch(/^entry 2: the frame is not/);
    // A chain of its own (another genesis) hashes consistently but does not link to the entry before.
    const other = chainEntry(2, 1, EntryKind.Noop, new Uint8Array(32), new Uint8Array());
    expect(run([f[0], JSON.stringify({ type: "entry", entry: entryView(other, new Uint8Array(32)) })])).toMatch(/^entry 2: prev_hash 0{64} is not the hash of entry 1/);
  });

  test("one changed byte of a payload, or a parsed copy that is not the payload", () => {
    const f = frames(chain());
    const e = JSON.parse(f[1]).entry as { payload_b64: string; record: { data: { value: number } } };
    const b = Buffer.from(e.payload_b64, "base64");
    b[b.length - 3] ^= 1;
    expect(run([f[0], JSON.stringify({ type: "entry", entry: { ...e, payload_b64: b.toString("base64") } })])).toMatch(/^entry 2: hash does not match its contents/);
    expect(run([f[0], JSON.stringify({ type: "entry", entry: { ...e, record: { ...e.record, data: { name: "a", value: 2 } } } })])).toBe("entry 2: its record is not what its payload says");
    expect(run([f[0], JSON.stringify({ type: "entry", entry: { ...e, note: "x" } })])).toBe('entry 2: an unexpected key "note"');
  });

  test("a checkpoint with a valid hash but a wrong signature, signer, head or root", () => {
    expect(run(frames(chain({ key: stranger.secretKey })))).toMatch(/^entry 4: checkpoint signature does not verify with n1's key/);
    expect(run(frames(chain({ key: stranger.secretKey, signer: "n9" })))).toMatch(/^entry 4: checkpoint signer "n9" is not a member of the configuration \(n1\)$/);
    expect(run(frames(chain({ head: "00".repeat(32) })))).toMatch(/^entry 4: the checkpoint's head 0{64} is not the hash of entry 3/);
    expect(run(frames(chain({ root: "00".repeat(32) })))).toMatch(/^entry 4: the checkpoint's root 0{64} is not root\(3\) of the entries streamed/);
    // From the middle the root of everything before is unknown to tail: signature and head still hold.
    expect(run(frames(chain({ root: "00".repeat(32) })), 3, chain({ root: "00".repeat(32) }))).toBe("ok, next 5");
  });
});
