import { RpcError } from "../errors.js";
import type { FillMessage } from "./cache.js";
import { decodeEntry, encodeEntry, EntryFormatError } from "./entry.js";

/** Fill announcements: 'S' stored entry, 'U' unstored entry (handed out, not cached), 'F' failure. */
export function encodeFillMessage(message: FillMessage): Buffer {
  if (message.kind === "error") return Buffer.concat([Buffer.from("F"), encodeFillError(message.error)]);
  return Buffer.concat([Buffer.from(message.stored ? "S" : "U"), encodeEntry(message.entry)]);
}

export function decodeFillMessage(bytes: Buffer): FillMessage {
  const flag = bytes.toString("latin1", 0, 1);
  if (flag === "F") {
    const parsed = JSON.parse(bytes.toString("utf8", 1)) as { code?: number; reason?: string; message?: string };
    return {
      kind: "error",
      error: RpcError.fromWire(Number(parsed.code ?? 14), String(parsed.reason ?? "BACKEND_UNAVAILABLE"), String(parsed.message ?? "load failed")),
    };
  }
  if (flag !== "S" && flag !== "U") throw new EntryFormatError("not a umw fill message");
  return { kind: "entry", entry: decodeEntry(bytes.subarray(1)), stored: flag === "S" };
}

/** A failed load as waiters read it (JSON): enough to answer with the same code, reason and message. */
export function encodeFillError(error: RpcError): Buffer {
  return Buffer.from(JSON.stringify({ code: error.code, reason: error.reason, message: error.message }));
}
