import type { ChatMessage } from '../../domain/conversation';
import type { StageReport } from '../../workflows/messages';
import type { TrainLog } from '../../db/queries/train-log';
import type { aliasMoveView } from '../models.router';
import type { RunView } from '../runs.router';
import { badge, duration, html, jsonData, num, pct, when, type Html } from './html';

// The operator pages' bodies, rendered on the server from what the API's JSON views read. Loose shapes below are
// stage summaries as the workflow recorded them (older runs may lack newer fields): every field is optional.

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | null => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : null);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const n = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const s = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** Long answers cut for the table (the judge saw them whole). */
const clip = (t: string, max = 800) => (t.length > max ? `${t.slice(0, max)}…` : t);

const atPercent = (p: number | null) => (p === null ? '' : `at ${p} %`);

// ------------------------------------------------------------------------------------------------------ index

export interface IndexModel {
  id: string;
  app: string;
  baseModel: string;
  production: string | null;
  canary: { version: string; percent: number | null } | null;
  localShare: number | null;
  calls7d: number;
  lastRun: { id: string; status: string; startedAt: Date; endedAt: Date | null } | null;
  nextRun: { at: string | null; paused: boolean } | null | undefined;
  history: ReturnType<typeof aliasMoveView>[];
}

export function indexBody(models: IndexModel[]): Html {
  const rows = models.map(
    (m) =>
      html`<tr>
        <td>
          <a href="/ui/models/${m.id}">${m.id}</a>
          <div class="sub">${m.app} · ${m.baseModel}</div>
        </td>
        <td>${m.production ?? '–'}</td>
        <td>${m.canary ? html`${m.canary.version} <span class="sub">${atPercent(m.canary.percent)}</span>` : '–'}</td>
        <td>
          ${m.calls7d ? html`<meter min="0" max="1" value="${m.localShare ?? 0}"></meter> ${pct(m.localShare)}` : '–'}
          <div class="sub">${m.calls7d} calls</div>
        </td>
        <td>
          ${
            m.lastRun
              ? html`<a href="/ui/runs/${m.lastRun.id}">${badge(m.lastRun.status)}</a>
                  <div class="sub">${when(m.lastRun.startedAt)}</div>`
              : '–'
          }
        </td>
        <td>
          ${
            m.nextRun === undefined
              ? 'unknown (Temporal did not answer)'
              : m.nextRun === null
                ? 'no schedule'
                : m.nextRun.paused
                  ? badge('paused')
                  : when(m.nextRun.at)
          }
        </td>
      </tr>`,
  );
  const moves = models
    .flatMap((m) => m.history.map((h) => ({ ...h, model: m.id })))
    .sort((a, b) => b.at.getTime() - a.at.getTime())
    .slice(0, 20);
  return html`<h1>Models</h1>
    ${
      models.length === 0
        ? html`<p class="empty">No models yet: register one with <code>tuneloop model add</code>.</p>`
        : html`<table class="models">
            <thead>
              <tr>
                <th>Model</th>
                <th>Production</th>
                <th>Canary</th>
                <th>Answered locally (7 d)</th>
                <th>Last run</th>
                <th>Next run</th>
              </tr>
            </thead>
            <tbody>
              ${rows}
            </tbody>
          </table>`
    }
    <h2>Recent alias changes</h2>
    ${
      moves.length === 0
        ? html`<p class="empty">None yet.</p>`
        : html`<table>
            <thead>
              <tr>
                <th>When</th>
                <th>Model</th>
                <th>Alias</th>
                <th>From → to</th>
                <th>By</th>
              </tr>
            </thead>
            <tbody>
              ${moves.map(
                (h) =>
                  html`<tr>
                    <td>${when(h.at)}</td>
                    <td><a href="/ui/models/${h.model}">${h.model}</a></td>
                    <td>${h.alias} <span class="sub">${atPercent(h.percent)}</span></td>
                    <td>${h.from ?? '–'} → ${h.to ?? '–'}</td>
                    <td>${h.by}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }`;
}

// ------------------------------------------------------------------------------------------------------- run

export interface SamplePair {
  prompt: string;
  candidate: string;
  baseline: string;
}

export interface RunPage {
  run: RunView;
  live: boolean;
  log: TrainLog;
  samples: SamplePair[] | null;
}

export function runBody({ run, live, log, samples }: RunPage): Html {
  const stage = (name: string) => run.stages.find((st) => st.name === name);
  return html`<nav class="crumbs"><a href="/ui">Models</a> › <a href="/ui/models/${run.model}">${run.model}</a></nav>
    <h1>Run <code>${run.id}</code> ${badge(run.status)}</h1>
    <p class="facts">
      ${run.trigger} run${run.requestedBy ? html`, asked by ${run.requestedBy}` : ''}; started ${when(run.startedAt)}
      ${run.endedAt ? html`, ended ${when(run.endedAt)}` : live ? html`, ${badge('running')}` : ''}
    </p>
    ${run.error ? html`<p class="reason">${run.error}</p>` : ''}
    <section>
      <h2>Stages</h2>
      ${timeline(run.stages, run.endedAt ? new Date(run.endedAt) : new Date())}
    </section>
    ${trainingSection(stage('train'), log, run.training)} ${evaluationSection(stage('evaluate'), samples)}
    ${qualitySection(stage('score'))} ${shadowSection(stage('shadow'))} ${canarySection(stage('canary'))}`;
}

const msBetween = (a: string | null, b: string | null) =>
  a && b ? new Date(b).getTime() - new Date(a).getTime() : null;

/** The stages on a time axis: a bar per stage, each in its own small SVG (attributes, so the CSP needs no inline style). */
function timeline(stages: StageReport[], end: Date): Html {
  const ran = stages.filter((st) => st.startedAt);
  const t0 = Math.min(...ran.map((st) => new Date(st.startedAt!).getTime()));
  const t1 = Math.max(end.getTime(), ...ran.map((st) => new Date(st.endedAt ?? end).getTime()));
  const span = Math.max(t1 - t0, 1);
  const W = 600;
  const bar = (st: StageReport) => {
    if (!st.startedAt) return '';
    const from = new Date(st.startedAt).getTime();
    const x = ((from - t0) / span) * W;
    const w = Math.max(((new Date(st.endedAt ?? end).getTime() - from) / span) * W, 2);
    return html`<svg
      class="bar"
      viewBox="0 0 ${W} 12"
      preserveAspectRatio="none"
      role="img"
      aria-label="${st.name}: ${duration(msBetween(st.startedAt, st.endedAt))}"
    >
      <rect class="bar ${st.status}" x="${x.toFixed(1)}" y="0" width="${w.toFixed(1)}" height="12"></rect>
    </svg>`;
  };
  return html`<table class="timeline">
    <thead>
      <tr>
        <th>Stage</th>
        <th>Status</th>
        <th>Took</th>
        <th class="wide">
          ${ran.length ? html`${when(new Date(t0))} <span class="sub">+ ${duration(span)}</span>` : ''}
        </th>
      </tr>
    </thead>
    <tbody>
      ${stages.map(
        (st) =>
          html`<tr class="stage" data-stage="${st.name}">
            <td>${st.name}</td>
            <td>${badge(st.status)}</td>
            <td>${st.startedAt ? duration(msBetween(st.startedAt, st.endedAt ?? end.toISOString())) : '–'}</td>
            <td class="wide">${bar(st)} ${st.reason ? html`<span class="sub">${st.reason}</span>` : ''}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

function trainingSection(st: StageReport | undefined, log: TrainLog, live: RunView['training']): Html {
  if (!st || ((st.status === 'pending' || st.status === 'skipped') && log.train.length === 0)) return html``;
  const sum = obj(st.summary) ?? {};
  const liveRow = obj(live);
  return html`<section id="training">
    <h2>Training</h2>
    ${
      liveRow
        ? html`<p class="live">
            Step ${n(liveRow.step) ?? '–'} of ${n(liveRow.totalSteps) ?? '?'} · loss ${num(n(liveRow.loss))} ·
            ${num(n(liveRow.tokensPerS), 0)} tokens/s · ETA ${duration((n(liveRow.etaS) ?? NaN) * 1000)}
          </p>`
        : ''
    }
    <dl class="facts">
      <dt>Version</dt>
      <dd>${s(sum.version) ?? '–'}</dd>
      <dt>Steps</dt>
      <dd>${n(sum.steps) ?? '–'} <span class="sub">(${n(sum.stepsExecuted) ?? '–'} executed)</span></dd>
      <dt>Attempts</dt>
      <dd>
        ${n(sum.attempts) ?? '–'}${n(sum.resumedFrom) !== null ? html`, resumed at step ${sum.resumedFrom as number}` : ''}
      </dd>
      <dt>Final loss</dt>
      <dd>${num(n(sum.final_loss))}</dd>
      <dt>Held-out loss</dt>
      <dd>${num(n(sum.eval_loss))}</dd>
    </dl>
    ${
      log.train.length
        ? html`<figure>
              <div class="chart" data-chart="loss-data" id="loss-chart"></div>
              <figcaption>
                Training loss at each of ${log.train.length} logged steps; held-out loss at ${log.validation.length}
                evaluation${log.validation.length === 1 ? '' : 's'}.
              </figcaption>
            </figure>
            ${jsonData('loss-data', {
              kind: 'loss',
              train: log.train.map((p) => [p.step, p.loss]),
              validation: log.validation.map((p) => [p.step, p.loss]),
            })}`
        : html`<p class="empty">No training curve recorded.</p>`
    }
  </section>`;
}

function evaluationSection(st: StageReport | undefined, samples: SamplePair[] | null): Html {
  const sum = obj(st?.summary);
  if (!st || !sum) return html``;
  const cand = obj(sum.candidate) ?? {};
  const base = obj(sum.baseline) ?? {};
  const baseName = s(sum.baselineName) ?? 'baseline';
  const answers = obj(sum.answers);
  const ac = obj(answers?.candidate) ?? {};
  const ab = obj(answers?.baseline) ?? {};
  const judge = obj(sum.judge);
  const gate = obj(sum.gate);
  const row = (label: string, c: string, b: string) =>
    html`<tr>
      <th>${label}</th>
      <td>${c}</td>
      <td>${b}</td>
    </tr>`;
  const ci = arr(judge?.ci95).map(n);
  return html`<section id="evaluation">
    <h2>Evaluation: candidate vs ${baseName}</h2>
    <table class="eval">
      <thead>
        <tr>
          <th></th>
          <th>Candidate</th>
          <th>${baseName}</th>
        </tr>
      </thead>
      <tbody>
        ${row('Held-out loss', num(n(cand.loss)), num(n(base.loss)))}
        ${row('Perplexity', num(n(cand.perplexity), 2), num(n(base.perplexity), 2))}
        ${'jsonValidRate' in cand ? row('Valid JSON', pct(n(cand.jsonValidRate)), pct(n(base.jsonValidRate))) : ''}
        ${'styleRate' in cand ? row('In house style', pct(n(cand.styleRate)), pct(n(base.styleRate))) : ''}
        ${answers ? row('Mean answer length (chars)', num(n(ac.meanChars), 0), num(n(ab.meanChars), 0)) : ''}
        ${answers ? row('Refusals', pct(n(ac.refusalRate)), pct(n(ab.refusalRate))) : ''}
      </tbody>
    </table>
    ${
      judge
        ? html`<p class="judge">
            Judge ${s(judge.judge) ?? ''}: candidate win rate <strong>${pct(n(judge.winRate))}</strong>
            <span class="ci">95 % CI ${pct(ci[0] ?? null)} – ${pct(ci[1] ?? null)}</span> over ${n(judge.pairs) ?? 0}
            pairs (${n(judge.wins) ?? 0} wins, ${n(judge.ties) ?? 0} ties, ${n(judge.losses) ?? 0} losses;
            ${n(judge.disagreements) ?? 0} order disagreements)
          </p>`
        : ''
    }
    ${
      gate
        ? html`<ul class="gate">
            ${arr(gate.checks).map((c) => {
              const check = obj(c) ?? {};
              return html`<li>${badge(check.passed ? 'passed' : 'failed')} ${s(check.name)}: ${s(check.detail)}</li>`;
            })}
          </ul>`
        : ''
    }
    ${
      samples && samples.length
        ? html`<h3>Sample answers</h3>
            <table class="samples">
              <thead>
                <tr>
                  <th>Prompt</th>
                  <th>Candidate</th>
                  <th>${baseName}</th>
                </tr>
              </thead>
              <tbody>
                ${samples.map(
                  (p) =>
                    html`<tr>
                      <td>${clip(p.prompt)}</td>
                      <td>${clip(p.candidate)}</td>
                      <td>${clip(p.baseline)}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
        : ''
    }
  </section>`;
}

function conversation(messages: ChatMessage[]): Html {
  return html`<div class="conversation">
    ${messages.map((m) => html`<p class="msg ${m.role}"><b>${m.role}</b> ${String(m.content ?? '')}</p>`)}
  </div>`;
}

function qualitySection(st: StageReport | undefined): Html {
  const sum = obj(st?.summary);
  if (!st || !sum) return html``;
  const counts = obj(sum.counts) ?? {};
  const examples = obj(sum.examples);
  const list = (label: string, v: unknown) =>
    html`<h3>${label}</h3>
      ${arr(v).map((e) => {
        const ex = obj(e) ?? {};
        const messages = arr(ex.messages) as ChatMessage[];
        return html`<div class="example">
          <span class="sub">score ${num(n(ex.score), 2)} by ${s(ex.by)}</span>
          ${ex.messages ? conversation(messages) : html`<p class="empty">${s(ex.unavailable) ?? 'unavailable'}</p>`}
        </div>`;
      })}`;
  return html`<section id="quality">
    <h2>Data quality</h2>
    <p>${s(sum.why) ?? ''}</p>
    <table>
      <tbody>
        ${Object.entries(counts).map(
          ([k, v]) =>
            html`<tr>
              <th>${k}</th>
              <td>${String(v)}</td>
            </tr>`,
        )}
      </tbody>
    </table>
    ${examples ? html`${list('Best rows', examples.best)} ${list('Worst rows', examples.worst)}` : ''}
  </section>`;
}

function shadowSection(st: StageReport | undefined): Html {
  const sum = obj(st?.summary);
  if (!st || !sum) return html``;
  const checks = arr(sum.checks).length ? arr(sum.checks) : sum.verdict ? [sum.verdict] : [];
  return html`<section id="shadow">
    <h2>Shadow ${badge(s(sum.outcome))}</h2>
    ${arr(sum.reasons).map((r) => html`<p class="${sum.outcome === 'rolled_back' ? 'reason' : 'note'}">${String(r)}</p>`)}
    <table>
      <thead>
        <tr>
          <th>Check</th>
          <th>Verdict</th>
          <th>Pairs</th>
          <th>Dropped</th>
          <th>Error rate</th>
          <th>Latency ratio</th>
          <th>Win or tie (95 % CI)</th>
        </tr>
      </thead>
      <tbody>
        ${checks.map((c, i) => {
          const v = obj(c) ?? {};
          const w = obj(v.winOrTie);
          const ci = arr(w?.ci95).map(n);
          return html`<tr>
            <td>${i + 1}</td>
            <td>${badge(s(v.verdict))}</td>
            <td>${n(v.pairs) ?? '–'}</td>
            <td>${n(v.dropped) ?? '–'}</td>
            <td>${pct(n(v.errorRate))}</td>
            <td>${num(n(v.latencyRatio), 2)}</td>
            <td>
              ${w ? html`${pct(n(w.rate))} <span class="ci">${pct(ci[0] ?? null)} – ${pct(ci[1] ?? null)}</span>` : '–'}
            </td>
          </tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}

function canarySection(st: StageReport | undefined): Html {
  const sum = obj(st?.summary);
  if (!st || !sum) return html``;
  const side = (v: unknown) => {
    const a = obj(v) ?? {};
    const calls = n(a.calls) ?? 0;
    return html`${calls} calls, ${pct(calls ? (n(a.errors) ?? 0) / calls : null)} errors, p95
    ${n(a.p95LatencyMs) !== null ? `${Math.round(n(a.p95LatencyMs)!)} ms` : '–'},
    ${n(a.thumbsDown) ?? 0}/${n(a.feedback) ?? 0} thumbs down`;
  };
  return html`<section id="canary">
    <h2>Canary ${badge(s(sum.outcome))}</h2>
    ${arr(sum.reasons).map((r) => html`<p class="${sum.outcome === 'rolled_back' ? 'reason' : 'note'}">${String(r)}</p>`)}
    <p>
      Steps passed:
      ${
        arr(sum.steps).length
          ? arr(sum.steps)
              .map((p) => `${String(p)} %`)
              .join(', ')
          : 'none'
      }
    </p>
    ${
      arr(sum.checks).length
        ? html`<table>
            <thead>
              <tr>
                <th>Step</th>
                <th>Verdict</th>
                <th>Canary</th>
                <th>Production</th>
              </tr>
            </thead>
            <tbody>
              ${arr(sum.checks).map((c) => {
                const v = obj(c) ?? {};
                return html`<tr>
                  <td>
                    ${n(v.percent)} %${n(v.extension) ? html` <span class="sub">+${v.extension as number}</span>` : ''}
                  </td>
                  <td>
                    ${badge(s(v.verdict))}
                    <div class="sub">${arr(v.reasons).join('; ')}</div>
                  </td>
                  <td>${side(v.canary)}</td>
                  <td>${side(v.production)}</td>
                </tr>`;
              })}
            </tbody>
          </table>`
        : ''
    }
  </section>`;
}

// ----------------------------------------------------------------------------------------------------- model

export interface ModelPage {
  model: { id: string; app: string; baseModel: string; taskFormat: string };
  aliases: { name: string; version: string | null; percent: number | null; since: Date }[];
  versions: {
    version: string;
    status: string;
    statusReason: string | null;
    statusAt: Date | null;
    runId: string | null;
    createdAt: Date;
    erasureFlags: unknown[];
  }[];
  history: ReturnType<typeof aliasMoveView>[];
  migration: {
    days: number;
    incumbent: string | null;
    totals: { calls: number; localShare: number | null };
    daily: { day: string; calls: number; local: number; incumbent: number; fellBack: number }[];
  };
}

export function modelBody(m: ModelPage): Html {
  return html`<nav class="crumbs"><a href="/ui">Models</a></nav>
    <h1>${m.model.id}</h1>
    <p class="facts">${m.model.app} · ${m.model.baseModel} · ${m.model.taskFormat}</p>
    <section>
      <h2>Serving now</h2>
      ${
        m.aliases.length
          ? html`<ul>
              ${m.aliases.map(
                (a) =>
                  html`<li>
                    ${a.name}: <strong>${a.version ?? '–'}</strong> ${atPercent(a.percent)} since ${when(a.since)}
                  </li>`,
              )}
            </ul>`
          : html`<p class="empty">
              Nothing of ours serves
              yet${m.migration.incumbent ? html`: the hosted incumbent ${m.migration.incumbent} answers` : ''}.
            </p>`
      }
    </section>
    <section id="versions">
      <h2>Versions</h2>
      <table>
        <thead>
          <tr>
            <th>Version</th>
            <th>Status</th>
            <th>Why</th>
            <th>Run</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          ${m.versions.map(
            (v) =>
              html`<tr class="${v.erasureFlags.length ? 'flagged' : ''}">
                <td>${v.version}</td>
                <td>
                  ${badge(v.status)}
                  ${
                    v.erasureFlags.length
                      ? html`<div>
                          ${badge('flagged')}
                          <span class="sub"
                            >trained on ${v.erasureFlags.length} erased
                            subject${v.erasureFlags.length === 1 ? '' : 's'}' data</span
                          >
                        </div>`
                      : ''
                  }
                </td>
                <td>${v.statusReason ?? ''}</td>
                <td>${v.runId ? html`<a href="/ui/runs/${v.runId}">${v.runId.slice(0, 8)}</a>` : '–'}</td>
                <td>${when(v.createdAt)}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </section>
    <section id="migration">
      <h2>Migration off ${m.migration.incumbent ?? 'the hosted model'} (last ${m.migration.days} days)</h2>
      <p>${m.migration.totals.calls} calls, ${pct(m.migration.totals.localShare)} answered by our versions.</p>
      ${
        m.migration.daily.length
          ? html`<div class="chart" data-chart="migration-data" id="migration-chart"></div>
              ${jsonData('migration-data', {
                kind: 'share',
                days: m.migration.daily.map((d) => [
                  Date.parse(`${d.day}T00:00:00Z`) / 1000,
                  d.calls ? d.local / d.calls : null,
                  d.calls,
                ]),
              })}
              <table>
                <thead>
                  <tr>
                    <th>Day</th>
                    <th>Calls</th>
                    <th>Ours</th>
                    <th>Incumbent</th>
                    <th>Fell back</th>
                  </tr>
                </thead>
                <tbody>
                  ${m.migration.daily.map(
                    (d) =>
                      html`<tr>
                        <td>${d.day}</td>
                        <td>${d.calls}</td>
                        <td>${d.local}</td>
                        <td>${d.incumbent}</td>
                        <td>${d.fellBack}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>`
          : html`<p class="empty">No calls in this window.</p>`
      }
    </section>
    <section id="history">
      <h2>Alias history</h2>
      <table>
        <thead>
          <tr>
            <th>When</th>
            <th>Alias</th>
            <th>From → to</th>
            <th>By</th>
            <th>Why</th>
          </tr>
        </thead>
        <tbody>
          ${m.history.map(
            (h) =>
              html`<tr>
                <td>${when(h.at)}</td>
                <td>${h.alias} <span class="sub">${atPercent(h.percent)}</span></td>
                <td>${h.from ?? '–'} → ${h.to ?? '–'}</td>
                <td>${h.by}</td>
                <td>${h.reason ?? ''}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </section>`;
}

export function loginBody(opts: { next: string; error?: string }): Html {
  return html`<section class="login">
    <h1>Sign in</h1>
    <p>Paste an operator key. It is exchanged for a session cookie and not kept in this browser.</p>
    ${opts.error ? html`<p class="reason" role="alert">${opts.error}</p>` : ''}
    <form method="post" action="/ui/login">
      <input type="hidden" name="next" value="${opts.next}" />
      <label>Operator key <input type="password" name="key" autocomplete="off" required autofocus /></label>
      <button type="submit">Sign in</button>
    </form>
  </section>`;
}
