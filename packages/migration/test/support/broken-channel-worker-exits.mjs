// A RAM channel worker that ends before it takes its connection over (its owner closes the fd).
process.exit(3);
