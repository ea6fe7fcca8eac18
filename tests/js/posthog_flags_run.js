// posthog-js's feature flags in headless Chromium (Debian's /usr/bin/chromium, through puppeteer-core: nothing
// is downloaded), for tests/test_flags_js.py (the page: posthog_flags_page/index.html, posthog.js bundled by
// `node posthog_browser_run.js bundle OUT_DIR`).
//
//   node posthog_flags_run.js PAGE_URL AGENT_URL
//       open the page, wait until it says it is done (or 30 s), print one JSON line: what the page read from
//       posthog-js (window.__flags), the browser's responses from the agent (URL, method, status, CORS header),
//       the bodies of its POSTs to /flags/ (as the browser sent them), failed requests, console, page errors
'use strict';

const { launch, watch, waitDone } = require('./chromium');

async function visit(pageUrl, agentUrl) {
  const browser = await launch();
  const report = { responses: [], flagsRequests: [], failed: [], console: [], pageErrors: [], done: false,
                   flags: null };
  try {
    const page = await browser.newPage();
    page.on('response', async (response) => {
      if (!response.url().startsWith(agentUrl)) return;
      const request = response.request();
      report.responses.push({ url: response.url(), method: request.method(), status: response.status(),
                              allowOrigin: response.headers()['access-control-allow-origin'] || null });
      if (request.url().startsWith(`${agentUrl}/flags`) && request.method() === 'POST') {
        let body = null;
        try {
          body = (await request.fetchPostData()) || null;   // text as it is; a binary (gzip) body base64-encoded
        } catch (error) {
          body = null;
        }
        report.flagsRequests.push({ url: request.url(), contentType: request.headers()['content-type'] || null,
                                    body });
      }
    });
    watch(page, agentUrl, report);
    await page.goto(pageUrl, { waitUntil: 'load', timeout: 20000 });
    report.done = await waitDone(page, 30000);
    report.flags = await page.evaluate(() => window.__flags);
    await new Promise((resolve) => setTimeout(resolve, 500));
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

visit(process.argv[2], process.argv[3]).catch((error) => {
  process.stderr.write(`${error && error.stack}\n`);
  process.exit(1);
});
