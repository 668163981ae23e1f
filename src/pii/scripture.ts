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
  'giu',
);
const BOOK_START_RE = new RegExp(String.raw`(?:(?:[1-3]|i{1,3})\s?)?(?:${BOOKS})\.?\s{1,2}$`, 'iu');

export function findScriptureRefs(text: string, out: Candidate[]): void {
  REF_RE.lastIndex = 0;
  for (let m = REF_RE.exec(text); m; m = REF_RE.exec(text)) {
    const head = BOOK_START_RE.exec(text.slice(Math.max(0, m.index - 24), m.index));
    const start = head ? m.index - head[0].length : m.index;
    out.push({ type: null, start, end: m.index + m[0].length, priority: PRIORITY.BLOCKER });
  }
}

const CONTEXT_RE =
  /\b(?:god|lord|jesus|christ|bible|biblical|scripture|verse|verses|psalm|gospel|apostle|apostles|prophet|prophets|disciples?|israel(?:ites)?|pharaoh|prayer|pray|praying|church|heaven|testament|covenant|sermon|holy|spirit|amen|messiah|parable|epistle|kingdom|egypt|jerusalem|temple|sabbath|sin|sins|worship|ark|goliath|red sea|promised land|wilderness|tomb|crucified|resurrection|miracle|miracles|corinth|galilee|nazareth|tentmakers?|philistines?|babylon|exile|manna|angel|angels|covenant|psalmist|torah|synagogue|pharisees?|sadducees?|samaritan|baptist|baptized|baptised|crucifixion|disciple|chariot|burning bush|plagues?|exodus|genesis)\b/i;
const ANY_REF_RE = new RegExp(String.raw`\b(?:${BOOKS})\.?\s{1,2}\d`, 'i');

export function isScriptureContext(text: string): boolean {
  return CONTEXT_RE.test(text) || ANY_REF_RE.test(text);
}
