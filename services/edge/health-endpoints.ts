import type { EdgeContext } from "./edge-context.js";
import type { HttpResponse } from "./http-exchange.js";

const HEADERS = { "content-type": "application/json", "cache-control": "no-store" };

/** `/healthz`: the process serves HTTP. Liveness only; says nothing of the upstreams. */
export function liveness(res: HttpResponse): void {
  const body = '{"status":"SERVING"}';
  res.writeHead(200, { ...HEADERS, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/**
 * `/readyz`: every upstream answers grpc.health.v1.Health/Check with SERVING, and the edge is not
 * stopping. 200 or 503, with the state of each upstream.
 */
export async function readiness(ctx: EdgeContext, res: HttpResponse): Promise<void> {
  const upstreams: Record<string, string> = {};
  await Promise.all(
    [...ctx.upstreams.values()].map(async (upstream) => {
      upstreams[upstream.service.typeName] = await upstream.health(ctx.options.readyTimeoutMs);
    }),
  );
  const ready = !ctx.shutdown.aborted && Object.values(upstreams).every((state) => state === "SERVING");
  const body = JSON.stringify({ status: ctx.shutdown.aborted ? "STOPPING" : ready ? "SERVING" : "NOT_SERVING", upstreams });
  if (res.destroyed) return;
  res.writeHead(ready ? 200 : 503, { ...HEADERS, "content-length": Buffer.byteLength(body) });
  res.end(body);
}
