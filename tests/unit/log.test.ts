import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pinoHttp } from 'pino-http';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log';

/** What the API's request log writes, for a request that carries every kind of secret a client sends or gets. */
describe('the request log', () => {
  it('writes no key, no session cookie and no cookie it sets', async () => {
    // Arrange: the API's logger behind pino-http, as createApp wires it, on a real socket
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = createLogger('debug', sink);
    const logged = pinoHttp({ logger: log, customLogLevel: () => 'warn' });
    const server = http.createServer((req, res) => {
      logged(req, res);
      res.setHeader('set-cookie', 'tl_session=set-secret; HttpOnly; SameSite=Strict');
      res.statusCode = 401;
      res.end('no');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;

    // Act
    try {
      await fetch(`http://127.0.0.1:${port}/ui`, {
        headers: {
          authorization: 'Bearer tl_abc_bearer-secret',
          'x-api-key': 'tl_abc_header-secret',
          cookie: 'tl_session=sent-secret',
        },
      }).then((r) => r.text());
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }

    // Assert: the request was logged, with every secret masked
    const text = lines.join('');
    expect(text).toContain('"url":"/ui"');
    expect(text).toContain('"statusCode":401');
    for (const secret of ['bearer-secret', 'header-secret', 'sent-secret', 'set-secret']) {
      expect(text).not.toContain(secret);
    }
  });
});
