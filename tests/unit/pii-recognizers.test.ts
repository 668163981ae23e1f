import { describe, expect, it } from 'vitest';
import { detect, type PiiType } from '../../src/pii';

/** What detect() finds, as [type, value] pairs. */
function found(text: string): [PiiType, string][] {
  return detect(text).map((e) => [e.type, text.slice(e.start, e.end)]);
}
const only = (text: string, type: PiiType) =>
  found(text)
    .filter(([t]) => t === type)
    .map(([, v]) => v);

describe('EMAIL and SOCIAL_HANDLE', () => {
  it('finds emails, lowercase or not, and a handle that is not inside an email', () => {
    const text = 'Write to Sarah.J+runs@Gmail.co.uk or entries@harbourhalf.ie, follow @jess_runs_uk.';
    expect(only(text, 'EMAIL')).toEqual(['Sarah.J+runs@Gmail.co.uk', 'entries@harbourhalf.ie']);
    expect(only(text, 'SOCIAL_HANDLE')).toEqual(['@jess_runs_uk']);
  });

  it('leaves hashtags, a bare @ and "@ 5pm" alone', () => {
    expect(found('training for #halfmarathon, meet @ 5pm')).toEqual([]);
  });
});

describe('PHONE', () => {
  it('finds UK, US and EU formats from the first digit or sign to the last digit', () => {
    const text =
      'UK 07700 900461, +44 7700 900214, +44 (0)7700 900844, 020 7946 0321; US (614) 555-0187, 415.555.0143, ' +
      '+1 415 555 0132; EU +33 6 12 34 56 78, +49 30 1234567, +353 87 123 4567.';
    expect(only(text, 'PHONE')).toEqual([
      '07700 900461',
      '+44 7700 900214',
      '+44 (0)7700 900844',
      '020 7946 0321',
      '(614) 555-0187',
      '415.555.0143',
      '+1 415 555 0132',
      '+33 6 12 34 56 78',
      '+49 30 1234567',
      '+353 87 123 4567',
    ]);
  });

  it('leaves helpline short codes, times, scores and years alone', () => {
    expect(found('call 999 or 111, text 85258, at 07:30, scored 8/10 in 2019')).toEqual([]);
  });
});

describe('CREDIT_CARD, IBAN, NHS_NUMBER and SSN', () => {
  it('finds Luhn-valid cards grouped or not, and leaves Luhn-invalid 16 digits alone', () => {
    const text = 'card 4111 1111 1111 1111, amex 3782 822463 10005, tracking 4111 1111 1111 1112, ending 9412';
    expect(only(text, 'CREDIT_CARD')).toEqual(['4111 1111 1111 1111', '3782 822463 10005']);
    expect(found(text).map(([t]) => t)).toEqual(['CREDIT_CARD', 'CREDIT_CARD']);
  });

  it('finds mod-97-valid IBANs with and without spaces, and not an invalid one', () => {
    const text = 'Pay GB82 WEST 1234 5698 7654 32 or DE89370400440532013000, not GB83 WEST 1234 5698 7654 32.';
    expect(only(text, 'IBAN')).toEqual(['GB82 WEST 1234 5698 7654 32', 'DE89370400440532013000']);
  });

  it('finds NHS numbers with a valid check digit, spaced, dashed or plain', () => {
    expect(only('NHS number 943 476 5919', 'NHS_NUMBER')).toEqual(['943 476 5919']);
    expect(only('his NHS no. is 9434765919.', 'NHS_NUMBER')).toEqual(['9434765919']);
    expect(found('hospital number 943 476 5918')).toEqual([]);
  });

  it('finds dashed SSNs with valid parts, and unformatted ones only after "SSN"', () => {
    expect(only('SSN 123-45-6789', 'SSN')).toEqual(['123-45-6789']);
    expect(only('my SSN, 579897665', 'SSN')).toEqual(['579897665']);
    expect(found('order 666-12-3456 and ref 579897665')).toEqual([]);
  });
});

describe('IP_ADDRESS', () => {
  it('finds IPv4 and IPv6 (full and compressed), without a port or CIDR suffix', () => {
    const text =
      'Hosts 192.0.2.44:8443, 10.0.0.0/28, 2001:db8::ff00:42:8329 and 2001:0db8:0000:0000:0000:ff00:0042:8329.';
    expect(only(text, 'IP_ADDRESS')).toEqual([
      '192.0.2.44',
      '10.0.0.0',
      '2001:db8::ff00:42:8329',
      '2001:0db8:0000:0000:0000:ff00:0042:8329',
    ]);
  });

  it('leaves versions, invalid addresses and a bare :: alone', () => {
    expect(found('v2.3.1, Windows 10.0.19045, firmware 4.12.3, 256.1.1.1, replace zeros with ::.')).toEqual([]);
  });
});

describe('URL', () => {
  it('finds profile, link-in-bio and shared-document URLs', () => {
    const text =
      'See instagram.com/slowly.healing.sam, https://www.linkedin.com/in/jane-doe-123, strava.com/athletes/48213907, ' +
      'linktr.ee/sam and https://docs.google.com/document/d/1AbC/edit.';
    expect(only(text, 'URL')).toEqual([
      'instagram.com/slowly.healing.sam',
      'https://www.linkedin.com/in/jane-doe-123',
      'strava.com/athletes/48213907',
      'linktr.ee/sam',
      'https://docs.google.com/document/d/1AbC/edit',
    ]);
  });

  it('leaves general sites alone, and the numbers in their paths too', () => {
    const text =
      'Read bbc.co.uk/news/uk-12345678, nhs.uk/mental-health/self-help and ' +
      'biblegateway.com/passage?search=Romans+8, or youtube.com/watch?v=abc.';
    expect(found(text)).toEqual([]);
  });
});

describe('ADDRESS and POSTCODE', () => {
  it('splits an address with its town from the postcode', () => {
    expect(found('I live at Flat 2, 41 Hollins Road, Oldham OL8 3QT.')).toEqual([
      ['ADDRESS', 'Flat 2, 41 Hollins Road, Oldham'],
      ['POSTCODE', 'OL8 3QT'],
    ]);
    expect(found('Send it to 88 Ocean Parkway, Apt 4B, Brooklyn, NY 11224')).toEqual([
      ['ADDRESS', '88 Ocean Parkway, Apt 4B, Brooklyn, NY'],
      ['POSTCODE', '11224'],
    ]);
  });

  it('finds street-first European addresses and leaves the city after the postcode out', () => {
    expect(found('wohne in der Lindenstraße 14, 10969 Berlin')).toEqual([
      ['ADDRESS', 'Lindenstraße 14'],
      ['POSTCODE', '10969'],
    ]);
    expect(found('Ship it to Keizersgracht 412, 1016 GC Amsterdam')).toEqual([
      ['ADDRESS', 'Keizersgracht 412'],
      ['POSTCODE', '1016 GC'],
    ]);
    expect(found('staying at 8 boulevard Saint-Michel, 75006 Paris')).toEqual([
      ['ADDRESS', '8 boulevard Saint-Michel'],
      ['POSTCODE', '75006'],
    ]);
  });

  it('finds a postcode after a postcode word, and UK and Irish codes anywhere', () => {
    expect(only('my zip code is 60657', 'POSTCODE')).toEqual(['60657']);
    expect(only('eircode D03 E2V6 please', 'POSTCODE')).toEqual(['D03 E2V6']);
    expect(only('near EH9 1HN', 'POSTCODE')).toEqual(['EH9 1HN']);
    expect(only('they asked for my ZIP, it’s 97214', 'POSTCODE')).toEqual(['97214']);
    expect(only('Postcode here is now 2000', 'POSTCODE')).toEqual(['2000']);
    expect(only('the zip is in the bag, 3 items', 'POSTCODE')).toEqual([]);
  });

  it('leaves step counts, calories and lowercase "number + words" without an address cue alone', () => {
    expect(found('12,450 steps, 1,760 kcal, 3 sets on the way home, 5 laps of the park')).toEqual([]);
  });
});

describe('DATE_OF_BIRTH', () => {
  it('finds the date after a birth cue, and only the date', () => {
    expect(only('born on 12 June 1996', 'DATE_OF_BIRTH')).toEqual(['12 June 1996']);
    expect(only('DOB 1987-11-02', 'DATE_OF_BIRTH')).toEqual(['1987-11-02']);
    expect(only('date of birth (17.08.1991)', 'DATE_OF_BIRTH')).toEqual(['17.08.1991']);
    expect(only("my birthday's 12th August", 'DATE_OF_BIRTH')).toEqual(['12th August']);
    expect(only('She was born on the 5th November 1965.', 'DATE_OF_BIRTH')).toEqual(['5th November 1965']);
  });

  it('leaves other dates, days and school-year cut-offs alone', () => {
    expect(
      found("appointment on 14 March; it's my birthday on Friday; born between 1 September 2013 and 31 August 2014"),
    ).toEqual([]);
  });
});

describe('PERSON', () => {
  it('finds full names, non-English names and names after titles, without the title or possessive', () => {
    const text =
      'Nguyễn Văn An met Agnieszka Wiśniewska and Mohammed Al-Sayed. Dr Okafor, Coach Dan and Emma’s mum came, and Siobhán.';
    expect(only(text, 'PERSON')).toEqual([
      'Nguyễn Văn An',
      'Agnieszka Wiśniewska',
      'Mohammed Al-Sayed',
      'Okafor',
      'Dan',
      'Emma',
      'Siobhán',
    ]);
  });

  it('finds names in lowercase chat and after introductions', () => {
    expect(only('hi im lily and im 9', 'PERSON')).toEqual(['lily']);
    expect(only('my teacher mr okonkwo said so', 'PERSON')).toEqual(['okonkwo']);
    expect(only("I'm Oluwadamilare but everyone calls me Dami", 'PERSON')).toEqual(['Oluwadamilare', 'Dami']);
    expect(only('my friend chloe bennett', 'PERSON')).toEqual(['chloe bennett']);
  });

  it('reads word-names as names only with a cue', () => {
    expect(only('My daughter Grace and my son Will are 7.', 'PERSON')).toEqual(['Grace', 'Will']);
    expect(only('Grace is something you can offer yourself. Will you run together?', 'PERSON')).toEqual([]);
    expect(only('The electricity bill came today. Mark the fractions.', 'PERSON')).toEqual([]);
    expect(only('Faith from group said I could text her.', 'PERSON')).toEqual(['Faith']);
  });

  it('leaves biblical, historical, fictional and famous figures and Bible books alone', () => {
    const text =
      'Paul the apostle wrote Romans 8:28. King David fought Goliath in 1 Samuel 17. Read John 3:16. ' +
      'Henry VIII ruled England; Einstein and Taylor Swift are famous.';
    expect(only(text, 'PERSON')).toEqual([]);
  });

  it('labels the user who shares a biblical name, not the figure in the same text', () => {
    const text = 'My daughter Miriam wants to know if Miriam in Exodus 15 was really Moses’ sister.';
    expect(found(text)).toEqual([['PERSON', 'Miriam']]);
  });

  it('keeps initials and particles in the span', () => {
    expect(only('Refund it, t.n.v. R. de Vries.', 'PERSON')).toEqual(['R. de Vries']);
    expect(only('Ask Mr Van der Berg.', 'PERSON')).toEqual(['Van der Berg']);
  });
});

describe('negatives that must survive', () => {
  it('finds nothing in fitness, scripture, maths, money, versions and reference numbers', () => {
    const text = [
      'HR 152 bpm, 3x12 reps at 80 kg, pace 5:30/km, 1,850 kcal, 12,450 steps.',
      'Romans 8:28, Psalm 23:1-4, 1 Corinthians 13:4–7, Genesis 1.',
      '3x + 5 = 20, 144 / 12, 2^10 = 1024, score 8/10, 92%.',
      '£12.99, $4.50, €30 at 07:30 on 14 March 2024, in 1066.',
      'v2.3.1, iOS 17.4, Windows 10.0.19045, Order #FT-20931, ISBN 978-0-14-103614-4, 9780141036144.',
    ].join(' ');
    expect(found(text)).toEqual([]);
  });
});

describe('offsets', () => {
  it('are UTF-16 indices into the input, also after emoji and accents', () => {
    const text = '😊🇬🇧 Zoë here — email zoë.x@example.com 🥳';
    const entities = detect(text);
    for (const e of entities) expect(text.slice(e.start, e.end)).toMatch(/\S/);
    expect(entities.map((e) => [e.type, text.slice(e.start, e.end)])).toEqual([
      ['PERSON', 'Zoë'],
      ['EMAIL', 'x@example.com'],
    ]);
  });

  it('are sorted and never overlap', () => {
    const text = 'Sarah Jones, sarah@example.com, 07700 900461, 12 Baker Street, London NW1 6XE, @sarahj';
    const entities = detect(text);
    for (let i = 1; i < entities.length; i++) expect(entities[i]!.start).toBeGreaterThanOrEqual(entities[i - 1]!.end);
  });
});

describe('pathological input', () => {
  it('completes on 1 MB strings built to make regexes backtrack', () => {
    const mb = 1_000_000;
    const inputs = [
      'a'.repeat(mb),
      '1'.repeat(mb),
      '1 '.repeat(mb / 2),
      'a.'.repeat(mb / 2),
      '@a'.repeat(mb / 2),
      'a@'.repeat(mb / 2),
      ':'.repeat(mb),
      'f:'.repeat(mb / 2),
      'Aa '.repeat(mb / 3),
      '12 Aa '.repeat(mb / 6),
      'my son '.repeat(mb / 7),
      '+1 ('.repeat(mb / 4),
      'GB82 '.repeat(mb / 5),
      'born on 1 '.repeat(mb / 10),
    ];
    // None of them holds personal data: each must come back, and come back empty.
    for (const text of inputs) expect(detect(text), JSON.stringify(text.slice(0, 12))).toEqual([]);
  });
});
