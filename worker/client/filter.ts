// Client-Server API: Filtering (spec: "Filtering", data/api/client-server/filter.yaml). Filters are
// per-user data and live in the user's Durable Object; the structure is checked by protocol/filter.ts.
import { Hono } from "hono";
import { notFound } from "../../protocol/errors.js";
import { isFilterId, parseFilter } from "../../protocol/filter.js";
import { requireAuth } from "../auth.js";
import type { AppEnv } from "../env.js";
import { readJsonObject } from "../http.js";
import { jsonText, requireSelf, userStore } from "../user-store.js";

export const filterRoutes = new Hono<AppEnv>();
const U = "/_matrix/client/:version{v3|r0}/user/:userId";

// POST /_matrix/client/v3/user/{userId}/filter
filterRoutes.post(`${U}/filter`, requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot create filters for other users");
  const body = await readJsonObject(c, { allowEmpty: false });
  parseFilter(body); // throws M_BAD_JSON for a malformed filter; the original JSON is what is stored
  const filterId = await userStore(c.env, userId).createFilter(body);
  return c.json({ filter_id: filterId });
});

// GET /_matrix/client/v3/user/{userId}/filter/{filterId}
filterRoutes.get(`${U}/filter/:filterId`, requireAuth, async (c) => {
  const userId = requireSelf(c, c.req.param("userId"), "Cannot get filters for other users");
  const filterId = c.req.param("filterId");
  // Not one of our IDs: it cannot exist (Synapse answers 400 for a non-integer; the spec only has 404).
  const filter = isFilterId(filterId) ? await userStore(c.env, userId).getFilter(filterId) : null;
  if (filter === null) throw notFound("No such filter");
  return jsonText(c, filter);
});
