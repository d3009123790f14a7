// The ops console (SPEC §9) in headless Chromium against a real node: login,
// Tokens, Sessions, Live, kick, what an ACL token's console hides, where the
// key lives. Screenshots of each view land in test-output/console/.
import { afterAll, beforeAll, describe, expect, jest, test } from '@jest/globals';
import { request as httpRequest } from 'node:http';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { MqttClient } from 'mqtt';
import { launchBrowser, logIn, screenshot } from '../helpers/browser.js';
import { closed, connect } from '../helpers/mqtt.js';
import { eventually, rest } from '../helpers/rest.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const UI_MS = 10_000;
// A browser walk through several views on a 2-core machine shared with other suites.
jest.setTimeout(60_000);

type Viewport = { width: number; height: number };
type WatchedPage = Page & { problems: string[] };

/** Ends a block's devices, browser contexts, browser and node, in that order. */
async function tearDown(devices: MqttClient[], contexts: BrowserContext[], browser: Browser | undefined, srv: TestServer | undefined): Promise<void> {
  await Promise.all(devices.map((d) => d.endAsync(true)));
  await Promise.all(contexts.map((c) => c.close()));
  await browser?.close();
  await srv?.close();
}

/** A page in a context of its own; any CSP violation or script error is collected for the test that caused it. */
async function openPage(browser: Browser, contexts: BrowserContext[], viewport: Viewport = { width: 1280, height: 800 }): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/status of 40[0134]/.test(msg.text())) problems.push(msg.text());
  });
  (page as WatchedPage).problems = problems;
  return page;
}
const problemsOf = (page: Page) => (page as WatchedPage).problems;

describe.each(['memory', 'redis'] as const)('console with the %s store (SPEC §9)', (kind) => {
  let srv: TestServer;
  let master: string;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const devices: MqttClient[] = [];
  const shot = (page: Page, name: string) => screenshot(page, `${kind}-${name}`);

  const newPage = (viewport?: Viewport) => openPage(browser, contexts, viewport);

  beforeAll(async () => {
    // Redis: cluster mode as main.ts wires it, so Sessions reads the Redis session directory of every node.
    srv = await startTestServer({ store: kind, cluster: kind === 'redis', console: true });
    master = (await srv.token({ access: { type: 1 }, info: 'ops' })).key;
    browser = await launchBrowser();
  });
  afterAll(() => tearDown(devices, contexts, browser, srv));

  test('GET / serves the console with a strict CSP naming the WebSocket URL; no path escapes the console folder', async () => {
    const page = await rest(srv.httpUrl, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain(`connect-src 'self' ws://127.0.0.1:${srv.ports.ws}/mqtt`);
    expect(page.text).not.toMatch(/<script>|<script [^>]*>[^<]/); // no inline script
    const js = await rest(srv.httpUrl, 'GET', '/console/app.js');
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    const config = await rest(srv.httpUrl, 'GET', '/console/config.json');
    expect(config.body).toEqual({ wsUrl: `ws://127.0.0.1:${srv.ports.ws}/mqtt` });
    for (const path of ['/console/../package.json', '/console/%2e%2e/package.json', '/console/..%2f..%2fpackage.json', '/console/vendor/../../api.js', '/console/%2fetc%2fpasswd']) {
      const res = await rest(srv.httpUrl, 'GET', path);
      expect([res.status, path]).toEqual([404, path]);
      expect(res.text).not.toContain('"name": "tokenmq"');
    }
  });

  test('master: log in, create a token, see its device in Sessions, its message in Live, kick it; the key stays in sessionStorage only', async () => {
    const page = await newPage();
    await page.goto(`${srv.httpUrl}/`);
    await page.getByLabel('Token key').waitFor();
    await shot(page, 'login');
    await logIn(page, srv.httpUrl, master);
    await shot(page, 'sessions-empty');

    // Tokens: create one; its key is shown once.
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.getByRole('button', { name: 'New token' }).click();
    await page.getByLabel('Info').fill('console device');
    await page.getByRole('button', { name: 'Create' }).click();
    const keyBox = page.getByTestId('new-key');
    await keyBox.waitFor({ timeout: UI_MS });
    const deviceKey = (await keyBox.textContent())!.trim();
    expect(deviceKey).toMatch(/^[A-Za-z0-9]{64}$/);
    await page.locator('tr[data-token-id]', { hasText: 'console device' }).waitFor({ timeout: UI_MS });
    await shot(page, 'tokens');

    // A real device with that key appears in Sessions.
    const device = await connect(srv.mqttUrl, deviceKey, { clientId: `dev-${kind}-1` });
    devices.push(device);
    await device.subscribeAsync('devices/1/cmd', { qos: 1 });
    await page.getByRole('link', { name: 'Sessions' }).click();
    const row = page.locator(`tr[data-client-id="dev-${kind}-1"]`);
    await row.waitFor({ timeout: UI_MS });
    await row.getByRole('button', { name: 'Subscriptions' }).click();
    await page.locator('ul.subs li', { hasText: 'devices/1/cmd' }).getByText('QoS 1').waitFor({ timeout: UI_MS });
    // Filter by token id: only that token's sessions stay.
    const deviceTokenId = (await srv.store.get('all')).find((t) => t.info === 'console device')!.id;
    await page.getByLabel('Token id').fill(String(deviceTokenId));
    await page.locator('table.sessions tbody tr[data-client-id]').nth(1).waitFor({ state: 'detached', timeout: UI_MS });
    await expect(page.locator('table.sessions tbody tr[data-client-id]').allTextContents()).resolves.toEqual([expect.stringContaining(`dev-${kind}-1`)]);
    await shot(page, 'sessions');
    await page.getByLabel('Token id').fill('');

    // Live: the device's message arrives, newest on top.
    await page.getByRole('link', { name: 'Live' }).click();
    await page.getByTestId('mqtt-state').getByText('connected', { exact: true }).waitFor({ timeout: UI_MS });
    await page.getByLabel('Topic filter').fill('devices/#');
    await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
    await page.locator('li[data-filter="devices/#"]', { hasText: 'granted QoS 0' }).waitFor({ timeout: UI_MS });
    await device.publishAsync('devices/1/temp', '21.5');
    await device.publishAsync('devices/1/temp', Buffer.from([0xde, 0xad, 0xbe, 0xef]));
    const first = page.locator('.messages li').first();
    await first.getByText('(binary, 4 bytes) de ad be ef').waitFor({ timeout: UI_MS });
    await page.locator('.messages li', { hasText: '21.5' }).waitFor({ timeout: UI_MS });
    await shot(page, 'live');
    // Pause: the list stays still; Resume shows what came meanwhile. Hex shows the bytes.
    await page.getByRole('button', { name: 'Pause' }).click();
    await device.publishAsync('devices/1/temp', 'while paused');
    await page.getByRole('status').getByText('paused').waitFor();
    expect(await page.locator('.messages li').count()).toBe(2);
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.locator('.messages li').first().getByText('while paused').waitFor({ timeout: UI_MS });
    await page.getByLabel('Payload').selectOption('hex');
    await page.locator('.messages li').nth(1).getByText('de ad be ef', { exact: true }).waitFor();

    // Kick with confirmation: the device sees its connection close.
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.getByRole('button', { name: `Kick dev-${kind}-1` }).click();
    const gone = closed(device, UI_MS);
    await page.getByRole('button', { name: 'Confirm kick' }).click();
    await gone;
    await page.locator(`tr[data-client-id="dev-${kind}-1"]`).waitFor({ state: 'detached', timeout: UI_MS });

    // SPEC §9: the key is kept in sessionStorage only: not in the URL, a cookie or localStorage.
    expect(page.url()).not.toContain(master);
    expect(await page.context().cookies()).toEqual([]);
    const storage = await page.evaluate<{ local: string; session: string }>('({ local: JSON.stringify(localStorage), session: JSON.stringify(sessionStorage) })');
    expect(storage.local).not.toContain(master);
    expect(storage.session).toContain(master);

    // Views whose API this node lacks are hidden (SPEC §9): Retained needs GET /mqtt/messages/{filter}.
    const doc = (await rest(srv.httpUrl, 'GET', '/openapi.json')).body as { paths: Record<string, unknown> };
    const expected = ['Sessions', 'Tokens', 'Live', ...('/mqtt/messages/{filter}' in doc.paths ? ['Retained'] : []), 'Events'];
    await expect(page.getByRole('navigation', { name: 'Views' }).getByRole('link').allTextContents()).resolves.toEqual(expected);

    // Events: a master token watches $tokenmq/events/# live.
    await page.getByRole('link', { name: 'Events' }).click();
    await page.getByText('subscribed').waitFor({ timeout: UI_MS });
    await shot(page, 'events');
    expect(problemsOf(page)).toEqual([]);
  });

  test("a client id with ',' is one session (SPEC §5: the selector is one URL-encoded client id): its own subscriptions, and Kick closes that client only", async () => {
    const listed = await connect(srv.mqttUrl, master, { clientId: `x-${kind},y` });
    const bystander = await connect(srv.mqttUrl, master, { clientId: `x-${kind}` });
    devices.push(listed, bystander);
    await listed.subscribeAsync('only/xy');
    await bystander.subscribeAsync('only/x');
    const page = await newPage();
    await logIn(page, srv.httpUrl, master);
    const row = page.locator(`tr[data-client-id="x-${kind},y"]`);
    await row.waitFor({ timeout: UI_MS });
    const kick = row.getByRole('button', { name: `Kick x-${kind},y`, exact: true });
    expect(await kick.isDisabled()).toBe(false);
    await row.getByRole('button', { name: 'Subscriptions' }).click();
    const subs = page.getByRole('list', { name: `subscriptions of x-${kind},y` });
    await subs.getByText('only/xy').waitFor({ timeout: UI_MS });
    expect(await subs.getByText('only/x', { exact: true }).count()).toBe(0);

    await kick.click();
    const gone = closed(listed, UI_MS);
    await page.getByRole('button', { name: 'Confirm kick' }).click();
    await gone;
    await row.waitFor({ state: 'detached', timeout: UI_MS });
    // `x-<kind>`, what reading ',' as a list would have closed too, is still there.
    const still = await rest(srv.httpUrl, 'GET', `/mqtt/sessions/x-${kind}`, { key: master });
    expect(still.body.result).toEqual([expect.objectContaining({ client_id: `x-${kind}` })]);
    expect(bystander.connected).toBe(true);
    expect(problemsOf(page)).toEqual([]);
  });

  test('the ACL editor refuses a bad filter next to its field and shows the server reason', async () => {
    const page = await newPage();
    await logIn(page, srv.httpUrl, master);
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.getByRole('button', { name: 'New token' }).click();
    await page.getByLabel('Access').selectOption({ label: 'ACL' });
    await page.getByRole('button', { name: 'Add MQTT topic entry' }).click();
    await page.getByLabel('Topic filter').fill('devices/#/x');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByText("topic filter '#' must be the last level").waitFor({ timeout: UI_MS });
    // A reason only the server knows (ttl beyond its maximum) is shown as the server says it.
    await page.getByLabel('Topic filter').fill('devices/#');
    await page.getByLabel('TTL (s)').fill('99999999999');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.locator('.field-error', { hasText: 'ttl' }).waitFor({ timeout: UI_MS });
    await shot(page, 'tokens-acl-editor');
    await page.getByRole('button', { name: 'Cancel' }).click();

    // Edit, disable, enable, delete (with confirmation) of a stored token.
    const t = await srv.token({ info: 'to change' });
    const row = page.locator(`tr[data-token-id="${t.id}"]`);
    await row.waitFor({ timeout: UI_MS });
    await page.getByRole('button', { name: `disable token ${t.id}` }).click();
    await row.getByText('no', { exact: true }).waitFor({ timeout: UI_MS });
    expect((await srv.store.get([t.id]))[0]!.enabled).toBe(false);
    await page.getByRole('button', { name: `enable token ${t.id}` }).click();
    await row.getByText('yes', { exact: true }).waitFor({ timeout: UI_MS });
    await page.getByRole('button', { name: `edit token ${t.id}` }).click();
    await page.getByLabel('Info').fill('changed');
    await page.getByRole('button', { name: 'Save' }).click();
    await row.getByText('changed', { exact: true }).waitFor({ timeout: UI_MS });
    await page.getByRole('button', { name: `Delete token ${t.id}` }).click();
    await page.getByRole('button', { name: 'Confirm delete' }).click();
    await row.waitFor({ state: 'detached', timeout: UI_MS });
    expect(await srv.store.get([t.id])).toEqual([]);
  });

  test('an ACL token sees only what it may use; a filter outside its ACL is shown as refused', async () => {
    const acl = await srv.token({ info: 'dashboard', access: { type: 2, acl: [{ uri: 'mqtt', topic: 'devices/42/#', actions: ['subscribe'] }] } });
    const page = await newPage();
    // Keyboard only: the key field has the focus on load, Enter submits.
    await page.goto(`${srv.httpUrl}/`);
    await page.getByLabel('Token key').waitFor();
    await page.keyboard.type(acl.key);
    await page.keyboard.press('Enter');
    await page.getByRole('navigation', { name: 'Views' }).waitFor();
    const nav = page.getByRole('navigation', { name: 'Views' });
    // Tokens: any valid token may mint a child token (POST /auth/tokens); nothing else of it (no listing).
    await expect(nav.getByRole('link').allTextContents()).resolves.toEqual(['Tokens', 'Live']);
    await nav.getByRole('link', { name: 'Live' }).click();
    await page.getByTestId('mqtt-state').getByText('connected', { exact: true }).waitFor({ timeout: UI_MS });
    await page.getByLabel('Topic filter').fill('test/x');
    await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
    await page.locator('li[data-filter="test/x"]', { hasText: 'refused' }).waitFor({ timeout: UI_MS });
    await page.getByLabel('Topic filter').fill('#');
    await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
    await page.locator('li[data-filter="#"]', { hasText: 'granted' }).waitFor({ timeout: UI_MS });
    const publisher = await connect(srv.mqttUrl, master);
    devices.push(publisher);
    await publisher.publishAsync('other/1', 'not for the dashboard');
    await publisher.publishAsync('devices/42/state', 'on');
    await page.locator('.messages li', { hasText: 'devices/42/state' }).waitFor({ timeout: UI_MS });
    expect(await page.locator('.messages li').count()).toBe(1);
    await shot(page, 'live-acl');

    // A sessions-only ACL token: Sessions without Kick; Tokens only to mint a child.
    const viewer = await srv.token({
      info: 'viewer',
      access: { type: 2, acl: [{ uri: 'mqtt/sessions', methods: ['GET'] }, { uri: 'mqtt', topic: 'x/#', actions: ['subscribe'] }] },
    });
    const device = await connect(srv.mqttUrl, master, { clientId: `seen-${kind}` });
    devices.push(device);
    const page2 = await newPage({ width: 390, height: 844 });
    await logIn(page2, srv.httpUrl, viewer.key);
    await expect(page2.getByRole('navigation', { name: 'Views' }).getByRole('link').allTextContents()).resolves.toEqual(['Sessions', 'Tokens', 'Live']);
    await page2.locator(`tr[data-client-id="seen-${kind}"]`).waitFor({ timeout: UI_MS });
    expect(await page2.getByRole('button', { name: /^Kick/ }).count()).toBe(0);
    // SPEC §3: GET on mqtt/sessions does not grant its subscriptions submodule: no button that could only answer 403.
    expect(await page2.getByRole('button', { name: 'Subscriptions' }).count()).toBe(0);
    await shot(page2, 'sessions-phone-acl');
    await page2.getByRole('link', { name: 'Live' }).click();
    await page2.getByTestId('mqtt-state').getByText('connected', { exact: true }).waitFor({ timeout: UI_MS });
    await shot(page2, 'live-phone-acl');

    // The token is disabled while logged in: the console goes back to the login with the API's reason, the key forgotten.
    await srv.store.update([viewer.id], { enabled: false }, Math.floor(Date.now() / 1000));
    await page2.getByRole('link', { name: 'Sessions' }).click();
    await page2.getByRole('alert').getByText('Logged out: token disabled').waitFor({ timeout: UI_MS });
    expect(await page2.evaluate<string>('JSON.stringify(sessionStorage)')).not.toContain(viewer.key);
    expect(problemsOf(page)).toEqual([]);
    expect(problemsOf(page2)).toEqual([]);
  });
});

// What the API offers since the console was written: token `limits` (SPEC §2),
// REST entries' `ids` and `submodules` (SPEC §3), session selectors that are
// one URL-encoded client id (SPEC §5). The console writes, REST reads back.
describe('console: limits, ACL ids and submodules, one-client-id selectors (memory store)', () => {
  let srv: TestServer;
  let master: string;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const devices: MqttClient[] = [];
  const newPage = (viewport?: Viewport) => openPage(browser, contexts, viewport);
  const shot = (page: Page, name: string) => screenshot(page, `memory-${name}`);
  const tokenById = async (id: number) => {
    const res = await rest(srv.httpUrl, 'GET', `/platform/tokens/${id}`, { key: master });
    expect(res.status).toBe(200);
    return res.body.result[0];
  };
  const tokenByInfo = async (info: string) => {
    const res = await rest(srv.httpUrl, 'GET', '/platform/tokens/all', { key: master });
    const found = (res.body.result as ({ id: number; info: string } & Record<string, unknown>)[]).filter((t) => t.info === info);
    expect(found).toHaveLength(1);
    return found[0]!;
  };
  async function tokensPage(): Promise<Page> {
    const page = await newPage();
    await logIn(page, srv.httpUrl, master);
    await page.getByRole('link', { name: 'Tokens' }).click();
    return page;
  }
  const fieldError = (page: Page, field: string) => page.locator(`[id="err-${field}"]`);

  beforeAll(async () => {
    srv = await startTestServer({ store: 'memory', console: true });
    master = (await srv.token({ access: { type: 1 }, info: 'ops' })).key;
    browser = await launchBrowser();
  });
  afterAll(() => tearDown(devices, contexts, browser, srv));

  test('limits set in the form are what REST returns and show in the list; a refused value shows the API reason next to its field; emptied, they are unlimited (SPEC §2 limits)', async () => {
    const page = await tokensPage();
    await page.getByRole('button', { name: 'New token' }).click();
    await page.getByLabel('Info').fill('limited');
    await page.getByLabel('Max sessions').fill('5x');
    await page.getByRole('button', { name: 'Create' }).click();
    await fieldError(page, 'limits.sessions').getByText('must be a whole number').waitFor({ timeout: UI_MS });
    // A bound only the server knows: its 400 names the field, shown next to it.
    await page.getByLabel('Max sessions').fill('5');
    await page.getByLabel('Publish rate').fill('99999999');
    await page.getByRole('button', { name: 'Create' }).click();
    await fieldError(page, 'limits.publish_rate').getByText(/^limits\.publish_rate: /).waitFor({ timeout: UI_MS });
    expect(await page.getByLabel('Publish rate').getAttribute('aria-invalid')).toBe('true');
    await shot(page, 'tokens-limits-refused');
    await page.getByLabel('Publish rate').fill('10');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByTestId('new-key').waitFor({ timeout: UI_MS });
    const created = await tokenByInfo('limited');
    expect(created.limits).toEqual({ sessions: 5, publish_rate: 10 });
    const row = page.locator(`tr[data-token-id="${created.id}"]`);
    await row.locator('td[data-label="Limits"]').getByText('≤ 5 sessions, 10 msg/s', { exact: true }).waitFor({ timeout: UI_MS });
    await shot(page, 'tokens-limits');

    // Edit shows them; emptied, they are sent as 0 (unlimited) and the list shows none.
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByRole('button', { name: `edit token ${created.id}` }).click();
    expect(await page.getByLabel('Max sessions').inputValue()).toBe('5');
    expect(await page.getByLabel('Publish rate').inputValue()).toBe('10');
    await page.getByLabel('Max sessions').fill('');
    await page.getByLabel('Publish rate').fill('0');
    await page.getByRole('button', { name: 'Save' }).click();
    await row.locator('td[data-label="Limits"]').getByText('—').waitFor({ timeout: UI_MS });
    expect((await tokenById(created.id)).limits).toEqual({ sessions: 0, publish_rate: 0 });
    expect(problemsOf(page)).toEqual([]);
  });

  test('an ACL token with a mqtt/sessions entry with ids and submodules, made in the editor, is what REST returns; the API judges and its reason shows next to the value (SPEC §3)', async () => {
    const page = await tokensPage();
    await page.getByRole('button', { name: 'New token' }).click();
    await page.getByLabel('Info').fill('session desk');
    await page.getByLabel('Access').selectOption({ label: 'ACL' });
    await page.getByRole('button', { name: 'Add MQTT topic entry' }).click();
    await page.getByLabel('Topic filter').fill('desk/#');
    await page.getByRole('button', { name: 'Add REST entry' }).click();
    const entry = page.locator('.acl-row[data-entry="1"]');
    await entry.getByLabel('DELETE', { exact: true }).check();
    await entry.getByRole('button', { name: 'add client id mask to entry 2' }).click();
    await entry.getByRole('button', { name: 'add client id mask to entry 2' }).click();
    await entry.getByLabel('entry 2 client id mask 1').fill('desk-*');
    await entry.getByLabel('entry 2 subscriptions GET').check();

    // An empty mask: the API's reason, next to that mask.
    await page.getByRole('button', { name: 'Create' }).click();
    await fieldError(page, 'access.acl[1].ids[1]').getByText(/^access\.acl\[1\]\.ids\[1\]: /).waitFor({ timeout: UI_MS });
    expect(await entry.getByLabel('entry 2 client id mask 2').getAttribute('aria-invalid')).toBe('true');
    // ids on another uri: still shown (never dropped behind the user's back), and the API says why not.
    await entry.getByLabel('entry 2 client id mask 2').fill('a,b');
    await entry.getByLabel('REST uri').selectOption('mqtt/messages');
    await page.getByRole('button', { name: 'Create' }).click();
    await fieldError(page, 'access.acl[1].ids').getByText("only an entry with uri 'mqtt/sessions' takes it").waitFor({ timeout: UI_MS });
    await shot(page, 'tokens-acl-scope-refused');
    await entry.getByLabel('REST uri').selectOption('mqtt/sessions');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByTestId('new-key').waitFor({ timeout: UI_MS });

    const stored = await tokenByInfo('session desk');
    expect(stored.access).toEqual({ type: 2, acl: [
      { uri: 'mqtt', topic: 'desk/#', actions: ['subscribe'] },
      { uri: 'mqtt/sessions', methods: ['GET', 'DELETE'], ids: ['desk-*', 'a,b'], submodules: [{ name: 'subscriptions', methods: ['GET'] }] },
    ] });
    // Edit shows what REST returns.
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByRole('button', { name: `edit token ${stored.id}` }).click();
    const shown = page.locator('.acl-row[data-entry="1"]');
    expect(await shown.getByLabel('entry 2 client id mask 1').inputValue()).toBe('desk-*');
    expect(await shown.getByLabel('entry 2 client id mask 2').inputValue()).toBe('a,b');
    expect(await shown.getByLabel('entry 2 subscriptions GET').isChecked()).toBe(true);
    expect(await shown.getByLabel('entry 2 subscriptions DELETE').isChecked()).toBe(false);
    expect(await shown.getByLabel('DELETE', { exact: true }).isChecked()).toBe(true);
    await shot(page, 'tokens-acl-scope');
    expect(problemsOf(page)).toEqual([]);
  });

  test('editing a token keeps what the editor does not show (metadata, other methods, entry fields) and changes only what was edited (SPEC §5 PUT)', async () => {
    const acl = [
      { uri: 'mqtt', topic: 'keep/#', actions: ['publish', 'subscribe'] },
      { uri: 'mqtt/sessions', methods: ['GET', 'PATCH'], ids: ['keep-*'], submodules: [{ name: 'subscriptions', methods: ['GET', 'DELETE'] }] },
      { uri: 'mqtt/messages', methods: ['POST'] },
    ] as const;
    const t = await srv.token({
      info: 'keep me', ttl: 3600, ips: '127.0.0.1, 10.0.0.0/8', clientids: 'keep-*', metadata: { customer: 'acme', site: 'north' },
      limits: { sessions: 3, publish_rate: 0 }, access: { type: 2, acl: acl.map((e) => structuredClone(e)) as never },
    });
    const before = await tokenById(t.id);
    const page = await tokensPage();
    await page.getByRole('button', { name: `edit token ${t.id}` }).click();
    await page.getByLabel('Info').fill('kept');
    // A change to one entry resends the whole access: the other entries go back as they came.
    await page.locator('.acl-row[data-entry="0"]').getByLabel('publish').uncheck();
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, 'tokens-edit-phone');
    const put = page.waitForRequest((r) => r.method() === 'PUT');
    await page.getByRole('button', { name: 'Save' }).click();
    expect(Object.keys((await put).postDataJSON()).sort()).toEqual(['access', 'info']);
    await page.locator(`tr[data-token-id="${t.id}"]`).getByText('kept', { exact: true }).waitFor({ timeout: UI_MS });
    const after = await tokenById(t.id);
    expect(after).toEqual({
      ...before, info: 'kept', accessed: expect.any(Number),
      access: { type: 2, acl: [{ ...acl[0], actions: ['subscribe'] }, acl[1], acl[2]] },
    });
    expect(problemsOf(page)).toEqual([]);
  });

  test('editing a token: client id masks emptied in the form are sent, so the token admits every client id again (SPEC §5 PUT changes the fields given)', async () => {
    const t = await srv.token({ info: 'clear masks', clientids: 'only-*' });
    const page = await tokensPage();
    await page.getByRole('button', { name: `edit token ${t.id}` }).click();
    await page.getByLabel('Client id masks').fill('');
    const put = page.waitForResponse((r) => r.request().method() === 'PUT');
    await page.getByRole('button', { name: 'Save' }).click();
    await put;
    expect((await tokenById(t.id)).clientids).toBe('');
  });

  test('an ACL token whose mqtt/sessions entry has ids and the subscriptions submodule sees only those sessions, and their subscriptions (SPEC §3)', async () => {
    const desk = await srv.token({
      info: 'desk viewer',
      access: { type: 2, acl: [
        { uri: 'mqtt/sessions', methods: ['GET'], ids: ['desk-*'], submodules: [{ name: 'subscriptions', methods: ['GET'] }] },
        { uri: 'mqtt', topic: 'desk/#', actions: ['subscribe'] },
      ] },
    });
    const mine = await connect(srv.mqttUrl, master, { clientId: 'desk-1' });
    const other = await connect(srv.mqttUrl, master, { clientId: 'yard-1' });
    devices.push(mine, other);
    await mine.subscribeAsync('desk/1/cmd');
    const page = await newPage();
    await logIn(page, srv.httpUrl, desk.key);
    const row = page.locator('tr[data-client-id="desk-1"]');
    await row.waitFor({ timeout: UI_MS });
    await expect(page.locator('table.sessions tbody tr[data-client-id]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-client-id'))))
      .resolves.toEqual(['desk-1']);
    expect(await row.getByRole('button', { name: /^Kick/ }).count()).toBe(0);
    await row.getByRole('button', { name: 'Subscriptions' }).click();
    await page.getByRole('list', { name: 'subscriptions of desk-1' }).getByText('desk/1/cmd').waitFor({ timeout: UI_MS });
    await shot(page, 'sessions-acl-ids');
    expect(problemsOf(page)).toEqual([]);
  });

  test("a reason naming a field is shown next to it, also as \"unknown field 'x'\" from a node without that field (SPEC §9: errors show the API's reason)", async () => {
    const page = await tokensPage();
    // A node that predates SPEC §2 `clientids` (the answer is stubbed: this node has it).
    await page.route(/\/platform\/tokens$/, (route) => route.fulfill({ status: 400, json: { errors: [{ code: 400, reason: "unknown field 'clientids'" }] } }));
    await page.getByRole('button', { name: 'New token' }).click();
    await page.getByLabel('Client id masks').fill('dev-*');
    const answered = page.waitForResponse((r) => r.request().method() === 'POST');
    await page.getByRole('button', { name: 'Create' }).click();
    await answered;
    // The form is done with the answer once its button is enabled again (it is disabled while the request runs).
    await page.waitForFunction('!document.querySelector(\'form.token-form button[type="submit"]\')?.disabled');
    expect(await fieldError(page, 'clientids').allTextContents()).toEqual(["unknown field 'clientids'"]);
  });

  test("the client ids a session path cannot name ('all', '..', '.') show their own subscriptions and are kicked alone (SPEC §5 session selectors)", async () => {
    const bystander = await connect(srv.mqttUrl, master, { clientId: 'bystander' });
    devices.push(bystander);
    await bystander.subscribeAsync('only/bystander');
    const page = await newPage();
    await logIn(page, srv.httpUrl, master);
    for (const id of ['all', '..', '.']) {
      const device = await connect(srv.mqttUrl, master, { clientId: id });
      devices.push(device);
      await device.subscribeAsync(`only/${id}`);
      const row = page.locator(`tr[data-client-id="${id}"]`);
      await row.waitFor({ timeout: UI_MS });
      await row.getByRole('button', { name: 'Subscriptions' }).click();
      const subs = page.getByRole('list', { name: `subscriptions of ${id}` });
      await subs.getByText(`only/${id}`).waitFor({ timeout: UI_MS });
      expect(await subs.getByText('only/bystander').count()).toBe(0);
      await row.getByRole('button', { name: `Kick ${id}`, exact: true }).click();
      const gone = closed(device, UI_MS);
      await page.getByRole('button', { name: 'Confirm kick' }).click();
      await gone;
      await row.waitFor({ state: 'detached', timeout: UI_MS });
      const still = await rest(srv.httpUrl, 'GET', '/mqtt/sessions/bystander', { key: master });
      expect([id, still.body.result]).toEqual([id, [expect.objectContaining({ client_id: 'bystander' })]]);
      expect(bystander.connected).toBe(true);
    }
    await page.getByRole('alert').waitFor({ state: 'detached' });
    expect(problemsOf(page)).toEqual([]);
  });
});

describe('console WebSocket URL and CSP (SPEC §1 CONSOLE_WS_URL)', () => {
  test('CONSOLE_WS_URL is what the page is told and the only WebSocket its CSP allows', async () => {
    const srv = await startTestServer({ console: { wsUrl: 'wss://mq.example.com/mqtt' } });
    try {
      const page = await rest(srv.httpUrl, 'GET', '/');
      expect(page.headers.get('content-security-policy')).toContain("connect-src 'self' wss://mq.example.com/mqtt;");
      expect((await rest(srv.httpUrl, 'GET', '/console/config.json')).body).toEqual({ wsUrl: 'wss://mq.example.com/mqtt' });
    } finally {
      await srv.close();
    }
  });

  test('unset: the Host header names the WebSocket host, and a Host that is not a plain host cannot write into the CSP', async () => {
    const srv = await startTestServer({ console: true });
    const get = (host: string) => new Promise<{ csp: string; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: srv.ports.http, path: '/console/config.json', headers: { host } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => resolve({ csp: String(res.headers['content-security-policy']), body }));
      });
      req.on('error', reject);
      req.end();
    });
    try {
      const named = await get('console.example.com:8080');
      expect(JSON.parse(named.body)).toEqual({ wsUrl: `ws://console.example.com:${srv.ports.ws}/mqtt` });
      expect(named.csp).toContain(`connect-src 'self' ws://console.example.com:${srv.ports.ws}/mqtt;`);
      const evil = await get("x.example; script-src 'unsafe-inline' *");
      expect(evil.csp).not.toContain('unsafe-inline');
      expect(evil.csp).toContain(`connect-src 'self' ws://127.0.0.1:${srv.ports.ws}/mqtt;`);
    } finally {
      await srv.close();
    }
  });
});

// Views and parameters for routes SPEC §5 defines that this node may not have yet:
// the browser is told they exist (/openapi.json) and gets SPEC-shaped answers,
// so the console's use of them is checked before the routes land.
describe('console against SPEC §5 routes a node may not have yet (answers stubbed in the browser)', () => {
  let srv: TestServer;
  let browser: Browser;
  let context: BrowserContext;

  beforeAll(async () => {
    srv = await startTestServer({ console: true });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await srv?.close();
  });

  test('Sessions and Tokens page on the server, Retained browses and deletes, Events reads the log, Tokens mints children', async () => {
    const master = (await srv.token({ access: { type: 1 } })).key;
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const extra: Record<string, Record<string, { parameters?: unknown[] }>> = {
      '/mqtt/messages/{filter}': { get: {}, delete: {} },
      '/mqtt/logs': { get: {} },
      '/auth/tokens': { post: {} },
    };
    const query = (name: string) => ({ parameters: [{ in: 'query', name }] });
    await page.route('**/openapi.json', async (route) => {
      const doc = await (await route.fetch()).json() as { paths: Record<string, Record<string, { parameters?: unknown[] }>> };
      for (const [path, ops] of Object.entries(extra)) doc.paths[path] = ops;
      doc.paths['/mqtt/sessions/{sel}']!.get!.parameters = ['fields', 'token_id', 'client_id', 'ip', 'limit', 'offset'].map((n) => query(n).parameters[0]);
      doc.paths['/platform/tokens/{sel}']!.get!.parameters = ['fields', 'limit', 'offset'].map((n) => query(n).parameters[0]);
      await route.fulfill({ json: doc });
    });
    const asked: string[] = [];
    await page.route(/\/mqtt\/sessions\/all\?/, async (route) => {
      asked.push(route.request().url());
      const u = new URL(route.request().url());
      const offset = Number(u.searchParams.get('offset'));
      const result = Array.from({ length: 50 }, (_, i) => ({
        client_id: `paged-${offset + i}`, token_id: 9, ip: '10.0.0.1', transport: 'ws', node: 'n1', connected: 1764300000, msgs_in: 1, msgs_out: 2,
      }));
      await route.fulfill({ json: { result, pagination: { offset, limit: 50, total: 12345 } } });
    });
    await page.route(/\/platform\/tokens\/[^/]+\?limit=/, async (route) => {
      asked.push(route.request().url());
      await route.fulfill({ json: { result: [{ id: 77, info: 'paged token', enabled: true, expire: 0, ttl: 60, created: 1, accessed: 1764300000, access: { type: 0 } }], pagination: { offset: 0, limit: 25, total: 3000 } } });
    });
    let deleted = '';
    await page.route(/\/mqtt\/messages\//, async (route) => {
      if (route.request().method() === 'DELETE') {
        deleted = decodeURIComponent(new URL(route.request().url()).pathname.split('/').pop()!);
        await route.fulfill({ json: { result: [deleted] } });
      } else {
        await route.fulfill({ json: { result: [
          { topic: 'devices/1/state', payload: Buffer.from('on').toString('base64'), qos: 1, size: 2 },
          { topic: 'devices/2/raw', payload: Buffer.from([1, 2, 255]).toString('base64'), qos: 0, size: 3 },
        ] } });
      }
    });
    await page.route(/\/mqtt\/logs/, (route) => route.fulfill({ json: { result: [
      { time: 1764300000.5, event: 'kicked', node: 'n1', client_id: 'dev-1', token_id: 9, ip: '10.0.0.1', reason: 'closed via REST API', by: 1 },
      { time: 1764299990.1, event: 'connected', node: 'n1', client_id: 'dev-1', token_id: 9, ip: '10.0.0.1', transport: 'tcp' },
    ] } }));
    let minted: unknown = null;
    await page.route(/\/auth\/tokens$/, async (route) => {
      minted = route.request().postDataJSON();
      await route.fulfill({ json: { result: [{ id: 99, key: 'K'.repeat(64), info: 'child', enabled: true, ttl: 600, expire: 0, access: { type: 2, acl: [] } }] } });
    });

    await logIn(page, srv.httpUrl, master);
    await expect(page.getByRole('navigation', { name: 'Views' }).getByRole('link').allTextContents())
      .resolves.toEqual(['Sessions', 'Tokens', 'Live', 'Retained', 'Events']);

    // Sessions: the server pages and filters (SPEC §5 limit/offset/client_id masks).
    await page.locator('tr[data-client-id="paged-0"]').waitFor({ timeout: UI_MS });
    await page.getByText('1–50 of 12345').first().waitFor();
    await page.getByRole('button', { name: 'Next' }).first().click();
    await page.locator('tr[data-client-id="paged-50"]').waitFor({ timeout: UI_MS });
    await page.getByLabel('Client id').fill('dev');
    await eventually(() => asked.some((u) => new URL(u).searchParams.get('client_id') === '*dev*' && new URL(u).searchParams.get('offset') === '0'));

    // Tokens: server paging with an info mask; mint a child token.
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.locator('tr[data-token-id="77"]').waitFor({ timeout: UI_MS });
    await page.getByText('1–25 of 3000').waitFor();
    await page.getByLabel('Filter').fill('truck');
    await eventually(() => asked.some((u) => decodeURIComponent(new URL(u).pathname).endsWith('/platform/tokens/info=*truck*')));
    await page.getByRole('button', { name: 'Mint child token' }).click();
    await page.getByLabel('Info').fill('child');
    await page.getByLabel('TTL (s)').fill('600');
    await page.getByRole('button', { name: 'Add MQTT topic entry' }).click();
    await page.getByLabel('Topic filter').fill('devices/1/#');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByTestId('new-key').getByText('K'.repeat(64)).waitFor({ timeout: UI_MS });
    expect(minted).toEqual({ info: 'child', ips: '', ttl: 600, expire: 0, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'devices/1/#', actions: ['subscribe'] }] } });
    await screenshot(page, 'stub-tokens-mint');

    // Retained: browse by filter, text and hex, delete with confirmation.
    await page.getByRole('link', { name: 'Retained' }).click();
    await page.getByRole('button', { name: 'Show' }).click();
    await page.locator('tr', { hasText: 'devices/1/state' }).getByText('on', { exact: true }).waitFor({ timeout: UI_MS });
    await page.locator('tr', { hasText: 'devices/2/raw' }).getByText('(binary, 3 bytes) 01 02 ff').waitFor();
    await screenshot(page, 'stub-retained');
    await page.getByRole('button', { name: 'Delete devices/1/state' }).click();
    await page.getByRole('button', { name: 'Confirm delete' }).click();
    await eventually(() => deleted === 'devices/1/state');

    // Events: the broker log beside the live events.
    await page.getByRole('link', { name: 'Events' }).click();
    await page.locator('tr', { hasText: 'kicked' }).getByText('closed via REST API').waitFor({ timeout: UI_MS });
    await screenshot(page, 'stub-events');
  });
});

