// The X25519 exchange of the peer handshake (src/node/peer-session.ts): a key a peer picked to force a known secret gives no session key.
import { KeyExchange } from "../../src/node/peer-session";
test("small-order and zero points give no session key", () => {
  const kx = new KeyExchange();
  const t = { cluster: "c", dialer: "a", listener: "b", listenerNonce: "0".repeat(64), listenerKx: "0".repeat(64), dialerNonce: "0".repeat(64), dialerKx: kx.publicHex, binding: "none" };
  expect(kx.sessionKey("00".repeat(32), t)).toBeNull();
  expect(kx.sessionKey("01" + "00".repeat(31), t)).toBeNull();
  expect(kx.sessionKey(new KeyExchange().publicHex, t)).not.toBeNull();
});
