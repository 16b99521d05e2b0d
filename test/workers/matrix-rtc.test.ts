// MatrixRTC transport discovery (MSC4143, worker/client/matrix-rtc.ts): the rtc/transports endpoints and
// `org.matrix.msc4143.rtc_foci` in /.well-known/matrix/client, from MATRIX_RTC_LIVEKIT_URL.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../worker/index.js";
import { newUser } from "./room-helpers.js";

const app = buildApp();
const LIVEKIT = "https://livekit-jwt.call.example.org";
const PATHS = ["/_matrix/client/unstable/org.matrix.msc4143/rtc/transports", "/_matrix/client/v1/rtc/transports"];

async function get(path: string, vars: Record<string, string | undefined>, token?: string) {
  const res = await app.request(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} }, { ...env, ...vars });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("MatrixRTC transports", () => {
  it("lists the configured LiveKit service to authenticated users", async () => {
    const alice = await newUser("rtc");
    for (const path of PATHS) {
      const res = await get(path, { MATRIX_RTC_LIVEKIT_URL: LIVEKIT }, alice.access_token);
      expect(res.status).toBe(200);
      expect(res.body.rtc_transports).toEqual([{ type: "livekit", livekit_service_url: LIVEKIT }]);
      expect(res.body.transports).toEqual(res.body.rtc_transports);
      const anon = await get(path, { MATRIX_RTC_LIVEKIT_URL: LIVEKIT });
      expect(anon.status).toBe(401);
      expect(anon.body.errcode).toBe("M_MISSING_TOKEN");
    }
  });

  it("lists none without configuration", async () => {
    const alice = await newUser("rtc");
    expect((await get(PATHS[0]!, {}, alice.access_token)).body).toEqual({ rtc_transports: [], transports: [] });
    expect((await get(PATHS[0]!, { MATRIX_RTC_LIVEKIT_URL: "  " }, alice.access_token)).body.rtc_transports).toEqual([]);
  });

  it("names the transport in /.well-known/matrix/client as rtc_foci, only when configured", async () => {
    const configured = await get("/.well-known/matrix/client", { MATRIX_RTC_LIVEKIT_URL: LIVEKIT, WELL_KNOWN_CLIENT: "https://matrix.example.org" });
    expect(configured.body).toEqual({
      "m.homeserver": { base_url: "https://matrix.example.org" },
      "org.matrix.msc4143.rtc_foci": [{ type: "livekit", livekit_service_url: LIVEKIT }],
    });
    const plain = await get("/.well-known/matrix/client", { WELL_KNOWN_CLIENT: "https://matrix.example.org" });
    expect(plain.body).toEqual({ "m.homeserver": { base_url: "https://matrix.example.org" } });
  });

  it("is advertised in /versions", async () => {
    const res = await get("/_matrix/client/versions", {});
    expect(res.body.unstable_features).toMatchObject({ "org.matrix.msc4143": true, "org.matrix.msc4140": true });
  });
});
