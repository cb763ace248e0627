/**
 * Checkpoints as C2SP signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint), per DESIGN.md
 * "Offline verification": the body "<origin>\n<size>\n<base64 root>\n", a blank line, and one
 * signature line "— <origin> <base64(key id || Ed25519 signature over the body)>", with key id =
 * SHA-256(origin || 0x0A || 0x01 || public key)[:4] (0x01: the Ed25519 signature type).
 */
import { sha256 } from "./hash";
import { bytesEqual, concatBytes, fromHex, utf8 } from "./bytes";
import { sign, verifySignature } from "./keys";

/** The signature line's dash: U+2014 EM DASH, then a space (the signed-note format). */
const SIG_PREFIX = "\u2014 ";
const ED25519_ALG = 0x01;
const KEY_ID_BYTES = 4;
/** A key name is non-empty, with no whitespace and no "+" (signed-note). */
const KEY_NAME = /^[^\s+]+$/;

/** The default origin (and key name) of a cluster's checkpoints. */
export const noteOrigin = (cluster: string): string => `resonetics/${cluster}`;

/** key id = SHA-256(key name || 0x0A || 0x01 || raw Ed25519 public key)[:4]. */
export function noteKeyId(origin: string, publicKey: Uint8Array): Uint8Array {
  return sha256(utf8(origin), new Uint8Array([0x0a, ED25519_ALG]), publicKey).slice(0, KEY_ID_BYTES);
}

/** The checkpoint note body (tlog-checkpoint): origin, decimal size, standard base64 root, each line ending in "\n". */
export function checkpointNoteBody(origin: string, size: number, rootHex: string): string {
  const root = fromHex(rootHex);
  if (root === null || root.length !== 32) throw new RangeError("root must be 64 lowercase hex digits");
  if (!KEY_NAME.test(origin)) throw new RangeError("origin must be non-empty, with no whitespace and no '+'");
  return `${origin}\n${size}\n${Buffer.from(root).toString("base64")}\n`;
}

/** The signed note: body, blank line, one signature line by `origin`'s key. */
export function signNote(body: string, origin: string, secretKey: Uint8Array, publicKey: Uint8Array): string {
  const sig = sign(utf8(body), secretKey);
  const blob = Buffer.from(concatBytes(noteKeyId(origin, publicKey), sig)).toString("base64");
  return `${body}\n${SIG_PREFIX}${origin} ${blob}\n`;
}

/** Why a signed note does not verify with (origin, publicKey), or null when one of its signature lines does. */
export function noteProblem(text: string, origin: string, publicKey: Uint8Array): string | null {
  const split = text.indexOf("\n\n");
  if (split < 0) return "no blank line between the body and the signatures";
  const body = text.slice(0, split + 1);
  const sigs = text.slice(split + 2);
  if (!sigs.endsWith("\n")) return "the signature block does not end with a newline";
  const want = noteKeyId(origin, publicKey);
  for (const line of sigs.slice(0, -1).split("\n")) {
    if (!line.startsWith(SIG_PREFIX)) return `a signature line does not start with "${SIG_PREFIX}"`;
    const [name, blob, extra] = line.slice(SIG_PREFIX.length).split(" ");
    if (name !== origin || blob === undefined || extra !== undefined) continue;
    const raw = Buffer.from(blob, "base64");
    if (raw.toString("base64") !== blob || raw.length !== KEY_ID_BYTES + 64) continue;
    if (!bytesEqual(raw.subarray(0, KEY_ID_BYTES), want)) continue;
    return verifySignature(raw.subarray(KEY_ID_BYTES), utf8(body), publicKey) ? null : "the signature does not verify over the note body";
  }
  return `no signature line by ${origin} with key id ${Buffer.from(want).toString("hex")}`;
}
