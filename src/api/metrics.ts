import type { NextFunction, Request, Response } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Db } from '../db/pool';
import { canaryShares, lastRunStageSeconds, newestTrainingSpeed, runCounts } from '../db/queries/metrics';
import type { ServedRecord } from './serving';

/**
 * Prometheus metrics (prom-client), served at `GET /metrics` to operators. What the API sees as it happens: request
 * latency by route and status; inference latency and count by model, alias, version and who answered (our model
 * or the hosted incumbent); fallbacks; shadow calls dropped. What the database knows, read at each scrape: runs by
 * model and outcome, the newest run's stage durations and training speed per model, the canary's share. One
 * registry per API (not prom-client's global one), so two APIs in one process do not share counts.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly http: Histogram<'method' | 'route' | 'status'>;
  private readonly inference: Histogram<'model' | 'alias' | 'version' | 'provider'>;
  private readonly calls: Counter<'model' | 'alias' | 'provider' | 'outcome'>;
  private readonly fallbacks: Counter<'model'>;
  private readonly shadowDropped: Counter<'model'>;

  constructor(db: Db) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'tuneloop_api_' });
    this.http = new Histogram({
      name: 'tuneloop_http_request_duration_seconds',
      help: 'API request latency, by method, route (as declared, no ids) and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.inference = new Histogram({
      name: 'tuneloop_inference_duration_seconds',
      help: 'Inference latency as the app saw it, by model, alias, version and who answered (local or incumbent)',
      labelNames: ['model', 'alias', 'version', 'provider'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60],
      registers,
    });
    this.calls = new Counter({
      name: 'tuneloop_inference_calls_total',
      help: 'Inference calls, by model, alias, who answered (local, incumbent, none) and outcome (ok, error)',
      labelNames: ['model', 'alias', 'provider', 'outcome'],
      registers,
    });
    this.fallbacks = new Counter({
      name: 'tuneloop_fallbacks_total',
      help: 'Calls our model failed that the hosted incumbent answered',
      labelNames: ['model'],
      registers,
    });
    this.shadowDropped = new Counter({
      name: 'tuneloop_shadow_dropped_total',
      help: 'Shadow calls dropped because the candidate had as many in flight as allowed',
      labelNames: ['model'],
      registers,
    });
    new Gauge({
      name: 'tuneloop_runs',
      help: 'Pipeline runs by model and status (outcome, or running)',
      labelNames: ['model', 'status'],
      registers,
      async collect() {
        const rows = await runCounts(db);
        this.reset();
        for (const r of rows) this.set({ model: r.model, status: r.status }, r.n);
      },
    });
    new Gauge({
      name: 'tuneloop_last_run_stage_seconds',
      help: "Each stage's duration in the model's newest run that ended",
      labelNames: ['model', 'stage'],
      registers,
      async collect() {
        const rows = await lastRunStageSeconds(db);
        this.reset();
        for (const r of rows) this.set({ model: r.model, stage: r.stage }, r.seconds);
      },
    });
    new Gauge({
      name: 'tuneloop_training_tokens_per_second',
      help: "Training speed of the model's newest trained version (tokens trained over the trainer's seconds)",
      labelNames: ['model'],
      registers,
      async collect() {
        const rows = await newestTrainingSpeed(db);
        this.reset();
        for (const r of rows) this.set({ model: r.model }, r.tokensPerS);
      },
    });
    new Gauge({
      name: 'tuneloop_canary_percent',
      help: "The share of a model's subjects its canary serves (0 without a canary)",
      labelNames: ['model'],
      registers,
      async collect() {
        const rows = await canaryShares(db);
        this.reset();
        for (const r of rows) this.set({ model: r.model }, r.percent);
      },
    });
  }

  /** Express middleware: times each request, labelled by the route it matched. */
  readonly middleware = (req: Request, res: Response, next: NextFunction) => {
    const end = this.http.startTimer();
    res.on('finish', () => {
      const route = req.route ? `${req.baseUrl}${String(req.route.path)}` : 'unmatched';
      end({ method: req.method, route, status: String(res.statusCode) });
    });
    next();
  };

  /** One served inference call (the recorder's record): who answered, and the version that did (not the one asked). */
  served(r: ServedRecord): void {
    const provider = r.call.answeredBy ?? 'none';
    const labels = { model: r.model, alias: r.call.alias };
    this.calls.inc({ ...labels, provider, outcome: r.call.answeredBy ? 'ok' : 'error' });
    if (r.call.answeredBy) {
      const version = r.call.answeredBy === 'incumbent' ? 'incumbent' : (r.answeredBy ?? 'unknown');
      this.inference.observe({ ...labels, version, provider }, r.latencyMs / 1000);
    }
    if (r.call.fellBack) this.fallbacks.inc({ model: r.model });
  }

  shadowDrop(model: string): void {
    this.shadowDropped.inc({ model });
  }
}
