import { createServer, type Server as HttpServer } from "node:http";
import { Server, ServerCredentials, type ServiceDefinition } from "@grpc/grpc-js";

/** The floor for the edge: a bare node:http server answering fixed bytes. */
export async function bareHttpServer(body: Uint8Array, headers: Record<string, string>): Promise<{ port: number; close(): Promise<void> }> {
  const server: HttpServer = createServer((_req, res) => {
    res.writeHead(200, { ...headers, "content-length": body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as { port: number }).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** The floor for a gRPC service: grpc-js answering one method with a fixed serialized message. */
export async function bareGrpcServer(path: string, response: Uint8Array): Promise<{ port: number; close(): Promise<void> }> {
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
  server.addService(definition, { call: (_call: unknown, callback: (error: null, value: Buffer) => void) => callback(null, fixed) });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { port, close: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}
