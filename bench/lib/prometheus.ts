export { parseMetrics, scrape, sumOf, type Sample } from "../../runtime/prometheus-text.js";
