import { createPublicKey, verify as nodeVerify } from "node:crypto";
import { checkpointMessage, decodeCheckpoint, encodeCheckpoint, signCheckpoint, verifyCheckpointSignature, CheckpointBody } from "../../src/ledger/checkpoint";
import { generateKeyPair } from "../../src/ledger/keys";
import { toHex } from "../../src/ledger/bytes";

const spki = (raw: Uint8Array) =>
  createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(raw)]), format: "der", type: "spki" });

const body: CheckpointBody = {
  v: 1, cluster: "c", size: 10, root: "ab".repeat(32), head: "cd".repeat(32), term: 3, signer: "n1", ts: "2026-01-01T00:00:00.000Z",
};

describe("checkpoints", () => {
  const key = generateKeyPair(new Uint8Array(32).fill(7));

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
