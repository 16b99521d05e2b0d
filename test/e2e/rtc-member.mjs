// A MatrixRTC call member in its own process, for test/e2e/matrixrtc.test.ts: matrix-js-sdk's own
// MatrixRTCSession (what Element Call runs on) joins the call in a room and keeps its membership alive
// (the delayed leave event it restarts) until the process is killed. Prints `STATUS <status>` lines.
// Settings from the environment: BASE_URL, ACCESS_TOKEN, USER_ID, DEVICE_ID, ROOM_ID, LEAVE_DELAY_MS,
// RESTART_MS.
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("warn");
const env = process.env;
const client = sdk.createClient({ baseUrl: env.BASE_URL, accessToken: env.ACCESS_TOKEN, userId: env.USER_ID, deviceId: env.DEVICE_ID });
const prepared = new Promise((resolve) => client.on(sdk.ClientEvent.Sync, (state) => state === "PREPARED" && resolve()));
await client.startClient({ initialSyncLimit: 1 });
await prepared;
const room = client.getRoom(env.ROOM_ID);
if (!room) throw new Error(`not in ${env.ROOM_ID}`);
const session = client.matrixRTC.getRoomSession(room);
session.on("StatusChanged", (_prev, next) => console.log(`STATUS ${next}`));
session.joinRTCSession(
  { userId: env.USER_ID, deviceId: env.DEVICE_ID, memberId: `${env.USER_ID}:${env.DEVICE_ID}` },
  [{ type: "livekit", livekit_service_url: "https://livekit.invalid" }],
  undefined,
  {
    manageMediaKeys: false,
    delayedLeaveEventDelayMs: Number(env.LEAVE_DELAY_MS),
    delayedLeaveEventRestartMs: Number(env.RESTART_MS),
    membershipEventExpiryMs: 3_600_000,
  },
);
