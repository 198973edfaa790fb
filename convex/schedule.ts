/**
 * The sync schedule as people write it (XATA2CONVEX_SCHEDULE, `init:setSchedule`), turned into
 * the @convex-dev/crons schedule. The grammar (case-insensitive, outer spaces ignored):
 *
 *   - a cronspec, evaluated in UTC: 5 fields `minute hour day-of-month month day-of-week`
 *     (e.g. "0 * * * *", hourly) or 6 with seconds first;
 *   - an interval `<n><unit>`, unit s, m, h or d: "30s", "15m", "1h", "1d";
 *   - `every [<n>] <unit>`, unit second(s), minute(s), hour(s) or day(s): "every 15 minutes",
 *     "every hour".
 *
 * Intervals run every n units from the moment they are registered; cronspecs on the clock.
 */
export type Schedule = { kind: "cron"; cronspec: string; tz?: string } | { kind: "interval"; ms: number };

/** Hourly, on the hour. */
export const DEFAULT_SCHEDULE = "0 * * * *";

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SHORT_INTERVAL = /^(\d+)\s*([smhd])$/;
const EVERY = /^every\s+(?:(\d+)\s+)?(second|minute|hour|day)s?$/;
// Only the characters cron syntax uses; the crons component checks the full syntax on register.
const CRON_FIELD = /^[0-9A-Za-z*/,?#-]+$/;

export function parseSchedule(text: string): Schedule {
  const written = text.trim().replace(/\s+/g, " ");
  const lower = written.toLowerCase();
  const short = SHORT_INTERVAL.exec(lower);
  const every = EVERY.exec(lower);
  if (short !== null || every !== null) {
    const count = Number(short?.[1] ?? every?.[1] ?? "1");
    const unit = short?.[2] ?? every![2]![0]!;
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new Error(`Schedule "${written}": an interval must be at least 1 second`);
    }
    return { kind: "interval", ms: count * UNIT_MS[unit]! };
  }
  const fields = written.split(" ");
  if ((fields.length === 5 || fields.length === 6) && fields.every((field) => CRON_FIELD.test(field))) {
    return { kind: "cron", cronspec: written };
  }
  throw new Error(
    `Schedule "${written}" is neither a cronspec of 5 or 6 fields (e.g. "0 * * * *") nor an interval ` +
      `(e.g. "15m", "1h", "every 15 minutes")`,
  );
}

export function sameSchedule(a: Schedule, b: Schedule): boolean {
  if (a.kind === "interval") return b.kind === "interval" && a.ms === b.ms;
  return b.kind === "cron" && a.cronspec === b.cronspec && a.tz === b.tz;
}
