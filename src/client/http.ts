/**
 * The client's one way to make an HTTP request: Node's global fetch, or, with TLS options (a CA to
 * trust, a client certificate), undici's own fetch with an Agent that carries them. The two are
 * never mixed: the global fetch is undici's bundled copy, and an Agent of another undici version
 * is not a dispatcher it is guaranteed to accept.
 */
import { Agent, fetch as undiciFetch } from "undici";

/** TLS settings of a client, as etcdctl names them: --cacert, --cert, --key (PEM, or its bytes). */
export interface TlsClientOptions {
  /** CA certificate(s) to trust for the server's certificate, instead of the system's store. */
  readonly ca?: string | Buffer;
  /** A client certificate and its key, for a server started with --tls-client-ca. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

/** The part of RequestInit this project's clients use. */
export interface FetchInit {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Uint8Array;
  readonly redirect?: "follow" | "manual" | "error";
  readonly signal?: AbortSignal;
}

/** A fetch: url and init in, a WHATWG Response out. */
export type Fetch = (url: string, init?: FetchInit) => Promise<Response>;

const hasTls = (tls: TlsClientOptions | undefined): tls is TlsClientOptions =>
  tls !== undefined && (tls.ca !== undefined || tls.cert !== undefined || tls.key !== undefined);

/** The global fetch without TLS options; otherwise undici's fetch through one Agent (its connections are reused). */
export function fetchWith(tls?: TlsClientOptions): Fetch {
  // Looked up per call, not captured: whoever replaces globalThis.fetch later (a test) is honoured.
  if (!hasTls(tls)) return (url, init) => fetch(url, init);
  const agent = new Agent({ connect: { ca: tls.ca, cert: tls.cert, key: tls.key } });
  return async (url, init) => {
    const res = await undiciFetch(url, { ...init, dispatcher: agent });
    // undici's Response is the WHATWG Response the global fetch returns (Node's fetch is undici);
    // only the type declarations of the two copies differ.
    return res as unknown as Response;
  };
}
