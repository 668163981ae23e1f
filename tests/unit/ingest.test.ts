import { describe, expect, it } from 'vitest';
import { feedbackSchema } from '../../src/ingest/feedback';
import {
  batchSchema,
  canonicalize,
  interactionSchema,
  MAX_BATCH,
  turnOrderProblem,
} from '../../src/ingest/interaction';
import { describeIssue, fieldIssues } from '../../src/ingest/issues';
import { METADATA_LIMITS, metadataSchema } from '../../src/ingest/metadata';
import { MAX_TEXT_CHARS, textProblem } from '../../src/ingest/text';

/** The first problem zod reports for `value`, as `field: message`, or null when it is accepted. */
function problemOf(schema: { safeParse: (v: unknown) => { success: boolean; error?: unknown } }, value: unknown) {
  const r = schema.safeParse(value);
  if (r.success) return null;
  return fieldIssues(r.error as Parameters<typeof fieldIssues>[0])[0]!;
}

const turns = (...roles: string[]) => roles.map((role, i) => ({ role, content: `turn ${i}` }));
const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'm',
  subject: 'u1',
  messages: turns('user', 'assistant'),
  ...extra,
});

describe('textProblem', () => {
  it('accepts text with tabs, line breaks and characters outside the BMP', () => {
    expect(textProblem('a\tb\nc\r\nd 😀 é')).toBeNull();
  });

  it.each([
    ['\u0000', 'U+0000'],
    ['a\u0001', 'U+0001'],
    ['\u001b[31m', 'U+001B'],
    ['x\u007f', 'U+007F'],
    ['\u000b', 'U+000B'],
  ])('refuses the control character in %j naming %s', (s, cp) => {
    expect(textProblem(s)).toContain(`control character ${cp}`);
  });

  it.each([['\ud800'], ['a\udfff'], ['\ud83dx'], ['\ude00\ud83d']])('refuses the unpaired surrogate in %j', (s) => {
    expect(textProblem(s)).toContain('unpaired UTF-16 surrogate');
  });

  it('refuses empty and whitespace-only text unless blank is allowed', () => {
    expect(textProblem('')).toBe('must not be empty');
    expect(textProblem(' \n\t')).toBe('must not be whitespace only');
    expect(textProblem('  ', { allowBlank: true })).toBeNull();
  });
});

describe('interactionSchema', () => {
  it('accepts the three shapes and canonicalises each to chat messages', () => {
    const parsed = [
      chat({ id: 'a' }),
      { model: 'm', subject: 'u', prompt: 'P', completion: 'C' },
      { model: 'm', subject: 'u', instruction: 'I', input: 'X', output: 'O' },
      { model: 'm', subject: 'u', instruction: 'I', input: '', output: 'O' },
    ].map((v) => canonicalize(interactionSchema.parse(v)));

    expect(parsed.map((p) => p.messages)).toEqual([
      [
        { role: 'user', content: 'turn 0' },
        { role: 'assistant', content: 'turn 1' },
      ],
      [
        { role: 'user', content: 'P' },
        { role: 'assistant', content: 'C' },
      ],
      [
        { role: 'user', content: 'I\n\nX' },
        { role: 'assistant', content: 'O' },
      ],
      [
        { role: 'user', content: 'I' },
        { role: 'assistant', content: 'O' },
      ],
    ]);
    expect(parsed[0]).toMatchObject({ id: 'a', model: 'm', subject: 'u1' });
    expect(parsed[1]).not.toHaveProperty('id');
  });

  it.each([
    [['system', 'user', 'assistant'], null],
    [['user', 'assistant', 'user', 'assistant'], null],
    [['user', 'user', 'assistant'], 'messages.1.role'],
    [['assistant', 'user'], 'messages.0.role'],
    [['user', 'assistant', 'system', 'user', 'assistant'], 'messages.2.role'],
    [['system', 'system', 'user', 'assistant'], 'messages.1.role'],
    [['user', 'assistant', 'user'], 'messages'],
    [['user'], 'messages'],
    [['system', 'user'], 'messages'],
    [[], 'messages'],
  ])('turn order %j → %s', (roles, field) => {
    const issue = problemOf(interactionSchema, chat({ messages: turns(...roles) }));
    expect(issue?.field ?? null).toBe(field);
  });

  it('says why a conversation without an assistant turn is refused', () => {
    expect(turnOrderProblem(turns('user', 'assistant', 'user') as never)?.message).toContain('assistant');
    expect(turnOrderProblem(turns('user') as never)?.message).toContain('assistant turn');
  });

  it.each([
    [{ subject: '' }, 'subject', 'empty'],
    [{ subject: '   ' }, 'subject', 'whitespace'],
    [{ id: 'a\u0007' }, 'id', 'U+0007'],
    [{ messages: [{ role: 'user', content: ' ' }, turns('assistant')[0]] }, 'messages.0.content', 'whitespace'],
    [{ messages: [turns('user')[0], { role: 'assistant', content: 'x\ud800' }] }, 'messages.1.content', 'surrogate'],
    [{ messages: undefined, prompt: 'p', completion: 'x'.repeat(MAX_TEXT_CHARS + 1) }, 'completion', 'at most'],
    [{ messages: undefined, prompt: 'p' }, 'completion', 'together'],
    [{ messages: undefined, instruction: 'i', input: '  ', output: 'o' }, 'input', 'whitespace'],
    [{ prompt: 'p', completion: 'c' }, 'messages', 'exactly one'],
    [{ messages: undefined }, 'messages', 'missing'],
    [{ extra: 1 }, 'extra', 'nrecognized'],
    [{ model: 'Bad Model' }, 'model', 'slug'],
    [{ messages: [{ role: 'robot', content: 'x' }] }, 'messages.0.role', ''],
  ])('%j is refused at %s', (patch, field, words) => {
    const issue = problemOf(interactionSchema, chat(patch));
    expect(issue?.field).toBe(field);
    expect(issue?.message).toContain(words);
  });

  it('names the batch cap', () => {
    const issue = problemOf(batchSchema, { interactions: Array.from({ length: MAX_BATCH + 1 }, () => chat()) });
    expect(issue).toEqual({ field: 'interactions', message: `a batch holds at most ${MAX_BATCH} interactions` });
  });
});

describe('metadataSchema', () => {
  it('keeps nested JSON values as they came', () => {
    const m = {
      category: 'coaching',
      difficulty: 3,
      mood: null,
      flagged: false,
      context: { tags: ['a', 'b'], screen: { name: 'home', ids: [1, 2, { deep: true }] } },
      note: '',
    };
    expect(metadataSchema.parse(m)).toBe(m);
  });

  it('keeps a __proto__ key as an ordinary key', () => {
    const m = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}');
    const out = metadataSchema.parse(m);
    expect(Object.keys(out)).toEqual(['__proto__', 'a']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it.each([
    [[1, 2], '', 'expected a JSON object'],
    ['text', '', 'expected a JSON object'],
    [{ a: { b: { c: { d: { e: 1 } } } } }, null, ''],
    [{ a: { b: { c: { d: { e: {} } } } } }, 'a.b.c.d.e', 'deeper than 5'],
    [{ a: [[[[[]]]]] }, 'a.0.0.0.0', 'deeper than 5'],
    [{ ['k'.repeat(METADATA_LIMITS.keyChars + 1)]: 1 }, 'k'.repeat(METADATA_LIMITS.keyChars + 1), 'at most'],
    [{ '': 1 }, '', 'key must not be empty'],
    [{ 'a\u0000': 1 }, 'a\u0000', 'U+0000'],
    [{ ctx: { v: 'a\ud800' } }, 'ctx.v', 'surrogate'],
    [{ list: ['ok', 'bad\u0001'] }, 'list.1', 'U+0001'],
    [{ n: Number.NaN }, 'n', 'finite'],
    [{ d: new Date(0) }, 'd', 'expected a JSON value'],
    [{ big: 'x'.repeat(METADATA_LIMITS.bytes) }, '', 'at most 16384 bytes'],
  ])('%j → %s', (value, field, words) => {
    const issue = problemOf(metadataSchema, value);
    if (field === null) return expect(issue).toBeNull();
    expect(issue?.field).toBe(field);
    expect(issue?.message).toContain(words);
  });

  it('names the metadata path inside an interaction', () => {
    const issue = problemOf(interactionSchema, chat({ metadata: { context: { x: [1, 'a\u007f'] } } }));
    expect(issue?.field).toBe('metadata.context.x.1');
  });
});

describe('feedbackSchema', () => {
  it('accepts any of thumbs, rating or correction, with a comment and an id', () => {
    expect(feedbackSchema.parse({ thumbs: 'up' })).toEqual({ thumbs: 'up' });
    expect(feedbackSchema.parse({ rating: 5, comment: 'great', id: 'f1' })).toEqual({
      rating: 5,
      comment: 'great',
      id: 'f1',
    });
    expect(feedbackSchema.parse({ correction: 'Better answer.' })).toEqual({ correction: 'Better answer.' });
  });

  it.each([
    [{}, '', 'at least one of thumbs, rating or correction'],
    [{ comment: 'only a comment' }, '', 'at least one'],
    [{ rating: 0 }, 'rating', 'from 1 to 5'],
    [{ rating: 6 }, 'rating', 'from 1 to 5'],
    [{ rating: 4.5 }, 'rating', 'whole number'],
    [{ rating: '5' }, 'rating', ''],
    [{ thumbs: 'sideways' }, 'thumbs', ''],
    [{ thumbs: 'up', correction: '  ' }, 'correction', 'whitespace'],
    [{ thumbs: 'up', comment: 'x\u0000' }, 'comment', 'U+0000'],
    [{ thumbs: 'up', stars: 5 }, 'stars', ''],
  ])('%j is refused at %j', (value, field, words) => {
    const issue = problemOf(feedbackSchema, value);
    expect(issue?.field).toBe(field);
    expect(describeIssue(issue!)).toContain(words);
  });
});
