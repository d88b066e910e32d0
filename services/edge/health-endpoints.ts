import { processReadiness } from "../../runtime/readiness.js";
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
 * `/readyz`: every upstream answers grpc.health.v1.Health/Check with SERVING, every service this
 * process runs has started, every dependency its adapters reach (Postgres, Kafka consumer groups)
 * is up as they last saw it, and the edge is not stopping. 200 or 503; the body names what is not
 * ready (`notReady`) and gives the state of each upstream, service and dependency.
 */
export async function readiness(ctx: EdgeContext, res: HttpResponse): Promise<void> {
  const upstreams: Record<string, string> = {};
  await Promise.all(
    [...ctx.upstreams.values()].map(async (upstream) => {
      upstreams[upstream.service.typeName] = await upstream.health(ctx.options.readyTimeoutMs);
    }),
  );
  const local = processReadiness.snapshot();
  const notReady = [
    ...Object.entries(upstreams).filter(([, state]) => state !== "SERVING").map(([name]) => `upstream ${name}`),
    ...Object.entries(local.services).filter(([, entry]) => entry.state !== "READY").map(([name]) => `service ${name}`),
    ...Object.entries(local.dependencies).filter(([, entry]) => entry.state !== "READY").map(([name]) => name),
  ];
  const ready = !ctx.shutdown.aborted && notReady.length === 0;
  const body = JSON.stringify({
    status: ctx.shutdown.aborted ? "STOPPING" : ready ? "SERVING" : "NOT_SERVING",
    notReady,
    upstreams,
    services: local.services,
    dependencies: local.dependencies,
  });
  if (res.destroyed) return;
  res.writeHead(ready ? 200 : 503, { ...HEADERS, "content-length": Buffer.byteLength(body) });
  res.end(body);
}
