// Server-side key backups: /room_keys/version[/{version}] and /room_keys/keys[/{roomId}[/{sessionId}]].
import { describe, expect, it } from "vitest";
import { api, registerUser, uniqueLocalpart, type RegisteredUser } from "./helpers.js";

const V3 = "/_matrix/client/v3";
const ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM = "!room:test.local";

const keyData = (first_message_index: number, forwarded_count: number, is_verified: boolean, tag = "x") => ({
  first_message_index,
  forwarded_count,
  is_verified,
  session_data: { ephemeral: `eph-${tag}`, ciphertext: `ct-${tag}`, mac: `mac-${tag}` },
});

async function newVersion(user: RegisteredUser, authData: object = { public_key: "pk" }): Promise<string> {
  const res = await api("POST", `${V3}/room_keys/version`, { token: user.access_token, body: { algorithm: ALGORITHM, auth_data: authData } });
  expect(res.status).toBe(200);
  return res.body.version;
}

const sessionPath = (version: string, session = "sess1", room = ROOM) =>
  `${V3}/room_keys/keys/${encodeURIComponent(room)}/${encodeURIComponent(session)}?version=${version}`;

describe("backup versions", () => {
  it("creates, reads, updates and deletes versions; the newest live version is current", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const token = alice.access_token;

    const none = await api("GET", `${V3}/room_keys/version`, { token });
    expect(none.status).toBe(404);
    expect(none.body.errcode).toBe("M_NOT_FOUND");

    const v1 = await newVersion(alice, { public_key: "pk1" });
    expect(typeof v1).toBe("string");
    expect((await api("GET", `${V3}/room_keys/version`, { token })).body).toEqual({
      algorithm: ALGORITHM,
      auth_data: { public_key: "pk1" },
      count: 0,
      etag: "0",
      version: v1,
    });

    const v2 = await newVersion(alice, { public_key: "pk2" });
    expect(v2).not.toBe(v1);
    expect((await api("GET", `${V3}/room_keys/version`, { token })).body.version).toBe(v2);
    expect((await api("GET", `${V3}/room_keys/version/${v1}`, { token })).body.auth_data).toEqual({ public_key: "pk1" });

    // Update: only auth_data; the algorithm must match, and a body `version` must match the path.
    const update = await api("PUT", `${V3}/room_keys/version/${v1}`, { token, body: { algorithm: ALGORITHM, auth_data: { public_key: "pk1b" } } });
    expect(update.status).toBe(200);
    expect((await api("GET", `${V3}/room_keys/version/${v1}`, { token })).body.auth_data).toEqual({ public_key: "pk1b" });
    const wrongAlg = await api("PUT", `${V3}/room_keys/version/${v1}`, { token, body: { algorithm: "other", auth_data: {} } });
    expect(wrongAlg.status).toBe(400);
    expect(wrongAlg.body.errcode).toBe("M_INVALID_PARAM");
    const wrongVersion = await api("PUT", `${V3}/room_keys/version/${v1}`, { token, body: { algorithm: ALGORITHM, auth_data: {}, version: v2 } });
    expect(wrongVersion.status).toBe(400);
    expect(wrongVersion.body.errcode).toBe("M_INVALID_PARAM");
    expect((await api("PUT", `${V3}/room_keys/version/999`, { token, body: { algorithm: ALGORITHM, auth_data: {} } })).status).toBe(404);

    // Delete v2: v1 is current again; deleting again succeeds; unknown versions are 404.
    expect((await api("DELETE", `${V3}/room_keys/version/${v2}`, { token })).status).toBe(200);
    expect((await api("GET", `${V3}/room_keys/version`, { token })).body.version).toBe(v1);
    expect((await api("GET", `${V3}/room_keys/version/${v2}`, { token })).status).toBe(404);
    expect((await api("DELETE", `${V3}/room_keys/version/${v2}`, { token })).status).toBe(200);
    const unknown = await api("DELETE", `${V3}/room_keys/version/12345`, { token });
    expect(unknown.status).toBe(404);
    expect(unknown.body.errcode).toBe("M_NOT_FOUND");
    expect((await api("GET", `${V3}/room_keys/version/not-a-number`, { token })).status).toBe(404);

    // A new version never reuses a deleted version's number.
    const v3 = await newVersion(alice);
    expect(v3).not.toBe(v2);

    // Backups are per user.
    const bob = await registerUser(uniqueLocalpart("bob"));
    expect((await api("GET", `${V3}/room_keys/version`, { token: bob.access_token })).status).toBe(404);
    expect((await api("GET", `${V3}/room_keys/version/${v1}`, { token: bob.access_token })).status).toBe(404);
  });

  it("validates the body", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const token = alice.access_token;
    expect((await api("POST", `${V3}/room_keys/version`, { token, body: { auth_data: {} } })).body.errcode).toBe("M_BAD_JSON");
    expect((await api("POST", `${V3}/room_keys/version`, { token, body: { algorithm: ALGORITHM, auth_data: "x" } })).body.errcode).toBe(
      "M_BAD_JSON",
    );
    expect((await api("GET", `${V3}/room_keys/version`, { token })).status).toBe(404);
    expect((await api("GET", `${V3}/room_keys/version`)).status).toBe(401);
  });
});

describe("backup keys", () => {
  it("stores keys, counts them, changes the etag on every change, and applies the replacement rules", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const token = alice.access_token;
    const version = await newVersion(alice);

    const put = (data: object, session = "sess1") => api("PUT", sessionPath(version, session), { token, body: data });
    const stored = async (session = "sess1") => (await api("GET", sessionPath(version, session), { token })).body;

    let res = await put(keyData(5, 1, false, "a"));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ etag: "1", count: 1 });
    let etag = res.body.etag;

    // Worse key (higher first_message_index, same verification): kept the old one, etag unchanged.
    res = await put(keyData(7, 0, false, "b"));
    expect(res.body).toEqual({ etag, count: 1 });
    expect((await stored()).session_data.ciphertext).toBe("ct-a");

    // Same index, lower forwarded_count: replaced.
    res = await put(keyData(5, 0, false, "c"));
    expect(res.body.etag).not.toBe(etag);
    etag = res.body.etag;
    expect((await stored()).session_data.ciphertext).toBe("ct-c");

    // Complete tie: kept.
    res = await put(keyData(5, 0, false, "d"));
    expect(res.body.etag).toBe(etag);
    expect((await stored()).session_data.ciphertext).toBe("ct-c");

    // Verified beats unverified even with a worse index ...
    res = await put(keyData(9, 3, true, "e"));
    expect(res.body.etag).not.toBe(etag);
    etag = res.body.etag;
    expect(await stored()).toEqual(keyData(9, 3, true, "e"));
    // ... and an unverified key never replaces a verified one.
    res = await put(keyData(0, 0, false, "f"));
    expect(res.body.etag).toBe(etag);
    expect((await stored()).is_verified).toBe(true);
    // Among verified keys, the lower first_message_index wins.
    res = await put(keyData(2, 5, true, "g"));
    expect((await stored()).session_data.ciphertext).toBe("ct-g");

    // The bulk and per-room forms.
    res = await api("PUT", `${V3}/room_keys/keys?version=${version}`, {
      token,
      body: { rooms: { "!other:test.local": { sessions: { s2: keyData(0, 0, false, "h"), s3: keyData(0, 0, false, "i") } } } },
    });
    expect(res.body.count).toBe(3);
    res = await api("PUT", `${V3}/room_keys/keys/${encodeURIComponent(ROOM)}?version=${version}`, {
      token,
      body: { sessions: { s4: keyData(1, 0, false, "j") } },
    });
    expect(res.body.count).toBe(4);

    const all = await api("GET", `${V3}/room_keys/keys?version=${version}`, { token });
    expect(Object.keys(all.body.rooms).sort()).toEqual(["!other:test.local", ROOM].sort());
    expect(Object.keys(all.body.rooms[ROOM].sessions).sort()).toEqual(["s4", "sess1"]);
    expect(all.body.rooms["!other:test.local"].sessions.s2).toEqual(keyData(0, 0, false, "h"));
    const room = await api("GET", `${V3}/room_keys/keys/${encodeURIComponent("!other:test.local")}?version=${version}`, { token });
    expect(Object.keys(room.body.sessions).sort()).toEqual(["s2", "s3"]);
    const emptyRoom = await api("GET", `${V3}/room_keys/keys/${encodeURIComponent("!none:test.local")}?version=${version}`, { token });
    expect(emptyRoom.body).toEqual({ sessions: {} });
    const missing = await api("GET", sessionPath(version, "nope"), { token });
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe("M_NOT_FOUND");

    // The version's count and etag.
    const info = (await api("GET", `${V3}/room_keys/version`, { token })).body;
    expect(info.count).toBe(4);
    const etagBeforeDelete = info.etag;

    // Deleting: one session, one room, everything; each changes the etag.
    res = await api("DELETE", sessionPath(version, "s4"), { token });
    expect(res.body.count).toBe(3);
    expect(res.body.etag).not.toBe(etagBeforeDelete);
    res = await api("DELETE", `${V3}/room_keys/keys/${encodeURIComponent("!other:test.local")}?version=${version}`, { token });
    expect(res.body.count).toBe(1);
    res = await api("DELETE", `${V3}/room_keys/keys?version=${version}`, { token });
    expect(res.body.count).toBe(0);
    expect((await api("GET", `${V3}/room_keys/keys?version=${version}`, { token })).body).toEqual({ rooms: {} });
  });

  it("writes only to the current version: 403 M_WRONG_ROOM_KEYS_VERSION for an old one, 404 for an unknown one", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const token = alice.access_token;
    // No version at all: 404.
    const noBackup = await api("PUT", sessionPath("1"), { token, body: keyData(0, 0, false) });
    expect(noBackup.status).toBe(404);

    const old = await newVersion(alice);
    await api("PUT", sessionPath(old), { token, body: keyData(0, 0, false, "old") });
    const current = await newVersion(alice);

    const wrong = await api("PUT", sessionPath(old, "s2"), { token, body: keyData(0, 0, false) });
    expect(wrong.status).toBe(403);
    expect(wrong.body.errcode).toBe("M_WRONG_ROOM_KEYS_VERSION");
    expect(wrong.body.current_version).toBe(current);
    const unknown = await api("PUT", sessionPath("98765"), { token, body: keyData(0, 0, false) });
    expect(unknown.status).toBe(404);
    expect(unknown.body.errcode).toBe("M_NOT_FOUND");

    // Old versions can still be read; deleted ones cannot.
    expect((await api("GET", sessionPath(old), { token })).body.session_data.ciphertext).toBe("ct-old");
    expect((await api("GET", sessionPath(current), { token })).status).toBe(404);
    await api("DELETE", `${V3}/room_keys/version/${old}`, { token });
    expect((await api("GET", sessionPath(old), { token })).status).toBe(404);
    expect((await api("GET", `${V3}/room_keys/keys?version=${old}`, { token })).status).toBe(404);

    // The version parameter is required; key data is validated.
    expect((await api("GET", `${V3}/room_keys/keys`, { token })).body.errcode).toBe("M_MISSING_PARAM");
    const bad = await api("PUT", sessionPath(current), { token, body: { ...keyData(0, 0, false), is_verified: "yes" } });
    expect(bad.status).toBe(400);
    const bad2 = await api("PUT", sessionPath(current), { token, body: { ...keyData(0, 0, false), first_message_index: -1 } });
    expect(bad2.status).toBe(400);
    expect((await api("GET", `${V3}/room_keys/version`, { token })).body.count).toBe(0);
  });
});
