import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { Code, RpcError } from "../../runtime/errors.js";

/** The client went away before its body arrived: nobody is left to answer. */
export class ClientGoneError extends Error {
  override readonly name = "ClientGoneError";
}

export type IncomingRequest = Readable & { readonly headers: IncomingHttpHeaders };

/**
 * Reads a request body of at most `limit` bytes. A declared or actual size over the limit fails
 * with 413 at once; the rest of the body is then read and discarded (so the client can read the
 * answer on a kept-alive connection) up to a bound, past which the connection is dropped.
 */
export function readBody(req: IncomingRequest, limit: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    discard(req, limit);
    return Promise.reject(tooLarge(limit));
  }
  if (declared === "0") return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        discard(req, limit);
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onGone = () => {
      cleanup();
      reject(new ClientGoneError("the client closed the request before its body arrived"));
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onGone);
      req.off("aborted", onGone);
      req.off("close", onClose);
    };
    const onClose = () => {
      if (!req.readableEnded) onGone();
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onGone);
    req.on("aborted", onGone);
    req.on("close", onClose);
  });
}

function tooLarge(limit: number): RpcError {
  return new RpcError(Code.RESOURCE_EXHAUSTED, "BODY_TOO_LARGE", `the request body exceeds ${limit} bytes`, { limit: String(limit) });
}

function discard(req: IncomingRequest, limit: number): void {
  const bound = Math.max(limit * 4, 8 * 1024 * 1024);
  let discarded = 0;
  req.on("data", (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > bound) req.destroy();
  });
  req.on("error", () => undefined);
  req.resume();
}
