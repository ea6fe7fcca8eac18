// The agent's admin analytics page in headless Chromium (Debian's /usr/bin/chromium through puppeteer-core:
// nothing is downloaded), for tests/test_analytics_page_browser.py.
//
//   node analytics_page_run.js AGENT_URL ADMIN_TOKEN OUT_DIR INSIGHTS_QUERY
//       open AGENT_URL/analytics (redirected to the sign-in), sign in with the form, read the cookie the
//       browser kept, then on a laptop (1280x800) and a phone (390x844) read what the dashboard and the
//       insights view show (cards, SVG charts, table rows, overflow) and screenshot them into OUT_DIR
//       (analytics-page.png: the dashboard, whole page; analytics-insights.png; analytics-page-mobile.png:
//       the phone's first screen); sign out with the page's button; print one JSON line: the report
'use strict';

const path = require('path');
const { launch, watch } = require('./chromium');

function readPage() {
  const text = (el) => (el ? el.textContent.replace(/\s+/g, ' ').trim() : null);
  const cards = {};
  for (const card of document.querySelectorAll('.card')) {
    cards[text(card.querySelector('.label'))] = text(card.querySelector('.value'));
  }
  const sections = {};
  for (const section of document.querySelectorAll('section[id]')) {
    const box = section.getBoundingClientRect();
    sections[section.id] = {
      bars: section.querySelectorAll('svg.bar rect.fill').length,
      barWidths: [...section.querySelectorAll('svg.bar rect.fill')].map((r) => r.getBoundingClientRect().width),
      values: [...section.querySelectorAll('.bar-value')].map(text),
      labels: [...section.querySelectorAll('.bar-label')].map(text),
      rows: section.querySelectorAll('tbody tr').length,
      polylines: section.querySelectorAll('svg.chart polyline').length,
      points: section.querySelectorAll('svg.chart circle').length,
      series: [...section.querySelectorAll('svg.chart g.series')].map((g) => g.dataset.series),
      cells: [...section.querySelectorAll('table.retention td')].map(text).slice(0, 40),
      empty: text(section.querySelector('.empty')),
      error: text(section.querySelector('.error')),
      width: box.width,
      visible: box.height > 0,
    };
  }
  return {
    url: location.pathname + location.search,
    title: document.title,
    cards,
    sections,
    svgs: document.querySelectorAll('svg').length,
    scripts: document.querySelectorAll('script').length,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    error: text(document.querySelector('.error')),
  };
}

async function main(agentUrl, token, outDir, insightsQuery) {
  const browser = await launch();
  const report = { failed: [], console: [], pageErrors: [] };
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800, deviceScaleFactor: 1 });
    watch(page, agentUrl, report);
    await page.goto(agentUrl + '/analytics?range=30d', { waitUntil: 'load', timeout: 20000 });
    report.signInUrl = new URL(page.url()).pathname + new URL(page.url()).search;
    report.signInHasForm = Boolean(await page.$('form[method="post"] input[type="password"][name="token"]'));
    await page.type('input[name="token"]', token);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: 20000 }), page.click('button.primary')]);
    report.cookies = (await page.cookies()).map((c) => ({ name: c.name, value: c.value, secure: c.secure,
      httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path }));
    report.documentCookie = await page.evaluate(() => document.cookie);     // HttpOnly: not readable
    report.desktop = await page.evaluate(readPage);
    await page.screenshot({ path: path.join(outDir, 'analytics-page.png'), fullPage: true });

    await page.goto(agentUrl + '/analytics/insights?' + insightsQuery, { waitUntil: 'load', timeout: 30000 });
    report.insights = await page.evaluate(readPage);
    await page.screenshot({ path: path.join(outDir, 'analytics-insights.png'), fullPage: true });

    await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
    await page.goto(agentUrl + '/analytics?range=30d', { waitUntil: 'load', timeout: 20000 });
    report.phone = await page.evaluate(readPage);
    await page.screenshot({ path: path.join(outDir, 'analytics-page-mobile.png') });
    await page.goto(agentUrl + '/analytics/insights?' + insightsQuery, { waitUntil: 'load', timeout: 30000 });
    report.phoneInsights = await page.evaluate(readPage);

    report.beforeSignOut = await page.evaluate(() => document.body.innerHTML.slice(0, 3000));
    await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: 20000 }),
      page.click('form.signout button')]);
    report.afterSignOut = new URL(page.url()).pathname;
    report.cookiesAfterSignOut = (await page.cookies()).map((c) => c.name);
    await page.goto(agentUrl + '/analytics', { waitUntil: 'load', timeout: 20000 });
    report.afterSignOutVisit = new URL(page.url()).pathname;
  } catch (error) {
    report.error = String(error && error.stack);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

main(process.argv[2], process.argv[3], process.argv[4], process.argv[5] || '').catch((error) => {
  process.stderr.write(`${error && error.stack}\n`);
  process.exit(1);
});
