import type { LabCa } from "./ca.mjs";
export { makeCa } from "./ca.mjs";
export type { LabCa };

export const SYNAPSE_VERSION: string;

export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

export interface StartSynapseOptions {
  /** Default `localhost:<port>`. */
  serverName?: string;
  /** The TLS federation port (the server name's port); default a free port. */
  port?: number;
  /** The plain-HTTP client API (and federation) port; default a free port. */
  clientPort?: number;
  /** A CA folder (makeCa): with it, Synapse serves federation over TLS on `port` and trusts the CA. */
  caDir?: string;
  /** Default a new temporary folder, removed by stop(). */
  dataDir?: string;
  /** Top-level Synapse config keys, merged last. */
  extraConfig?: Record<string, unknown>;
  logLevel?: string;
  registrationSharedSecret?: string;
}

export interface RunningSynapse {
  baseUrl: string;
  federationUrl: string;
  serverName: string;
  port: number;
  clientPort: number;
  dataDir: string;
  pid: number;
  registrationSharedSecret: string;
  registerUser(localpart: string, password: string, admin?: boolean): Promise<RegisteredUser>;
  stop(): Promise<void>;
}

export function ensureSynapse(options?: { quiet?: boolean }): Promise<{ python: string; env: Record<string, string> }>;
export function freePort(): Promise<number>;
export function registerWithSharedSecret(
  baseUrl: string,
  secret: string,
  localpart: string,
  password: string,
  admin?: boolean,
): Promise<RegisteredUser>;
export function startSynapse(options?: StartSynapseOptions): Promise<RunningSynapse>;
