// The usage meter, as crates/rma-router/src/usage.rs: today's (UTC) counts against the Cloudflare
// free plan, projected over the day. At the edge the Durable Object counts its own requests and
// rows written exactly; the Worker's requests reach it on the next registry call it makes anyway.

import type { Usage, UsageCounter } from "../../web/src/contract";

const DAY_S = 86_400;
/** The shortest time a rate is taken over, so a start does not project a day's worth. */
const MIN_RATE_WINDOW_S = 600;
const WARN_AT = 0.8;

export type Kind = "requests" | "registry_requests" | "rows_written";
export const FREE_TIER: [Kind, number][] = [
  ["requests", 100_000],
  ["registry_requests", 100_000],
  ["rows_written", 100_000],
];

export function project(used: number, countedS: number, leftS: number): number {
  const rate = used / Math.max(countedS, MIN_RATE_WINDOW_S);
  return used + Math.round(rate * leftS);
}

/** What the meter keeps (saved now and then by the Durable Object). */
export interface MeterState {
  day: number;
  startedS: number;
  counts: Record<Kind, number>;
}

export class Meter {
  state: MeterState;
  private warned = new Set<Kind>();

  constructor(nowMs: number, saved?: MeterState | null) {
    const s = Math.floor(nowMs / 1000);
    const day = Math.floor(s / DAY_S);
    this.state =
      saved && saved.day === day
        ? saved
        : { day, startedS: s, counts: { requests: 0, registry_requests: 0, rows_written: 0 } };
  }

  private roll(nowS: number) {
    const today = Math.floor(nowS / DAY_S);
    if (today !== this.state.day) {
      this.state = { day: today, startedS: today * DAY_S, counts: { requests: 0, registry_requests: 0, rows_written: 0 } };
      this.warned.clear();
    }
  }

  count(kind: Kind, n: number, nowMs: number) {
    this.roll(Math.floor(nowMs / 1000));
    this.state.counts[kind] += n;
  }

  report(nowMs: number): Usage {
    const nowS = Math.floor(nowMs / 1000);
    this.roll(nowS);
    const dayStart = this.state.day * DAY_S;
    const countedS = nowS - Math.max(this.state.startedS, dayStart);
    const leftS = dayStart + DAY_S - nowS;
    const warnings: string[] = [];
    const counters: UsageCounter[] = FREE_TIER.map(([name, limit]) => {
      const used = Math.round(this.state.counts[name]);
      const projected = project(used, countedS, leftS);
      const share = projected / limit;
      if (share >= WARN_AT) {
        const words = `${name}: ${projected} projected today, ${Math.round(share * 100)} % of the free tier's ${limit}`;
        if (!this.warned.has(name)) {
          this.warned.add(name);
          console.warn(`usage is past 80 % of the edge's free tier: ${words}`);
        }
        warnings.push(words);
      }
      return {
        name,
        used,
        projected,
        free_tier_limit: limit,
        headroom_percent: Math.round((1 - share) * 1000) / 10,
      };
    });
    return {
      day: new Date(dayStart * 1000).toISOString().slice(0, 10),
      counted_s: countedS,
      counters,
      warning: warnings.length ? warnings.join("; ") : null,
    };
  }
}
