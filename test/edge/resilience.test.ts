// The edge's resilience toward its upstreams, over real HTTP (fetch) to upstreams on real mTLS
// gRPC servers that fail, recover or hang on command: retries of reads only, only on UNAVAILABLE,
// within the deadline and the retry budget; a circuit breaker per upstream; the in-flight bound.
//
//   node --import tsx --test test/edge/resilience.test.ts
import { after, before, describe, test } from "node:test";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import assert from "node:assert/strict";
import { CommandService, CommandState } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { MeshServer } from "../../runtime/server.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { startEdge, type RunningEdge } from "../../services/edge/index.js";
import type { UpstreamResilience } from "../../services/edge/upstream-resilience.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { waitFor } from "../support/wait.js";
import { log } from "./fixtures.js";
import { testUpstreamClient } from "../support/edge-upstream-client.js";

/**
 * What the fake upstreams do, set by each test: reads of id `flaky-<n>-<tag>` fail UNAVAILABLE the
 * first n times; reads of any other id fail UNAVAILABLE while `queryDown`; reads of `hang-*` wait
 * until released (or cancelled); writes fail UNAVAILABLE while `commandDown`. Every attempt that
 * reaches a handler is counted.
 */
const upstream = {
  queryDown: false,
  commandDown: false,
  attempts: new Map<string, number>(),
  hanging: 0,
  release: [] as (() => void)[],
  count(key: string): number {
    const n = (this.attempts.get(key) ?? 0) + 1;
    this.attempts.set(key, n);
    return n;
  },
  total(prefix: string): number {
    let sum = 0;
    for (const [key, n] of this.attempts) if (key.startsWith(prefix)) sum += n;
    return sum;
  },
};

const unavailable = () => new RpcError(Code.UNAVAILABLE, "BACKEND_UNAVAILABLE", "backend down");

let certs: TestCerts;
let query: MeshServer;
let command: MeshServer;
let queryAddress: string;
let commandAddress: string;
const edges: RunningEdge[] = [];

before(async () => {
  certs = testCerts(["query", "command", "edge"]);
  query = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log, drainTimeoutMs: 200 });
  query.addService(QueryService, {
    async getEntity(request, ctx) {
      const attempt = upstream.count(`get:${request.id}`);
      const flaky = /^flaky-(\d+)-/.exec(request.id);
      if (flaky ? attempt <= Number(flaky[1]) : upstream.queryDown) throw unavailable();
      if (request.id.startsWith("hang-")) {
        upstream.hanging++;
        try {
          await new Promise<void>((resolve) => {
            upstream.release.push(resolve);
            ctx.signal.addEventListener("abort", () => resolve(), { once: true });
          });
        } finally {
          upstream.hanging--;
        }
      }
      return { entity: { tenant: request.tenant, type: request.type, id: request.id, version: 1n } };
    },
    async batchGetEntities() {
      return { entities: [], missingIds: [] };
    },
    async listEntities() {
      return { entities: [], nextPageToken: "" };
    },
  });
  queryAddress = `127.0.0.1:${await query.start()}`;

  command = new MeshServer({ name: "command", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("command")), log, drainTimeoutMs: 200 });
  const receipt = (commandId: string) => ({ receipt: { commandId, state: CommandState.ACCEPTED, statusUrl: `/v1/tenants/t1/commands/${commandId}`, entityId: "e1" } });
  command.addService(CommandService, {
    async createEntity(request) {
      upstream.count(`create:${request.id}`);
      if (upstream.commandDown) throw unavailable();
      return receipt("c1");
    },
    async updateEntity() {
      return receipt("c2");
    },
    async patchEntity() {
      return receipt("c3");
    },
    async deleteEntity() {
      return receipt("c4");
    },
    async getCommand(request) {
      const attempt = upstream.count(`command:${request.commandId}`);
      const flaky = /^flaky-(\d+)-/.exec(request.commandId);
      if (flaky && attempt <= Number(flaky[1])) throw unavailable();
      return { command: { commandId: request.commandId, tenant: request.tenant, state: CommandState.APPLIED, version: 1n } };
    },
    async *watchCommand() {},
  });
  commandAddress = `127.0.0.1:${await command.start()}`;
});

after(async () => {
  for (const release of upstream.release.splice(0)) release();
  await Promise.all(edges.map((edge) => edge.stop()));
  await Promise.all([query?.stop(), command?.stop()]);
  certs?.remove();
});

/** An edge of its own (its own breakers, budgets and in-flight counts) with these settings. */
async function edgeWith(resilience: Partial<UpstreamResilience>, timeoutMs = 5_000, edgeLog: Logger = log): Promise<string> {
  const edge = await startEdge({
    auth: { mode: "none" },
    port: 0,
    upstreams: [
      { service: QueryService, address: queryAddress },
      { service: CommandService, address: commandAddress },
    ],
    credentials: clientCredentials(certs.identity("edge")),
    upstreamClient: testUpstreamClient(),
    log: edgeLog,
    drainTimeoutMs: 200,
    timeoutMs,
    resilience: { retryInitialDelayMs: 5, retryMaxDelayMs: 20, ...resilience },
  });
  edges.push(edge);
  return edge.url;
}

const entity = (id: string) => `/v1/tenants/t1/types/book/entities/${id}`;

async function reasonOf(response: Response): Promise<string> {
  const body = (await response.json()) as { details: { reason: string }[] };
  return body.details[0]!.reason;
}

describe("retries", () => {
  test("a read that fails UNAVAILABLE twice succeeds on the third attempt; one failing more often than the attempts allow fails after exactly them", async () => {
    const url = await edgeWith({ retryAttempts: 3 });
    const ok = await fetch(url + entity("flaky-2-a"));
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal(upstream.attempts.get("get:flaky-2-a"), 3);

    const exhausted = await fetch(url + entity("flaky-5-a"));
    assert.equal(exhausted.status, 503);
    assert.equal(await reasonOf(exhausted), "BACKEND_UNAVAILABLE");
    assert.equal(upstream.attempts.get("get:flaky-5-a"), 3);

    // GetCommand is a read of CommandService: retried too.
    const status = await fetch(`${url}/v1/tenants/t1/commands/flaky-1-a`);
    assert.equal(status.status, 200);
    assert.equal(upstream.attempts.get("command:flaky-1-a"), 2);
  });

  test("a write is not retried: exactly one attempt, and the caller gets the 503", async () => {
    const url = await edgeWith({ retryAttempts: 5 });
    upstream.commandDown = true;
    try {
      const response = await fetch(`${url}/v1/tenants/t1/types/book/entities?id=write-once`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": "k-write-1" },
        body: JSON.stringify({ title: "once" }),
      });
      assert.equal(response.status, 503);
      assert.equal(await reasonOf(response), "BACKEND_UNAVAILABLE");
      assert.equal(upstream.attempts.get("create:write-once"), 1);
    } finally {
      upstream.commandDown = false;
    }
  });

  test("no retry whose wait would end past the call's deadline", async () => {
    const url = await edgeWith({ retryAttempts: 5, retryInitialDelayMs: 2_000, retryMaxDelayMs: 2_000 }, 500);
    const started = Date.now();
    const response = await fetch(url + entity("flaky-1-deadline"));
    assert.equal(response.status, 503);
    assert.ok(Date.now() - started < 1_500, `answered after ${Date.now() - started} ms`);
    assert.equal(upstream.attempts.get("get:flaky-1-deadline"), 1);
  });

  test("the retry budget caps attempts under a flood of failures", async () => {
    const ratio = 0.2;
    const min = 3;
    const url = await edgeWith({ retryAttempts: 4, retryBudgetRatio: ratio, retryBudgetMin: min, retryBudgetWindowMs: 60_000, breakerFailures: 10_000 });
    const requests = 60;
    upstream.queryDown = true;
    try {
      for (let batch = 0; batch < requests / 10; batch++) {
        const responses = await Promise.all(Array.from({ length: 10 }, (_, i) => fetch(url + entity(`flood-${batch}-${i}`))));
        assert.ok(responses.every((response) => response.status === 503));
      }
    } finally {
      upstream.queryDown = false;
    }
    const attempts = upstream.total("get:flood-");
    // Without the budget this would be requests × 4 = 240.
    assert.ok(attempts <= requests * (1 + ratio) + min, `${attempts} attempts for ${requests} requests`);
    assert.ok(attempts > requests, `some retries were made (${attempts} attempts)`);
  });
});

describe("circuit breaker", () => {
  test("opens after consecutive failures, answers at once without calling the upstream, and closes after recovery (half-open)", async () => {
    const lines: { msg: string; service?: string }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as { msg: string; service?: string });
        done();
      },
    });
    const url = await edgeWith({ retryAttempts: 1, breakerFailures: 3, breakerHalfOpenAfterMs: 1_000 }, 5_000, pino({ level: "info" }, sink));
    upstream.queryDown = true;
    try {
      for (let i = 0; i < 3; i++) {
        const response = await fetch(url + entity(`cb-${i}`));
        assert.equal(response.status, 503);
        assert.equal(await reasonOf(response), "BACKEND_UNAVAILABLE");
      }
      assert.equal(upstream.total("get:cb-"), 3);

      for (let i = 3; i < 8; i++) {
        const started = Date.now();
        const response = await fetch(url + entity(`cb-${i}`));
        assert.equal(response.status, 503);
        assert.equal(await reasonOf(response), "UPSTREAM_CIRCUIT_OPEN");
        assert.equal(response.headers.get("retry-after"), "1");
        assert.ok(Date.now() - started < 1_000, "answered at once, not after the upstream deadline (5 s)");
      }
      assert.equal(upstream.total("get:cb-"), 3, "the open circuit let no call through");
      assert.ok(lines.some((line) => line.msg.startsWith("upstream circuit opened") && line.service === "umw.v1.QueryService"), JSON.stringify(lines));

      // Half-open while still down: the probe fails, the circuit opens again.
      const probed = await waitFor(
        async () => {
          const response = await fetch(url + entity("cb-probe-down"));
          return (await reasonOf(response)) === "BACKEND_UNAVAILABLE" && response;
        },
        { what: "a half-open probe reaching the failing upstream", timeoutMs: 5_000, everyMs: 50 },
      );
      assert.equal(probed.status, 503);
      assert.equal(await reasonOf(await fetch(url + entity("cb-after-probe"))), "UPSTREAM_CIRCUIT_OPEN");
    } finally {
      upstream.queryDown = false;
    }

    // Recovered: the next probe succeeds and closes the circuit.
    await waitFor(async () => (await fetch(url + entity("cb-recovered"))).status === 200, {
      what: "the circuit closing after recovery",
      timeoutMs: 5_000,
      everyMs: 50,
    });
    await waitFor(() => lines.some((line) => line.msg === "upstream circuit closed"), { what: "the closing logged" });
    const before = upstream.total("get:cb-");
    for (let i = 0; i < 5; i++) assert.equal((await fetch(url + entity(`cb-closed-${i}`))).status, 200);
    assert.equal(upstream.total("get:cb-"), before + 5);
  });

  test("the breaker is per upstream: CommandService reads still go through while QueryService's circuit is open", async () => {
    const url = await edgeWith({ retryAttempts: 1, breakerFailures: 2, breakerHalfOpenAfterMs: 60_000 });
    upstream.queryDown = true;
    try {
      for (let i = 0; i < 2; i++) await fetch(url + entity(`per-${i}`));
      assert.equal(await reasonOf(await fetch(url + entity("per-2"))), "UPSTREAM_CIRCUIT_OPEN");
      // Connect gets the same refusal: unavailable, with Retry-After.
      const connect = await fetch(`${url}/umw.v1.QueryService/GetEntity`, {
        method: "POST",
        headers: { "content-type": "application/json", "connect-protocol-version": "1" },
        body: JSON.stringify({ tenant: "t1", type: "book", id: "per-connect" }),
      });
      assert.equal(connect.status, 503);
      assert.ok(Number(connect.headers.get("retry-after")) >= 1);
      assert.equal(((await connect.json()) as { code: string }).code, "unavailable");
      assert.equal(upstream.attempts.get("get:per-connect"), undefined);
      assert.equal((await fetch(`${url}/v1/tenants/t1/commands/per-upstream`)).status, 200);
    } finally {
      upstream.queryDown = false;
    }
    // The circuit stays open for a minute here: it still refuses, with a Retry-After counting down that minute.
    const refused = await fetch(url + entity("per-3"));
    assert.equal(refused.status, 503);
    assert.ok(Number(refused.headers.get("retry-after")) > 1, `Retry-After ${refused.headers.get("retry-after")} counts down the open time`);
  });
});

describe("load shedding", () => {
  test("beyond the in-flight bound the edge answers 503 + Retry-After at once, and nothing queues", async () => {
    const url = await edgeWith({ maxInFlight: 3 });
    const slow = [0, 1, 2].map((i) => fetch(url + entity(`hang-${i}`)));
    await waitFor(() => upstream.hanging === 3, { what: "three hanging calls at the upstream" });

    const shed = await Promise.all([3, 4, 5, 6].map((i) => fetch(url + entity(`hang-${i}`))));
    for (const response of shed) {
      assert.equal(response.status, 503);
      assert.equal(response.headers.get("retry-after"), "1");
      assert.equal(await reasonOf(response), "EDGE_OVERLOADED");
    }
    assert.equal(upstream.hanging, 3);
    assert.equal(upstream.total("get:hang-"), 3, "the shed calls never reached the upstream");

    for (const release of upstream.release.splice(0)) release();
    for (const response of await Promise.all(slow)) assert.equal(response.status, 200);
    // Room again once they finished.
    assert.equal((await fetch(url + entity("after-shedding"))).status, 200);
  });
});
