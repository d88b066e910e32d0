// Prototype pollution through the write path: payload keys and update_mask paths `__proto__`,
// `constructor` and `prototype` (at any depth) sent over REST and Connect through the edge, and over
// gRPC straight to CommandService, on the real stack (Postgres, Kafka, relay, processor in this
// process). Each is 400 / INVALID_ARGUMENT with the ErrorInfo reason RESERVED_KEY, leaves no command
// row behind, and Object.prototype is the same afterwards.
//
//   scripts/infra.sh up && node --import tsx --test test/command/reserved-keys.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { PatchEntityRequestSchema } from "../../gen/umw/v1/command_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { resourcesSchema } from "../../runtime/resources.js";
import { startWriteStack, type WriteStack } from "./write-stack.js";

const TENANT = "proto";
const RESOURCES = resourcesSchema.parse({ doc: { schema: { type: "object" } } });

/** Everything observable about Object.prototype that a pollution would change. */
function prototypeFingerprint(): string {
  const names = Object.getOwnPropertyNames(Object.prototype).sort();
  return JSON.stringify([names, Object.getPrototypeOf(Object.prototype), ({} as Record<string, unknown>).polluted, ({} as Record<string, unknown>).x]);
}

/** Raw JSON texts: `__proto__` must stay a key, which an object literal would not keep. */
const BAD_BODIES = [
  '{"__proto__":{"polluted":"yes"}}',
  '{"a":{"__proto__":{"polluted":"yes"}}}',
  '{"constructor":{"prototype":{"polluted":"yes"}}}',
  '{"list":[{"b":{"prototype":{"polluted":"yes"}}}]}',
];
const BAD_MASKS = ["__proto__.polluted", "a.__proto__.polluted", "constructor.prototype.polluted", "prototype"];

describe("reserved keys on the real write path", () => {
  let stack: WriteStack;
  const id = `e-${randomUUID()}`;
  const fingerprint = prototypeFingerprint();

  before(async () => {
    stack = await startWriteStack({ resources: RESOURCES });
    const created = await stack.grpc.createEntity({ tenant: TENANT, type: "doc", id, data: { a: {}, list: [] } }, { headers: { "idempotency-key": randomUUID() } });
    assert.equal((await stack.outcome(created.receipt!.commandId)).state, "applied");
  });
  after(async () => {
    await stack?.stop();
  });

  const commandCount = async () => Number((await stack.db.query<{ n: string }>("SELECT count(*)::text AS n FROM umw_commands")).rows[0]!.n);

  /** `reasons`: the ErrorInfo reasons allowed (a mask's JSON form cannot spell `__proto__` at all: lowerCamelCase). */
  async function expectReserved(response: Response, what: string, allowed: readonly string[] = ["RESERVED_KEY"]): Promise<void> {
    const text = await response.text();
    assert.equal(response.status, 400, `${what}: ${response.status} ${text}`);
    // REST: google.rpc.Status JSON; Connect: details as base64 protobuf with their type name.
    const body = JSON.parse(text) as { code: number | string; details?: { reason?: string; type?: string; value?: string }[] };
    const reasons = (body.details ?? []).map((detail) =>
      detail.type === "google.rpc.ErrorInfo" && detail.value ? fromBinary(ErrorInfoSchema, Buffer.from(detail.value, "base64")).reason : detail.reason,
    );
    assert.ok(body.code === 3 || body.code === "invalid_argument", `${what}: ${text}`);
    assert.ok(reasons.some((reason) => reason !== undefined && allowed.includes(reason)), `${what}: ${text}`);
  }

  test("REST: PATCH with a reserved key in the body or the update_mask is 400 RESERVED_KEY", async () => {
    const before = await commandCount();
    const url = `${stack.edge.url}/v1/tenants/${TENANT}/types/doc/entities/${id}`;
    const headers = () => ({ "content-type": "application/json", "idempotency-key": `"${randomUUID()}"` });
    for (const body of BAD_BODIES) {
      await expectReserved(await fetch(url, { method: "PATCH", headers: headers(), body }), `PATCH ${body}`);
      await expectReserved(await fetch(url, { method: "PUT", headers: headers(), body }), `PUT ${body}`);
      await expectReserved(await fetch(`${stack.edge.url}/v1/tenants/${TENANT}/types/doc/entities`, { method: "POST", headers: headers(), body }), `POST ${body}`);
    }
    for (const mask of BAD_MASKS) {
      // update_mask in its JSON form is lowerCamelCase: `__proto__` does not parse as a FieldMask.
      const allowed = mask.includes("_") ? ["INVALID_QUERY_PARAMETER"] : ["RESERVED_KEY"];
      const body = '{"__proto__":{"polluted":"yes"},"a":{"__proto__":{"polluted":"yes"}},"polluted":"yes"}';
      await expectReserved(await fetch(`${url}?update_mask=${encodeURIComponent(mask)}`, { method: "PATCH", headers: headers(), body }), `mask ${mask}`, ["RESERVED_KEY", ...allowed]);
      await expectReserved(await fetch(`${url}?update_mask=${encodeURIComponent(mask)}`, { method: "PATCH", headers: headers(), body: '{"ok":1}' }), `mask ${mask} (clean body)`, allowed);
    }
    assert.equal(await commandCount(), before, "no command was recorded");
    assert.equal(prototypeFingerprint(), fingerprint);
  });

  test("Connect through the edge: the same requests are invalid_argument RESERVED_KEY", async () => {
    const before = await commandCount();
    for (const data of BAD_BODIES) {
      const body = `{"tenant":"${TENANT}","type":"doc","id":"${id}","data":${data}}`;
      await expectReserved(
        await fetch(`${stack.edge.url}/umw.v1.CommandService/PatchEntity`, { method: "POST", headers: { "content-type": "application/json", "idempotency-key": randomUUID() }, body }),
        `Connect ${data}`,
      );
    }
    for (const mask of BAD_MASKS) {
      // Binary protobuf: a FieldMask path is any string there, `__proto__.x` included.
      const body = toBinary(PatchEntityRequestSchema, create(PatchEntityRequestSchema, { tenant: TENANT, type: "doc", id, data: { ok: 1 }, updateMask: { paths: [mask] } }));
      await expectReserved(
        await fetch(`${stack.edge.url}/umw.v1.CommandService/PatchEntity`, { method: "POST", headers: { "content-type": "application/proto", "idempotency-key": randomUUID() }, body }),
        `Connect (binary) mask ${mask}`,
      );
    }
    assert.equal(await commandCount(), before, "no command was recorded");
    assert.equal(prototypeFingerprint(), fingerprint);
  });

  test("gRPC straight to CommandService (no edge): INVALID_ARGUMENT RESERVED_KEY at accept, no row", async () => {
    const before = await commandCount();
    const reserved = (error: unknown) => {
      assert.ok(error instanceof RpcError, String(error));
      assert.equal(error.code, Code.INVALID_ARGUMENT, error.message);
      assert.equal(error.reason, "RESERVED_KEY", error.message);
      return true;
    };
    for (const text of BAD_BODIES) {
      // JSON.parse keeps `__proto__` as an own key, and so does protobuf-es when it encodes the Struct.
      await assert.rejects(stack.grpc.patchEntity({ tenant: TENANT, type: "doc", id, data: JSON.parse(text) }, { headers: { "idempotency-key": randomUUID() } }), reserved, text);
      await assert.rejects(stack.grpc.createEntity({ tenant: TENANT, type: "doc", data: JSON.parse(text) }, { headers: { "idempotency-key": randomUUID() } }), reserved, text);
    }
    for (const mask of BAD_MASKS) {
      await assert.rejects(
        stack.grpc.patchEntity({ tenant: TENANT, type: "doc", id, data: JSON.parse(BAD_BODIES[0]!), updateMask: { paths: [mask] } }, { headers: { "idempotency-key": randomUUID() } }),
        reserved,
        mask,
      );
      await assert.rejects(
        stack.grpc.patchEntity({ tenant: TENANT, type: "doc", id, data: { ok: 1 }, updateMask: { paths: [mask] } }, { headers: { "idempotency-key": randomUUID() } }),
        reserved,
        mask,
      );
    }
    assert.equal(await commandCount(), before, "no command was recorded");
    assert.equal(prototypeFingerprint(), fingerprint);
  });

  test("a clean patch still applies, and the entity holds no reserved member", async () => {
    const accepted = await stack.grpc.patchEntity({ tenant: TENANT, type: "doc", id, data: { a: { b: 1 } } }, { headers: { "idempotency-key": randomUUID() } });
    assert.equal((await stack.outcome(accepted.receipt!.commandId)).state, "applied");
    const { rows } = await stack.db.query<{ data: unknown }>("SELECT data FROM umw_entities WHERE tenant = $1 AND id = $2", [TENANT, id]);
    assert.deepEqual(rows[0]!.data, { a: { b: 1 }, list: [] });
    assert.equal(prototypeFingerprint(), fingerprint);
  });
});
