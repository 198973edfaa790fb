import type { PaginationResult } from "convex/server";
import type { Value } from "convex/values";
import { describe, expect, test } from "vitest";
import * as mirror from "../../convex/mirror";
import * as syncRuns from "../../convex/syncRuns";
import { internal } from "../../convex/_generated/api";
import {
  type MirrorTable,
  mirrorTables,
  newBackend,
  optionalField,
  sampleDocument,
  stripSystem,
} from "./mirrorDocuments";

const table: MirrorTable = mirrorTables[0]!;
const page = (numItems: number, cursor: string | null = null) => ({ numItems, cursor });

async function listAll(t: ReturnType<typeof newBackend>, name: string) {
  const result = await t.query(internal.mirror.listPage, { table: name, paginationOpts: page(1000) });
  return stripSystem(result.page);
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
      ["deleteBatch", "get", "list", "listPage", "record", "schemaInfo", "upsertBatch"].sort(),
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
      expect(await t.mutation(internal.mirror.upsertBatch, { table: name, documents: docs })).toEqual({
        inserted: 2,
        updated: 0,
        unchanged: 0,
      });
      expect(await t.mutation(internal.mirror.upsertBatch, { table: name, documents: docs })).toEqual({
        inserted: 0,
        updated: 0,
        unchanged: 2,
      });
      const changed = { ...docs[1]!, xata_version: 99 };
      expect(
        await t.mutation(internal.mirror.upsertBatch, { table: name, documents: [docs[0]!, changed] }),
      ).toEqual({
        inserted: 0,
        updated: 1,
        unchanged: 1,
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
    expect(result).toEqual({ deleted: 2, missing: 1 });
    expect(await listAll(t, table)).toEqual([docs[1]]);
    expect(await t.mutation(internal.mirror.deleteBatch, { table, xataIds: ["rec_1"] })).toEqual({
      deleted: 0,
      missing: 1,
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
