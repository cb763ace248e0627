/** Public surface of the Raft core (DESIGN.md "Raft"): a pure state machine driven by its caller. */
export * from "./types";
export * from "./config";
export { RawNode, type RaftStatus } from "./rawnode";
export { type RaftConfig } from "./raft";
export { MemoryStorage, bootstrapEntry, entrySizeBytes, type Storage } from "./storage";
export { Prng, type Rng } from "./prng";
export { coalesceAppends } from "./coalesce";
