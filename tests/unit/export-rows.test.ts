import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ExportRows, type ExportCandidate } from '../../src/dataset/export-rows';
import { serializeRow, splitOf } from '../../src/dataset/rows';

const ANONYMIZED = { considered: 10, negativeFeedback: 2, invalid: 1 };

function row(id: string, answer: string, over: Partial<ExportCandidate> = {}): ExportCandidate {
  return {
    id,
    source: 'api',
    corrected: false,
    messages: [
      { role: 'user', content: 'How long should I rest between sets?' },
      { role: 'assistant', content: answer },
    ],
    ...over,
  };
}

describe('ExportRows', () => {
  it('keeps a row with its bytes, its split by interaction id, its line and its sha256', () => {
    // Arrange
    const rows = new ExportRows(0, ANONYMIZED);
    const r = row('a', 'Two minutes.');

    // Act
    const kept = rows.add(r, true);

    // Assert
    const text = serializeRow({ messages: r.messages });
    expect(kept).toEqual({
      text,
      split: 'train',
      line: 1,
      rowSha256: createHash('sha256').update(text).digest('hex'),
    });
  });

  it('drops a row whose text was exported already, case and spacing aside, whatever its interaction', () => {
    // Arrange
    const rows = new ExportRows(0, ANONYMIZED);
    rows.add(row('a', 'Two minutes.'), true);

    // Act
    const again = rows.add(row('b', 'two  MINUTES.', { source: 'import' }), true);

    // Assert
    expect(again).toBeNull();
    expect(rows.counts).toMatchObject({ exported: 1, duplicatesDropped: 1, nearDuplicatesDropped: 0 });
    expect(rows.sources).toEqual({
      api: { train: 1, validation: 0, duplicates: 0, nearDuplicates: 0 },
      import: { train: 0, validation: 0, duplicates: 1, nearDuplicates: 0 },
    });
  });

  it('drops a near duplicate of a row in the other split, and keeps it when near duplicates are off', () => {
    // Arrange: a long answer, then the same with one word changed, under ids that fall in different splits
    const answer =
      'Rest two minutes between heavy sets of squats, drink some water, and keep the next set at the same weight ' +
      'unless the last one felt easy: then add two and a half kilos and keep the form strict all the way down.';
    const ids = Array.from({ length: 40 }, (_, i) => `i-${i}`);
    const inValidation = ids.find((id) => splitOf(id, 0.5) === 'validation')!;
    const inTrain = ids.find((id) => splitOf(id, 0.5) === 'train')!;
    const near = answer.replace('water', 'tea');
    const on = new ExportRows(0.5, ANONYMIZED);
    const off = new ExportRows(0.5, ANONYMIZED, { near: false, threshold: 0.8 });

    // Act
    const kept = on.add(row(inValidation, answer), true);
    const copy = on.add(row(inTrain, near, { source: 'synthetic' }), true);
    off.add(row(inValidation, answer), true);
    const keptWhenOff = off.add(row(inTrain, near), true);

    // Assert
    expect(kept?.split).toBe('validation');
    expect(copy).toBeNull();
    expect(on.counts).toMatchObject({ exported: 1, duplicatesDropped: 0, nearDuplicatesDropped: 1 });
    expect(on.sources.synthetic).toEqual({ train: 0, validation: 0, duplicates: 0, nearDuplicates: 1 });
    expect(keptWhenOff?.split).toBe('train');
    expect(on.decided).toBe(2);
  });

  it('leaves out a row whose subject no longer consents, without counting it as a duplicate later', () => {
    // Arrange
    const rows = new ExportRows(0, ANONYMIZED);

    // Act
    const withdrawn = rows.add(row('a', 'Two minutes.'), false);
    const same = rows.add(row('b', 'Two minutes.'), true);

    // Assert
    expect(withdrawn).toBeNull();
    expect(same).not.toBeNull();
    expect(rows.counts).toMatchObject({ withdrawnDuringRun: 1, exported: 1, duplicatesDropped: 0 });
  });

  it('compares rows without the system prompt, and a later turn of a conversation by its own last exchange', () => {
    // Arrange: a long system prompt leads every row; a second turn repeats the first as its history
    const system = { role: 'system' as const, content: 'You are a coach. '.repeat(200) };
    const rows = new ExportRows(0, ANONYMIZED);
    const first = row('a', 'Two minutes between sets.', {
      messages: [
        system,
        ...row('a', '').messages.slice(0, 1),
        { role: 'assistant', content: 'Two minutes between sets.' },
      ],
    });
    const second: ExportCandidate = {
      ...first,
      id: 'b',
      messages: [
        ...first.messages,
        { role: 'user', content: 'And how many sets of deadlifts on a heavy day?' },
        { role: 'assistant', content: 'Five sets of three, resting three minutes.' },
      ],
    };
    const other = row('c', 'Drink water and sleep eight hours before a race.', {
      messages: [
        system,
        { role: 'user', content: 'What helps before a marathon?' },
        { role: 'assistant', content: 'Drink water and sleep eight hours before a race.' },
      ],
    });

    // Act
    const kept = [first, second, other].map((r) => rows.add(r, true));

    // Assert
    expect(kept.every((k) => k !== null)).toBe(true);
    expect(rows.counts).toMatchObject({ exported: 3, duplicatesDropped: 0, nearDuplicatesDropped: 0 });
  });

  it('numbers lines per split and counts sources per split', () => {
    // Arrange: ids on both sides of a one-half split
    const rows = new ExportRows(0.5, ANONYMIZED, { near: false, threshold: 0.8 });
    const ids = Array.from({ length: 40 }, (_, i) => `interaction-${i}`);

    // Act
    const kept = ids.map((id, i) => rows.add(row(id, `answer ${i}`), true)!);

    // Assert
    for (const split of ['train', 'validation'] as const) {
      const lines = kept.filter((k) => k.split === split).map((k) => k.line);
      expect(lines).toEqual(lines.map((_, i) => i + 1));
      expect(rows.sources.api![split]).toBe(lines.length);
    }
    expect(kept.map((k) => k.split)).toEqual(ids.map((id) => splitOf(id, 0.5)));
    expect(new Set(kept.map((k) => k.split))).toEqual(new Set(['train', 'validation']));
  });

  it("keeps anonymize's counts and adds its own", () => {
    // Arrange
    const rows = new ExportRows(0, ANONYMIZED);

    // Act
    rows.add(row('a', 'one', { corrected: true }), true);
    rows.add(row('b', 'one'), true);
    rows.add(row('c', 'two'), false);
    rows.add(row('d', 'three'), true);

    // Assert
    expect(rows.counts).toEqual({
      considered: 10,
      exported: 2,
      duplicatesDropped: 1,
      nearDuplicatesDropped: 0,
      negativeFeedback: 2,
      invalid: 1,
      corrected: 1,
      withdrawnDuringRun: 1,
    });
    expect(rows.decided).toBe(4);
  });
});
