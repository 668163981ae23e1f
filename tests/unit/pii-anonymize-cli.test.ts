import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { anonymizeStream } from '../../src/cli/anonymize';

async function run(input: string): Promise<{ lines: unknown[]; summary: { lines: number; errors: number } }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const summary = await anonymizeStream(Readable.from([input]), out);
  out.end();
  const text = Buffer.concat(chunks).toString('utf8');
  return {
    lines: text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as unknown),
    summary,
  };
}

describe('anonymizeStream', () => {
  it('writes one redacted line per input line with offsets into the input', async () => {
    const input = '{"text":"Hi, I\'m Sarah (sarah@example.com)"}\n{"text":"nothing here"}\n';

    const { lines, summary } = await run(input);

    expect(lines).toEqual([
      {
        text: "Hi, I'm <PERSON_1> (<EMAIL_1>)",
        entities: [
          { type: 'PERSON', start: 8, end: 13 },
          { type: 'EMAIL', start: 15, end: 32 },
        ],
      },
      { text: 'nothing here', entities: [] },
    ]);
    expect(summary).toEqual({ lines: 2, errors: 0 });
  });

  it('starts a new redaction scope on every line', async () => {
    const input = '{"text":"Tom and Emma"}\n{"text":"Emma"}\n';

    const { lines } = await run(input);

    expect(lines.map((l) => (l as { text: string }).text)).toEqual(['<PERSON_1> and <PERSON_2>', '<PERSON_1>']);
  });

  it('answers bad lines with an error line and goes on, skipping blank lines', async () => {
    const input = ['{"text": 42}', '', 'not json', '{"id": 1}', '[1,2]', '   ', '{"text":"ok"}', 'null'].join('\r\n');

    const { lines, summary } = await run(input);

    expect(lines).toEqual([
      { error: 'line 1: "text" must be a string, got a number', line: 1 },
      { error: expect.stringMatching(/^line 3: invalid JSON/), line: 3 },
      { error: 'line 4: missing "text"', line: 4 },
      { error: 'line 5: expected a JSON object, got an array', line: 5 },
      { text: 'ok', entities: [] },
      { error: 'line 8: expected a JSON object, got null', line: 8 },
    ]);
    expect(summary).toEqual({ lines: 6, errors: 5 });
  });

  it('keeps non-ASCII text and emoji intact and offsets in UTF-16 units', async () => {
    const input = JSON.stringify({ text: '😊 Zoë here, 07700 900461' }) + '\n';

    const { lines } = await run(input);

    expect(lines).toEqual([
      {
        text: '😊 <PERSON_1> here, <PHONE_1>',
        entities: [
          { type: 'PERSON', start: 3, end: 6 },
          { type: 'PHONE', start: 13, end: 25 },
        ],
      },
    ]);
  });

  it('waits for a slow output to drain instead of buffering everything', async () => {
    const input = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ text: `line ${i} for Sarah` })).join('\n');
    let written = 0;
    let maxBuffered = 0;
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, done) {
        written++;
        setImmediate(done);
      },
    });
    const sample = setInterval(() => (maxBuffered = Math.max(maxBuffered, slow.writableLength)), 1);

    const summary = await anonymizeStream(Readable.from([input]), slow);
    clearInterval(sample);

    expect(summary).toEqual({ lines: 2000, errors: 0 });
    expect(written).toBeGreaterThan(0);
    expect(maxBuffered).toBeLessThan(64 * 1024);
  });
});
