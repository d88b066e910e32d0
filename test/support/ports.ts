import { createServer } from "node:net";

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A free port for every service's port setting, as `umw serve all` reads them: all held open until
 * the last is found, so no two settings get the same port.
 */
export async function freeServicePorts(): Promise<Record<string, number>> {
  const names = ["QUERY", "COMMAND", "REALTIME", "RELAY", "PROCESSOR", "CACHE_UPDATER", "POLICY", "EDGE", "METRICS", "RATELIMIT"];
  const held = await Promise.all(
    names.map(async () => {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return server;
    }),
  );
  const ports = Object.fromEntries(names.map((name, i) => [`UMW_${name}_PORT`, (held[i]!.address() as { port: number }).port]));
  await Promise.all(held.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}
