/**
 * The mirror's write and read path. Internal only: the sync calls these with the deploy key.
 * Table names arrive as strings, so every function first checks the name against the
 * generated `xataTables`; documents are found through each table's `by_xata_id` index.
 *
 * Convex fails a transaction that reads over 16 MiB. The caller sizes batches by the new
 * documents only, while the existing documents a batch replaces or deletes can be far larger, so
 * upsertBatch and deleteBatch stop at READ_BUDGET_BYTES and return how many items they
 * `processed`; the caller sends the rest again. listPage bounds each page the same way.
 */
import {
  type GenericDatabaseReader,
  type GenericDatabaseWriter,
  type GenericDataModel,
  type GenericDocument,
  paginationOptsValidator,
  paginationResultValidator,
} from "convex/server";
import { ConvexError, type GenericId, type Value, getDocumentSize, v } from "convex/values";
import { internalMutation, internalQuery } from "./_generated/server";
import { xataSchemaHash, xataTableMap, xataTables } from "./xataTables";

const SYSTEM_FIELDS = ["_id", "_creationTime"] as const;

/*
 * Half of Convex's 16 MiB read limit. A batch stops before its next item once this much is read;
 * one item reads one document of at most 1 MiB (plus any duplicates), so the limit is not reached.
 */
const READ_BUDGET_BYTES = 8 * 1024 * 1024;

/** The name of a mirrored table, or a ConvexError naming the unknown one. */
function mirrorTable(table: string): string {
  if (!Object.hasOwn(xataTables, table)) {
    const known = Object.keys(xataTables).join(", ");
    throw new ConvexError({
      code: "UnknownTable",
      table,
      message: `Table '${table}' is not a mirrored Xata table (mirrored tables: ${known}). Regenerate convex/xataTables.ts with \`xata2convex schema\` and deploy.`,
    });
  }
  return table;
}

type MirroredDocument = GenericDocument & { _id: GenericId<string> };

/*
 * The table name is only known at run time, so the typed per-table API cannot be used: the
 * database is seen through the generic data model. These two helpers are the only casts.
 */
function untyped<Db>(db: Db): GenericDatabaseWriter<GenericDataModel> {
  return db as unknown as GenericDatabaseWriter<GenericDataModel>;
}

/** Every document with this `xata_id`: normally one, more if something else loaded the table. */
async function findByXataId(
  db: GenericDatabaseReader<GenericDataModel>,
  table: string,
  xataId: string,
): Promise<MirroredDocument[]> {
  const docs = await db
    .query(table)
    .withIndex("by_xata_id", (q) => q.eq("xata_id", xataId))
    .collect();
  return docs as MirroredDocument[];
}

/*
 * Bytes documents cost the read limit. Counted twice for documents that are then replaced or
 * deleted, since the write may read them again.
 */
function readCost(docs: MirroredDocument[], rewritten: boolean): number {
  return docs.reduce((sum, doc) => sum + getDocumentSize(doc), 0) * (rewritten ? 2 : 1);
}

/**
 * Runs `each` on the items in order until READ_BUDGET_BYTES is read, always on at least one;
 * `each` returns the bytes it read. Returns how many items it ran on.
 */
async function withinReadBudget<T>(
  items: T[],
  each: (item: T, index: number) => Promise<number>,
): Promise<number> {
  let bytesRead = 0;
  for (const [index, item] of items.entries()) {
    if (index > 0 && bytesRead >= READ_BUDGET_BYTES) return index;
    bytesRead += await each(item, index);
  }
  return items.length;
}

function withoutSystemFields(doc: GenericDocument): Record<string, Value> {
  const { _id, _creationTime, ...rest } = doc;
  return rest as Record<string, Value>;
}

/** Deep equality of Convex values; object key order does not matter. */
function sameValue(a: Value | undefined, b: Value | undefined): boolean {
  if (a === b) return true;
  if (typeof a === "number" && typeof b === "number") return Number.isNaN(a) && Number.isNaN(b);
  if (a instanceof ArrayBuffer && b instanceof ArrayBuffer) {
    const x = new Uint8Array(a);
    const y = new Uint8Array(b);
    return x.length === y.length && x.every((byte, i) => byte === y[i]);
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => sameValue(item, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = Object.keys(a).filter((k) => a[k] !== undefined);
    const otherKeys = Object.keys(b).filter((k) => b[k] !== undefined);
    return keys.length === otherKeys.length && keys.every((k) => sameValue(a[k], b[k]));
  }
  return false;
}

function isPlainObject(value: Value | undefined): value is { [key: string]: Value | undefined } {
  return (
    typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof ArrayBuffer)
  );
}

function checkedDocument(table: string, doc: unknown, index: number): Record<string, Value> {
  if (!isPlainObject(doc as Value) || typeof (doc as { xata_id?: unknown }).xata_id !== "string") {
    throw new ConvexError({
      code: "MissingXataId",
      table,
      index,
      message: `Table '${table}': document ${index} of the batch has no string 'xata_id'.`,
    });
  }
  const fields = doc as Record<string, Value>;
  for (const field of SYSTEM_FIELDS) {
    if (field in fields) {
      throw new ConvexError({
        code: "SystemField",
        table,
        index,
        message: `Table '${table}': document ${index} (xata_id '${String(fields.xata_id)}') sets the system field '${field}'.`,
      });
    }
  }
  return fields;
}

/** Run one write; a failure (e.g. schema validation) names the table and record it was for. */
async function naming<T>(table: string, xataId: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`Table '${table}', record '${xataId}': ${reason}`);
  }
}

/**
 * Inserts or replaces documents by `xata_id`, in order, until READ_BUDGET_BYTES is read (always at
 * least one); `processed` says how many. Extra documents with the same `xata_id` are deleted.
 */
export const upsertBatch = internalMutation({
  args: { table: v.string(), documents: v.array(v.any()) },
  returns: v.object({
    processed: v.number(),
    inserted: v.number(),
    updated: v.number(),
    unchanged: v.number(),
    duplicatesRemoved: v.number(),
  }),
  handler: async (ctx, args) => {
    const table = mirrorTable(args.table);
    const db = untyped(ctx.db);
    const counts = { inserted: 0, updated: 0, unchanged: 0, duplicatesRemoved: 0 };
    const processed = await withinReadBudget(args.documents, async (raw, index) => {
      const doc = checkedDocument(table, raw, index);
      const xataId = doc.xata_id as string;
      const [existing, ...duplicates] = await findByXataId(db, table, xataId);
      for (const duplicate of duplicates) await db.delete(table, duplicate._id);
      counts.duplicatesRemoved += duplicates.length;
      const duplicatesRead = readCost(duplicates, true);
      if (existing === undefined) {
        await naming(table, xataId, () => db.insert(table, doc));
        counts.inserted += 1;
        return duplicatesRead;
      }
      if (sameValue(withoutSystemFields(existing), doc)) {
        counts.unchanged += 1;
        return duplicatesRead + readCost([existing], false);
      }
      // replace, not patch: a field that is null in Xata now must leave the document.
      await naming(table, xataId, () => db.replace(table, existing._id, doc));
      counts.updated += 1;
      return duplicatesRead + readCost([existing], true);
    });
    return { processed, ...counts };
  },
});

/**
 * Deletes every document with each `xata_id`, in order, until READ_BUDGET_BYTES is read (always at
 * least one id); `processed` says how many ids. `deleted` and `missing` count ids, and
 * `duplicatesRemoved` the documents beyond the first for an id.
 */
export const deleteBatch = internalMutation({
  args: { table: v.string(), xataIds: v.array(v.string()) },
  returns: v.object({
    processed: v.number(),
    deleted: v.number(),
    missing: v.number(),
    duplicatesRemoved: v.number(),
  }),
  handler: async (ctx, args) => {
    const table = mirrorTable(args.table);
    const db = untyped(ctx.db);
    const counts = { deleted: 0, missing: 0, duplicatesRemoved: 0 };
    const processed = await withinReadBudget(args.xataIds, async (xataId) => {
      const existing = await findByXataId(db, table, xataId);
      for (const doc of existing) await db.delete(table, doc._id);
      if (existing.length === 0) {
        counts.missing += 1;
      } else {
        counts.deleted += 1;
        counts.duplicatesRemoved += existing.length - 1;
      }
      return readCost(existing, true);
    });
    return { processed, ...counts };
  },
});

/**
 * One page of a mirrored table. A page ends after READ_BUDGET_BYTES of documents (or the caller's
 * smaller `maximumBytesRead`), whatever `numItems` asks for; follow `continueCursor` until `isDone`.
 */
export const listPage = internalQuery({
  args: { table: v.string(), paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(v.any()),
  handler: async (ctx, args) => {
    const table = mirrorTable(args.table);
    const asked = args.paginationOpts.maximumBytesRead ?? READ_BUDGET_BYTES;
    const maximumBytesRead = Math.min(asked, READ_BUDGET_BYTES);
    return await untyped(ctx.db)
      .query(table)
      .paginate({ ...args.paginationOpts, maximumBytesRead });
  },
});

const xataColumn = v.object({ xata: v.string(), type: v.string() });

export const schemaInfo = internalQuery({
  args: {},
  returns: v.object({
    hash: v.string(),
    tables: v.record(v.string(), v.object({ xata: v.string(), fields: v.record(v.string(), xataColumn) })),
  }),
  handler: async () => ({ hash: xataSchemaHash, tables: xataTableMap }),
});
