// ECharts, with only the parts the console draws (line/area and Sankey, canvas renderer), so
// the bundle stays small and the first chart comes up fast.

import * as echarts from "echarts/core";
import { LineChart, SankeyChart } from "echarts/charts";
import { BrushComponent, GridComponent, LegendComponent, TooltipComponent, ToolboxComponent } from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";

echarts.use([LineChart, SankeyChart, GridComponent, TooltipComponent, LegendComponent, BrushComponent, ToolboxComponent, CanvasRenderer]);

export type Chart = echarts.ECharts;

/** A chart in `el` (any previous one there is disposed), resized with the window. */
export function chartIn(el: HTMLElement): Chart {
  echarts.getInstanceByDom(el)?.dispose();
  const c = echarts.init(el, undefined, { renderer: "canvas" });
  // Tests and the page-load benchmark wait for this mark: the chart is on screen.
  // What is drawn is read back from ECharts' own model, not from the API's answer.
  c.on("finished", () => {
    const series = ((c.getOption() as { series?: { type?: string; data?: unknown[] }[] }).series ?? []);
    el.dataset.drawnSeries = String(series.filter((s) => s.type === "line").length);
    el.dataset.drawnNodes = String(series.filter((s) => s.type === "sankey").reduce((a, s) => a + (s.data?.length ?? 0), 0));
    el.dataset.drawn = String(Date.now());
    // Time from navigation start to the first drawn chart (benches/console_pageload.sh).
    document.documentElement.dataset.firstChartMs ??= performance.now().toFixed(0);
  });
  return c;
}

window.addEventListener("resize", () => {
  document.querySelectorAll<HTMLElement>(".chart").forEach((el) => echarts.getInstanceByDom(el)?.resize());
});

/** A palette readable on the dark background, with "Other" always grey. */
export const PALETTE = [
  "#5ab1ef", "#f5994e", "#8ad07a", "#e06c75", "#c792ea", "#ffd866", "#56d4c9", "#ff9ac1",
  "#a0a8ff", "#d4a373", "#7bd389", "#f78c6c",
];
export const OTHER_COLOR = "#6b7280";
