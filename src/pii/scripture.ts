/**
 * Scripture references and scripture talk. "John 3:16" and "1 Samuel 17" are references, not people; in a text
 * about the Bible, a biblical name with no private-person cue is the figure, not a user's friend.
 */
import { PRIORITY, type Candidate } from './candidate';
import { BIBLE_BOOKS } from './names-data';

const BOOKS = BIBLE_BOOKS.split(/\s+/).filter(Boolean).join('|');

// The scan starts at the chapter number (digits are rare) and looks back for the book, so prose costs nothing.
const REF_RE = new RegExp(
  String.raw`\d(?<=(?:^|[^\p{L}\d])(?:(?:[1-3]|i{1,3})\s?)?(?:${BOOKS})\.?\s{1,2}\d)\d{0,2}(?:\s?[:.]\s?\d{1,3}(?:\s?[-–—]\s?\d{1,3})?(?:\s?,\s?\d{1,3})*)?(?!\d)`,
  'iuy',
);
const BOOK_START_RE = new RegExp(String.raw`(?:(?:[1-3]|i{1,3})\s?)?(?:${BOOKS})\.?\s{1,2}$`, 'iu');

/** A reference whose chapter number starts at `i`; a blocker over book and numbers. */
export function scriptureRefAt(text: string, i: number, out: Candidate[]): number {
  REF_RE.lastIndex = i;
  const m = REF_RE.exec(text);
  if (!m) return i;
  const head = BOOK_START_RE.exec(text.slice(Math.max(0, i - 24), i));
  const start = head ? i - head[0].length : i;
  out.push({ type: null, start, end: i + m[0].length, priority: PRIORITY.BLOCKER });
  return i + m[0].length;
}

/** Words that make a text about the Bible (with any "Book 3:16" reference, which the scanner reports itself). */
export const SCRIPTURE_CONTEXT_WORDS =
  `god lord jesus christ bible biblical scripture scriptures verse verses psalm gospel
  apostle apostles prophet prophets disciple disciples israel israelites pharaoh prayer pray praying church heaven
  testament covenant sermon holy spirit amen messiah parable epistle kingdom egypt jerusalem temple sabbath sin sins
  worship ark goliath wilderness tomb crucified resurrection miracle miracles corinth galilee nazareth tentmaker
  tentmakers philistine philistines babylon exile manna angel angels psalmist torah synagogue pharisee pharisees
  sadducees samaritan baptist baptized baptised crucifixion chariot plague plagues exodus genesis`
    .split(/\s+/)
    .filter(Boolean);
