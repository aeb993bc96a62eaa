// JSON answers and errors shaped as the contract says (`{error, message}`, one code per status),
// the id and service-name rules, and small helpers shared by the Worker and the Durable Object.

import type { ErrorBody } from "../../web/src/contract";

/** The machine-readable code for each status, as crates/rma-proto/src/error_code.rs maps them. */
export function codeFor(status: number): string {
  switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 415: return "unsupported_media_type";
    case 429: return "rate_limited";
    case 500: return "internal";
    case 503: return "no_worker";
    case 504: return "timeout";
    default: return status >= 500 ? "upstream_failed" : "bad_request";
  }
}

/** An error answer: thrown by handlers, turned into JSON at the top. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
  static badRequest(m: string) { return new ApiError(400, "bad_request", m); }
  static unauthorized(m: string) { return new ApiError(401, "unauthorized", m); }
  static forbidden(m: string) { return new ApiError(403, "forbidden", m); }
  static notFound(m: string) { return new ApiError(404, "not_found", m); }
  static internal(m: string) { return new ApiError(500, "internal", m); }
  static upstream(m: string) { return new ApiError(502, "upstream_failed", m); }
  static noCoordinator(m: string) { return new ApiError(503, "no_coordinator", m); }
  static noWorker(m: string) { return new ApiError(503, "no_worker", m); }
  static timeout(m: string) { return new ApiError(504, "timeout", m); }

  response(): Response {
    const body: ErrorBody = { error: this.code, message: this.message };
    return json(body, this.status, this.headers);
  }
}

export function json(value: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** A thrown ApiError as its answer; anything else is a bug, answered 500 without details. */
export function errorResponse(e: unknown): Response {
  if (e instanceof ApiError) return e.response();
  console.error("bug handling a request", e);
  return ApiError.internal("the router hit a bug handling this request").response();
}

export const MAX_ID_LEN = 128;

/** Why `id` is not an id (1 to 128 of `[A-Za-z0-9._-]`), or null when it is. */
export function idProblem(id: unknown): string | null {
  if (typeof id !== "string" || id.length === 0) return "id is empty";
  if (id.length > MAX_ID_LEN) return `id is longer than ${MAX_ID_LEN} characters`;
  if (!/^[A-Za-z0-9._-]+$/.test(id)) return `id ${JSON.stringify(id)} holds a character outside [A-Za-z0-9._-]`;
  return null;
}

export function checkId(what: string, id: unknown): string {
  const p = idProblem(id);
  if (p) throw ApiError.badRequest(`${what}: ${p}`);
  return id as string;
}

/** A service name: lowercase letters, digits, '-', at most 64. */
export function isServiceName(name: string): boolean {
  return name.length > 0 && name.length <= 64 && /^[a-z0-9-]+$/.test(name);
}

/** The coordinator named in a job id (`{coordinator}-j{16 or 32 hex}`), or null. */
export function jobCoordinator(jobId: string): string | null {
  const i = jobId.lastIndexOf("-j");
  if (i < 0) return null;
  const coord = jobId.slice(0, i);
  const tail = jobId.slice(i + 2);
  if ((tail.length !== 16 && tail.length !== 32) || !/^[0-9a-fA-F]+$/.test(tail)) return null;
  return idProblem(coord) === null ? coord : null;
}

/** What of a refused body is still read (and dropped) so the client gets the answer rather
 *  than a connection closed under it while it sends, as the Rust router does. */
const DISCARD_BYTES = 4 * 1024 * 1024;
const DISCARD_MS = 2000;

/**
 * The request's body, read up to `limit` bytes, or 413 `payload_too_large` with `what` said —
 * at once when Content-Length says so, else as soon as more has arrived (a chunked upload is
 * never buffered past the limit). Empty for a request without a body.
 */
export async function readBody(req: Request, limit: number, what: string): Promise<ArrayBuffer> {
  if (!req.body) return new ArrayBuffer(0);
  const reader = req.body.getReader();
  const declared = Number(req.headers.get("content-length") ?? "0");
  const chunks: Uint8Array[] = [];
  let total = 0;
  let over = declared > limit;
  while (!over) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) over = true;
    else chunks.push(value);
  }
  if (over) {
    let dropped = 0;
    const until = Date.now() + DISCARD_MS;
    while (dropped < DISCARD_BYTES && Date.now() < until) {
      const { done, value } = await reader.read();
      if (done) break;
      dropped += value.byteLength;
    }
    await reader.cancel().catch(() => undefined);
    throw new ApiError(413, "payload_too_large", what);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out.buffer;
}

/** The request's JSON body as `T`, or 400/413/415 with the reason. */
export async function readJson<T>(req: Request, limit = 1 << 20): Promise<T> {
  const ct = req.headers.get("content-type") ?? "";
  if (ct && !ct.toLowerCase().startsWith("application/json")) {
    throw new ApiError(415, "unsupported_media_type", "Expected request with `Content-Type: application/json`");
  }
  const text = new TextDecoder().decode(await readBody(req, limit, `the JSON body is over ${limit} bytes`));
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw ApiError.badRequest(`Failed to parse the request body as JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw ApiError.badRequest("Failed to deserialize the JSON body: expected an object");
  }
  return v as T;
}

/** RFC 3339 with milliseconds, as the Rust router writes times. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString();
}

/** `Authorization: Bearer …`, trimmed, or null. */
export function bearer(req: Request): string | null {
  const h = req.headers.get("authorization");
  if (!h) return null;
  const m = /^\s*bearer\s+(.+?)\s*$/i.exec(h);
  return m ? m[1] : null;
}

/** Compares two strings in time independent of where they differ. */
export function sameSecret(a: string, b: string): boolean {
  if (a.length !== b.length || a.length === 0) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

/** A random id: `bytes` random bytes as hex. */
export function randomHex(bytes: number): string {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** A number from an environment variable, or `fallback` when absent or not a number. */
export function num(v: string | undefined, fallback: number): number {
  if (v === undefined || v.trim() === "") return fallback;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}
