/**
 * Speed for the local Convex: convex-test answers every index query by scanning the whole table
 * (and every write of the open transaction), so each `by_xata_id` lookup costs O(table) and
 * writing a 20,000-record table takes minutes. This keeps value -> ids maps of string fields,
 * for committed documents (per table and field, built on first use) and for each open
 * transaction's writes, and lets convex-test scan only those ids when a query has a string
 * equality. convex-test still applies every range filter, sorts and counts reads, so results
 * and limits are unchanged: the candidates always include every matching document, because a
 * document's latest version is either committed (committed map) or in a write layer (that
 * layer's map, under its new value).
 *
 * It relies on convex-test 0.0.71's DatabaseFake internals (`_documents`, `_writes`,
 * `_addWrite`, `commit`, `_resolveQuerySource`, `_iterateDocs`, ids = digits + table name);
 * `installEqualityIndex` checks for them and leaves convex-test untouched when they are missing.
 */

type Doc = Record<string, unknown>;
type RangeFilter = { type: string; fieldPath: string; value: unknown };
type QuerySource = { type: string; indexName?: string; range?: RangeFilter[] };
type DatabaseFake = {
  _documents: Record<string, Doc>;
  _writes: Record<string, Doc | null>[];
  get(table: string, id: string): Doc | null;
  _addWrite(id: string, newValue: Doc | null): void;
  commit(commitTs?: unknown): void;
  _resolveQuerySource(query: { source: QuerySource }): unknown;
  _iterateDocs(table: string, callback: (doc: Doc) => void): void;
};
type DatabaseFakeClass = { prototype: DatabaseFake };

/** table -> field -> value -> ids, for committed documents. */
type Index = Map<string, Map<string, Map<string, Set<string>>>>;
const indexes = new WeakMap<DatabaseFake, Index>();
/** Per write layer: "table\0field\0value" -> ids written there with that value. */
const layerIndexes = new WeakMap<object, Map<string, Set<string>>>();
const layerKey = (table: string, field: string, value: string) => `${table}\0${field}\0${value}`;

const tableOf = (id: string): string | null => {
  const digits = /^[0-9]+/.exec(id)?.[0];
  return digits === undefined || digits.length === id.length ? null : id.slice(digits.length);
};

function fieldIndex(db: DatabaseFake, table: string, field: string): Map<string, Set<string>> {
  let tables = indexes.get(db);
  if (tables === undefined) indexes.set(db, (tables = new Map()));
  let fields = tables.get(table);
  if (fields === undefined) tables.set(table, (fields = new Map()));
  let byValue = fields.get(field);
  if (byValue === undefined) {
    byValue = new Map();
    for (const [id, doc] of Object.entries(db._documents)) {
      if (tableOf(id) === table) add(byValue, doc[field], id);
    }
    fields.set(field, byValue);
  }
  return byValue;
}

function add(byValue: Map<string, Set<string>>, value: unknown, id: string): void {
  if (typeof value !== "string") return;
  let ids = byValue.get(value);
  if (ids === undefined) byValue.set(value, (ids = new Set()));
  ids.add(id);
}

/** Keep the built indexes equal to `_documents` across a top-level commit. */
function afterCommit(db: DatabaseFake, before: [string, Doc | null][]): void {
  const tables = indexes.get(db);
  if (tables === undefined) return;
  for (const [id, old] of before) {
    const fields = tables.get(tableOf(id) ?? "");
    if (fields === undefined) continue;
    const now = db._documents[id] ?? null;
    for (const [field, byValue] of fields) {
      if (old !== null && typeof old[field] === "string") byValue.get(old[field] as string)?.delete(id);
      if (now !== null) add(byValue, now[field], id);
    }
  }
}

/** Ids that may match `source`, or null when the query is not a string equality on a field. */
function candidates(db: DatabaseFake, source: QuerySource): Set<string> | null {
  if (source.type !== "IndexRange" || source.indexName === undefined) return null;
  const eq = source.range?.find(
    (f) => f.type === "Eq" && typeof f.value === "string" && !f.fieldPath.includes("."),
  );
  if (eq === undefined) return null;
  const table = source.indexName.split(".")[0]!;
  const ids = new Set(fieldIndex(db, table, eq.fieldPath).get(eq.value as string));
  const key = layerKey(table, eq.fieldPath, eq.value as string);
  for (const layer of db._writes) {
    for (const id of layerIndexes.get(layer)?.get(key) ?? []) ids.add(id);
  }
  return ids;
}

export function installEqualityIndex(DatabaseFake: DatabaseFakeClass | undefined): boolean {
  const proto = DatabaseFake?.prototype;
  if (
    proto === undefined ||
    typeof proto._resolveQuerySource !== "function" ||
    typeof proto._iterateDocs !== "function" ||
    typeof proto.commit !== "function" ||
    typeof proto._addWrite !== "function"
  ) {
    return false;
  }
  const resolve = proto._resolveQuerySource;
  const commit = proto.commit;
  const addWrite = proto._addWrite;
  proto._addWrite = function (this: DatabaseFake, id: string, newValue: Doc | null) {
    addWrite.call(this, id, newValue);
    const table = tableOf(id);
    if (newValue === null || table === null) return;
    const layer = this._writes[this._writes.length - 1]!;
    let byKey = layerIndexes.get(layer);
    if (byKey === undefined) layerIndexes.set(layer, (byKey = new Map()));
    for (const [field, value] of Object.entries(newValue)) {
      if (typeof value === "string") add(byKey, layerKey(table, field, value), id);
    }
  };
  proto._resolveQuerySource = function (this: DatabaseFake, query) {
    const ids = candidates(this, query.source);
    if (ids === null) return resolve.call(this, query);
    this._iterateDocs = (table, callback) => {
      for (const id of ids) {
        const doc = this.get(table, id);
        if (doc !== null) callback(doc);
      }
    };
    try {
      return resolve.call(this, query);
    } finally {
      delete (this as Partial<DatabaseFake>)._iterateDocs;
    }
  };
  proto.commit = function (this: DatabaseFake, commitTs?: unknown) {
    const top = this._writes.length === 1 ? this._writes[0]! : null;
    const before: [string, Doc | null][] =
      top === null ? [] : Object.keys(top).map((id) => [id, this._documents[id] ?? null]);
    commit.call(this, commitTs);
    afterCommit(this, before);
  };
  return true;
}
