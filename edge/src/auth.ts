// Credentials as crates/rma-auth makes them, with WebCrypto: EdDSA-signed JWTs (Ed25519), join
// tokens (`rmaj1_` + base64url JSON `{r, s}`, the router keeping only BLAKE3 of the secret) and
// the renewal proof. The federation key is the same 32-byte seed, in hex, as the self-hosted
// router's `federation.key`, so a federation can move between the two routers.

import { blake3 } from "@noble/hashes/blake3.js";
import { ApiError } from "./http";

export type Role = "coordinator" | "worker" | "client";
export const ROLES: Role[] = ["coordinator", "worker", "client"];

/** What a credential says (crates/rma-auth/src/credential.rs `Claims`). */
export interface Claims {
  iss: string;
  sub: string;
  /** A router's own credential says "router" (never issued by an invite). */
  role: Role | "router";
  services?: string[];
  owner?: string;
  cnf: string;
  iat: number;
  exp: number;
  jti: string;
  /** Who the credential is for, when only one may take it (a router's: the coordinator). */
  aud?: string;
}

export const ISSUER = "rma";
/** 24 h, as the Rust router issues them. */
export const CREDENTIAL_TTL_S = 24 * 3600;
/** A router's own credential: an hour, as rma-auth's `ROUTER_CREDENTIAL_TTL`. */
export const ROUTER_CREDENTIAL_TTL_S = 3600;
const LEEWAY_S = 60;
/** How far a renewal's timestamp may be from the router's clock. */
export const RENEW_SKEW_S = 300;

const enc = new TextEncoder();
const dec = new TextDecoder();

export function b64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** base64url (no padding) to bytes; null when it is not. */
export function unb64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const pad = text.length % 4 === 0 ? "" : "=".repeat(4 - (text.length % 4));
  try {
    const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/") + pad);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

function hexBytes(hex: string): Uint8Array | null {
  const h = hex.trim();
  if (!/^[0-9a-fA-F]*$/.test(h) || h.length % 2) return null;
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A public key as rma writes it (base64url of 32 bytes), imported for verifying. */
export async function publicKey(text: string): Promise<CryptoKey> {
  const raw = unb64url(text.trim());
  if (!raw || raw.length !== 32) throw ApiError.badRequest("public_key: not base64url of a 32-byte Ed25519 key");
  try {
    return await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
  } catch {
    throw ApiError.badRequest("public_key: not a valid Ed25519 public key");
  }
}

/** Whether `signature` (base64url) is `key`'s signature of `message`. */
export async function verifySig(key: CryptoKey, message: string, signature: string): Promise<boolean> {
  const sig = unb64url(signature.trim());
  if (!sig || sig.length !== 64) return false;
  return crypto.subtle.verify({ name: "Ed25519" }, key, sig, enc.encode(message));
}

/** The federation's key: signs credentials (router) and checks them. */
export class Federation {
  private constructor(
    private readonly signing: CryptoKey,
    private readonly verifying: CryptoKey,
    /** The public half, base64url, as `Enrolled.federation_key` carries it. */
    readonly publicText: string,
  ) {}

  /** From the hex seed of `federation.key` (the `FEDERATION_KEY` secret). */
  static async fromSeedHex(seedHex: string): Promise<Federation> {
    const seed = hexBytes(seedHex);
    if (!seed || seed.length !== 32) {
      throw new Error("FEDERATION_KEY must be 64 hex digits (the contents of a federation.key file)");
    }
    // PKCS#8 of an Ed25519 seed: a fixed 16-byte prefix, then the seed.
    const pkcs8 = new Uint8Array([...hexBytes("302e020100300506032b657004220420")!, ...seed]);
    const signing = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
    const jwk = (await crypto.subtle.exportKey("jwk", signing)) as JsonWebKey;
    const x = jwk.x ?? "";
    const verifying = await crypto.subtle.importKey("raw", unb64url(x)!, { name: "Ed25519" }, false, ["verify"]);
    return new Federation(signing, verifying, x);
  }

  /** A signed credential for `claims`. */
  async sign(claims: Claims): Promise<string> {
    const head = b64url(enc.encode(JSON.stringify({ typ: "JWT", alg: "EdDSA" })));
    const body = b64url(enc.encode(JSON.stringify(claims)));
    const sig = await crypto.subtle.sign({ name: "Ed25519" }, this.signing, enc.encode(`${head}.${body}`));
    return `${head}.${body}.${b64url(new Uint8Array(sig))}`;
  }

  /** The claims of a credential this federation signed and that has not expired; 401 else. */
  async verify(token: string, nowS: number): Promise<Claims> {
    const parts = token.trim().split(".");
    const bad = (why: string) => ApiError.unauthorized(`the credential is not valid: ${why}`);
    if (parts.length !== 3) throw bad("not a JWT");
    const [h, b, s] = parts;
    const header = parseJson(unb64url(h));
    if (!header || header.alg !== "EdDSA") throw bad("not an EdDSA token");
    const sig = unb64url(s);
    if (!sig || sig.length !== 64) throw bad("bad signature");
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, this.verifying, sig, enc.encode(`${h}.${b}`));
    if (!ok) throw ApiError.unauthorized("the credential is not signed by this federation");
    const c = parseJson(unb64url(b)) as Claims | null;
    if (!c || typeof c.sub !== "string" || typeof c.exp !== "number") throw bad("missing claims");
    if (c.iss !== ISSUER) throw bad("wrong issuer");
    if (c.exp + LEEWAY_S < nowS) {
      throw ApiError.unauthorized(
        "the credential has expired; the node renews it at the router by itself, or enrols again with a new join token",
      );
    }
    if (!(ROLES as string[]).includes(c.role)) throw bad("unknown role");
    return c;
  }

  /** This router's own credential for coordinator `aud` (role "router", the federation's
   *  public key as its key, an hour of life), as rma router's `FederationKey::router_credential`
   *  makes it: coordinators run services only for a router credential made out to them, or for
   *  a member's credential. */
  async routerCredential(routerId: string, aud: string, nowS: number): Promise<{ token: string; claims: Claims }> {
    const claims: Claims = {
      iss: ISSUER,
      sub: routerId,
      role: "router",
      cnf: this.publicText,
      iat: nowS,
      exp: nowS + ROUTER_CREDENTIAL_TTL_S,
      jti: hex(crypto.getRandomValues(new Uint8Array(16))),
      aud,
    };
    return { token: await this.sign(claims), claims };
  }

  /** A fresh credential for a node. */
  async issue(nodeId: string, role: Role, services: string[] | null, owner: string | null, key: string, nowS: number) {
    const claims: Claims = {
      iss: ISSUER,
      sub: nodeId,
      role,
      ...(services ? { services } : {}),
      ...(owner ? { owner } : {}),
      cnf: key,
      iat: nowS,
      exp: nowS + CREDENTIAL_TTL_S,
      jti: hex(crypto.getRandomValues(new Uint8Array(16))),
    };
    return { token: await this.sign(claims), claims };
  }
}

function parseJson(bytes: Uint8Array | null): any {
  if (!bytes) return null;
  try {
    const v = JSON.parse(dec.decode(bytes));
    return v && typeof v === "object" ? v : null;
  } catch {
    return null;
  }
}

/** Whether the credential lets its node run or hold `service`. */
export function allows(c: Claims, service: string): boolean {
  return !c.services || c.services.includes(service);
}

/** 403 unless the credential names `id`: a member acts only for itself. */
export function sameNode(c: Claims, what: string, id: string): void {
  if (c.sub !== id) {
    throw ApiError.forbidden(`the credential is ${c.sub}'s; it cannot act for ${what} ${JSON.stringify(id)}`);
  }
}

/** A join token's router and secret; 400 when it is not one. */
export function parseJoinToken(text: string): { router: string; secret: string } {
  const bad = (why: string) =>
    ApiError.unauthorized(`not a join token (${why}); make one with \`rma invite --router URL --role …\``);
  const t = text.trim();
  if (!t.startsWith("rmaj1_")) throw bad("it does not start with rmaj1_");
  const raw = unb64url(t.slice(6));
  if (!raw) throw bad("bad base64");
  const v = parseJson(raw);
  if (!v || typeof v.r !== "string" || typeof v.s !== "string") throw bad("bad contents");
  if (!/^[0-9a-fA-F]{64}$/.test(v.s)) throw bad("bad secret");
  return { router: v.r, secret: v.s };
}

/** A new join token for the router at `router`. */
export function newJoinToken(router: string): { token: string; secret: string } {
  const secret = hex(crypto.getRandomValues(new Uint8Array(32)));
  const token = "rmaj1_" + b64url(enc.encode(JSON.stringify({ r: router.replace(/\/+$/, ""), s: secret })));
  return { token, secret };
}

/** What the router keeps instead of a join token's secret. */
export function secretHash(secret: string): string {
  return hex(blake3(enc.encode(secret)));
}

/** The first 8 hex digits of BLAKE3 of a public key: the suffix of a taken node id. */
export function keySuffix(key: string): string {
  return secretHash(key).slice(0, 8);
}

export function renewMessage(nodeId: string, unixS: number): string {
  return `rma-renew-v1\n${nodeId}\n${unixS}`;
}
