// Helpers for the application service tests: a registration stored in D1 the way `npm run appservice -- add`
// stores it (scripts/appservice-registrations.mjs `rowOf`), with unique id, tokens and namespaces per call.
import { env } from "cloudflare:workers";
import { parseRegistration, storedForm, type AppserviceRegistration } from "../../protocol/appservice-registration.js";
import { invalidateAppservices, sha256Hex } from "../../durable-objects/appservice/registry.js";
import { SERVER_NAME } from "./helpers.js";

export interface TestAppservice {
  registration: AppserviceRegistration;
  asToken: string;
  hsToken: string;
  /** The users namespace prefix, e.g. `_bridge1234_`: `@_bridge1234_anything:test.local` is the service's. */
  prefix: string;
  sender: string;
}

let n = 0;
export async function registerAppservice(overrides: Record<string, unknown> = {}): Promise<TestAppservice> {
  n += 1;
  const tag = `${crypto.randomUUID().slice(0, 6)}${n}`;
  const prefix = `_br${tag}_`;
  const raw: Record<string, unknown> = {
    id: `bridge-${tag}`,
    url: null,
    as_token: `as-${crypto.randomUUID()}`,
    hs_token: `hs-${crypto.randomUUID()}`,
    sender_localpart: `brbot${tag}`,
    namespaces: {
      users: [{ exclusive: true, regex: `@${prefix}.*:${SERVER_NAME.replace(".", "\\.")}` }],
      aliases: [{ exclusive: true, regex: `#${prefix}.*` }],
      rooms: [],
    },
    ...overrides,
  };
  const registration = parseRegistration(raw, `test ${tag}`);
  await env.DB.prepare("INSERT INTO appservices (id, as_token_hash, registration, source, updated_ts) VALUES (?, ?, ?, 'cli', ?)")
    .bind(registration.id, await sha256Hex(registration.asToken), JSON.stringify(storedForm(registration)), Date.now())
    .run();
  invalidateAppservices();
  return { registration, asToken: registration.asToken, hsToken: registration.hsToken, prefix, sender: `@${registration.senderLocalpart}:${SERVER_NAME}` };
}
