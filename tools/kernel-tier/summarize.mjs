// summarize.mjs REPORT: the kernel tier's verdict from vitest's JSON report written in the guest.
// Prints the skipped LinuxHost cases (their titles carry the reason), then one final line
// "N passed, N failed"; exits non-zero on a failure, or when the guest tested nothing on LinuxHost.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const HOST_MARK = 'LinuxHost';

function main(path) {
  if (!path || !existsSync(path)) {
    console.log('kernel tier: the guest wrote no test report (vitest did not run or did not finish)');
    console.log('0 passed, 0 failed');
    return 1;
  }
  const report = JSON.parse(readFileSync(path, 'utf8'));
  const problems = [];
  let failed = report.numFailedTests;
  for (const file of report.testResults) {
    const name = relative(process.cwd(), file.name);
    const cases = file.assertionResults;
    // A file that failed to load has no cases: count it as one failure, or it would go unseen.
    if (file.status === 'failed' && cases.length === 0) {
      failed += 1;
      problems.push(`${name} failed to run: ${(file.message ?? '').split('\n')[0]}`);
    }
    const onHost = cases.filter((c) => c.fullName.includes(HOST_MARK));
    for (const c of onHost.filter((c) => c.status !== 'passed' && c.status !== 'failed')) {
      console.log(`kernel tier: not run on the real kernel: ${name} > ${c.fullName}`);
    }
    const passed = onHost.filter((c) => c.status === 'passed').length;
    const failedHere = onHost.filter((c) => c.status === 'failed').length;
    console.log(`kernel tier: ${name}: ${passed} passed, ${failedHere} failed, ${onHost.length - passed - failedHere} not run on ${HOST_MARK}`);
    if (passed === 0) problems.push(`${name} passed nothing on ${HOST_MARK}`);
  }
  if (report.testResults.length === 0) problems.push('no test file matched the tier');
  fuzzSummary(join(dirname(path), 'difffuzz.json'));
  for (const p of problems) console.log(`kernel tier: ${p}`);
  console.log(`${report.numPassedTests} passed, ${failed} failed`);
  return failed > 0 || problems.length > 0 ? 1 : 0;
}

/** The differential fuzzer's counts (packages/sim/test/difffuzz.host.test.ts writes them), when it ran. */
function fuzzSummary(path) {
  if (!existsSync(path)) return;
  const f = JSON.parse(readFileSync(path, 'utf8'));
  const tolerated = Object.entries(f.tolerated).map(([name, n]) => `${name} ${n}`).join(', ');
  console.log(`kernel tier: differential fuzzer against Linux ${f.kernel} (SimHost in 7.2 mode): ${f.sequences} sequences, ` +
    `${f.calls} calls compared per host, ${f.diverged} diverged beyond the tolerated differences (${tolerated}); ${f.seconds} s`);
}

process.exitCode = main(process.argv[2]);
