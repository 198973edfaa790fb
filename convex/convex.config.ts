import crons from "@convex-dev/crons/convex.config.js";
import { defineApp } from "convex/server";

const app = defineApp();
// Runtime-registered crons: the sync schedule can change without a redeploy.
app.use(crons);

export default app;
