/**
 * Record types: one JSON Schema per type in schemas/records/<type>.json validates a record's data.
 * Dropping a new schema file in that folder adds a type (read at start).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import Ajv, { ErrorObject, ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { LedgerError } from "../util/errors";
import { RecordRequest } from "../ledger/record";

export const SCHEMAS_DIR = path.resolve(__dirname, "..", "..", "schemas");
/** Record types the ledger writes itself (resonetics.prune: POST /v1/admin/prune); a client may not. */
export const RESERVED_TYPE_PREFIX = "resonetics.";

const describe = (errors: ErrorObject[] | null | undefined, root: string): { path: string; message: string } => {
  const e = errors?.[0];
  if (e === undefined) return { path: root, message: "invalid" };
  const at = `${root}${e.instancePath}`;
  const extra = e.keyword === "additionalProperties" ? ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})` : "";
  return { path: at, message: `${at} ${e.message ?? "is invalid"}${extra}` };
};

export interface ValidRequest {
  readonly record: RecordRequest;
  /** client_id:request_id when the body carried both. */
  readonly clientKey?: string;
}

/** Validates POST /v1/records bodies and their data against the record type's schema. */
export class RecordTypes {
  private readonly ajv: Ajv;
  private readonly request: ValidateFunction;
  private readonly types = new Map<string, ValidateFunction>();

  constructor(dir = SCHEMAS_DIR) {
    this.ajv = new Ajv({ allErrors: false, strict: true });
    addFormats(this.ajv);
    this.request = this.ajv.compile(JSON.parse(fs.readFileSync(path.join(dir, "api", "record-request.json"), "utf8")));
    for (const file of fs.readdirSync(path.join(dir, "records")).filter((f) => f.endsWith(".json")).sort()) {
      const type = file.slice(0, -".json".length);
      this.types.set(type, this.ajv.compile(JSON.parse(fs.readFileSync(path.join(dir, "records", file), "utf8"))));
    }
  }

  names(): string[] {
    return [...this.types.keys()];
  }

  /** Checks a request body; throws LedgerError with a stable code and the failing path. A reserved type only with allowReserved. */
  validate(body: unknown, allowReserved = false): ValidRequest {
    if (!this.request(body)) {
      const d = describe(this.request.errors, "body");
      throw new LedgerError("schema_violation", d.message, { path: d.path });
    }
    const b = body as { type: string; subject: string; data: unknown; actor?: string; client_id?: string; request_id?: string };
    if (!allowReserved && b.type.startsWith(RESERVED_TYPE_PREFIX)) {
      throw new LedgerError("unknown_record_type", `record types ${RESERVED_TYPE_PREFIX}* are written by the ledger itself, not by clients (a prune: POST /v1/admin/prune)`);
    }
    const check = this.types.get(b.type);
    if (check === undefined) {
      throw new LedgerError("unknown_record_type", `unknown record type ${JSON.stringify(b.type)}; known: ${this.names().join(", ")}`);
    }
    if (!check(b.data)) {
      const d = describe(check.errors, "data");
      throw new LedgerError("schema_violation", `${b.type}: ${d.message}`, { path: d.path });
    }
    if ((b.client_id === undefined) !== (b.request_id === undefined)) {
      throw new LedgerError("schema_violation", "client_id and request_id go together", { path: "body" });
    }
    const record: RecordRequest = b.actor === undefined
      ? { type: b.type, subject: b.subject, data: b.data }
      : { type: b.type, subject: b.subject, data: b.data, actor: b.actor };
    return b.client_id === undefined ? { record } : { record, clientKey: `${b.client_id}:${b.request_id}` };
  }
}
