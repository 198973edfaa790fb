import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";
import { xataTables } from "./xataTables";

export const syncRunStatus = v.union(
  v.literal("pending"),
  v.literal("running"),
  v.literal("succeeded"),
  v.literal("partial"),
  v.literal("failed"),
  v.literal("rejected"),
);
export const syncRunMode = v.union(v.literal("incremental"), v.literal("full"));

/** One table's outcome in a run. A list, not a record keyed by table: Xata table names may hold
 * characters (non-ASCII, a leading `$`) that Convex refuses as field names. */
export const syncRunTable = v.object({
  table: v.string(),
  added: v.number(),
  changed: v.number(),
  deleted: v.number(),
  unchanged: v.number(),
  status: v.string(),
  message: v.optional(v.string()),
});

/** The fields a run report may set; `record` takes them as a partial update. */
export const syncRunUpdateFields = {
  status: syncRunStatus,
  mode: syncRunMode,
  snapshotId: v.optional(v.string()),
  startedAt: v.number(),
  updatedAt: v.number(),
  finishedAt: v.optional(v.number()),
  tables: v.optional(v.array(syncRunTable)),
  batches: v.optional(v.number()),
  error: v.optional(v.string()),
  trigger: v.optional(v.string()),
  /** Keys (relative to SNAPSHOT_URI) of the run's JSON report and its HTML page. */
  reportKey: v.optional(v.string()),
  htmlReportKey: v.optional(v.string()),
};

export const syncRunFields = {
  runId: v.string(),
  ...syncRunUpdateFields,
  /** Set by the trigger's failure (syncRuns:failPending); the only final status a worker may reopen. */
  endedByTrigger: v.optional(v.boolean()),
};

export const syncRunDoc = v.object({
  _id: v.id("syncRuns"),
  _creationTime: v.number(),
  ...syncRunFields,
});

/** The sync cron's settings: one document, kept by convex/init.ts. */
export const syncScheduleFields = {
  /** The schedule as written (cronspec or interval), see convex/schedule.ts. */
  schedule: v.string(),
  /** XATA2CONVEX_SCHEDULE when last read: a changed variable wins over `init:setSchedule`. */
  envSchedule: v.optional(v.string()),
  paused: v.boolean(),
  updatedAt: v.number(),
};

export default defineSchema({
  ...xataTables,
  syncRuns: defineTable(syncRunFields).index("by_runId", ["runId"]),
  syncSchedule: defineTable(syncScheduleFields),
});
