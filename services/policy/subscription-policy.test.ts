import { before, test } from "node:test";
import assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { SubscribeRequestSchema } from "../../gen/umw/v1/realtime_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { principalHeaders, type Principal } from "../../runtime/principal.js";
import { callerOf, type SubscriptionAsk, type SubscriptionPolicy } from "../realtime/policy.js";
import { AuthzPolicy } from "./authz-policy.js";
import { requestInput } from "./request-input.js";
import { opaSubscriptionPolicy } from "./subscription-policy.js";

const alice: Principal = { kind: "user", subject: "alice", tenant: "acme", scopes: ["entities:read", "commands:read", "realtime:subscribe"], roles: [], expiresAt: undefined };
const TRUSTED = new Set(["edge"]);
let policy: SubscriptionPolicy;

before(async () => {
  policy = opaSubscriptionPolicy(await AuthzPolicy.load(), TRUSTED);
});

/** The caller as the hub reads it from a call (services/realtime/policy.ts callerOf). */
const caller = (peer: string, headers: Record<string, string>, requestTenant = "acme") => callerOf({ peer, headers }, requestTenant, TRUSTED);
const refused = (code: Code, reason: string) => (error: unknown) => error instanceof RpcError && error.code === code && error.reason === reason;
const typeTopic = (tenant: string) => ({ kind: "type" as const, tenant, type: "todo" });

test("a user subscribes to its tenant's types, entities and own commands", async () => {
  const ask: SubscriptionAsk = { tenant: "acme", topics: [typeTopic("acme"), { kind: "entity", tenant: "acme", type: "todo", id: "a" }, { kind: "ownCommands", tenant: "acme", principal: "alice" }] };
  await policy.authorize(caller("edge", principalHeaders(alice)), ask);
});

test("another tenant's topic is CROSS_TENANT_ACCESS; someone else's commands FOREIGN_COMMANDS", async () => {
  await assert.rejects(async () => policy.authorize(caller("edge", principalHeaders(alice), "globex"), { tenant: "globex", topics: [typeTopic("globex")] }), refused(Code.PERMISSION_DENIED, "CROSS_TENANT_ACCESS"));
  await assert.rejects(
    async () => policy.authorize(caller("edge", principalHeaders(alice)), { tenant: "acme", topics: [{ kind: "ownCommands", tenant: "acme", principal: "bob" }] }),
    refused(Code.PERMISSION_DENIED, "FOREIGN_COMMANDS"),
  );
});

test("scopes: realtime:subscribe for any stream, entities:read for entity and type topics", async () => {
  const noRealtime = { ...alice, scopes: ["entities:read"] };
  await assert.rejects(async () => policy.authorize(caller("edge", principalHeaders(noRealtime)), { tenant: "acme", topics: [typeTopic("acme")] }), refused(Code.PERMISSION_DENIED, "MISSING_SCOPE"));
  const commandsOnly = { ...alice, scopes: ["realtime:subscribe", "commands:read"] };
  await assert.rejects(async () => policy.authorize(caller("edge", principalHeaders(commandsOnly)), { tenant: "acme", topics: [typeTopic("acme")] }), refused(Code.PERMISSION_DENIED, "MISSING_SCOPE"));
  await policy.authorize(caller("edge", principalHeaders(commandsOnly)), { tenant: "acme", topics: [{ kind: "ownCommands", tenant: "acme", principal: "alice" }] });
});

test("a mesh service passes the policy; an x-umw-tenant it sends is not believed (only trusted edges assert, and the mesh table refuses the header before the hub)", async () => {
  await policy.authorize(caller("cli", {}, "globex"), { tenant: "globex", topics: [typeTopic("globex")] });
  await policy.authorize(caller("cli", { "x-umw-tenant": "acme" }, "globex"), { tenant: "globex", topics: [typeTopic("globex")] });
});

test("at the call (interceptor, Envoy), an entity topic in another tenant and a missing topic scope are refused before the hub", async () => {
  const opa = await AuthzPolicy.load();
  const request = (topics: MessageInitShape<typeof SubscribeRequestSchema>["topics"]) => create(SubscribeRequestSchema, { tenant: "acme", topics });
  const decide = (message: ReturnType<typeof request>, principal: Principal) => opa.decide(requestInput("umw.v1.RealtimeService/Subscribe", message, principal));
  assert.deepEqual(decide(request([{ target: { case: "type", value: "todo" } }, { target: { case: "ownCommands", value: true } }]), alice), { allow: true });
  assert.deepEqual(decide(request([{ target: { case: "entity", value: { tenant: "globex", type: "todo", id: "g" } } }]), alice), { allow: false, reason: "CROSS_TENANT_ACCESS" });
  assert.deepEqual(decide(request([{ target: { case: "type", value: "todo" } }]), { ...alice, scopes: ["realtime:subscribe"] }), { allow: false, reason: "MISSING_SCOPE" });
});
