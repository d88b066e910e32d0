// npm run gen:docs: rewrites the generated section of docs/configuration.md from runtime/config.ts.
// runtime/config-docs.test.ts fails when the committed file differs from what this writes.
import { readFileSync, writeFileSync } from "node:fs";
import { withGeneratedSection } from "../runtime/config-docs.js";

const path = new URL("../docs/configuration.md", import.meta.url);
const before = readFileSync(path, "utf8");
const after = withGeneratedSection(before);
if (after === before) console.log("gen:docs: docs/configuration.md is up to date");
else {
  writeFileSync(path, after);
  console.log("gen:docs: wrote docs/configuration.md");
}
