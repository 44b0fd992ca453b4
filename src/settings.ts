/**
 * Every setting volchain takes from the environment, in one typed object read once (issue 15: "settings read
 * once and passed down"). The CLI reads it at start-up and hands it to createVolchain; a program using the
 * library may build its own with readSettings(anyEnv) instead of changing process.env.
 *
 * Values are kept as given (an empty string included), because what "empty" means differs by setting and is
 * decided, with the error for a bad value, where the setting is used (e.g. engine/session/lock.ts for the lock
 * timeout): reading the settings never fails, so a bad value only stops the commands that need it, as before.
 * Only flags whose meaning cannot fail are typed further (booleans, the live-stream choice).
 *
 * Passed down, never read below: the Session (engine/session/session.ts) holds the Settings of its Volchain
 * and hands them to the executors (test hooks), the live operations (job speed, live stream, QMP directory),
 * each backend the registry opens (LVM: state directory, trace, crash hook; tools/ get what they need as
 * parameters) and the config readers (mount table, VM configs). A test that wants other settings passes them
 * (readSettings({ ...process.env, X: ... })) or makes a new Volchain; changing process.env reaches no
 * Volchain made before.
 *
 * currentSettings() reads process.env at the moment it is called. It is called only at the entry points:
 * here, src/create.ts (the default when a library caller gives none) and src/cli/main.ts (the CLI reads it
 * once); test/unit/settings-passed-down.test.ts checks that. A Volchain made directly without settings
 * (`new Volchain(config)`) reads the environment once when made (engine/session/session.ts sessionSettings).
 */

/** Test hooks: faults and traces the test suites switch on. Not for production use. */
export interface TestHooks {
  /** $VOLCHAIN_CRASH_AT `<operation>:<step>[:before|started|after|undo-before|undo-after[:<volume>]]`: SIGKILL there. */
  crashAt: string | undefined;
  /** $VOLCHAIN_FAIL_AT `<operation>:<step>[:<volume>]`: that plan step fails. */
  failAt: string | undefined;
  /** $VOLCHAIN_LVM_CRASH_AT `remove-renamed|replace-removed|wipe-chunk|wipe-zeroed`: SIGKILL inside the LVM backend. */
  lvmCrashAt: string | undefined;
  /** $VOLCHAIN_TEST_OPLOG: file each executed step is appended to (the concurrency test's witness). */
  testOplog: string | undefined;
  /** $VOLCHAIN_LIVE_STREAM `always|never`: forces block-stream (or block-commit) for live deletes; else undefined. */
  liveStream: 'always' | 'never' | undefined;
  /** $VOLCHAIN_LVM_TRACE=1: every LVM command and its duration on stderr. */
  lvmTrace: boolean;
}

export interface Settings {
  /** $VOLCHAIN_CONFIG: the storage.cfg to read when no --config is given (empty = unset). */
  config: string | undefined;
  /** $VOLCHAIN_VM_CONFIG_DIR: where `<vmid>.conf` VM configs are (default /etc/pve/qemu-server; empty = unset). */
  vmConfigDir: string | undefined;
  /** $VOLCHAIN_STATE_DIR: host-local state of LVM storages (default /var/lib/volchain). */
  stateDir: string | undefined;
  /** $VOLCHAIN_LOCK_TIMEOUT: seconds to wait for a VM's lock (default 30; validated when a lock is taken). */
  lockTimeout: string | undefined;
  /** $VOLCHAIN_QMP_DIR: directory of running VMs' QMP sockets `<vmid>.qmp` (empty = unset). */
  qmpDir: string | undefined;
  /** $VOLCHAIN_PROC_MOUNTS: mount table read instead of /proc/mounts (tests; empty = unset). */
  procMounts: string | undefined;
  /** $VOLCHAIN_JOB_SPEED: rate limit of live block jobs, bytes per second with K/M/G (default unlimited). */
  jobSpeed: string | undefined;
  /** $VOLCHAIN_WIPE `background|foreground`: where LVM saferemove's wipes run (validated when opened). */
  wipe: string | undefined;
  /** $VOLCHAIN_LVM_SHRINK `auto|yes|no`: shrink LVM layers that become snapshots (validated when opened). */
  lvmShrink: string | undefined;
  /** $VOLCHAIN_BRANCHES `auto|yes|no`: may a rollback keep newer snapshots as a branch (validated when opened). */
  branches: string | undefined;
  /** $VOLCHAIN_QEMU_SYSTEM: the QEMU binary asked for its version (default qemu-system-x86_64). */
  qemuSystem: string | undefined;
  /**
   * $VOLCHAIN_LVM_TEMPLATES: LVM storage ids (comma- or space-separated; `*` for all) on which templates and
   * linked clones may be made (opt-in: PVE's LVM plugin lists no `base-` LV, so a `pvesm free` of a base there
   * would destroy its clones unseen). Empty or unset: none.
   */
  lvmTemplates: string | undefined;
  /** $VOLCHAIN_DEBUG (any non-empty value): stack traces of errors on stderr. */
  debug: boolean;
  /** $XDG_DATA_HOME: where the embedded default storage lives (`<it>/volchain`), when absolute. */
  dataHome: string | undefined;
  /** $HOME: the default storage's fallback place, `$HOME/.local/share/volchain`. */
  home: string | undefined;
  hooks: TestHooks;
}

/** The environment variable behind each setting (README's configuration section lists them all). */
export const SETTING_VARIABLES = {
  config: 'VOLCHAIN_CONFIG',
  vmConfigDir: 'VOLCHAIN_VM_CONFIG_DIR',
  stateDir: 'VOLCHAIN_STATE_DIR',
  lockTimeout: 'VOLCHAIN_LOCK_TIMEOUT',
  qmpDir: 'VOLCHAIN_QMP_DIR',
  procMounts: 'VOLCHAIN_PROC_MOUNTS',
  jobSpeed: 'VOLCHAIN_JOB_SPEED',
  wipe: 'VOLCHAIN_WIPE',
  lvmShrink: 'VOLCHAIN_LVM_SHRINK',
  branches: 'VOLCHAIN_BRANCHES',
  qemuSystem: 'VOLCHAIN_QEMU_SYSTEM',
  lvmTemplates: 'VOLCHAIN_LVM_TEMPLATES',
  debug: 'VOLCHAIN_DEBUG',
  dataHome: 'XDG_DATA_HOME',
  home: 'HOME',
  crashAt: 'VOLCHAIN_CRASH_AT',
  failAt: 'VOLCHAIN_FAIL_AT',
  lvmCrashAt: 'VOLCHAIN_LVM_CRASH_AT',
  testOplog: 'VOLCHAIN_TEST_OPLOG',
  liveStream: 'VOLCHAIN_LIVE_STREAM',
  lvmTrace: 'VOLCHAIN_LVM_TRACE',
} as const satisfies Record<Exclude<keyof Settings, 'hooks'> | keyof TestHooks, string>;

export type Environment = Readonly<Record<string, string | undefined>>;

/** The settings in `env` (process.env, or any plain object: tests and library callers). Never throws. */
export function readSettings(env: Environment): Settings {
  const v = SETTING_VARIABLES;
  const liveStream = env[v.liveStream];
  return {
    config: env[v.config],
    vmConfigDir: env[v.vmConfigDir],
    stateDir: env[v.stateDir],
    lockTimeout: env[v.lockTimeout],
    qmpDir: env[v.qmpDir],
    procMounts: env[v.procMounts],
    jobSpeed: env[v.jobSpeed],
    wipe: env[v.wipe],
    lvmShrink: env[v.lvmShrink],
    branches: env[v.branches],
    qemuSystem: env[v.qemuSystem],
    lvmTemplates: env[v.lvmTemplates],
    debug: (env[v.debug] ?? '') !== '',
    dataHome: env[v.dataHome],
    home: env[v.home],
    hooks: {
      crashAt: env[v.crashAt],
      failAt: env[v.failAt],
      lvmCrashAt: env[v.lvmCrashAt],
      testOplog: env[v.testOplog],
      liveStream: liveStream === 'always' || liveStream === 'never' ? liveStream : undefined,
      lvmTrace: env[v.lvmTrace] === '1',
    },
  };
}

/** Whether $VOLCHAIN_LVM_TEMPLATES opts LVM storage `storageId` in to templates and linked clones. */
export function lvmTemplatesAllowed(settings: Pick<Settings, 'lvmTemplates'>, storageId: string): boolean {
  const ids = (settings.lvmTemplates ?? '').split(/[\s,]+/).filter((id) => id !== '');
  return ids.includes('*') || ids.includes(storageId);
}

/** The settings of this process as its environment is now (the entry points only: see the file comment). */
export function currentSettings(): Settings {
  return readSettings(process.env);
}

/**
 * The string-valued settings under their variable names, for the resolvers that still take an environment
 * (engine/plan/branch-policy.ts, engine/plan/shrink-policy.ts, engine/run/wipe.ts, engine/session/lock.ts):
 * they word their errors with the variable's name, so they keep reading it by that name.
 */
export function settingsEnv(settings: Settings): Environment {
  const { config, vmConfigDir, stateDir, lockTimeout, qmpDir, procMounts, jobSpeed, wipe, lvmShrink, branches, qemuSystem } = settings;
  const v = SETTING_VARIABLES;
  return {
    [v.config]: config,
    [v.vmConfigDir]: vmConfigDir,
    [v.stateDir]: stateDir,
    [v.lockTimeout]: lockTimeout,
    [v.qmpDir]: qmpDir,
    [v.procMounts]: procMounts,
    [v.jobSpeed]: jobSpeed,
    [v.wipe]: wipe,
    [v.lvmShrink]: lvmShrink,
    [v.branches]: branches,
    [v.qemuSystem]: qemuSystem,
  };
}
