import { execFile } from "node:child_process";
import { fromBinary, toBinary, type DescMethodServerStreaming, type DescMethodUnary, type MessageInitShape, type MessageShape, create, type DescMessage } from "@bufbuild/protobuf";
import { credentials, makeGenericClientConstructor, Metadata, type Client, type ServiceError } from "@grpc/grpc-js";

/** An HTTP answer as curl saw it. */
export interface CurlAnswer {
  readonly status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  text(): string;
  json<T = Record<string, unknown>>(): T;
}

/** One request by curl (not our client): `args` are extra curl arguments (-X, -H, --data, -I ...). */
export function curl(url: string, args: string[] = []): Promise<CurlAnswer> {
  return new Promise((resolve, reject) => {
    execFile("curl", ["-sS", "-i", "--max-time", "15", ...args, url], { encoding: "buffer", maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`curl ${args.join(" ")} ${url}: ${stderr.toString() || error.message}`));
      resolve(parseCurl(stdout));
    });
  });
}

function parseCurl(raw: Buffer): CurlAnswer {
  let rest = raw;
  for (;;) {
    const end = rest.indexOf("\r\n\r\n");
    const head = (end < 0 ? rest : rest.subarray(0, end)).toString("latin1");
    const body = end < 0 ? Buffer.alloc(0) : rest.subarray(end + 4);
    const [statusLine, ...lines] = head.split("\r\n");
    const status = Number(statusLine!.split(" ")[1]);
    // An interim 1xx answer is followed by the real one.
    if (status >= 100 && status < 200 && body.length > 0) {
      rest = body;
      continue;
    }
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    return { status, headers, body, text: () => body.toString("utf8"), json: <T>() => JSON.parse(body.toString("utf8")) as T };
  }
}

/** A plain gRPC client (grpc-js, cleartext HTTP/2) for protobuf-es methods. */
export class GrpcClient {
  private readonly client: Client;
  constructor(address: string) {
    const Generic = makeGenericClientConstructor({}, "umw");
    this.client = new Generic(address, credentials.createInsecure());
  }

  unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    headers: Record<string, string> = {},
  ): Promise<{ response: MessageShape<O>; headers: Metadata }> {
    return new Promise((resolve, reject) => {
      let received = new Metadata();
      const call = this.client.makeUnaryRequest(
        `/${method.parent.typeName}/${method.name}`,
        (value: MessageShape<I>) => Buffer.from(toBinary(method.input, value)),
        (bytes: Buffer) => fromBinary(method.output, bytes),
        create(method.input, request),
        metadataOf(headers),
        { deadline: Date.now() + 10_000 },
        (error: ServiceError | null, response?: MessageShape<O>) => (error ? reject(error) : resolve({ response: response!, headers: received })),
      );
      call.on("metadata", (metadata) => (received = metadata));
    });
  }

  async serverStream<I extends DescMessage, O extends DescMessage>(method: DescMethodServerStreaming<I, O>, request: MessageInitShape<I>, take: number): Promise<MessageShape<O>[]> {
    const call = this.client.makeServerStreamRequest(
      `/${method.parent.typeName}/${method.name}`,
      (value: MessageShape<I>) => Buffer.from(toBinary(method.input, value)),
      (bytes: Buffer) => fromBinary(method.output, bytes),
      create(method.input, request),
      new Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    const messages: MessageShape<O>[] = [];
    try {
      for await (const message of call) {
        messages.push(message as MessageShape<O>);
        if (messages.length >= take) break;
      }
    } finally {
      call.cancel();
    }
    return messages;
  }

  close(): void {
    this.client.close();
  }
}

function metadataOf(headers: Record<string, string>): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
  return metadata;
}
