// Running a user's Delayed Events DO alarm (MSC4140) from a test, deterministically.
//
// Why not a delay of 0 and runDurableObjectAlarm: an alarm due at once is also run by workerd on its own.
// When that run is under way (it has claimed the row and awaits the Room DO's send), runDurableObjectAlarm
// finds no alarm left to run, or runs a second alarm() that finds the row claimed; either way it returns
// before the event is in the room. On an idle machine the platform's run is usually over first; on a loaded
// one (a full workers run) it often is not, and the test reads the room too early. So tests schedule with a
// delay the platform will not reach during the test (a minute), make that row due inside the DO, and run
// the alarm themselves: the runtime's alarm is still a minute away, so this run is the only one, and it
// has sent the event when it returns.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";

export const delayedStub = (userId: string) => env.DELAYED_EVENTS.get(env.DELAYED_EVENTS.idFromName(userId));

/** Makes these scheduled delayed events of the user due now, then runs the user's alarm to its end. */
export async function runDueNow(userId: string, ...delayIds: string[]): Promise<void> {
  const stub = delayedStub(userId);
  await runInDurableObject(stub, (_instance, state) => {
    for (const delayId of delayIds) {
      const found = state.storage.sql.exec("SELECT 1 FROM delayed_events WHERE delay_id = ? AND finalised_ts IS NULL AND sending = 0", delayId).toArray();
      if (found.length !== 1) throw new Error(`delayed event ${delayId} is not scheduled`);
      state.storage.sql.exec("UPDATE delayed_events SET send_ts = ? WHERE delay_id = ?", Date.now(), delayId);
    }
  });
  // True: this call ran the alarm (none ran on its own in between, as none was due).
  expect(await runDurableObjectAlarm(stub)).toBe(true);
}
