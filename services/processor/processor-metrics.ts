import { counter, defaultRegistry, type Registry } from "../../runtime/metrics.js";
import type { Outcome } from "./processor.js";
import type { DeadLetterReason } from "./dead-letter.js";

const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = ["UNDECODABLE", "INVALID_COMMAND", "PERMANENT_ERROR", "RETRIES_EXHAUSTED"];

/**
 * What became of each command message, as `umw_processor_commands_total{outcome,reason}` (reason:
 * the ErrorInfo reason of a rejection, the dead-letter reason, else empty: both from fixed
 * catalogues), and the DLQ inflow `umw_dlq_messages_total{reason}`.
 */
export function processorMetrics(registry: Registry = defaultRegistry): (outcome: Outcome) => void {
  const commands = counter<"outcome" | "reason">(registry, {
    name: "umw_processor_commands_total",
    help: "Command messages the processor finished, by outcome (applied | rejected | duplicate | dead-lettered) and reason.",
    labelNames: ["outcome", "reason"],
  });
  const deadLettered = counter<"reason">(registry, {
    name: "umw_dlq_messages_total",
    help: "Messages this processor sent to the dead-letter topic, by reason (`umw dlq list` shows them).",
    labelNames: ["reason"],
  });
  for (const outcome of ["applied", "duplicate"]) commands.inc({ outcome, reason: "" }, 0);
  for (const reason of DEAD_LETTER_REASONS) deadLettered.inc({ reason }, 0);
  return (outcome) => {
    switch (outcome.kind) {
      case "rejected":
        commands.inc({ outcome: outcome.kind, reason: outcome.error.reason ?? "" });
        return;
      case "dead-lettered":
        commands.inc({ outcome: outcome.kind, reason: outcome.reason });
        deadLettered.inc({ reason: outcome.reason });
        return;
      default:
        commands.inc({ outcome: outcome.kind, reason: "" });
    }
  };
}
