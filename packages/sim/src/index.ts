// @vmmkit/sim: filled in by its own issue; the workspace builds it from the start.
export {};
