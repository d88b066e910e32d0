import { httpStatusOf } from "../services/edge/http-status.js";
import { Code } from "./errors.js";
import { REASONS, type ReasonSpec } from "./reasons.js";

/** The generated part of docs/errors.md lies between these lines (`npm run gen:docs`). */
export const BEGIN_MARK = "<!-- BEGIN generated from runtime/reasons.ts by `npm run gen:docs`; do not edit -->";
export const END_MARK = "<!-- END generated -->";

/** The reason reference: one row per reason of runtime/reasons.ts, in declaration order. */
export function renderReasonsTable(reasons: Readonly<Record<string, ReasonSpec>> = REASONS): string {
  const rows = Object.entries(reasons).map(([name, spec]) => {
    const codes = spec.codes.map((code) => `\`${Code[code]}\` (${code})`).join(", ");
    const http = [...new Set(spec.codes.map((code) => spec.httpStatus ?? httpStatusOf(code)))].join(", ");
    return `| \`${name}\` | ${codes} | ${http} | ${spec.meaning.replaceAll("|", "\\|")} |`;
  });
  return ["| reason | gRPC code | HTTP status | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

/** `doc` with the text between the marks replaced by the current table. */
export function withReasonsSection(doc: string, table: string = renderReasonsTable()): string {
  const begin = doc.indexOf(BEGIN_MARK);
  const end = doc.indexOf(END_MARK);
  if (begin < 0 || end < begin) throw new Error(`the document has no generated section (${BEGIN_MARK} … ${END_MARK})`);
  return `${doc.slice(0, begin + BEGIN_MARK.length)}\n${table}\n${doc.slice(end)}`;
}
