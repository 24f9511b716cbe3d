// The CLI's exit statuses, in one place so that scripts (and the tests) can rely on them.

/** The command did what it was asked. */
export const EXIT_OK = 0;
/** The work failed: a migration blocker, a device that cannot be realized, a failed migration. */
export const EXIT_FAILURE = 1;
/** Bad usage: an unknown command or option, a bad value, a missing argument. */
export const EXIT_USAGE = 2;
