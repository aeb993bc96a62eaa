// The registry of coordinators and members: what the Durable Object `CoordinatorRegistry` does,
// written over a small interface (SQL, clock, fetch, alarm, sockets) so the same code runs in
// workerd and in the liveness simulation (sim/liveness.ts).
//
// Cost rules (the free plan counts Durable Object requests and SQLite rows written):
// - a row is written only when membership changes: a coordinator registers at a new URL or
//   leaves, its set of services or workers changes, a node enrols or is revoked, an invite is
//   made or used; heartbeats that change nothing but load write nothing;
// - liveness is heartbeat age plus failures the Worker saw while forwarding: no pings;
// - expiry runs on one alarm set to the earliest deadline (each setAlarm is a row written);
// - the heartbeat interval told to coordinators grows with their number, so heartbeats stay
//   within HEARTBEAT_BUDGET a day whatever the federation's size.

import type {
  CoordinatorHeartbeat,
  CoordinatorInfo,
  CoordinatorRegister,
  CoordinatorRegistered,
  CoordinatorStatus,
  Enrolled,
  EnrollRequest,
  HeartbeatReply,
  Invite,
  InviteRequest,
  NodeInfo,
  RenewRequest,
  RouterHealth,
  Topology,
  WorkerHeartbeat,
  WorkerStatus,
  WorkerSummary,
} from "../../web/src/contract";
import {
  allows,
  type Claims,
  Federation,
  keySuffix,
  parseJoinToken,
  publicKey,
  RENEW_SKEW_S,
  renewMessage,
  type Role,
  ROLES,
  sameNode,
  secretHash,
  newJoinToken,
  verifySig,
} from "./auth";
import { ApiError, bearer, checkId, codeFor, json, readJson, rfc3339, sameSecret } from "./http";
import { type AddressPolicy, checkRegistered } from "./urls";
import { type Kind, Meter, type MeterState } from "./usage";

/** The SQL a registry needs: workerd's `ctx.storage.sql`, or better-sqlite3 in the simulation. */
export interface Sql {
  exec(query: string, ...bindings: unknown[]): { toArray(): Record<string, unknown>[]; readonly rowsWritten: number };
}

/** A live topology socket (hibernatable in workerd). */
export interface Socket {
  send(text: string): void;
  /** Whether the socket signed in with the admin token. */
  admin: boolean;
}

export interface Deps {
  sql: Sql;
  now(): number;
  fetch(url: string, init: RequestInit): Promise<Response>;
  /** Sets the one alarm (a row written, counted by the registry). */
  setAlarm(atMs: number): void;
  sockets(): Socket[];
}

export interface Config {
  staleAfterMs: number;
  expireAfterMs: number;
  /** The shortest heartbeat interval told to coordinators. */
  heartbeatIntervalMs: number;
  /** Coordinator heartbeats a day the interval is sized for. */
  heartbeatBudget: number;
  requestTimeoutMs: number;
  policy: AddressPolicy;
  adminToken: string;
  federation: Federation;
}

/** How a registry is configured from the Worker's variables and secrets. */
export interface Env {
  ADMIN_TOKEN?: string;
  FEDERATION_KEY?: string;
  STALE_AFTER_S?: string;
  EXPIRE_AFTER_S?: string;
  HEARTBEAT_INTERVAL_S?: string;
  HEARTBEAT_BUDGET?: string;
  REQUEST_TIMEOUT_S?: string;
  ALLOW_HTTP?: string;
  ALLOW_PRIVATE_ADDRESSES?: string;
  ALLOW_LOOPBACK?: string;
}

/** A yes/no variable: `true` or `1`. */
export const flag = (v: string | undefined) => v === "1" || v === "true";

export async function configFrom(env: Env): Promise<Config> {
  const n = (v: string | undefined, d: number) => {
    const x = Number(v);
    return v !== undefined && v !== "" && Number.isFinite(x) && x > 0 ? x : d;
  };
  if (!env.ADMIN_TOKEN || env.ADMIN_TOKEN.trim().length < 16) {
    throw new Error("ADMIN_TOKEN is not set (at least 16 characters): `npx wrangler secret put ADMIN_TOKEN`");
  }
  if (!env.FEDERATION_KEY) {
    throw new Error("FEDERATION_KEY is not set: `npx wrangler secret put FEDERATION_KEY` (64 hex digits)");
  }
  const staleAfterMs = n(env.STALE_AFTER_S, 600) * 1000;
  return {
    staleAfterMs,
    expireAfterMs: n(env.EXPIRE_AFTER_S, (2 * staleAfterMs) / 1000) * 1000,
    heartbeatIntervalMs: n(env.HEARTBEAT_INTERVAL_S, 120) * 1000,
    heartbeatBudget: n(env.HEARTBEAT_BUDGET, 5000),
    requestTimeoutMs: n(env.REQUEST_TIMEOUT_S, 125) * 1000,
    policy: {
      allowHttp: flag(env.ALLOW_HTTP),
      allowPrivate: flag(env.ALLOW_PRIVATE_ADDRESSES),
      allowLoopback: flag(env.ALLOW_LOOPBACK),
    },
    adminToken: env.ADMIN_TOKEN.trim(),
    federation: await Federation.fromSeedHex(env.FEDERATION_KEY),
  };
}

interface Entry {
  id: string;
  url: string;
  location: string | null;
  registeredAt: number;
  lastSeen: number;
  services: Record<string, number>;
  workers: WorkerSummary[];
  load: number;
  activeRequests: number;
  /** The Worker failed to reach it since its last heartbeat. */
  unreachable: boolean;
  /** What was last written of its inventory: the services it offers. */
  shape: string;
  /** Forwards the Worker reported served, with when (last minute only). */
  served: number[];
  failures: number[];
}

/** A coordinator as the Worker routes to it (`GET /internal/routes`). */
export interface Route {
  id: string;
  url: string;
  services: string[];
  status: CoordinatorStatus;
  load: number;
  active_requests: number;
  active_workers: number;
}

export interface Routes {
  coordinators: Route[];
  /** Nodes revoked within a credential's lifetime: clients among them are refused. */
  revoked: string[];
  stale_after_ms: number;
}

const MINUTE = 60_000;
/** The meter is saved at most this often (a row written each time). */
const SAVE_METER_EVERY_MS = 10 * MINUTE;

/** What routing needs to survive a restart of the object: the services a coordinator offers.
 *  Its list of workers is not written (it changes with every worker that comes and goes, and
 *  the next heartbeat brings it back within one interval). */
function shapeOf(services: Record<string, number>): string {
  return JSON.stringify(Object.keys(services).filter((k) => services[k] > 0).sort());
}

export class Registry {
  private entries = new Map<string, Entry>();
  /** Worker → coordinator that took its registration through this router. */
  private homes = new Map<string, string>();
  private revoked = new Map<string, number>();
  private meter: Meter;
  private meterSavedAt: number;
  private alarmAt: number | null = null;
  private turn = 0;

  constructor(
    private readonly deps: Deps,
    readonly config: Config,
    alarmAt: number | null = null,
  ) {
    const sql = deps.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS coordinators (
      id TEXT PRIMARY KEY, url TEXT NOT NULL, location TEXT,
      registered_at_ms INTEGER NOT NULL, inventory TEXT)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS nodes (
      node_id TEXT PRIMARY KEY, role TEXT NOT NULL, services TEXT, owner TEXT,
      public_key TEXT NOT NULL, enrolled_at_ms INTEGER NOT NULL, revoked_at_ms INTEGER)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS invites (
      hash TEXT PRIMARY KEY, role TEXT NOT NULL, services TEXT, owner TEXT,
      uses_left INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)`);
    const now = deps.now();
    // Loaded coordinators count as just seen: they get one stale_after to send a heartbeat.
    for (const r of sql.exec("SELECT * FROM coordinators").toArray()) {
      let inv: { services?: Record<string, number> } = {};
      try {
        inv = JSON.parse(String(r.inventory ?? "{}"));
      } catch {
        inv = {};
      }
      const services = inv.services ?? {};
      const workers: WorkerSummary[] = [];
      this.entries.set(String(r.id), {
        id: String(r.id),
        url: String(r.url),
        location: (r.location as string | null) ?? null,
        registeredAt: Number(r.registered_at_ms),
        lastSeen: now,
        services,
        workers,
        load: 0,
        activeRequests: 0,
        unreachable: false,
        shape: shapeOf(services),
        served: [],
        failures: [],
      });
    }
    for (const r of sql.exec("SELECT node_id, revoked_at_ms FROM nodes WHERE revoked_at_ms IS NOT NULL").toArray()) {
      this.revoked.set(String(r.node_id), Number(r.revoked_at_ms));
    }
    let saved: MeterState | null = null;
    const m = sql.exec("SELECT v FROM meta WHERE k = 'meter'").toArray()[0];
    if (m) {
      try {
        saved = JSON.parse(String(m.v));
      } catch {
        saved = null;
      }
    }
    this.meter = new Meter(now, saved);
    this.meterSavedAt = now;
    this.alarmAt = alarmAt;
    this.scheduleAlarm();
  }

  // ---- bookkeeping ---------------------------------------------------------------------------

  private write(query: string, ...bindings: unknown[]): number {
    const c = this.deps.sql.exec(query, ...bindings);
    c.toArray();
    const n = c.rowsWritten;
    if (n > 0) this.meter.count("rows_written", n, this.deps.now());
    return n;
  }

  /** Counts a Durable Object request (`n` = 1/20 for a WebSocket message). */
  countRequest(n = 1) {
    this.meter.count("registry_requests", n, this.deps.now());
    this.maybeSaveMeter();
  }

  /** Counts Worker requests reported by the Worker. */
  countWorkerRequests(n: number) {
    if (n > 0 && Number.isFinite(n)) this.meter.count("requests", Math.min(n, 1e7), this.deps.now());
  }

  private maybeSaveMeter(force = false) {
    const now = this.deps.now();
    if (!force && now - this.meterSavedAt < SAVE_METER_EVERY_MS) return;
    this.meterSavedAt = now;
    this.meter.count("rows_written", 1, now);
    this.deps.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('meter', ?)", JSON.stringify(this.meter.state)).toArray();
  }

  usage() {
    return this.meter.report(this.deps.now());
  }

  /** The interval told to coordinators: the base one, longer when many share the budget. */
  heartbeatIntervalMs(): number {
    const n = Math.max(1, this.entries.size);
    const budgeted = Math.ceil((n * 86_400_000) / this.config.heartbeatBudget);
    return Math.max(this.config.heartbeatIntervalMs, budgeted);
  }

  /** How long without a heartbeat before a coordinator is stale: never under 2.5 intervals. */
  staleAfterMs(): number {
    return Math.max(this.config.staleAfterMs, 2.5 * this.heartbeatIntervalMs());
  }

  private expireAfterMs(): number {
    return Math.max(this.config.expireAfterMs, 2 * this.staleAfterMs());
  }

  private status(e: Entry, now: number): CoordinatorStatus {
    if (now - e.lastSeen >= this.staleAfterMs()) return "stale";
    return e.unreachable ? "unreachable" : "healthy";
  }

  private freshCount(now: number): number {
    let n = 0;
    for (const e of this.entries.values()) if (this.status(e, now) !== "stale") n++;
    return n;
  }

  /** One alarm at the earliest moment something changes on its own: a healthy coordinator
   *  going stale (the live topology shows it) or a silent one expiring. */
  private scheduleAlarm() {
    if (this.entries.size === 0) return;
    const now = this.deps.now();
    let next = Infinity;
    const stale = this.staleAfterMs();
    const expire = this.expireAfterMs();
    for (const e of this.entries.values()) {
      const d = now - e.lastSeen < stale ? e.lastSeen + stale : e.lastSeen + expire;
      next = Math.min(next, d);
    }
    // Pending and not later than needed: leave it (setting it again is a row written).
    if (this.alarmAt !== null && this.alarmAt <= next && this.alarmAt > now) return;
    if (this.alarmAt !== null && this.alarmAt > now && next >= this.alarmAt) return;
    // Not more often than every few seconds.
    const at = Math.max(next, now + 1000);
    this.alarmAt = at;
    this.meter.count("rows_written", 1, now);
    this.deps.setAlarm(at);
  }

  /** Removes coordinators silent past the expiry; true when one went. Run by the alarm, and
   *  by every request too, so a late alarm never leaves an expired coordinator listed. */
  private expireDue(): boolean {
    const now = this.deps.now();
    const expire = this.expireAfterMs();
    let any = false;
    for (const e of [...this.entries.values()]) {
      if (now - e.lastSeen >= expire) {
        this.entries.delete(e.id);
        this.write("DELETE FROM coordinators WHERE id = ?", e.id);
        console.log(`coordinator ${e.id} expired: no heartbeat for ${Math.round((now - e.lastSeen) / 1000)} s`);
        any = true;
      }
    }
    return any;
  }

  /** The alarm fired: expire the silent, tell the sockets, set the next. */
  alarm() {
    this.countRequest();
    this.alarmAt = null;
    this.expireDue();
    this.maybeSaveMeter(true);
    this.broadcast();
    this.scheduleAlarm();
  }

  // ---- auth ----------------------------------------------------------------------------------

  isAdmin(req: Request): boolean {
    const t = bearer(req);
    return t !== null && sameSecret(t, this.config.adminToken);
  }

  requireAdmin(req: Request) {
    if (!this.isAdmin(req)) {
      throw ApiError.unauthorized("this needs the admin token (Authorization: Bearer …; admin.token beside the router's data)");
    }
  }

  /** The claims of the request's credential of `role`: 401 without a valid one, 403 for
   *  another role or a revoked node. */
  async member(req: Request, role: Role): Promise<Claims> {
    const t = bearer(req);
    if (!t) {
      throw ApiError.unauthorized(
        `this needs a ${role} credential (Authorization: Bearer …); enrol with \`rma ${role} --join TOKEN\``,
      );
    }
    const c = await this.config.federation.verify(t, Math.floor(this.deps.now() / 1000));
    if (c.role !== role) {
      throw ApiError.forbidden(`this needs a ${role} credential; ${c.sub} holds a ${c.role} credential`);
    }
    if (this.revoked.has(c.sub)) throw ApiError.forbidden(`${role} ${c.sub} has been revoked`);
    return c;
  }

  private revokedLately(): string[] {
    const since = this.deps.now() - 24 * 3600 * 1000 - MINUTE;
    return [...this.revoked].filter(([, at]) => at >= since).map(([id]) => id);
  }

  // ---- the API -------------------------------------------------------------------------------

  /** Answers one request that reached the Durable Object. */
  async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    const m = req.method;
    const workerRequests = Number(req.headers.get("x-rma-worker-requests") ?? "0");
    this.countWorkerRequests(workerRequests);
    if (path !== "/api/topology/ws") this.countRequest();
    if (this.expireDue()) this.broadcast();
    if (path === "/internal/routes" && m === "POST") return json(this.routes(await req.json()));
    if (path === "/internal/failure" && m === "POST") {
      const { id } = (await req.json()) as { id: string };
      this.markUnreachable(id);
      return json({ status: "ok" });
    }
    if (path === "/api/edge/register" && m === "POST") return json(await this.register(req));
    if (path === "/api/edge/heartbeat" && m === "POST") return json(await this.heartbeat(req));
    const del = /^\/api\/edge\/([^/]+)$/.exec(path);
    if (del && m === "DELETE") return json(await this.deregister(req, decodeURIComponent(del[1])));
    if (path === "/api/worker/register" && m === "POST") return this.registerWorker(req);
    if (path === "/api/worker/heartbeat" && m === "POST") return this.workerHeartbeat(req);
    if (path === "/api/enroll" && m === "POST") return json(await this.enroll(req));
    if (path === "/api/credentials/renew" && m === "POST") return json(await this.renew(req));
    if (path === "/api/admin/invites" && m === "POST") return json(await this.invite(req));
    if (path === "/api/admin/nodes" && m === "GET") return json(this.nodes(req));
    const rev = /^\/api\/admin\/nodes\/([^/]+)\/revoke$/.exec(path);
    if (rev && m === "POST") return json(this.revoke(req, decodeURIComponent(rev[1])));
    if (path === "/api/admin/coordinators" && m === "GET") return json(this.coordinators(req));
    if (path === "/api/admin/usage" && m === "GET") {
      this.requireAdmin(req);
      return json(this.usage());
    }
    if (path === "/api/topology" && m === "GET") {
      const t = this.topology();
      return json(this.isAdmin(req) ? t : redacted(t));
    }
    if (path === "/health" && m === "GET") return this.health();
    if (path === "/metrics" && m === "GET") {
      this.requireAdmin(req);
      return new Response(this.metrics(), { headers: { "content-type": "text/plain; version=0.0.4" } });
    }
    throw ApiError.notFound(`no route for ${path}`);
  }

  routes(body: { served?: Record<string, number>; failed?: string[] } = {}): Routes {
    const now = this.deps.now();
    for (const [id, n] of Object.entries(body.served ?? {})) {
      const e = this.entries.get(id);
      if (e && Number.isFinite(n)) for (let i = 0; i < Math.min(n, 10_000); i++) e.served.push(now);
    }
    for (const id of body.failed ?? []) this.markUnreachable(id);
    const out: Route[] = [];
    for (const e of this.entries.values()) {
      // Stale ones too: a job held by a stale coordinator is still asked of it.
      const status = this.status(e, now);
      out.push({
        id: e.id,
        url: e.url,
        services: Object.keys(e.services).filter((s) => e.services[s] > 0),
        status,
        load: e.load,
        active_requests: e.activeRequests,
        active_workers: e.workers.filter((w) => w.status === "active").length,
      });
    }
    return { coordinators: out, revoked: this.revokedLately(), stale_after_ms: this.staleAfterMs() };
  }

  markUnreachable(id: string) {
    const e = this.entries.get(id);
    if (e && !e.unreachable) {
      e.unreachable = true;
      e.failures.push(this.deps.now());
      this.broadcast();
    }
  }

  async register(req: Request): Promise<CoordinatorRegistered> {
    const claims = await this.member(req, "coordinator");
    const body = await readJson<CoordinatorRegister>(req);
    const raw = body.url ?? body.tunnel_url;
    if (!raw) throw ApiError.badRequest("url (or tunnel_url) is required: the URL the router reaches this coordinator at");
    const url = checkRegistered(this.config.policy, "url", raw);
    let id = claims.sub;
    if (body.coordinator_id != null) {
      id = checkId("coordinator_id", body.coordinator_id);
      sameNode(claims, "coordinator", id);
    }
    const now = this.deps.now();
    const prev = this.entries.get(id);
    const location = body.location ?? null;
    const services: Record<string, number> = {};
    for (const s of body.services ?? []) if (typeof s === "string" && allows(claims, s)) services[s] = 1;
    const keep = prev && prev.url === url;
    const e: Entry = {
      id,
      url,
      location,
      registeredAt: prev?.registeredAt ?? now,
      lastSeen: now,
      services: keep ? prev.services : services,
      workers: keep ? prev.workers : [],
      load: keep ? prev.load : 0,
      activeRequests: 0,
      unreachable: false,
      shape: keep ? prev.shape : "",
      served: keep ? prev.served : [],
      failures: keep ? prev.failures : [],
    };
    // Durable first, and only what changed: a coordinator re-registering as it was writes nothing.
    if (!keep || prev.location !== location) {
      e.shape = shapeOf(e.services);
      this.write(
        "INSERT OR REPLACE INTO coordinators (id, url, location, registered_at_ms, inventory) VALUES (?, ?, ?, ?, ?)",
        id,
        url,
        location,
        e.registeredAt,
        JSON.stringify({ services: e.services }),
      );
    }
    this.entries.set(id, e);
    const total = this.entries.size;
    console.log(`coordinator ${id} registered at ${url}; ${total} in the federation`);
    this.broadcast();
    this.scheduleAlarm();
    return {
      status: "registered",
      role: "edge_coordinator",
      coordinator_id: id,
      total_coordinators: total,
      message: `coordinator ${id} registered at ${url}; ${total} coordinator(s) in the federation`,
      heartbeat_interval_ms: this.heartbeatIntervalMs(),
    };
  }

  async heartbeat(req: Request): Promise<HeartbeatReply> {
    const claims = await this.member(req, "coordinator");
    const hb = await readJson<CoordinatorHeartbeat>(req);
    if (typeof hb.coordinator_id !== "string") throw ApiError.badRequest("coordinator_id is required");
    sameNode(claims, "coordinator", hb.coordinator_id);
    const e = this.entries.get(hb.coordinator_id);
    if (!e) throw ApiError.notFound(`coordinator ${JSON.stringify(hb.coordinator_id)} is not registered; register again`);
    const services: Record<string, number> = {};
    for (const [s, n] of Object.entries(hb.services ?? {})) if (allows(claims, s)) services[s] = Number(n) || 0;
    const workers = Array.isArray(hb.workers) ? hb.workers : [];
    e.lastSeen = this.deps.now();
    e.unreachable = false;
    e.services = services;
    e.workers = workers;
    e.load = Number(hb.load) || 0;
    e.activeRequests = Number(hb.active_requests) || 0;
    const shape = shapeOf(services);
    if (shape !== e.shape) {
      // The services it offers changed: worth a row, so a restarted object routes at once.
      e.shape = shape;
      this.write("UPDATE coordinators SET inventory = ? WHERE id = ?", JSON.stringify({ services }), e.id);
    }
    for (const w of workers) if (!this.homes.has(w.id)) this.homes.set(w.id, e.id);
    this.broadcast();
    this.scheduleAlarm();
    return { status: "ok", revoked: this.revokedLately(), heartbeat_interval_ms: this.heartbeatIntervalMs() };
  }

  async deregister(req: Request, id: string) {
    if (!this.isAdmin(req)) {
      const c = await this.member(req, "coordinator");
      sameNode(c, "coordinator", id);
    }
    checkId("coordinator_id", id);
    const known = this.entries.delete(id);
    const inFile = this.write("DELETE FROM coordinators WHERE id = ?", id) > 0;
    if (!known && !inFile) throw ApiError.notFound(`coordinator ${JSON.stringify(id)} is not registered`);
    console.log(`coordinator ${id} deregistered`);
    this.broadcast();
    return { status: "deregistered" };
  }

  /** Coordinators to place a worker with: fewest active workers first, unreachable last. */
  private candidatesForWorker(now: number): Entry[] {
    const homed = (id: string) => [...this.homes.values()].filter((c) => c === id).length;
    const active = (e: Entry) => e.workers.filter((w) => w.status === "active").length;
    const all = [...this.entries.values()].filter((e) => this.status(e, now) !== "stale");
    const t = this.turn++;
    const rotated = all.map((_, i) => all[(i + t) % all.length]);
    return rotated.sort(
      (a, b) => Number(a.unreachable) - Number(b.unreachable) || Math.max(active(a), homed(a.id)) - Math.max(active(b), homed(b.id)),
    );
  }

  private async callCoordinator(e: Entry, path: string, req: Request, body: string): Promise<Response> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    for (const h of ["authorization", "x-rma-proof", "x-request-id"]) {
      const v = req.headers.get(h);
      if (v) headers[h] = v;
    }
    return this.deps.fetch(`${e.url}${path}`, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.timeout(Math.min(this.config.requestTimeoutMs, 30_000)),
    });
  }

  async registerWorker(req: Request): Promise<Response> {
    const claims = await this.member(req, "worker");
    const text = await req.text();
    const body = parseBody<{ worker_id?: unknown }>(text);
    const wid = checkId("worker_id", body?.worker_id);
    sameNode(claims, "worker", wid);
    const now = this.deps.now();
    const candidates = this.candidatesForWorker(now);
    if (candidates.length === 0) {
      throw ApiError.noCoordinator("no coordinator is registered and fresh; start one with `rma coordinator --router-url ...`");
    }
    let last = "";
    for (const e of candidates) {
      this.homes.set(wid, e.id);
      let r: Response;
      try {
        r = await this.callCoordinator(e, "/api/worker/register", req, text);
      } catch (err) {
        this.markUnreachable(e.id);
        last = `coordinator ${e.id} unreachable: ${(err as Error).message}`;
        continue;
      }
      if (r.ok) {
        const reply = (await r.json()) as { coordinator_id?: string };
        if (typeof reply.coordinator_id === "string") this.homes.set(wid, reply.coordinator_id);
        return json(reply);
      }
      if (r.status >= 400 && r.status < 500) return passError(r);
      last = `coordinator ${e.id} answered ${r.status}`;
    }
    throw ApiError.noCoordinator(`no coordinator accepted the registration (${last})`);
  }

  async workerHeartbeat(req: Request): Promise<Response> {
    const claims = await this.member(req, "worker");
    const text = await req.text();
    const hb = parseBody<WorkerHeartbeat>(text);
    const wid = checkId("worker_id", hb?.worker_id);
    sameNode(claims, "worker", wid);
    const home = this.entries.get(this.homes.get(wid) ?? "");
    if (!home) throw ApiError.notFound(`worker ${JSON.stringify(wid)} is not registered with any coordinator; register again`);
    try {
      const r = await this.callCoordinator(home, "/api/worker/heartbeat", req, text);
      return r.ok ? json(await r.json()) : passError(r);
    } catch (err) {
      this.markUnreachable(home.id);
      throw ApiError.upstream(`coordinator ${home.id} holding this worker is unreachable: ${(err as Error).message}`);
    }
  }

  // ---- membership ----------------------------------------------------------------------------

  async invite(req: Request): Promise<Invite> {
    this.requireAdmin(req);
    const body = await readJson<InviteRequest>(req);
    const role = String(body.role ?? "").trim().toLowerCase() as Role;
    if (!ROLES.includes(role)) throw ApiError.badRequest(`role: ${JSON.stringify(body.role)} is not a role (coordinator, worker or client)`);
    for (const s of body.services ?? []) checkId("services", s);
    if (body.owner != null) checkId("owner", body.owner);
    const ttlS = body.ttl_s ?? 900;
    if (!(ttlS >= 1 && ttlS <= 30 * 24 * 3600)) throw ApiError.badRequest("ttl_s must be between 1 second and 30 days");
    const uses = body.uses ?? 1;
    if (!(Number.isInteger(uses) && uses >= 1 && uses <= 10_000)) throw ApiError.badRequest("uses must be between 1 and 10000");
    let router = new URL(req.url).origin;
    if (body.router_url != null) {
      try {
        const u = new URL(body.router_url);
        if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
      } catch {
        throw ApiError.badRequest(`router_url ${JSON.stringify(body.router_url)} is not an absolute http(s) URL with a host`);
      }
      router = body.router_url.replace(/\/+$/, "");
    }
    const { token, secret } = newJoinToken(router);
    const now = this.deps.now();
    const expires = now + ttlS * 1000;
    // Used-up and expired invites go as new ones are made: the table only holds live ones.
    this.write("DELETE FROM invites WHERE expires_at_ms <= ?", now);
    this.write(
      "INSERT INTO invites (hash, role, services, owner, uses_left, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
      secretHash(secret),
      role,
      body.services ? JSON.stringify(body.services) : null,
      body.owner ?? null,
      uses,
      expires,
    );
    console.log(`invite made: ${role}, ${uses} use(s), ${ttlS} s`);
    return { token, role, expires_at: rfc3339(expires), uses };
  }

  async enroll(req: Request): Promise<Enrolled> {
    const body = await readJson<EnrollRequest>(req);
    const token = parseJoinToken(String(body.token ?? ""));
    const keyText = String(body.public_key ?? "").trim();
    await publicKey(keyText);
    const wanted = body.node_id ?? "node";
    checkId("node_id", wanted);
    const now = this.deps.now();
    const hash = secretHash(token.secret);
    const rows = this.deps.sql
      .exec("SELECT * FROM invites WHERE hash = ? AND uses_left > 0 AND expires_at_ms > ?", hash, now)
      .toArray();
    const inv = rows[0];
    if (!inv) {
      throw ApiError.unauthorized("the join token is unknown, expired or used up; ask an admin for a new one (`rma invite`)");
    }
    // The object runs one request at a time up to its next await: using the invite here and
    // adding the node below cannot interleave with another enrolment.
    if (Number(inv.uses_left) <= 1) this.write("DELETE FROM invites WHERE hash = ?", hash);
    else this.write("UPDATE invites SET uses_left = uses_left - 1 WHERE hash = ?", hash);
    const role = String(inv.role) as Role;
    const services = inv.services ? (JSON.parse(String(inv.services)) as string[]) : null;
    const owner = (inv.owner as string | null) ?? null;
    let nodeId: string | null = null;
    for (const candidate of [wanted, `${wanted}-${keySuffix(keyText)}`]) {
      const existing = this.deps.sql.exec("SELECT public_key FROM nodes WHERE node_id = ?", candidate).toArray()[0];
      if (existing && existing.public_key !== keyText) continue;
      if (!existing) {
        this.write(
          "INSERT INTO nodes (node_id, role, services, owner, public_key, enrolled_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
          candidate,
          role,
          services ? JSON.stringify(services) : null,
          owner,
          keyText,
          now,
        );
      }
      nodeId = candidate;
      break;
    }
    if (!nodeId) throw new ApiError(409, "conflict", `node id ${JSON.stringify(wanted)} is taken; enrol with another id`);
    console.log(`node ${nodeId} enrolled as ${role}`);
    return this.issue(nodeId, role, services, owner, keyText);
  }

  private async issue(nodeId: string, role: Role, services: string[] | null, owner: string | null, key: string): Promise<Enrolled> {
    const c = await this.config.federation.issue(nodeId, role, services, owner, key, Math.floor(this.deps.now() / 1000));
    return {
      node_id: nodeId,
      role,
      credential: c.token,
      expires_at: rfc3339(c.claims.exp * 1000),
      federation_key: this.config.federation.publicText,
    };
  }

  async renew(req: Request): Promise<Enrolled> {
    const body = await readJson<RenewRequest>(req);
    const id = checkId("node_id", body.node_id);
    const nowS = Math.floor(this.deps.now() / 1000);
    if (typeof body.timestamp !== "number" || Math.abs(body.timestamp - nowS) > RENEW_SKEW_S) {
      throw ApiError.unauthorized("the renewal's timestamp is more than 5 minutes from the router's clock; check the node's clock");
    }
    const n = this.deps.sql.exec("SELECT * FROM nodes WHERE node_id = ?", id).toArray()[0];
    if (!n) throw ApiError.unauthorized(`node ${JSON.stringify(id)} is not enrolled here`);
    if (n.revoked_at_ms != null) throw ApiError.forbidden(`node ${id} has been revoked`);
    const key = await publicKey(String(n.public_key));
    if (!(await verifySig(key, renewMessage(id, body.timestamp), String(body.signature ?? "")))) {
      throw ApiError.unauthorized("the signature is not the node's");
    }
    return this.issue(id, String(n.role) as Role, n.services ? JSON.parse(String(n.services)) : null, (n.owner as string | null) ?? null, String(n.public_key));
  }

  nodes(req: Request): NodeInfo[] {
    this.requireAdmin(req);
    return this.deps.sql
      .exec("SELECT * FROM nodes ORDER BY node_id")
      .toArray()
      .map((n) => ({
        node_id: String(n.node_id),
        role: String(n.role),
        services: n.services ? JSON.parse(String(n.services)) : null,
        owner: (n.owner as string | null) ?? null,
        public_key: String(n.public_key),
        enrolled_at: rfc3339(Number(n.enrolled_at_ms)),
        revoked_at: n.revoked_at_ms != null ? rfc3339(Number(n.revoked_at_ms)) : null,
      }));
  }

  revoke(req: Request, id: string) {
    this.requireAdmin(req);
    checkId("node_id", id);
    const now = this.deps.now();
    this.write("UPDATE nodes SET revoked_at_ms = ? WHERE node_id = ? AND revoked_at_ms IS NULL", now, id);
    if (!this.revoked.has(id)) this.revoked.set(id, now);
    if (this.entries.delete(id)) {
      this.write("DELETE FROM coordinators WHERE id = ?", id);
      console.log(`revoked coordinator ${id} removed from routing`);
      this.broadcast();
    }
    console.warn(`node ${id} revoked`);
    return { status: "revoked" };
  }

  // ---- views ---------------------------------------------------------------------------------

  coordinators(req: Request): CoordinatorInfo[] {
    this.requireAdmin(req);
    const now = this.deps.now();
    return [...this.entries.values()]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((e) => ({
        coordinator_id: e.id,
        url: e.url,
        location: e.location,
        registered_at: rfc3339(e.registeredAt),
        last_seen: rfc3339(e.lastSeen),
        status: this.status(e, now),
      }));
  }

  topology(): Topology {
    const now = this.deps.now();
    const t: Topology = { coordinators: [], workers: [] };
    const recent = (xs: number[]) => {
      while (xs.length && now - xs[0] > MINUTE) xs.shift();
      return xs.length;
    };
    for (const e of [...this.entries.values()].sort((a, b) => a.id.localeCompare(b.id))) {
      const status = this.status(e, now);
      t.coordinators.push({
        id: e.id,
        url: e.url,
        workers: e.workers.length,
        load: e.load,
        status,
        requests_last_minute: recent(e.served),
        last_seen: rfc3339(e.lastSeen),
        location: e.location,
        active_requests: e.activeRequests,
        failures_last_minute: recent(e.failures),
        latency_p99_ms: {},
      });
      for (const w of e.workers) {
        const home = this.homes.get(w.id);
        if (home && home !== e.id && this.entries.has(home)) continue;
        const ws: WorkerStatus = status !== "healthy" && w.status === "active" ? "stale" : w.status;
        t.workers.push({
          id: w.id,
          type: w.type,
          coordinator: e.id,
          services: w.services,
          status: ws,
          load: w.load,
          active_requests: w.active_requests,
          requests_last_minute: w.requests_last_minute,
          last_seen: w.last_seen,
          latency_p99_ms: w.latency_p99_ms ?? {},
          failures_last_minute: w.failures_last_minute,
          ...(w.placed?.length ? { placed: w.placed } : {}),
        } as Topology["workers"][number]);
      }
    }
    return t;
  }

  health(): Response {
    const now = this.deps.now();
    const fresh = this.freshCount(now);
    const total = this.entries.size;
    let body: RouterHealth;
    let code = 200;
    if (fresh > 0) {
      const words = `${fresh} of ${total} coordinator(s) fresh`;
      const w = this.usage().warning;
      body = w
        ? { status: "degraded", coordinators: fresh, message: `${words}; usage past 80 % of the free tier: ${w}` }
        : { status: "healthy", coordinators: fresh, message: words };
    } else {
      code = 503;
      body = {
        status: "degraded",
        coordinators: 0,
        message: total === 0 ? "no coordinator is registered" : `none of ${total} registered coordinator(s) has sent a heartbeat recently`,
      };
    }
    return json(body, code);
  }

  metrics(): string {
    const now = this.deps.now();
    const by: Record<CoordinatorStatus, number> = { healthy: 0, unreachable: 0, stale: 0 };
    for (const e of this.entries.values()) by[this.status(e, now)]++;
    const lines = ["# TYPE rma_router_coordinators gauge"];
    for (const [s, n] of Object.entries(by)) lines.push(`rma_router_coordinators{status="${s}"} ${n}`);
    lines.push("# TYPE rma_router_usage_today gauge");
    for (const c of this.usage().counters) lines.push(`rma_router_usage_today{counter="${c.name}"} ${c.used}`);
    lines.push("# TYPE rma_router_heartbeat_interval_seconds gauge");
    lines.push(`rma_router_heartbeat_interval_seconds ${this.heartbeatIntervalMs() / 1000}`);
    return lines.join("\n") + "\n";
  }

  // ---- the live topology ---------------------------------------------------------------------

  /** Sends the topology to every socket (the redacted one to those not signed in). */
  broadcast() {
    const sockets = this.deps.sockets();
    if (sockets.length === 0) return;
    const t = this.topology();
    const full = JSON.stringify(t);
    const open = JSON.stringify(redacted(t));
    for (const s of sockets) {
      try {
        s.send(s.admin ? full : open);
      } catch {
        // A socket closing under us: it goes with its close event.
      }
    }
  }

  /** A message on a topology socket: `{admin_token}` signs it in. Counted at 1/20. */
  socketMessage(s: Socket, text: string): boolean {
    this.countRequest(1 / 20);
    let token: unknown;
    try {
      token = JSON.parse(text)?.admin_token;
    } catch {
      token = undefined;
    }
    if (typeof token === "string" && sameSecret(token, this.config.adminToken)) {
      s.admin = true;
      s.send(JSON.stringify(this.topology()));
      return true;
    }
    s.send(JSON.stringify({ error: "unauthorized", message: "the admin token is not valid" }));
    return false;
  }

  /** The first message of a new socket. */
  socketOpened(s: Socket) {
    this.countRequest();
    const t = this.topology();
    s.send(JSON.stringify(s.admin ? t : redacted(t)));
  }

  /** For tests and the simulation. */
  count(kind: Kind, n: number) {
    this.meter.count(kind, n, this.deps.now());
  }
}

export function redacted(t: Topology): Topology {
  return { ...t, coordinators: t.coordinators.map((c) => ({ ...c, url: "", location: null })) };
}

/** A body passed on as it came (the coordinator reads it again), parsed to check it; 400 when
 *  it is not JSON. */
function parseBody<T>(text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw ApiError.badRequest(`Failed to parse the request body as JSON: ${(e as Error).message}`);
  }
}

/** An upstream's error passed on with its status; its code the one the contract gives it. */
async function passError(r: Response): Promise<Response> {
  let message = `the coordinator answered ${r.status}`;
  try {
    const b = (await r.json()) as { message?: string };
    if (typeof b.message === "string") message = b.message;
  } catch {
    // not JSON: the status says enough
  }
  return new ApiError(r.status, codeFor(r.status), message).response();
}


