// Client-Server API: Room Upgrades (spec: "Room Upgrades", "Server behaviour"; data/api/client-server/
// room_upgrades.yaml). The old room's DO checks the user's power to send m.room.tombstone and collects the
// state to copy (durable-objects/room/upgrade.ts); this module runs the steps across the two rooms and D1:
//   1. the power check (old Room DO);
//   2. the new room, created like any other (worker/client/rooms.ts `createRoom`) with a create event that
//      names its predecessor and copies the old room's `type`, and the copied state as `initial_state`;
//      the bans are copied too, and the power levels restored if the user needed more power to copy;
//   3. the tombstone in the old room;
//   4. the local aliases, the canonical alias and the published-directory entry move to the new room;
//   5. the old room's power levels are raised so that ordinary members can no longer talk or invite.
// Steps after the tombstone are best effort (as in Synapse): a refusal there leaves the upgrade done.
import { Hono } from "hono";
import { unwrap } from "../../durable-objects/user/outcome.js";
import { isValidUserId } from "../../protocol/auth-rules.js";
import { MatrixError, badJson, invalidParam, missingParam } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import { roomVersionRules } from "../../protocol/room-versions.js";
import { requester, requireAuth } from "../auth.js";
import { deleteAlias, getAlias, getVisibility, insertAlias, localAliasesOf, setVisibility } from "../directory-store.js";
import type { AppEnv, Env } from "../env.js";
import { readJsonObject } from "../http.js";
import { requireRoomId, roomStub } from "../room-store.js";
import { createRoom } from "./rooms.js";
import { copyPushRulesFromPredecessor } from "./push-rules.js";

export const roomUpgradeRoutes = new Hono<AppEnv>();

/** The body of the tombstone (a server-defined message, spec m.room.tombstone). */
const TOMBSTONE_BODY = "This room has been replaced";

/** Runs a best-effort step: a refusal is logged, not returned (the upgrade itself succeeded). */
async function bestEffort(what: string, step: () => Promise<unknown>): Promise<void> {
  try {
    await step();
  } catch (e) {
    console.warn(`room upgrade: ${what} failed`, e instanceof Error ? e.message : e);
  }
}

/**
 * Upgrades `oldRoomId` to `newVersion` for `userId` (already checked: a known room version); returns the
 * new room's ID. `additionalCreators` is used only when the new version has additional creators.
 */
export async function upgradeRoom(env: Env, userId: string, oldRoomId: string, newVersion: string, additionalCreators: string[]): Promise<string> {
  const oldRoom = roomStub(env, oldRoomId);
  const source = unwrap(await oldRoom.upgradeSource(userId, newVersion, additionalCreators));

  const newRoomId = await createRoom(env, userId, {
    room_version: newVersion,
    creation_content: source.creationContent,
    initial_state: source.initialState.map((e) => ({ type: e.type, state_key: e.stateKey, content: e.content })),
    // The copied state overrides the preset's join rules, history visibility and guest access; the
    // preset only fills what the old room lacked.
    preset: source.joinRule === "public" ? "public_chat" : "private_chat",
  });
  const newRoom = roomStub(env, newRoomId);

  for (const ban of source.bans) {
    await bestEffort(`copying the ban of ${ban.userId}`, async () =>
      unwrap(await newRoom.sendEvent({ sender: userId, type: "m.room.member", stateKey: ban.userId, content: ban.content })),
    );
  }
  if (source.finalPowerLevels) {
    await bestEffort("restoring the power levels", async () =>
      unwrap(await newRoom.sendEvent({ sender: userId, type: "m.room.power_levels", stateKey: "", content: source.finalPowerLevels! })),
    );
  }

  unwrap(
    await oldRoom.sendEvent({
      sender: userId,
      type: "m.room.tombstone",
      stateKey: "",
      content: { body: TOMBSTONE_BODY, replacement_room: newRoomId },
    }),
  );

  // Spec step 4: "Moves any local aliases to the new room."
  for (const alias of await localAliasesOf(env, oldRoomId)) {
    await bestEffort(`moving ${alias}`, async () => {
      const row = await getAlias(env, alias);
      if (!row || row.room_id !== oldRoomId) return;
      await deleteAlias(env, alias);
      await insertAlias(env, alias, newRoomId, row.creator);
    });
  }
  if (source.canonicalAlias) {
    const content: JsonObject = source.canonicalAlias;
    await bestEffort("setting the canonical alias of the new room", async () =>
      unwrap(await newRoom.sendEvent({ sender: userId, type: "m.room.canonical_alias", stateKey: "", content })),
    );
    await bestEffort("clearing the canonical alias of the old room", async () =>
      unwrap(await oldRoom.sendEvent({ sender: userId, type: "m.room.canonical_alias", stateKey: "", content: {} })),
    );
  }
  if ((await getVisibility(env, oldRoomId)) === "public") {
    await setVisibility(env, newRoomId, "public");
    await setVisibility(env, oldRoomId, "private");
  }

  // Spec step 6: "the power levels in the old room should also be modified to prevent sending of events
  // and inviting new users".
  if (source.restrictedPowerLevels) {
    await bestEffort("restricting the old room's power levels", async () =>
      unwrap(await oldRoom.sendEvent({ sender: userId, type: "m.room.power_levels", stateKey: "", content: source.restrictedPowerLevels! })),
    );
  }
  // The upgrading user is in the new room from its creation; the others copy theirs when they join.
  await copyPushRulesFromPredecessor(env, userId, newRoomId);
  return newRoomId;
}

// POST /_matrix/client/v3/rooms/{roomId}/upgrade
roomUpgradeRoutes.post("/_matrix/client/:version{v3|r0}/rooms/:roomId/upgrade", requireAuth, async (c) => {
  const roomId = requireRoomId(c.req.param("roomId"));
  const body = await readJsonObject(c, { allowEmpty: false });
  const newVersion = body.new_version;
  if (newVersion === undefined) throw missingParam("Missing new_version");
  if (typeof newVersion !== "string") throw badJson("'new_version' must be a string");
  const newRules = roomVersionRules(newVersion);
  if (!newRules) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "This server does not support that room version");
  // MSC4345 rooms name their members by server key (decision 12): an upgrade would have to carry
  // every member and power level over to new IDs, which Myelin does not do.
  if (newRules.eventFormat.serverKeyIdentity) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "Rooms cannot be upgraded to this room version");
  const additionalCreators: string[] = [];
  if (body.additional_creators !== undefined) {
    if (!Array.isArray(body.additional_creators)) throw badJson("'additional_creators' must be a list of user IDs");
    for (const user of body.additional_creators) {
      if (typeof user !== "string" || !isValidUserId(user)) throw invalidParam(`Invalid user ID in additional_creators: ${String(user)}`);
      if (!additionalCreators.includes(user) && user !== requester(c).userId) additionalCreators.push(user);
    }
  }
  const replacementRoom = await upgradeRoom(c.env, requester(c).userId, roomId, newVersion, additionalCreators);
  return c.json({ replacement_room: replacementRoom });
});
