// End-to-end: a MatrixRTC (group call) member that crashes leaves the call because the server sends its
// delayed leave event (MSC4140). matrix-js-sdk's own MatrixRTCSession (what Element Call runs on) joins
// the call in a separate process (test/e2e/rtc-member.mjs); a second client, syncing with matrix-js-sdk,
// sees the membership through its own MatrixRTCSession; while the member lives its restarts keep it in
// the call; after SIGKILL its membership ends because the server sent the delayed leave.
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import * as sdk from "matrix-js-sdk";
import { MatrixRTCSessionEvent, type MatrixRTCSession } from "matrix-js-sdk/lib/matrixrtc/index.js";
import { afterAll, describe, expect, inject, it } from "vitest";
import { registerAccount, unique, type Account } from "./register.js";

const baseUrl = inject("baseUrl");
const LEAVE_DELAY_MS = 4000;
const RESTART_MS = 1500;


const register = (prefix: string): Promise<Account> => registerAccount(baseUrl, unique(prefix));

/** Resolves once `check()` holds, looking every 100 ms; rejects after `limitMs` (a hang bound, not a timing claim). */
async function until(what: string, check: () => boolean | Promise<boolean>, limitMs = 60_000): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("MatrixRTC with matrix-js-sdk", () => {
  let member: ChildProcess | undefined;
  let bob: sdk.MatrixClient | undefined;

  afterAll(() => {
    if (member && member.exitCode === null && member.signalCode === null) member.kill("SIGKILL");
    bob?.stopClient();
  });

  it("a crashed member leaves the call when the server sends its delayed leave", async () => {
    const alice = await register("rtcalice");
    const bobAccount = await register("rtcbob");
    const auth = (a: Account) => ({ Authorization: `Bearer ${a.access_token}` });
    const created = await fetch(`${baseUrl}/_matrix/client/v3/createRoom`, { method: "POST", headers: auth(alice), body: JSON.stringify({ preset: "public_chat" }) });
    const { room_id: roomId } = (await created.json()) as { room_id: string };
    expect((await fetch(`${baseUrl}/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, { method: "POST", headers: auth(bobAccount), body: "{}" })).status).toBe(200);

    // Bob syncs and watches the room's call session.
    bob = sdk.createClient({ baseUrl, accessToken: bobAccount.access_token, userId: bobAccount.user_id, deviceId: bobAccount.device_id });
    const prepared = new Promise<void>((resolve) => bob!.on(sdk.ClientEvent.Sync, (state) => state === "PREPARED" && resolve()));
    await bob.startClient({ initialSyncLimit: 1 });
    await prepared;
    await until("bob's copy of the room", () => bob!.getRoom(roomId) !== null);
    const session: MatrixRTCSession = bob.matrixRTC.getRoomSession(bob.getRoom(roomId)!);
    const aliceInCall = () => session.memberships.some((m) => m.userId === alice.user_id);
    let changes = 0;
    session.on(MatrixRTCSessionEvent.MembershipsChanged, () => changes++);

    // Alice joins the call from her own process.
    member = spawn(process.execPath, [path.join(import.meta.dirname, "rtc-member.mjs")], {
      env: {
        ...process.env,
        BASE_URL: baseUrl,
        ACCESS_TOKEN: alice.access_token,
        USER_ID: alice.user_id,
        DEVICE_ID: alice.device_id,
        ROOM_ID: roomId,
        LEAVE_DELAY_MS: String(LEAVE_DELAY_MS),
        RESTART_MS: String(RESTART_MS),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    member.stdout!.on("data", (d) => (output += d));
    member.stderr!.on("data", (d) => (output += d));
    await until("alice's client to say it is connected", () => output.includes("STATUS Connected") || member!.exitCode !== null);
    expect(member.exitCode, output).toBeNull();
    await until("bob to see alice in the call", aliceInCall);

    // Alive for three leave delays: her restarts keep the delayed leave from being sent.
    const delayed = async () => {
      const res = await fetch(`${baseUrl}/_matrix/client/unstable/org.matrix.msc4140/delayed_events`, { headers: auth(alice) });
      return (await res.json()) as { scheduled: { delay_id: string; running_since: number; delay: number; state_key?: string }[]; finalised: { outcome: string; reason: string; delayed_event: { delay_id: string } }[] };
    };
    const first = await delayed();
    expect(first.scheduled).toHaveLength(1);
    expect(first.scheduled[0]!.delay).toBe(LEAVE_DELAY_MS);
    await new Promise((r) => setTimeout(r, 3 * LEAVE_DELAY_MS));
    const later = await delayed();
    expect(later.scheduled.map((e) => e.delay_id)).toEqual([first.scheduled[0]!.delay_id]);
    expect(later.scheduled[0]!.running_since).toBeGreaterThan(first.scheduled[0]!.running_since);
    expect(later.finalised).toEqual([]);
    expect(aliceInCall()).toBe(true);

    // SIGKILL: no goodbye from the client. The server's delayed leave ends the membership.
    const changesBefore = changes;
    member.kill("SIGKILL");
    const killedAt = Date.now();
    await until("alice's membership to end", () => !aliceInCall());
    const leftAfterMs = Date.now() - killedAt;
    console.log(`[matrixrtc] membership ended ${leftAfterMs} ms after SIGKILL (leave delay ${LEAVE_DELAY_MS} ms)`);
    expect(changes).toBeGreaterThan(changesBefore);
    const after = await delayed();
    expect(after.scheduled).toEqual([]);
    expect(after.finalised.map((f) => [f.delayed_event.delay_id, f.outcome, f.reason])).toEqual([[first.scheduled[0]!.delay_id, "send", "delay"]]);
  });
});
