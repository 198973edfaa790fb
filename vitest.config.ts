import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/convex/**/*.test.ts"],
    // convex-test runs Convex functions the way Convex's runtime does: in an edge-like VM.
    environment: "edge-runtime",
    server: { deps: { inline: ["convex-test"] } },
  },
});
