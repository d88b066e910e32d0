import { cors as connectCors } from "@connectrpc/connect";
import type { HttpRequest, HttpResponse } from "./http-exchange.js";

const ALLOWED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].join(", ");

/**
 * CORS for browsers, for REST and the Connect / gRPC-web routes alike: the allowed origins come from
 * the options (none by default; `*` allows any), preflights are answered here, and the headers browsers must be able
 * to read (Cache-Status, ETag, request id, gRPC-web status) are exposed.
 */
export class Cors {
  private readonly any: boolean;
  private readonly origins: ReadonlySet<string>;
  private readonly allowHeaders: string;
  private readonly exposeHeaders: string;

  constructor(origins: readonly string[], forwardedHeaders: readonly string[], passthroughHeaders: readonly string[]) {
    this.any = origins.includes("*");
    this.origins = new Set(origins);
    this.allowHeaders = unique([
      ...connectCors.allowedHeaders,
      "content-type",
      "if-none-match",
      "x-request-id",
      "grpc-timeout",
      ...forwardedHeaders,
    ]).join(", ");
    this.exposeHeaders = unique([
      ...connectCors.exposedHeaders,
      "cache-status",
      "etag",
      "x-request-id",
      "allow",
      "retry-after",
      "ratelimit",
      "ratelimit-policy",
      ...passthroughHeaders,
    ]).join(", ");
  }

  /**
   * Adds the CORS headers for a request that has an Origin. Returns true when it answered the
   * request itself (a preflight), false when the request goes on.
   */
  apply(req: HttpRequest, res: HttpResponse, origin: string): boolean {
    const allowed = this.any || this.origins.has(origin);
    const preflight = req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
    if (allowed) {
      res.setHeader("access-control-allow-origin", this.any ? "*" : origin);
      if (!this.any) res.setHeader("vary", "Origin");
      if (!preflight) res.setHeader("access-control-expose-headers", this.exposeHeaders);
    }
    if (!preflight) return false;
    if (allowed) {
      res.setHeader("access-control-allow-methods", ALLOWED_METHODS);
      res.setHeader("access-control-allow-headers", this.allowHeaders);
      res.setHeader("access-control-max-age", "7200");
    }
    res.writeHead(204, { "content-length": 0 });
    res.end();
    return true;
  }
}

function unique(names: readonly string[]): string[] {
  return [...new Set(names.map((name) => name.toLowerCase()))];
}
