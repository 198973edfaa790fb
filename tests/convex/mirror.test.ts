import type { GenericDataModel, GenericDatabaseWriter, PaginationResult } from "convex/server";
import type { Value } from "convex/values";
import { describe, expect, test } from "vitest";
import * as mirror from "../../convex/mirror";
import * as syncRuns from "../../convex/syncRuns";
import { internal } from "../../convex/_generated/api";
import {
  type MirrorTable,
  linkFields,
  mirrorTables,
  newBackend,
  optionalField,
  sampleDocument,
  stripSystem,
  tableWithStringField,
} from "./mirrorDocuments";

const table: MirrorTable = mirrorTables[0]!;
const page = (numItems: number, cursor: string | null = null) => ({ numItems, cursor });

async function listAll(t: ReturnType<typeof newBackend>, name: string) {
  const result = await t.query(internal.mirror.listPage, { table: name, paginationOpts: page(1000) });
  return stripSystem(result.page);
}

/** Inserts bypassing the mirror, as another loader would: `xata_id` duplicates are kept. */
async function insertDirectly(
  t: ReturnType<typeof newBackend>,
  name: string,
  docs: Record<string, Value>[],
) {
  await t.run(async (ctx) => {
    const db = ctx.db as unknown as GenericDatabaseWriter<GenericDataModel>;
    for (const doc of docs) await db.insert(name, doc);
  });
}

describe("visibility", () => {
  test("every mirror and syncRuns function is internal", () => {
    const exported = { ...mirror, ...syncRuns } as Record<
      string,
      { isInternal?: boolean; isPublic?: boolean }
    >;
    const functions = Object.entries(exported).filter(
      ([, f]) => typeof f === "function" || "isRegistered" in f,
    );
    expect(functions.map(([name]) => name).sort()).toEqual(
      [
        "create",
        "deleteBatch",
        "failPending",
        "get",
        "list",
        "listPage",
        "record",
        "resolveLinks",
        "schemaInfo",
        "upsertBatch",
      ].sort(),
    );
    for (const [, f] of functions) {
      expect(f.isInternal).toBe(true);
      expect(f.isPublic).toBeUndefined();
    }
  });
});

describe("upsertBatch", () => {
  test("inserts, then is idempotent, then updates only what changed", async () => {
    const t = newBackend();
    for (const name of mirrorTables) {
      const docs = [sampleDocument(name, "rec_1", 1), sampleDocument(name, "rec_2", 2)];
      // sample links point at "link-<n>", which is never mirrored
      const unresolved = linkFields(name).length > 0 ? 2 : 0;
      expect(await t.mutation(internal.mirror.upsertBatch, { table: name, documents: docs })).toEqual({
        processed: 2,
        inserted: 2,
        updated: 0,
        unchanged: 0,
        duplicatesRemoved: 0,
        unresolved,
      });
      expect(await t.mutation(internal.mirror.upsertBatch, { table: name, documents: docs })).toEqual({
        processed: 2,
        inserted: 0,
        updated: 0,
        unchanged: 2,
        duplicatesRemoved: 0,
        unresolved,
      });
      const changed = { ...docs[1]!, xata_version: 99 };
      expect(
        await t.mutation(internal.mirror.upsertBatch, { table: name, documents: [docs[0]!, changed] }),
      ).toEqual({
        processed: 2,
        inserted: 0,
        updated: 1,
        unchanged: 1,
        duplicatesRemoved: 0,
        unresolved,
      });
      expect(await listAll(t, name)).toEqual([docs[0], changed]);
    }
  });

  test("field order does not make a document different", async () => {
    const t = newBackend();
    const doc = sampleDocument(table, "rec_1");
    const reversed = Object.fromEntries(Object.entries(doc).reverse());
    await t.mutation(internal.mirror.upsertBatch, { table, documents: [doc] });
    const result = await t.mutation(internal.mirror.upsertBatch, { table, documents: [reversed] });
    expect(result.unchanged).toBe(1);
  });

  test("a field that became null in Xata leaves the document", async () => {
    const name = mirrorTables.find((candidate) => optionalField(candidate) !== undefined);
    expect(name, "some mirrored table has an optional column").toBeDefined();
    const field = optionalField(name!)!;
    const t = newBackend();
    const doc = sampleDocument(name!, "rec_1");
    await t.mutation(internal.mirror.upsertBatch, { table: name!, documents: [doc] });
    const { [field]: _removed, ...withoutField } = doc;
    const result = await t.mutation(internal.mirror.upsertBatch, { table: name!, documents: [withoutField] });
    expect(result.updated).toBe(1);
    const [stored] = await listAll(t, name!);
    expect(stored).not.toHaveProperty(field);
    expect(stored).toEqual(withoutField);
  });

  test("rejects a table that is not mirrored, naming it", async () => {
    const t = newBackend();
    for (const bad of ["no_such_table", "syncRuns", "__proto__", "toString"]) {
      await expect(
        t.mutation(internal.mirror.upsertBatch, { table: bad, documents: [{ xata_id: "x" }] }),
      ).rejects.toThrow(`Table '${bad}' is not a mirrored Xata table`);
    }
    await expect(
      t.mutation(internal.mirror.deleteBatch, { table: "syncRuns", xataIds: ["x"] }),
    ).rejects.toThrow("'syncRuns' is not a mirrored Xata table");
    await expect(
      t.query(internal.mirror.listPage, { table: "no_such_table", paginationOpts: page(10) }),
    ).rejects.toThrow("'no_such_table' is not a mirrored Xata table");
  });

  test("rejects bad arguments", async () => {
    const t = newBackend();
    const call = (args: unknown) => t.mutation(internal.mirror.upsertBatch, args as never);
    await expect(call({ table, documents: "not an array" })).rejects.toThrow(/Validator error|Expected/);
    await expect(call({ documents: [] })).rejects.toThrow(/table/);
    await expect(call({ table: 7, documents: [] })).rejects.toThrow(/Expected `string`/);
    await expect(call({ table, documents: [], extra: true })).rejects.toThrow(/extra/);
    await expect(call({ table, documents: [{ title: "no id" }] })).rejects.toThrow(
      `Table '${table}': document 0 of the batch has no string 'xata_id'`,
    );
    await expect(call({ table, documents: [{ xata_id: 12 }] })).rejects.toThrow("no string 'xata_id'");
    await expect(call({ table, documents: [{ ...sampleDocument(table, "a"), _id: "x" }] })).rejects.toThrow(
      "sets the system field '_id'",
    );
  });

  test("schema validation rejects a wrongly typed field and the whole batch is rolled back", async () => {
    const t = newBackend();
    const good = sampleDocument(table, "rec_good");
    const bad = { ...sampleDocument(table, "rec_bad"), xata_createdAt: "yesterday" };
    await expect(t.mutation(internal.mirror.upsertBatch, { table, documents: [good, bad] })).rejects.toThrow(
      `Table '${table}', record 'rec_bad'`,
    );
    expect(await listAll(t, table)).toEqual([]);
  });

  test("schema validation rejects a field the schema does not have", async () => {
    const t = newBackend();
    const doc = { ...sampleDocument(table, "rec_1"), not_a_column: "x" };
    await expect(t.mutation(internal.mirror.upsertBatch, { table, documents: [doc] })).rejects.toThrow(
      /not_a_column/,
    );
  });

  test("a batch over Convex's transaction limits fails as a whole", async () => {
    const t = newBackend({ documentsWritten: 5 });
    const docs = Array.from({ length: 6 }, (_, i) => sampleDocument(table, `rec_${i}`, i));
    await expect(t.mutation(internal.mirror.upsertBatch, { table, documents: docs })).rejects.toThrow(
      /Wrote too many documents.*limit: 5/,
    );
    expect(await listAll(t, table)).toEqual([]);
    const fits = await t.mutation(internal.mirror.upsertBatch, { table, documents: docs.slice(0, 5) });
    expect(fits.inserted).toBe(5);
  });
});

describe("deleteBatch", () => {
  test("deletes by xata_id and counts ids it did not find", async () => {
    const t = newBackend();
    const docs = [1, 2, 3].map((n) => sampleDocument(table, `rec_${n}`, n));
    await t.mutation(internal.mirror.upsertBatch, { table, documents: docs });
    const result = await t.mutation(internal.mirror.deleteBatch, {
      table,
      xataIds: ["rec_1", "rec_3", "rec_9"],
    });
    expect(result).toEqual({ processed: 3, deleted: 2, missing: 1, duplicatesRemoved: 0, unlinked: 0 });
    expect(await listAll(t, table)).toEqual([docs[1]]);
    expect(await t.mutation(internal.mirror.deleteBatch, { table, xataIds: ["rec_1"] })).toEqual({
      processed: 1,
      deleted: 0,
      missing: 1,
      duplicatesRemoved: 0,
      unlinked: 0,
    });
  });

  test("rejects ids that are not strings", async () => {
    const t = newBackend();
    await expect(t.mutation(internal.mirror.deleteBatch, { table, xataIds: [1] } as never)).rejects.toThrow(
      /Expected `string`/,
    );
  });
});

describe("listPage", () => {
  test("pages through every document once, with Convex's pagination result", async () => {
    const t = newBackend();
    const docs = Array.from({ length: 25 }, (_, i) => sampleDocument(table, `rec_${i}`, i));
    await t.mutation(internal.mirror.upsertBatch, { table, documents: docs });
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    for (;;) {
      const result: PaginationResult<Record<string, Value>> = await t.query(internal.mirror.listPage, {
        table,
        paginationOpts: page(10, cursor),
      });
      expect(typeof result.continueCursor).toBe("string");
      sizes.push(result.page.length);
      seen.push(...result.page.map((doc) => doc.xata_id as string));
      expect(
        result.page.every((doc) => typeof doc._id === "string" && typeof doc._creationTime === "number"),
      ).toBe(true);
      if (result.isDone) break;
      cursor = result.continueCursor;
    }
    expect(sizes).toEqual([10, 10, 5]);
    expect(seen.sort()).toEqual(docs.map((doc) => doc.xata_id as string).sort());
  });
});

describe("schemaInfo", () => {
  test("reports the schema hash and the table map", async () => {
    const t = newBackend();
    const info = await t.query(internal.mirror.schemaInfo, {});
    expect(info.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(info.tables).sort()).toEqual([...mirrorTables].sort());
    for (const name of mirrorTables) expect(info.tables[name]!.xata).toEqual(expect.any(String));
  });
});

// Each test moves tens of MB through convex-test: slow on a loaded machine.
describe("Convex's 16 MiB read limit", { timeout: 60_000 }, () => {
  const { table: bigTable, field } = tableWithStringField();
  const ids = Array.from({ length: 120 }, (_, i) => `rec_${String(i).padStart(4, "0")}`);
  // 120 documents of ~300 KB: 36 MB, over twice the limit.
  const big = (xataId: string, n: number) => ({
    ...sampleDocument(bigTable, xataId, n),
    [field]: String.fromCharCode(97 + (n % 26)).repeat(300_000),
  });
  const small = (xataId: string, n: number) => sampleDocument(bigTable, xataId, n);

  async function loadBig(t: ReturnType<typeof newBackend>) {
    for (let i = 0; i < ids.length; i += 10) {
      const documents = ids.slice(i, i + 10).map((id, j) => big(id, i + j));
      await t.mutation(internal.mirror.upsertBatch, { table: bigTable, documents });
    }
  }

  /** Sends what each call left unprocessed again, as the sync does; returns every call's result. */
  async function untilProcessed<Item, Result extends { processed: number }>(
    items: Item[],
    call: (batch: Item[]) => Promise<Result>,
  ): Promise<Result[]> {
    const results: Result[] = [];
    for (let rest = items; rest.length > 0; ) {
      const result = await call(rest);
      expect(result.processed).toBeGreaterThan(0);
      results.push(result);
      rest = rest.slice(result.processed);
    }
    return results;
  }

  async function listAllPages(t: ReturnType<typeof newBackend>, numItems: number) {
    const sizes: number[] = [];
    const docs: Record<string, Value>[] = [];
    let cursor: string | null = null;
    for (;;) {
      const result: PaginationResult<Record<string, Value>> = await t.query(internal.mirror.listPage, {
        table: bigTable,
        paginationOpts: page(numItems, cursor),
      });
      sizes.push(result.page.length);
      docs.push(...result.page);
      if (result.isDone) return { sizes, docs: stripSystem(docs) };
      cursor = result.continueCursor;
    }
  }

  test("replacing large documents with small ones stops at the read budget and resumes", async () => {
    const t = newBackend();
    await loadBig(t);
    const replacements = ids.map((id, n) => small(id, n));
    const results = await untilProcessed(replacements, (documents) =>
      t.mutation(internal.mirror.upsertBatch, { table: bigTable, documents }),
    );
    expect(results.length).toBeGreaterThan(2);
    expect(results.reduce((sum, r) => sum + r.updated, 0)).toBe(120);
    expect(results.every((r) => r.processed === r.updated && r.inserted === 0)).toBe(true);
    const { docs } = await listAllPages(t, 1000);
    expect(docs).toEqual(replacements);
  });

  test("deleting large documents stops at the read budget and resumes", async () => {
    const t = newBackend();
    await loadBig(t);
    const results = await untilProcessed(ids, (xataIds) =>
      t.mutation(internal.mirror.deleteBatch, { table: bigTable, xataIds }),
    );
    expect(results.length).toBeGreaterThan(2);
    expect(results.reduce((sum, r) => sum + r.deleted, 0)).toBe(120);
    expect(results.every((r) => r.missing === 0 && r.duplicatesRemoved === 0)).toBe(true);
    expect(await listAll(t, bigTable)).toEqual([]);
  });

  test("an item that reads over the budget on its own is still processed, alone", async () => {
    const t = newBackend();
    // five copies of one ~900 KB document: reading them, deleting four and replacing one reads ~9 MB
    const huge = { ...big("rec_a", 1), [field]: "h".repeat(900_000) };
    await insertDirectly(t, bigTable, Array(5).fill(huge));
    const documents = [small("rec_a", 1), small("rec_b", 2)];
    const first = await t.mutation(internal.mirror.upsertBatch, { table: bigTable, documents });
    expect(first).toEqual({
      processed: 1,
      inserted: 0,
      updated: 1,
      unchanged: 0,
      duplicatesRemoved: 4,
      unresolved: 0,
    });
    const rest = await t.mutation(internal.mirror.upsertBatch, { table: bigTable, documents: documents.slice(1) });
    expect(rest).toMatchObject({ processed: 1, inserted: 1 });
    expect(await listAll(t, bigTable)).toEqual(documents);
  });

  test("listPage bounds a page by bytes, whatever numItems asks", async () => {
    const t = newBackend();
    await loadBig(t);
    const { sizes, docs } = await listAllPages(t, 1000);
    expect(sizes.length).toBeGreaterThan(2);
    expect(Math.max(...sizes)).toBeLessThan(60);
    expect(docs.map((doc) => doc.xata_id)).toEqual(ids);
    expect(docs[7]).toEqual(big(ids[7]!, 7));
  });

  test("a smaller maximumBytesRead from the caller is honoured", async () => {
    const t = newBackend();
    await loadBig(t);
    const result = await t.query(internal.mirror.listPage, {
      table: bigTable,
      paginationOpts: { numItems: 1000, cursor: null, maximumBytesRead: 1_000_000 },
    });
    expect(result.page.length).toBeLessThanOrEqual(4);
    expect(result.isDone).toBe(false);
  });
});

describe("documents that share a xata_id (left by another loader)", () => {
  test("upsertBatch keeps one document and removes the others", async () => {
    const t = newBackend();
    const doc = sampleDocument(table, "rec_dup", 1);
    await insertDirectly(t, table, [doc, { ...doc, xata_version: 7 }, sampleDocument(table, "rec_other", 2)]);
    const result = await t.mutation(internal.mirror.upsertBatch, {
      table,
      documents: [doc, sampleDocument(table, "rec_new", 3)],
    });
    expect(result).toEqual({
      processed: 2,
      inserted: 1,
      updated: 0,
      unchanged: 1,
      duplicatesRemoved: 1,
      unresolved: 0,
    });
    const stored = await listAll(t, table);
    expect(stored.filter((d) => d.xata_id === "rec_dup")).toEqual([doc]);
    expect(stored.map((d) => d.xata_id).sort()).toEqual(["rec_dup", "rec_new", "rec_other"]);
    const again = await t.mutation(internal.mirror.upsertBatch, { table, documents: [doc] });
    expect(again).toMatchObject({ unchanged: 1, duplicatesRemoved: 0 });
  });

  test("upsertBatch replaces the kept document when it differs", async () => {
    const t = newBackend();
    const doc = sampleDocument(table, "rec_dup", 1);
    await insertDirectly(t, table, [doc, doc, doc]);
    const changed = { ...doc, xata_version: 2 };
    const result = await t.mutation(internal.mirror.upsertBatch, { table, documents: [changed] });
    expect(result).toEqual({
      processed: 1,
      inserted: 0,
      updated: 1,
      unchanged: 0,
      duplicatesRemoved: 2,
      unresolved: 0,
    });
    expect(await listAll(t, table)).toEqual([changed]);
  });

  test("deleteBatch deletes every document with the id", async () => {
    const t = newBackend();
    const doc = sampleDocument(table, "rec_dup", 1);
    const other = sampleDocument(table, "rec_other", 2);
    await insertDirectly(t, table, [doc, doc, doc, other]);
    const result = await t.mutation(internal.mirror.deleteBatch, { table, xataIds: ["rec_dup"] });
    expect(result).toEqual({ processed: 1, deleted: 1, missing: 0, duplicatesRemoved: 2, unlinked: 0 });
    expect(await listAll(t, table)).toEqual([other]);
  });
});

describe("links", () => {
  // users.team -> teams (the sample schema), both written through the mirror as the sync does.
  const team = (xataId: string) => sampleDocument("teams", xataId);
  const user = (xataId: string, teamId: string | undefined) => {
    const { team: _team, ...rest } = sampleDocument("users", xataId);
    return teamId === undefined ? rest : { ...rest, team: teamId };
  };
  const teamIdOf = async (t: ReturnType<typeof newBackend>, xataId: string) =>
    (await t.query(internal.mirror.listPage, { table: "teams", paginationOpts: page(100) })).page.find(
      (doc) => doc.xata_id === xataId,
    )?._id;
  const usersById = async (t: ReturnType<typeof newBackend>): Promise<Record<string, Record<string, Value>>> =>
    Object.fromEntries(
      (await t.query(internal.mirror.listPage, { table: "users", paginationOpts: page(100) })).page.map(
        (doc) => [doc.xata_id, doc],
      ),
    );

  test("a link is resolved on write, left absent without its target, and never taken from the caller", async () => {
    const t = newBackend();
    await t.mutation(internal.mirror.upsertBatch, { table: "teams", documents: [team("rec_t1")] });
    const forged = { ...user("rec_u2", "rec_t1"), team_id: "forged" };
    const result = await t.mutation(internal.mirror.upsertBatch, {
      table: "users",
      documents: [user("rec_u1", "rec_t1"), forged, user("rec_u3", "rec_missing"), user("rec_u4", undefined)],
    });
    expect(result).toMatchObject({ processed: 4, inserted: 4, unresolved: 1 });
    const users = await usersById(t);
    const t1 = await teamIdOf(t, "rec_t1");
    expect(users.rec_u1!.team_id).toBe(t1);
    expect(users.rec_u2!.team_id).toBe(t1);
    expect(users.rec_u3).not.toHaveProperty("team_id");
    expect(users.rec_u4).not.toHaveProperty("team_id");
    // Writing the same documents again changes nothing: f_id is part of what is compared.
    const again = await t.mutation(internal.mirror.upsertBatch, {
      table: "users",
      documents: [user("rec_u1", "rec_t1"), user("rec_u3", "rec_missing")],
    });
    expect(again).toMatchObject({ unchanged: 2, updated: 0, unresolved: 1 });
  });

  test("resolveLinks links documents whose target came later; deleting the target unlinks them", async () => {
    const t = newBackend();
    const users = Array.from({ length: 30 }, (_, i) => user(`rec_u${i}`, `rec_t${i % 3}`));
    await t.mutation(internal.mirror.upsertBatch, { table: "users", documents: users });
    await t.mutation(internal.mirror.upsertBatch, { table: "teams", documents: [team("rec_t0"), team("rec_t2")] });
    type Cursor = { after: string; inclusive: boolean } | null;
    let from: Cursor = null;
    let linked = 0;
    let scanned = 0;
    do {
      const result: { linked: number; scanned: number; next: Cursor } = await t.mutation(
        internal.mirror.resolveLinks,
        { table: "users", field: "team", from },
      );
      linked += result.linked;
      scanned += result.scanned;
      from = result.next;
    } while (from !== null);
    expect({ linked, scanned }).toEqual({ linked: 20, scanned: 30 });
    const t0 = await teamIdOf(t, "rec_t0");
    const byTeam = await t.run(async (ctx) =>
      ctx.db
        .query("users")
        .withIndex("by_team_id", (q) => q.eq("team_id", t0 as never))
        .collect(),
    );
    expect(byTeam.map((doc) => doc.xata_id).sort()).toEqual(
      users.filter((_, i) => i % 3 === 0).map((doc) => doc.xata_id as string).sort(),
    );
    const deleted = await t.mutation(internal.mirror.deleteBatch, { table: "teams", xataIds: ["rec_t0"] });
    expect(deleted).toMatchObject({ processed: 1, deleted: 1, unlinked: 10 });
    const after = await usersById(t);
    expect(Object.values(after).filter((doc) => doc.team_id !== undefined)).toHaveLength(10);
    expect(after.rec_u0).not.toHaveProperty("team_id");
    // Re-created: a new _id, which resolveLinks gives to the documents that name it.
    await t.mutation(internal.mirror.upsertBatch, { table: "teams", documents: [team("rec_t0")] });
    const again = await t.mutation(internal.mirror.resolveLinks, { table: "users", field: "team", from: null });
    expect(again).toMatchObject({ linked: 10, next: null });
    const t0Again = await teamIdOf(t, "rec_t0");
    expect(t0Again).not.toBe(t0);
    expect((await usersById(t)).rec_u0!.team_id).toBe(t0Again);
  });

  test("a target with more referrers than one call may unlink is deleted over several calls", async () => {
    const t = newBackend();
    await t.mutation(internal.mirror.upsertBatch, { table: "teams", documents: [team("rec_big")] });
    // 40 referrers of ~300 KB: unlinking them all reads about 24 MB, over one call's budget.
    for (let i = 0; i < 40; i += 10) {
      const documents = Array.from({ length: 10 }, (_, j) => ({
        ...user(`rec_u${i + j}`, "rec_big"),
        bio: "b".repeat(300_000),
      }));
      await t.mutation(internal.mirror.upsertBatch, { table: "users", documents });
    }
    const calls = [];
    for (;;) {
      const result = await t.mutation(internal.mirror.deleteBatch, { table: "teams", xataIds: ["rec_big"] });
      calls.push(result);
      if (result.processed === 1) break;
      expect(result).toMatchObject({ processed: 0, deleted: 0 });
      expect(result.unlinked).toBeGreaterThan(0);
    }
    expect(calls.length).toBeGreaterThan(2);
    expect(calls.reduce((sum, r) => sum + r.unlinked, 0)).toBe(40);
    expect(await teamIdOf(t, "rec_big")).toBeUndefined();
    expect(Object.values(await usersById(t)).every((doc) => doc.team_id === undefined)).toBe(true);
  });

  test("resolveLinks names an unknown link field", async () => {
    const t = newBackend();
    await expect(
      t.mutation(internal.mirror.resolveLinks, { table: "users", field: "name", from: null }),
    ).rejects.toThrow("has no link field 'name'");
  });
});
