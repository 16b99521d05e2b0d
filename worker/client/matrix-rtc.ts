// MatrixRTC transport discovery (MSC4143): which SFU (LiveKit, through its JWT service) the clients of
// this server use for group calls. Answered on GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports
// (and the `v1` path of the MSC) and named in /.well-known/matrix/client as `org.matrix.msc4143.rtc_foci`,
// which Element Call reads when the endpoint is missing. Configured with MATRIX_RTC_LIVEKIT_URL, the URL of
// the LiveKit JWT service (`livekit_service_url`); the media flows through that separate service.
import { Hono } from "hono";
import { requireAuth } from "../auth.js";
import type { AppEnv, Env } from "../env.js";

export const matrixRtcRoutes = new Hono<AppEnv>();

export interface RtcTransport {
  type: string;
  livekit_service_url: string;
}

/** The configured transports (none without MATRIX_RTC_LIVEKIT_URL). */
export function rtcTransports(env: Pick<Env, "MATRIX_RTC_LIVEKIT_URL">): RtcTransport[] {
  const url = env.MATRIX_RTC_LIVEKIT_URL?.trim();
  return url ? [{ type: "livekit", livekit_service_url: url }] : [];
}

// GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports
// GET /_matrix/client/v1/rtc/transports
for (const path of ["/_matrix/client/unstable/org.matrix.msc4143/rtc/transports", "/_matrix/client/v1/rtc/transports"]) {
  matrixRtcRoutes.get(path, requireAuth, (c) => {
    const transports = rtcTransports(c.env);
    // `rtc_transports` is the MSC's name and what matrix-js-sdk reads; Synapse (1.13x) answered the same
    // list as `transports`, which clients written against it read.
    return c.json({ rtc_transports: transports, transports });
  });
}
