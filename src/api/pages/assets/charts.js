// The operator pages' charts, drawn with uPlot from each page's JSON data block (<script type="application/json">).
// Plain browser JavaScript, served as is: the pages load nothing from outside their origin and run no inline script.
(() => {
  const charts = {};
  const width = (el) => Math.max(Math.min(el.clientWidth || 800, 1100), 320);

  const builders = {
    // Training loss per logged step, held-out loss per evaluation, on one step axis.
    loss(data) {
      const steps = [...new Set([...data.train, ...data.validation].map((p) => p[0]))].sort((a, b) => a - b);
      const train = new Map(data.train);
      const validation = new Map(data.validation);
      return {
        options: {
          scales: { x: { time: false } },
          axes: [{ label: 'step' }, { label: 'loss' }],
          series: [
            { label: 'step' },
            { label: 'training loss', stroke: '#2563eb', width: 1.5, spanGaps: true },
            { label: 'held-out loss', stroke: '#dc2626', width: 2, spanGaps: true, points: { show: true, size: 7 } },
          ],
        },
        data: [steps, steps.map((s) => train.get(s) ?? null), steps.map((s) => validation.get(s) ?? null)],
      };
    },
    // The share of calls our versions answered, per day.
    share(data) {
      return {
        options: {
          scales: { y: { range: [0, 1] } },
          axes: [
            {},
            { label: 'answered locally', values: (_u, ticks) => ticks.map((t) => `${Math.round(t * 100)} %`) },
          ],
          series: [
            {},
            {
              label: 'answered locally',
              stroke: '#059669',
              width: 2,
              points: { show: true },
              value: (_u, v) => (v == null ? '–' : `${(v * 100).toFixed(1)} %`),
            },
          ],
        },
        data: [data.days.map((d) => d[0]), data.days.map((d) => d[1])],
      };
    },
  };

  for (const el of document.querySelectorAll('[data-chart]')) {
    const source = document.getElementById(el.dataset.chart);
    if (!source) continue;
    const data = JSON.parse(source.textContent);
    const build = builders[data.kind];
    if (!build) continue;
    const { options, data: series } = build(data);
    charts[el.id] = new uPlot({ width: width(el), height: 300, ...options }, series, el);
  }
  // For the browser test and the curious: the charts and what they were drawn from.
  window.tuneloopCharts = charts;
  addEventListener('resize', () => {
    for (const [id, u] of Object.entries(charts)) u.setSize({ width: width(document.getElementById(id)), height: 300 });
  });
})();
