// The User DO's stream position counter as the per-user modules see it (durable-objects/user.ts owns the
// `stream` table). Every write that /sync must report takes the next position inside the same synchronous
// transaction as the row it stamps, so "what changed since position N" is a range query.
export interface UserStream {
  /** Takes the next position. Only inside a `transactionSync` with the write it stamps. */
  next(): number;
  /** The position of the latest write (0 before any). */
  current(): number;
}
