// A Synapse user looks up a Myelin user's profile: Synapse asks Myelin over federation
// (GET /_matrix/federation/v1/query/profile, X-Matrix signed, over TLS) and relays the answer.
import { describe, expect, inject, it } from "vitest";
import { registerWithSharedSecret } from "../../scripts/synapse.mjs";

const myelin = inject("myelin");
const synapse = inject("synapse");

describe("profile look-up over federation", () => {
  it("a Synapse user reads a Myelin user's display name", async () => {
    const x = await registerWithSharedSecret(myelin.baseUrl, myelin.registrationSharedSecret, "profilex", "pw-profile-x");
    const set = await fetch(`${myelin.baseUrl}/_matrix/client/v3/profile/${encodeURIComponent(x.userId)}/displayname`, {
      method: "PUT",
      headers: { authorization: `Bearer ${x.accessToken}`, "content-type": "application/json" },
      body: JSON.stringify({ displayname: "X on Myelin" }),
    });
    expect(set.status).toBe(200);
    const reader = await registerWithSharedSecret(synapse.baseUrl, synapse.registrationSharedSecret, "profilereader", "pw-reader");
    const res = await fetch(`${synapse.baseUrl}/_matrix/client/v3/profile/${encodeURIComponent(x.userId)}`, {
      headers: { authorization: `Bearer ${reader.accessToken}` },
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { displayname?: string }).displayname).toBe("X on Myelin");
  });

  it("an unknown Myelin user is M_NOT_FOUND through Synapse", async () => {
    const reader = await registerWithSharedSecret(synapse.baseUrl, synapse.registrationSharedSecret, "profilereader2", "pw-reader");
    const res = await fetch(`${synapse.baseUrl}/_matrix/client/v3/profile/${encodeURIComponent(`@nobody:${myelin.serverName}`)}`, {
      headers: { authorization: `Bearer ${reader.accessToken}` },
    });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { errcode?: string }).errcode).toBe("M_NOT_FOUND");
  });
});
