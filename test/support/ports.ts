import { createServer, type Server } from "node:net";
import { SERVICES } from "../../services/registry.js";

/**
 * Ports handed to child processes are taken below the kernel's ephemeral range (32768-60999 on
 * Linux), at random: a port the OS picked for `listen(0)` sits in that range, where any outgoing
 * connection of a concurrent test may take it before the child binds it (EADDRINUSE). Nothing
 * binds here unasked, and no service of scripts/infra.sh or umw's defaults lives in this range.
 */
const RANGE = { from: 20_000, to: 32_000 } as const;

/** Listens on `port` (0: any) on 127.0.0.1; undefined when it is taken. */
async function hold(port: number): Promise<Server | undefined> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once("error", () => resolve(undefined));
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

/** A free port held open (the caller closes it): a random one of RANGE, else any the OS gives. */
async function holdFreePort(): Promise<Server> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const held = await hold(RANGE.from + Math.floor(Math.random() * (RANGE.to - RANGE.from)));
    if (held) return held;
  }
  return (await hold(0))!;
}

const portOf = (server: Server) => (server.address() as { port: number }).port;
const release = (server: Server) => new Promise((resolve) => server.close(resolve));

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = await holdFreePort();
  const port = portOf(server);
  await release(server);
  return port;
}

/** `count` consecutive free ports of RANGE, held open. */
async function holdFreeRun(count: number): Promise<Server[]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = RANGE.from + Math.floor(Math.random() * (RANGE.to - RANGE.from - count));
    const held: Server[] = [];
    for (let i = 0; i < count; i++) {
      const server = await hold(base + i);
      if (!server) break;
      held.push(server);
    }
    if (held.length === count) return held;
    await Promise.all(held.map(release));
  }
  throw new Error(`no ${count} consecutive free ports in ${RANGE.from}-${RANGE.to}`);
}

/**
 * A free port for every service's port setting, as `umw serve all` reads them: all held open until
 * the last is found, so no two settings get the same port. UMW_METRICS_PORT is the first of a free
 * run as long as the registry: a process serving one service listens on the base plus its offset.
 */
export async function freeServicePorts(): Promise<Record<string, number>> {
  const names = ["QUERY", "COMMAND", "REALTIME", "RELAY", "PROCESSOR", "CACHE_UPDATER", "POLICY", "EDGE", "RATELIMIT"];
  const metrics = await holdFreeRun(Object.keys(SERVICES).length);
  const held: Server[] = [];
  for (const _ of names) held.push(await holdFreePort());
  const ports = Object.fromEntries(names.map((name, i) => [`UMW_${name}_PORT`, portOf(held[i]!)]));
  ports.UMW_METRICS_PORT = portOf(metrics[0]!);
  await Promise.all([...held, ...metrics].map(release));
  return ports;
}
