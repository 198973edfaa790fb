/** One document per sync run, written by the sync as the run progresses. Internal only. */
import { paginationOptsValidator, paginationResultValidator } from "convex/server";
import { ConvexError, v } from "convex/values";
import { type QueryCtx, internalMutation, internalQuery } from "./_generated/server";
import { syncRunDoc, syncRunMode, syncRunUpdateFields } from "./schema";

const FINAL_STATUSES: ReadonlySet<string> = new Set(["succeeded", "partial", "failed", "rejected"]);

async function find(ctx: QueryCtx, runId: string) {
  return await ctx.db
    .query("syncRuns")
    .withIndex("by_runId", (q) => q.eq("runId", runId))
    .unique();
}

/**
 * A new run, `pending`. The check and the insert are one transaction, so of two triggers given the
 * same run id exactly one creates it; the other gets a ConvexError and the first run's document stays.
 */
export const create = internalMutation({
  args: { runId: v.string(), mode: syncRunMode, trigger: v.optional(v.string()), startedAt: v.number() },
  returns: syncRunDoc,
  handler: async (ctx, { runId, ...fields }) => {
    if ((await find(ctx, runId)) !== null) {
      throw new ConvexError(
        `runId "${runId}" is already recorded in syncRuns; leave runId out for a new one`,
      );
    }
    const id = await ctx.db.insert("syncRuns", {
      runId,
      status: "pending",
      ...fields,
      updatedAt: Date.now(),
    });
    return (await ctx.db.get("syncRuns", id))!;
  },
});

export const record = internalMutation({
  args: { runId: v.string(), ...v.object(syncRunUpdateFields).partial().fields },
  returns: syncRunDoc,
  handler: async (ctx, { runId, ...fields }) => {
    const now = Date.now();
    const update = { ...fields, updatedAt: fields.updatedAt ?? now };
    const existing = await find(ctx, runId);
    if (existing === null) {
      const id = await ctx.db.insert("syncRuns", {
        status: "pending",
        mode: "incremental",
        startedAt: now,
        ...update,
        runId,
      });
      return (await ctx.db.get("syncRuns", id))!;
    }
    const reopens = fields.status === "running" || fields.status === "pending";
    if (reopens && FINAL_STATUSES.has(existing.status) && existing.endedByTrigger !== true) {
      // A run that ended stays ended: this is a late or replayed report (a signed sink request can
      // be replayed for 300 s), and it must not turn a finished run back into a running one.
      console.warn(`syncRuns: run ${runId} is ${existing.status}; a "${fields.status}" report is ignored`);
      return existing;
    }
    // The worker started: an error and end time left by a trigger that gave up waiting for the 202
    // no longer describe this run (undefined removes a field in a patch).
    const restarted =
      fields.status === "running"
        ? { error: undefined, finishedAt: undefined, endedByTrigger: undefined }
        : {};
    await ctx.db.patch("syncRuns", existing._id, { ...restarted, ...update });
    return (await ctx.db.get("syncRuns", existing._id))!;
  },
});

/** The trigger's failure, recorded only while the run is still `pending`: if the worker has started
 * reporting (the 202 was lost, or came after the trigger gave up), its status wins. */
export const failPending = internalMutation({
  args: {
    runId: v.string(),
    status: v.union(v.literal("failed"), v.literal("rejected")),
    error: v.string(),
    finishedAt: v.number(),
  },
  returns: v.union(syncRunDoc, v.null()),
  handler: async (ctx, { runId, ...fields }) => {
    const existing = await find(ctx, runId);
    if (existing === null || existing.status !== "pending") return null;
    await ctx.db.patch("syncRuns", existing._id, { ...fields, endedByTrigger: true, updatedAt: Date.now() });
    return (await ctx.db.get("syncRuns", existing._id))!;
  },
});

export const get = internalQuery({
  args: { runId: v.string() },
  returns: v.union(syncRunDoc, v.null()),
  handler: async (ctx, { runId }) => await find(ctx, runId),
});

/** Newest runs first. */
export const list = internalQuery({
  args: { paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(syncRunDoc),
  handler: async (ctx, { paginationOpts }) =>
    await ctx.db.query("syncRuns").order("desc").paginate(paginationOpts),
});
