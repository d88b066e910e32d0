import { createServer, type Server } from "node:http";
import { Redis } from "ioredis";
import type { Floor } from "./floors.js";

/**
 * What a user would write instead of umw for the same read: a node:http server that looks the
 * entity up in Redis with ioredis (auto-pipelining, one GET per request), parses the stored JSON
 * and renders it with its ETag. It keeps its own copy of the entity, as JSON, under its own key:
 * what a hand-written cache-aside service stores. No authentication, no policy, no metrics.
 */
export async function handWrittenPeer(redisUrl: string, keyPrefix: string): Promise<Floor> {
  const redis = new Redis(redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
  const route = /^\/v1\/tenants\/([^/]+)\/types\/([^/]+)\/entities\/([^/?]+)$/;
  const server: Server = createServer((req, res) => {
    const match = route.exec(req.url ?? "");
    if (req.method !== "GET" || !match) {
      res.writeHead(404).end();
      return;
    }
    redis.get(`${keyPrefix}${match[1]}:${match[2]}:${match[3]}`).then(
      (stored) => {
        if (stored === null) {
          res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
          return;
        }
        const entity = JSON.parse(stored) as { version?: string | number };
        const body = JSON.stringify(entity);
        res.writeHead(200, { "content-type": "application/json", etag: `"${entity.version ?? ""}"`, "content-length": Buffer.byteLength(body) });
        res.end(body);
      },
      () => res.writeHead(503).end(),
    );
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      redis.disconnect();
    },
  };
}

/** Stores one entity, as the edge renders it, where the peer reads it. */
export async function seedPeer(redisUrl: string, keyPrefix: string, tenant: string, type: string, id: string, json: Buffer): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  try {
    await redis.set(`${keyPrefix}${tenant}:${type}:${id}`, JSON.stringify(JSON.parse(json.toString("utf8"))));
  } finally {
    redis.disconnect();
  }
}
