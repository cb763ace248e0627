/**
 * Wire encoding of peer frames: JSON, with byte arrays as {"$b": base64}. Generic over the message
 * shape so the Raft core's union can change without touching the transport.
 */
const BYTES_KEY = "$b";

/** Encodes a frame; Uint8Array values (at any depth) become {"$b": base64}. */
export function encodeFrame(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v instanceof Uint8Array ? { [BYTES_KEY]: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") } : v,
  );
}

/**
 * Decodes a frame; throws SyntaxError on malformed input (the caller drops the peer). A {"$b"}
 * value must be canonical base64 (what encodeFrame writes): Buffer.from skips characters that are
 * not base64, so anything else would decode to bytes the sender never meant.
 */
export function decodeFrame(text: string): unknown {
  return JSON.parse(text, (_key, v: unknown) => {
    if (typeof v === "object" && v !== null && !Array.isArray(v)) {
      const keys = Object.keys(v);
      const b = (v as Record<string, unknown>)[BYTES_KEY];
      if (keys.length === 1 && typeof b === "string") {
        const buf = Buffer.from(b, "base64");
        if (buf.toString("base64") !== b) throw new SyntaxError("a byte field is not canonical base64");
        return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
      }
    }
    return v;
  });
}
