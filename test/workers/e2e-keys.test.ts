// End-to-end encryption keys: /keys/upload, /keys/query, /keys/claim, /keys/changes, cross-signing
// (/keys/device_signing/upload, /keys/signatures/upload), and device deletion clearing keys.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { generateSigningKey, signJson, type SigningKey } from "../../protocol/signing.js";
import type { JsonObject } from "../../protocol/json.js";
import { api, login, registerUser, uniqueLocalpart, type RegisteredUser } from "./helpers.js";

const V3 = "/_matrix/client/v3";
const userDo = (userId: string) => env.USERS.get(env.USERS.idFromName(userId));

/** A device's identity keys, signed by its own Ed25519 key (spec: "Uploading keys"). */
async function makeDeviceKeys(user: RegisteredUser, deviceId = user.device_id): Promise<{ key: SigningKey; json: JsonObject }> {
  const key = await generateSigningKey(deviceId);
  const unsigned: JsonObject = {
    user_id: user.user_id,
    device_id: deviceId,
    algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
    keys: { [`curve25519:${deviceId}`]: `curve-${deviceId}`, [`ed25519:${deviceId}`]: key.publicKey },
  };
  return { key, json: await signJson(unsigned, user.user_id, key) };
}

/** `count` signed_curve25519 one-time keys with IDs `<prefix>0..`. */
async function makeOneTimeKeys(user: RegisteredUser, deviceKey: SigningKey, count: number, prefix = "AAA"): Promise<JsonObject> {
  const out: JsonObject = {};
  for (let i = 0; i < count; i++) {
    out[`signed_curve25519:${prefix}${i}`] = await signJson({ key: `otk-${prefix}${i}` }, user.user_id, deviceKey);
  }
  return out;
}

/** A cross-signing key pair whose key ID is `ed25519:<public key>` (spec: "Cross-signing"). */
async function crossSigningKeyPair(): Promise<SigningKey> {
  const key = await generateSigningKey("x");
  return { ...key, keyId: `ed25519:${key.publicKey}` };
}

function crossSigningKeyJson(userId: string, usage: string, key: SigningKey): JsonObject {
  return { user_id: userId, usage: [usage], keys: { [key.keyId]: key.publicKey } };
}

interface CrossSigning {
  master: SigningKey;
  selfSigning: SigningKey;
  userSigning: SigningKey;
  body: JsonObject;
}

async function makeCrossSigning(userId: string): Promise<CrossSigning> {
  const master = await crossSigningKeyPair();
  const selfSigning = await crossSigningKeyPair();
  const userSigning = await crossSigningKeyPair();
  return {
    master,
    selfSigning,
    userSigning,
    body: {
      master_key: crossSigningKeyJson(userId, "master", master),
      self_signing_key: await signJson(crossSigningKeyJson(userId, "self_signing", selfSigning), userId, master),
      user_signing_key: await signJson(crossSigningKeyJson(userId, "user_signing", userSigning), userId, master),
    },
  };
}

const passwordAuth = (user: RegisteredUser, session: string) => ({
  type: "m.login.password",
  identifier: { type: "m.id.user", user: user.user_id },
  password: `password-${user.user_id.slice(1, user.user_id.indexOf(":"))}`,
  session,
});

async function uploadCrossSigning(user: RegisteredUser, body: JsonObject): Promise<void> {
  let res = await api("POST", `${V3}/keys/device_signing/upload`, { token: user.access_token, body });
  if (res.status === 401) {
    res = await api("POST", `${V3}/keys/device_signing/upload`, {
      token: user.access_token,
      body: { ...body, auth: passwordAuth(user, res.body.session) },
    });
  }
  expect(res.status).toBe(200);
}

describe("POST /keys/upload and /keys/query", () => {
  it("round-trips device keys with display names; omits unknown users; reports remote servers", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"), undefined, { initialDeviceDisplayName: "Alice's phone" });
    const bob = await registerUser(uniqueLocalpart("bob"));
    const { key, json } = await makeDeviceKeys(alice);

    const upload = await api("POST", `${V3}/keys/upload`, {
      token: alice.access_token,
      body: { device_keys: json, one_time_keys: await makeOneTimeKeys(alice, key, 3) },
    });
    expect(upload.status).toBe(200);
    expect(upload.body).toEqual({ one_time_key_counts: { signed_curve25519: 3 } });

    const ghost = `@${uniqueLocalpart("ghost")}:test.local`;
    const query = await api("POST", `${V3}/keys/query`, {
      token: bob.access_token,
      body: { device_keys: { [alice.user_id]: [], [bob.user_id]: [], [ghost]: [], "@carol:broken-keys.remote.test": [] } },
    });
    expect(query.status).toBe(200);
    expect(query.body.device_keys[alice.user_id]).toEqual({
      [alice.device_id]: { ...json, unsigned: { device_display_name: "Alice's phone" } },
    });
    // Bob exists but has no keys; the ghost does not exist.
    expect(query.body.device_keys[bob.user_id]).toEqual({});
    expect(query.body.device_keys).not.toHaveProperty(ghost);
    // The remote user's server answers 500 (test/workers/remote-homeserver.mjs): reported per server.
    expect(query.body.failures).toEqual({ "broken-keys.remote.test": { status: 500, message: expect.any(String) } });

    // A list of device IDs selects devices; unknown ones are left out.
    const some = await api("POST", `${V3}/keys/query`, {
      token: bob.access_token,
      body: { device_keys: { [alice.user_id]: ["NOSUCHDEVICE"] } },
    });
    expect(some.body.device_keys[alice.user_id]).toEqual({});
  });

  it("refuses device keys of another user or device, and stores nothing", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const { json } = await makeDeviceKeys(alice);
    for (const bad of [
      { ...json, user_id: "@mallory:test.local" },
      { ...json, device_id: "OTHERDEVICE" },
      { ...json, keys: { "ed25519:X": 5 } },
    ]) {
      const res = await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { device_keys: bad } });
      expect(res.status).toBe(400);
      expect(res.body.errcode).toBe("M_BAD_JSON");
    }
    const bad = await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { one_time_keys: { nocolon: "k" } } });
    expect(bad.status).toBe(400);
    const query = await api("POST", `${V3}/keys/query`, { token: alice.access_token, body: { device_keys: { [alice.user_id]: [] } } });
    expect(query.body.device_keys[alice.user_id]).toEqual({});
    expect(await userDo(alice.user_id).oneTimeKeyCounts(alice.device_id)).toEqual({ signed_curve25519: 0 });
    expect((await api("POST", `${V3}/keys/upload`, { body: {} })).status).toBe(401);
  });

  it("accepts a one-time key uploaded again unchanged, and refuses the same key ID with other content (400, nothing stored)", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const { key } = await makeDeviceKeys(alice);
    const keys = await makeOneTimeKeys(alice, key, 2);
    expect((await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { one_time_keys: keys } })).status).toBe(200);

    const again = await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { one_time_keys: keys } });
    expect(again.status).toBe(200);
    expect(again.body.one_time_key_counts.signed_curve25519).toBe(2);

    const conflicting = {
      "signed_curve25519:AAA0": await signJson({ key: "a-different-key" }, alice.user_id, key),
      "signed_curve25519:NEW1": await signJson({ key: "new" }, alice.user_id, key),
    };
    const conflict = await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { one_time_keys: conflicting } });
    expect(conflict.status).toBe(400);
    expect(conflict.body.errcode).toBe("M_UNKNOWN");
    // Nothing of the failed upload was stored, and the original key is intact.
    expect(await userDo(alice.user_id).oneTimeKeyCounts(alice.device_id)).toEqual({ signed_curve25519: 2 });
    const bob = await registerUser(uniqueLocalpart("bob"));
    const claim = await api("POST", `${V3}/keys/claim`, {
      token: bob.access_token,
      body: { one_time_keys: { [alice.user_id]: { [alice.device_id]: "signed_curve25519" } } },
    });
    expect(claim.body.one_time_keys[alice.user_id][alice.device_id]).toEqual({ "signed_curve25519:AAA0": keys["signed_curve25519:AAA0"] });
  });
});

describe("POST /keys/claim", () => {
  it("hands each one-time key out exactly once under 20 concurrent claims, then the fallback key", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const { key, json } = await makeDeviceKeys(alice);
    const fallback = await signJson({ key: "fallback-1", fallback: true }, alice.user_id, key);
    await api("POST", `${V3}/keys/upload`, {
      token: alice.access_token,
      body: { device_keys: json, one_time_keys: await makeOneTimeKeys(alice, key, 5), fallback_keys: { "signed_curve25519:FB1": fallback } },
    });

    const claims = await Promise.all(
      Array.from({ length: 20 }, () =>
        api("POST", `${V3}/keys/claim`, {
          token: bob.access_token,
          body: { one_time_keys: { [alice.user_id]: { [alice.device_id]: "signed_curve25519" } } },
        }),
      ),
    );
    const ids: string[] = [];
    for (const res of claims) {
      expect(res.status).toBe(200);
      const keys = res.body.one_time_keys[alice.user_id][alice.device_id];
      expect(Object.keys(keys)).toHaveLength(1);
      ids.push(Object.keys(keys)[0]!);
    }
    const oneTime = ids.filter((id) => id !== "signed_curve25519:FB1");
    expect(oneTime).toHaveLength(5);
    expect(new Set(oneTime).size).toBe(5);
    expect(ids.filter((id) => id === "signed_curve25519:FB1")).toHaveLength(15);
    const fallbackClaim = claims.find((r) => "signed_curve25519:FB1" in r.body.one_time_keys[alice.user_id][alice.device_id])!;
    expect(fallbackClaim.body.one_time_keys[alice.user_id][alice.device_id]["signed_curve25519:FB1"]).toEqual(fallback);

    expect(await userDo(alice.user_id).oneTimeKeyCounts(alice.device_id)).toEqual({ signed_curve25519: 0 });
    expect(await userDo(alice.user_id).unusedFallbackKeyTypes(alice.device_id)).toEqual([]);
  });

  it("claims in upload order and leaves out devices without keys; remote users are failures", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const { key } = await makeDeviceKeys(alice);
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { one_time_keys: await makeOneTimeKeys(alice, key, 1, "FIRST") } });
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { one_time_keys: await makeOneTimeKeys(alice, key, 1, "AASECOND") } });
    const body = {
      one_time_keys: {
        [alice.user_id]: { [alice.device_id]: "signed_curve25519", NODEVICE: "signed_curve25519" },
        [bob.user_id]: { [bob.device_id]: "signed_curve25519" },
        "@dave:broken-keys.remote.test": { DEV: "signed_curve25519" },
      },
    };
    const first = await api("POST", `${V3}/keys/claim`, { token: bob.access_token, body });
    expect(Object.keys(first.body.one_time_keys[alice.user_id][alice.device_id])).toEqual(["signed_curve25519:FIRST0"]);
    expect(first.body.one_time_keys[alice.user_id]).not.toHaveProperty("NODEVICE");
    expect(first.body.one_time_keys).not.toHaveProperty(bob.user_id);
    expect(first.body.failures).toHaveProperty(["broken-keys.remote.test"]);
    const second = await api("POST", `${V3}/keys/claim`, { token: bob.access_token, body });
    expect(Object.keys(second.body.one_time_keys[alice.user_id][alice.device_id])).toEqual(["signed_curve25519:AASECOND0"]);
    const third = await api("POST", `${V3}/keys/claim`, { token: bob.access_token, body });
    expect(third.body.one_time_keys).toEqual({});
  });

  it("replaces the fallback key per algorithm and tracks whether it was used", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const { key } = await makeDeviceKeys(alice);
    const store = userDo(alice.user_id);
    const claim = async () =>
      (
        await api("POST", `${V3}/keys/claim`, {
          token: bob.access_token,
          body: { one_time_keys: { [alice.user_id]: { [alice.device_id]: "signed_curve25519" } } },
        })
      ).body.one_time_keys[alice.user_id]?.[alice.device_id];
    const fb1 = { "signed_curve25519:FB1": await signJson({ key: "fb-1", fallback: true }, alice.user_id, key) };
    const fb2 = { "signed_curve25519:FB2": await signJson({ key: "fb-2", fallback: true }, alice.user_id, key) };

    expect(await store.unusedFallbackKeyTypes(alice.device_id)).toEqual([]);
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { fallback_keys: fb1 } });
    expect(await store.unusedFallbackKeyTypes(alice.device_id)).toEqual(["signed_curve25519"]);

    expect(Object.keys(await claim())).toEqual(["signed_curve25519:FB1"]);
    expect(await store.unusedFallbackKeyTypes(alice.device_id)).toEqual([]);
    // Used fallback keys keep being handed out until replaced.
    expect(Object.keys(await claim())).toEqual(["signed_curve25519:FB1"]);
    // Uploading the same key again does not make it unused.
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { fallback_keys: fb1 } });
    expect(await store.unusedFallbackKeyTypes(alice.device_id)).toEqual([]);

    // A new key replaces it and is unused; the old one is never returned again.
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { fallback_keys: fb2 } });
    expect(await store.unusedFallbackKeyTypes(alice.device_id)).toEqual(["signed_curve25519"]);
    expect(Object.keys(await claim())).toEqual(["signed_curve25519:FB2"]);

    // Two fallback keys of one algorithm in one upload are refused.
    const two = await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { fallback_keys: { ...fb1, ...fb2 } } });
    expect(two.status).toBe(400);
  });
});

describe("GET /keys/changes", () => {
  it("lists users whose device keys changed after `from`", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const before = await userDo(alice.user_id).streamPosition();
    const { json } = await makeDeviceKeys(alice);
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { device_keys: json } });

    const changes = await api("GET", `${V3}/keys/changes?from=${before}&to=${before}`, { token: alice.access_token });
    expect(changes.status).toBe(200);
    expect(changes.body).toEqual({ changed: [alice.user_id], left: [] });
    const after = await userDo(alice.user_id).streamPosition();
    expect((await api("GET", `${V3}/keys/changes?from=${after}`, { token: alice.access_token })).body).toEqual({ changed: [], left: [] });

    // Uploading the identical device keys again is not a change.
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { device_keys: json } });
    expect((await api("GET", `${V3}/keys/changes?from=${after}`, { token: alice.access_token })).body.changed).toEqual([]);

    expect((await api("GET", `${V3}/keys/changes`, { token: alice.access_token })).body.errcode).toBe("M_MISSING_PARAM");
    expect((await api("GET", `${V3}/keys/changes?from=garbage`, { token: alice.access_token })).body.errcode).toBe("M_INVALID_PARAM");
  });
});

describe("cross-signing", () => {
  it("uploads the first keys without UIA, shows the user-signing key only to its owner, and needs UIA to replace them", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const cs = await makeCrossSigning(alice.user_id);

    const first = await api("POST", `${V3}/keys/device_signing/upload`, { token: alice.access_token, body: cs.body });
    expect(first.status).toBe(200);
    // The same keys again: idempotent, no UIA.
    expect((await api("POST", `${V3}/keys/device_signing/upload`, { token: alice.access_token, body: cs.body })).status).toBe(200);

    const q = { device_keys: { [alice.user_id]: [] } };
    const asBob = await api("POST", `${V3}/keys/query`, { token: bob.access_token, body: q });
    expect(asBob.body.master_keys[alice.user_id]).toEqual(cs.body.master_key);
    expect(asBob.body.self_signing_keys[alice.user_id]).toEqual(cs.body.self_signing_key);
    expect(asBob.body.user_signing_keys).toEqual({});
    const asAlice = await api("POST", `${V3}/keys/query`, { token: alice.access_token, body: q });
    expect(asAlice.body.user_signing_keys[alice.user_id]).toEqual(cs.body.user_signing_key);

    // Replacing needs the password.
    const next = await makeCrossSigning(alice.user_id);
    const challenge = await api("POST", `${V3}/keys/device_signing/upload`, { token: alice.access_token, body: next.body });
    expect(challenge.status).toBe(401);
    expect(challenge.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    const wrong = await api("POST", `${V3}/keys/device_signing/upload`, {
      token: alice.access_token,
      body: { ...next.body, auth: { ...passwordAuth(alice, challenge.body.session), password: "wrong" } },
    });
    expect(wrong.status).toBe(401);
    expect((await api("POST", `${V3}/keys/query`, { token: bob.access_token, body: q })).body.master_keys[alice.user_id]).toEqual(
      cs.body.master_key,
    );
    const ok = await api("POST", `${V3}/keys/device_signing/upload`, {
      token: alice.access_token,
      body: { ...next.body, auth: passwordAuth(alice, challenge.body.session) },
    });
    expect(ok.status).toBe(200);
    expect((await api("POST", `${V3}/keys/query`, { token: bob.access_token, body: q })).body.master_keys[alice.user_id]).toEqual(
      next.body.master_key,
    );
  });

  it("refuses keys not signed by the master key, a missing master key, and malformed keys", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const cs = await makeCrossSigning(alice.user_id);
    const other = await crossSigningKeyPair();

    const noMaster = await api("POST", `${V3}/keys/device_signing/upload`, {
      token: alice.access_token,
      body: { self_signing_key: cs.body.self_signing_key },
    });
    expect(noMaster.status).toBe(400);
    expect(noMaster.body.errcode).toBe("M_MISSING_PARAM");

    const badSig = await api("POST", `${V3}/keys/device_signing/upload`, {
      token: alice.access_token,
      body: { ...cs.body, self_signing_key: await signJson(crossSigningKeyJson(alice.user_id, "self_signing", cs.selfSigning), alice.user_id, other) },
    });
    expect(badSig.status).toBe(400);
    expect(badSig.body.errcode).toBe("M_INVALID_SIGNATURE");

    const wrongUser = await api("POST", `${V3}/keys/device_signing/upload`, {
      token: alice.access_token,
      body: { master_key: crossSigningKeyJson("@bob:test.local", "master", cs.master) },
    });
    expect(wrongUser.body.errcode).toBe("M_INVALID_PARAM");
    const wrongUsage = await api("POST", `${V3}/keys/device_signing/upload`, {
      token: alice.access_token,
      body: { master_key: crossSigningKeyJson(alice.user_id, "self_signing", cs.master) },
    });
    expect(wrongUsage.body.errcode).toBe("M_INVALID_PARAM");

    // Nothing was stored by the failed uploads.
    expect(await userDo(alice.user_id).crossSigningKeys()).toEqual({});
  });

  it("stores valid signatures (device by self-signing key, master by device, other user's master by user-signing key) and reports invalid ones", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const bob = await registerUser(uniqueLocalpart("bob"));
    const aliceDevice = await makeDeviceKeys(alice);
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { device_keys: aliceDevice.json } });
    const aliceCs = await makeCrossSigning(alice.user_id);
    await uploadCrossSigning(alice, aliceCs.body);
    const bobCs = await makeCrossSigning(bob.user_id);
    await uploadCrossSigning(bob, bobCs.body);

    const deviceSignedBySsk = await signJson(aliceDevice.json, alice.user_id, aliceCs.selfSigning);
    const masterSignedByDevice = await signJson(aliceCs.body.master_key as JsonObject, alice.user_id, aliceDevice.key);
    const bobMasterSignedByAlice = await signJson(bobCs.body.master_key as JsonObject, alice.user_id, aliceCs.userSigning);
    const forged = await signJson(aliceDevice.json, alice.user_id, { ...aliceCs.userSigning, keyId: aliceCs.selfSigning.keyId });
    const tampered = { ...deviceSignedBySsk, algorithms: ["m.megolm.v1.aes-sha2"] };

    const res = await api("POST", `${V3}/keys/signatures/upload`, {
      token: alice.access_token,
      body: {
        [alice.user_id]: { [alice.device_id]: deviceSignedBySsk, [aliceCs.master.publicKey]: masterSignedByDevice },
        [bob.user_id]: { [bobCs.master.publicKey]: bobMasterSignedByAlice },
      },
    });
    expect(res.status).toBe(200);
    expect(res.body.failures).toEqual({});

    const q = { device_keys: { [alice.user_id]: [], [bob.user_id]: [] } };
    const asAlice = (await api("POST", `${V3}/keys/query`, { token: alice.access_token, body: q })).body;
    const aliceSigs = asAlice.device_keys[alice.user_id][alice.device_id].signatures[alice.user_id];
    expect(aliceSigs[aliceCs.selfSigning.keyId]).toBe((deviceSignedBySsk.signatures as JsonObject)[alice.user_id]![aliceCs.selfSigning.keyId as never]);
    expect(aliceSigs[aliceDevice.key.keyId]).toBeDefined();
    expect(asAlice.master_keys[alice.user_id].signatures[alice.user_id]).toHaveProperty([aliceDevice.key.keyId]);
    // Alice sees her signature on Bob's master key ...
    expect(asAlice.master_keys[bob.user_id].signatures[alice.user_id]).toHaveProperty([aliceCs.userSigning.keyId]);
    // ... Bob does not (a user-signing key's signatures are visible to their signer only).
    const asBob = (await api("POST", `${V3}/keys/query`, { token: bob.access_token, body: q })).body;
    expect(asBob.master_keys[bob.user_id].signatures?.[alice.user_id]).toBeUndefined();
    expect(asBob.device_keys[alice.user_id][alice.device_id].signatures[alice.user_id]).toHaveProperty([aliceCs.selfSigning.keyId]);

    // Invalid: a signature by the wrong key, an object that is not the stored key, an unknown device,
    // a key that is not Bob's master key.
    const bad = await api("POST", `${V3}/keys/signatures/upload`, {
      token: alice.access_token,
      body: {
        [alice.user_id]: { [alice.device_id]: forged, NOSUCHDEVICE: { ...deviceSignedBySsk, device_id: "NOSUCHDEVICE" } },
        [bob.user_id]: { [bobCs.selfSigning.publicKey]: bobMasterSignedByAlice },
      },
    });
    expect(bad.status).toBe(200);
    expect(bad.body.failures[alice.user_id][alice.device_id].errcode).toBe("M_INVALID_SIGNATURE");
    expect(bad.body.failures[alice.user_id].NOSUCHDEVICE.errcode).toBe("M_NOT_FOUND");
    expect(bad.body.failures[bob.user_id][bobCs.selfSigning.publicKey].errcode).toBe("M_NOT_FOUND");
    const mismatch = await api("POST", `${V3}/keys/signatures/upload`, {
      token: alice.access_token,
      body: { [alice.user_id]: { [alice.device_id]: tampered } },
    });
    expect(mismatch.body.failures[alice.user_id][alice.device_id].errcode).toBe("M_INVALID_SIGNATURE");
    // The forged signature did not replace the valid one.
    const after = (await api("POST", `${V3}/keys/query`, { token: bob.access_token, body: q })).body;
    expect(after.device_keys[alice.user_id][alice.device_id].signatures[alice.user_id][aliceCs.selfSigning.keyId]).toBe(
      aliceSigs[aliceCs.selfSigning.keyId],
    );
  });

  it("refuses a device signature without a self-signing key", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const device = await makeDeviceKeys(alice);
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { device_keys: device.json } });
    const stray = await crossSigningKeyPair();
    const res = await api("POST", `${V3}/keys/signatures/upload`, {
      token: alice.access_token,
      body: { [alice.user_id]: { [alice.device_id]: await signJson(device.json, alice.user_id, stray) } },
    });
    expect(res.body.failures[alice.user_id][alice.device_id].errcode).toBe("M_NOT_FOUND");
  });
});

describe("device deletion", () => {
  it("deletes the device's keys and records a device list change", async () => {
    const localpart = uniqueLocalpart("alice");
    const alice = await registerUser(localpart);
    const second = await login(localpart, `password-${localpart}`, { device_id: "SECONDDEV" });
    expect(second.status).toBe(200);
    const secondUser = { ...alice, access_token: second.body.access_token, device_id: "SECONDDEV" };
    const { key, json } = await makeDeviceKeys(secondUser);
    await api("POST", `${V3}/keys/upload`, {
      token: secondUser.access_token,
      body: {
        device_keys: json,
        one_time_keys: await makeOneTimeKeys(secondUser, key, 2),
        fallback_keys: { "signed_curve25519:F": await signJson({ key: "f", fallback: true }, alice.user_id, key) },
      },
    });
    const q = { device_keys: { [alice.user_id]: [] } };
    expect(Object.keys((await api("POST", `${V3}/keys/query`, { token: alice.access_token, body: q })).body.device_keys[alice.user_id])).toEqual([
      "SECONDDEV",
    ]);
    const before = await userDo(alice.user_id).streamPosition();

    const challenge = await api("DELETE", `${V3}/devices/SECONDDEV`, { token: alice.access_token });
    const del = await api("DELETE", `${V3}/devices/SECONDDEV`, {
      token: alice.access_token,
      body: { auth: passwordAuth(alice, challenge.body.session) },
    });
    expect(del.status).toBe(200);

    expect((await api("POST", `${V3}/keys/query`, { token: alice.access_token, body: q })).body.device_keys[alice.user_id]).toEqual({});
    const store = userDo(alice.user_id);
    expect(await store.oneTimeKeyCounts("SECONDDEV")).toEqual({ signed_curve25519: 0 });
    expect(await store.unusedFallbackKeyTypes("SECONDDEV")).toEqual([]);
    expect(await store.keySigningState()).toEqual({ devices: {} });
    expect((await api("GET", `${V3}/keys/changes?from=${before}`, { token: alice.access_token })).body.changed).toEqual([alice.user_id]);
  });

  it("logout/all clears every device's keys", async () => {
    const alice = await registerUser(uniqueLocalpart("alice"));
    const { key, json } = await makeDeviceKeys(alice);
    await api("POST", `${V3}/keys/upload`, { token: alice.access_token, body: { device_keys: json, one_time_keys: await makeOneTimeKeys(alice, key, 1) } });
    expect((await api("POST", `${V3}/logout/all`, { token: alice.access_token })).status).toBe(200);
    const store = userDo(alice.user_id);
    expect(await store.keySigningState()).toEqual({ devices: {} });
    expect(await store.oneTimeKeyCounts(alice.device_id)).toEqual({ signed_curve25519: 0 });
  });
});
