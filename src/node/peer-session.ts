/**
 * The peer link's session: what its handshake signs, the key it agrees, and the tag every frame
 * after it carries. One connection carries frames one way, dialer D → listener L:
 *
 *   L → D  {t:"challenge", node: L, cluster, nonce: nonce_L, kx: kx_L}
 *   D → L  {t:"auth", node: D, cluster, nonce: nonce_D, kx: kx_D, sig: Ed25519_D("resonetics/peer-auth/v2\n" || T)}
 *   L → D  {t:"ok", sig: Ed25519_L("resonetics/peer-auth-reply/v2\n" || T)}
 *   T = cluster \n D \n L \n nonce_L \n kx_L \n nonce_D \n kx_D \n binding
 *
 * kx_* are ephemeral X25519 public keys; binding is "tls-exporter:" + hex of the TLS exporter
 * (RFC 9266: label "EXPORTER-Channel-Binding", 32 bytes, TLS 1.3 only) on a TLS link and "none" on
 * a plain one. Both sides sign all of T with their configured node keys, so a man in the middle who
 * swaps an X25519 key fails a signature, and a relay or a terminating proxy (two TLS sessions, two
 * exporters; or TLS on one side only) fails on the binding, however valid the signature it relays.
 *
 * The session key is HKDF-SHA256(X25519(own secret, peer's kx), salt = SHA-256(T),
 * info = "resonetics/peer-frames/v1"), 32 bytes; only the two ends hold it. Every frame after "ok"
 * is binary: HMAC-SHA256(key, u64be(seq) || body) || body, with seq counting from 0 on each
 * connection. A frame changed, injected, replayed, reordered or dropped on the way fails its tag,
 * plain link or TLS: the listener then drops the connection and the dialer redials.
 */
import { createHash, createHmac, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, KeyObject, timingSafeEqual } from "node:crypto";
import { TLSSocket } from "node:tls";
import { utf8 } from "../ledger/bytes";

/** RFC 9266 section 2: the exporter label of the tls-exporter channel binding type. */
const EXPORTER_LABEL = "EXPORTER-Channel-Binding";
/** RFC 9266: 32 bytes of exporter output. */
const EXPORTER_BYTES = 32;
/** TLS 1.3 exports with an empty context exactly as with none (RFC 8446 section 7.5), which RFC 9266 uses. */
const NO_CONTEXT = Buffer.alloc(0);
export const BINDING_NONE = "none";
/** The HMAC-SHA256 tag in front of every frame body. */
export const TAG_BYTES = 32;
const SESSION_KEY_BYTES = 32;
const FRAMES_INFO = utf8("resonetics/peer-frames/v1");
/** An X25519 public key on the wire: 32 bytes in lowercase hex. */
export const KX_HEX = /^[0-9a-f]{64}$/;

/** Everything both ends sign: who talks to whom, in which cluster, over which fresh keys and which channel. */
export interface Transcript {
  readonly cluster: string;
  readonly dialer: string;
  readonly listener: string;
  readonly listenerNonce: string;
  readonly listenerKx: string;
  readonly dialerNonce: string;
  readonly dialerKx: string;
  readonly binding: string;
}

function transcriptText(t: Transcript): string {
  return [t.cluster, t.dialer, t.listener, t.listenerNonce, t.listenerKx, t.dialerNonce, t.dialerKx, t.binding].join("\n");
}

/** What the dialer signs with its node key. */
export const dialerAuthMessage = (t: Transcript): Uint8Array => utf8(`resonetics/peer-auth/v2\n${transcriptText(t)}`);
/** What the listener signs with its node key in its "ok". */
export const listenerAuthMessage = (t: Transcript): Uint8Array => utf8(`resonetics/peer-auth-reply/v2\n${transcriptText(t)}`);

/**
 * The channel binding of the socket a WebSocket runs on: the TLS exporter on a TLS 1.3 session,
 * BINDING_NONE on a plain socket, null on an older TLS session (whose exporter binds nothing
 * without the extended master secret: RFC 9266 section 3), which the caller refuses.
 */
export function channelBinding(socket: unknown): string | null {
  if (!(socket instanceof TLSSocket)) return BINDING_NONE;
  if (socket.getProtocol() !== "TLSv1.3") return null;
  return `tls-exporter:${socket.exportKeyingMaterial(EXPORTER_BYTES, EXPORTER_LABEL, NO_CONTEXT).toString("hex")}`;
}

/** One side's ephemeral X25519 key for one connection; never reused. */
export class KeyExchange {
  private readonly secret: KeyObject;
  /** The public key as sent on the wire (64 hex). */
  readonly publicHex: string;

  constructor() {
    const { privateKey, publicKey } = generateKeyPairSync("x25519");
    this.secret = privateKey;
    this.publicHex = Buffer.from(publicKey.export({ format: "jwk" }).x as string, "base64url").toString("hex");
  }

  /**
   * The session key shared with the holder of peerHex over this transcript, or null when peerHex
   * is not a usable key (a small-order point makes an all-zero secret that anyone could compute).
   */
  sessionKey(peerHex: string, transcript: Transcript): Buffer | null {
    if (!KX_HEX.test(peerHex)) return null;
    let shared: Buffer;
    try {
      const peer = createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(peerHex, "hex").toString("base64url") }, format: "jwk" });
      shared = diffieHellman({ privateKey: this.secret, publicKey: peer });
    } catch {
      // The peer chose these 32 bytes, and this throw is the verdict on them, not a fault here:
      // OpenSSL refuses a small-order point itself ("failed during derivation"), the same verdict as
      // an all-zero secret: not a usable key. The caller refuses the handshake and logs why.
      return null;
    }
    if (shared.every((b) => b === 0)) return null;
    const salt = createHash("sha256").update(utf8(transcriptText(transcript))).digest();
    return Buffer.from(hkdfSync("sha256", shared, salt, FRAMES_INFO, SESSION_KEY_BYTES));
  }
}

function tag(key: Buffer, seq: number, body: Uint8Array): Buffer {
  const s = Buffer.alloc(8);
  s.writeBigUInt64BE(BigInt(seq));
  return createHmac("sha256", key).update(s).update(body).digest();
}

/** The dialer's side: tags frames in the order they are sent. */
export class FrameSealer {
  private seq = 0;

  constructor(private readonly key: Buffer) {}

  seal(body: Uint8Array): Buffer {
    const t = tag(this.key, this.seq, body);
    this.seq++;
    return Buffer.concat([t, body]);
  }
}

/** The listener's side: accepts frames only with the tag of the next sequence number. */
export class FrameOpener {
  private seq = 0;

  constructor(private readonly key: Buffer) {}

  /** The frame's body, or null when its tag is not the next frame's (the caller drops the link). */
  open(frame: Buffer): Buffer | null {
    if (frame.length < TAG_BYTES) return null;
    const body = frame.subarray(TAG_BYTES);
    if (!timingSafeEqual(frame.subarray(0, TAG_BYTES), tag(this.key, this.seq, body))) return null;
    this.seq++;
    return body;
  }
}
