/**
 * The sync cron, registered at runtime with @convex-dev/crons so its schedule can change without a
 * redeploy. `npx convex run init` (or `npx convex dev --run init`) is safe on every deploy.
 *
 * The schedule is the last one deliberately set: XATA2CONVEX_SCHEDULE when that variable changed
 * since it was last read (so editing it and running `init` takes effect), otherwise the one stored
 * by `init:setSchedule`, otherwise hourly. Pausing survives `init`; only `init:resume` undoes it.
 * Only `init` reads and checks the variable: `pause`, `resume`, `setSchedule` and `status` work from
 * the stored settings (or the default), so an invalid variable never blocks pausing.
 */
import { Crons } from "@convex-dev/crons";
import { createFunctionHandle } from "convex/server";
import { type Infer, v } from "convex/values";
import { components, internal } from "./_generated/api";
import type { Doc } from "./_generated/dataModel";
import { type MutationCtx, type QueryCtx, internalMutation, internalQuery } from "./_generated/server";
import { DEFAULT_SCHEDULE, parseSchedule, sameSchedule } from "./schedule";

export const SYNC_CRON_NAME = "xata2convex-sync";
const SCHEDULE_VARIABLE = "XATA2CONVEX_SCHEDULE";
const CRON_ARGS = { mode: "incremental", trigger: "cron" } as const;

const crons = new Crons(components.crons);

const cronSchedule = v.union(
  v.object({ kind: v.literal("cron"), cronspec: v.string(), tz: v.optional(v.string()) }),
  v.object({ kind: v.literal("interval"), ms: v.number() }),
);

export const scheduleStatus = v.object({
  name: v.string(),
  /** The schedule as written; registered unless paused. */
  schedule: v.string(),
  paused: v.boolean(),
  /** The cron as the crons component holds it; null when paused or not yet registered. */
  cron: v.union(
    v.null(),
    v.object({ id: v.string(), schedule: cronSchedule, args: v.record(v.string(), v.any()) }),
  ),
  /** What this call did to the registered cron. */
  change: v.optional(
    v.union(v.literal("registered"), v.literal("replaced"), v.literal("removed"), v.literal("unchanged")),
  ),
});
type ScheduleStatus = Infer<typeof scheduleStatus>;
type Change = NonNullable<ScheduleStatus["change"]>;

/** XATA2CONVEX_SCHEDULE as written, unchecked. */
function envValue(): string | undefined {
  return process.env[SCHEDULE_VARIABLE]?.trim() || undefined;
}

/** XATA2CONVEX_SCHEDULE, checked. Only `init` calls this, so a bad value cannot block pausing. */
function scheduleFromEnv(): string | undefined {
  const value = envValue();
  if (value === undefined) return undefined;
  try {
    parseSchedule(value);
  } catch (error) {
    throw new Error(`${SCHEDULE_VARIABLE}: ${(error as Error).message}`);
  }
  return value;
}

async function loadSettings(ctx: QueryCtx): Promise<Doc<"syncSchedule"> | null> {
  return await ctx.db.query("syncSchedule").first();
}

/** Change the stored settings, creating them (default schedule, not paused) on first use. */
async function update(
  ctx: MutationCtx,
  fields: Partial<Pick<Doc<"syncSchedule">, "schedule" | "envSchedule" | "paused">>,
): Promise<Doc<"syncSchedule">> {
  const stored = await loadSettings(ctx);
  const updatedAt = Date.now();
  if (stored === null) {
    const id = await ctx.db.insert("syncSchedule", {
      schedule: DEFAULT_SCHEDULE,
      paused: false,
      ...fields,
      updatedAt,
    });
    return (await ctx.db.get("syncSchedule", id))!;
  }
  await ctx.db.patch("syncSchedule", stored._id, { ...fields, updatedAt });
  return (await ctx.db.get("syncSchedule", stored._id))!;
}

/** `init`'s settings: the stored ones, following XATA2CONVEX_SCHEDULE when it changed since last read. */
async function settingsForInit(ctx: MutationCtx): Promise<Doc<"syncSchedule">> {
  const fromEnv = scheduleFromEnv();
  const stored = await loadSettings(ctx);
  if (stored !== null && stored.envSchedule === fromEnv) return stored;
  return await update(ctx, { schedule: fromEnv ?? DEFAULT_SCHEDULE, envSchedule: fromEnv });
}

/** Make the registered cron match the settings: absent when paused, else exactly one with their schedule. */
async function applySettings(ctx: MutationCtx, settings: Doc<"syncSchedule">): Promise<Change> {
  const existing = await crons.get(ctx, { name: SYNC_CRON_NAME });
  if (settings.paused) {
    if (existing === null) return "unchanged";
    await crons.delete(ctx, { name: SYNC_CRON_NAME });
    return "removed";
  }
  const wanted = parseSchedule(settings.schedule);
  const handle = await createFunctionHandle(internal.trigger.trigger);
  if (
    existing !== null &&
    sameSchedule(existing.schedule, wanted) &&
    existing.functionHandle === handle &&
    existing.args.mode === CRON_ARGS.mode &&
    existing.args.trigger === CRON_ARGS.trigger
  ) {
    return "unchanged";
  }
  if (existing !== null) await crons.delete(ctx, { name: SYNC_CRON_NAME });
  await crons.register(ctx, wanted, internal.trigger.trigger, CRON_ARGS, SYNC_CRON_NAME);
  return existing === null ? "registered" : "replaced";
}

async function statusOf(ctx: QueryCtx, settings: Doc<"syncSchedule"> | null): Promise<ScheduleStatus> {
  const cron = await crons.get(ctx, { name: SYNC_CRON_NAME });
  return {
    name: SYNC_CRON_NAME,
    schedule: settings?.schedule ?? DEFAULT_SCHEDULE,
    paused: settings?.paused ?? false,
    cron: cron === null ? null : { id: cron.id, schedule: cron.schedule, args: cron.args },
  };
}

async function applyAndDescribe(ctx: MutationCtx, settings: Doc<"syncSchedule">): Promise<ScheduleStatus> {
  const change = await applySettings(ctx, settings);
  return { ...(await statusOf(ctx, settings)), change };
}

/** Register (or update) the sync cron; idempotent. */
export default internalMutation({
  args: {},
  returns: scheduleStatus,
  handler: async (ctx): Promise<ScheduleStatus> => await applyAndDescribe(ctx, await settingsForInit(ctx)),
});

/** Change the schedule now (a cronspec or an interval, see convex/schedule.ts); kept while paused. */
export const setSchedule = internalMutation({
  args: { schedule: v.string() },
  returns: scheduleStatus,
  handler: async (ctx, { schedule }): Promise<ScheduleStatus> => {
    parseSchedule(schedule);
    // The variable's current value counts as read, so the next `init` keeps this schedule until the
    // variable changes (it is not checked here: a bad value must not block this way out).
    return await applyAndDescribe(
      ctx,
      await update(ctx, { schedule: schedule.trim(), envSchedule: envValue() }),
    );
  },
});

/** Remove the sync cron until `resume`; a run in progress is not stopped. */
export const pause = internalMutation({
  args: {},
  returns: scheduleStatus,
  handler: async (ctx): Promise<ScheduleStatus> =>
    await applyAndDescribe(ctx, await update(ctx, { paused: true })),
});

/** Register the sync cron again with the current schedule. */
export const resume = internalMutation({
  args: {},
  returns: scheduleStatus,
  handler: async (ctx): Promise<ScheduleStatus> =>
    await applyAndDescribe(ctx, await update(ctx, { paused: false })),
});

export const status = internalQuery({
  args: {},
  returns: scheduleStatus,
  handler: async (ctx): Promise<ScheduleStatus> => await statusOf(ctx, await loadSettings(ctx)),
});
