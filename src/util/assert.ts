/** Thrown when an invariant does not hold: a bug or corruption, never bad user input. */
export class AssertionError extends Error {
  readonly code = "invariant_violation";
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Invariant check that stays on in production: a silent corruption becomes a loud stop. */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionError(typeof message === "string" ? message : message());
}
