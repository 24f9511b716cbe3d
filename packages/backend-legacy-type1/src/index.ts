// @vmmkit/backend-legacy-type1: filled in by its own issue; the workspace builds it from the start.
export {};
