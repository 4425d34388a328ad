import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { Sample } from './soak.ts';

// The soak's samples as one PNG: a panel per measure over time, load and drain phases told
// apart by colour. vega-lite describes it, vega renders SVG headless, resvg rasterises it.

const MEASURES: Array<[keyof Sample, string]> = [
  ['calls', 'calls made (total)'],
  ['errors', 'errors (total)'],
  ['p99Ms', 'p99 call latency (ms)'],
  ['rssMiB', 'gateway RSS (MiB)'],
  ['fds', 'gateway open fds'],
  ['children', 'live child processes'],
  ['zombies', 'zombies'],
];

export async function soakPng(samples: readonly Sample[]): Promise<Buffer> {
  // A segment per stretch of one phase, so the two rests are not drawn as one line.
  let segment = 0;
  const values = samples.flatMap((s, i) => {
    if (i > 0 && samples[i - 1]!.phase !== s.phase) segment++;
    return MEASURES.filter(([key]) => s[key] !== null).map(([key, label]) => ({ t: s.t, phase: s.phase, segment, measure: label, value: s[key] }));
  });
  const spec: TopLevelSpec = {
    data: { values },
    facet: { row: { field: 'measure', type: 'nominal', sort: MEASURES.map(([, label]) => label), title: null, header: { labelAngle: 0, labelAlign: 'left', labelFontSize: 12 } } },
    spec: {
      width: 720,
      height: 90,
      mark: { type: 'line', point: { size: 12 } },
      encoding: {
        x: { field: 't', type: 'quantitative', title: 'seconds since the load started' },
        y: { field: 'value', type: 'quantitative', title: null, axis: { format: ',d', tickMinStep: 1 } },
        color: { field: 'phase', type: 'nominal', title: 'phase' },
        detail: { field: 'segment', type: 'nominal' },
      },
    },
    resolve: { scale: { y: 'independent' } },
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  return new Resvg(svg, { background: 'white', fitTo: { mode: 'width', value: 1100 } }).render().asPng();
}
