import { createServer, type Server as HttpServer } from "node:http";
import { constants as h2, createServer as createH2cServer, type Http2Session } from "node:http2";
import { Metadata, Server, ServerCredentials, type ServiceDefinition } from "@grpc/grpc-js";

export interface Floor {
  readonly port: number;
  close(): Promise<void>;
}

/** The floor for the edge: a bare node:http server answering fixed bytes. */
export async function bareHttpServer(body: Uint8Array, headers: Record<string, string>): Promise<Floor> {
  const server: HttpServer = createServer((_req, res) => {
    res.writeHead(200, { ...headers, "content-length": body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The floor for the edge's h2c port: a bare node:http2 cleartext server answering the same fixed
 * bytes and headers (core stream API, the cheapest way node:http2 answers).
 */
export async function bareH2cServer(body: Uint8Array, headers: Record<string, string>): Promise<Floor> {
  const server = createH2cServer();
  const sessions = new Set<Http2Session>();
  const fixed = Buffer.from(body);
  const responseHeaders = { ...headers, [h2.HTTP2_HEADER_STATUS]: 200, "content-length": fixed.length };
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  server.on("stream", (stream) => {
    stream.respond(responseHeaders);
    stream.end(fixed);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}

/**
 * The floor for a gRPC service: grpc-js answering one method with a fixed serialized message
 * (and, when given, the same response headers the real service sends).
 */
export async function bareGrpcServer(path: string, response: Uint8Array, headers: Record<string, string> = {}): Promise<Floor> {
  const server = new Server();
  const definition: ServiceDefinition = {
    call: {
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: (value: Buffer) => value,
      requestDeserialize: (value: Buffer) => value,
      responseSerialize: (value: Buffer) => value,
      responseDeserialize: (value: Buffer) => value,
    },
  };
  const fixed = Buffer.from(response);
  const entries = Object.entries(headers);
  server.addService(definition, {
    call: (call: { sendMetadata(metadata: Metadata): void }, callback: (error: null, value: Buffer) => void) => {
      if (entries.length > 0) {
        const metadata = new Metadata();
        for (const [key, value] of entries) metadata.set(key, value);
        call.sendMetadata(metadata);
      }
      callback(null, fixed);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    port,
    close: () =>
      new Promise((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), 1_000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
