// The differential fuzzer: seeded sequences of VFIO / iommufd operations run on two hosts (Linux
// and SimHost) and compared step by step, with a shrinker and a list of tolerated differences.

export { runBoth, runCampaign, type CampaignOptions, type CampaignReport, type DivergenceReport, type FuzzSide } from './campaign.js';
export { compareTraces, sameResult, type Comparison, type Divergence } from './compare.js';
export { execute, THROW } from './execute.js';
export { generate, OPS, THEMES, type GenerateOptions } from './generate.js';
export { stringify, type Sequence, type Step, type StepResult, type Trace } from './model.js';
export { discoverMachine, type FuzzDevice, type FuzzMachine } from './run.js';
export { shrink } from './shrink.js';
export { DEFAULT_LAYOUT, fuzzMachineConfig, layoutOf, type FuzzMachineLayout } from './sim-machine.js';
export { TOLERATED, type Tolerance } from './tolerated.js';
