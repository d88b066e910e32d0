import assert from "node:assert/strict";
import { RpcError } from "../../runtime/errors.js";

/** The RpcError `call` rejects with; fails the test when it succeeds or rejects with anything else. */
export async function rejection(call: Promise<unknown>): Promise<RpcError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof RpcError, `an RpcError, not ${String(error)}`);
    return error;
  }
  assert.fail("the call succeeded");
}
