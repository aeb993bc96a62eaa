// The rma edge router as a Cloudflare Worker: the same HTTP contract as `rma router`
// (crates/rma-router). The web UI is the Worker's static assets; registry calls go to the one
// Durable Object (`CoordinatorRegistry`); documents are forwarded from the Worker itself using a
// list of coordinators it caches for ROUTE_CACHE_MS, so a document costs one Worker request and,
// on average, far less than one Durable Object request.

import { flag, type Route, type Routes } from "./registry";
import type { Env as RegistryEnv } from "./registry";
import { Federation } from "./auth";
import { ApiError, bearer, errorResponse, isServiceName, jobCoordinator, num, randomHex, readBody } from "./http";

export { CoordinatorRegistry } from "./durable";

interface WorkerEnv extends RegistryEnv {
  REGISTRY: DurableObjectNamespace;
  ASSETS?: Fetcher;
  ROUTE_CACHE_MS?: string;
  MAX_BODY_MB?: string;
  FAILOVER_WAIT_S?: string;
  IP_RATE_LIMIT?: string;
  IP_RATE_BURST?: string;
  IP_UPLOAD_MB_PER_HOUR?: string;
  CLIENTS_KEYED?: string;
}

/** Request headers passed on to the coordinator. */
const PASS_REQUEST = ["content-type", "accept", "prefer", "x-rma-forwarded-by"];
/** Response headers passed back to the client. */
const PASS_RESPONSE = [
  "server-timing",
  "x-rma-cache",
  "x-rma-verified",
  "content-type",
  "location",
  "x-rma-coordinator",
  "x-rma-worker",
  "x-rma-attempts",
];

/** Coordinators tried before looking at the list again. */
const MAX_TRIES_PER_ROUND = 8;

// ---- what this isolate keeps between requests -------------------------------------------------

/** Requests this isolate answered and has not reported to the registry yet. */
let unreported = 0;
/** Forwards served per coordinator since the last report (its requests-a-minute figure). */
let served: Record<string, number> = {};
let cache: { at: number; routes: Routes } | null = null;
/** What this isolate saw of each coordinator: in flight, and a peak-EWMA of round trips. */
const seen = new Map<string, { inFlight: number; ewmaMs: number }>();
let federation: { seed: string; fed: Promise<Federation> } | null = null;

function registry(env: WorkerEnv): DurableObjectStub {
  return env.REGISTRY.get(env.REGISTRY.idFromName("registry"));
}

/** A call to the registry, carrying this isolate's request count. */
async function toRegistry(env: WorkerEnv, req: Request): Promise<Response> {
  const headers = new Headers(req.headers);
  headers.set("x-rma-worker-requests", String(unreported));
  unreported = 0;
  if (req.headers.get("upgrade")?.toLowerCase() === "websocket") {
    return registry(env).fetch(new Request(req, { headers }));
  }
  // Registry calls are small JSON: buffered, so the object may answer (a 401, say) without
  // reading a body that would otherwise still be streaming to it.
  let body: ArrayBuffer | null = null;
  if (req.method !== "GET" && req.method !== "HEAD") {
    body = await readBody(req, MAX_REGISTRY_BODY, `registry calls carry at most ${MAX_REGISTRY_BODY} bytes`);
  }
  return registry(env).fetch(new Request(req.url, { method: req.method, headers, body }));
}

/** A coordinator's heartbeat lists its workers: 10,000 of them fit. */
const MAX_REGISTRY_BODY = 8 * 1024 * 1024;

async function routes(env: WorkerEnv, force = false): Promise<Routes> {
  const ttl = num(env.ROUTE_CACHE_MS, 5000);
  const now = Date.now();
  if (!force && cache && now - cache.at < ttl) return cache.routes;
  const body = JSON.stringify({ served });
  served = {};
  const r = await toRegistry(
    env,
    new Request("https://registry/internal/routes", { method: "POST", body, headers: { "content-type": "application/json" } }),
  );
  if (!r.ok) {
    const e = (await r.json().catch(() => ({}))) as { message?: string };
    throw new ApiError(r.status, r.status === 500 ? "internal" : "upstream_failed", e.message ?? "the registry failed");
  }
  cache = { at: now, routes: (await r.json()) as Routes };
  return cache.routes;
}

/** Tells the registry a coordinator failed to answer (liveness without pings). */
async function reportFailure(env: WorkerEnv, id: string) {
  for (const c of cache?.routes.coordinators ?? []) if (c.id === id) c.status = "unreachable";
  await toRegistry(
    env,
    new Request("https://registry/internal/failure", {
      method: "POST",
      body: JSON.stringify({ id }),
      headers: { "content-type": "application/json" },
    }),
  ).catch(() => undefined);
}

// ---- limits -----------------------------------------------------------------------------------

interface Bucket { tokens: number; at: number }
const buckets = new Map<string, Bucket>();
const uploads = new Map<string, { bytes: number; hour: number }>();

/** Token bucket per key: `rate` a second, `burst` at once. Per isolate, so a bound per
 *  Cloudflare location rather than a global one. */
function allow(key: string, rate: number, burst: number): number | null {
  if (rate <= 0) return null;
  const now = Date.now();
  if (buckets.size > 10_000) buckets.clear();
  const b = buckets.get(key) ?? { tokens: burst, at: now };
  b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
  b.at = now;
  buckets.set(key, b);
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return null;
  }
  return Math.ceil((1 - b.tokens) / rate);
}

function limited(path: string): boolean {
  return (
    path.startsWith("/api/service/") ||
    path === "/api/edge/register" ||
    path === "/api/worker/register" ||
    path === "/api/enroll" ||
    path === "/api/credentials/renew"
  );
}

function clientAddress(req: Request): string {
  return req.headers.get("cf-connecting-ip") ?? req.headers.get("x-real-ip") ?? "unknown";
}

async function fed(env: WorkerEnv): Promise<Federation> {
  const seed = env.FEDERATION_KEY ?? "";
  if (!federation || federation.seed !== seed) federation = { seed, fed: Federation.fromSeedHex(seed) };
  return federation.fed;
}

/** This router's own credential for each coordinator, signed once per isolate and again two
 *  thirds into its life. */
const own = new Map<string, { seed: string; token: string; renewAt: number }>();

async function ownCredential(env: WorkerEnv, coordinator: string): Promise<string> {
  const seed = env.FEDERATION_KEY ?? "";
  const now = Math.floor(Date.now() / 1000);
  const have = own.get(coordinator);
  if (have && have.seed === seed && now < have.renewAt) return have.token;
  const { token, claims } = await (await fed(env)).routerCredential("edge-router", coordinator, now);
  if (own.size > 4096) own.clear();
  own.set(coordinator, { seed, token, renewAt: claims.iat + Math.floor(((claims.exp - claims.iat) * 2) / 3) });
  return token;
}

/** The verified client key of a request, if it carries one (client or coordinator role). */
async function clientKey(req: Request, env: WorkerEnv, revoked: string[]): Promise<string | null> {
  const t = bearer(req);
  if (!t) return null;
  const c = await (await fed(env)).verify(t, Math.floor(Date.now() / 1000));
  if (c.role !== "client" && c.role !== "coordinator") {
    throw ApiError.forbidden(`this needs a client credential; ${c.sub} holds a ${c.role} credential`);
  }
  if (revoked.includes(c.sub)) throw ApiError.forbidden(`${c.role} ${c.sub} has been revoked`);
  return t;
}

// ---- forwarding -------------------------------------------------------------------------------

/** Candidates for a service: two random healthy ones compared on (in flight + 1) × EWMA
 *  (power of two choices), the rest after, unreachable ones last. */
function order(cands: Route[]): Route[] {
  const cost = (c: Route) => {
    const s = seen.get(c.id) ?? { inFlight: 0, ewmaMs: 1 };
    return (s.inFlight + c.active_requests + 1) * Math.max(s.ewmaMs, 0.1);
  };
  const healthy = cands.filter((c) => c.status === "healthy");
  const rest = cands.filter((c) => c.status !== "healthy");
  for (let i = healthy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [healthy[i], healthy[j]] = [healthy[j], healthy[i]];
  }
  if (healthy.length >= 2 && cost(healthy[1]) < cost(healthy[0])) [healthy[0], healthy[1]] = [healthy[1], healthy[0]];
  return [...healthy, ...rest];
}

function traceparent(req: Request): { header: string; sampled: boolean } {
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(req.headers.get("traceparent")?.trim() ?? "");
  const trace = m && !/^0+$/.test(m[1]) ? m[1] : randomHex(16);
  const flags = m ? m[3] : "01";
  return { header: `00-${trace}-${randomHex(8)}-${flags}`, sampled: (parseInt(flags, 16) & 1) === 1 };
}

function requestId(req: Request): string {
  const v = req.headers.get("x-request-id");
  return v && v.length <= 128 && /^[\x21-\x7e]+$/.test(v) ? v : crypto.randomUUID();
}

function timingTotal(h: string | null): number {
  let t = 0;
  for (const m of (h ?? "").matchAll(/dur=([0-9.]+)/g)) t += Number(m[1]) || 0;
  return t;
}

async function forward(req: Request, env: WorkerEnv, url: URL, started: number): Promise<Response> {
  const after = url.pathname.slice("/api/service/".length);
  const slash = after.indexOf("/");
  const service = slash < 0 ? after : after.slice(0, slash);
  if (!isServiceName(service)) {
    throw ApiError.badRequest(`service type ${JSON.stringify(service)} is not a plain name (lowercase letters, digits, '-')`);
  }
  const limit = num(env.MAX_BODY_MB, 50) * 1024 * 1024;
  const body =
    req.method === "GET" || req.method === "HEAD"
      ? null
      : await readBody(req, limit, `the body is over the limit of ${limit} bytes`);
  // A stranger to a keyed router is refused before the registry is asked anything.
  if (!bearer(req) && flag(env.CLIENTS_KEYED)) {
    throw ApiError.unauthorized("this router takes documents from enrolled clients only (Authorization: Bearer …); ask for `rma invite --role client`");
  }
  let r = await routes(env);
  const client = await clientKey(req, env, r.revoked);
  // Uploads without a client key also have an hourly quota per address.
  if (!client && body) {
    const quota = num(env.IP_UPLOAD_MB_PER_HOUR, 1024) * 1024 * 1024;
    const ip = clientAddress(req);
    const hour = Math.floor(Date.now() / 3_600_000);
    const u = uploads.get(ip);
    const used = u && u.hour === hour ? u.bytes : 0;
    if (quota > 0 && used + body.byteLength > quota) {
      throw new ApiError(429, "rate_limited", "this address has uploaded its hourly quota; try again later or use a client key", {
        "retry-after": String(3600 - Math.floor((Date.now() / 1000) % 3600)),
      });
    }
    if (uploads.size > 10_000) uploads.clear();
    uploads.set(ip, { bytes: used + body.byteLength, hour });
  }
  const rid = requestId(req);
  const trace = traceparent(req);
  const headers: Record<string, string> = { "x-request-id": rid, traceparent: trace.header };
  for (const h of PASS_REQUEST) {
    const v = req.headers.get(h);
    if (v) headers[h] = v;
  }
  if (client) headers.authorization = `Bearer ${client}`;
  const forwardedBy = req.headers.get("x-rma-forwarded-by");
  const timeout = num(env.REQUEST_TIMEOUT_S, 125) * 1000;
  const deadline = Date.now() + num(env.FAILOVER_WAIT_S, 5) * 1000;
  let tried = 0;
  let lastFailure = "";
  for (let round = 0; ; round++) {
    const cands = order(
      r.coordinators.filter((c) => c.status !== "stale" && c.services.includes(service) && c.id !== forwardedBy),
    ).slice(0, MAX_TRIES_PER_ROUND);
    if (cands.length === 0 && tried === 0) {
      const any = r.coordinators.some((c) => c.status !== "stale");
      throw any
        ? ApiError.noWorker(`no coordinator has an active worker offering the ${JSON.stringify(service)} service`)
        : ApiError.noCoordinator("no coordinator is registered and fresh");
    }
    for (const c of cands) {
      tried++;
      const s = seen.get(c.id) ?? { inFlight: 0, ewmaMs: 1 };
      seen.set(c.id, s);
      s.inFlight++;
      const t0 = Date.now();
      let resp: Response;
      let answer: ArrayBuffer;
      // Coordinators run services only for a router credential made out to them (or a member's).
      headers["x-rma-router-credential"] = await ownCredential(env, c.id);
      try {
        resp = await fetch(`${c.url}${url.pathname}${url.search}`, {
          method: req.method,
          headers,
          body,
          redirect: "manual",
          signal: AbortSignal.timeout(timeout),
        });
        // The whole answer, as rma router takes it: a coordinator dying mid-answer is a failed
        // try (the next one gets the same body), not a cut-off answer for the client.
        answer = await resp.arrayBuffer();
      } catch (e) {
        s.inFlight--;
        if ((e as Error).name === "TimeoutError") {
          throw ApiError.timeout(`coordinator ${c.id} did not answer within ${timeout / 1000} s`);
        }
        console.warn(`coordinator ${c.id} unreachable (${(e as Error).message}); trying the next`);
        lastFailure = `coordinator ${c.id} unreachable`;
        await reportFailure(env, c.id);
        continue;
      }
      s.inFlight--;
      const rtt = Date.now() - t0;
      // Peak EWMA: a slow answer counts at once, a fast one pulls the estimate down slowly.
      s.ewmaMs = rtt > s.ewmaMs ? rtt : s.ewmaMs * 0.8 + rtt * 0.2;
      if (resp.status === 502 || resp.status === 503) {
        console.warn(`coordinator ${c.id} could not serve (${resp.status}); trying the next`);
        lastFailure = `coordinator ${c.id} answered ${resp.status}`;
        continue;
      }
      served[c.id] = (served[c.id] ?? 0) + 1;
      return relay(resp, answer, c.id, tried, started, rid, trace.header);
    }
    // Every coordinator offering it failed: during a failover another will offer it soon.
    if (Date.now() >= deadline) break;
    await new Promise((res) => setTimeout(res, 250));
    r = await routes(env, true);
  }
  throw ApiError.noWorker(
    `no coordinator could serve ${JSON.stringify(service)}: tried ${tried} time(s) over ${num(env.FAILOVER_WAIT_S, 5)} s, last: ${lastFailure}`,
  );
}

function relay(
  resp: Response,
  body: ArrayBuffer,
  coordinator: string,
  attempts: number,
  started: number,
  rid: string,
  trace: string,
): Response {
  const out = new Headers();
  for (const h of PASS_RESPONSE) {
    const v = resp.headers.get(h);
    if (v) out.set(h, v);
  }
  if (!out.has("x-rma-coordinator")) out.set("x-rma-coordinator", coordinator);
  out.set("x-rma-router-attempts", String(attempts));
  out.set("x-request-id", rid);
  const below = resp.headers.get("server-timing");
  const own = Math.max(0, Date.now() - started - timingTotal(below));
  out.set("server-timing", below ? `router;dur=${own.toFixed(3)}, ${below}` : `router;dur=${own.toFixed(3)}`);
  out.set("traceresponse", trace);
  return new Response(body, { status: resp.status, headers: out });
}

/**
 * `/api/jobs/{id}[/result|/corrections]`: asked of the coordinator named in the id. When that
 * one is gone, its replication group (if it has one) still knows the job: the other coordinators
 * are asked in turn and the first that knows it answers — as the Rust router does.
 */
async function job(req: Request, env: WorkerEnv, id: string, part: "" | "/result" | "/corrections"): Promise<Response> {
  const holder = jobCoordinator(id);
  if (!holder) throw ApiError.badRequest(`${JSON.stringify(id)} is not a job id`);
  let list = (await routes(env)).coordinators;
  if (!list.some((x) => x.id === holder)) list = (await routes(env, true)).coordinators;
  const c = list.find((x) => x.id === holder);
  const path = `/api/jobs/${encodeURIComponent(id)}${part}`;
  // A correction is small JSON; nothing else about a job has a body.
  let sent: ArrayBuffer | null = null;
  if (part === "/corrections") {
    sent = await readBody(req, 64 * 1024, "a correction is at most 64 KB");
  }
  const ask = async (url: string): Promise<[Response, ArrayBuffer]> => {
    const resp = await fetch(`${url}${path}`, {
      method: req.method,
      body: sent,
      headers: sent ? { "content-type": "application/json" } : {},
      signal: AbortSignal.timeout(30_000),
      redirect: "manual",
    });
    return [resp, await resp.arrayBuffer()];
  };
  let failure: ApiError | null = null;
  if (c) {
    try {
      const [resp, body] = await ask(c.url);
      return relay(resp, body, holder, 1, Date.now(), requestId(req), traceparent(req).header);
    } catch (e) {
      if ((e as Error).name === "TimeoutError") throw ApiError.timeout(`coordinator ${holder} holding job ${id} did not answer within 30 s`);
      await reportFailure(env, holder);
      failure = ApiError.upstream(`coordinator ${holder} holding job ${id} is unreachable: ${(e as Error).message}`);
    }
  }
  for (const other of list.filter((x) => x.id !== holder)) {
    try {
      const [resp, body] = await ask(other.url);
      if (resp.status !== 404) return relay(resp, body, other.id, 1, Date.now(), requestId(req), traceparent(req).header);
    } catch {
      // Not this one; the next.
    }
  }
  throw failure ?? ApiError.notFound(`job ${id} is held by coordinator ${holder}, which is not registered now`);
}

/** Paths the registry (the Durable Object) answers. */
function toRegistryPath(path: string): boolean {
  return (
    path.startsWith("/api/edge/") ||
    path.startsWith("/api/worker/") ||
    path.startsWith("/api/admin/") ||
    path === "/api/enroll" ||
    path === "/api/credentials/renew" ||
    path === "/api/topology" ||
    path === "/api/topology/ws" ||
    path === "/health" ||
    path === "/metrics"
  );
}

async function handle(req: Request, env: WorkerEnv): Promise<Response> {
  const started = Date.now();
  const url = new URL(req.url);
  const path = url.pathname;
  if (limited(path)) {
    const wait = allow(clientAddress(req), num(env.IP_RATE_LIMIT, 10), num(env.IP_RATE_BURST, 50));
    if (wait !== null) {
      throw new ApiError(429, "rate_limited", "too many requests from this address; slow down", { "retry-after": String(wait) });
    }
  }
  if (path.startsWith("/api/service/")) return forward(req, env, url, started);
  const jm = /^\/api\/jobs\/([^/]+)(\/result|\/corrections)?$/.exec(path);
  if (jm) {
    const part = (jm[2] ?? "") as "" | "/result" | "/corrections";
    const allowed = part === "" ? ["GET", "DELETE"] : part === "/result" ? ["GET"] : ["POST"];
    if (allowed.includes(req.method)) return job(req, env, decodeURIComponent(jm[1]), part);
    throw new ApiError(405, "method_not_allowed", `${req.method} is not allowed on ${path}`);
  }
  if (toRegistryPath(path)) {
    // The UI's topology view polls; a few seconds of cache would hide changes, so it is not cached.
    return toRegistry(env, req);
  }
  if (env.ASSETS && (req.method === "GET" || req.method === "HEAD")) {
    const a = await env.ASSETS.fetch(req);
    if (a.status !== 404) return a;
  }
  throw ApiError.notFound(`no route for ${path}`);
}

export default {
  async fetch(req: Request, env: WorkerEnv): Promise<Response> {
    unreported++;
    try {
      return await handle(req, env);
    } catch (e) {
      return errorResponse(e);
    }
  },
} satisfies ExportedHandler<WorkerEnv>;

