import uPlot from 'uplot';
import type { History } from '../../../protocol/hub-api.js';
import { h } from './dom.js';

/**
 * The device page's charts, drawn by uPlot from the hub's history (raw samples or rollups): a canvas each, cheap
 * for thousands of points. Series colours are fixed so that a test (and a person) can tell the line from the grid.
 */
export const SERIES_COLOURS = { primary: 'rgb(37, 99, 235)', secondary: 'rgb(234, 88, 12)' } as const;

interface ChartSpec {
  title: string;
  unit: string;
  /** `rollupOnly`: a figure only buckets have (a peak beside the average); a raw sample is both. */
  series: { label: string; value: (p: History['points'][number]) => number | null; colour: string; rollupOnly?: boolean }[];
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const CHARTS: ChartSpec[] = [
  {
    title: 'CPU',
    unit: '%',
    series: [
      { label: 'average', value: (p) => p.cpuPercentAvg, colour: SERIES_COLOURS.primary },
      { label: 'peak', value: (p) => p.cpuPercentMax, colour: SERIES_COLOURS.secondary, rollupOnly: true },
    ],
  },
  { title: 'Memory available', unit: 'MiB', series: [{ label: 'lowest', value: (p) => scaled(p.memoryAvailableMin, MiB), colour: SERIES_COLOURS.primary }] },
  { title: 'Temperature', unit: '°C', series: [{ label: 'highest', value: (p) => p.temperatureCMax, colour: SERIES_COLOURS.primary }] },
  { title: 'Disk free', unit: 'GiB', series: [{ label: 'lowest', value: (p) => scaled(p.diskFreeMin, GiB), colour: SERIES_COLOURS.primary }] },
  {
    title: 'Network',
    unit: 'KiB/s',
    series: [
      { label: 'received', value: (p) => scaled(p.networkRxRateAvg, KiB), colour: SERIES_COLOURS.primary },
      { label: 'sent', value: (p) => scaled(p.networkTxRateAvg, KiB), colour: SERIES_COLOURS.secondary },
    ],
  },
];

function scaled(value: number | null, unit: number): number | null {
  return value === null ? null : Math.round((value / unit) * 10) / 10;
}

/** Draws every chart into `container`; returns what destroys them (uPlot holds listeners on the window). */
export function drawCharts(container: HTMLElement, history: History): () => void {
  const xs = history.points.map((p) => Date.parse(p.at) / 1000);
  const dark = matchMedia('(prefers-color-scheme: dark)').matches;
  const axisColour = dark ? '#cbd5e1' : '#334155';
  const gridColour = dark ? 'rgba(148, 163, 184, 0.2)' : 'rgba(15, 23, 42, 0.1)';
  const plots = CHARTS.map((chart) => {
    const spec = { ...chart, series: chart.series.filter((s) => !(s.rollupOnly && history.step === 'raw')) };
    const figure = h('figure', { class: 'chart', 'data-chart': spec.title, 'data-points': String(xs.length) }, h('figcaption', {}, `${spec.title} (${spec.unit})`));
    container.appendChild(figure);
    // The figure's own width (the grid gives one or two columns), less its padding.
    const width = Math.max(240, (figure.clientWidth || 600) - 16);
    const data: uPlot.AlignedData = [xs, ...spec.series.map((s) => history.points.map((p) => s.value(p)))];
    const axis = { stroke: axisColour, grid: { stroke: gridColour }, ticks: { stroke: gridColour } };
    return new uPlot(
      {
        width,
        height: 180,
        series: [{}, ...spec.series.map((s) => ({ label: s.label, stroke: s.colour, width: 2, spanGaps: false }))],
        axes: [axis, { ...axis, size: 56 }],
        legend: { show: true },
        cursor: { drag: { x: true, y: false } },
      },
      data,
      figure,
    );
  });
  return () => plots.forEach((plot) => plot.destroy());
}
