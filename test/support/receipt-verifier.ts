/**
 * An independent receipt verifier (issue 10, acceptance 4): DESIGN.md "Offline verification" read
 * again, with node:crypto through test/support/independent.ts, importing nothing from src/. Returns
 * null when the receipt verifies against the trust file, else why not.
 */
import { CheckpointPayload, KIND_CODES, canonicalJson, entryHash, genesisHash, hexToBuf, leafHash, verifyCheckpointSig, verifyInclusion } from "./independent";

export interface IndTrust {
  readonly cluster: string;
  readonly genesis_hash: string;
  readonly genesis_config: { voters: Array<{ id: string; public_key: string }>; learners: Array<{ id: string; public_key: string }> };
}

type J = Record<string, unknown>;
const keysOf = (o: unknown): string => (typeof o === "object" && o !== null ? Object.keys(o).sort().join(",") : "");
const HEX64 = /^[0-9a-f]{64}$/;

function entryProblem(e: unknown): string | null {
  const x = e as J;
  if (keysOf(x) !== "hash,index,kind,payload_b64,prev_hash,term") return "entry keys";
  const kind = KIND_CODES[x.kind as string];
  if (kind === undefined || typeof x.payload_b64 !== "string" || typeof x.index !== "number" || typeof x.term !== "number") return "entry fields";
  if (!HEX64.test(String(x.prev_hash)) || !HEX64.test(String(x.hash))) return "entry hashes";
  const payload = Buffer.from(x.payload_b64, "base64");
  if (payload.toString("base64") !== x.payload_b64) return "payload_b64 not canonical base64";
  if (!Number.isSafeInteger(x.index) || x.index < 1 || !Number.isSafeInteger(x.term) || x.term < 1) return "entry index/term";
  const h = entryHash(x.index, x.term, kind, hexToBuf(x.prev_hash as string), payload);
  return h.toString("hex") === x.hash ? null : "entry hash";
}

function cpProblem(c: unknown, cluster: string): string | null {
  const x = c as J;
  // subjects_root: in every checkpoint since it existed (DESIGN.md departure, README "Checking that a subject's history is complete").
  if (keysOf(x) !== "cluster,head,index,root,sig,signer,size,term,ts,v" && keysOf(x) !== "cluster,head,index,root,sig,signer,size,subjects_root,term,ts,v") return "checkpoint keys";
  if (x.subjects_root !== undefined && !HEX64.test(String(x.subjects_root))) return "checkpoint fields";
  if (x.v !== 1 || x.cluster !== cluster || typeof x.size !== "number" || x.index !== x.size + 1) return "checkpoint fields";
  if (!HEX64.test(String(x.root)) || !HEX64.test(String(x.head)) || typeof x.signer !== "string" || typeof x.ts !== "string" || typeof x.term !== "number") return "checkpoint fields";
  return null;
}

function included(entry: J, inclusion: unknown, cp: J): boolean {
  const inc = inclusion as J;
  if (keysOf(inc) !== "path,size" || inc.size !== cp.size || !Array.isArray(inc.path) || !inc.path.every((p) => HEX64.test(String(p)))) return false;
  return verifyInclusion((entry.index as number) - 1, cp.size as number, leafHash(hexToBuf(entry.hash as string)), (inc.path as string[]).map(hexToBuf), hexToBuf(cp.root as string));
}

/** null = verified. */
export function independentReceiptProblem(bytes: Uint8Array, trust: IndTrust): string | null {
  let text: string;
  let r: J;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    r = JSON.parse(text) as J;
  } catch (e) {
    return `not JSON: ${(e as Error).message}`;
  }
  if (typeof r !== "object" || r === null || canonicalJson(r) !== text) return "not canonical JSON";
  if (keysOf(r) !== "checkpoint,cluster,entry,inclusion,signer_chain,signer_key,type,v") return "receipt keys";
  if (r.v !== 1 || r.type !== "resonetics/receipt/v1" || r.cluster !== trust.cluster) return "receipt header";
  if (genesisHash(trust.cluster).toString("hex") !== trust.genesis_hash) return "trust genesis hash";
  const bad = entryProblem(r.entry) ?? cpProblem(r.checkpoint, trust.cluster);
  if (bad !== null) return bad;
  const entry = r.entry as J;
  const cp = r.checkpoint as J;
  if ((entry.index as number) > (cp.size as number) || !included(entry, r.inclusion, cp)) return "inclusion";
  let keys = new Map([...trust.genesis_config.voters, ...trust.genesis_config.learners].map((m) => [m.id, m.public_key]));
  let lastIndex = 1;
  if (!Array.isArray(r.signer_chain)) return "signer_chain";
  for (const link of r.signer_chain as J[]) {
    if (keysOf(link) !== "checkpoint,config,inclusion") return "link keys";
    const lb = entryProblem(link.config) ?? cpProblem(link.checkpoint, trust.cluster);
    if (lb !== null) return `link: ${lb}`;
    const c = link.config as J;
    const lcp = link.checkpoint as J;
    if (c.kind !== "config" || (c.index as number) <= lastIndex) return "link config";
    const key = keys.get(lcp.signer as string);
    if (key === undefined || !verifyCheckpointSig(lcp as unknown as CheckpointPayload, key)) return "link signature";
    if ((c.index as number) > (lcp.size as number) || !included(c, link.inclusion, lcp)) return "link inclusion";
    const cfg = JSON.parse(Buffer.from(c.payload_b64 as string, "base64").toString("utf8")) as IndTrust["genesis_config"];
    keys = new Map([...cfg.voters, ...cfg.learners].map((m) => [m.id, m.public_key]));
    lastIndex = c.index as number;
  }
  const key = keys.get(cp.signer as string);
  if (key === undefined || key !== r.signer_key) return "signer_key";
  return verifyCheckpointSig(cp as unknown as CheckpointPayload, key) ? null : "checkpoint signature";
}
