/**
 * Querying the Xata mirror from app code: the examples docs/convex.md quotes. They are written as a
 * module of an app's `convex/` folder (tests/test_docs_examples.py copies them into one, syncs the
 * sample database into it and runs every function). They are public queries: add your app's own
 * access checks before deploying anything like them.
 */
import { v } from "convex/values";
import { action, query } from "./_generated/server";

// Get a record by its Xata id: every mirrored table has the index `by_xata_id`.
export const userByXataId = query({
  args: { xataId: v.string() },
  handler: async (ctx, { xataId }) => {
    return await ctx.db
      .query("users")
      .withIndex("by_xata_id", (q) => q.eq("xata_id", xataId))
      .unique();
  },
});

// Follow a link: `team` holds the Xata id, `team_id` the Convex id of the mirrored team.
export const teamOfUser = query({
  args: { userId: v.id("users") },
  handler: async (ctx, { userId }) => {
    const user = await ctx.db.get(userId);
    return user?.team_id === undefined ? null : await ctx.db.get(user.team_id);
  },
});

// The other way round: every user whose link points at a team, through the index `by_team_id`.
export const usersOfTeam = query({
  args: { teamId: v.id("teams") },
  handler: async (ctx, { teamId }) => {
    return await ctx.db
      .query("users")
      .withIndex("by_team_id", (q) => q.eq("team_id", teamId))
      .take(100);
  },
});

// Text search: `search = ["bio"]` under [tables."users"] in xata2convex.toml made `search_bio`.
export const searchUsersByBio = query({
  args: { text: v.string() },
  handler: async (ctx, { text }) => {
    return await ctx.db
      .query("users")
      .withSearchIndex("search_bio", (q) => q.search("bio", text))
      .take(10);
  },
});

// Vector search runs in an action: the nearest teams by embedding (index `by_embedding`)...
export const similarTeams = action({
  args: { embedding: v.array(v.float64()) },
  handler: async (ctx, { embedding }) => {
    return await ctx.vectorSearch("teams", "by_embedding", { vector: embedding, limit: 3 });
  },
});

// ...and a query loads the documents it found.
export const teamsByIds = query({
  args: { ids: v.array(v.id("teams")) },
  handler: async (ctx, { ids }) => {
    const teams = await Promise.all(ids.map((id) => ctx.db.get(id)));
    return teams.filter((team) => team !== null);
  },
});
