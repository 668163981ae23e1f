import { describe, expect, it } from 'vitest';
import { isCreditCard, isIbanValid, isIpv4, isIpv6, isLuhnValid, isNhsNumberValid, isSsnValid } from '../../src/pii';

describe('Luhn (payment cards)', () => {
  it('accepts well-known test numbers of 13 to 19 digits, with spaces or dashes', () => {
    for (const card of [
      '4111 1111 1111 1111',
      '4111-1111-1111-1111',
      '5555555555554444',
      '378282246310005', // Amex, 15
      '30569309025904', // Diners, 14
      '4222222222222', // Visa, 13
      '6011 1111 1111 1117',
    ])
      expect(isCreditCard(card), card).toBe(true);
  });

  it('rejects a changed check digit, wrong lengths and all-same digits', () => {
    expect(isCreditCard('4111 1111 1111 1112')).toBe(false);
    expect(isCreditCard('411111111111')).toBe(false); // 12 digits
    expect(isCreditCard('41111111111111111111')).toBe(false); // 20 digits
    expect(isCreditCard('0000 0000 0000 0000')).toBe(false);
  });

  it('computes the plain checksum', () => {
    expect(isLuhnValid('79927398713')).toBe(true);
    expect(isLuhnValid('79927398710')).toBe(false);
  });
});

describe('IBAN (ISO 13616 mod 97)', () => {
  it('accepts valid IBANs with or without spaces, any case', () => {
    for (const iban of [
      'GB82 WEST 1234 5698 7654 32',
      'GB82WEST12345698765432',
      'DE89 3704 0044 0532 0130 00',
      'NL91ABNA0417164300',
      'FR14 2004 1010 0505 0001 3M02 606',
      'gb82 west 1234 5698 7654 32',
    ])
      expect(isIbanValid(iban), iban).toBe(true);
  });

  it('rejects a wrong check, a wrong length for the country and unknown countries', () => {
    expect(isIbanValid('GB83 WEST 1234 5698 7654 32')).toBe(false);
    expect(isIbanValid('GB82 WEST 1234 5698 7654 3')).toBe(false);
    expect(isIbanValid('XX82 WEST 1234 5698 7654 32')).toBe(false);
  });
});

describe('NHS number (mod 11)', () => {
  it('accepts valid numbers in 3-3-4 and plain form', () => {
    expect(isNhsNumberValid('943 476 5919')).toBe(true);
    expect(isNhsNumberValid('9434765919')).toBe(true);
    expect(isNhsNumberValid('943-476-5919')).toBe(true);
  });

  it('rejects a wrong check digit, a check digit of 10 and wrong lengths', () => {
    expect(isNhsNumberValid('943 476 5918')).toBe(false);
    expect(isNhsNumberValid('123 456 7890')).toBe(false); // remainder gives 10: never issued
    expect(isNhsNumberValid('943 476 591')).toBe(false);
  });
});

describe('SSN rules', () => {
  it('accepts area 001–899 except 666, group 01–99, serial 0001–9999', () => {
    expect(isSsnValid('123-45-6789')).toBe(true);
    expect(isSsnValid('579897665')).toBe(true);
  });

  it('rejects area 000, 666 and 9xx, group 00, serial 0000 and the advertising number', () => {
    for (const ssn of ['000-12-3456', '666-12-3456', '912-34-5678', '123-00-4567', '123-45-0000', '078-05-1120'])
      expect(isSsnValid(ssn), ssn).toBe(false);
  });
});

describe('IP addresses', () => {
  it('accepts dotted IPv4 with octets up to 255', () => {
    expect(isIpv4('192.168.1.1')).toBe(true);
    expect(isIpv4('8.8.8.8')).toBe(true);
    expect(isIpv4('256.1.1.1')).toBe(false);
    expect(isIpv4('1.2.3')).toBe(false);
    expect(isIpv4('01.2.3.4')).toBe(false);
  });

  it('accepts full, compressed and IPv4-mapped IPv6 forms', () => {
    for (const ip of [
      '2001:0db8:0000:0000:0000:ff00:0042:8329',
      '2001:db8::ff00:42:8329',
      '2001:db8::1',
      '::1',
      'fe80::',
      '::ffff:192.0.2.1',
      '2001:db8:ac10:fe01::2a',
    ])
      expect(isIpv6(ip), ip).toBe(true);
  });

  it('rejects two compressions, too many groups, long groups and times', () => {
    for (const ip of ['2001::db8::1', '1:2:3:4:5:6:7:8:9', '2001:db8:12345::1', '10:30:45', 'g::1'])
      expect(isIpv6(ip), ip).toBe(false);
  });
});
