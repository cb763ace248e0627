/** A WebSocket close frame's reason is at most 123 bytes of UTF-8 (RFC 6455 5.5: 125 minus the 2-byte code). */
export const CLOSE_REASON_BYTES_MAX = 123;

/**
 * The longest prefix of s, cut at a code point, whose UTF-8 fits a close frame. ws throws on a
 * longer reason, and a reason often quotes what a peer sent: uncut, one frame of multi-byte text
 * would turn a refusal into an exception.
 */
export function closeReason(s: string): string {
  if (Buffer.byteLength(s) <= CLOSE_REASON_BYTES_MAX) return s;
  let out = "";
  let bytes = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > CLOSE_REASON_BYTES_MAX) break;
    out += ch;
    bytes += n;
  }
  return out;
}
