import { ConvexError } from "convex/values";
import { describe, expect, test } from "vitest";
import { internal } from "../../convex/_generated/api";
import { newBackend } from "./mirrorDocuments";

describe("syncRuns", () => {
  test("record creates the run with defaults, then updates only the fields it is given", async () => {
    const t = newBackend();
    const created = await t.mutation(internal.syncRuns.record, {
      runId: "run-1",
      trigger: "cron",
      startedAt: 1000,
    });
    expect(created).toMatchObject({
      runId: "run-1",
      status: "pending",
      mode: "incremental",
      startedAt: 1000,
    });
    expect(created.updatedAt).toEqual(expect.any(Number));

    const tables = [
      {
        table: "event-subject-matter-experts",
        added: 3,
        changed: 1,
        deleted: 2,
        unchanged: 10,
        status: "applied",
      },
      { table: "名前", added: 0, changed: 0, deleted: 0, unchanged: 0, status: "blocked", message: "guard" },
    ];
    const finished = await t.mutation(internal.syncRuns.record, {
      runId: "run-1",
      status: "partial",
      snapshotId: "20261129T120000Z-3f9c",
      finishedAt: 5000,
      updatedAt: 5000,
      tables,
      batches: 4,
    });
    expect(finished).toMatchObject({
      _id: created._id,
      runId: "run-1",
      status: "partial",
      mode: "incremental",
      trigger: "cron",
      startedAt: 1000,
      finishedAt: 5000,
      updatedAt: 5000,
      tables,
      batches: 4,
    });
    expect(await t.query(internal.syncRuns.get, { runId: "run-1" })).toEqual(finished);
    expect(await t.query(internal.syncRuns.get, { runId: "run-2" })).toBeNull();
    const all = await t.run(async (ctx) => await ctx.db.query("syncRuns").collect());
    expect(all).toHaveLength(1);
  });

  test("rejects an unknown status or mode and a run without an id", async () => {
    const t = newBackend();
    await expect(
      t.mutation(internal.syncRuns.record, { runId: "r", status: "done" } as never),
    ).rejects.toThrow(/status|done/);
    await expect(
      t.mutation(internal.syncRuns.record, { runId: "r", mode: "sometimes" } as never),
    ).rejects.toThrow(/sometimes|mode/);
    await expect(t.mutation(internal.syncRuns.record, { status: "running" } as never)).rejects.toThrow(
      /runId/,
    );
    expect(await t.run(async (ctx) => await ctx.db.query("syncRuns").collect())).toEqual([]);
  });

  test("create inserts a pending run once; the same run id again is refused and changes nothing", async () => {
    const t = newBackend();
    const created = await t.mutation(internal.syncRuns.create, {
      runId: "run-1",
      mode: "full",
      trigger: "manual",
      startedAt: 1000,
    });
    expect(created).toMatchObject({ runId: "run-1", status: "pending", mode: "full", trigger: "manual" });
    const again = t.mutation(internal.syncRuns.create, { runId: "run-1", mode: "incremental", startedAt: 2 });
    await expect(again).rejects.toThrow(ConvexError);
    await expect(again).rejects.toThrow(/run-1.*already recorded/);
    expect(await t.run(async (ctx) => await ctx.db.query("syncRuns").collect())).toEqual([created]);
  });

  test("a run moving to running drops the error and end time a timed-out trigger left", async () => {
    const t = newBackend();
    await t.mutation(internal.syncRuns.create, { runId: "late", mode: "incremental", startedAt: 1000 });
    await t.mutation(internal.syncRuns.failPending, {
      runId: "late",
      status: "failed",
      error: "the Function URL did not answer within 30 s",
      finishedAt: 31_000,
    });
    const running = await t.mutation(internal.syncRuns.record, { runId: "late", status: "running" });
    expect(running).toMatchObject({ status: "running", startedAt: 1000 });
    expect(running).not.toHaveProperty("error");
    expect(running).not.toHaveProperty("finishedAt");
    expect(running).not.toHaveProperty("endedByTrigger");
    const done = await t.mutation(internal.syncRuns.record, {
      runId: "late",
      status: "succeeded",
      finishedAt: 90_000,
    });
    expect(done).toMatchObject({ status: "succeeded", finishedAt: 90_000 });
    expect(done).not.toHaveProperty("error");

    // Other updates keep what they are not given.
    await t.mutation(internal.syncRuns.record, { runId: "other", status: "failed", error: "boom" });
    expect(await t.mutation(internal.syncRuns.record, { runId: "other", batches: 2 })).toMatchObject({
      status: "failed",
      error: "boom",
    });
  });

  test.each(["succeeded", "partial", "failed", "rejected"] as const)(
    "a late or replayed running report never reopens a %s run",
    async (status) => {
      const t = newBackend();
      await t.mutation(internal.syncRuns.record, { runId: "ended", status: "running", startedAt: 1000 });
      const ended = await t.mutation(internal.syncRuns.record, {
        runId: "ended",
        status,
        ...(status === "failed" ? { error: "boom" } : {}),
        finishedAt: 9000,
      });
      for (const replayed of ["running", "pending"] as const) {
        expect(await t.mutation(internal.syncRuns.record, { runId: "ended", status: replayed })).toEqual(
          ended,
        );
      }
      expect(await t.query(internal.syncRuns.get, { runId: "ended" })).toEqual(ended);
      // Another final report still lands (e.g. a takeover marking the run failed).
      expect(
        await t.mutation(internal.syncRuns.record, { runId: "ended", status: "failed", error: "taken over" }),
      ).toMatchObject({ status: "failed", error: "taken over" });
    },
  );

  test("a trigger's failure never overwrites a run the worker already reports on", async () => {
    const t = newBackend();
    await t.mutation(internal.syncRuns.create, { runId: "raced", mode: "incremental", startedAt: 1000 });
    await t.mutation(internal.syncRuns.record, { runId: "raced", status: "running" });
    const late = { runId: "raced", status: "failed" as const, error: "timed out", finishedAt: 31_000 };
    expect(await t.mutation(internal.syncRuns.failPending, late)).toBeNull();
    expect(await t.query(internal.syncRuns.get, { runId: "raced" })).toMatchObject({ status: "running" });
    await t.mutation(internal.syncRuns.create, { runId: "lost", mode: "full", startedAt: 1000 });
    expect(await t.mutation(internal.syncRuns.failPending, { ...late, runId: "lost" })).toMatchObject({
      status: "failed",
      error: "timed out",
    });
  });

  test("list pages through runs, newest first", async () => {
    const t = newBackend();
    for (const runId of ["a", "b", "c"]) await t.mutation(internal.syncRuns.record, { runId });
    const first = await t.query(internal.syncRuns.list, { paginationOpts: { numItems: 2, cursor: null } });
    expect(first.page.map((run) => run.runId)).toEqual(["c", "b"]);
    expect(first.isDone).toBe(false);
    const second = await t.query(internal.syncRuns.list, {
      paginationOpts: { numItems: 2, cursor: first.continueCursor },
    });
    expect(second.page.map((run) => run.runId)).toEqual(["a"]);
    expect(second.isDone).toBe(true);
  });
});
