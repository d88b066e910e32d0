// A small SVG chart renderer for the bench curves (docs/charts/*.svg): line charts over a linear or
// logarithmic x axis (sizes: 1k / 100k / 1M keys), and grouped bar charts over categories (1, 2, 4
// processors). No dependencies: the charts are regenerated from bench/results JSON by `npm run bench:charts`.

export interface Point {
  readonly x: number;
  /** null: no figure at this x (the point was not measured, or failed); the line breaks there. */
  readonly y: number | null;
}

export interface Series {
  readonly name: string;
  readonly points: readonly Point[];
  /** A dashed line (baselines, floors, peers). */
  readonly dashed?: boolean;
}

export interface ChartSpec {
  readonly title: string;
  /** A second line under the title (the command, the machine's load). */
  readonly subtitle?: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** "line" (default) or "bar": grouped bars, one group per distinct x, one bar per series. */
  readonly kind?: "line" | "bar";
  /** Line charts: "log" places x by its logarithm (sizes that grow by factors). Default linear. */
  readonly xScale?: "linear" | "log";
  /** "log" for figures that differ by factors (a floor far above the measured path). Default linear from 0. */
  readonly yScale?: "linear" | "log";
  readonly series: readonly Series[];
  readonly width?: number;
  readonly height?: number;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const MARGIN = { top: 56, right: 24, bottom: 66, left: 76 };
const LEGEND_ROW = 18;
/** Rough width of a legend entry: its swatch, its text (7 px a character at 12 px), a gap. */
const legendWidth = (name: string) => 22 + 7 * name.length + 18;

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!);
}

/** A short label: 1000 → "1k", 50000 → "50k", 1000000 → "1M", 0.25 → "0.25". */
export function formatNumber(value: number): string {
  const abs = Math.abs(value);
  const trim = (n: number) => String(Math.round(n * 100) / 100);
  if (abs >= 1e9) return `${trim(value / 1e9)}G`;
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e3) return `${trim(value / 1e3)}k`;
  return trim(value);
}

/** Round tick values (steps of 1, 2 or 5 × 10^k) covering [min, max], about `count` of them. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) throw new RangeError(`niceTicks: ${min}..${max} is not a finite range`);
  if (max < min) [min, max] = [max, min];
  if (max === min) max = min === 0 ? 1 : min + Math.abs(min);
  const rough = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough)!;
  const first = Math.floor(min / step) * step;
  const ticks: number[] = [];
  for (let tick = first; tick < max + step * 0.999; tick += step) ticks.push(Math.round(tick / step) * step);
  return ticks;
}

/** Powers of ten covering [min, max] (both > 0): the ticks of a log axis. */
export function logTicks(min: number, max: number): number[] {
  if (!(min > 0) || !(max > 0)) throw new RangeError(`logTicks: ${min}..${max} must be positive`);
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(Math.min(min, max))); e <= Math.ceil(Math.log10(Math.max(min, max))); e++) ticks.push(10 ** e);
  return ticks;
}

/** Maps [domain0, domain1] onto [range0, range1], linearly or by logarithm. */
export function scale(domain: readonly [number, number], range: readonly [number, number], log = false): (value: number) => number {
  const f = log ? Math.log10 : (v: number) => v;
  const [d0, d1] = [f(domain[0]), f(domain[1])];
  const span = d1 - d0 || 1;
  return (value) => range[0] + ((f(value) - d0) / span) * (range[1] - range[0]);
}

/** The chart as a standalone SVG document. */
export function renderChart(spec: ChartSpec): string {
  const width = spec.width ?? 720;
  const height = spec.height ?? 400;
  const kind = spec.kind ?? "line";
  const logX = kind === "line" && spec.xScale === "log";
  // The legend wraps into rows under the x axis label; the plot gives up the room they need.
  const legendRows: (typeof spec.series)[number][][] = [[]];
  let rowWidth = 0;
  for (const series of spec.series) {
    if (rowWidth > 0 && MARGIN.left + rowWidth + legendWidth(series.name) > width - MARGIN.right) {
      legendRows.push([]);
      rowWidth = 0;
    }
    legendRows[legendRows.length - 1]!.push(series);
    rowWidth += legendWidth(series.name);
  }
  const plot = { left: MARGIN.left, right: width - MARGIN.right, top: MARGIN.top, bottom: height - MARGIN.bottom - LEGEND_ROW * legendRows.length };
  const xs = [...new Set(spec.series.flatMap((series) => series.points.map((point) => point.x)))].sort((a, b) => a - b);
  const ys = spec.series.flatMap((series) => series.points.map((point) => point.y)).filter((y): y is number => y !== null && Number.isFinite(y));
  if (xs.length === 0) throw new RangeError(`chart "${spec.title}" has no points`);
  if (logX && xs.some((x) => x <= 0)) throw new RangeError(`chart "${spec.title}": a log x axis needs positive x values`);

  const logY = spec.yScale === "log";
  if (logY && ys.some((value) => value <= 0)) throw new RangeError(`chart "${spec.title}": a log y axis needs positive values`);
  const yTicks = logY ? logTicks(Math.min(...(ys.length ? ys : [1])), Math.max(...(ys.length ? ys : [10]))) : niceTicks(Math.min(0, ...ys), Math.max(0, ...(ys.length ? ys : [1])));
  const y = scale([yTicks[0]!, yTicks[yTicks.length - 1]!], [plot.bottom, plot.top], logY);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`);
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  parts.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(spec.title)}</text>`);
  if (spec.subtitle) parts.push(`<text x="${width / 2}" y="40" text-anchor="middle" fill="#555">${escapeXml(spec.subtitle)}</text>`);

  // y axis: grid lines and labels
  for (const tick of yTicks) {
    const py = round(y(tick));
    parts.push(`<line x1="${plot.left}" y1="${py}" x2="${plot.right}" y2="${py}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${plot.left - 6}" y="${py + 4}" text-anchor="end">${formatNumber(tick)}</text>`);
  }
  parts.push(`<text transform="translate(16 ${(plot.top + plot.bottom) / 2}) rotate(-90)" text-anchor="middle">${escapeXml(spec.yLabel)}${logY ? " (log scale)" : ""}</text>`);

  // x axis: positions of the x values
  let xOf: (value: number) => number;
  let xTicks: number[];
  if (kind === "bar") {
    const band = (plot.right - plot.left) / xs.length;
    xOf = (value) => plot.left + band * (xs.indexOf(value) + 0.5);
    xTicks = xs;
  } else if (logX) {
    const lo = 10 ** Math.floor(Math.log10(xs[0]!));
    const hi = 10 ** Math.ceil(Math.log10(xs[xs.length - 1]!));
    xOf = scale([lo, hi], [plot.left, plot.right], true);
    xTicks = [...new Set([...logTicks(lo, hi), ...xs])].sort((a, b) => a - b);
  } else {
    const ticks = niceTicks(Math.min(...xs), Math.max(...xs));
    xOf = scale([ticks[0]!, ticks[ticks.length - 1]!], [plot.left, plot.right]);
    xTicks = ticks;
  }
  for (const tick of xTicks) {
    const px = round(xOf(tick));
    parts.push(`<line x1="${px}" y1="${plot.bottom}" x2="${px}" y2="${plot.bottom + 5}" stroke="#333"/>`);
    parts.push(`<text x="${px}" y="${plot.bottom + 18}" text-anchor="middle">${formatNumber(tick)}</text>`);
  }
  parts.push(`<line x1="${plot.left}" y1="${plot.bottom}" x2="${plot.right}" y2="${plot.bottom}" stroke="#333"/>`);
  parts.push(`<line x1="${plot.left}" y1="${plot.top}" x2="${plot.left}" y2="${plot.bottom}" stroke="#333"/>`);
  parts.push(`<text x="${(plot.left + plot.right) / 2}" y="${plot.bottom + 38}" text-anchor="middle">${escapeXml(spec.xLabel)}${logX ? " (log scale)" : ""}</text>`);

  // data
  spec.series.forEach((series, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    if (kind === "bar") {
      const band = (plot.right - plot.left) / xs.length;
      const barWidth = (band * 0.7) / spec.series.length;
      for (const point of series.points) {
        if (point.y === null || !Number.isFinite(point.y)) continue;
        const left = xOf(point.x) - (band * 0.7) / 2 + barWidth * i;
        const top = y(logY ? point.y : Math.max(0, point.y));
        const bottom = logY ? plot.bottom : y(Math.min(0, point.y));
        parts.push(`<rect x="${round(left)}" y="${round(top)}" width="${round(barWidth * 0.92)}" height="${round(bottom - top)}" fill="${color}"><title>${escapeXml(`${series.name} at ${formatNumber(point.x)}: ${point.y}`)}</title></rect>`);
        parts.push(`<text x="${round(left + barWidth * 0.46)}" y="${round(top - 3)}" text-anchor="middle" font-size="10">${formatNumber(point.y)}</text>`);
      }
      return;
    }
    // Lines break where a point has no figure.
    let path = "";
    let pen = false;
    for (const point of [...series.points].sort((a, b) => a.x - b.x)) {
      if (point.y === null || !Number.isFinite(point.y)) {
        pen = false;
        continue;
      }
      path += `${pen ? "L" : "M"}${round(xOf(point.x))} ${round(y(point.y))} `;
      pen = true;
      parts.push(`<circle cx="${round(xOf(point.x))}" cy="${round(y(point.y))}" r="3.5" fill="${color}"><title>${escapeXml(`${series.name} at ${formatNumber(point.x)}: ${point.y}`)}</title></circle>`);
    }
    if (path) parts.push(`<path d="${path.trim()}" fill="none" stroke="${color}" stroke-width="2"${series.dashed ? ' stroke-dasharray="6 4"' : ""}/>`);
  });

  // legend, under the x axis label
  legendRows.forEach((row, r) => {
    let legendX = plot.left;
    const legendY = plot.bottom + 62 + LEGEND_ROW * r;
    for (const series of row) {
      const color = PALETTE[spec.series.indexOf(series) % PALETTE.length]!;
      if (kind === "bar") parts.push(`<rect x="${legendX}" y="${legendY - 9}" width="14" height="10" fill="${color}"/>`);
      else parts.push(`<line x1="${legendX}" y1="${legendY - 4}" x2="${legendX + 18}" y2="${legendY - 4}" stroke="${color}" stroke-width="2"${series.dashed ? ' stroke-dasharray="6 4"' : ""}/>`);
      parts.push(`<text x="${legendX + 22}" y="${legendY}">${escapeXml(series.name)}</text>`);
      legendX += legendWidth(series.name);
    }
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
