/** One document per sync run, written by the sync as the run progresses. Internal only. */
import { paginationOptsValidator, paginationResultValidator } from "convex/server";
import { v } from "convex/values";
import { internalMutation, internalQuery } from "./_generated/server";
import { syncRunDoc, syncRunUpdateFields } from "./schema";

export const record = internalMutation({
  args: v.object({ runId: v.string() }).extend(v.object(syncRunUpdateFields).partial().fields),
  returns: syncRunDoc,
  handler: async (ctx, { runId, ...fields }) => {
    const now = Date.now();
    const existing = await ctx.db
      .query("syncRuns")
      .withIndex("by_runId", (q) => q.eq("runId", runId))
      .unique();
    if (existing === null) {
      const id = await ctx.db.insert("syncRuns", {
        status: "pending",
        mode: "incremental",
        startedAt: now,
        ...fields,
        runId,
        updatedAt: fields.updatedAt ?? now,
      });
      return (await ctx.db.get("syncRuns", id))!;
    }
    await ctx.db.patch("syncRuns", existing._id, { ...fields, updatedAt: fields.updatedAt ?? now });
    return (await ctx.db.get("syncRuns", existing._id))!;
  },
});

export const get = internalQuery({
  args: { runId: v.string() },
  returns: v.union(syncRunDoc, v.null()),
  handler: async (ctx, { runId }) =>
    await ctx.db
      .query("syncRuns")
      .withIndex("by_runId", (q) => q.eq("runId", runId))
      .unique(),
});

/** Newest runs first. */
export const list = internalQuery({
  args: { paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(syncRunDoc),
  handler: async (ctx, { paginationOpts }) =>
    await ctx.db.query("syncRuns").order("desc").paginate(paginationOpts),
});
