/**
 * The package's entry point (`import { Client } from "resonetics"`, package.json main/exports →
 * dist/client/index.js): the TypeScript client and what a caller needs to use it. It sits in
 * src/client/ rather than src/ because it is the client library and nothing else; the server is
 * the `resonetics` command, not an import. API doc: docs/client.md.
 */
export { LedgerClient as Client, LedgerClient, sameHash } from "./client";
export type { AppendAck, ClientOptions, ConsistencyJson, EntryJson, InclusionJson } from "./client";
export { ClientError, ForkError, RollbackError, StateFileError } from "./errors";
export type { CheckpointRef, StateFileErrorCode } from "./errors";
export { ClientState, CLUSTERS_MAX } from "./state";
export type { AnchorSource, ClusterState, Membership } from "./state";
export type { TlsClientOptions } from "./http";
export type { TrustFile, PinnedCheckpoint } from "../ledger/trust";
export type { RecordRequest } from "../ledger/record";
