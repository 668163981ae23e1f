// HTML for the operator pages: a tagged template that escapes every interpolated value unless it is already Html.
// Values are text from the database (model names, reasons, redacted conversations): escaping is not optional.

export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

function render(v: Part): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Html) return v.value;
  if (Array.isArray(v)) return (v as readonly Part[]).map(render).join('');
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => (out += render(v) + strings[i + 1]!));
  return new Html(out);
}

/**
 * Data for a page's script, in a `<script type="application/json">` block: never executed (the page's CSP allows
 * only our own script files), and `<` escaped so no value can close the block.
 */
export function jsonData(id: string, data: unknown): Html {
  const json = JSON.stringify(data).replace(/</g, '\\u003c');
  return new Html(`<script type="application/json" id="${escapeHtml(id)}">${json}</script>`);
}

export interface Layout {
  title: string;
  /** The signed-in operator's name: a logout button when given. */
  operator?: string;
  scripts?: boolean;
}

export function page(l: Layout, body: Html): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${l.title} · tuneloop</title>
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href="/ui/assets/pages.css" />
        ${l.scripts ? html`<link rel="stylesheet" href="/ui/vendor/uplot/uPlot.min.css" />` : ''}
      </head>
      <body>
        <header>
          <a class="brand" href="/ui">tuneloop</a>
          ${
            l.operator
              ? html`<form method="post" action="/ui/logout" class="logout">
                  <span>${l.operator}</span><button type="submit">Sign out</button>
                </form>`
              : ''
          }
        </header>
        <main>${body}</main>
        ${
          l.scripts
            ? html`<script src="/ui/vendor/uplot/uPlot.iife.min.js"></script>
                <script src="/ui/assets/charts.js"></script>`
            : ''
        }
      </body>
    </html>`.value;
}

// Formatting shared by the pages.

export const pct = (x: number | null | undefined, digits = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(x * 100).toFixed(digits)} %`;

export const num = (x: number | null | undefined, digits = 3) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : Number(x.toFixed(digits)).toString();

export function when(d: Date | string | null | undefined): Html {
  if (!d) return html`–`;
  const iso = new Date(d).toISOString();
  return html`<time datetime="${iso}">${iso.slice(0, 16).replace('T', ' ')} UTC</time>`;
}

export function duration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms) || ms < 0) return '–';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** A status as a coloured badge (the class names are the CSS's). */
export function badge(status: string | null | undefined): Html {
  const s = status ?? 'unknown';
  const tone = /^(succeeded|passed|promoted|production|pass|active)$/.test(s)
    ? 'good'
    : /^(failed|rejected|rolled_back|fail|aborted|cancelled|flagged|retired)$/.test(s)
      ? 'bad'
      : /^(running|canary|shadow|awaiting|insufficient|insufficient_data|candidate)/.test(s)
        ? 'busy'
        : 'plain';
  return html`<span class="badge ${tone}">${s.replace(/_/g, ' ')}</span>`;
}
