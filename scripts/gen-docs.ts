// npm run gen:docs: rewrites the generated sections of docs/configuration.md (from runtime/config.ts)
// and docs/errors.md (from runtime/reasons.ts). runtime/config-docs.test.ts and
// runtime/reasons.test.ts fail when a committed file differs from what this writes.
import { readFileSync, writeFileSync } from "node:fs";
import { withGeneratedSection } from "../runtime/config-docs.js";
import { withReasonsSection } from "../runtime/reasons-docs.js";

const documents: ReadonlyArray<[string, (doc: string) => string]> = [
  ["configuration.md", withGeneratedSection],
  ["errors.md", withReasonsSection],
];
for (const [name, render] of documents) {
  const path = new URL(`../docs/${name}`, import.meta.url);
  const before = readFileSync(path, "utf8");
  const after = render(before);
  if (after === before) console.log(`gen:docs: docs/${name} is up to date`);
  else {
    writeFileSync(path, after);
    console.log(`gen:docs: wrote docs/${name}`);
  }
}
