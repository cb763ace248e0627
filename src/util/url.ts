/**
 * A URL, or null when `raw` (against `base`) is none. URL.canParse decides, not `instanceof
 * TypeError` on what `new URL` throws: that error comes from Node's own realm, which is not the
 * caller's inside a vm context (jest runs every test file in one), so the check would let it escape.
 */
export function parseUrl(raw: string, base?: string): URL | null {
  return URL.canParse(raw, base) ? new URL(raw, base) : null;
}
