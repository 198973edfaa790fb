/**
 * The mirror's write and read path. Internal only: the sync calls these with the deploy key.
 * Table names arrive as strings, so every function first checks the name against the
 * generated `xataTables`; documents are found through each table's `by_xata_id` index.
 *
 * Convex fails a transaction that reads over 16 MiB. The caller sizes batches by the new
 * documents only, while the existing documents a batch replaces or deletes can be far larger, so
 * upsertBatch and deleteBatch stop at READ_BUDGET_BYTES and return how many items they
 * `processed`; the caller sends the rest again. listPage bounds each page the same way.
 *
 * Links: a link field `f` (a Xata record id) has a companion `f_id`, the target's Convex `_id`,
 * which the mirror keeps and the sync never sends. upsertBatch sets it from an index read on the
 * target table (absent while the target is not mirrored, and counted as `unresolved`);
 * deleteBatch takes it off every document pointing at a deleted target (through `by_f_id`)
 * before deleting it; resolveLinks sets it on documents whose target arrived later (a cycle, a
 * self link, a re-created target), which the sync calls at the end of a run. Every lookup counts
 * against Convex's 4,096 index reads per transaction (RANGE_BUDGET).
 */
import {
  type GenericDatabaseReader,
  type GenericDatabaseWriter,
  type GenericDataModel,
  type GenericDocument,
  type IndexRange,
  paginationOptsValidator,
  paginationResultValidator,
} from "convex/server";
import { ConvexError, type GenericId, type Value, getDocumentSize, v } from "convex/values";
import { internalMutation, internalQuery } from "./_generated/server";
import { xataSchemaHash, xataTableMap, xataTablePrefix, xataTables } from "./xataTables";

const SYSTEM_FIELDS = ["_id", "_creationTime"] as const;

/*
 * Half of Convex's 16 MiB read limit. A batch stops before its next item once this much is read;
 * one item reads one document of at most 1 MiB (plus any duplicates), so the limit is not reached.
 */
const READ_BUDGET_BYTES = 8 * 1024 * 1024;

/*
 * Index reads (`db.get`, `db.query`, counted with patches to be safe) a call may spend, inside
 * Convex's 4,096 per transaction: a batch stops before an item that could overrun it.
 */
const RANGE_BUDGET = 3_500;

type FieldInfo = {
  xata: string;
  type: string;
  int64?: boolean;
  link?: { table: string; idField: string; index: string };
};
type Link = { table: string; field: string; target: string; idField: string; index: string };

const tableMap = xataTableMap as unknown as Record<string, { xata: string; fields: Record<string, FieldInfo> }>;

/** Every link to a mirrored table: from which table and field, to which table, through which index. */
const links: Link[] = Object.entries(tableMap).flatMap(([table, info]) =>
  Object.entries(info.fields).flatMap(([field, { link }]) =>
    link === undefined ? [] : [{ table, field, target: link.table, idField: link.idField, index: link.index }],
  ),
);
const linksFrom = (table: string) => links.filter((link) => link.table === table);
const linksTo = (table: string) => links.filter((link) => link.target === table);

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

/** The `_id` of the document with this `xata_id` in `table`, if it is mirrored (one index read). */
async function idOf(
  db: GenericDatabaseReader<GenericDataModel>,
  table: string,
  xataId: string,
): Promise<GenericId<string> | undefined> {
  const doc = await db
    .query(table)
    .withIndex("by_xata_id", (q) => q.eq("xata_id", xataId))
    .first();
  return (doc as MirroredDocument | null)?._id;
}

/**
 * `doc` with every link's `f_id` set from its target (or absent): index reads `ranges`, and
 * `unresolved` when some link's target is not mirrored (yet).
 */
async function withLinkIds(
  db: GenericDatabaseReader<GenericDataModel>,
  table: string,
  doc: Record<string, Value>,
): Promise<{ doc: Record<string, Value>; ranges: number; unresolved: boolean }> {
  const linked = { ...doc };
  let ranges = 0;
  let unresolved = false;
  for (const link of linksFrom(table)) {
    delete linked[link.idField]; // the mirror's own field: never taken from the caller
    const xataId = doc[link.field];
    if (typeof xataId !== "string") continue;
    ranges += 1;
    const id = await idOf(db, link.target, xataId);
    if (id === undefined) unresolved = true;
    else linked[link.idField] = id;
  }
  return { doc: linked, ranges, unresolved };
}

/**
 * Takes `f_id` off the documents that point at `id` (a document about to be deleted), within
 * `budget` index reads; returns how many it unlinked and whether any may be left.
 */
async function unlinkReferrers(
  db: GenericDatabaseWriter<GenericDataModel>,
  table: string,
  id: GenericId<string>,
  budget: number,
): Promise<{ unlinked: number; ranges: number; done: boolean; bytes: number }> {
  let unlinked = 0;
  let ranges = 0;
  let bytes = 0;
  for (const link of linksTo(table)) {
    ranges += 1;
    const referrers = db.query(link.table).withIndex(link.index, (q) => q.eq(link.idField, id));
    for await (const referrer of referrers) {
      if (ranges >= budget || bytes >= READ_BUDGET_BYTES) return { unlinked, ranges, done: false, bytes };
      await db.patch(link.table, referrer._id as GenericId<string>, { [link.idField]: undefined });
      unlinked += 1;
      ranges += 1;
      bytes += getDocumentSize(referrer) * 2;
    }
  }
  return { unlinked, ranges, done: true, bytes };
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
 * Runs `each` on the items in order until READ_BUDGET_BYTES is read or, when `maxRanges` (the
 * most index reads one item may start with) is given, an item could overrun RANGE_BUDGET; always
 * on at least one. `each` returns the bytes and index reads it spent, or null when it could not
 * finish its item (the item is then not counted). Returns how many items it finished.
 */
async function withinBudget<T>(
  items: T[],
  maxRanges: number | null,
  each: (item: T, index: number, rangesLeft: number) => Promise<{ bytes: number; ranges: number } | null>,
): Promise<number> {
  let bytesRead = 0;
  let ranges = 0;
  for (const [index, item] of items.entries()) {
    const rangesFull = maxRanges !== null && ranges + maxRanges > RANGE_BUDGET;
    if (index > 0 && (bytesRead >= READ_BUDGET_BYTES || rangesFull)) return index;
    const spent = await each(item, index, RANGE_BUDGET - ranges);
    if (spent === null) return index;
    bytesRead += spent.bytes;
    ranges += spent.ranges;
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
 * Each link's `f_id` is set from its target; `unresolved` counts documents with a link whose
 * target is not mirrored (yet).
 */
export const upsertBatch = internalMutation({
  args: { table: v.string(), documents: v.array(v.any()) },
  returns: v.object({
    processed: v.number(),
    inserted: v.number(),
    updated: v.number(),
    unchanged: v.number(),
    duplicatesRemoved: v.number(),
    unresolved: v.number(),
  }),
  handler: async (ctx, args) => {
    const table = mirrorTable(args.table);
    const db = untyped(ctx.db);
    const counts = { inserted: 0, updated: 0, unchanged: 0, duplicatesRemoved: 0, unresolved: 0 };
    // The caller sizes batches by index reads (1 + the links a document has set): no range budget.
    const processed = await withinBudget(args.documents, null, async (raw, index) => {
      const checked = checkedDocument(table, raw, index);
      const xataId = checked.xata_id as string;
      const { doc, ranges, unresolved } = await withLinkIds(db, table, checked);
      if (unresolved) counts.unresolved += 1;
      const [existing, ...duplicates] = await findByXataId(db, table, xataId);
      for (const duplicate of duplicates) await db.delete(table, duplicate._id);
      counts.duplicatesRemoved += duplicates.length;
      const spent = (bytes: number) => ({ bytes: readCost(duplicates, true) + bytes, ranges: ranges + 1 });
      if (existing === undefined) {
        await naming(table, xataId, () => db.insert(table, doc));
        counts.inserted += 1;
        return spent(0);
      }
      if (sameValue(withoutSystemFields(existing), doc)) {
        counts.unchanged += 1;
        return spent(readCost([existing], false));
      }
      // replace, not patch: a field that is null in Xata now must leave the document.
      await naming(table, xataId, () => db.replace(table, existing._id, doc));
      counts.updated += 1;
      return spent(readCost([existing], true));
    });
    return { processed, ...counts };
  },
});

/**
 * Deletes every document with each `xata_id`, in order, until READ_BUDGET_BYTES is read (always at
 * least one id); `processed` says how many ids. `deleted` and `missing` count ids, and
 * `duplicatesRemoved` the documents beyond the first for an id. Documents linking to a deleted
 * one lose their `f_id` first (`unlinked`); when a target has more of them than one call can
 * patch, the call ends before that id (`processed` may then be 0) and the caller sends it again.
 */
export const deleteBatch = internalMutation({
  args: { table: v.string(), xataIds: v.array(v.string()) },
  returns: v.object({
    processed: v.number(),
    deleted: v.number(),
    missing: v.number(),
    duplicatesRemoved: v.number(),
    unlinked: v.number(),
  }),
  handler: async (ctx, args) => {
    const table = mirrorTable(args.table);
    const db = untyped(ctx.db);
    const counts = { deleted: 0, missing: 0, duplicatesRemoved: 0, unlinked: 0 };
    const maxRanges = 2 + linksTo(table).length;
    const processed = await withinBudget(args.xataIds, maxRanges, async (xataId, _index, rangesLeft) => {
      const existing = await findByXataId(db, table, xataId);
      let ranges = 1;
      let bytes = readCost(existing, true);
      for (const doc of existing) {
        const referrers = await unlinkReferrers(db, table, doc._id, rangesLeft - ranges);
        counts.unlinked += referrers.unlinked;
        ranges += referrers.ranges;
        bytes += referrers.bytes;
        if (!referrers.done) return null;
      }
      for (const doc of existing) await db.delete(table, doc._id);
      if (existing.length === 0) {
        counts.missing += 1;
      } else {
        counts.deleted += 1;
        counts.duplicatesRemoved += existing.length - 1;
      }
      return { bytes, ranges };
    });
    return { processed, ...counts };
  },
});

const linkCursor = v.object({ after: v.string(), inclusive: v.boolean() });

type MissingFieldRange = {
  eq(field: string, value: undefined): {
    gt(field: string, value: string): IndexRange;
    gte(field: string, value: string): IndexRange;
  };
};

/**
 * Sets `f_id` on documents of `table` whose link `field` has none yet and whose target is now
 * mirrored, walking them in the order of the Xata ids they point at (index `by_f_id` on
 * `[f_id, f]`, from `from`). Stops within the read and index budgets; `next` is where to go on
 * (null: done). A Xata id whose target is still missing is stepped over, not read again.
 */
export const resolveLinks = internalMutation({
  args: { table: v.string(), field: v.string(), from: v.union(v.null(), linkCursor) },
  returns: v.object({ linked: v.number(), scanned: v.number(), next: v.union(v.null(), linkCursor) }),
  handler: async (ctx, args) => {
    const table = mirrorTable(args.table);
    const link = linksFrom(table).find((candidate) => candidate.field === args.field);
    if (link === undefined) {
      throw new ConvexError({
        code: "UnknownLink",
        table,
        message: `Table '${table}' has no link field '${args.field}' to a mirrored table.`,
      });
    }
    const db = untyped(ctx.db);
    const from = args.from;
    const pending = db.query(table).withIndex(link.index, (q) => {
      // The generic data model types index values as `Value`; a missing field is `undefined`.
      const waiting = (q as unknown as MissingFieldRange).eq(link.idField, undefined);
      if (from === null) return waiting.gte(link.field, "");
      return from.inclusive ? waiting.gte(link.field, from.after) : waiting.gt(link.field, from.after);
    });
    let linked = 0;
    let scanned = 0;
    let ranges = 1;
    let bytes = 0;
    let current: { xataId: string; id: GenericId<string> | undefined } | null = null;
    for await (const doc of pending) {
      const xataId = doc[link.field] as string;
      const newTarget = current === null || current.xataId !== xataId;
      if (ranges + 2 > RANGE_BUDGET || bytes >= READ_BUDGET_BYTES) {
        // Go on from this document's target; the rest of a target that is missing is skipped.
        const inclusive = newTarget || current?.id !== undefined;
        return { linked, scanned, next: { after: xataId, inclusive } };
      }
      if (current === null || newTarget) {
        ranges += 1;
        current = { xataId, id: await idOf(db, link.target, xataId) };
      }
      scanned += 1;
      bytes += getDocumentSize(doc);
      if (current.id === undefined) continue;
      await db.patch(table, doc._id as GenericId<string>, { [link.idField]: current.id });
      linked += 1;
      ranges += 1;
      bytes += getDocumentSize(doc);
    }
    return { linked, scanned, next: null };
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

const xataColumn = v.object({
  xata: v.string(),
  type: v.string(),
  int64: v.optional(v.boolean()),
  link: v.optional(v.object({ table: v.string(), idField: v.string(), index: v.string() })),
});

/** What the deployed mirror was generated from and how to write it (the sync reads it first). */
export const schemaInfo = internalQuery({
  args: {},
  returns: v.object({
    hash: v.string(),
    tablePrefix: v.string(),
    tables: v.record(v.string(), v.object({ xata: v.string(), fields: v.record(v.string(), xataColumn) })),
  }),
  handler: async () => ({ hash: xataSchemaHash, tablePrefix: xataTablePrefix, tables: tableMap }),
});
