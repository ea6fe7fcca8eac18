// Headless Chromium for the browser tests (sentry_browser_run.js, posthog_browser_run.js): Debian's
// /usr/bin/chromium through puppeteer-core (nothing is downloaded), DevTools over a pipe (no port opened).
'use strict';

function launch() {
  const puppeteer = require('puppeteer-core');
  return puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    pipe: true,
    userDataDir: process.env.CHROMIUM_PROFILE,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-extensions',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// Records into `report` the requests to the agent that failed, console messages and uncaught page errors.
function watch(page, agentUrl, report) {
  page.on('requestfailed', (request) => {
    if (request.url().startsWith(agentUrl)) {
      report.failed.push({ url: request.url(), method: request.method(),
                           error: request.failure() && request.failure().errorText });
    }
  });
  page.on('console', (message) => report.console.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => report.pageErrors.push(String(error && error.message)));
}

// Until the page sets window.__done (true) or `timeout` ms pass (false).
async function waitDone(page, timeout) {
  try {
    await page.waitForFunction('window.__done === true', { timeout });
    return true;
  } catch (error) {
    return false;
  }
}

module.exports = { launch, watch, waitDone };
