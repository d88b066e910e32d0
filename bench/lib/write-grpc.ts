// A bare gRPC unary client on node:http2: the request bytes are encoded by the caller and framed
// here, headers go as given (a new idempotency-key per call), the answer is the response message's
// bytes. Several times cheaper per call than a grpc-js client, so that the load generator takes as
// little as it can of the cores it shares with the servers.
import { connect, constants, type ClientHttp2Session } from "node:http2";
import { loadIdentity } from "../../runtime/tls.js";

export class GrpcCallError extends Error {
  constructor(
    readonly code: number | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** A gRPC message frame: compressed flag, length, bytes. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

export class RawGrpcClient {
  private readonly session: ClientHttp2Session;

  /** mTLS as the `cli` identity from `certsDir`; plaintext (h2c) without it. */
  constructor(address: string, certsDir?: string) {
    const identity = certsDir ? loadIdentity(certsDir, "cli") : undefined;
    this.session = connect(`${identity ? "https" : "http"}://${address}`, identity ? { ca: identity.ca, cert: identity.client.cert, key: identity.client.key } : {});
    this.session.on("error", () => undefined);
  }

  /** One unary call: resolves with the response message's bytes, rejects with its grpc-status. */
  unary(path: string, frame: Buffer, headers: Readonly<Record<string, string>>, timeoutMs = 10_000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const stream = this.session.request({
        [constants.HTTP2_HEADER_METHOD]: "POST",
        [constants.HTTP2_HEADER_PATH]: path,
        "content-type": "application/grpc",
        te: "trailers",
        "grpc-timeout": `${timeoutMs}m`,
        ...headers,
      });
      let status: string | undefined;
      let message: string | undefined;
      const chunks: Buffer[] = [];
      const take = (fields: Record<string, unknown>) => {
        if (fields["grpc-status"] !== undefined) {
          status = String(fields["grpc-status"]);
          message = fields["grpc-message"] === undefined ? undefined : decodeURIComponent(String(fields["grpc-message"]));
        }
      };
      stream.on("response", take);
      stream.on("trailers", take);
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", (error) => reject(new GrpcCallError(undefined, error.message)));
      stream.on("close", () => {
        if (status !== "0") return reject(new GrpcCallError(status === undefined ? undefined : Number(status), `grpc-status ${status ?? "none"}: ${message ?? ""}`));
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        resolve(body.subarray(5, 5 + (body.length >= 5 ? body.readUInt32BE(1) : 0)));
      });
      stream.end(frame);
    });
  }

  close(): void {
    this.session.close();
  }
}
