import { type JSONValue, convexToJson } from "convex/values";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { MAX_BODY_BYTES, PREVIOUS_SECRET_VARIABLE, SECRET_VARIABLE, SINK_PATH } from "../../convex/http";
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, computeSignature } from "../../convex/signing";
import { mirrorTables, newBackend, sampleDocument, stripSystem } from "./mirrorDocuments";

// Recognisable, so the tests can look for them where they must not be.
const SECRET = "whsec-FAKE-convex-sink-secret-6d1f0b8e2a";
const PREVIOUS = "whsec-FAKE-previous-sink-secret-93c5a7e4";
const table = mirrorTables[0]!;

type Backend = ReturnType<typeof newBackend>;
type Sent = { status: number; body: Record<string, JSONValue>; text: string };

let saved: Record<string, string | undefined>;
let logged: string[];
let answers: string[];
beforeEach(() => {
  saved = {
    [SECRET_VARIABLE]: process.env[SECRET_VARIABLE],
    [PREVIOUS_SECRET_VARIABLE]: process.env[PREVIOUS_SECRET_VARIABLE],
  };
  process.env[SECRET_VARIABLE] = SECRET;
  delete process.env[PREVIOUS_SECRET_VARIABLE];
  logged = [];
  answers = [];
  for (const level of ["log", "info", "warn", "error"] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      logged.push(args.map(String).join(" "));
    });
  }
});
afterEach(() => {
  // No answer and no log line ever carries a secret, whatever the test sent.
  for (const text of [...answers, ...logged]) {
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(PREVIOUS);
  }
  vi.restoreAllMocks();
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

type Signing = { secret?: string; timestamp?: number; headers?: Record<string, string> };

async function headersFor(
  body: string,
  { secret = SECRET, timestamp }: Signing,
): Promise<Record<string, string>> {
  const stamp = String(timestamp ?? Math.floor(Date.now() / 1000));
  return { [TIMESTAMP_HEADER]: stamp, [SIGNATURE_HEADER]: await computeSignature(secret, stamp, body) };
}

async function post(t: Backend, body: string, signing: Signing = {}): Promise<Sent> {
  const headers = signing.headers ?? (await headersFor(body, signing));
  const response = await t.fetch(SINK_PATH, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
  const text = await response.text();
  answers.push(text);
  return { status: response.status, body: JSON.parse(text) as Record<string, JSONValue>, text };
}

const sinkBody = (op: string, args: unknown): string => JSON.stringify({ op, args });

describe("the sink HTTP action", () => {
  test("runs each op's internal function and answers its value, Convex-JSON encoded", async () => {
    const t = newBackend();
    const documents = [sampleDocument(table, "rec_a", 1), sampleDocument(table, "rec_b", 2)];
    const upserted = await post(t, sinkBody("upsertBatch", { table, documents: convexToJson(documents) }));
    expect(upserted).toMatchObject({ status: 200, body: { status: "success" } });
    expect(upserted.body.value).toEqual({
      processed: 2,
      inserted: 2,
      updated: 0,
      unchanged: 0,
      duplicatesRemoved: 0,
      unresolved: 0,
    });

    const page = await post(
      t,
      sinkBody("listPage", { table, paginationOpts: { numItems: 10, cursor: null } }),
    );
    const listed = page.body.value as { page: Record<string, JSONValue>[]; isDone: boolean };
    expect(listed.isDone).toBe(true);
    expect(stripSystem(listed.page as never)).toEqual(convexToJson(documents));

    const deleted = await post(t, sinkBody("deleteBatch", { table, xataIds: ["rec_a", "rec_z"] }));
    expect(deleted.body.value).toEqual({
      processed: 2,
      deleted: 1,
      missing: 1,
      duplicatesRemoved: 0,
      unlinked: 0,
    });

    const info = await post(t, sinkBody("schemaInfo", {}));
    expect(info.body.value).toMatchObject({
      hash: expect.any(String),
      tables: { [table]: expect.anything() },
    });

    const run = await post(
      t,
      sinkBody("recordRun", { runId: "sink-run-1", status: "running", mode: "full" }),
    );
    expect(run.body.value).toMatchObject({ runId: "sink-run-1", status: "running", mode: "full" });
    const stored = await t.run(async (ctx) => await ctx.db.query("syncRuns").collect());
    expect(stored).toMatchObject([{ runId: "sink-run-1", status: "running" }]);
  });

  test("a replayed running report cannot reopen a finished run", async () => {
    const t = newBackend();
    const running = sinkBody("recordRun", { runId: "sink-run-2", status: "running" });
    const signed = await headersFor(running, {});
    await post(t, running, { headers: signed });
    await post(t, sinkBody("recordRun", { runId: "sink-run-2", status: "succeeded", finishedAt: 5000 }));
    const replay = await post(t, running, { headers: signed });
    expect(replay.status).toBe(200);
    expect(replay.body.value).toMatchObject({ status: "succeeded", finishedAt: 5000 });
  });

  const now = () => Math.floor(Date.now() / 1000);
  test.each([
    ["unsigned", async (body: string) => ({})],
    [
      "no timestamp",
      async (body: string) => ({ [SIGNATURE_HEADER]: (await headersFor(body, {}))[SIGNATURE_HEADER]! }),
    ],
    ["wrong secret", async (body: string) => headersFor(body, { secret: "another-secret-of-some-length" })],
    ["stale", async (body: string) => headersFor(body, { timestamp: now() - 301 })],
    ["future", async (body: string) => headersFor(body, { timestamp: now() + 301 })],
    ["tampered body", async (body: string) => headersFor(body.replace("rec_a", "rec_b"), {})],
    [
      "signature for another timestamp",
      async (body: string) => ({ ...(await headersFor(body, {})), [TIMESTAMP_HEADER]: String(now() - 1) }),
    ],
    [
      "not v1 hex",
      async (body: string) => ({ [TIMESTAMP_HEADER]: String(now()), [SIGNATURE_HEADER]: "v1=zz" }),
    ],
    [
      "the bare secret",
      async (body: string) => ({ [TIMESTAMP_HEADER]: String(now()), [SIGNATURE_HEADER]: SECRET }),
    ],
  ])("%s: 401 and nothing is written", async (_case, makeHeaders) => {
    const t = newBackend();
    const body = sinkBody("deleteBatch", { table, xataIds: ["rec_a"] });
    await t.mutation(
      // Something to delete, so that a request that got through would show.
      (await import("../../convex/_generated/api")).internal.mirror.upsertBatch,
      { table, documents: [sampleDocument(table, "rec_a")] },
    );
    const answer = await post(t, body, { headers: await makeHeaders(body) });
    expect(answer.status).toBe(401);
    expect(answer.body.code).toBe("Unauthorized");
    const left = await t.run(async (ctx) => await ctx.db.query(table as never).collect());
    expect(left).toHaveLength(1);
  });

  test("during a rotation both the current and the previous secret sign, and several signatures may be sent", async () => {
    const t = newBackend();
    process.env[PREVIOUS_SECRET_VARIABLE] = ` ${PREVIOUS}\n`; // surrounding whitespace is ignored
    const body = sinkBody("schemaInfo", {});
    expect((await post(t, body, { secret: PREVIOUS })).status).toBe(200);
    expect((await post(t, body, { secret: SECRET })).status).toBe(200);
    const stamp = String(now());
    const both = [
      await computeSignature("an-outdated-secret-of-some-length", stamp, body),
      await computeSignature(PREVIOUS, stamp, body),
    ].join(", ");
    expect(
      (await post(t, body, { headers: { [TIMESTAMP_HEADER]: stamp, [SIGNATURE_HEADER]: both } })).status,
    ).toBe(200);
    delete process.env[PREVIOUS_SECRET_VARIABLE];
    expect((await post(t, body, { secret: PREVIOUS })).status).toBe(401);
  });

  test.each([
    ["an unknown op", sinkBody("create", { runId: "x" }), "op must be one of"],
    ["a prototype name as op", sinkBody("constructor", {}), "op must be one of"],
    ["a function path as op", sinkBody("syncRuns:create", {}), "op must be one of"],
    ["malformed JSON", '{"op": "schemaInfo", "args":', "not UTF-8 JSON"],
    ["a JSON array", "[]", "must be a JSON object"],
    ["args that are not an object", sinkBody("schemaInfo", [1]), "args must be a JSON object"],
    [
      "an extra field",
      JSON.stringify({ op: "schemaInfo", args: {}, path: "syncRuns:create" }),
      "unknown field(s)",
    ],
    ["args that are not Convex JSON", sinkBody("schemaInfo", { x: { $weird: 1 } }), "not Convex JSON"],
  ])("%s: 400, nothing runs", async (_case, body, message) => {
    const t = newBackend();
    const answer = await post(t, body);
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ code: "BadRequest" });
    expect(String(answer.body.message)).toContain(message);
  });

  test.each([
    ["deleteBatch", { table: "syncRuns", xataIds: ["x"] }, "UnknownTable"],
    ["upsertBatch", { table: "syncSchedule", documents: [{ xata_id: "x" }] }, "UnknownTable"],
    ["listPage", { table: "syncRuns", paginationOpts: { numItems: 10, cursor: null } }, "UnknownTable"],
  ])("a table outside the mirror (%s on %j) is refused with 400", async (op, args, code) => {
    const t = newBackend();
    await t.mutation((await import("../../convex/_generated/api")).internal.syncRuns.record, {
      runId: "keep",
    });
    const answer = await post(t, sinkBody(op, args));
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ status: "error", errorData: { code } });
    expect(await t.run(async (ctx) => await ctx.db.query("syncRuns").collect())).toHaveLength(1);
  });

  test("arguments the function's validator rejects get 400 with its message", async () => {
    const t = newBackend();
    const answer = await post(t, sinkBody("recordRun", { runId: "x", status: "done", extra: 1 }));
    expect(answer.status).toBe(400);
    expect(answer.body.status).toBe("error");
    expect(String(answer.body.errorMessage)).toMatch(/validator|status/i);
  });

  test("a body over the limit is refused before anything is verified or parsed", async () => {
    const t = newBackend();
    const body = sinkBody("schemaInfo", { pad: "x".repeat(MAX_BODY_BYTES) });
    const answer = await post(t, body);
    expect(answer).toMatchObject({ status: 413, body: { code: "BodyTooLarge" } });
  });

  test.each([
    ["unset", undefined],
    ["blank", "   "],
    ["too short", "short-secret"],
  ])("a sink secret %s in the Convex environment is a 500 naming the variable", async (_case, value) => {
    const t = newBackend();
    if (value === undefined) delete process.env[SECRET_VARIABLE];
    else process.env[SECRET_VARIABLE] = value;
    const answer = await post(t, sinkBody("schemaInfo", {}), { secret: value ?? "anything-at-all-here" });
    expect(answer).toMatchObject({ status: 500, body: { code: "NotConfigured" } });
    expect(String(answer.body.message)).toContain(SECRET_VARIABLE);
    if (value !== undefined && value.trim()) expect(answer.text).not.toContain(value);
  });

  test("only POST to the sink path is routed", async () => {
    const t = newBackend();
    expect((await t.fetch(SINK_PATH, { method: "GET" })).status).toBe(404);
    expect((await t.fetch("/xata2convex/other", { method: "POST", body: "{}" })).status).toBe(404);
  });
});
