// posthog-js in headless Chromium (Debian's /usr/bin/chromium, through puppeteer-core: nothing is
// downloaded), for tests/test_posthog_sdks.py.
//
//   node posthog_browser_run.js bundle OUT_DIR     bundle posthog-js (esbuild, the full no-external build: no
//                                                  script is loaded from the agent) into OUT_DIR/posthog.js,
//                                                  one IIFE that sets window.posthog
//   node posthog_browser_run.js visit PAGE_URL AGENT_URL
//                                                  open the page, wait until it says it is done (or 30 s),
//                                                  print one JSON line: the browser's responses from and
//                                                  failed requests to the agent (with whether a POST body
//                                                  began with gzip's magic bytes), console messages, errors
'use strict';

const path = require('path');
const { launch, watch, waitDone } = require('./chromium');

async function bundle(outDir) {
  const esbuild = require('esbuild');
  await esbuild.build({
    stdin: { contents: "import posthog from 'posthog-js/dist/module.full.no-external'; window.posthog = posthog;",
             resolveDir: __dirname, loader: 'js' },
    bundle: true, format: 'iife', minify: true, target: 'es2020', outfile: path.join(outDir, 'posthog.js'),
    logLevel: 'error',
  });
}

async function visit(pageUrl, agentUrl) {
  const browser = await launch();
  const report = { responses: [], failed: [], console: [], pageErrors: [], done: false };
  try {
    const page = await browser.newPage();
    page.on('response', async (response) => {
      if (!response.url().startsWith(agentUrl)) return;
      const request = response.request();
      let gzip = null;
      if (request.method() === 'POST') {
        try {
          const body = await request.fetchPostData();
          // DevTools hands a binary body over base64-encoded: gzip's 1f 8b 08 is "H4sI"
          gzip = body !== undefined && (body.startsWith('H4sI') || body.charCodeAt(0) === 0x1f);
        } catch (error) {
          gzip = null;
        }
      }
      report.responses.push({ url: response.url(), method: request.method(), status: response.status(),
                              headers: response.headers(), gzip });
    });
    watch(page, agentUrl, report);
    await page.goto(pageUrl, { waitUntil: 'load', timeout: 20000 });
    report.done = await waitDone(page, 30000);
    await new Promise((resolve) => setTimeout(resolve, 500));
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
