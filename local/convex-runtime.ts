/**
 * The deployment behind the local Convex server: the project's `convex/` functions running in
 * the official convex-test backend, with schema validation, Convex's transaction limits and
 * the crons component, and its HTTP actions. Knows nothing about serving HTTP.
 */
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import * as convexTestModule from "convex-test";
import { type SchemaDefinition, makeFunctionReference } from "convex/server";
import type { Value } from "convex/values";
import { installEqualityIndex } from "./equality-index";

const { convexTest } = convexTestModule;

export type FunctionKind = "query" | "mutation" | "action";

type ModuleLoader = () => Promise<Record<string, unknown>>;
type RegisteredFunction = {
  isQuery?: boolean;
  isMutation?: boolean;
  isAction?: boolean;
  isInternal?: boolean;
  isPublic?: boolean;
};

/** A function error as Convex reports it: the message, and the ConvexError data if any. */
export class FunctionError extends Error {
  constructor(
    message: string,
    readonly data?: Value,
  ) {
    super(message);
  }
}

/** `module:fn`, `module` (the default export) and `module.js:fn` name the same function. */
export function canonicalPath(udfPath: string): string | null {
  const match = /^([A-Za-z0-9_\-.]+(?:\/[A-Za-z0-9_\-.]+)*)(?::([A-Za-z_$][A-Za-z0-9_$]*))?$/.exec(udfPath);
  if (match === null) return null;
  return `${match[1]!.replace(/\.js$/, "")}:${match[2] ?? "default"}`;
}

/** Every module file under `dir` (recursively), keyed by absolute path, loaded on demand. */
function moduleMap(dir: string, accept: (file: string) => boolean): Record<string, ModuleLoader> {
  const modules: Record<string, ModuleLoader> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    if (entry.isFile() && accept(file)) {
      modules[file] = () => import(pathToFileURL(file).href) as Promise<Record<string, unknown>>;
    }
  }
  return modules;
}

const isSourceModule = (file: string): boolean =>
  /\.(ts|js|mjs)$/.test(file) && !/\.d\.ts$/.test(file) && !/\.test\.(ts|js)$/.test(file);

function cronsComponentDir(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve("@convex-dev/crons/package.json")), "dist", "component");
}

export class Deployment {
  private constructor(
    private readonly t: ReturnType<typeof convexTest>,
    private readonly functions: Map<string, ModuleLoader>,
  ) {}

  /** Load `<projectDir>/convex` into a fresh in-memory backend. */
  static async load(projectDir: string): Promise<Deployment> {
    const convexDir = path.resolve(projectDir, "convex");
    const modules = moduleMap(convexDir, isSourceModule);
    const schemaModule = Object.keys(modules).find((file) =>
      /^schema\.(ts|js)$/.test(path.relative(convexDir, file)),
    );
    if (schemaModule === undefined) throw new Error(`No schema.ts in ${convexDir}`);
    const schema = (await modules[schemaModule]!()).default as SchemaDefinition<any, boolean>;
    // convex-test exports its DatabaseFake only when loaded through the server's module hook.
    if (!installEqualityIndex((convexTestModule as { __DatabaseFake?: never }).__DatabaseFake)) {
      console.error("local convex: convex-test internals changed; index lookups scan whole tables (slow)");
    }
    const t = convexTest({ schema, modules, transactionLimits: true });

    const componentDir = cronsComponentDir();
    const componentModules = moduleMap(componentDir, (file) => file.endsWith(".js"));
    const componentSchema = (await import(pathToFileURL(path.join(componentDir, "schema.js")).href)).default;
    t.registerComponent("crons", componentSchema, componentModules);

    const functions = new Map<string, ModuleLoader>();
    for (const [file, load] of Object.entries(modules)) {
      const name = path
        .relative(convexDir, file)
        .replace(/\.[^.]+$/, "")
        .split(path.sep)
        .join("/");
      if (!name.startsWith("_generated/")) functions.set(name, load);
    }
    return new Deployment(t, functions);
  }

  /** Serve an HTTP request with the project's `convex/http.ts` router, as `https://<name>.convex.site`. */
  async fetch(pathAndQuery: string, init: RequestInit): Promise<Response> {
    return await this.t.fetch(pathAndQuery, init);
  }

  /**
   * Run `udfPath` (canonical `module:fn`) as `kind`. Internal functions are visible only to
   * admin callers; to everybody else they do not exist, as on Convex.
   */
  async call(
    kind: FunctionKind,
    udfPath: string,
    args: Record<string, Value>,
    admin: boolean,
  ): Promise<Value> {
    const [moduleName, exportName] = udfPath.split(":") as [string, string];
    const load = this.functions.get(moduleName);
    const func = (load === undefined ? undefined : (await load())[exportName]) as
      RegisteredFunction | undefined;
    const registered = func?.isQuery || func?.isMutation || func?.isAction;
    if (!registered || (func.isInternal && !admin)) {
      const shown = exportName === "default" ? moduleName : udfPath;
      throw new FunctionError(
        `Could not find public function for '${shown}'. Did you forget to run \`npx convex dev\` or \`npx convex deploy\`?`,
      );
    }
    const defined = func.isQuery ? "Query" : func.isMutation ? "Mutation" : "Action";
    if (defined.toLowerCase() !== kind) {
      throw new FunctionError(
        `Trying to execute ${udfPath} as ${kind[0]!.toUpperCase()}${kind.slice(1)}, but it is defined as ${defined}.`,
      );
    }
    try {
      switch (kind) {
        case "query":
          return await this.t.query(makeFunctionReference<"query">(udfPath), args);
        case "mutation":
          return await this.t.mutation(makeFunctionReference<"mutation">(udfPath), args);
        case "action":
          return await this.t.action(makeFunctionReference<"action">(udfPath), args);
      }
    } catch (error) {
      throw asFunctionError(error);
    }
  }
}

function asFunctionError(error: unknown): FunctionError {
  if (error instanceof Error) {
    const data = error.name === "ConvexError" ? (error as { data?: Value }).data : undefined;
    return new FunctionError(error.message, data);
  }
  return new FunctionError(String(error));
}
