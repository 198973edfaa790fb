/* eslint-disable */
/**
 * Generated `api` utility.
 *
 * THIS CODE IS AUTOMATICALLY GENERATED.
 *
 * To regenerate, run `npx convex dev`.
 * @module
 */

import type {
  ApiFromModules,
  FilterApi,
  FunctionReference,
} from "convex/server";
import type * as http from "../http.js";
import type * as init from "../init.js";
import type * as mirror from "../mirror.js";
import type * as schedule from "../schedule.js";
import type * as signing from "../signing.js";
import type * as syncRuns from "../syncRuns.js";
import type * as trigger from "../trigger.js";
import type * as xataTables from "../xataTables.js";

/**
 * A utility for referencing Convex functions in your app's API.
 *
 * Usage:
 * ```js
 * const myFunctionReference = api.myModule.myFunction;
 * ```
 */
declare const fullApi: ApiFromModules<{
  http: typeof http;
  init: typeof init;
  mirror: typeof mirror;
  schedule: typeof schedule;
  signing: typeof signing;
  syncRuns: typeof syncRuns;
  trigger: typeof trigger;
  xataTables: typeof xataTables;
}>;
export declare const api: FilterApi<
  typeof fullApi,
  FunctionReference<any, "public">
>;
export declare const internal: FilterApi<
  typeof fullApi,
  FunctionReference<any, "internal">
>;

export declare const components: {
  crons: import("@convex-dev/crons/_generated/component.js").ComponentApi<"crons">;
};
