// Configuration rules of SPEC §1 that concern the client IP: TRUST_PROXY and PROXY_PROTOCOL.
import { describe, expect, test } from '@jest/globals';
import { resolve } from 'node:path';
import { ConfigError, cidrBlockList, loadConfig } from '../../src/config.js';

const DEFAULTS = resolve('config/default.json');

function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env, DEFAULTS);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('configuration was accepted');
}

describe('PROXY_PROTOCOL and TRUST_PROXY (SPEC §1)', () => {
  test('PROXY_PROTOCOL needs TRUST_PROXY: the error names both', () => {
    for (const env of [{ PROXY_PROTOCOL: 'true' }, { PROXY_PROTOCOL: '1', TRUST_PROXY: ' , ' }]) {
      const err = configError(env);
      expect(err.message).toContain('PROXY_PROTOCOL');
      expect(err.message).toContain('TRUST_PROXY');
    }
    expect(loadConfig({ PROXY_PROTOCOL: 'true', TRUST_PROXY: '10.83.0.10/32' }, DEFAULTS)).toMatchObject({
      proxyProtocol: true, trustProxy: ['10.83.0.10/32'],
    });
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8' }, DEFAULTS).proxyProtocol).toBe(false);
  });

  test('TRUST_PROXY takes IPv4, IPv6 and IPv4-mapped CIDRs; refuses zones and bad prefixes', () => {
    expect(loadConfig({ TRUST_PROXY: '10.0.0.1, 2001:db8::/32, ::ffff:10.0.0.0/104' }, DEFAULTS).trustProxy).toHaveLength(3);
    for (const bad of ['fe80::1%eth0/64', '10.0.0.0/33', '10.0.0.0/0008', '10.0.0.0/8/1', 'lb.local']) {
      expect(configError({ TRUST_PROXY: bad }).variable).toBe('TRUST_PROXY');
    }
  });

  test('the TRUST_PROXY list matches IPv4 peers against IPv4-mapped rules and back', () => {
    const list = cidrBlockList(['::ffff:10.0.0.0/104', '192.0.2.1']);
    expect(list.check('10.1.2.3', 'ipv4')).toBe(true);
    expect(list.check('::ffff:192.0.2.1', 'ipv6')).toBe(true);
    expect(list.check('11.0.0.1', 'ipv4')).toBe(false);
  });
});

describe('NODE_ID (SPEC §1, §6)', () => {
  test('a node id that would break the cluster\'s Redis keys or $SYS topics is refused, naming NODE_ID', () => {
    // ':' splits aedes-persistence-redis' will and outgoing keys; '/', '+', '#' break `$SYS/<node>/heartbeat`.
    for (const bad of ['node:1', 'a:b:c', 'rack/1', 'n+1', 'n#1', 'two words', 'nul\u0000', 'tab\tx']) {
      const err = configError({ NODE_ID: bad });
      expect(err.variable).toBe('NODE_ID');
      expect(err.message.split('\n')).toHaveLength(1);
    }
    for (const good of ['node-1', 'tokenmq-7c9f.eu-west_1', 'ÉTÉ', '']) {
      expect(loadConfig({ NODE_ID: good }, DEFAULTS).nodeId).toBe(good);
    }
  });
});

describe('CONSOLE_WS_URL (SPEC §1, §9)', () => {
  test('unset by default; a ws:// or wss:// URL is taken as is', () => {
    expect(loadConfig({}, DEFAULTS).consoleWsUrl).toBe('');
    expect(loadConfig({ CONSOLE_WS_URL: 'wss://mq.example.com/mqtt' }, DEFAULTS).consoleWsUrl).toBe('wss://mq.example.com/mqtt');
    expect(loadConfig({ CONSOLE_WS_URL: 'ws://[2001:db8::1]:8083/mqtt' }, DEFAULTS).consoleWsUrl).toBe('ws://[2001:db8::1]:8083/mqtt');
  });

  test('refuses what is not a bare ws(s) URL: it goes into the console CSP header', () => {
    for (const bad of ['http://mq.example.com/mqtt', 'wss://mq.example.com/mqtt; script-src *', "wss://a 'unsafe-inline'", 'mq.example.com']) {
      expect(configError({ CONSOLE_WS_URL: bad }).variable).toBe('CONSOLE_WS_URL');
    }
  });
});
