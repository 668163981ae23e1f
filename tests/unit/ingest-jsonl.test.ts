import { createReadStream } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseImportLine, splitLines, type RawLine } from '../../src/ingest/jsonl';

async function* chunksOf(...parts: (string | Uint8Array)[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
}

async function collect(lines: AsyncIterable<RawLine>): Promise<RawLine[]> {
  const out: RawLine[] = [];
  for await (const l of lines) out.push(l);
  return out;
}

describe('splitLines', () => {
  it('splits on LF across chunk boundaries, drops CR and a leading BOM, keeps a last line without LF', async () => {
    const lines = await collect(splitLines(chunksOf('\ufeff{"a":', '1}\r\n\n{"b"', ':2}\n{"c":3}')));

    expect(lines.map((l) => [l.line, l.text])).toEqual([
      [1, '{"a":1}'],
      [2, ''],
      [3, '{"b":2}'],
      [4, '{"c":3}'],
    ]);
  });

  it('decodes a multi-byte character split between chunks', async () => {
    const bytes = Buffer.from('{"t":"é😀"}\n', 'utf8');

    const lines = await collect(splitLines(chunksOf(bytes.subarray(0, 7), bytes.subarray(7))));

    expect(lines).toEqual([{ line: 1, text: '{"t":"é😀"}', error: null, bytes: bytes.length - 1 }]);
  });

  it('reports bytes that are not UTF-8 instead of replacing them', async () => {
    const badField = Buffer.concat([
      Buffer.from('{"messages":[{"content":"a'),
      Buffer.from([0xfe]),
      Buffer.from('"}]}\n'),
    ]);
    const lines = await collect(
      splitLines(chunksOf('ok\n', new Uint8Array([0x7b, 0xff, 0x7d, 0x0a]), badField, 'next\n')),
    );

    expect(lines.map((l) => [l.line, l.text, l.error])).toEqual([
      [1, 'ok', null],
      [2, null, 'not valid UTF-8 (byte 0xFF at offset 1)'],
      [3, null, 'messages.0.content: not valid UTF-8 (byte 0xFE at offset 26)'],
      [4, 'next', null],
    ]);
  });

  it('refuses a line over the cap without holding it, and goes on with the next', async () => {
    const lines = await collect(splitLines(chunksOf('short\n', 'x'.repeat(30), 'y'.repeat(30), '\nafter\n'), 40));

    expect(lines.map((l) => [l.line, l.text, l.error, l.bytes])).toEqual([
      [1, 'short', null, 5],
      [2, null, 'longer than 40 bytes', 60],
      [3, 'after', null, 5],
    ]);
  });
});

describe('parseImportLine', () => {
  const line = (v: Record<string, unknown>) => JSON.stringify(v);
  const chat = {
    subject: 'u',
    messages: [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'a' },
    ],
  };

  it('fills in the import model when the line has none, and accepts the same model', () => {
    const a = parseImportLine(line(chat), 'm1');
    const b = parseImportLine(line({ ...chat, model: 'm1', id: 'x' }), 'm1');

    expect(a).toMatchObject({ ok: true, value: { model: 'm1', subject: 'u' } });
    expect(b).toMatchObject({ ok: true, value: { model: 'm1', id: 'x' } });
  });

  it.each([
    ['{"subject": "u",', 'not valid JSON'],
    ['[1, 2]', 'expected a JSON object'],
    ['"text"', 'expected a JSON object'],
    [JSON.stringify({ ...chat, model: 'other' }), 'model: this line is for "other", the import is for "m1"'],
    [JSON.stringify({ messages: chat.messages }), 'subject: '],
    [JSON.stringify({ ...chat, when: '2025-01-01' }), 'when: '],
    [JSON.stringify({ subject: 'u', prompt: 'p' }), 'completion: prompt and completion go together'],
    ['{"subject": "u", "prompt": "\\ud800", "completion": "c"}', 'prompt: contains an unpaired UTF-16 surrogate'],
  ])('%s → %s', (text, error) => {
    const r = parseImportLine(text, 'm1');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toContain(error);
  });
});

describe('the bundled demo sample', () => {
  it('passes the import rules line by line', async () => {
    const sample = path.resolve(import.meta.dirname, '../../samples/demo/interactions.jsonl');
    const problems: string[] = [];

    for await (const l of splitLines(createReadStream(sample))) {
      if (!l.text?.trim()) continue;
      const r = parseImportLine(l.text, 'demo');
      if (!r.ok) problems.push(`line ${l.line}: ${r.error}`);
    }

    expect(problems).toEqual([]);
  });
});
