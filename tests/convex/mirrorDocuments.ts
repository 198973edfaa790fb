/**
 * Test documents for whatever tables convex/xataTables.ts mirrors: built from the generated
 * `xataTableMap`, so these tests keep working when the module is regenerated.
 */
import { convexTest } from "convex-test";
import type { Value } from "convex/values";
import schema from "../../convex/schema";
import { xataTableMap, xataTables } from "../../convex/xataTables";

export const modules = import.meta.glob("../../convex/**/*.*s");

export function newBackend(transactionLimits: boolean | Record<string, number> = true) {
  return convexTest({ schema, modules, transactionLimits });
}

export type MirrorTable = keyof typeof xataTableMap;
export const mirrorTables = Object.keys(xataTableMap) as MirrorTable[];

type FieldInfo = {
  xata: string;
  type: string;
  int64?: boolean;
  link?: { table: string; idField: string; index: string };
};

function fieldsOf(table: MirrorTable): Record<string, FieldInfo> {
  return xataTableMap[table].fields as Record<string, FieldInfo>;
}

/** A value of the Xata column type as the mirror stores it; `n` varies it. */
export function sampleValue(type: string, n: number): Value {
  const file = {
    name: `file-${n}.txt`,
    mediaType: "text/plain",
    size: 10 + n,
    version: 1,
    enablePublicUrl: false,
  };
  switch (type) {
    case "int":
      return n;
    case "float":
      return n + 0.25;
    case "datetime":
      return 1_700_000_000_000 + n;
    case "bool":
      return n % 2 === 0;
    case "multiple":
      return ["tag", `tag-${n}`];
    case "json":
      return { n, nested: { list: [1, "two", null] } };
    case "vector":
      return [0.5, n, -1];
    case "file":
      return file;
    case "file[]":
      return [{ id: `file_${n}`, ...file }];
    default:
      return `${type}-${n}`;
  }
}

/** A complete document for `table`, every column set. */
export function sampleDocument(table: MirrorTable, xataId: string, n = 1): Record<string, Value> {
  const doc: Record<string, Value> = {
    xata_id: xataId,
    xata_version: n,
    xata_createdAt: 1_600_000_000_000,
    xata_updatedAt: 1_600_000_000_000 + n,
  };
  for (const [field, info] of Object.entries(fieldsOf(table))) {
    doc[field] = info.int64 ? BigInt(n) : sampleValue(info.type, n);
  }
  return doc;
}

/** The link fields of `table` to mirrored tables: field, target table, `_id` field, index. */
export function linkFields(table: MirrorTable): { field: string; table: string; idField: string; index: string }[] {
  return Object.entries(fieldsOf(table)).flatMap(([field, info]) =>
    info.link === undefined ? [] : [{ field, ...info.link }],
  );
}

/** A user column the schema lets a document omit (Xata null), if the table has one. */
export function optionalField(table: MirrorTable): string | undefined {
  const validator = xataTables[table].validator as unknown as {
    fields: Record<string, { isOptional: string }>;
  };
  return Object.keys(fieldsOf(table)).find((field) => validator.fields[field]?.isOptional === "optional");
}

/** Mirrored documents without Convex's system fields, as the sync compares them. */
export function stripSystem(docs: Record<string, Value>[]): Record<string, Value>[] {
  return docs.map(({ _id, _creationTime, ...rest }) => rest);
}

/** A table with a string or text column, and that column: somewhere to put a large value. */
export function tableWithStringField(): { table: MirrorTable; field: string } {
  for (const table of mirrorTables) {
    const field = Object.entries(fieldsOf(table)).find(([, info]) => ["string", "text"].includes(info.type));
    if (field !== undefined) return { table, field: field[0] };
  }
  throw new Error("no mirrored table has a string or text column");
}
