// MNIST-FID against network evaluations, from the CSV rows `cm eval --csv` appends
// (label, sampler, evaluations, fid, class_entropy, count, seconds): an SVG line plot with one
// line per label, or with --table a markdown table of every row. Used by
// scripts/compare-distillation.
//
//   node scripts/plot-fid.mjs results.csv out.svg
//   node scripts/plot-fid.mjs results.csv --table
import { readFileSync, writeFileSync } from "node:fs";

const [csvPath, target] = process.argv.slice(2);
const rows = readFileSync(csvPath, "utf8")
  .trim()
  .split("\n")
  .slice(1)
  .map((line) => {
    const [label, sampler, evaluations, fid, entropy, count, seconds] = line.split(",");
    // `cm eval --csv` writes the commas of labels and sampler names as ';'.
    return { label: label.replaceAll(";", ","), sampler: sampler.replaceAll(";", ","), evaluations: +evaluations, fid: +fid, entropy: +entropy, count: +count, seconds: +seconds };
  });

if (target === "--table") {
  console.log("| model (training budget) | sampler | network evaluations | MNIST-FID | class entropy | samples | seconds (2 CPU cores) |");
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.label} | ${r.sampler} | ${r.evaluations} | ${r.fid.toFixed(1)} | ${r.entropy.toFixed(2)} | ${r.count} | ${r.seconds.toFixed(0)} |`);
  }
  process.exit(0);
}

// Only the main comparison (the small network); the tiny ablations have a table of their own.
const series = new Map();
for (const r of rows.filter((r) => !r.label.startsWith("tiny"))) {
  if (!series.has(r.label)) series.set(r.label, []);
  series.get(r.label).push(r);
}
const [width, height] = [800, 440];
const pad = { left: 56, right: 300, top: 20, bottom: 48 };
const maxEval = Math.max(...rows.map((r) => r.evaluations), 2);
const fids = [...series.values()].flat().map((r) => r.fid);
const [lo, hi] = [Math.log10(Math.min(...fids) * 0.8), Math.log10(Math.max(...fids) * 1.25)];
const x = (e) => pad.left + (Math.log2(e) / Math.log2(maxEval)) * (width - pad.left - pad.right);
const y = (f) => pad.top + ((hi - Math.log10(f)) / (hi - lo)) * (height - pad.top - pad.bottom);
const colors = ["#2563eb", "#60a5fa", "#dc2626", "#f97316", "#16a34a", "#a3a3a3"];
const parts = [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
  `<rect width="${width}" height="${height}" fill="white"/>`,
];
for (let e = 1; e <= maxEval; e *= 2) {
  parts.push(`<line x1="${x(e)}" x2="${x(e)}" y1="${pad.top}" y2="${height - pad.bottom}" stroke="#e5e5e5"/>`);
  parts.push(`<text x="${x(e)}" y="${height - pad.bottom + 16}" text-anchor="middle">${e}</text>`);
}
for (const f of [2, 3, 5, 10, 20, 30, 50, 100, 200, 300]) {
  if (Math.log10(f) < lo || Math.log10(f) > hi) continue;
  parts.push(`<line x1="${pad.left}" x2="${width - pad.right}" y1="${y(f)}" y2="${y(f)}" stroke="#e5e5e5"/>`);
  parts.push(`<text x="${pad.left - 6}" y="${y(f) + 4}" text-anchor="end">${f}</text>`);
}
parts.push(`<text x="${(pad.left + width - pad.right) / 2}" y="${height - 10}" text-anchor="middle">network evaluations per sample (log scale)</text>`);
parts.push(`<text transform="translate(14 ${(pad.top + height - pad.bottom) / 2}) rotate(-90)" text-anchor="middle">MNIST-FID (log scale, lower is better)</text>`);
[...series.entries()].forEach(([label, points], i) => {
  const color = colors[i % colors.length];
  points.sort((a, b) => a.evaluations - b.evaluations);
  const path = points.map((p, j) => `${j ? "L" : "M"}${x(p.evaluations).toFixed(1)},${y(p.fid).toFixed(1)}`).join(" ");
  parts.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>`);
  for (const p of points) parts.push(`<circle cx="${x(p.evaluations)}" cy="${y(p.fid)}" r="3.5" fill="${color}"/>`);
  const ly = pad.top + 10 + i * 20;
  parts.push(`<line x1="${width - pad.right + 14}" x2="${width - pad.right + 34}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`);
  parts.push(`<text x="${width - pad.right + 40}" y="${ly + 4}">${label.replaceAll("&", "&amp;").replaceAll("<", "&lt;")}</text>`);
});
parts.push("</svg>");
writeFileSync(target, parts.join("\n") + "\n");
console.error(`wrote ${target}`);
