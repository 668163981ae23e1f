import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ExportRows, type ExportCandidate } from '../../src/dataset/export-rows';
import { exactJaccard } from '../../src/dataset/near-dup';
import { serializeRow, splitOf } from '../../src/dataset/rows';
import { dupCorpus } from '../../bench/lib/dup-corpus';

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

    // Act: the validation split's rows first, as export hands them over
    const order = [...ids].sort(
      (a, b) => Number(splitOf(b, 0.5) === 'validation') - Number(splitOf(a, 0.5) === 'validation'),
    );
    const kept = order.map((id) => rows.add(row(id, `answer ${ids.indexOf(id)}`), true)!);

    // Assert
    for (const split of ['train', 'validation'] as const) {
      const lines = kept.filter((k) => k.split === split).map((k) => k.line);
      expect(lines).toEqual(lines.map((_, i) => i + 1));
      expect(rows.sources.api![split]).toBe(lines.length);
    }
    expect(kept.map((k) => k.split)).toEqual(order.map((id) => splitOf(id, 0.5)));
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

  it('refuses a validation row after the first train row', () => {
    // Arrange
    const rows = new ExportRows(0.5, ANONYMIZED);
    const ids = Array.from({ length: 40 }, (_, i) => `i-${i}`);
    rows.add(
      row(
        ids.find((id) => splitOf(id, 0.5) === 'train')!,
        'Two minutes.',
      ),
      true,
    );

    // Act
    const late = () =>
      rows.add(
        row(
          ids.find((id) => splitOf(id, 0.5) === 'validation')!,
          'Three minutes.',
        ),
        true,
      );

    // Assert
    expect(late).toThrow(/every validation row must come before the first train row/);
  });

  it('keeps no train row that is a near copy of a validation row, on a labelled set with pairs around the threshold', () => {
    // Arrange: 3 000 rows, a fifth of them paraphrases of earlier ones, their similarity spread around 0.8 (planted
    // rows and their sources form families; rows of different families share almost no shingle)
    const corpus = [...dupCorpus({ seed: 7, rows: 3_000, planted: 0.2, editsPer100: [0, 30], shingleWords: 3 })];
    const family = corpus.map((_, i) => i);
    const root = (i: number): number => (family[i] === i ? i : (family[i] = root(family[i]!)));
    corpus.forEach((r, i) => r.of !== undefined && (family[root(i)] = root(r.of)));
    const asRow = (i: number): ExportCandidate => {
      const words = corpus[i]!.text.split(' ');
      const half = Math.ceil(words.length / 2);
      return row(`row-${i}`, words.slice(half).join(' '), {
        messages: [
          { role: 'user', content: words.slice(0, half).join(' ') },
          { role: 'assistant', content: words.slice(half).join(' ') },
        ],
      });
    };
    const rows = new ExportRows(0.5, ANONYMIZED);
    const inSplit = (split: string) => corpus.map((_, i) => i).filter((i) => rows.splitFor(asRow(i)) === split);

    // Act: validation first, as export hands them over
    const kept = new Map<number, string>();
    for (const i of [...inSplit('validation'), ...inSplit('train')]) {
      const k = rows.add(asRow(i), true);
      if (k) kept.set(i, k.split);
    }

    // Assert: across the splits, no kept pair of a family at exact Jaccard 0.8 or more
    const byFamily = new Map<number, number[]>();
    for (const i of kept.keys()) byFamily.set(root(i), [...(byFamily.get(root(i)) ?? []), i]);
    const leaks: string[] = [];
    let crossPairsNearThreshold = 0;
    for (const members of byFamily.values()) {
      for (const v of members.filter((i) => kept.get(i) === 'validation')) {
        for (const t of members.filter((i) => kept.get(i) === 'train')) {
          const j = exactJaccard(corpus[v]!.text, corpus[t]!.text, 3);
          if (j >= 0.8) leaks.push(`${v}/${t}: ${j.toFixed(3)}`);
          if (j >= 0.7) crossPairsNearThreshold++;
        }
      }
    }
    expect(leaks).toEqual([]);
    // Pairs just under the threshold stay, whichever split: the guard is exact, not merely strict
    expect(crossPairsNearThreshold).toBeGreaterThan(0);
    expect(rows.counts.nearDuplicatesDropped).toBeGreaterThan(0);
  });
});
