import assert from "node:assert/strict";
import { test } from "node:test";
import { escapeXml, formatNumber, logTicks, niceTicks, renderChart, scale, type ChartSpec } from "./svg-chart.js";

test("niceTicks covers the range with steps of 1, 2 or 5 × 10^k", () => {
  assert.deepEqual(niceTicks(0, 10), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(0, 3700), [0, 1000, 2000, 3000, 4000]);
  const ticks = niceTicks(0, 0.37);
  assert.equal(ticks[0], 0);
  assert.ok(ticks[ticks.length - 1]! >= 0.37);
  // a degenerate range still gets an axis
  assert.ok(niceTicks(5, 5).length >= 2);
  assert.throws(() => niceTicks(0, Number.NaN), RangeError);
});

test("logTicks gives the powers of ten around the range and refuses non-positive bounds", () => {
  assert.deepEqual(logTicks(1000, 1_000_000), [1e3, 1e4, 1e5, 1e6]);
  assert.deepEqual(logTicks(1500, 50_000), [1e3, 1e4, 1e5]);
  assert.throws(() => logTicks(0, 10), RangeError);
});

test("scale maps linearly or by logarithm", () => {
  const linear = scale([0, 100], [0, 200]);
  assert.equal(linear(50), 100);
  const log = scale([1e3, 1e6], [0, 300], true);
  assert.equal(Math.round(log(1e3)), 0);
  assert.equal(Math.round(log(1e4)), 100);
  assert.equal(Math.round(log(1e6)), 300);
  // y axes run downwards on screen
  const y = scale([0, 10], [400, 0]);
  assert.equal(y(10), 0);
});

test("formatNumber shortens sizes", () => {
  assert.equal(formatNumber(1000), "1k");
  assert.equal(formatNumber(50_000), "50k");
  assert.equal(formatNumber(1_000_000), "1M");
  assert.equal(formatNumber(0.25), "0.25");
  assert.equal(formatNumber(1234), "1.23k");
});

test("escapeXml escapes markup in labels", () => {
  assert.equal(escapeXml(`a<b & "c"`), "a&lt;b &amp; &quot;c&quot;");
});

const spec: ChartSpec = {
  title: "Reads <by keys>",
  subtitle: "npm run bench:curves",
  xLabel: "keys",
  yLabel: "req/s",
  xScale: "log",
  series: [
    { name: "umw", points: [{ x: 1000, y: 3000 }, { x: 100_000, y: 2500 }, { x: 1_000_000, y: 2000 }] },
    { name: "peer", dashed: true, points: [{ x: 1000, y: 5000 }, { x: 100_000, y: null }, { x: 1_000_000, y: 4000 }] },
  ],
};

test("a line chart has a point per figure, a line per run of figures, the legend and escaped labels", () => {
  const svg = renderChart(spec);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.equal((svg.match(/<circle /g) ?? []).length, 5, "one marker per non-null point");
  // the peer's line breaks at its missing point: two sub-paths (two M commands)
  const peerPath = svg.match(/<path d="([^"]+)"[^>]*stroke-dasharray/)![1]!;
  assert.equal((peerPath.match(/M/g) ?? []).length, 2);
  assert.match(svg, /Reads &lt;by keys&gt;/);
  assert.doesNotMatch(svg, /<by keys>/);
  assert.match(svg, />umw</);
  assert.match(svg, />peer</);
  assert.match(svg, /keys \(log scale\)/);
  for (const label of ["1k", "100k", "1M"]) assert.match(svg, new RegExp(`>${label}<`));
});

test("on a log axis, x positions follow the logarithm: 100k sits two thirds of the way from 1k to 1M", () => {
  const svg = renderChart(spec);
  const xs = [...svg.matchAll(/<circle cx="([\d.]+)"/g)].slice(0, 3).map((m) => Number(m[1]));
  assert.ok(Math.abs((xs[1]! - xs[0]!) / (xs[2]! - xs[0]!) - 2 / 3) < 0.01, `positions ${xs.join(", ")}`);
});

test("a bar chart draws one bar per figure, as tall as its value", () => {
  const svg = renderChart({
    title: "writes",
    xLabel: "processors",
    yLabel: "ms",
    kind: "bar",
    series: [
      { name: "p50", points: [{ x: 1, y: 10 }, { x: 2, y: 20 }, { x: 4, y: 40 }] },
      { name: "p99", points: [{ x: 1, y: 40 }, { x: 2, y: null }, { x: 4, y: 80 }] },
    ],
  });
  const bars = [...svg.matchAll(/<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="#\w+"><title>/g)].map((m) => Number(m[2]));
  assert.equal(bars.length, 5);
  // heights proportional to the values (10, 20, 40 of the first series)
  assert.ok(Math.abs(bars[1]! / bars[0]! - 2) < 0.05);
  assert.ok(Math.abs(bars[2]! / bars[0]! - 4) < 0.05);
});

test("a chart without points, or a log axis with x ≤ 0, is refused", () => {
  assert.throws(() => renderChart({ ...spec, series: [] }), RangeError);
  assert.throws(() => renderChart({ ...spec, series: [{ name: "bad", points: [{ x: 0, y: 1 }] }] }), RangeError);
});

test("a log y axis places values by their logarithm and refuses values ≤ 0", () => {
  const svg = renderChart({ ...spec, yScale: "log", series: [{ name: "a", points: [{ x: 1000, y: 100 }, { x: 10_000, y: 1000 }, { x: 100_000, y: 10_000 }] }] });
  const ys = [...svg.matchAll(/<circle cx="[\d.]+" cy="([\d.]+)"/g)].map((m) => Number(m[1]));
  assert.ok(Math.abs(ys[0]! - ys[1]! - (ys[1]! - ys[2]!)) < 0.5, `equal steps for equal factors: ${ys.join(", ")}`);
  assert.match(svg, /\(log scale\)<\/text>/);
  assert.throws(() => renderChart({ ...spec, yScale: "log", series: [{ name: "a", points: [{ x: 1000, y: 0 }] }] }), RangeError);
});

test("a legend too wide for one row wraps, and the plot gives up the room", () => {
  const long = "a series name long enough to fill most of a row";
  const one = renderChart({ ...spec, series: [{ name: long, points: [{ x: 1000, y: 1 }] }] });
  const three = renderChart({ ...spec, series: [1, 2, 3].map((i) => ({ name: `${long} ${i}`, points: [{ x: 1000, y: i }] })) });
  const legendYs = [...three.matchAll(/<text x="[\d.]+" y="([\d.]+)">a series name/g)].map((m) => Number(m[1]));
  assert.equal(new Set(legendYs).size, 3, `one row each: ${legendYs.join(", ")}`);
  const axisY = (svg: string) => Number(/<line x1="76" y1="([\d.]+)" x2="696" y2="\1" stroke="#333"\/>/.exec(svg)![1]);
  assert.ok(axisY(three) < axisY(one), "the x axis moves up to make room");
});
