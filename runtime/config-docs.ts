import { describeSettings, type SettingDoc } from "./config.js";

/** The generated part of docs/configuration.md lies between these lines (`npm run gen:docs`). */
export const BEGIN_MARK = "<!-- BEGIN generated from runtime/config.ts by `npm run gen:docs`; do not edit -->";
export const END_MARK = "<!-- END generated -->";

/** The configuration reference: one row per setting of runtime/config.ts, in declaration order. */
export function renderSettingsTable(settings: readonly SettingDoc[] = describeSettings()): string {
  const rows = settings.map((setting) => `| \`${setting.env}\` | \`${setting.key}\` | ${formatDefault(setting)} | ${setting.description.replaceAll("|", "\\|")} |`);
  return ["| variable | key in the `UMW_CONFIG` file | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

/** `doc` with the text between the marks replaced by the current table. */
export function withGeneratedSection(doc: string, table: string = renderSettingsTable()): string {
  const begin = doc.indexOf(BEGIN_MARK);
  const end = doc.indexOf(END_MARK);
  if (begin < 0 || end < begin) throw new Error(`the document has no generated section (${BEGIN_MARK} … ${END_MARK})`);
  return `${doc.slice(0, begin + BEGIN_MARK.length)}\n${table}\n${doc.slice(end)}`;
}

function formatDefault({ key, defaultValue }: SettingDoc): string {
  if (defaultValue === undefined) return "(unset)";
  if (defaultValue === "") return "(empty)";
  if (Array.isArray(defaultValue)) return `\`${defaultValue.join(",")}\``;
  if (typeof defaultValue === "object") return `\`${JSON.stringify(defaultValue)}\``;
  if (typeof defaultValue === "number" && key.endsWith("Ms") && defaultValue >= 60_000) return `\`${defaultValue}\` (${duration(defaultValue)})`;
  return `\`${String(defaultValue)}\``;
}

function duration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1_000} s`;
}
