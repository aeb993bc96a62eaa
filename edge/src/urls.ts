// Which coordinator URLs the edge registers and calls (crates/rma-proto/src/urls.rs): absolute
// http(s) with a host; https to public addresses unless the operator allows more. A Worker cannot
// resolve names itself; Cloudflare does not let a Worker's fetch reach private addresses, and
// literal addresses are checked here.

import { ApiError } from "./http";

export interface AddressPolicy {
  allowHttp: boolean;
  allowPrivate: boolean;
  allowLoopback: boolean;
}

function v4(host: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return null;
  const o = m.slice(1).map(Number);
  return o.every((x) => x <= 255) ? o : null;
}

/** The base URL (no trailing slash) when `raw` may be registered; 400 saying why not. */
export function checkRegistered(policy: AddressPolicy, what: string, raw: string): string {
  const fail = (detail: string) => ApiError.badRequest(`${what} ${JSON.stringify(raw)} ${detail}`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw fail("is not an absolute http(s) URL with a host");
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || !url.hostname) {
    throw fail("is not an absolute http(s) URL with a host");
  }
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const o = v4(host);
  const loopback = host === "localhost" || host === "::1" || (o !== null && o[0] === 127);
  if (o) {
    const [a, b] = o;
    if (a === 169 && b === 254) throw fail(`is refused: ${host} is link-local (the metadata service among them)`);
    if (a === 0 || a >= 224) throw fail(`is refused: ${host} is unspecified, multicast or reserved`);
    const priv = a === 10 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b < 128);
    if (priv && !policy.allowPrivate) throw fail(`is refused: ${host} is a private address (ALLOW_PRIVATE_ADDRESSES)`);
  } else if (host.includes(":")) {
    if (host.startsWith("fe8") || host.startsWith("fe9") || host.startsWith("fea") || host.startsWith("feb")) {
      throw fail(`is refused: ${host} is link-local`);
    }
    if (host === "::" || host.startsWith("ff")) throw fail(`is refused: ${host} is unspecified or multicast`);
    if ((host.startsWith("fc") || host.startsWith("fd")) && !policy.allowPrivate) {
      throw fail(`is refused: ${host} is a private address (ALLOW_PRIVATE_ADDRESSES)`);
    }
  }
  if (loopback && !(policy.allowLoopback || policy.allowPrivate)) throw fail(`is refused: ${host} is loopback`);
  if (url.protocol === "http:" && !(policy.allowHttp || loopback)) {
    throw fail("is refused: plain http to a non-loopback address (ALLOW_HTTP)");
  }
  return raw.replace(/\/+$/, "");
}
