// Drives headless Chromium (Debian's /usr/bin/chromium, through puppeteer-core: nothing is downloaded) to
// a page that uses the real @sentry/browser, for tests/test_sentry_js.py.
//
//   node sentry_browser_run.js bundle OUT_DIR      bundle @sentry/browser (esbuild) into OUT_DIR/sentry.js,
//                                                  one IIFE script that sets window.Sentry, and minify
//                                                  browser_page/app.js into app.min.js + app.min.js.map
//   node sentry_browser_run.js visit PAGE_URL AGENT_URL
//                                                  open the page, wait until it says it is done (or 20 s),
//                                                  print one JSON line: what the page recorded, the
//                                                  browser's responses from and failed requests to the agent,
//                                                  console messages and uncaught page errors
'use strict';

const fs = require('fs');
const path = require('path');
const { launch, watch, waitDone } = require('./chromium');

async function bundle(outDir) {
  const esbuild = require('esbuild');
  await esbuild.build({
    stdin: { contents: "import * as Sentry from '@sentry/browser'; window.Sentry = Sentry;",
             resolveDir: __dirname, loader: 'js' },
    bundle: true, format: 'iife', minify: true, target: 'es2020', outfile: path.join(outDir, 'sentry.js'),
    logLevel: 'warning',
  });
  // the application minified as a build would ship it (names mangled), with its source map beside it
  await esbuild.build({
    stdin: { contents: fs.readFileSync(path.join(__dirname, 'browser_page', 'app.js'), 'utf8'),
             sourcefile: 'webpack://checkout/src/app.js', loader: 'js' },
    format: 'iife', minify: true,
    target: 'es2020', sourcemap: 'external', outfile: path.join(outDir, 'app.min.js'), logLevel: 'warning',
  });
}

async function visit(pageUrl, agentUrl) {
  const browser = await launch();
  const report = { responses: [], failed: [], console: [], pageErrors: [], page: null, done: false };
  try {
    const page = await browser.newPage();
    page.on('response', (response) => {
      if (response.url().startsWith(agentUrl)) {
        report.responses.push({ url: response.url(), method: response.request().method(),
                                status: response.status(), headers: response.headers() });
      }
    });
    watch(page, agentUrl, report);
    await page.goto(pageUrl, { waitUntil: 'load', timeout: 20000 });
    report.done = await waitDone(page, 20000);
    report.page = await page.evaluate(() => ({ sent: window.__sent || [], sdk: window.Sentry && window.Sentry.SDK_VERSION,
                                               origin: window.location.origin }));
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

const [command, ...args] = process.argv.slice(2);
const run = command === 'bundle' ? bundle(path.resolve(args[0])) : visit(args[0], args[1]);
run.catch((error) => {
  process.stderr.write(`${error && error.stack}\n`);
  process.exit(1);
});
