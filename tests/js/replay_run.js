// The agent's replay page in headless Chromium (Debian's /usr/bin/chromium through puppeteer-core: nothing
// is downloaded), for tests/test_recordings_browser.py.
//
//   node replay_run.js REPLAY_URL SCREENSHOT
//       open REPLAY_URL (/replay/<session>#token=<admin token>), wait until rrweb-player has built the
//       recorded page in its iframe and played to the end, screenshot the page into SCREENSHOT and print one
//       JSON line: whether it played, the iframe's text, the recorded banner's colour and box, console
//       messages and page errors
'use strict';

const { launch, watch } = require('./chromium');

async function main(url, screenshot) {
  const browser = await launch();
  const report = { playing: false, text: '', banner: null, failed: [], console: [], pageErrors: [] };
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 800 });
    watch(page, new URL(url).origin, report);
    await page.goto(url, { waitUntil: 'load', timeout: 20000 });
    try {
      await page.waitForFunction(() => {
        const frame = document.querySelector('.rr-player iframe');
        const doc = frame && frame.contentDocument;
        return Boolean(doc && doc.getElementById('counter') && /step [1-9]/.test(doc.body.innerText));
      }, { timeout: 20000 });
      await new Promise((resolve) => setTimeout(resolve, 4000));     // let it play to the end
    } catch (error) {
      report.waitError = String(error && error.message);
    }
    Object.assign(report, await page.evaluate(() => {
      const frame = document.querySelector('.rr-player iframe');
      const doc = frame && frame.contentDocument;
      const banner = doc && doc.getElementById('banner');
      let box = null;
      if (banner) {
        const inner = banner.getBoundingClientRect();
        const outer = frame.getBoundingClientRect();
        const scale = outer.width / frame.offsetWidth;     // the player scales the iframe to fit
        box = { x: outer.x + inner.x * scale, y: outer.y + inner.y * scale, width: inner.width * scale,
                height: inner.height * scale };
      }
      return {
        playing: document.body.dataset.playing === 'true',
        status: (document.getElementById('status') || {}).textContent,
        text: doc ? doc.body.innerText : '',
        input: doc && doc.getElementById('email') ? doc.getElementById('email').value : null,
        banner: banner ? { colour: getComputedStyle(banner).backgroundColor, box } : null,
      };
    }));
    await page.screenshot({ path: screenshot });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

main(process.argv[2], process.argv[3]).catch((error) => {
  process.stderr.write(`${error && error.stack}\n`);
  process.exit(1);
});
