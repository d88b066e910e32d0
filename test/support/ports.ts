import { createServer } from "node:net";

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A free port for every service's port setting, as `umw serve all` reads them. */
export async function freeServicePorts(): Promise<Record<string, number>> {
  const names = ["QUERY", "COMMAND", "REALTIME", "RELAY", "PROCESSOR", "CACHE_UPDATER", "POLICY", "EDGE", "METRICS", "RATELIMIT"];
  const ports: Record<string, number> = {};
  for (const name of names) ports[`UMW_${name}_PORT`] = await freePort();
  return ports;
}
