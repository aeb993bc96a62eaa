// The liveness simulation: one simulated UTC day of a federation (by default 1,000 workers and
// 20 coordinators) against the real registry code (src/registry.ts) on a real Durable Object's
// SQLite storage in workerd, with a simulated clock. It counts what the free plan counts:
// Worker requests, Durable Object requests (alarms included) and rows written, for liveness and
// membership alone (no documents). `node sim/run.mjs` starts it and prints the figures.
//
// What happens in the day:
// - coordinators register one a second at the start, then heartbeat at the interval the router
//   tells them (in the register reply and again in every heartbeat reply), plus a heartbeat for a
//   change of their workers at most once a tenth of the interval (as crates/rma-coordinator's
//   registrar does);
// - workers join through the router over the first 10 minutes (one Worker and one Durable Object
//   request each: the router places them and passes the registration on); their heartbeats ride
//   the link to the coordinator and never reach the router;
// - every worker's link drops twice in the day: it registers again with the coordinator it
//   knows, directly (no router request);
// - RESTART_SHARE of the workers restart from scratch once (they leave their coordinator's list,
//   then register through the router again);
// - one coordinator restarts at midday (it registers again at the same URL).

import { DurableObject } from "cloudflare:workers";
import { Federation, hex } from "../src/auth";
import { Registry, type Config } from "../src/registry";

interface Env {
  SIM: DurableObjectNamespace;
}

type Ev = { t: number; seq: number; run: () => Promise<void> | void };

/** A binary heap of events by time. */
class Queue {
  private h: Ev[] = [];
  private seq = 0;
  push(t: number, run: Ev["run"]) {
    const e = { t, seq: this.seq++, run };
    const h = this.h;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p], h[i])) break;
      [h[p], h[i]] = [h[i], h[p]];
      i = p;
    }
  }
  pop(): Ev | undefined {
    const h = this.h;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l], h[m])) m = l;
        if (r < h.length && less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i], h[m]];
        i = m;
      }
    }
    return top;
  }
}
const less = (a: Ev, b: Ev) => a.t < b.t || (a.t === b.t && a.seq < b.seq);

/** A seeded random number generator (mulberry32), so a run is repeatable. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface SimCoordinator {
  id: string;
  url: string;
  token: string;
  intervalMs: number;
  workers: Map<string, "active" | "stale">;
  changed: boolean;
  lastSent: number;
  changePending: boolean;
  /** Bumped on restart: events of the old run are dropped. */
  epoch: number;
}

const DAY = 86_400_000;

export class Sim extends DurableObject<Env> {
  async fetch(req: Request): Promise<Response> {
    const q = new URL(req.url).searchParams;
    const workers = Number(q.get("workers") ?? 1000);
    const coordinators = Number(q.get("coordinators") ?? 20);
    const restartShare = Number(q.get("restart_share") ?? 0.1);
    const intervalS = Number(q.get("heartbeat_interval_s") ?? 120);
    const budget = Number(q.get("heartbeat_budget") ?? 5000);
    const seed = Number(q.get("seed") ?? 1);
    const started = Date.now();
    const out = await simulate({ workers, coordinators, restartShare, intervalS, budget, seed }, this.ctx);
    return Response.json({ ...out, wall_ms: Date.now() - started });
  }
}

async function simulate(
  p: { workers: number; coordinators: number; restartShare: number; intervalS: number; budget: number; seed: number },
  ctx: DurableObjectState,
) {
  for (const t of ["coordinators", "nodes", "invites", "meta"]) ctx.storage.sql.exec(`DROP TABLE IF EXISTS ${t}`);
  const random = rng(p.seed);
  // A day that starts at midnight UTC, so the meter counts exactly one day.
  const day0 = Math.floor(Date.now() / DAY) * DAY + DAY;
  let now = day0;
  const queue = new Queue();
  const seed = hex(crypto.getRandomValues(new Uint8Array(32)));
  const federation = await Federation.fromSeedHex(seed);
  const config: Config = {
    staleAfterMs: 600_000,
    expireAfterMs: 1_200_000,
    heartbeatIntervalMs: p.intervalS * 1000,
    heartbeatBudget: p.budget,
    requestTimeoutMs: 30_000,
    policy: { allowHttp: false, allowPrivate: false, allowLoopback: false },
    adminToken: hex(crypto.getRandomValues(new Uint8Array(32))),
    federation,
  };
  const coords = new Map<string, SimCoordinator>();
  const byUrl = new Map<string, SimCoordinator>();
  let alarmAt: number | null = null;
  let alarmsSet = 0;
  const counts = { worker_requests: 0, coordinator_heartbeats: 0, change_heartbeats: 0, worker_registrations: 0, alarms: 0 };

  const registry = new Registry(
    {
      sql: ctx.storage.sql,
      now: () => now,
      // The coordinators the router passes worker registrations to.
      fetch: async (url, init) => {
        const c = byUrl.get(url.replace(/\/api\/worker\/register$/, ""));
        if (!c) throw new Error("connection refused");
        const body = JSON.parse(String(init.body));
        c.workers.set(body.worker_id, "active");
        changed(c);
        return Response.json({
          status: "registered",
          worker_id: body.worker_id,
          worker_type: "cpu",
          assigned_services: ["ocr", "extract"],
          coordinator_id: c.id,
          coordinator_url: c.url,
          heartbeat_interval_s: 30,
        });
      },
      setAlarm: (at) => {
        alarmsSet++;
        alarmAt = at;
        queue.push(at, () => {
          if (alarmAt !== at) return;
          alarmAt = null;
          counts.alarms++;
          registry.alarm();
        });
      },
      sockets: () => [],
    },
    config,
  );

  /** One HTTP request to the router: one Worker request; registry paths reach the object. */
  const call = async (path: string, token: string, body: unknown) => {
    counts.worker_requests++;
    const req = new Request(`https://router.example${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "x-rma-worker-requests": "1" },
      body: JSON.stringify(body),
    });
    const r = await registry.handle(req);
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json() as Promise<any>;
  };

  const credential = async (id: string, role: "coordinator" | "worker") =>
    (await federation.issue(id, role, null, null, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", Math.floor(now / 1000))).token;

  const summaries = (c: SimCoordinator) =>
    [...c.workers].map(([id, status]) => ({
      id,
      type: "cpu",
      services: ["ocr", "extract"],
      status,
      active_requests: 0,
      load: random(),
      requests_last_minute: 0,
      last_seen: "",
      failures_last_minute: 0,
    }));

  const heartbeat = async (c: SimCoordinator, change: boolean) => {
    c.lastSent = now;
    c.changed = false;
    if (change) counts.change_heartbeats++;
    else counts.coordinator_heartbeats++;
    const reply = await call("/api/edge/heartbeat", c.token, {
      coordinator_id: c.id,
      active_requests: 0,
      load: random(),
      services: { ocr: c.workers.size, extract: c.workers.size },
      workers: summaries(c),
    });
    if (typeof reply.heartbeat_interval_ms === "number") c.intervalMs = reply.heartbeat_interval_ms;
  };

  /** A change of workers: a heartbeat at once, or at the end of the gap (a tenth of the
   *  interval, 50 ms – 15 s), one for many changes. */
  function changed(c: SimCoordinator) {
    c.changed = true;
    if (c.changePending) return;
    c.changePending = true;
    const gap = Math.min(Math.max(c.intervalMs / 10, 50), 15_000, c.intervalMs);
    const epoch = c.epoch;
    queue.push(Math.max(now, c.lastSent + gap), async () => {
      c.changePending = false;
      if (c.epoch === epoch && c.changed) await heartbeat(c, true);
    });
  }

  const tick = (c: SimCoordinator) => {
    const epoch = c.epoch;
    queue.push(now + c.intervalMs, async () => {
      if (c.epoch !== epoch) return;
      await heartbeat(c, false);
      tick(c);
    });
  };

  const register = async (c: SimCoordinator) => {
    const reply = await call("/api/edge/register", c.token, { coordinator_id: c.id, url: c.url, services: ["ocr", "extract"] });
    c.intervalMs = reply.heartbeat_interval_ms ?? c.intervalMs;
    c.lastSent = now;
    tick(c);
  };

  // Coordinators, one a second.
  for (let i = 0; i < p.coordinators; i++) {
    const c: SimCoordinator = {
      id: `c${i}`,
      url: `https://c${i}.example.org`,
      token: await credential(`c${i}`, "coordinator"),
      intervalMs: config.heartbeatIntervalMs,
      workers: new Map(),
      changed: false,
      lastSent: 0,
      changePending: false,
      epoch: 0,
    };
    coords.set(c.id, c);
    byUrl.set(c.url, c);
    queue.push(day0 + i * 1000, () => register(c));
  }
  // Workers join over the first 10 minutes, through the router.
  const homes = new Map<string, SimCoordinator>();
  for (let i = 0; i < p.workers; i++) {
    const id = `w${i}`;
    const token = await credential(id, "worker");
    const join = async () => {
      counts.worker_registrations++;
      const reply = await call("/api/worker/register", token, { worker_id: id, capabilities: {} });
      homes.set(id, coords.get(reply.coordinator_id)!);
    };
    queue.push(day0 + p.coordinators * 1000 + random() * 600_000, join);
    // Two link drops: it registers again with its coordinator directly; the router sees nothing.
    // A restart from scratch: gone from its coordinator's list (stale, then removed), then back
    // through the router.
    if (random() < p.restartShare) {
      const at = day0 + 900_000 + random() * (DAY - 1_800_000);
      queue.push(at, () => {
        const c = homes.get(id);
        if (!c) return;
        c.workers.set(id, "stale");
        changed(c);
        queue.push(now + 90_000, () => {
          c.workers.delete(id);
          changed(c);
        });
        queue.push(now + 120_000, join);
      });
    }
  }
  // One coordinator restarts at midday: it registers again at the same URL; its workers come
  // back to it directly.
  queue.push(day0 + DAY / 2, async () => {
    const c = coords.get("c0")!;
    c.epoch++;
    const had = [...c.workers.keys()];
    c.workers.clear();
    await register(c);
    for (const w of had) c.workers.set(w, "active");
    changed(c);
  });

  const end = day0 + DAY - 1;
  for (let e = queue.pop(); e && e.t <= end; e = queue.pop()) {
    now = e.t;
    await e.run();
  }
  now = end;
  const usage = registry.usage();
  const used = (name: string) => usage.counters.find((c) => c.name === name)?.used ?? 0;
  return {
    workers: p.workers,
    coordinators: p.coordinators,
    restart_share: p.restartShare,
    heartbeat_interval_told_s: registry.heartbeatIntervalMs() / 1000,
    worker_requests: counts.worker_requests,
    durable_object_requests: used("registry_requests"),
    rows_written: used("rows_written"),
    meter_requests: used("requests"),
    coordinator_heartbeats: counts.coordinator_heartbeats,
    change_heartbeats: counts.change_heartbeats,
    worker_registrations_through_router: counts.worker_registrations,
    alarms: counts.alarms,
    alarms_set: alarmsSet,
    free_tier: 100_000,
  };
}

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname !== "/run") return new Response("GET /run?workers=1000&coordinators=20", { status: 404 });
    // A fresh object per run, so nothing of a previous run is counted.
    return env.SIM.get(env.SIM.newUniqueId()).fetch(req);
  },
};
