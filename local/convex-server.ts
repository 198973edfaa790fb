/**
 * A local stand-in for a Convex deployment, speaking Convex's HTTP API:
 *   POST /api/query | /api/mutation | /api/action  {"path", "args", "format"?}
 * with `Authorization: Convex <deploy key>` for admin calls (the only way to reach internal
 * functions), and a request log for tests: GET /_local/log, DELETE /_local/log. On a second port,
 * the site (CONVEX_SITE_URL, `https://<name>.convex.site` in Convex): the project's HTTP actions
 * (`convex/http.ts`), among them the signed sink.
 *
 * Usage: node --import tsx local/convex-server.ts [--port N] [--site-port N] [--host H] [--dir PROJECT]
 * Serves PROJECT/convex (default: the current directory's). The deploy key is $CONVEX_DEPLOY_KEY and
 * the sink secret $XATA2CONVEX_SINK_SECRET, or random ones printed once ready.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { register } from "node:module";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { type JSONValue, type Value, convexToJson, jsonToConvex } from "convex/values";
import type { Deployment, FunctionKind } from "./convex-runtime";

/** Module hook: make convex-test also export its DatabaseFake, for ./equality-index. */
const EXPOSE_DATABASE_FAKE = `
export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (!url.endsWith("/node_modules/convex-test/dist/index.js") || result.source == null) return result;
  const text = typeof result.source === "string" ? result.source : new TextDecoder().decode(result.source);
  const source = text + "\\nexport { DatabaseFake as __DatabaseFake };\\n";
  return { ...result, source, shortCircuit: true };
}`;
register(`data:text/javascript,${encodeURIComponent(EXPOSE_DATABASE_FAKE)}`);
// Imported after the hook is registered, so that convex-test is loaded through it.
const { Deployment: DeploymentClass, FunctionError, canonicalPath } = await import("./convex-runtime");

type LogEntry = {
  seq: number;
  path: string;
  kind: FunctionKind | "http";
  admin: boolean;
  status: "success" | "error";
  table?: string;
  documents?: number;
  ids?: number;
  result?: JSONValue;
};

type Reply = { httpStatus: number; body: JSONValue };

const KINDS: Record<string, FunctionKind> = {
  "/api/query": "query",
  "/api/mutation": "mutation",
  "/api/action": "action",
};
const FORMATS = new Set(["json", "convex_encoded_json"]);

/** An error Convex answers before running any function: `{code, message}` with a 4xx status. */
const requestError = (httpStatus: number, code: string, message: string): Reply => ({
  httpStatus,
  body: { code, message },
});

/** Convex's "json" format: plain JSON, int64 as a decimal string, bytes as base64. */
function cleanJson(value: Value): JSONValue {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof ArrayBuffer) return Buffer.from(value).toString("base64");
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  if (Array.isArray(value)) return value.map(cleanJson);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, field]) => field !== undefined)
        .map(([key, field]) => [key, cleanJson(field as Value)]),
    );
  }
  return value;
}

/**
 * JSON text as Convex's backend writes it: every plain number is a float64 and keeps a decimal
 * point (`1.0`), which clients such as the Python `convex` package rely on to tell it from int64.
 */
function toJsonText(value: JSONValue): string {
  if (typeof value === "number") {
    return Number.isInteger(value) && Math.abs(value) < 1e21
      ? `${Object.is(value, -0) ? "-0" : value}.0`
      : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(toJsonText).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const fields = Object.entries(value).filter(([, field]) => field !== undefined);
    return `{${fields.map(([key, field]) => `${JSON.stringify(key)}:${toJsonText(field)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

const exportValue = (value: Value, format: string | undefined): JSONValue =>
  format === "convex_encoded_json" ? convexToJson(value) : cleanJson(value);

/** What the mirror writes, so tests can assert exactly which documents reached Convex. */
function writeDetails(udfPath: string, args: Record<string, Value>): Partial<LogEntry> {
  if (udfPath === "mirror:upsertBatch" && Array.isArray(args.documents)) {
    return { table: String(args.table), documents: args.documents.length };
  }
  if (udfPath === "mirror:deleteBatch" && Array.isArray(args.xataIds)) {
    return { table: String(args.table), ids: args.xataIds.length };
  }
  return {};
}

class LocalConvexServer {
  private readonly log: LogEntry[] = [];
  private seq = 0;
  // Convex runs transactions serializably; one call at a time gives the same guarantee here.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deployment: Deployment,
    private readonly deployKey: string,
  ) {}

  private isAdmin(authorization: string | undefined): boolean | "bad" {
    if (authorization === undefined || !authorization.startsWith("Convex ")) return false;
    const given = Buffer.from(authorization.slice("Convex ".length));
    const expected = Buffer.from(this.deployKey);
    return given.length === expected.length && timingSafeEqual(given, expected) ? true : "bad";
  }

  async handle(kind: FunctionKind, rawBody: string, authorization: string | undefined): Promise<Reply> {
    const admin = this.isAdmin(authorization);
    if (admin === "bad") {
      return requestError(401, "BadAdminKey", "The provided admin key was invalid for this instance");
    }
    let request: { path?: unknown; args?: unknown; format?: unknown };
    try {
      request = JSON.parse(rawBody) as typeof request;
    } catch (error) {
      return requestError(400, "BadJsonBody", `Failed to parse the request body as JSON: ${String(error)}`);
    }
    if (typeof request !== "object" || request === null || typeof request.path !== "string") {
      return requestError(400, "BadJsonBody", "Failed to deserialize the JSON body: missing field `path`");
    }
    const format = request.format;
    if (format !== undefined && (typeof format !== "string" || !FORMATS.has(format))) {
      return requestError(400, "InvalidFormat", `Invalid value format: ${JSON.stringify(format)}`);
    }
    const udfPath = canonicalPath(request.path);
    if (udfPath === null) {
      return requestError(
        400,
        "InvalidConvexFunction",
        `Failed to parse Convex function path: ${request.path}`,
      );
    }
    // Convex accepts the arguments object or a one-element array of it (older clients).
    const rawArgs = Array.isArray(request.args) ? request.args[0] : (request.args ?? {});
    let args: Record<string, Value>;
    try {
      args = jsonToConvex(rawArgs as JSONValue) as Record<string, Value>;
    } catch (error) {
      return requestError(400, "InvalidArgs", `Invalid arguments for ${udfPath}: ${String(error)}`);
    }
    if (typeof args !== "object" || args === null || Array.isArray(args)) {
      return requestError(400, "InvalidArgs", `The arguments to ${udfPath} must be an object`);
    }
    const run = this.queue.then(() => this.deployment.call(kind, udfPath, args, admin));
    this.queue = run.catch(() => undefined);
    const entry: LogEntry = {
      seq: ++this.seq,
      path: udfPath,
      kind,
      admin,
      status: "success",
      ...writeDetails(udfPath, args),
    };
    this.log.push(entry);
    try {
      const value = await run;
      if (entry.table !== undefined) entry.result = convexToJson(value);
      return {
        httpStatus: 200,
        body: { status: "success", value: exportValue(value, format), logLines: [] },
      };
    } catch (error) {
      entry.status = "error";
      const failure = error instanceof FunctionError ? error : new FunctionError(String(error));
      const body: Record<string, JSONValue> = {
        status: "error",
        errorMessage: failure.message,
        logLines: [],
      };
      if (failure.data !== undefined) body.errorData = exportValue(failure.data, format);
      // Convex answers a function's own failure with 200 and `status: "error"`.
      return { httpStatus: 200, body };
    }
  }

  /** The site: each request goes to the project's HTTP router, one call at a time like the API. */
  siteListener(): http.RequestListener {
    return (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const headers = new Headers();
        for (const [name, value] of Object.entries(req.headers)) {
          if (typeof value === "string") headers.set(name, value);
        }
        const method = req.method ?? "GET";
        const body = method === "GET" || method === "HEAD" ? undefined : Buffer.concat(chunks);
        const url = new URL(req.url ?? "/", "http://localhost");
        const entry: LogEntry = {
          seq: ++this.seq,
          path: `http:${url.pathname}`,
          kind: "http",
          admin: false,
          status: "success",
        };
        this.log.push(entry);
        const run = this.queue.then(() =>
          this.deployment.fetch(`${url.pathname}${url.search}`, { method, headers, body }),
        );
        this.queue = run.catch(() => undefined);
        void run
          .then(async (response) => {
            if (!response.ok) entry.status = "error";
            const answerHeaders: Record<string, string> = {};
            response.headers.forEach((value, name) => {
              answerHeaders[name] = value;
            });
            res.writeHead(response.status, answerHeaders);
            res.end(Buffer.from(await response.arrayBuffer()));
          })
          .catch((error: unknown) => {
            entry.status = "error";
            res.writeHead(500, { "Content-Type": "text/plain" });
            res.end(`local convex: the HTTP action failed: ${String(error)}`);
          });
      });
    };
  }

  listener(): http.RequestListener {
    return (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const url = new URL(req.url ?? "/", "http://localhost");
        void this.route(
          req.method,
          url.pathname,
          req.headers.authorization,
          Buffer.concat(chunks).toString("utf8"),
        ).then(({ httpStatus, body }) => {
          res.writeHead(httpStatus, { "Content-Type": "application/json" });
          res.end(url.pathname.startsWith("/api/") ? toJsonText(body) : JSON.stringify(body));
        });
      });
    };
  }

  private async route(
    method: string | undefined,
    pathname: string,
    authorization: string | undefined,
    body: string,
  ): Promise<Reply> {
    const kind = KINDS[pathname];
    if (kind !== undefined) {
      if (method !== "POST") return requestError(405, "MethodNotAllowed", `Use POST for ${pathname}`);
      try {
        return await this.handle(kind, body, authorization);
      } catch (error) {
        return requestError(500, "InternalServerError", String(error));
      }
    }
    if (pathname === "/_local/log") {
      if (method === "GET") return { httpStatus: 200, body: this.log };
      if (method === "DELETE") {
        this.log.length = 0;
        return { httpStatus: 200, body: { cleared: true } };
      }
    }
    return requestError(404, "NotFound", `No route for ${method} ${pathname}`);
  }
}

const listening = (server: http.Server, port: number, host: string): Promise<number> =>
  new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: "3290" },
      // Default: the next port (3291), any free one with --port 0.
      "site-port": { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      dir: { type: "string", default: process.cwd() },
    },
  });
  const generatedKey = process.env.CONVEX_DEPLOY_KEY === undefined || process.env.CONVEX_DEPLOY_KEY === "";
  const deployKey = generatedKey
    ? `local:xata2convex|${randomBytes(24).toString("hex")}`
    : process.env.CONVEX_DEPLOY_KEY!;
  const generatedSecret = !process.env.XATA2CONVEX_SINK_SECRET?.trim();
  // The functions read it from the environment, as in a Convex deployment.
  if (generatedSecret) process.env.XATA2CONVEX_SINK_SECRET = randomBytes(32).toString("hex");
  const deployment = await DeploymentClass.load(values.dir);
  const convex = new LocalConvexServer(deployment, deployKey);
  const port = Number(values.port);
  const sitePort =
    values["site-port"] === undefined ? (port === 0 ? 0 : port + 1) : Number(values["site-port"]);
  const apiPort = await listening(http.createServer(convex.listener()), port, values.host);
  const siteBound = await listening(http.createServer(convex.siteListener()), sitePort, values.host);
  const lines = [
    `CONVEX_URL=http://${values.host}:${apiPort}`,
    `CONVEX_SITE_URL=http://${values.host}:${siteBound}`,
  ];
  if (generatedKey) lines.push(`CONVEX_DEPLOY_KEY=${deployKey}`);
  if (generatedSecret) lines.push(`XATA2CONVEX_SINK_SECRET=${process.env.XATA2CONVEX_SINK_SECRET}`);
  process.stdout.write(`${lines.join("\n")}\nlocal convex ready\n`);
  // A failed scheduled function must not take the whole deployment down.
  process.on("unhandledRejection", (reason) => console.error("local convex: unhandled rejection:", reason));
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(0));
}

main().catch((error: unknown) => {
  console.error("local convex failed to start:", error);
  process.exit(1);
});
