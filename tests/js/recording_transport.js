// A Sentry transport that is the SDK's own (fetch in the browser, http in node) with each envelope's item
// types and answer status recorded in `sent` ({types, status}; status null when no answer could be read,
// e.g. a browser refusing a cross-origin answer). Loaded by node (require) and by the test page (<script>).
'use strict';

function recordingTransport(makeTransport, sent) {
  return (options) => {
    const transport = makeTransport(options);
    return {
      async send(envelope) {
        const types = envelope[1].map((item) => item[0].type);
        try {
          const answer = await transport.send(envelope);
          sent.push({ types, status: answer.statusCode === undefined ? null : answer.statusCode });
          return answer;
        } catch (error) {
          sent.push({ types, status: null, error: String(error) });
          throw error;
        }
      },
      flush: (timeout) => transport.flush(timeout),
    };
  };
}

if (typeof module !== 'undefined') {
  module.exports = { recordingTransport };
}
