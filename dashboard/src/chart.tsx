// One uPlot chart as a preact component: lines against step, with horizontal limits (a drift budget's) and vertical
// marks (the budget stop, the kept step) drawn over the plot. The parent mutates its columns in place and bumps
// `version`; the chart then redraws once.
import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

export interface Line {
  label: string;
  color: string;
  /** Sparse series (probes, validation) show their points. */
  points?: boolean;
  dash?: number[];
}

export interface Limit {
  value: number;
  label: string;
}

export interface Mark {
  x: number;
  label: string;
  color: string;
}

export interface ChartProps {
  id: string;
  title: string;
  data: uPlot.AlignedData;
  lines: Line[];
  version: number;
  limits?: Limit[];
  marks?: Mark[];
  /** Called after each draw: the moment the points are on the canvas. */
  onDraw?: () => void;
}

const HEIGHT = 190;
const LIMIT_COLOR = '#c62828';

export function Chart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  // The draw hook and the y range read the latest props, not those of the first render.
  const latest = useRef(props);
  latest.current = props;

  useEffect(() => {
    const el = box.current!;
    const u = new uPlot(options(el.clientWidth, latest), props.data, el);
    plot.current = u;
    Object.assign(el, { uplot: u }); // for tests and measurements: el.uplot.data
    const resize = new ResizeObserver(() => u.setSize({ width: el.clientWidth, height: HEIGHT }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
    // The series set is fixed per chart; the parent keys the chart by it.
  }, []);

  // Layout effect: the points reach the canvas in this task, not after the next paint.
  useLayoutEffect(() => {
    plot.current?.setData(props.data);
  }, [props.version]);

  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div class="plot" data-chart={props.id} ref={box} />
    </figure>
  );
}

function options(width: number, latest: { current: ChartProps }): uPlot.Options {
  const { lines } = latest.current;
  return {
    width: Math.max(200, width),
    height: HEIGHT,
    legend: { show: true, live: true },
    cursor: { drag: { x: true, y: false } },
    scales: {
      x: { time: false },
      y: {
        // Keep the limits in view even before a value comes near them.
        range: (_u, min, max) => {
          const ls = (latest.current.limits ?? []).map((l) => l.value);
          let lo = Math.min(min ?? 0, ...ls);
          let hi = Math.max(max ?? 1, ...ls);
          if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
          if (lo === hi) [lo, hi] = [lo - Math.abs(lo || 1) * 0.1, hi + Math.abs(hi || 1) * 0.1];
          const pad = (hi - lo) * 0.05;
          return [lo - pad, hi + pad];
        },
      },
    },
    axes: [
      { label: 'step', size: 36, labelSize: 14, incrs: STEP_INCREMENTS },
      { size: 64, values: (_u, splits) => splits.map(tick) },
    ],
    series: [
      { label: 'step' },
      ...lines.map((l) => ({
        label: l.label,
        stroke: l.color,
        width: 1.5,
        dash: l.dash,
        spanGaps: true,
        points: { show: l.points ? true : undefined, size: 5, fill: l.color },
      })),
    ],
    hooks: {
      draw: [(u) => drawOverlays(u, latest.current)],
    },
  };
}

function drawOverlays(u: uPlot, props: ChartProps): void {
  const { ctx, bbox } = u;
  ctx.save();
  const px = devicePixelRatio;
  ctx.lineWidth = px;
  ctx.font = `${11 * px}px system-ui, sans-serif`;
  for (const l of props.limits ?? []) {
    const y = u.valToPos(l.value, 'y', true);
    ctx.strokeStyle = ctx.fillStyle = LIMIT_COLOR;
    ctx.textAlign = 'right';
    ctx.setLineDash([6 * px, 4 * px]);
    ctx.beginPath();
    ctx.moveTo(bbox.left, y);
    ctx.lineTo(bbox.left + bbox.width, y);
    ctx.stroke();
    // Above the line, unless that is where the marks' labels are.
    ctx.fillText(l.label, bbox.left + bbox.width - 4 * px, y < bbox.top + 36 * px ? y + 13 * px : y - 4 * px);
  }
  for (const [i, m] of (props.marks ?? []).entries()) {
    const x = u.valToPos(m.x, 'x', true);
    if (x < bbox.left || x > bbox.left + bbox.width) continue;
    ctx.strokeStyle = ctx.fillStyle = m.color;
    ctx.setLineDash([3 * px, 3 * px]);
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
    // Labels on the roomier side of their line, one row each, so two close marks stay readable.
    const right = x < bbox.left + bbox.width / 2;
    ctx.textAlign = right ? 'left' : 'right';
    ctx.fillText(m.label, x + (right ? 3 : -3) * px, bbox.top + (12 + 13 * i) * px);
  }
  ctx.restore();
  props.onDraw?.();
}

/** Steps are whole numbers: no 2.5 between 2 and 3. */
const STEP_INCREMENTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000];

/** A y-axis tick: short, and readable for learning rates (1e-5) as for token counts. */
function tick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a < 1e-3 || a >= 1e6 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

/** Distinct line colours, in the order jobs or series are added. */
export const PALETTE = ['#1565c0', '#ef6c00', '#2e7d32', '#6a1b9a', '#00838f', '#ad1457', '#5d4037', '#546e7a'];
