/**
 * A labelled corpus for near-duplicate detection: distinct rows (chat-like sentences drawn from a large vocabulary,
 * so that two of them share almost no three-word run) with paraphrases of earlier rows planted among them, each
 * paraphrase labelled with its source and the exact Jaccard similarity of their shingles. Deterministic for a seed.
 * Used by tests/unit/near-dup.test.ts and bench/score.bench.ts.
 */
import { exactJaccard } from '../../src/dataset/near-dup';
import { rng } from './corpus';

const SYLLABLES = [
  'ka',
  'lo',
  'mi',
  'ten',
  'ra',
  'sho',
  'vel',
  'in',
  'dor',
  'pa',
  'qui',
  'zu',
  'ber',
  'an',
  'ti',
  'gro',
];
const COMMON = ['the', 'a', 'to', 'and', 'i', 'you', 'my', 'is', 'for', 'of', 'in', 'how', 'what', 'should', 'can'];

/** 6 000 made-up words, and the common words chat is full of. */
function vocabulary(rand: () => number): string[] {
  const words = new Set<string>();
  while (words.size < 6_000) {
    const n = 2 + Math.floor(rand() * 3);
    let w = '';
    for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(rand() * SYLLABLES.length)];
    words.add(w);
  }
  return [...words];
}

export interface LabelledRow {
  text: string;
  /** For a planted paraphrase: the index of the row it paraphrases, and their exact Jaccard similarity. */
  of?: number;
  jaccard?: number;
}

export interface DupCorpusOptions {
  seed: number;
  /** Rows in all. */
  rows: number;
  /** Share of rows that paraphrase an earlier one. */
  planted: number;
  /** Words changed per hundred in a paraphrase: [min, max]; a wider range plants near and far paraphrases. */
  editsPer100: [number, number];
  shingleWords: number;
  /** Compute each paraphrase's exact Jaccard (costs a little time). */
  label?: boolean;
}

/** Rows, one at a time (a million need not be held at once). */
export function* dupCorpus(o: DupCorpusOptions): Generator<LabelledRow> {
  const rand = rng(o.seed);
  const vocab = vocabulary(rand);
  const word = () => {
    const list = rand() < 0.3 ? COMMON : vocab;
    return list[Math.floor(rand() * list.length)]!;
  };
  const recent: string[] = []; // the last rows, the ones a paraphrase copies (a million need not be kept)
  for (let i = 0; i < o.rows; i++) {
    let row: LabelledRow;
    if (recent.length > 10 && rand() < o.planted) {
      const back = 1 + Math.floor(rand() * Math.min(recent.length - 1, 999));
      const source = recent[recent.length - back]!;
      const text = paraphrase(source, rand, word, o.editsPer100);
      row = {
        text,
        of: i - back,
        ...(o.label !== false ? { jaccard: exactJaccard(source, text, o.shingleWords) } : {}),
      };
    } else {
      const n = 15 + Math.floor(rand() * 45);
      const words = Array.from({ length: n }, word);
      words[0] = words[0]![0]!.toUpperCase() + words[0]!.slice(1);
      row = { text: `${words.join(' ')}${rand() < 0.5 ? '?' : '.'}` };
    }
    recent.push(row.text);
    if (recent.length > 1_000) recent.shift();
    yield row;
  }
}

/** A paraphrase as users and teachers make them: some words replaced, a pair swapped, case and spacing changed. */
function paraphrase(text: string, rand: () => number, word: () => string, [lo, hi]: [number, number]): string {
  const words = text.split(' ');
  const rate = (lo + rand() * (hi - lo)) / 100;
  for (let i = 0; i < words.length; i++) if (rand() < rate) words[i] = word();
  if (rand() < 0.5 && words.length > 3) {
    const j = Math.floor(rand() * (words.length - 1));
    [words[j], words[j + 1]] = [words[j + 1]!, words[j]!];
  }
  let out = words.join(rand() < 0.2 ? '  ' : ' ');
  if (rand() < 0.3) out = out.toUpperCase();
  if (rand() < 0.3) out = out.replace(/[.?]$/, '!');
  return out;
}
