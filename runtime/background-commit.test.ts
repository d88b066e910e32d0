import assert from "node:assert/strict";
import { test } from "node:test";
import { BackgroundCommit } from "./background-commit.js";

/** A commit the test finishes by hand, recording the offset it carried. */
function manualCommits() {
  const sent: number[] = [];
  const pending: { resolve: () => void; reject: (error: Error) => void }[] = [];
  const commitOf = (offset: number) => () =>
    new Promise<void>((resolve, reject) => {
      sent.push(offset);
      pending.push({ resolve, reject });
    });
  return { sent, pending, commitOf };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test("a request commits at once, without the caller waiting for the answer", async () => {
  const { sent, pending, commitOf } = manualCommits();
  const commits = new BackgroundCommit(() => assert.fail("no error expected"));
  commits.request(commitOf(1));
  assert.deepEqual(sent, [1]);
  pending[0]!.resolve();
  await commits.flush();
  assert.deepEqual(sent, [1]);
});

test("requests during a commit in flight are covered by one more commit of the latest offsets", async () => {
  const { sent, pending, commitOf } = manualCommits();
  const commits = new BackgroundCommit(() => assert.fail("no error expected"));
  commits.request(commitOf(1));
  commits.request(commitOf(2));
  commits.request(commitOf(3));
  assert.deepEqual(sent, [1], "at most one commit in flight");
  pending[0]!.resolve();
  await tick();
  assert.deepEqual(sent, [1, 3], "the next commit carries the latest offsets, once");
  let flushed = false;
  const flush = commits.flush().then(() => (flushed = true));
  await tick();
  assert.equal(flushed, false, "flush waits for the commit still in flight");
  pending[1]!.resolve();
  await flush;
  assert.deepEqual(sent, [1, 3]);
});

test("a failed commit is reported and the next request commits again", async () => {
  const { sent, pending, commitOf } = manualCommits();
  const errors: unknown[] = [];
  const commits = new BackgroundCommit((error) => errors.push(error));
  commits.request(commitOf(1));
  pending[0]!.reject(new Error("REBALANCE_IN_PROGRESS"));
  await commits.flush();
  assert.equal((errors[0] as Error).message, "REBALANCE_IN_PROGRESS");
  commits.request(commitOf(2));
  assert.deepEqual(sent, [1, 2]);
  pending[1]!.resolve();
  await commits.flush();
  assert.equal(errors.length, 1);
});

test("flush with nothing requested resolves at once", async () => {
  await new BackgroundCommit(() => undefined).flush();
});
