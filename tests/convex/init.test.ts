import { Crons } from "@convex-dev/crons";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import * as init from "../../convex/init";
import { components, internal } from "../../convex/_generated/api";
import { parseSchedule } from "../../convex/schedule";
import cronsSchema from "../../node_modules/@convex-dev/crons/dist/component/schema.js";
import { newBackend as newBackendWithoutCrons } from "./mirrorDocuments";

const cronsModules = import.meta.glob("../../node_modules/@convex-dev/crons/dist/component/**/*.js");
const crons = new Crons(components.crons);
const HOURLY = { kind: "cron", cronspec: "0 * * * *" } as const;
const ENV_NAMES = ["XATA2CONVEX_SCHEDULE", "XATA2CONVEX_TRIGGER_URL", "XATA2CONVEX_TRIGGER_SECRET"];

function newBackend() {
  const t = newBackendWithoutCrons();
  t.registerComponent("crons", cronsSchema, cronsModules);
  return t;
}

/** Every cron the component holds, not only the sync cron. */
async function allCrons(t: ReturnType<typeof newBackend>) {
  return await t.run(async (ctx) => await crons.list(ctx));
}

let savedEnv: Record<string, string | undefined>;
beforeEach(() => {
  savedEnv = Object.fromEntries(ENV_NAMES.map((name) => [name, process.env[name]]));
  for (const name of ENV_NAMES) delete process.env[name];
  // Registered crons schedule timers; fake ones never fire on their own and never outlive a test.
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  for (const [name, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

describe("parseSchedule", () => {
  test.each([
    ["0 * * * *", HOURLY],
    ["  */15   * * * * ", { kind: "cron", cronspec: "*/15 * * * *" }],
    ["30 0 3 * * MON-FRI", { kind: "cron", cronspec: "30 0 3 * * MON-FRI" }],
    ["30s", { kind: "interval", ms: 30_000 }],
    ["15m", { kind: "interval", ms: 900_000 }],
    ["1H", { kind: "interval", ms: 3_600_000 }],
    ["2d", { kind: "interval", ms: 172_800_000 }],
    ["every 15 minutes", { kind: "interval", ms: 900_000 }],
    ["Every hour", { kind: "interval", ms: 3_600_000 }],
    ["every 1 day", { kind: "interval", ms: 86_400_000 }],
  ])("%j", (text, expected) => {
    expect(parseSchedule(text)).toEqual(expected);
  });

  test.each(["", "hourly", "0s", "every 0 minutes", "15 minutes", "* * * *", "0 * * * * * *", "0 * * * ;"])(
    "rejects %j",
    (text) => {
      expect(() => parseSchedule(text)).toThrow(/neither a cronspec|at least 1 second/);
    },
  );
});

describe("init", () => {
  test("every function is internal", () => {
    const functions = Object.entries(init as Record<string, unknown>).filter(
      ([, f]) => typeof f === "function",
    ) as [string, { isInternal?: boolean; isPublic?: boolean }][];
    expect(functions.map(([name]) => name).sort()).toEqual(
      ["default", "pause", "resume", "setSchedule", "status"].sort(),
    );
    for (const [, f] of functions) {
      expect(f.isInternal).toBe(true);
      expect(f.isPublic).toBeUndefined();
    }
  });

  test("twice registers exactly one cron, hourly by default, calling trigger for cron runs", async () => {
    const t = newBackend();
    const first = await t.mutation(internal.init.default, {});
    expect(first).toMatchObject({ name: "xata2convex-sync", schedule: "0 * * * *", paused: false });
    expect(first.change).toBe("registered");
    expect(first.cron).toMatchObject({ schedule: HOURLY, args: { mode: "incremental", trigger: "cron" } });

    const second = await t.mutation(internal.init.default, {});
    expect(second.change).toBe("unchanged");
    expect(second.cron?.id).toBe(first.cron?.id);

    const registered = await allCrons(t);
    expect(registered).toHaveLength(1);
    expect(registered[0]).toMatchObject({ name: "xata2convex-sync", schedule: HOURLY });
    expect(registered[0]!.functionHandle).toMatch(/trigger:trigger/);
    expect(await t.query(internal.init.status, {})).toEqual({ ...second, change: undefined });
  });

  test("a changed XATA2CONVEX_SCHEDULE replaces the cron on the next init", async () => {
    const t = newBackend();
    process.env.XATA2CONVEX_SCHEDULE = "15m";
    const first = await t.mutation(internal.init.default, {});
    expect(first.cron?.schedule).toEqual({ kind: "interval", ms: 900_000 });

    process.env.XATA2CONVEX_SCHEDULE = "every 2 hours";
    const changed = await t.mutation(internal.init.default, {});
    expect(changed.change).toBe("replaced");
    expect(changed.schedule).toBe("every 2 hours");
    expect(changed.cron?.schedule).toEqual({ kind: "interval", ms: 7_200_000 });
    expect(await allCrons(t)).toHaveLength(1);

    // Removing the variable goes back to the default.
    delete process.env.XATA2CONVEX_SCHEDULE;
    expect((await t.mutation(internal.init.default, {})).cron?.schedule).toEqual(HOURLY);
    expect(await allCrons(t)).toHaveLength(1);
  });

  test("setSchedule takes effect at once and survives init until the variable changes", async () => {
    const t = newBackend();
    process.env.XATA2CONVEX_SCHEDULE = "1h";
    await t.mutation(internal.init.default, {});

    const set = await t.mutation(internal.init.setSchedule, { schedule: " */15 * * * * " });
    expect(set.change).toBe("replaced");
    expect(set.schedule).toBe("*/15 * * * *");
    expect(set.cron?.schedule).toEqual({ kind: "cron", cronspec: "*/15 * * * *" });
    expect(await allCrons(t)).toHaveLength(1);

    // A redeploy runs init with the same variable: the runtime change stays.
    const again = await t.mutation(internal.init.default, {});
    expect(again.change).toBe("unchanged");
    expect(again.cron?.schedule).toEqual({ kind: "cron", cronspec: "*/15 * * * *" });

    process.env.XATA2CONVEX_SCHEDULE = "30m";
    const fromEnv = await t.mutation(internal.init.default, {});
    expect(fromEnv.cron?.schedule).toEqual({ kind: "interval", ms: 1_800_000 });
    expect(await allCrons(t)).toHaveLength(1);
  });

  test("setSchedule before any init registers the cron", async () => {
    const t = newBackend();
    const set = await t.mutation(internal.init.setSchedule, { schedule: "5m" });
    expect(set.change).toBe("registered");
    expect((await allCrons(t)).map((cron) => cron.schedule)).toEqual([{ kind: "interval", ms: 300_000 }]);
  });

  test("an invalid schedule is refused and changes nothing", async () => {
    const t = newBackend();
    await t.mutation(internal.init.default, {});
    await expect(t.mutation(internal.init.setSchedule, { schedule: "every blue moon" })).rejects.toThrow(
      /every blue moon/,
    );
    // Passes our grammar, fails the crons component's cron parser: the whole mutation rolls back.
    await expect(t.mutation(internal.init.setSchedule, { schedule: "99 * * * *" })).rejects.toThrow(
      /Invalid cronspec/,
    );
    process.env.XATA2CONVEX_SCHEDULE = "sometimes";
    await expect(t.mutation(internal.init.default, {})).rejects.toThrow(/XATA2CONVEX_SCHEDULE.*sometimes/);
    const status = await t.query(internal.init.status, {});
    expect(status.schedule).toBe("0 * * * *");
    expect((await allCrons(t)).map((cron) => cron.schedule)).toEqual([HOURLY]);
  });

  test("pause removes the cron, init keeps it paused, resume restores the current schedule", async () => {
    const t = newBackend();
    await t.mutation(internal.init.setSchedule, { schedule: "10m" });

    const paused = await t.mutation(internal.init.pause, {});
    expect(paused).toMatchObject({ paused: true, cron: null, change: "removed", schedule: "10m" });
    expect(await allCrons(t)).toEqual([]);
    expect((await t.mutation(internal.init.pause, {})).change).toBe("unchanged");
    expect((await t.mutation(internal.init.default, {})).cron).toBeNull();

    // A schedule set while paused is kept for resume.
    expect((await t.mutation(internal.init.setSchedule, { schedule: "20m" })).cron).toBeNull();
    expect(await allCrons(t)).toEqual([]);

    const resumed = await t.mutation(internal.init.resume, {});
    expect(resumed).toMatchObject({ paused: false, change: "registered", schedule: "20m" });
    expect((await allCrons(t)).map((cron) => cron.schedule)).toEqual([{ kind: "interval", ms: 1_200_000 }]);
    expect((await t.mutation(internal.init.resume, {})).change).toBe("unchanged");
  });

  test("status before init shows the default and no cron; only init reads the variable", async () => {
    const t = newBackend();
    process.env.XATA2CONVEX_SCHEDULE = "45m";
    expect(await t.query(internal.init.status, {})).toEqual({
      name: "xata2convex-sync",
      schedule: "0 * * * *",
      paused: false,
      cron: null,
    });
  });

  test("an invalid XATA2CONVEX_SCHEDULE fails only init: status, pause, setSchedule and resume work", async () => {
    const t = newBackend();
    process.env.XATA2CONVEX_SCHEDULE = "10m";
    await t.mutation(internal.init.default, {});
    process.env.XATA2CONVEX_SCHEDULE = "whenever";
    await expect(t.mutation(internal.init.default, {})).rejects.toThrow(/XATA2CONVEX_SCHEDULE.*whenever/);

    expect(await t.query(internal.init.status, {})).toMatchObject({ schedule: "10m", paused: false });
    expect(await t.mutation(internal.init.pause, {})).toMatchObject({ paused: true, change: "removed" });
    expect(await allCrons(t)).toEqual([]);
    const set = await t.mutation(internal.init.setSchedule, { schedule: "20m" });
    expect(set).toMatchObject({ schedule: "20m", paused: true, cron: null });
    const resumed = await t.mutation(internal.init.resume, {});
    expect(resumed).toMatchObject({ schedule: "20m", paused: false, change: "registered" });
    expect((await allCrons(t)).map((cron) => cron.schedule)).toEqual([{ kind: "interval", ms: 1_200_000 }]);

    // setSchedule counted the bad value as read, so fixing the variable is what the next init applies.
    process.env.XATA2CONVEX_SCHEDULE = "30m";
    expect((await t.mutation(internal.init.default, {})).schedule).toBe("30m");
  });

  test("with an invalid variable before any init, pause and status still work from the default", async () => {
    const t = newBackend();
    process.env.XATA2CONVEX_SCHEDULE = "whenever";
    expect(await t.query(internal.init.status, {})).toMatchObject({ schedule: "0 * * * *", cron: null });
    expect(await t.mutation(internal.init.pause, {})).toMatchObject({
      schedule: "0 * * * *",
      paused: true,
      change: "unchanged",
    });
    expect(await t.mutation(internal.init.resume, {})).toMatchObject({ paused: false, change: "registered" });
    expect((await allCrons(t)).map((cron) => cron.schedule)).toEqual([HOURLY]);
  });

  test("pause and resume before init leave the variable for init to apply", async () => {
    const t = newBackend();
    process.env.XATA2CONVEX_SCHEDULE = "15m";
    await t.mutation(internal.init.pause, {});
    await t.mutation(internal.init.resume, {});
    const applied = await t.mutation(internal.init.default, {});
    expect(applied).toMatchObject({ schedule: "15m", change: "replaced" });
    expect((await allCrons(t)).map((cron) => cron.schedule)).toEqual([{ kind: "interval", ms: 900_000 }]);
  });

  test("when due, the cron runs trigger, which records a cron run", async () => {
    const t = newBackend();
    process.env.XATA2CONVEX_SCHEDULE = "30s";
    await t.mutation(internal.init.default, {});
    // The rescheduler is due after 30 s; it schedules trigger at once (one more timer tick).
    vi.advanceTimersByTime(30_000);
    await t.finishInProgressScheduledFunctions();
    vi.advanceTimersByTime(1);
    await t.finishInProgressScheduledFunctions();

    const runs = await t.run(async (ctx) => await ctx.db.query("syncRuns").collect());
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ trigger: "cron", mode: "incremental", status: "failed" });
    expect(runs[0]!.error).toMatch(/XATA2CONVEX_TRIGGER_URL is not set/);
  });
});
