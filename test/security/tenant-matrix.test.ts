// The tenant matrix: on the real stack (`umw serve all` + `umw control-plane` + Envoy, authentication
// ON at both edges with the dev issuer), through the Node edge and through Envoy, over REST, Connect,
// gRPC-web and gRPC, every operation on tenant B with tenant A's token (all scopes) is refused with
// 401/403 / UNAUTHENTICATED/PERMISSION_DENIED and an ErrorInfo — not 404, and a stream ends with the
// error before any event; the refused writes leave no command and change nothing; forged x-umw-*
// headers change nothing; anonymous calls are 401 / UNAUTHENTICATED; and the same operations on
// tenant A with A's token succeed, so a matrix that failed for an unrelated reason fails the test.
//
//   source scripts/infra-env.sh && node --import tsx --test test/security/tenant-matrix.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { RealtimeService } from "../../gen/umw/v1/realtime_pb.js";
import { DevIssuer } from "../../services/edge/dev-issuer.js";
import { startStack, type EdgeUnderTest, type Stack } from "../conformance/stack.js";
import { ALL_SCOPES, TEST_AUDIENCE } from "../support/dev-tokens.js";
import { runId } from "../support/env.js";
import { waitFor } from "../support/wait.js";
import { EdgeClients, PROTOCOLS, type Call, type Outcome, type Protocol } from "./protocol-calls.js";

const TYPE = "todo";
const ISSUER = "https://issuer.matrix.test";
const EDGES = ["node", "envoy"] as const;
const FORGED_PRINCIPAL = "intruder";

/** Whose data an operation touches: the tenant, its seeded entity and command, and an id for a create. */
interface Target {
  readonly tenant: string;
  readonly entityId: string;
  readonly commandId: string;
  /** A fresh id for CreateEntity (and the DeleteEntity after it in the positive control). */
  readonly newId: string;
}

interface Operation {
  readonly name: string;
  readonly write?: boolean;
  call(target: Target): Omit<Call, "headers">;
}

const entitiesPath = (t: Target) => `/v1/tenants/${t.tenant}/types/${TYPE}/entities`;

/** Every operation of the public API, in an order the positive control can run (create before delete). */
const OPERATIONS: readonly Operation[] = [
  { name: "get", call: (t) => ({ method: QueryService.method.getEntity, request: { tenant: t.tenant, type: TYPE, id: t.entityId }, rest: { verb: "GET", path: `${entitiesPath(t)}/${t.entityId}` } }) },
  { name: "list", call: (t) => ({ method: QueryService.method.listEntities, request: { tenant: t.tenant, type: TYPE }, rest: { verb: "GET", path: entitiesPath(t) } }) },
  { name: "batch get", call: (t) => ({ method: QueryService.method.batchGetEntities, request: { tenant: t.tenant, type: TYPE, ids: [t.entityId] }, rest: { verb: "GET", path: `${entitiesPath(t)}:batchGet?ids=${t.entityId}` } }) },
  {
    name: "create",
    write: true,
    call: (t) => ({ method: CommandService.method.createEntity, request: { tenant: t.tenant, type: TYPE, id: t.newId, data: { title: "from the matrix" } }, rest: { verb: "POST", path: `${entitiesPath(t)}?id=${t.newId}`, body: { title: "from the matrix" } } }),
  },
  {
    name: "replace",
    write: true,
    call: (t) => ({ method: CommandService.method.updateEntity, request: { tenant: t.tenant, type: TYPE, id: t.entityId, data: { title: "replaced" } }, rest: { verb: "PUT", path: `${entitiesPath(t)}/${t.entityId}`, body: { title: "replaced" } } }),
  },
  {
    name: "patch",
    write: true,
    call: (t) => ({ method: CommandService.method.patchEntity, request: { tenant: t.tenant, type: TYPE, id: t.entityId, data: { done: true } }, rest: { verb: "PATCH", path: `${entitiesPath(t)}/${t.entityId}`, body: { done: true } } }),
  },
  { name: "delete", write: true, call: (t) => ({ method: CommandService.method.deleteEntity, request: { tenant: t.tenant, type: TYPE, id: t.newId }, rest: { verb: "DELETE", path: `${entitiesPath(t)}/${t.newId}` } }) },
  { name: "command status", call: (t) => ({ method: CommandService.method.getCommand, request: { tenant: t.tenant, commandId: t.commandId }, rest: { verb: "GET", path: `/v1/tenants/${t.tenant}/commands/${t.commandId}` } }) },
  { name: "watch command", call: (t) => ({ method: CommandService.method.watchCommand, request: { tenant: t.tenant, commandId: t.commandId }, rest: { verb: "GET", path: `/v1/tenants/${t.tenant}/commands/${t.commandId}:watch` } }) },
  {
    name: "subscribe entity",
    call: (t) => ({ method: RealtimeService.method.subscribe, request: { tenant: t.tenant, snapshot: true, topics: [{ target: { case: "entity", value: { tenant: t.tenant, type: TYPE, id: t.entityId } } }] } }),
  },
  { name: "subscribe type", call: (t) => ({ method: RealtimeService.method.subscribe, request: { tenant: t.tenant, snapshot: true, topics: [{ target: { case: "type", value: TYPE } }] } }) },
  // No snapshot: an allowed stream has nothing to send, and counts as allowed by its response headers alone (protocol-calls.ts).
  { name: "subscribe own commands", call: (t) => ({ method: RealtimeService.method.subscribe, request: { tenant: t.tenant, topics: [{ target: { case: "ownCommands", value: true } }] } }) },
];

interface Row {
  readonly scenario: string;
  readonly edge: string;
  readonly protocol: Protocol;
  readonly operation: string;
  readonly outcome: Outcome;
}

let keys = 0;
const idempotencyKey = () => `matrix-${process.pid}-${Date.now()}-${keys++}`;

describe("tenant matrix: nobody gets in where they don't belong", { timeout: 180_000 }, () => {
  const keysDir = mkdtempSync(join(tmpdir(), "umw-matrix-issuer-"));
  const tenantA = `ta${runId()}`;
  const tenantB = `tb${runId()}`;
  let issuer: DevIssuer;
  let stack: Stack;
  let tokenA: string;
  let tokenB: string;
  const clients = new Map<string, EdgeClients>();
  let seededB: { entityId: string; commandId: string; data: unknown };
  let seededA: { entityId: string; commandId: string };
  const rows: Row[] = [];

  const token = (tenant: string, subject: string) => issuer.token({ subject, audience: TEST_AUDIENCE, ttlS: 900, extra: { tenant, scope: ALL_SCOPES } });
  const edgeOf = (name: (typeof EDGES)[number]): EdgeUnderTest => stack[name];

  /** A REST call on the Node edge with a token, for seeding and polling (not part of the matrix). */
  async function rest(path: string, tokenValue: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, any> }> {
    const response = await fetch(`${stack.node.url}${path}`, { ...init, headers: { authorization: `Bearer ${tokenValue}`, "content-type": "application/json", ...(init.headers as Record<string, string>) } });
    return { status: response.status, body: (await response.json()) as Record<string, any> };
  }

  async function seed(tenant: string, tokenValue: string, id: string, data: Record<string, unknown>): Promise<string> {
    const created = await rest(`/v1/tenants/${tenant}/types/${TYPE}/entities?id=${id}`, tokenValue, { method: "POST", body: JSON.stringify(data), headers: { "idempotency-key": idempotencyKey() } });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const commandId = created.body.receipt.commandId as string;
    await waitFor(async () => (await rest(`/v1/tenants/${tenant}/commands/${commandId}`, tokenValue)).body.command?.state === "COMMAND_STATE_APPLIED", { what: `${tenant}'s seed command applied`, everyMs: 100, timeoutMs: 30_000 });
    return commandId;
  }

  /** Runs the operations once per edge × protocol (the cells in parallel, each cell in order). */
  async function matrix(scenario: string, target: (edge: string, protocol: Protocol) => Target, headers: Record<string, string>, operations = OPERATIONS): Promise<Row[]> {
    const cells = EDGES.flatMap((edge) => PROTOCOLS.map((protocol) => ({ edge, protocol })));
    const results = await Promise.all(
      cells.map(async ({ edge, protocol }) => {
        const cellRows: Row[] = [];
        for (const operation of operations) {
          const call = { ...operation.call(target(edge, protocol)), headers: { ...headers, ...(operation.write ? { "idempotency-key": idempotencyKey() } : {}) } };
          const outcome = await clients.get(edge)!.call(protocol, call);
          if (outcome) cellRows.push({ scenario, edge, protocol, operation: operation.name, outcome });
        }
        return cellRows;
      }),
    );
    const all = results.flat();
    rows.push(...all);
    return all;
  }

  const crossTarget = (edge: string, protocol: Protocol): Target => ({ tenant: tenantB, entityId: seededB.entityId, commandId: seededB.commandId, newId: `x-${edge}-${protocol}` });
  const describeRows = (bad: Row[]) => bad.map((row) => `${row.edge}/${row.protocol} ${row.operation}: ${row.outcome.kind} ${row.outcome.code} ${row.outcome.reason ?? "(no ErrorInfo)"} events=${row.outcome.events} ${row.outcome.detail}`).join("\n");

  before(async () => {
    issuer = await DevIssuer.open(keysDir, ISSUER);
    // Far more calls than a client normally makes from one principal: the rate limits are not under test here.
    stack = await startStack({ auth: { keysDir, issuer: ISSUER }, env: { UMW_RATE_LIMIT_PRINCIPAL: "2000/4000", UMW_RATE_LIMIT_TENANT: "5000/10000" } });
    for (const edge of EDGES) clients.set(edge, new EdgeClients(edgeOf(edge)));
    tokenA = await token(tenantA, "alice");
    tokenB = await token(tenantB, "bob");
    const dataB = { title: "tenant B's own" };
    seededB = { entityId: "b-entity", commandId: await seed(tenantB, tokenB, "b-entity", dataB), data: dataB };
    seededA = { entityId: "a-entity", commandId: await seed(tenantA, tokenA, "a-entity", { title: "tenant A's own" }) };
  });

  after(async () => {
    for (const client of clients.values()) client.close();
    await stack?.stop();
    rmSync(keysDir, { recursive: true, force: true });
  });

  test("positive control: tenant A's token does every operation on tenant A, on both edges, over every protocol", async () => {
    const result = await matrix("own tenant", (edge, protocol) => ({ tenant: tenantA, entityId: seededA.entityId, commandId: seededA.commandId, newId: `own-${edge}-${protocol}` }), { authorization: `Bearer ${tokenA}` });
    const refused = result.filter((row) => row.outcome.kind !== "allowed");
    assert.deepEqual(refused, [], `refused on the caller's own tenant:\n${describeRows(refused)}\n${stack.output()}`);
    // 12 operations over Connect, gRPC-web and gRPC, 9 over REST (no Subscribe binding), on two edges.
    assert.equal(result.length, 2 * (3 * OPERATIONS.length + OPERATIONS.length - 3));
  });

  test("tenant A's token (all scopes) is refused every operation on tenant B, with an ErrorInfo, before any event", async () => {
    const result = await matrix("cross tenant", crossTarget, { authorization: `Bearer ${tokenA}` });
    const improper = result.filter((row) => row.outcome.kind !== "denied" || row.outcome.reason === undefined || row.outcome.events > 0);
    assert.deepEqual(improper, [], `not properly refused:\n${describeRows(improper)}`);
  });

  test("forged x-umw-principal / x-umw-tenant / x-umw-scopes / x-umw-roles claiming tenant B change nothing", async () => {
    const forged = { authorization: `Bearer ${tokenA}`, "x-umw-principal": FORGED_PRINCIPAL, "x-umw-tenant": tenantB, "x-umw-scopes": ALL_SCOPES, "x-umw-roles": "admin" };
    const result = await matrix("forged headers", crossTarget, forged);
    const improper = result.filter((row) => row.outcome.kind !== "denied" || row.outcome.reason === undefined || row.outcome.events > 0);
    assert.deepEqual(improper, [], `not properly refused with forged headers:\n${describeRows(improper)}`);
  });

  test("without a token every call is 401 / UNAUTHENTICATED", async () => {
    const result = await matrix("anonymous", crossTarget, {});
    const improper = result.filter(({ outcome }) => {
      if (outcome.kind !== "denied" || outcome.events > 0) return true;
      if (outcome.code !== "401" && outcome.code !== "UNAUTHENTICATED") return true;
      return outcome.reason !== "TOKEN_MISSING";
    });
    assert.deepEqual(improper, [], `anonymous calls not refused as unauthenticated:\n${describeRows(improper)}`);
  });

  test("a read-only token of tenant A is refused writes in its own tenant: MISSING_SCOPE, in every protocol", async () => {
    const readOnly = await issuer.token({ subject: "reader", audience: TEST_AUDIENCE, ttlS: 900, extra: { tenant: tenantA, scope: "entities:read commands:read" } });
    const target = (edge: string, protocol: Protocol): Target => ({ tenant: tenantA, entityId: seededA.entityId, commandId: seededA.commandId, newId: `ro-${edge}-${protocol}` });
    const result = await matrix("missing scope", target, { authorization: `Bearer ${readOnly}` }, OPERATIONS.filter((operation) => operation.write));
    assert.equal(result.length, 2 * 4 * 4);
    const improper = result.filter(({ outcome }) => outcome.kind !== "denied" || outcome.code === "401" || outcome.code === "UNAUTHENTICATED" || outcome.reason !== "MISSING_SCOPE");
    assert.deepEqual(improper, [], `writes without the scope not refused as MISSING_SCOPE:\n${describeRows(improper)}`);
  });

  test("the refused writes left nothing behind in tenant B", async () => {
    const db = new pg.Client({ connectionString: stack.db.url });
    await db.connect();
    try {
      // Tenant A's writes of the positive control have all been processed, so anything tenant B
      // received through the pipeline would be there by now.
      await waitFor(async () => (await db.query("SELECT count(*)::int AS n FROM umw_commands WHERE tenant = $1 AND state = 'accepted'", [tenantA])).rows[0].n === 0, { what: "tenant A's commands processed", everyMs: 200, timeoutMs: 30_000 });
      const commands = await db.query("SELECT id, principal, action FROM umw_commands WHERE tenant = $1", [tenantB]);
      const readOnlyWrites = await db.query("SELECT count(*)::int AS n FROM umw_commands WHERE principal LIKE '%reader%'");
      assert.equal(readOnlyWrites.rows[0].n, 0, "a write refused for its scope left a command");
      assert.deepEqual(commands.rows.map((row) => row.id), [seededB.commandId], `tenant B's commands: ${JSON.stringify(commands.rows)}`);
      const entities = await db.query("SELECT id, version, data FROM umw_entities WHERE tenant = $1", [tenantB]);
      assert.deepEqual(entities.rows, [{ id: seededB.entityId, version: "1", data: seededB.data }]);
      const forged = await db.query("SELECT count(*)::int AS n FROM umw_commands WHERE principal LIKE $1", [`%${FORGED_PRINCIPAL}%`]);
      assert.equal(forged.rows[0].n, 0);
      const keyRows = await db.query("SELECT count(*)::int AS n FROM umw_idempotency_keys WHERE tenant = $1", [tenantB]);
      assert.equal(keyRows.rows[0].n, 1);
    } finally {
      await db.end();
    }
  });

  test("the matrix: allowed cross-tenant is 0 for every edge × protocol", () => {
    const table = EDGES.flatMap((edge) =>
      PROTOCOLS.map((protocol) => {
        const cell = rows.filter((row) => row.edge === edge && row.protocol === protocol);
        const count = (scenario: string, kind: Outcome["kind"]) => cell.filter((row) => row.scenario === scenario && row.outcome.kind === kind).length;
        const total = (scenario: string) => cell.filter((row) => row.scenario === scenario).length;
        return {
          edge,
          protocol,
          "allowed cross-tenant": count("cross tenant", "allowed"),
          "allowed forged": count("forged headers", "allowed"),
          "allowed anonymous": count("anonymous", "allowed"),
          "denied cross-tenant": `${count("cross tenant", "denied")}/${total("cross tenant")}`,
          "allowed own tenant": `${count("own tenant", "allowed")}/${total("own tenant")}`,
        };
      }),
    );
    console.log("tenant matrix");
    console.table(table);
    for (const row of table) console.log(`allowed cross-tenant: ${row["allowed cross-tenant"]} (${row.edge} × ${row.protocol})`);
    // Every scenario ran in every cell (a test that failed before filling the matrix does not pass here).
    for (const row of table) {
      assert.notEqual(row["denied cross-tenant"].split("/")[1], "0", `${row.edge} × ${row.protocol}: no cross-tenant calls recorded`);
      assert.equal(row["allowed cross-tenant"], 0, `${row.edge} × ${row.protocol}`);
      assert.equal(row["allowed forged"], 0, `${row.edge} × ${row.protocol}`);
      assert.equal(row["allowed anonymous"], 0, `${row.edge} × ${row.protocol}`);
    }
  });
});
