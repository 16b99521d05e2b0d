// Synapse admin API: event reports and room reports (Synapse docs/admin_api/event_reports.md,
// room_reports.md). Both kinds are rows of D1 `reports` (worker/client/reporting.ts): a room report has
// no event ID. Room names and aliases and the reported event come from the Room DO.
import { Hono, type Context } from "hono";
import { MatrixError, notFound } from "../../protocol/errors.js";
import type { JsonObject } from "../../protocol/json.js";
import type { AppEnv, Env } from "../env.js";
import { roomStub } from "../room-store.js";
import { containsPattern, dirQuery, pageQuery, requireAdmin } from "./auth.js";
import type { AdminRoomSummary } from "../../durable-objects/room/admin.js";

export const adminReportRoutes = new Hono<AppEnv>();

interface ReportRow {
  id: number;
  reporter: string;
  room_id: string;
  event_id: string | null;
  reason: string | null;
  received_ts: number;
}

/** Room summaries of the distinct rooms of a page of reports (one DO call per room). */
async function summariesOf(env: Env, roomIds: Iterable<string>): Promise<Map<string, AdminRoomSummary | null>> {
  const unique = [...new Set(roomIds)];
  const summaries = await Promise.all(unique.map((id) => roomStub(env, id).adminSummary()));
  return new Map(unique.map((id, i) => [id, summaries[i] ?? null]));
}

function reportIdParam(c: Context<AppEnv>): number {
  const raw = c.req.param("reportId") ?? "";
  // Synapse: "The report_id parameter must be a string representing a positive integer."
  if (!/^\d{1,15}$/.test(raw)) throw new MatrixError(400, "M_INVALID_PARAM", "The report_id parameter must be a string representing a positive integer.");
  return Number(raw);
}

async function eventSender(env: Env, row: ReportRow): Promise<{ sender: string | null; pdu: JsonObject | null }> {
  const pdu = row.event_id === null ? null : await roomStub(env, row.room_id).getPdu(row.event_id);
  return { sender: pdu?.sender ?? null, pdu: pdu as unknown as JsonObject | null };
}

function eventReportJson(row: ReportRow, summary: AdminRoomSummary | null | undefined, sender: string | null): JsonObject {
  return {
    id: row.id,
    received_ts: row.received_ts,
    room_id: row.room_id,
    name: summary?.name ?? null,
    event_id: row.event_id,
    user_id: row.reporter,
    reason: row.reason,
    // `score` was removed from the reporting API (spec v1.18); Synapse keeps answering it.
    score: null,
    sender,
    canonical_alias: summary?.canonical_alias ?? null,
  };
}

function roomReportJson(row: ReportRow, summary: AdminRoomSummary | null | undefined): JsonObject {
  return {
    id: row.id,
    received_ts: row.received_ts,
    room_id: row.room_id,
    user_id: row.reporter,
    reason: row.reason,
    canonical_alias: summary?.canonical_alias ?? null,
    name: summary?.name ?? null,
    topic: summary?.topic ?? null,
  };
}

// GET /_synapse/admin/v1/event_reports
adminReportRoutes.get("/_synapse/admin/v1/event_reports", requireAdmin, async (c) => {
  const { from, limit } = pageQuery(c.req.query("from"), c.req.query("limit"));
  const dir = dirQuery(c.req.query("dir"), "b");
  const where = ["event_id IS NOT NULL"];
  const params: unknown[] = [];
  // Synapse: `user_id` and `room_id` match IDs containing the value.
  const userId = c.req.query("user_id");
  if (userId) (where.push("reporter LIKE ? ESCAPE '\\'"), params.push(containsPattern(userId)));
  const roomId = c.req.query("room_id");
  if (roomId) (where.push("room_id LIKE ? ESCAPE '\\'"), params.push(containsPattern(roomId)));
  const whereSql = where.join(" AND ");
  const total = (await c.env.DB.prepare(`SELECT count(*) AS n FROM reports WHERE ${whereSql}`).bind(...params).first<{ n: number }>())?.n ?? 0;
  const rows = (
    await c.env.DB.prepare(`SELECT * FROM reports WHERE ${whereSql} ORDER BY received_ts ${dir === "b" ? "DESC" : "ASC"}, id ${dir === "b" ? "DESC" : "ASC"} LIMIT ? OFFSET ?`)
      .bind(...params, limit, from)
      .all<ReportRow>()
  ).results;
  const summaries = await summariesOf(c.env, rows.map((r) => r.room_id));
  let reports = await Promise.all(rows.map(async (r) => eventReportJson(r, summaries.get(r.room_id), (await eventSender(c.env, r)).sender)));
  // Synapse: `sender_user_id` keeps reports against that user's events (applied to the page here: the
  // sender is known to the room, not to D1).
  const senderFilter = c.req.query("sender_user_id");
  if (senderFilter) reports = reports.filter((r) => r.sender === senderFilter);
  const body: JsonObject = { event_reports: reports, total };
  if (from + rows.length < total) body.next_token = from + rows.length;
  return c.json(body);
});

async function eventReport(env: Env, id: number): Promise<ReportRow> {
  const row = await env.DB.prepare("SELECT * FROM reports WHERE id = ? AND event_id IS NOT NULL").bind(id).first<ReportRow>();
  if (!row) throw notFound("Event report not found");
  return row;
}

// GET /_synapse/admin/v1/event_reports/{reportId}
adminReportRoutes.get("/_synapse/admin/v1/event_reports/:reportId", requireAdmin, async (c) => {
  const row = await eventReport(c.env, reportIdParam(c));
  const summaries = await summariesOf(c.env, [row.room_id]);
  const { sender, pdu } = await eventSender(c.env, row);
  return c.json({ ...eventReportJson(row, summaries.get(row.room_id), sender), event_json: pdu });
});

// DELETE /_synapse/admin/v1/event_reports/{reportId}
adminReportRoutes.delete("/_synapse/admin/v1/event_reports/:reportId", requireAdmin, async (c) => {
  const id = reportIdParam(c);
  const deleted = await c.env.DB.prepare("DELETE FROM reports WHERE id = ? AND event_id IS NOT NULL").bind(id).run();
  if (!deleted.meta.changes) throw notFound("Event report not found");
  return c.json({});
});

// GET /_synapse/admin/v1/room_reports: newest first; `from` is a report ID to continue below (Synapse).
adminReportRoutes.get("/_synapse/admin/v1/room_reports", requireAdmin, async (c) => {
  const rawFrom = c.req.query("from");
  const { from, limit } = pageQuery(rawFrom, c.req.query("limit"));
  const where = ["event_id IS NULL"];
  const params: unknown[] = [];
  const userId = c.req.query("user_id");
  if (userId) (where.push("reporter = ?"), params.push(userId));
  const roomId = c.req.query("room_id");
  if (roomId) (where.push("room_id = ?"), params.push(roomId));
  const total = (await c.env.DB.prepare(`SELECT count(*) AS n FROM reports WHERE ${where.join(" AND ")}`).bind(...params).first<{ n: number }>())?.n ?? 0;
  if (rawFrom !== undefined && rawFrom !== "") (where.push("id <= ?"), params.push(from));
  const rows = (
    await c.env.DB.prepare(`SELECT * FROM reports WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT ?`)
      .bind(...params, limit + 1)
      .all<ReportRow>()
  ).results;
  const page = rows.slice(0, limit);
  const summaries = await summariesOf(c.env, page.map((r) => r.room_id));
  const body: JsonObject = { room_reports: page.map((r) => roomReportJson(r, summaries.get(r.room_id))), total };
  if (rows.length > limit) body.next_batch = rows[limit]!.id;
  return c.json(body);
});

async function roomReport(env: Env, id: number): Promise<ReportRow> {
  const row = await env.DB.prepare("SELECT * FROM reports WHERE id = ? AND event_id IS NULL").bind(id).first<ReportRow>();
  if (!row) throw notFound("Room report not found");
  return row;
}

// GET /_synapse/admin/v1/room_reports/{reportId}
adminReportRoutes.get("/_synapse/admin/v1/room_reports/:reportId", requireAdmin, async (c) => {
  const row = await roomReport(c.env, reportIdParam(c));
  const summaries = await summariesOf(c.env, [row.room_id]);
  return c.json(roomReportJson(row, summaries.get(row.room_id)));
});

// DELETE /_synapse/admin/v1/room_reports/{reportId} (not in Synapse's documentation; the counterpart of
// the event reports' DELETE).
adminReportRoutes.delete("/_synapse/admin/v1/room_reports/:reportId", requireAdmin, async (c) => {
  const id = reportIdParam(c);
  const deleted = await c.env.DB.prepare("DELETE FROM reports WHERE id = ? AND event_id IS NULL").bind(id).run();
  if (!deleted.meta.changes) throw notFound("Room report not found");
  return c.json({});
});
