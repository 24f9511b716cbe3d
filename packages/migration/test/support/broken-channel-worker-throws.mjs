// A RAM channel worker that fails with an uncaught error before it takes its connection over.
throw new Error('a channel worker that throws');
