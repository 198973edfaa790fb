/**
 * The sink: how the Lambdas write the mirror without a deploy key.
 *
 *   POST /xata2convex/sink  {"op": "upsertBatch" | "deleteBatch" | "listPage" | "schemaInfo" | "recordRun"
 *                            | "resolveLinks",
 *                            "args": {...}}   (args in Convex's JSON encoding: int64 as {"$integer": ...})
 *
 * signed like the trigger request with XATA2CONVEX_SINK_SECRET (or, during a rotation,
 * XATA2CONVEX_SINK_SECRET_PREVIOUS). Each op runs exactly one internal function, whose validators
 * apply; nothing else is reachable. Answers (JSON):
 *   200 {"status": "success", "value"}            the function's return value, Convex-JSON encoded
 *   400 {"status": "error", "errorMessage", "errorData"?}  the function refused (e.g. a table outside
 *                                                  the mirror, arguments its validator rejects)
 *   400 / 413 {"code", "message"}                  not a sink request (malformed body, unknown op, size)
 *   401 {"code": "Unauthorized", "message"}        missing, wrong, stale or future signature
 *   500 {"code": "NotConfigured", "message"}       no usable secret is set in the Convex environment
 * No answer or log line carries a secret.
 */
import { type FunctionReference, httpRouter } from "convex/server";
import { ConvexError, type JSONValue, type Value, convexToJson, jsonToConvex } from "convex/values";
import { internal } from "./_generated/api";
import { type ActionCtx, httpAction } from "./_generated/server";
import { redact, signatureProblem } from "./signing";

export const SINK_PATH = "/xata2convex/sink";
export const SECRET_VARIABLE = "XATA2CONVEX_SINK_SECRET";
export const PREVIOUS_SECRET_VARIABLE = "XATA2CONVEX_SINK_SECRET_PREVIOUS";
// The same floor as the Python loader's: a short secret is a mistake, not a secret.
const MIN_SECRET_LENGTH = 16;
// Convex's argument limit; the Python sink sends batches of at most 4 MiB.
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

type Query = FunctionReference<"query", "internal">;
type Mutation = FunctionReference<"mutation", "internal">;
type Operation = { query: Query } | { mutation: Mutation };

/** Every function the sink reaches, by op name. */
const OPERATIONS: Record<string, Operation> = {
  upsertBatch: { mutation: internal.mirror.upsertBatch },
  deleteBatch: { mutation: internal.mirror.deleteBatch },
  listPage: { query: internal.mirror.listPage },
  schemaInfo: { query: internal.mirror.schemaInfo },
  recordRun: { mutation: internal.syncRuns.record },
  resolveLinks: { mutation: internal.mirror.resolveLinks },
};

function reply(status: number, body: JSONValue): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

const refuse = (status: number, code: string, message: string): Response => reply(status, { code, message });

/** The secrets that may sign a request now: the current one and, during a rotation, the previous. */
function sinkSecrets(): string[] {
  return [SECRET_VARIABLE, PREVIOUS_SECRET_VARIABLE]
    .map((name) => process.env[name]?.trim() ?? "")
    .filter((secret) => secret.length > 0);
}

/** The body's bytes, or null when it is larger than MAX_BODY_BYTES. */
async function boundedBody(request: Request): Promise<Uint8Array | null> {
  if (Number(request.headers.get("content-length") ?? 0) > MAX_BODY_BYTES) return null;
  const body = new Uint8Array(await request.arrayBuffer());
  return body.byteLength > MAX_BODY_BYTES ? null : body;
}

type SinkRequest = { operation: Operation; op: string; args: Record<string, Value> };

/** The op and its decoded arguments, or why the body is not a sink request. */
function parseRequest(body: Uint8Array): SinkRequest | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    return "the body is not UTF-8 JSON";
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return 'the body must be a JSON object {"op": ..., "args": {...}}';
  }
  const { op, args, ...rest } = parsed as { op?: unknown; args?: unknown };
  const unknown = Object.keys(rest);
  if (unknown.length > 0) return `unknown field(s) in the body: ${unknown.sort().join(", ")}`;
  if (typeof op !== "string" || !Object.hasOwn(OPERATIONS, op)) {
    return `op must be one of ${Object.keys(OPERATIONS).join(", ")}`;
  }
  if (typeof args !== "object" || args === null || Array.isArray(args)) return "args must be a JSON object";
  let decoded: Value;
  try {
    decoded = jsonToConvex(args as JSONValue);
  } catch (error) {
    return `args are not Convex JSON: ${error instanceof Error ? error.message : String(error)}`;
  }
  return { operation: OPERATIONS[op]!, op, args: decoded as Record<string, Value> };
}

async function run(ctx: ActionCtx, { operation, args }: SinkRequest): Promise<Value> {
  if ("query" in operation) return (await ctx.runQuery(operation.query, args)) as Value;
  return (await ctx.runMutation(operation.mutation, args)) as Value;
}

export const sink = httpAction(async (ctx, request) => {
  const secrets = sinkSecrets();
  if (secrets.length === 0 || secrets.some((secret) => secret.length < MIN_SECRET_LENGTH)) {
    console.error(
      `sink refused: ${SECRET_VARIABLE} (and ${PREVIOUS_SECRET_VARIABLE}, when set) must be at least ${MIN_SECRET_LENGTH} characters`,
    );
    return refuse(
      500,
      "NotConfigured",
      `the sink is not configured: set ${SECRET_VARIABLE} (at least ${MIN_SECRET_LENGTH} characters) in the Convex environment`,
    );
  }
  const body = await boundedBody(request);
  if (body === null) return refuse(413, "BodyTooLarge", `the body is over ${MAX_BODY_BYTES} bytes`);
  // Nothing is parsed before the signature checks out.
  const problem = await signatureProblem(secrets, request.headers, body);
  if (problem !== null) {
    console.warn(`sink refused (401): ${problem}`);
    return refuse(401, "Unauthorized", problem);
  }
  const parsed = parseRequest(body);
  if (typeof parsed === "string") {
    console.warn(`sink refused (400): ${parsed}`);
    return refuse(400, "BadRequest", parsed);
  }
  try {
    const value = await run(ctx, parsed);
    return reply(200, { status: "success", value: convexToJson(value) });
  } catch (error) {
    const message = redact(error instanceof Error ? error.message : String(error), secrets);
    console.warn(`sink ${parsed.op} failed: ${message}`);
    const data = error instanceof ConvexError ? (error.data as Value) : undefined;
    return reply(400, {
      status: "error",
      errorMessage: message,
      ...(data === undefined ? {} : { errorData: convexToJson(data) }),
    });
  }
});

const http = httpRouter();
http.route({ path: SINK_PATH, method: "POST", handler: sink });

export default http;
