// `umw serve all --embedded`: the whole system in one child process on PGlite, the in-process bus
// and the in-memory cache, with no Redis, Postgres or Kafka (their URLs point at closed ports, and
// no UMW_* variable of the caller's shell reaches the child). Driven through the edge over HTTP
// (REST) and Connect (a realtime stream), as `npm start` users would.
//
//   node --import tsx --test test/embedded.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { waitFor } from "./support/wait.js";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { CommandState } from "../gen/umw/v1/command_pb.js";
import { RealtimeService, type SubscribeResponse } from "../gen/umw/v1/realtime_pb.js";
import { ALL_SERVICES, MESH_IDENTITIES } from "../services/registry.js";
import { freeServicePorts } from "./support/ports.js";
import { devAuthorization, embeddedEnv } from "./support/embedded-env.js";

const TENANT = "acme";
const TODOS = `/v1/tenants/${TENANT}/types/todo/entities`;

interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: any;
}

describe("umw serve all --embedded", { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "umw-embedded-"));
  const certsDir = join(dir, "certs"); // does not exist yet: the embedded mode creates it
  let child: ChildProcess;
  let output = "";
  let edge: string;
  let authorization = "";
  let readyMs = 0;

  const http = async (method: string, path: string, options: { body?: unknown; key?: string; headers?: Record<string, string> } = {}): Promise<Reply> => {
    const headers: Record<string, string> = { authorization, ...options.headers };
    if (options.body !== undefined) headers["content-type"] = "application/json";
    if (options.key) headers["idempotency-key"] = `"${options.key}"`;
    const response = await fetch(`${edge}${path}`, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
  };

  /** Polls the command's status URL until it leaves ACCEPTED. */
  const settled = (statusUrl: string): Promise<any> =>
    waitFor(
      async () => {
        const reply = await http("GET", statusUrl);
        assert.equal(reply.status, 200, JSON.stringify(reply.body));
        return reply.body.command.state !== "COMMAND_STATE_ACCEPTED" ? reply.body.command : undefined;
      },
      { what: `the command to leave ACCEPTED: ${statusUrl}`, timeoutMs: 10_000, everyMs: 50 },
    );

  before(async () => {
    const ports = await freeServicePorts();
    edge = `http://127.0.0.1:${ports.UMW_EDGE_PORT}`;
    child = spawn(process.execPath, ["bin/umw.mjs", "serve", "all", "--embedded"], {
      env: embeddedEnv(ports, certsDir),
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (chunk) => (output += chunk));
    child.stderr!.on("data", (chunk) => (output += chunk));
    const started = Date.now();
    while (!output.includes("umw ready")) {
      assert.equal(child.exitCode, null, `umw exited early:\n${output}`);
      assert.ok(Date.now() - started < 90_000, `umw not ready in 90 s:\n${output}`);
      await sleep(100);
    }
    readyMs = Date.now() - started;
    // The dev issuer's key, made by the child at its start (UMW_AUTH_MODE=dev, the default).
    authorization = await devAuthorization(certsDir, ports.UMW_EDGE_PORT!, TENANT);
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test("it says it is embedded and not durable, and made the dev certificates", (t) => {
    t.diagnostic(`ready ${readyMs} ms after spawn`);
    assert.match(output, /"msg":"embedded mode: no Redis, Postgres or Kafka; all data is in memory and not durable/);
    const ready = JSON.parse(output.split("\n").find((line) => line.includes('"msg":"umw ready"'))!);
    assert.deepEqual(ready.services, ALL_SERVICES);
    assert.equal(ready.embedded, true);
    for (const { name } of MESH_IDENTITIES) assert.ok(existsSync(join(certsDir, `${name}.crt`)), `${name}.crt in ${certsDir}`);
  });

  let id: string;
  let created: any;

  test("POST a todo: 202 with a receipt, then APPLIED; a retry with the same key replays it", async () => {
    const post = await http("POST", TODOS, { body: { title: "try umw" }, key: "create-1" });
    assert.equal(post.status, 202, JSON.stringify(post.body));
    const receipt = post.body.receipt;
    assert.equal(receipt.state, "COMMAND_STATE_ACCEPTED");
    assert.match(receipt.commandId, /^[0-9a-f-]{36}$/);
    assert.equal(receipt.statusUrl, `/v1/tenants/${TENANT}/commands/${receipt.commandId}`);
    assert.equal(post.headers.get("location"), receipt.statusUrl);
    assert.ok(post.headers.get("idempotency-key-expires"), "the key's expiry is published");
    assert.equal(post.headers.get("idempotent-replayed"), null);
    id = receipt.entityId;

    const retry = await http("POST", TODOS, { body: { title: "try umw" }, key: "create-1" });
    assert.equal(retry.status, 202);
    assert.equal(retry.body.receipt.commandId, receipt.commandId, "the same receipt, not a second command");
    assert.equal(retry.headers.get("idempotent-replayed"), "true");

    created = await settled(receipt.statusUrl);
    assert.equal(created.state, "COMMAND_STATE_APPLIED", JSON.stringify(created));
    assert.equal(created.version, "1");
  });

  test("GET the todo: 200 with ETag and Cache-Status", async () => {
    const get = await http("GET", `${TODOS}/${id}`);
    assert.equal(get.status, 200, JSON.stringify(get.body));
    assert.deepEqual(get.body.entity.data, { title: "try umw" });
    assert.equal(get.body.entity.version, "1");
    assert.equal(get.headers.get("etag"), 'W/"1"');
    assert.match(get.headers.get("cache-status") ?? "", /^umw; /);
    const again = await http("GET", `${TODOS}/${id}`, { headers: { "if-none-match": 'W/"1"' } });
    assert.equal(again.status, 304);
  });

  test("a miss reads PGlite through the query backend", async () => {
    const missing = await http("GET", `${TODOS}/no-such-todo`);
    assert.equal(missing.status, 404);
    assert.match(missing.headers.get("cache-status") ?? "", /^umw; fwd=miss/);
  });

  test("PATCH: the live stream and GET show version 2", async () => {
    // Subscribed before the write: the hub (in-process bus) streams the change and the command's status.
    const client = createClient(RealtimeService, createConnectTransport({ baseUrl: edge, useBinaryFormat: true, interceptors: [(next) => (request) => (request.header.set("authorization", authorization), next(request))] }));
    const abort = new AbortController();
    const stream = client
      .subscribe({ tenant: TENANT, topics: [{ target: { case: "type", value: "todo" } }, { target: { case: "ownCommands", value: true } }], snapshot: true }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    const nextData = async (): Promise<SubscribeResponse> => {
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("no stream message in 10 s")), 10_000)));
        const result = await Promise.race([stream.next(), timeout]).finally(() => clearTimeout(timer));
        assert.ok(!result.done, "the stream ended");
        if (result.value.message.case !== "heartbeat") return result.value;
      }
    };
    try {
      const snapshot = await nextData();
      assert.equal(snapshot.message.case, "snapshot");
      assert.deepEqual(snapshot.message.value.entities.map((entity) => [entity.id, entity.version]), [[id, 1n]]);

      const patch = await http("PATCH", `${TODOS}/${id}`, { body: { done: true }, key: "patch-1" });
      assert.equal(patch.status, 202, JSON.stringify(patch.body));
      const patched = await settled(patch.body.receipt.statusUrl);
      assert.equal(patched.state, "COMMAND_STATE_APPLIED", JSON.stringify(patched));
      assert.equal(patched.version, "2");

      // First the catch-up of own commands (read from PGlite), then the live change and status.
      const seen = { catchUp: false, change: false, command: false };
      while (!seen.change || !seen.command) {
        const message = await nextData();
        if (message.message.case === "change") {
          assert.equal(message.message.value.entity?.version, 2n);
          assert.deepEqual(message.message.value.entity?.data, { title: "try umw", done: true });
          seen.change = true;
        } else if (message.message.case === "command") {
          const { commandId, state } = message.message.value;
          if (commandId === created.commandId && state === CommandState.APPLIED) seen.catchUp = true;
          if (commandId === patch.body.receipt.commandId && state === CommandState.APPLIED) seen.command = true;
        }
      }
      assert.ok(seen.catchUp, "the snapshot was followed by the create command's status");
    } finally {
      abort.abort();
      await stream.return?.().catch(() => undefined);
    }

    const get = await http("GET", `${TODOS}/${id}`);
    assert.equal(get.status, 200);
    assert.equal(get.body.entity.version, "2");
    assert.deepEqual(get.body.entity.data, { title: "try umw", done: true });
    assert.equal(get.headers.get("etag"), 'W/"2"');
    assert.match(get.headers.get("cache-status") ?? "", /^umw; /);
  });

  test("a payload that breaks the type's schema: 400 with ErrorInfo SCHEMA_VIOLATION", async () => {
    const bad = await http("POST", TODOS, { body: { title: 42 }, key: "bad-1" });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    const info = bad.body.details?.find((detail: { "@type": string }) => detail["@type"] === "type.googleapis.com/google.rpc.ErrorInfo");
    assert.equal(info?.reason, "SCHEMA_VIOLATION", JSON.stringify(bad.body));
    assert.equal(info?.domain, "umw.dev");
  });

  test("SIGTERM stops everything and exits 0", async () => {
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    assert.equal(code, 0, output);
    assert.match(output, /"msg":"stopped"/);
    assert.doesNotMatch(output, /"level":50/, "no errors were logged");
  });
});
