/**
 * Start a sync: record the run in `syncRuns`, then send the signed trigger request to the sync
 * Lambda's Function URL. Configuration (Convex environment variables):
 *   XATA2CONVEX_TRIGGER_URL     the Function URL
 *   XATA2CONVEX_TRIGGER_SECRET  the signing secret (the handler checks the HMAC in both auth modes)
 *   XATA2CONVEX_TRIGGER_AUTH    "hmac" (default) or "aws_iam": also SigV4-sign the request with
 *                               AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (optional)
 *                               and AWS_REGION (default: the region in the Function URL's host)
 * A malformed run id, or one already in syncRuns, throws a ConvexError and records nothing. Every
 * later failure is recorded on the run (status "failed", or "rejected" for the handler's 409) and
 * returned, not thrown. No secret reaches syncRuns, logs or errors.
 */
import { AwsClient } from "aws4fetch";
import { ConvexError, type Infer, v } from "convex/values";
import { internal } from "./_generated/api";
import { internalAction } from "./_generated/server";
import { syncRunMode, syncRunStatus } from "./schema";
import { redact, signatureHeaders, toHex } from "./signing";

const URL_VARIABLE = "XATA2CONVEX_TRIGGER_URL";
const SECRET_VARIABLE = "XATA2CONVEX_TRIGGER_SECRET";
const AUTH_VARIABLE = "XATA2CONVEX_TRIGGER_AUTH";
// The handler answers at once (the work runs asynchronously); this only bounds a cold start.
const REQUEST_TIMEOUT_MS = 30_000;
const EXCERPT_CHARS = 300;
// The run ids the Function URL handler accepts.
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const FUNCTION_URL_HOST = /^[^.]+\.lambda-url\.([^.]+)\.on\.aws$/;

export const triggerResult = v.object({
  runId: v.string(),
  /** "pending" once the Function URL accepted the run (202); then the worker reports progress. */
  status: syncRunStatus,
  httpStatus: v.optional(v.number()),
  error: v.optional(v.string()),
});
type TriggerResult = Infer<typeof triggerResult>;

/** Why a trigger did not start a run; its message is what syncRuns records. */
class TriggerFailure extends Error {
  constructor(
    message: string,
    readonly status: "failed" | "rejected" = "failed",
    readonly httpStatus?: number,
  ) {
    super(message);
  }
}

const env = (name: string): string | undefined => process.env[name]?.trim() || undefined;

function required(name: string, purpose: string): string {
  const value = env(name);
  if (value === undefined) {
    throw new TriggerFailure(`${name} is not set: ${purpose} (npx convex env set ${name} ...)`);
  }
  return value;
}

/** Sorts by time, like the snapshot ids: 20261129T120000Z-3f9c2e. */
function newRunId(now: Date = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `${stamp}-${toHex(crypto.getRandomValues(new Uint8Array(3)))}`;
}

/** The trigger POST, signed as XATA2CONVEX_TRIGGER_AUTH says. */
async function signedRequest(body: string): Promise<Request> {
  const url = required(URL_VARIABLE, "the sync Lambda's Function URL");
  const secret = required(SECRET_VARIABLE, "the secret that signs trigger requests");
  const auth = env(AUTH_VARIABLE)?.toLowerCase() ?? "hmac";
  const headers = { "content-type": "application/json", ...(await signatureHeaders(secret, body)) };
  if (auth === "hmac") return new Request(url, { method: "POST", headers, body });
  if (auth !== "aws_iam") {
    throw new TriggerFailure(`${AUTH_VARIABLE} must be "hmac" or "aws_iam", not "${auth}"`);
  }
  const region = env("AWS_REGION") ?? FUNCTION_URL_HOST.exec(new URL(url).hostname)?.[1];
  if (region === undefined) {
    throw new TriggerFailure(`AWS_REGION is not set and ${URL_VARIABLE} is not a Function URL naming one`);
  }
  const client = new AwsClient({
    accessKeyId: required("AWS_ACCESS_KEY_ID", "aws_iam auth signs with an access key"),
    secretAccessKey: required("AWS_SECRET_ACCESS_KEY", "aws_iam auth signs with an access key"),
    sessionToken: env("AWS_SESSION_TOKEN"),
    region,
    service: "lambda",
  });
  // sign + one fetch, not client.fetch: its retries would resend the run id and meet the replay guard.
  return await client.sign(url, { method: "POST", headers, body });
}

async function send(request: Request): Promise<Response> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  try {
    return await fetch(request, { signal: controller.signal });
  } catch (error) {
    if (controller.signal.aborted) {
      throw new TriggerFailure(`the Function URL did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
    }
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const detail = cause?.code ?? cause?.message;
    throw new TriggerFailure(
      `POST to the Function URL failed: ${(error as Error).message}${detail ? ` (${detail})` : ""}`,
    );
  } finally {
    clearTimeout(timer);
  }
}

/** The handler's `{"error", "message"}` answer, or the start of whatever else came back. */
function reason(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof parsed.message === "string") {
      return typeof parsed.error === "string" ? `${parsed.error}: ${parsed.message}` : parsed.message;
    }
  } catch {
    // Not JSON: fall through to the excerpt.
  }
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > EXCERPT_CHARS ? `${flat.slice(0, EXCERPT_CHARS)}…` : flat || "(empty body)";
}

function scrub(text: string): string {
  const secrets = [SECRET_VARIABLE, "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    .map(env)
    .filter((value): value is string => value !== undefined);
  return redact(text, secrets);
}

export const trigger = internalAction({
  args: {
    mode: v.optional(syncRunMode),
    runId: v.optional(v.string()),
    /** Recorded on the run; the sync cron passes "cron". */
    trigger: v.optional(v.union(v.literal("cron"), v.literal("manual"))),
  },
  returns: triggerResult,
  handler: async (ctx, args): Promise<TriggerResult> => {
    const mode = args.mode ?? "incremental";
    const runId = args.runId ?? newRunId();
    if (!RUN_ID.test(runId)) {
      throw new ConvexError(`runId "${runId}" must match ${RUN_ID.source}`);
    }
    // The handler refuses a run id twice (409); `create` refuses it first, atomically, so the
    // earlier run's record stays intact.
    await ctx.runMutation(internal.syncRuns.create, {
      runId,
      mode,
      trigger: args.trigger ?? "manual",
      startedAt: Date.now(),
    });
    try {
      const response = await send(await signedRequest(JSON.stringify({ runId, mode })));
      const text = await response.text().catch(() => "");
      if (response.status === 202) {
        console.log(`run ${runId} (${mode}) accepted by the Function URL`);
        // No write here: the worker may already be reporting progress on this run.
        return { runId, status: "pending", httpStatus: 202 };
      }
      if (response.status === 409) {
        throw new TriggerFailure(
          `the Function URL refused the run (HTTP 409): ${reason(text)}`,
          "rejected",
          409,
        );
      }
      throw new TriggerFailure(
        `the Function URL answered HTTP ${response.status} (expected 202): ${reason(text)}`,
        "failed",
        response.status,
      );
    } catch (caught) {
      const failure =
        caught instanceof TriggerFailure ? caught : new TriggerFailure(`trigger failed: ${String(caught)}`);
      const error = scrub(failure.message);
      console.error(`run ${runId}: ${error}`);
      await ctx.runMutation(internal.syncRuns.failPending, {
        runId,
        status: failure.status,
        error,
        finishedAt: Date.now(),
      });
      return {
        runId,
        status: failure.status,
        error,
        ...(failure.httpStatus === undefined ? {} : { httpStatus: failure.httpStatus }),
      };
    }
  },
});
