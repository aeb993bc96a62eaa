// The Durable Object `CoordinatorRegistry`: one instance holds the federation's registry in its
// SQLite storage. It adapts workerd's storage, alarm and hibernatable WebSockets to the registry
// in registry.ts.

import { DurableObject } from "cloudflare:workers";
import { ApiError, errorResponse } from "./http";
import { configFrom, type Env, Registry, type Socket } from "./registry";

/** Largest message a topology socket reads (the Rust router's limit too). */
const MAX_SOCKET_MESSAGE = 4096;

export class CoordinatorRegistry extends DurableObject<Env> {
  private registry: Registry | null = null;
  private broken: string | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      try {
        const config = await configFrom(env);
        const alarm = await ctx.storage.getAlarm();
        this.registry = new Registry(
          {
            sql: ctx.storage.sql,
            now: () => Date.now(),
            fetch: (url, init) => fetch(url, init),
            setAlarm: (at) => void ctx.storage.setAlarm(at),
            sockets: () => ctx.getWebSockets().map((ws) => socket(ws)),
          },
          config,
          alarm,
        );
      } catch (e) {
        this.broken = (e as Error).message;
        console.error(`the edge router is not configured: ${this.broken}`);
      }
    });
  }

  private ready(): Registry {
    if (!this.registry) throw ApiError.internal(`the edge router is not configured: ${this.broken ?? "starting"}`);
    return this.registry;
  }

  async fetch(req: Request): Promise<Response> {
    try {
      const r = this.ready();
      if (new URL(req.url).pathname === "/api/topology/ws") {
        if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
          throw ApiError.badRequest("this is a WebSocket endpoint: connect with Upgrade: websocket");
        }
        const pair = new WebSocketPair();
        const [client, server] = [pair[0], pair[1]];
        this.ctx.acceptWebSocket(server);
        const admin = r.isAdmin(req);
        server.serializeAttachment({ admin });
        r.socketOpened(socket(server));
        return new Response(null, { status: 101, webSocket: client });
      }
      return await r.handle(req);
    } catch (e) {
      return errorResponse(e);
    }
  }

  async alarm(): Promise<void> {
    this.registry?.alarm();
  }

  async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const r = this.registry;
    if (!r) return;
    const text = typeof message === "string" ? message : new TextDecoder().decode(message);
    if (text.length > MAX_SOCKET_MESSAGE) {
      ws.close(1009, "message too big");
      return;
    }
    const s = socket(ws);
    if (r.socketMessage(s, text)) ws.serializeAttachment({ admin: true });
  }

  async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    try {
      ws.close(code === 1005 ? 1000 : code, reason);
    } catch {
      // already closed
    }
  }
}

function socket(ws: WebSocket): Socket {
  const att = (ws.deserializeAttachment() ?? {}) as { admin?: boolean };
  return {
    send: (t) => ws.send(t),
    admin: att.admin === true,
  };
}
