import { createPublicKey, verify as nodeVerify } from "node:crypto";
import { checkpointMessage, decodeCheckpoint, encodeCheckpoint, signCheckpoint, verifyCheckpointSignature, CheckpointBody } from "../../src/ledger/checkpoint";
import { generateKeyPair } from "../../src/ledger/keys";
import { toHex } from "../../src/ledger/bytes";
import { canonicalJson as canonicalJsonOf, keyPair } from "../support/independent";

const spki = (raw: Uint8Array) =>
  createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(raw)]), format: "der", type: "spki" });

const body: CheckpointBody = {
  v: 1, cluster: "c", size: 10, root: "ab".repeat(32), head: "cd".repeat(32), term: 3, signer: "n1", ts: "2026-01-01T00:00:00.000Z",
};

// Describe-scope keys come from node:crypto (independent.ts): nothing outside a test may reach src.
describe("checkpoints", () => {
  const key = keyPair(new Uint8Array(32).fill(7));

  test("the signed message is the tag and canonical JSON of the body, sorted keys", () => {
    const text = Buffer.from(checkpointMessage(body)).toString("utf8");
    expect(text).toBe(
      'resonetics/checkpoint/v1\n{"cluster":"c","head":"' + "cd".repeat(32) + '","root":"' + "ab".repeat(32) +
        '","signer":"n1","size":10,"term":3,"ts":"2026-01-01T00:00:00.000Z","v":1}',
    );
  });

  test("noble signatures verify with node:crypto Ed25519, and round-trip through the payload", () => {
    const cp = signCheckpoint(body, key.secretKey);
    const ok = nodeVerify(null, Buffer.from(checkpointMessage(body)), spki(key.publicKey), Buffer.from(cp.sig, "hex"));
    expect(ok).toBe(true);
    const back = decodeCheckpoint(encodeCheckpoint(cp));
    expect(back).toEqual(cp);
    expect(verifyCheckpointSignature(cp, toHex(key.publicKey))).toBe(true);
  });

  test("a changed field, signature or key fails verification", () => {
    const cp = signCheckpoint(body, key.secretKey);
    const other = generateKeyPair(new Uint8Array(32).fill(9));
    expect(verifyCheckpointSignature({ ...cp, size: 11 }, toHex(key.publicKey))).toBe(false);
    expect(verifyCheckpointSignature({ ...cp, root: "00".repeat(32) }, toHex(key.publicKey))).toBe(false);
    const sig = Buffer.from(cp.sig, "hex");
    sig[5] ^= 1;
    expect(verifyCheckpointSignature({ ...cp, sig: sig.toString("hex") }, toHex(key.publicKey))).toBe(false);
    expect(verifyCheckpointSignature(cp, toHex(other.publicKey))).toBe(false);
    expect(verifyCheckpointSignature(cp, "zz")).toBe(false);
  });

  test("malformed payloads do not decode", () => {
    const cp = signCheckpoint(body, key.secretKey);
    for (const bad of ["", "not json", "[]", JSON.stringify({ ...cp, size: -1 }), JSON.stringify({ ...cp, sig: "00" }), JSON.stringify({ ...cp, v: 2 })]) {
      expect(decodeCheckpoint(Buffer.from(bad))).toBeNull();
    }
    expect(decodeCheckpoint(new Uint8Array([0xff, 0xfe]))).toBeNull();
  });
});

describe("decodeCheckpoint: every field is checked, at its boundaries", () => {
  const key = keyPair(new Uint8Array(32).fill(7));
  let cp: ReturnType<typeof signCheckpoint>;
  beforeEach(() => { cp = signCheckpoint(body, key.secretKey); });
  const decode = (patch: Record<string, unknown>): unknown => decodeCheckpoint(Buffer.from(canonicalJsonOf({ ...cp, ...patch })));

  test("the extremes that are well formed: size and term 0 and 2^53 - 1, any strings for cluster, signer and ts", () => {
    for (const patch of [{ size: 0 }, { term: 0 }, { size: Number.MAX_SAFE_INTEGER }, { term: Number.MAX_SAFE_INTEGER }, { cluster: "" }, { signer: "" }, { ts: "" }]) {
      expect(decode(patch)).toEqual({ ...cp, ...patch });
    }
  });

  test.each([
    ["v 2", { v: 2 }],
    ["v as a string", { v: "1" }],
    ["cluster not a string", { cluster: 1 }],
    ["size negative", { size: -1 }],
    ["size fractional", { size: 1.5 }],
    ["size past 2^53 - 1", { size: 2 ** 53 }],
    ["size as a string", { size: "10" }],
    ["term negative", { term: -1 }],
    ["term fractional", { term: 2.5 }],
    ["term as a string", { term: "3" }],
    ["root not a string", { root: 1 }],
    ["root 63 hex digits", { root: "a".repeat(63) }],
    ["root 65 hex digits", { root: "a".repeat(65) }],
    ["root with a character before it", { root: `x${"a".repeat(64)}` }],
    ["root with a character after it", { root: `${"a".repeat(64)}x` }],
    ["root in uppercase", { root: "A".repeat(64) }],
    ["head not a string", { head: null }],
    ["head 66 hex digits", { head: "c".repeat(66) }],
    ["head with a character before it", { head: `x${"c".repeat(64)}` }],
    ["head with a character after it", { head: `${"c".repeat(64)}x` }],
    ["signer not a string", { signer: 1 }],
    ["ts not a string", { ts: 1 }],
    ["sig not a string", { sig: 1 }],
    ["sig 127 hex digits", { sig: "e".repeat(127) }],
    ["sig 130 hex digits", { sig: "e".repeat(130) }],
    ["sig with a character before it", { sig: `x${"e".repeat(128)}` }],
    ["sig with a character after it", { sig: `${"e".repeat(128)}x` }],
    ["sig in uppercase", { sig: "E".repeat(128) }],
  ])("%s does not decode", (_name, patch) => {
    expect(decode(patch)).toBeNull();
  });

  test.each(["v", "cluster", "size", "root", "head", "term", "signer", "ts", "sig"])("a payload without %s does not decode", (k) => {
    const { [k]: _gone, ...rest } = cp as unknown as Record<string, unknown>;
    expect(decodeCheckpoint(Buffer.from(canonicalJsonOf(rest)))).toBeNull();
  });
});

describe("the signed message leaves out everything but the body", () => {
  const key = keyPair(new Uint8Array(32).fill(7));

  test("a checkpoint with its sig, or carrying its log index (a pinned checkpoint), signs and verifies as its body", () => {
    const cp = signCheckpoint(body, key.secretKey);
    const pinned = { ...cp, index: 11 };
    expect(Buffer.from(checkpointMessage(pinned)).toString("utf8")).toBe(Buffer.from(checkpointMessage(body)).toString("utf8"));
    expect(verifyCheckpointSignature(pinned, toHex(key.publicKey))).toBe(true);
    expect(signCheckpoint({ ...body, index: 11 } as CheckpointBody, key.secretKey).sig).toBe(cp.sig);
  });

  test("a signature that is not hex, or not 64 bytes, verifies nothing (never a throw)", () => {
    const cp = signCheckpoint(body, key.secretKey);
    expect(verifyCheckpointSignature({ ...cp, sig: "zz".repeat(64) }, toHex(key.publicKey))).toBe(false);
    expect(verifyCheckpointSignature({ ...cp, sig: cp.sig.slice(0, 126) }, toHex(key.publicKey))).toBe(false);
    expect(verifyCheckpointSignature(cp, toHex(key.publicKey).slice(0, 62))).toBe(false);
  });
});
