/**
 * The mirror's write and read path. Internal only: the sync calls these with the deploy key.
 * Table names arrive as strings, so every function first checks the name against the
 * generated `xataTables`; documents are found through each table's `by_xata_id` index.
 */
import {
  type GenericDatabaseReader,
  type GenericDatabaseWriter,
  type GenericDataModel,
  type GenericDocument,
  paginationOptsValidator,
  paginationResultValidator,
} from "convex/server";
import { ConvexError, type GenericId, type Value, v } from "convex/values";
import { internalMutation, internalQuery } from "./_generated/server";
import { xataSchemaHash, xataTableMap, xataTables } from "./xataTables";

const SYSTEM_FIELDS = ["_id", "_creationTime"] as const;

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

async function findByXataId(
  db: GenericDatabaseReader<GenericDataModel>,
  table: string,
  xataId: string,
): Promise<MirroredDocument | null> {
  const doc = await db
    .query(table)
    .withIndex("by_xata_id", (q) => q.eq("xata_id", xataId))
    .unique();
  return doc as MirroredDocument | null;
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

export const upsertBatch = internalMutation({
  args: { table: v.string(), documents: v.array(v.any()) },
  returns: v.object({ inserted: v.number(), updated: v.number(), unchanged: v.number() }),
  handler: async (ctx, args) => {
    const table = mirrorTable(args.table);
    const db = untyped(ctx.db);
    const counts = { inserted: 0, updated: 0, unchanged: 0 };
    for (const [index, raw] of args.documents.entries()) {
      const doc = checkedDocument(table, raw, index);
      const xataId = doc.xata_id as string;
      const existing = await findByXataId(db, table, xataId);
      if (existing === null) {
        await naming(table, xataId, () => db.insert(table, doc));
        counts.inserted += 1;
      } else if (sameValue(withoutSystemFields(existing), doc)) {
        counts.unchanged += 1;
      } else {
        // replace, not patch: a field that is null in Xata now must leave the document.
        await naming(table, xataId, () => db.replace(table, existing._id, doc));
        counts.updated += 1;
      }
    }
    return counts;
  },
});

export const deleteBatch = internalMutation({
  args: { table: v.string(), xataIds: v.array(v.string()) },
  returns: v.object({ deleted: v.number(), missing: v.number() }),
  handler: async (ctx, args) => {
    const table = mirrorTable(args.table);
    const db = untyped(ctx.db);
    const counts = { deleted: 0, missing: 0 };
    for (const xataId of args.xataIds) {
      const existing = await findByXataId(db, table, xataId);
      if (existing === null) {
        counts.missing += 1;
      } else {
        await db.delete(table, existing._id);
        counts.deleted += 1;
      }
    }
    return counts;
  },
});

export const listPage = internalQuery({
  args: { table: v.string(), paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(v.any()),
  handler: async (ctx, args) => {
    const table = mirrorTable(args.table);
    return await untyped(ctx.db).query(table).paginate(args.paginationOpts);
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
