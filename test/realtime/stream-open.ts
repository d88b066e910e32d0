// A realtime subscription opened by a real client of each protocol, watched from the outside: when
// its response headers arrived (HTTP status, content type), and each message after them. Shared by
// the tests that check a subscription with nothing to send yet still answers at once (Node edge,
// Envoy, the hub itself).
import { spawn, type ChildProcess } from "node:child_process";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { credentials, makeGenericClientConstructor, Metadata, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { RealtimeService, SubscribeRequestSchema, SubscribeResponseSchema, type SubscribeResponse } from "../../gen/umw/v1/realtime_pb.js";
import { bearer } from "../support/dev-tokens.js";

/** What arrived with the response headers. */
export interface OpenedHeaders {
  /** HTTP status; undefined where the client does not expose it (grpc-js). */
  readonly status: number | undefined;
  readonly contentType: string;
}

export interface OpenStream {
  /** Resolves when the response headers arrive; rejects when the call fails first. */
  readonly headers: Promise<OpenedHeaders>;
  /** The next message that is not a heartbeat, within `timeoutMs`. */
  next(timeoutMs?: number): Promise<SubscribeResponse>;
  close(): void;
}

/** Resolves with the promise's value, or fails saying what did not happen within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Messages as they come, and failures, for a `next()` that waits. */
class Inbox {
  private readonly queue: SubscribeResponse[] = [];
  private failure: unknown;
  private ended = false;
  private wake: (() => void) | undefined;

  push(message: SubscribeResponse): void {
    if (message.message.case === "heartbeat") return;
    this.queue.push(message);
    this.wake?.();
  }

  fail(error: unknown): void {
    this.failure ??= error;
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async next(timeoutMs = 10_000): Promise<SubscribeResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = this.queue.shift();
      if (message) return message;
      if (this.failure !== undefined) throw this.failure;
      if (this.ended) throw new Error("the stream ended without another message");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${timeoutMs} ms`);
      await within(new Promise<void>((resolve) => (this.wake = resolve)), left, "the next message").catch(() => undefined);
      this.wake = undefined;
    }
  }
}

/** Connect (binary) with @connectrpc/connect-node, over HTTP/1.1 or HTTP/2 (h2c). */
export function connectStream(baseUrl: string, httpVersion: "1.1" | "2", token: string, request: MessageInitShape<typeof SubscribeRequestSchema>): OpenStream {
  const transport = createConnectTransport({ baseUrl, httpVersion, useBinaryFormat: true, interceptors: [bearer(token)] });
  const controller = new AbortController();
  const inbox = new Inbox();
  let opened!: (headers: OpenedHeaders) => void;
  let refused!: (error: unknown) => void;
  const headers = new Promise<OpenedHeaders>((resolve, reject) => ((opened = resolve), (refused = reject)));
  // connect-node takes a stream whose status is not 200 for a failure: headers that arrive are a 200.
  const onHeader = (header: Headers) => opened({ status: 200, contentType: header.get("content-type") ?? "" });
  void (async () => {
    try {
      for await (const message of createClient(RealtimeService, transport).subscribe(request, { signal: controller.signal, onHeader })) inbox.push(message);
      inbox.end();
    } catch (error) {
      refused(error);
      inbox.fail(error);
    }
  })();
  headers.catch(() => undefined);
  return { headers, next: (ms) => inbox.next(ms), close: () => controller.abort() };
}

/** gRPC-web (binary) with curl, over HTTP/1.1 or HTTP/2 with prior knowledge (h2c). */
export function curlGrpcWebStream(baseUrl: string, http2: boolean, token: string, request: MessageInitShape<typeof SubscribeRequestSchema>): OpenStream {
  const message = toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, request));
  const frame = Buffer.alloc(5 + message.byteLength);
  frame.writeUInt32BE(message.byteLength, 1);
  frame.set(message, 5);
  const child: ChildProcess = spawn(
    "curl",
    [
      "-sS",
      "-v",
      "-N",
      http2 ? "--http2-prior-knowledge" : "--http1.1",
      "-X",
      "POST",
      "-H",
      "content-type: application/grpc-web+proto",
      "-H",
      "x-grpc-web: 1",
      "-H",
      `authorization: Bearer ${token}`,
      "--data-binary",
      "@-",
      `${baseUrl}/umw.v1.RealtimeService/Subscribe`,
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  child.stdin!.end(frame);
  const inbox = new Inbox();
  let opened!: (headers: OpenedHeaders) => void;
  let refused!: (error: unknown) => void;
  const headers = new Promise<OpenedHeaders>((resolve, reject) => ((opened = resolve), (refused = reject)));
  headers.catch(() => undefined);
  // -v reports the response headers on stderr as they arrive (`< name: value`, a bare `<` ends them);
  // curl's stdout is buffered for them, the body (-N) is not.
  let stderr = "";
  let head: string[] | undefined = [];
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("latin1");
    if (!head) return;
    // Complete lines only: a chunk may end inside one (`< ` of `< HTTP/1.1 200 OK`).
    const lines = stderr.split(/\r?\n/).slice(0, -1);
    head = lines.filter((line) => line.startsWith("< ")).map((line) => line.slice(2));
    if (!lines.some((line) => line === "<" || line === "< ")) return;
    const status = Number(head.map((line) => /^HTTP\/[\d.]+ (\d{3})/.exec(line)?.[1]).find(Boolean));
    const contentType = head.find((line) => /^content-type:/i.test(line))?.replace(/^content-type:\s*/i, "") ?? "";
    opened({ status, contentType });
    // A trailers-only answer (a refusal before any message) has its status among the headers.
    const trailersOnly = head.find((line) => /^grpc-status:/i.test(line));
    if (trailersOnly) inbox.fail(new Error(`the stream ended: ${trailersOnly}`));
    head = undefined;
  });
  let output = Buffer.alloc(0);
  child.stdout!.on("data", (chunk: Buffer) => {
    output = Buffer.concat([output, chunk]);
    // gRPC-web frames: flag (0x00 message, 0x80 trailers), length, bytes.
    while (output.byteLength >= 5 && output.byteLength >= 5 + output.readUInt32BE(1)) {
      const length = output.readUInt32BE(1);
      const flag = output[0]!;
      const data = output.subarray(5, 5 + length);
      output = output.subarray(5 + length);
      if (flag === 0) inbox.push(fromBinary(SubscribeResponseSchema, data));
      else inbox.fail(new Error(`the stream ended: ${data.toString("latin1").trim()}`));
    }
  });
  child.on("exit", (code) => {
    const error = new Error(`curl exited (${code}) ${stderr.split("\n").filter((line) => !line.startsWith(">") && !line.startsWith("{") && !line.startsWith("}")).join("\n").slice(-500)}`);
    refused(error);
    inbox.fail(error);
  });
  return { headers, next: (ms) => inbox.next(ms), close: () => void child.kill() };
}

/** Native gRPC with grpc-js, in clear over HTTP/2 (the edge's h2c port). */
export function grpcStream(address: string, token: string, request: MessageInitShape<typeof SubscribeRequestSchema>): OpenStream {
  const Generic = makeGenericClientConstructor({}, "umw");
  const client = new Generic(address, credentials.createInsecure());
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  const call: ClientReadableStream<SubscribeResponse> = client.makeServerStreamRequest(
    "/umw.v1.RealtimeService/Subscribe",
    (value: MessageInitShape<typeof SubscribeRequestSchema>) => Buffer.from(toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, value))),
    (bytes: Buffer) => fromBinary(SubscribeResponseSchema, bytes),
    request,
    metadata,
  );
  const inbox = new Inbox();
  const headers = new Promise<OpenedHeaders>((resolve, reject) => {
    // grpc-js hands on the response headers (all but the pseudo-headers) as metadata when they arrive.
    call.on("metadata", (received: Metadata) => resolve({ status: undefined, contentType: String(received.get("content-type")[0] ?? "") }));
    call.on("error", (error: ServiceError) => reject(error));
  });
  headers.catch(() => undefined);
  call.on("data", (message: SubscribeResponse) => inbox.push(message));
  call.on("error", (error: ServiceError) => inbox.fail(error));
  call.on("end", () => inbox.end());
  return {
    headers,
    next: (ms) => inbox.next(ms),
    close: () => {
      call.cancel();
      client.close();
    },
  };
}
