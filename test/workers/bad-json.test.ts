// Client bodies that JSON.parse accepts but Matrix JSON does not (floats, integers beyond ±(2^53−1), lone
// surrogates, nesting thousands deep) and bodies that are not UTF-8 are 400 on every route that takes
// content, and nothing is stored (issue 12 §3; worker/http.ts readJsonObject, protocol/json-text.ts).
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH } from "../../protocol/json-text.js";
import { api, SERVER_NAME } from "./helpers.js";
import { V3, createRoom, newUser, r } from "./room-helpers.js";

const worker = (exports as unknown as { default: { fetch(request: Request): Promise<Response> } }).default;

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

/** Bad bodies, as text, each with the error Synapse answers. `{X}` is replaced by the bad value. */
const BAD_VALUES: [string, string, string][] = [
  ["a float", "1.5", "M_BAD_JSON"],
  ["a float written as an integer with a fraction", "1.0", "M_BAD_JSON"],
  ["a float in exponent form", "1e3", "M_BAD_JSON"],
  ["an integer above 2^53-1", "9007199254740992", "M_BAD_JSON"],
  ["an integer below -(2^53-1)", "-9007199254740992", "M_BAD_JSON"],
  ["a huge integer", "1" + "0".repeat(400), "M_BAD_JSON"],
  ["a lone high surrogate", '"a\\ud800b"', "M_NOT_JSON"],
  ["a lone low surrogate", '"\\udc00"', "M_NOT_JSON"],
  ["a reversed surrogate pair", '"\\udc00\\ud800"', "M_NOT_JSON"],
  ["nesting thousands deep", nested(5000), "M_NOT_JSON"],
];

async function expectRefused(method: string, path: string, token: string, template: string, values = BAD_VALUES) {
  for (const [what, value, errcode] of values) {
    const res = await api(method, path, { token, body: template.replace("{X}", value) });
    expect(res.status, `${method} ${path} with ${what}`).toBe(400);
    expect(res.body.errcode, `${method} ${path} with ${what}`).toBe(errcode);
  }
}

describe("Matrix JSON in client bodies", () => {
  it("refuses bad content on send, state and redact and stores no event", async () => {
    const alice = await newUser("badjson");
    const roomId = await createRoom(alice);
    const before = await api("GET", `${r(roomId)}/messages?dir=b&limit=50`, { token: alice.access_token });
    const sent = await api("PUT", `${r(roomId)}/send/m.room.message/ok1`, { token: alice.access_token, body: { body: "hi", msgtype: "m.text" } });
    expect(sent.status).toBe(200);

    await expectRefused("PUT", `${r(roomId)}/send/m.room.message/t1`, alice.access_token, '{"body":"x","msgtype":"m.text","n":{X}}');
    await expectRefused("PUT", `${r(roomId)}/state/m.custom/`, alice.access_token, '{"n":{X}}');
    await expectRefused("PUT", `${r(roomId)}/state/m.custom/key`, alice.access_token, '{"a":[{"n":{X}}]}');
    await expectRefused("PUT", `${r(roomId)}/redact/${encodeURIComponent(sent.body.event_id)}/t2`, alice.access_token, '{"reason":"r","n":{X}}');

    const after = await api("GET", `${r(roomId)}/messages?dir=b&limit=50`, { token: alice.access_token });
    expect(after.body.chunk.length).toBe(before.body.chunk.length + 1);
    const state = await api("GET", `${r(roomId)}/state/m.custom/key`, { token: alice.access_token });
    expect(state.status).toBe(404);
    const original = await api("GET", `${r(roomId)}/event/${encodeURIComponent(sent.body.event_id)}`, { token: alice.access_token });
    expect(original.body.content.body).toBe("hi");
  });

  it("accepts the edge values: ±(2^53-1), surrogate pairs and nesting at the limit", async () => {
    const alice = await newUser("badjson");
    const roomId = await createRoom(alice);
    const body = `{"msgtype":"m.text","body":"\\ud83d\\ude00 😀","max":9007199254740991,"min":-9007199254740991,"zero":-0,"deep":${nested(MAX_JSON_DEPTH - 1)}}`;
    const res = await api("PUT", `${r(roomId)}/send/m.room.message/edge`, { token: alice.access_token, body });
    expect(res.status).toBe(200);
    const event = await api("GET", `${r(roomId)}/event/${encodeURIComponent(res.body.event_id)}`, { token: alice.access_token });
    expect(event.body.content.max).toBe(9007199254740991);
    expect(event.body.content.min).toBe(-9007199254740991);
    expect(event.body.content.body).toBe("😀 😀");
    // One level more than the limit is refused.
    const tooDeep = `{"deep":${nested(MAX_JSON_DEPTH)}}`;
    const refused = await api("PUT", `${r(roomId)}/send/m.room.message/edge2`, { token: alice.access_token, body: tooDeep });
    expect(refused.status).toBe(400);
    expect(refused.body.errcode).toBe("M_NOT_JSON");
  });

  it("refuses bad initial_state and creation_content in createRoom and creates no room", async () => {
    const alice = await newUser("badjson");
    await expectRefused("POST", `${V3}/createRoom`, alice.access_token, '{"initial_state":[{"type":"m.custom","state_key":"","content":{"n":{X}}}]}');
    await expectRefused("POST", `${V3}/createRoom`, alice.access_token, '{"creation_content":{"n":{X}}}');
    const joined = await api("GET", `${V3}/joined_rooms`, { token: alice.access_token });
    expect(joined.body.joined_rooms).toEqual([]);
  });

  it("refuses account data nested thousands deep, global and per room, and stores none; floats are the client's own (as Synapse)", async () => {
    const alice = await newUser("badjson");
    const roomId = await createRoom(alice);
    const user = encodeURIComponent(alice.user_id);
    // Account data never becomes part of a signed event, and clients keep floats there (a room tag's
    // `order` is a number in [0, 1] by the spec): only the nesting limit applies.
    const deep = BAD_VALUES.filter(([what]) => what === "nesting thousands deep");
    await expectRefused("PUT", `${V3}/user/${user}/account_data/m.custom`, alice.access_token, '{"n":{X}}', deep);
    await expectRefused("PUT", `${V3}/user/${user}/rooms/${encodeURIComponent(roomId)}/account_data/m.custom`, alice.access_token, '{"n":{X}}', deep);
    expect((await api("GET", `${V3}/user/${user}/account_data/m.custom`, { token: alice.access_token })).status).toBe(404);
    expect((await api("GET", `${V3}/user/${user}/rooms/${encodeURIComponent(roomId)}/account_data/m.custom`, { token: alice.access_token })).status).toBe(404);
    expect((await api("PUT", `${V3}/user/${user}/account_data/m.custom`, { token: alice.access_token, body: '{"n":1.5}' })).status).toBe(200);
    expect((await api("GET", `${V3}/user/${user}/account_data/m.custom`, { token: alice.access_token })).body).toEqual({ n: 1.5 });
  });

  it("refuses bad profile fields and filters", async () => {
    const alice = await newUser("badjson");
    const user = encodeURIComponent(alice.user_id);
    await expectRefused("PUT", `${V3}/profile/${user}/displayname`, alice.access_token, '{"displayname":"x","n":{X}}');
    await expectRefused("PUT", `${V3}/profile/${user}/avatar_url`, alice.access_token, '{"avatar_url":"mxc://a/b","n":{X}}');
    const profile = await api("GET", `${V3}/profile/${user}`, { token: alice.access_token });
    expect(profile.body.avatar_url).toBeUndefined();
    expect(profile.body.displayname).not.toBe("x");
    await expectRefused("POST", `${V3}/user/${user}/filter`, alice.access_token, '{"room":{"timeline":{"limit":{X}}}}');
    // The first filter stored gets the first ID (the User DO counts from 1): the refusals stored none.
    const first = await api("POST", `${V3}/user/${user}/filter`, { token: alice.access_token, body: {} });
    expect(first.status).toBe(200);
    expect(first.body.filter_id).toBe("1");
  });

  it("answers M_NOT_JSON to a body that is not UTF-8", async () => {
    const alice = await newUser("badjson");
    const roomId = await createRoom(alice);
    const bytes = new Uint8Array([...new TextEncoder().encode('{"body":"'), 0xff, 0xfe, ...new TextEncoder().encode('"}')]);
    const res = await worker.fetch(
      new Request(`https://${SERVER_NAME}${r(roomId)}/send/m.room.message/nonutf8`, {
        method: "PUT",
        headers: { Authorization: `Bearer ${alice.access_token}`, "Content-Type": "application/json" },
        body: bytes,
      }),
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errcode: string }).errcode).toBe("M_NOT_JSON");
  });
});
