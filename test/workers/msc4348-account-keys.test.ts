// MSC4348 (portable accounts), the parts before the room version: a local account's account key (held
// by the server, generated on first use, exportable by its owner after the password, importable, which
// is how an account moves between servers) and the accounts query other servers make, answered only for
// servers that share a room with the account, signed by the account key.
import { describe, expect, it } from "vitest";
import { ACCOUNTS_QUERY_PATH, accountRecordIsSigned, accountSigningKey } from "../../protocol/accounts.js";
import { encodeBase64 } from "../../protocol/base64.js";
import { uniqueServer } from "./federation-helpers.js";
import { federationApi, joinFromRemote } from "./federation-room-helpers.js";
import { SERVER_NAME, api, type RegisteredUser } from "./helpers.js";
import { createRoom, newUser } from "./room-helpers.js";

const KEY = "/_matrix/client/unstable/org.matrix.msc4348/account_key";

const localpart = (u: RegisteredUser) => u.user_id.slice(1, u.user_id.indexOf(":"));
const passwordAuth = (u: RegisteredUser, password = `password-${localpart(u)}`) => ({
  type: "m.login.password",
  identifier: { type: "m.id.user", user: u.user_id },
  password,
});

async function accountKey(u: RegisteredUser): Promise<string> {
  const res = await api("GET", KEY, { token: u.access_token });
  expect(res.status).toBe(200);
  return res.body.account_key as string;
}

describe("MSC4348 account keys", () => {
  it("an account has one key, made on first use; its ID is @<key>; the owner exports the seed after the password", async () => {
    const alice = await newUser("alice");
    const first = await api("GET", KEY, { token: alice.access_token });
    expect(first.body.account_key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.body.user_id).toBe(`@${first.body.account_key}`);
    expect(await accountKey(alice)).toBe(first.body.account_key);
    expect((await api("GET", KEY)).status).toBe(401);

    // export: UIA with the password (no auth: the flows; a wrong password: refused, no seed)
    const noAuth = await api("POST", `${KEY}/export`, { token: alice.access_token, body: {} });
    expect(noAuth.status).toBe(401);
    expect(noAuth.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    expect(noAuth.body.seed).toBeUndefined();
    const wrong = await api("POST", `${KEY}/export`, { token: alice.access_token, body: { auth: { ...passwordAuth(alice, "nope"), session: noAuth.body.session } } });
    expect(wrong.status).toBe(401);
    expect(wrong.body.seed).toBeUndefined();
    const exported = await api("POST", `${KEY}/export`, { token: alice.access_token, body: { auth: passwordAuth(alice) } });
    expect(exported.status, JSON.stringify(exported.body)).toBe(200);
    // the seed is the key: it derives the public account key
    expect((await accountSigningKey(exported.body.seed)).accountKey).toBe(first.body.account_key);
  });

  it("a seed exported elsewhere is imported (the account keeps its key); a key held by another account and bad seeds are refused", async () => {
    const bob = await newUser("bob");
    const carol = await newUser("carol");
    const bobKey = await accountKey(bob);
    const seed = encodeBase64(crypto.getRandomValues(new Uint8Array(32)));
    const moved = (await accountSigningKey(seed)).accountKey;
    // without the password nothing changes
    expect((await api("PUT", KEY, { token: carol.access_token, body: { seed } })).status).toBe(401);
    const imported = await api("PUT", KEY, { token: carol.access_token, body: { seed, auth: passwordAuth(carol) } });
    expect(imported.status, JSON.stringify(imported.body)).toBe(200);
    expect(imported.body).toEqual({ account_key: moved, user_id: `@${moved}` });
    expect(await accountKey(carol)).toBe(moved);

    // bob cannot take carol's key; bad seeds are refused; bob's key is unchanged
    for (const bad of [seed, "short", 42, encodeBase64(new Uint8Array(31)), encodeBase64(new Uint8Array(33))]) {
      const res = await api("PUT", KEY, { token: bob.access_token, body: { seed: bad, auth: passwordAuth(bob) } });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(res.body.errcode).toBe("M_INVALID_PARAM");
    }
    expect(await accountKey(bob)).toBe(bobKey);
  });

  it("the accounts query answers, signed by the account key, only to servers that share a room with the account", async () => {
    const alice = await newUser("alice");
    const key = await accountKey(alice);
    const remote = uniqueServer("acc");
    const q = (keys: unknown) => federationApi(remote, "POST", ACCOUNTS_QUERY_PATH, { account_keys: keys });

    // no shared room yet: alice's key looks unknown, as an unknown key does
    const unknownKey = (await accountSigningKey(encodeBase64(new Uint8Array(32).fill(9)))).accountKey;
    const before = await q([key, unknownKey, "not a key"]);
    expect(before.status).toBe(200);
    for (const k of [key, unknownKey, "not a key"]) expect(before.body.account_keys[k].errcode).toBe("M_NOT_FOUND");

    // a remote user joins a room of alice's: now the remote server learns alice's account
    const roomId = await createRoom(alice, { preset: "public_chat" });
    await joinFromRemote(remote, roomId, `@rob:${remote}`);
    const after = await q([key, unknownKey]);
    const record = after.body.account_keys[key];
    expect(record).toMatchObject({ account_name: localpart(alice), domain: SERVER_NAME });
    expect(await accountRecordIsSigned(record, key)).toBe(true);
    expect(await accountRecordIsSigned({ ...record, account_name: "mallory" }, key)).toBe(false);
    expect(after.body.account_keys[unknownKey].errcode).toBe("M_NOT_FOUND");
    // another server, in no room with alice, still learns nothing
    expect((await federationApi(uniqueServer("other"), "POST", ACCOUNTS_QUERY_PATH, { account_keys: [key] })).body.account_keys[key].errcode).toBe("M_NOT_FOUND");

    // bad queries: 400, and at most 100 keys (100 is fine)
    expect((await federationApi(remote, "POST", ACCOUNTS_QUERY_PATH, { account_keys: "x" })).status).toBe(400);
    expect((await federationApi(remote, "POST", ACCOUNTS_QUERY_PATH, { account_keys: [1] })).status).toBe(400);
    expect((await q(Array.from({ length: 100 }, (_, i) => `k${i}`))).status).toBe(200);
    expect((await q(Array.from({ length: 101 }, (_, i) => `k${i}`))).status).toBe(400);
  });
});
