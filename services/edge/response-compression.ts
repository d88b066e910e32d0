import { brotliCompressSync, constants, gzipSync } from "node:zlib";

/** Responses at least this large are compressed; Envoy's compressor filters use the same threshold (edge-resources.ts). */
export const COMPRESSION_MIN_BYTES = 1024;

export type ContentCoding = "gzip" | "br";

/**
 * The coding to answer with, from Accept-Encoding (RFC 9110 §12.5.3): the acceptable one (q > 0)
 * of gzip and br with the highest weight, `*` standing for both; on a tie the first listed.
 */
export function negotiateCoding(acceptEncoding: string | undefined): ContentCoding | undefined {
  if (!acceptEncoding) return undefined;
  let best: { coding: ContentCoding; q: number } | undefined;
  const weights = new Map<string, number>();
  for (const part of acceptEncoding.split(",")) {
    const [name, ...params] = part.trim().toLowerCase().split(";");
    if (!name) continue;
    const qParam = params.map((param) => param.trim()).find((param) => param.startsWith("q="));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    weights.set(name, Number.isFinite(q) ? q : 0);
  }
  for (const [name, q] of weights) {
    const codings: ContentCoding[] = name === "*" ? ["gzip", "br"] : name === "gzip" || name === "br" ? [name] : [];
    for (const coding of codings) {
      if (name === "*" && weights.has(coding)) continue;
      if (q > 0 && (!best || q > best.q)) best = { coding, q };
    }
  }
  return best?.coding;
}

/** The body in the coding, or undefined when it stays as it is (below the threshold or no coding accepted). */
export function compressBody(body: string, acceptEncoding: string | undefined): { coding: ContentCoding; bytes: Buffer } | undefined {
  if (Buffer.byteLength(body) < COMPRESSION_MIN_BYTES) return undefined;
  const coding = negotiateCoding(acceptEncoding);
  if (!coding) return undefined;
  const bytes = coding === "gzip" ? gzipSync(body) : brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } });
  return { coding, bytes };
}
