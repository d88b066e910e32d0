import { test } from "node:test";
import assert from "node:assert/strict";
import { RetryBudget } from "./retry-budget.js";

test("retries stay within the minimum plus the ratio of calls in the window", () => {
  let now = 1_000_000;
  const budget = new RetryBudget({ ratio: 0.2, minRetries: 3, windowMs: 1_000 }, () => now);
  for (let i = 0; i < 100; i++) budget.recordCall();
  let allowed = 0;
  for (let i = 0; i < 100; i++) if (budget.tryRetry()) allowed++;
  assert.equal(allowed, 3 + 20);

  // Within the window nothing is given back; once it has slid past, the budget is whole again.
  now += 500;
  assert.equal(budget.tryRetry(), false);
  now += 1_000;
  allowed = 0;
  for (let i = 0; i < 10; i++) if (budget.tryRetry()) allowed++;
  assert.equal(allowed, 3);
});

test("a quiet upstream still gets the minimum; a zero budget allows no retry", () => {
  const quiet = new RetryBudget({ ratio: 0.2, minRetries: 2, windowMs: 10_000 });
  quiet.recordCall();
  assert.deepEqual([quiet.tryRetry(), quiet.tryRetry(), quiet.tryRetry()], [true, true, false]);
  const none = new RetryBudget({ ratio: 0, minRetries: 0, windowMs: 10_000 });
  none.recordCall();
  assert.equal(none.tryRetry(), false);
});
