// The account keys' storage lives below the worker and the Room DO, which both need it (the Room DO signs
// the events of local accounts in org.matrix.msc4348 rooms): durable-objects/account-keys.ts.
export * from "../durable-objects/account-keys.js";
