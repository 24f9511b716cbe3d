// @vmmkit/core/testing: the exported contract test suites.
export {};
