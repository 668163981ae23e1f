import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ChatMessage } from '../../src/domain/conversation';
import {
  buildRow,
  exportConfigHash,
  serializeRow,
  splitOf,
  type FeedbackFacts,
  type SourceInteraction,
} from '../../src/dataset/rows';

const SYSTEM = 'You are the support assistant of Acme.';

function interaction(messages: ChatMessage[], feedback: Partial<FeedbackFacts>[] = []): SourceInteraction {
  return {
    id: randomUUID(),
    seq: 1,
    source: 'app',
    messages,
    feedback: feedback.map((f, i) => ({
      thumbs: null,
      rating: null,
      correction: null,
      createdAt: `2025-01-01T00:00:0${i}.000Z`,
      ...f,
    })),
  };
}

const exchange: ChatMessage[] = [
  { role: 'user', content: 'How do I reset my password?' },
  { role: 'assistant', content: 'Click "Forgot password".' },
];

describe('buildRow', () => {
  it('prepends the model system prompt to an interaction without one', () => {
    // Act
    const decision = buildRow(interaction(exchange), SYSTEM);

    // Assert
    expect(decision).toEqual({
      kind: 'sft',
      corrected: false,
      human: null,
      row: { messages: [{ role: 'system', content: SYSTEM }, ...exchange] },
    });
  });

  it('keeps the interaction’s own system turn instead of the model system prompt', () => {
    // Arrange
    const own: ChatMessage[] = [{ role: 'system', content: 'Answer in French.' }, ...exchange];

    // Act
    const decision = buildRow(interaction(own), SYSTEM);

    // Assert
    expect(decision).toEqual({ kind: 'sft', corrected: false, human: null, row: { messages: own } });
  });

  it('adds no system turn when the model has no system prompt', () => {
    // Act
    const decision = buildRow(interaction(exchange), null);

    // Assert
    expect(decision).toEqual({ kind: 'sft', corrected: false, human: null, row: { messages: exchange } });
  });

  it('replaces the final assistant turn with the newest correction', () => {
    // Arrange: feedback listed out of time order; the newest non-blank correction wins.
    const source = interaction(exchange);
    source.feedback = [
      { thumbs: null, rating: null, correction: 'newest', createdAt: '2025-01-03T00:00:00.000Z' },
      { thumbs: null, rating: null, correction: 'oldest', createdAt: '2025-01-01T00:00:00.000Z' },
      { thumbs: null, rating: null, correction: 'middle', createdAt: '2025-01-02T00:00:00.000Z' },
      { thumbs: 'up', rating: 5, correction: '  ', createdAt: '2025-01-04T00:00:00.000Z' },
    ];

    // Act
    const decision = buildRow(source, null);

    // Assert
    expect(decision).toEqual({
      kind: 'sft',
      corrected: true,
      human: 1, // a correction is people's own answer
      row: { messages: [exchange[0], { role: 'assistant', content: 'newest' }] },
    });
  });

  it.each<[string, Partial<FeedbackFacts>, number]>([
    ['a thumbs-down', { thumbs: 'down' }, 0],
    ['a rating of 2', { rating: 2 }, 0.25],
    ['a rating of 1', { rating: 1 }, 0],
  ])('classifies %s without a correction as negative, keeping the row for calibration', (_label, feedback, human) => {
    // Act
    const decision = buildRow(interaction(exchange, [{ thumbs: 'up' }, feedback]), SYSTEM);

    // Assert
    expect(decision).toEqual({
      kind: 'negative',
      human,
      row: { messages: [{ role: 'system', content: SYSTEM }, ...exchange] },
    });
  });

  it('labels a negative row by its most negative signal, whatever came after it', () => {
    const decision = buildRow(interaction(exchange, [{ thumbs: 'down' }, { rating: 5 }]), null);
    expect(decision).toMatchObject({ kind: 'negative', human: 0 });
  });

  it('keeps a rating of 3 in supervised fine-tuning, with what it says', () => {
    // Act
    const decision = buildRow(interaction(exchange, [{ rating: 3 }]), null);

    // Assert
    expect(decision).toMatchObject({ kind: 'sft', corrected: false, human: 0.5 });
  });

  it('turns negative feedback with a correction into a corrected SFT row', () => {
    // Act
    const decision = buildRow(
      interaction(exchange, [{ thumbs: 'down' }, { rating: 1, correction: 'Open Settings → Security.' }]),
      null,
    );

    // Assert
    expect(decision).toEqual({
      kind: 'sft',
      corrected: true,
      human: 1,
      row: { messages: [exchange[0], { role: 'assistant', content: 'Open Settings → Security.' }] },
    });
  });

  it('rejects an interaction that does not end with an assistant turn', () => {
    // Act
    const decision = buildRow(interaction([...exchange, { role: 'user', content: 'Thanks' }]), SYSTEM);

    // Assert
    expect(decision).toEqual({ kind: 'invalid', reason: expect.stringContaining('assistant') });
  });

  it('rejects an empty interaction', () => {
    // Act
    const decision = buildRow(interaction([]), SYSTEM);

    // Assert
    expect(decision).toMatchObject({ kind: 'invalid' });
  });

  it('rejects an interaction without a user turn', () => {
    // Act
    const decision = buildRow(
      interaction([
        { role: 'system', content: 'Greet.' },
        { role: 'assistant', content: 'Hello!' },
      ]),
      SYSTEM,
    );

    // Assert
    expect(decision).toEqual({ kind: 'invalid', reason: expect.stringContaining('user') });
  });

  it('copies only role and content, dropping extra fields stored with a message', () => {
    // Arrange
    const withExtras = exchange.map((m) => ({ ...m, tool_calls: [], name: 'x' }));

    // Act
    const decision = buildRow(interaction(withExtras), null);

    // Assert
    expect(decision).toEqual({ kind: 'sft', corrected: false, human: null, row: { messages: exchange } });
  });
});

describe('serializeRow', () => {
  it('gives equal rows equal bytes regardless of key order', () => {
    // Arrange
    const a: ChatMessage[] = [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ];
    const b: ChatMessage[] = [
      { content: 'hi', role: 'user' },
      { content: 'hello', role: 'assistant' },
    ];

    // Act
    const first = serializeRow({ messages: a });
    const again = serializeRow({ messages: structuredClone(a) });
    const reordered = serializeRow({ messages: b });

    // Assert
    expect(again).toBe(first);
    expect(reordered).toBe(first);
    expect(first).toBe('{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}');
  });

  it('writes one line even when the content holds newlines', () => {
    // Act
    const line = serializeRow({ messages: [{ role: 'assistant', content: 'a\nb\r\nc' }] });

    // Assert
    expect(line).not.toMatch(/[\r\n]/);
    expect(JSON.parse(line)).toEqual({ messages: [{ role: 'assistant', content: 'a\nb\r\nc' }] });
  });
});

describe('splitOf', () => {
  it('puts the same interaction in the same split every time', () => {
    // Arrange
    const ids = Array.from({ length: 200 }, () => randomUUID());

    // Act
    const first = ids.map((id) => splitOf(id, 0.3));
    const again = ids.map((id) => splitOf(id, 0.3));

    // Assert
    expect(again).toEqual(first);
  });

  it('sends everything to train when the validation share is 0', () => {
    // Arrange
    const ids = Array.from({ length: 1000 }, () => randomUUID());

    // Act
    const splits = new Set(ids.map((id) => splitOf(id, 0)));

    // Assert
    expect([...splits]).toEqual(['train']);
  });

  it.each([0.1, 0.3])('sends a share of %s to validation within ±0.02 over 10,000 ids', (share) => {
    // Arrange
    const ids = Array.from({ length: 10_000 }, () => randomUUID());

    // Act
    const validation = ids.filter((id) => splitOf(id, share) === 'validation').length / ids.length;

    // Assert
    expect(Math.abs(validation - share)).toBeLessThanOrEqual(0.02);
  });

  it('only moves ids from train to validation as the share grows', () => {
    // Arrange
    const ids = Array.from({ length: 2000 }, () => randomUUID());

    // Act
    const atSmall = ids.filter((id) => splitOf(id, 0.1) === 'validation');
    const atLarge = new Set(ids.filter((id) => splitOf(id, 0.3) === 'validation'));

    // Assert
    expect(atSmall.every((id) => atLarge.has(id))).toBe(true);
  });
});

describe('exportConfigHash', () => {
  const base = {
    systemPrompt: 'Be brief.',
    validationShare: 0.1,
    format: 'chat',
    piiEngine: 'pii-1',
    dedup: { near: true, threshold: 0.8 },
  };

  it('is stable for the same inputs', () => {
    // Act
    const a = exportConfigHash({ ...base });
    const b = exportConfigHash({ ...base });

    // Assert
    expect(a).toBe(b);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each([
    ['systemPrompt', { systemPrompt: 'Be verbose.' }],
    ['systemPrompt (to null)', { systemPrompt: null }],
    ['validationShare', { validationShare: 0.2 }],
    ['format', { format: 'completion' }],
    ['piiEngine', { piiEngine: 'pii-2' }],
    ['the near-duplicate threshold', { dedup: { near: true, threshold: 0.9 } }],
    ['near duplicates switched off', { dedup: { near: false, threshold: 0.8 } }],
  ])('changes when %s changes', (_label, change) => {
    // Act
    const changed = exportConfigHash({ ...base, ...change });

    // Assert
    expect(changed).not.toBe(exportConfigHash(base));
  });
});
