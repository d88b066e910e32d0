import { Code as ConnectCode, ConnectError } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";

/**
 * gzip and br as connect-node implements them, except that a body which does not decompress is the
 * caller's mistake (INVALID_ARGUMENT), whatever zlib's reason: connect-node calls a truncated or
 * uncompressed gzip body (Z_BUF_ERROR) an internal error. Too large after decompression stays
 * RESOURCE_EXHAUSTED.
 */
export function strictCompressions(): Compression[] {
  return [compressionGzip, compressionBrotli].map((compression) => ({
    name: compression.name,
    compress: (bytes) => compression.compress(bytes),
    decompress: (bytes, readMaxBytes) =>
      compression.decompress(bytes, readMaxBytes).catch((error: unknown) => {
        const connectError = ConnectError.from(error);
        if (connectError.code === ConnectCode.ResourceExhausted) throw connectError;
        throw new ConnectError(`the body is not valid ${compression.name} data`, ConnectCode.InvalidArgument);
      }),
  }));
}
