// Visualize: traffic over time by a dimension (stacked areas, lines, 100% stacked) or as a
// Sankey over two or three dimensions, with the statistics table under the graph. All state is
// in the URL: the controls only rewrite it, and the page renders from it.

import * as api from "../api";
import { chartIn, OTHER_COLOR, PALETTE } from "../chart";
import { errorBox, h, loading, replace } from "../dom";
import { filterInput } from "../filter";
import { bytes, duration, ms, si, utc } from "../format";
import { Ctx } from "../page";
import { and, common, Common, term } from "../query";
import { update } from "../state";
import { absolute, picker } from "../timerange";

type ChartKind = "stacked" | "lines" | "percent" | "sankey";
const CHARTS: [ChartKind, string][] = [
  ["stacked", "Stacked"],
  ["lines", "Lines"],
  ["percent", "100% stacked"],
  ["sankey", "Sankey"],
];
const UNITS: [api.Unit, string][] = [
  ["bytes", "bits/s"],
  ["packets", "packets/s"],
  ["flows", "flows/s"],
];
const REFRESH = [0, 30, 60, 300];
const DIRS: [api.Direction, string][] = [
  ["both", "both directions"],
  ["toserver", "initiator → responder"],
  ["toclient", "responder → initiator"],
];

interface View extends Common {
  chart: ChartKind;
  unit: api.Unit;
  dims: string[];
  limit: number;
  prev: boolean;
  dir: api.Direction;
  refresh: number;
}

function readView(p: URLSearchParams): View {
  const chart = (CHARTS.find(([k]) => k === p.get("chart"))?.[0] ?? "stacked") as ChartKind;
  const unit = (UNITS.find(([k]) => k === p.get("unit"))?.[0] ?? "bytes") as api.Unit;
  const dims = (p.get("dims") ?? "AppProto").split(",").filter(Boolean);
  const limit = Math.min(50, Math.max(1, Number(p.get("limit")) || 10));
  const refresh = Number(p.get("refresh")) || 0;
  return { ...common(p), chart, unit, dims, limit, prev: p.get("prev") === "1", dir: DIRS.find(([k]) => k === p.get("dir"))?.[0] ?? "both", refresh };
}

/** Rates are shown as the operator reads them: bytes/s as bits/s. */
function rateFactor(unit: api.Unit): number {
  return unit === "bytes" ? 8 : 1;
}

function rateText(v: number, unit: api.Unit): string {
  return si(v * rateFactor(unit)) + " " + UNITS.find(([k]) => k === unit)![1];
}

function totalText(v: number, unit: api.Unit): string {
  return unit === "bytes" ? bytes(v) : si(v) + " " + unit;
}

export function visualize(root: HTMLElement, ctx: Ctx): () => void {
  let view: View;
  try {
    view = readView(ctx.params);
  } catch (e) {
    replace(root, errorBox("Bad time range in the URL", e), h("a", { href: "/visualize" }, "Reset this page"));
    return () => {};
  }
  const chartEl = h("div", { class: "chart", id: "main-chart" });
  const info = h("div", { class: "query-info" });
  const table = h("div", { class: "stats-table" });
  const fieldsP = api.fields();
  const controls = h("div", { class: "controls" }, loading("Loading fields"));
  fieldsP.then(
    (fields) => replace(controls, controlBar(view, fields)),
    (e) => replace(controls, errorBox("Could not load the field list", e)),
  );
  const filter = filterInput(view.filter, (f) => update({ filter: f }), { start: view.start, end: view.end });
  replace(
    root,
    h("h1", {}, "Visualize"),
    picker(view.startSpec, view.endSpec, (s, e) => update({ start: s, end: e })),
    filter.el,
    controls,
    chartEl,
    info,
    table,
  );

  let ctl: AbortController | null = null;
  const run = async () => {
    ctl?.abort();
    ctl = new AbortController();
    const signal = ctl.signal;
    try {
      view = readView(ctx.params); // re-resolves relative ranges on refresh
      if (view.chart === "sankey") await drawSankey(view, chartEl, info, table, signal);
      else await drawSeries(view, chartEl, info, table, signal, await fieldsP.catch(() => []));
    } catch (e) {
      if ((e as Error).name === "AbortError") return;
      chartEl.dataset.drawn = "";
      replace(info, errorBox("The graph query failed", e));
    }
  };
  replace(info, loading("Querying"));
  run();
  const timer = view.refresh > 0 ? window.setInterval(run, view.refresh * 1000) : undefined;
  return () => {
    ctl?.abort();
    window.clearInterval(timer);
  };
}

function controlBar(view: View, fields: api.Field[]): HTMLElement {
  const dims = fields.filter((f) => f.dimension);
  const sankey = view.chart === "sankey";
  const dimSelect = (value: string, i: number, allowNone: boolean) =>
    h(
      "select",
      {
        name: "dim" + i,
        "aria-label": "dimension " + (i + 1),
        onchange: (e: Event) => {
          const next = [...view.dims];
          const v = (e.target as HTMLSelectElement).value;
          if (v) next[i] = v;
          else next.splice(i, 1);
          update({ dims: next.filter(Boolean).join(",") || "-" });
        },
      },
      h("option", { value: "" }, sankey && i < 2 ? "(choose)" : allowNone && i === 0 ? "(none: total)" : "(none)"),
      dims.map((f) => h("option", { value: f.name, selected: f.name === value, title: f.description }, f.name)),
    );
  const shown = view.dims.filter((d) => d !== "-");
  const pickers = sankey
    ? [0, 1, 2].map((i) => (i < Math.max(2, shown.length + 1) ? dimSelect(shown[i] ?? "", i, i >= 2) : null))
    : [dimSelect(shown[0] ?? "", 0, true)];
  return h(
    "div",
    { class: "control-bar" },
    h(
      "div",
      { class: "segmented", role: "group", "aria-label": "chart type" },
      CHARTS.map(([k, label]) =>
        h("button", { class: k === view.chart ? "active" : "", "data-chart": k, onclick: () => update(chartChange(view, k)) }, label),
      ),
    ),
    h(
      "label",
      {},
      "unit ",
      h(
        "select",
        { name: "unit", onchange: (e: Event) => update({ unit: (e.target as HTMLSelectElement).value }) },
        UNITS.map(([k, label]) => h("option", { value: k, selected: k === view.unit }, label)),
      ),
    ),
    h("label", { class: "dims" }, sankey ? "dimensions " : "by ", pickers),
    h(
      "label",
      {},
      "top ",
      h("input", {
        type: "number",
        name: "limit",
        min: 1,
        max: 50,
        value: view.limit,
        class: "num",
        onchange: (e: Event) => update({ limit: (e.target as HTMLInputElement).value }),
      }),
    ),
    !sankey &&
      h(
        "label",
        {},
        h("input", { type: "checkbox", name: "prev", checked: view.prev, onchange: (e: Event) => update({ prev: (e.target as HTMLInputElement).checked ? "1" : undefined }) }),
        " previous period",
      ),
    !sankey &&
      h(
        "select",
        { name: "dir", "aria-label": "direction", onchange: (e: Event) => update({ dir: (e.target as HTMLSelectElement).value === "both" ? undefined : (e.target as HTMLSelectElement).value }) },
        DIRS.map(([k, label]) => h("option", { value: k, selected: k === view.dir }, label)),
      ),
    h(
      "label",
      {},
      "auto-refresh ",
      h(
        "select",
        { name: "refresh", onchange: (e: Event) => update({ refresh: (e.target as HTMLSelectElement).value === "0" ? undefined : (e.target as HTMLSelectElement).value }) },
        REFRESH.map((s) => h("option", { value: s, selected: s === view.refresh }, s === 0 ? "off" : duration(s * 1000))),
      ),
    ),
  );
}

/** Switching to a Sankey with fewer than two dimensions adds a second one. */
function chartChange(view: View, k: ChartKind): Record<string, string> {
  const dims = view.dims.filter((d) => d && d !== "-");
  if (k !== "sankey" || dims.length >= 2) return { chart: k };
  const first = dims[0] ?? "AppProto";
  return { chart: k, dims: [first, first === "DstPort" ? "AppProto" : "DstPort"].join(",") };
}

async function drawSeries(
  view: View,
  chartEl: HTMLElement,
  info: HTMLElement,
  table: HTMLElement,
  signal: AbortSignal,
  fields: api.Field[],
): Promise<void> {
  const dimension = view.dims[0] && view.dims[0] !== "-" ? view.dims[0] : null;
  const points = Math.max(30, Math.min(400, Math.floor(chartEl.clientWidth / 4) || 200));
  const r = await api.timeseries(
    {
      start: view.start,
      end: view.end,
      filter: view.filter,
      unit: view.unit,
      dimension,
      limit: view.limit,
      points,
      previous_period: view.prev && view.chart !== "percent",
      direction: view.dir,
    },
    signal,
  );
  const f = rateFactor(view.unit);
  const xs = r.time.map((t) => t * 1000);
  const totals = xs.map((_, i) => r.series.reduce((a, s) => a + (s.values[i] ?? 0), 0));
  const percent = view.chart === "percent";
  const color = (name: string, i: number) => (name === "Other" ? OTHER_COLOR : PALETTE[i % PALETTE.length]);
  const series: object[] = r.series.map((s, i) => ({
    name: s.name,
    type: "line",
    showSymbol: false,
    stack: view.chart === "lines" ? undefined : "all",
    areaStyle: view.chart === "lines" ? undefined : { opacity: 0.85 },
    lineStyle: { width: view.chart === "lines" ? 2 : 0.5 },
    color: color(s.name, i),
    emphasis: { focus: "series" },
    data: s.values.map((v, j) => [xs[j], percent ? (totals[j] ? ((v ?? 0) / totals[j]) * 100 : 0) : (v ?? 0) * f]),
  }));
  if (r.previous) {
    series.push({
      name: r.previous.name,
      type: "line",
      showSymbol: false,
      color: "#e5e7eb",
      lineStyle: { type: "dashed", width: 1.5 },
      data: r.previous.values.map((v, j) => [xs[j], (v ?? 0) * f]),
    });
  }
  const unitLabel = percent ? "%" : UNITS.find(([k]) => k === view.unit)![1];
  const chart = chartIn(chartEl);
  chart.setOption({
    animation: false,
    backgroundColor: "transparent",
    textStyle: { color: "#d1d5db" },
    grid: { left: 70, right: 20, top: 40, bottom: 30 },
    legend: { type: "scroll", top: 0, textStyle: { color: "#d1d5db" } },
    tooltip: {
      trigger: "axis",
      valueFormatter: (v: number) => (percent ? v.toFixed(1) + " %" : si(v) + " " + unitLabel),
    },
    xAxis: { type: "time", min: view.start * 1000, max: view.end * 1000, axisLabel: { formatter: axisTime(view.end - view.start) } },
    yAxis: {
      type: "value",
      max: percent ? 100 : undefined,
      name: unitLabel,
      axisLabel: { formatter: (v: number) => si(v) },
      splitLine: { lineStyle: { color: "#2c333d" } },
    },
    toolbox: { show: false },
    brush: { xAxisIndex: 0, brushType: "lineX", brushMode: "single", throttleType: "debounce", brushStyle: { color: "rgba(90,177,239,0.2)" } },
    series,
  });
  // Drag to zoom: the brush is always armed; a drag sets an absolute range in the URL.
  chart.dispatchAction({ type: "takeGlobalCursor", key: "brush", brushOption: { brushType: "lineX", brushMode: "single" } });
  chart.on("brushEnd", (e: unknown) => {
    const area = (e as { areas?: { coordRange?: [number, number] }[] }).areas?.[0]?.coordRange;
    if (!area || area[1] - area[0] < 60_000) return;
    update({ start: absolute(area[0]), end: absolute(area[1]) });
  });
  chartEl.dataset.series = String(r.series.length);
  replace(
    info,
    `${r.series.length} series · step ${duration(r.step * 1000)} · table ${r.table} · ${si(r.rows_read)} rows read in ${ms(r.elapsed_ms)} · ${utc(r.time[0] * 1000 || view.start * 1000)} → ${utc(view.end * 1000)} UTC · drag on the graph to zoom`,
  );
  const kind = fields.find((x) => x.name === dimension)?.kind;
  const rows = [...r.series.map((s, i) => ({ s, i })), ...(r.previous ? [{ s: r.previous, i: -1 }] : [])];
  replace(
    table,
    h(
      "table",
      { class: "data" },
      h("thead", {}, h("tr", {}, ["Series", "Min", "Max", "Average", "95th pct", "Total"].map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        rows.map(({ s, i }) =>
          h(
            "tr",
            {},
            h(
              "td",
              {},
              h("span", { class: "swatch", "data-color": i < 0 ? "#e5e7eb" : color(s.name, i) }),
              dimension && i >= 0 && s.name !== "Other"
                ? h("a", { href: "#", title: "filter on this value", onclick: (e: Event) => (e.preventDefault(), update({ filter: and(view.filter, term(dimension, s.name, kind)) })) }, s.name)
                : s.name,
            ),
            [s.stats.min, s.stats.max, s.stats.avg, s.stats.p95].map((v) => h("td", { class: "num" }, rateText(v, view.unit))),
            h("td", { class: "num" }, totalText(s.stats.total, view.unit)),
          ),
        ),
      ),
    ),
  );
  paintSwatches(table);
}

/** Swatch colours are set through the CSSOM (the CSP forbids inline style attributes in markup). */
function paintSwatches(root: HTMLElement): void {
  root.querySelectorAll<HTMLElement>(".swatch").forEach((el) => (el.style.background = el.dataset.color ?? ""));
}

function axisTime(rangeSeconds: number): (v: number) => string {
  return (v: number) => {
    const s = utc(v);
    return rangeSeconds > 2 * 86400 ? s.slice(5, 16) : s.slice(11, 16);
  };
}

async function drawSankey(view: View, chartEl: HTMLElement, info: HTMLElement, table: HTMLElement, signal: AbortSignal): Promise<void> {
  const dims = view.dims.filter((d) => d && d !== "-");
  if (dims.length < 2) {
    chartEl.dataset.drawn = "";
    echartsClear(chartEl);
    replace(info, errorBox("Sankey", "choose two or three dimensions above"));
    replace(table);
    return;
  }
  const r = await api.sankey(
    { start: view.start, end: view.end, filter: view.filter, unit: view.unit, dimensions: dims.slice(0, 3), limit: view.limit },
    signal,
  );
  // Node names repeat across dimensions; ECharts needs unique names, so each is prefixed by
  // its dimension and shown without it.
  const id = (n: { name: string; dimension: string }) => n.dimension + "\u0000" + n.name;
  const chart = chartIn(chartEl);
  chart.setOption({
    animation: false,
    textStyle: { color: "#d1d5db" },
    tooltip: { trigger: "item", formatter: (p: { data: { source?: string; target?: string; value?: number; name?: string } }) => {
      const d = p.data;
      const show = (s: string) => s.split("\u0000").reverse().join(" · ");
      return d.source ? `${show(d.source)} → ${show(d.target!)}: ${totalText(d.value ?? 0, view.unit)}` : show(d.name ?? "");
    } },
    series: [
      {
        type: "sankey",
        left: 10,
        right: 140,
        top: 20,
        bottom: 20,
        emphasis: { focus: "adjacency" },
        label: { color: "#e5e7eb", formatter: (p: { name: string }) => p.name.split("\u0000")[1] ?? p.name },
        lineStyle: { color: "gradient", opacity: 0.45 },
        data: r.nodes.map((n, i) => ({ name: id(n), itemStyle: { color: n.name === "Other" ? OTHER_COLOR : PALETTE[i % PALETTE.length] } })),
        links: r.links.map((l) => ({ source: id(r.nodes[l.source]), target: id(r.nodes[l.target]), value: l.value })),
      },
    ],
  });
  chartEl.dataset.nodes = String(r.nodes.length);
  chartEl.dataset.series = "";
  replace(info, `${r.nodes.length} nodes, ${r.links.length} links · table ${r.table} · ${si(r.rows_read)} rows read in ${ms(r.elapsed_ms)} · ${dims.join(" → ")}`);
  const name = (i: number) => `${r.nodes[i].name} (${r.nodes[i].dimension})`;
  replace(
    table,
    h(
      "table",
      { class: "data" },
      h("thead", {}, h("tr", {}, h("th", {}, "From"), h("th", {}, "To"), h("th", {}, "Total"))),
      h(
        "tbody",
        {},
        [...r.links]
          .sort((a, b) => b.value - a.value)
          .map((l) => h("tr", {}, h("td", {}, name(l.source)), h("td", {}, name(l.target)), h("td", { class: "num" }, totalText(l.value, view.unit)))),
      ),
    ),
  );
}

function echartsClear(el: HTMLElement): void {
  chartIn(el).clear();
}
