import { after, before, describe, test } from "node:test";
import { runId } from "../support/env.js";
import { CASES, seed, type Fixture } from "./cases.js";
import { startStack, type Stack } from "./stack.js";

/**
 * One conformance suite, two edges: every case of cases.ts runs against the Node edge and against
 * Envoy (on the xDS control plane), both in front of the same `umw serve all` on real Postgres,
 * Redis and Kafka.
 */
describe("edge conformance", { timeout: 180_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });

  for (const edgeName of ["node", "envoy"] as const) {
    describe(`${edgeName} edge`, () => {
      let fx: Fixture;
      before(async () => {
        const edge = stack[edgeName];
        const tenant = `${edgeName[0]}${runId()}`;
        const { ids, commandId } = await seed({ edge, tenant }, 8);
        fx = { edge, tenant, ids, commandId };
      });
      for (const conformance of CASES) {
        test(conformance.name, async () => {
          try {
            await conformance.run(fx);
          } catch (error) {
            (error as Error).message += `\n(${edgeName} edge)`;
            throw error;
          }
        });
      }
    });
  }
});
