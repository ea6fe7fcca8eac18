// The application of the page: @sentry/browser (window.Sentry, bundled from node_modules) configured with
// nothing but the DSN, a release and an environment. It throws an uncaught error from a click handler,
// captures a message, then flushes and sets window.__done. window.__sent records each envelope's item
// types and the HTTP status the SDK's own fetch transport saw (null when the browser refused the answer;
// recording_transport.js).
'use strict';

window.__sent = [];
const params = new URLSearchParams(window.location.search);

Sentry.init({
  dsn: params.get('dsn'),
  release: params.get('release'),
  environment: params.get('environment'),
  transport: recordingTransport(Sentry.makeFetchTransport, window.__sent),
});

function applyDiscount(cart) {
  return cart.coupon.percent;                 // cart.coupon is undefined: a TypeError, uncaught
}

function onPay() {
  applyDiscount({ items: 3 });
}

window.addEventListener('load', () => {
  document.getElementById('pay').addEventListener('click', onPay);
  setTimeout(() => document.getElementById('pay').click(), 0);
  setTimeout(async () => {
    Sentry.captureMessage('checkout page shown', 'info');
    await Sentry.flush(5000);
    window.__done = true;
  }, 200);
});
