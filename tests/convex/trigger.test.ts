import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { internal } from "../../convex/_generated/api";
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, computeSignature } from "../../convex/signing";
import * as triggerModule from "../../convex/trigger";
import { newBackend } from "./mirrorDocuments";

type Vector = { name: string; secret: string; timestamp: string; body: string; signature: string };
const vectors = JSON.parse(
  readFileSync(new URL("../fixtures/signing_vectors.json", import.meta.url), "utf8"),
) as { vectors: Vector[]; negative: (Vector & { reason: string })[] };

// Recognisable, so the tests can look for it where it must not be.
const SECRET = "whsec-FAKE-convex-trigger-secret-4b7e1d9a";
const AWS_SECRET = "FAKEawsSecretAccessKey/0123456789abcdefXYZ";
const ENV_NAMES = [
  "XATA2CONVEX_TRIGGER_URL",
  "XATA2CONVEX_TRIGGER_SECRET",
  "XATA2CONVEX_TRIGGER_AUTH",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_REGION",
];

/** A stand-in Function URL on a real socket: records each request and answers as told. */
type Received = { method: string; path: string; headers: http.IncomingHttpHeaders; body: string };
const received: Received[] = [];
let answer = { status: 202, body: "" };
let server: http.Server;
let baseUrl: string;

beforeAll(async () => {
  server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      received.push({ method: request.method!, path: request.url!, headers: request.headers, body });
      response.writeHead(answer.status, { "content-type": "application/json" }).end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

let savedEnv: Record<string, string | undefined>;
let logged: string[];
beforeEach(() => {
  savedEnv = Object.fromEntries(ENV_NAMES.map((name) => [name, process.env[name]]));
  for (const name of ENV_NAMES) delete process.env[name];
  process.env.XATA2CONVEX_TRIGGER_URL = `${baseUrl}/`;
  process.env.XATA2CONVEX_TRIGGER_SECRET = SECRET;
  received.length = 0;
  answer = { status: 202, body: "" };
  logged = [];
  for (const level of ["log", "info", "warn", "error"] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      logged.push(args.map(String).join(" "));
    });
  }
});
afterEach(() => {
  vi.restoreAllMocks();
  for (const [name, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

function expectSignedByTrigger(request: Received) {
  const timestamp = request.headers[TIMESTAMP_HEADER] as string;
  expect(timestamp).toMatch(/^\d+$/);
  expect(Math.abs(Number(timestamp) - Date.now() / 1000)).toBeLessThan(10);
  const expected = `v1=${createHmac("sha256", SECRET).update(`${timestamp}.${request.body}`).digest("hex")}`;
  expect(request.headers[SIGNATURE_HEADER]).toBe(expected);
}

/** `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`, split into its parts. */
function parseSigV4(header: string | undefined) {
  const match = /^AWS4-HMAC-SHA256 Credential=(\S+), SignedHeaders=(\S+), Signature=([0-9a-f]{64})$/.exec(
    header ?? "",
  );
  expect(match, `authorization header: ${header}`).not.toBeNull();
  return { credential: match![1]!, signedHeaders: match![2]!.split(";"), signature: match![3]! };
}

/** SigV4 recomputed from what arrived, as AWS would check it (service lambda, path "/"). */
function expectedSigV4(request: Received, auth: ReturnType<typeof parseSigV4>, secretKey: string): string {
  const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
  const hmac = (key: string | Buffer, text: string) => createHmac("sha256", key).update(text).digest();
  const [, date, region, service] = auth.credential.split("/") as [string, string, string, string];
  const canonicalHeaders = auth.signedHeaders
    .map((name) => `${name}:${String(request.headers[name]).trim()}\n`)
    .join("");
  const canonicalRequest = [
    request.method,
    request.path,
    "",
    canonicalHeaders,
    auth.signedHeaders.join(";"),
    sha256(request.body),
  ].join("\n");
  const scope = `${date}/${region}/${service}/aws4_request`;
  const amzDate = String(request.headers["x-amz-date"]);
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonicalRequest)].join("\n");
  const key = [date, region, service, "aws4_request"].reduce<Buffer | string>(
    (derived, part) => hmac(derived, part),
    `AWS4${secretKey}`,
  );
  return createHmac("sha256", key).update(stringToSign).digest("hex");
}

async function runDoc(t: ReturnType<typeof newBackend>, runId: string) {
  return await t.query(internal.syncRuns.get, { runId });
}

function expectNoSecret(...texts: unknown[]) {
  for (const text of [...texts, ...logged]) {
    const shown = JSON.stringify(text) ?? "";
    expect(shown).not.toContain(SECRET);
    expect(shown).not.toContain(AWS_SECRET);
  }
}

describe("signing", () => {
  test.each(vectors.vectors)("matches the shared vector: $name", async (vector) => {
    expect(await computeSignature(vector.secret, vector.timestamp, vector.body)).toBe(vector.signature);
  });

  test.each(vectors.negative.filter((vector) => vector.reason === "signature"))(
    "does not produce the refused signature: $name",
    async (vector) => {
      expect(await computeSignature(vector.secret, vector.timestamp, vector.body)).not.toBe(vector.signature);
    },
  );
});

describe("trigger", () => {
  test("is the module's only function, and internal", () => {
    const functions = Object.entries(triggerModule).filter(([, f]) => typeof f === "function");
    expect(functions.map(([name]) => name)).toEqual(["trigger"]);
    expect(triggerModule.trigger.isInternal).toBe(true);
    expect((triggerModule.trigger as { isPublic?: boolean }).isPublic).toBeUndefined();
  });

  test("records the run, then posts the signed trigger request to the Function URL", async () => {
    const t = newBackend();
    answer = { status: 202, body: '{"runId":"ignored"}' };
    const result = await t.action(internal.trigger.trigger, { mode: "full" });
    expect(result).toEqual({
      runId: expect.stringMatching(/^\d{8}T\d{6}Z-[0-9a-f]{6}$/),
      status: "pending",
      httpStatus: 202,
    });

    expect(received).toHaveLength(1);
    const request = received[0]!;
    expect(request.method).toBe("POST");
    expect(request.path).toBe("/");
    expect(request.body).toBe(JSON.stringify({ runId: result.runId, mode: "full" }));
    expect(request.headers["content-type"]).toBe("application/json");
    expect(request.headers.authorization).toBeUndefined();
    expectSignedByTrigger(request);

    expect(await runDoc(t, result.runId)).toMatchObject({
      runId: result.runId,
      status: "pending",
      mode: "full",
      trigger: "manual",
    });
    expectNoSecret(result, await runDoc(t, result.runId));
  });

  test("uses the given run id, incremental by default, and keeps the URL's path", async () => {
    const t = newBackend();
    process.env.XATA2CONVEX_TRIGGER_URL = `${baseUrl}/hooks/sync`;
    const result = await t.action(internal.trigger.trigger, { runId: "manual-0001", trigger: "cron" });
    expect(result).toEqual({ runId: "manual-0001", status: "pending", httpStatus: 202 });
    expect(received.map((request) => [request.path, request.body])).toEqual([
      ["/hooks/sync", '{"runId":"manual-0001","mode":"incremental"}'],
    ]);
    expectSignedByTrigger(received[0]!);
    expect(await runDoc(t, "manual-0001")).toMatchObject({ mode: "incremental", trigger: "cron" });
  });

  test("refuses a run id already recorded and leaves that run alone", async () => {
    const t = newBackend();
    await t.mutation(internal.syncRuns.record, { runId: "done-1", status: "succeeded" });
    await expect(t.action(internal.trigger.trigger, { runId: "done-1" })).rejects.toThrow(/done-1.*already/);
    await expect(t.action(internal.trigger.trigger, { runId: "bad id/1" })).rejects.toThrow(/bad id\/1/);
    expect(received).toEqual([]);
    expect(await runDoc(t, "done-1")).toMatchObject({ status: "succeeded" });
    expect(await runDoc(t, "bad id/1")).toBeNull();
  });

  test("of two concurrent triggers with one run id, one posts and the other leaves its run alone", async () => {
    const t = newBackend();
    const outcomes = await Promise.allSettled([
      t.action(internal.trigger.trigger, { runId: "twice-1" }),
      t.action(internal.trigger.trigger, { runId: "twice-1" }),
    ]);
    const fulfilled = outcomes.filter((outcome) => outcome.status === "fulfilled");
    const rejected = outcomes.filter((outcome) => outcome.status === "rejected");
    expect(fulfilled.map((outcome) => outcome.value)).toEqual([
      { runId: "twice-1", status: "pending", httpStatus: 202 },
    ]);
    expect(rejected.map((outcome) => String(outcome.reason))).toEqual([
      expect.stringMatching(/twice-1.*already recorded/),
    ]);
    expect(received).toHaveLength(1);
    expect(await runDoc(t, "twice-1")).toMatchObject({ status: "pending" });
    expect(await runDoc(t, "twice-1")).not.toHaveProperty("error");
  });

  test.each([
    ["XATA2CONVEX_TRIGGER_URL", /XATA2CONVEX_TRIGGER_URL is not set/],
    ["XATA2CONVEX_TRIGGER_SECRET", /XATA2CONVEX_TRIGGER_SECRET is not set/],
  ])("a missing %s fails the run, naming it, without a request", async (name, message) => {
    const t = newBackend();
    process.env[name] = "  ";
    const result = await t.action(internal.trigger.trigger, { runId: `missing-${name}` });
    expect(result).toMatchObject({ status: "failed", error: expect.stringMatching(message) });
    expect(result.httpStatus).toBeUndefined();
    expect(received).toEqual([]);
    const doc = await runDoc(t, result.runId);
    expect(doc).toMatchObject({ status: "failed", error: result.error, finishedAt: expect.any(Number) });
    expectNoSecret(result, doc);
  });

  test("an answer of 500 fails the run with the status and an excerpt of the body, secret scrubbed", async () => {
    const t = newBackend();
    answer = { status: 500, body: `{"error":"internal","message":"boom near ${SECRET} ${"x".repeat(500)}"}` };
    const result = await t.action(internal.trigger.trigger, {});
    expect(result).toMatchObject({ status: "failed", httpStatus: 500 });
    expect(result.error).toMatch(/HTTP 500.*internal: boom near \[redacted\]/);
    expect(received).toHaveLength(1);
    const doc = await runDoc(t, result.runId);
    expect(doc).toMatchObject({ status: "failed", error: result.error });
    expect(logged.some((line) => line.includes(result.runId) && line.includes("HTTP 500"))).toBe(true);
    expectNoSecret(result, doc);
  });

  test("a plain-text error answer is recorded as an excerpt", async () => {
    const t = newBackend();
    answer = { status: 403, body: `Forbidden\n${"y".repeat(1000)}` };
    const result = await t.action(internal.trigger.trigger, {});
    expect(result).toMatchObject({ status: "failed", httpStatus: 403 });
    expect(result.error).toMatch(/^the Function URL answered HTTP 403 \(expected 202\): Forbidden y+…$/);
    expect(result.error!.length).toBeLessThan(400);
  });

  test("an answer of 409 records the run as rejected with the handler's reason", async () => {
    const t = newBackend();
    answer = {
      status: 409,
      body: '{"error":"run_in_progress","message":"run 20251129T120000Z-a1b2c3 is in progress"}',
    };
    const result = await t.action(internal.trigger.trigger, { runId: "second-run" });
    expect(result).toEqual({
      runId: "second-run",
      status: "rejected",
      httpStatus: 409,
      error:
        "the Function URL refused the run (HTTP 409): run_in_progress: run 20251129T120000Z-a1b2c3 is in progress",
    });
    expect(await runDoc(t, "second-run")).toMatchObject({ status: "rejected", error: result.error });
    expectNoSecret(result);
  });

  test("a connection that fails is recorded as a failed run", async () => {
    const t = newBackend();
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    process.env.XATA2CONVEX_TRIGGER_URL = `http://127.0.0.1:${port}/`;
    const result = await t.action(internal.trigger.trigger, {});
    expect(result).toMatchObject({
      status: "failed",
      error: expect.stringMatching(/POST to the Function URL failed/),
    });
    expect(await runDoc(t, result.runId)).toMatchObject({ status: "failed", error: result.error });
    expectNoSecret(result);
  });

  test("an unknown auth mode fails the run", async () => {
    const t = newBackend();
    process.env.XATA2CONVEX_TRIGGER_AUTH = "mtls";
    const result = await t.action(internal.trigger.trigger, {});
    expect(result).toMatchObject({
      status: "failed",
      error: expect.stringMatching(/XATA2CONVEX_TRIGGER_AUTH.*mtls/),
    });
    expect(received).toEqual([]);
  });

  describe("aws_iam", () => {
    beforeEach(() => {
      process.env.XATA2CONVEX_TRIGGER_AUTH = "aws_iam";
      process.env.AWS_ACCESS_KEY_ID = "AKIAFAKEEXAMPLE12345";
      process.env.AWS_SECRET_ACCESS_KEY = AWS_SECRET;
      process.env.AWS_REGION = "eu-west-1";
    });

    test("SigV4-signs the request for lambda and still sends the HMAC headers", async () => {
      const t = newBackend();
      process.env.AWS_SESSION_TOKEN = "FAKE-session-token";
      const result = await t.action(internal.trigger.trigger, { mode: "full" });
      expect(result).toMatchObject({ status: "pending", httpStatus: 202 });
      const request = received[0]!;
      expect(request.body).toBe(JSON.stringify({ runId: result.runId, mode: "full" }));
      expectSignedByTrigger(request);
      const authorization = parseSigV4(request.headers.authorization);
      expect(authorization.credential).toMatch(
        /^AKIAFAKEEXAMPLE12345\/\d{8}\/eu-west-1\/lambda\/aws4_request$/,
      );
      expect(authorization.signedHeaders).toEqual(
        expect.arrayContaining(["host", "x-amz-date", "x-xata2convex-signature", "x-xata2convex-timestamp"]),
      );
      expect(authorization.signature).toBe(expectedSigV4(request, authorization, AWS_SECRET));
      expect(request.headers["x-amz-date"]).toMatch(/^\d{8}T\d{6}Z$/);
      expect(request.headers["x-amz-security-token"]).toBe("FAKE-session-token");
      expectNoSecret(result, request.headers);
    });

    test("without AWS_REGION, a URL that is not a Function URL (naming its region) fails the run", async () => {
      const t = newBackend();
      delete process.env.AWS_REGION;
      const noRegion = await t.action(internal.trigger.trigger, {});
      expect(noRegion.error).toMatch(/AWS_REGION is not set/);
      expect(received).toEqual([]);
    });

    test.each(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])("a missing %s fails the run", async (name) => {
      const t = newBackend();
      delete process.env[name];
      const result = await t.action(internal.trigger.trigger, {});
      expect(result).toMatchObject({
        status: "failed",
        error: expect.stringContaining(`${name} is not set`),
      });
      expect(received).toEqual([]);
      expectNoSecret(result);
    });
  });
});
