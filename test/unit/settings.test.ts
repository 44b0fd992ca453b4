/**
 * Settings read once (issue 15): every variable volchain reads is a field of `Settings`, read by readSettings
 * from any environment object, documented in README's configuration section, and what createVolchain and
 * Volchain.open are given wins over process.env.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidInputError } from '../../src/errors.js';
import { currentSettings, readSettings, SETTING_VARIABLES, settingsEnv, type Settings } from '../../src/settings.js';
import { createVolchain } from '../../src/create.js';
import { Volchain } from '../../src/engine/volchain.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function field(settings: Settings, name: keyof typeof SETTING_VARIABLES): unknown {
  return name in settings.hooks ? settings.hooks[name as keyof Settings['hooks']] : settings[name as Exclude<keyof Settings, 'hooks'>];
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = join(dir, entry);
    return statSync(full).isDirectory() ? sourceFiles(full) : full.endsWith('.ts') ? [full] : [];
  });
}

describe('readSettings', () => {
  it('reads each variable into its own field, and nothing else', () => {
    const booleans = new Set(['debug', 'lvmTrace']);
    for (const [name, variable] of Object.entries(SETTING_VARIABLES) as [keyof typeof SETTING_VARIABLES, string][]) {
      const value = name === 'liveStream' ? 'never' : booleans.has(name) ? '1' : `value-of-${variable}`;
      const settings = readSettings({ [variable]: value });
      assert.equal(field(settings, name), booleans.has(name) ? true : value, variable);
      const others = Object.keys(SETTING_VARIABLES).filter((n) => n !== name) as (keyof typeof SETTING_VARIABLES)[];
      for (const other of others) assert.equal(field(settings, other), booleans.has(other) ? false : undefined, `${other} with only ${variable} set`);
    }
  });

  it('never throws; flags only take the values that mean something', () => {
    const odd = readSettings({ VOLCHAIN_LIVE_STREAM: 'sometimes', VOLCHAIN_LVM_TRACE: 'yes', VOLCHAIN_DEBUG: '', VOLCHAIN_LOCK_TIMEOUT: 'abc' });
    assert.equal(odd.hooks.liveStream, undefined);
    assert.equal(odd.hooks.lvmTrace, false);
    assert.equal(odd.debug, false);
    assert.equal(odd.lockTimeout, 'abc', 'kept as given: the lock code refuses it when a lock is taken');
    assert.equal(readSettings({ VOLCHAIN_DEBUG: 'yes' }).debug, true);
  });

  it('settingsEnv gives the string settings back under their variable names', () => {
    const env = { VOLCHAIN_WIPE: 'foreground', VOLCHAIN_BRANCHES: 'no', VOLCHAIN_LOCK_TIMEOUT: '2', VOLCHAIN_QMP_DIR: '/run/q' };
    const back = settingsEnv(readSettings(env));
    for (const [variable, value] of Object.entries(env)) assert.equal(back[variable], value, variable);
  });

  it('currentSettings reads process.env as it is when called', () => {
    const saved = process.env.VOLCHAIN_JOB_SPEED;
    process.env.VOLCHAIN_JOB_SPEED = '7M';
    try {
      assert.equal(currentSettings().jobSpeed, '7M');
    } finally {
      if (saved === undefined) delete process.env.VOLCHAIN_JOB_SPEED;
      else process.env.VOLCHAIN_JOB_SPEED = saved;
    }
  });
});

describe('every setting is known and documented', () => {
  it('each VOLCHAIN_* variable src/ names is a Settings field', () => {
    const known = new Set<string>(Object.values(SETTING_VARIABLES));
    const named = new Set<string>();
    for (const file of sourceFiles(join(ROOT, 'src'))) {
      for (const m of readFileSync(file, 'utf8').matchAll(/\bVOLCHAIN_[A-Z][A-Z_]*[A-Z]\b/g)) named.add(m[0]);
    }
    assert.ok(named.size >= 15, `found ${named.size} variables`);
    assert.deepEqual([...named].filter((v) => !known.has(v)).sort(), []);
  });

  it("README's configuration section lists every variable", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const start = readme.indexOf('Environment (read once');
    assert.ok(start >= 0, 'the configuration section has its environment list');
    const section = readme.slice(start, readme.indexOf('\n### ', start));
    for (const variable of Object.values(SETTING_VARIABLES)) assert.ok(section.includes(`\`${variable}`), `${variable} is documented`);
  });
});

describe('createVolchain and Volchain.open take settings instead of process.env', () => {
  let dir = '';
  let cfg = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'volchain-settings-'));
    cfg = join(dir, 'storage.cfg');
    await writeFile(cfg, `dir: from-settings\n\tpath ${dir}/store\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the config file and the policies come from the given settings', async () => {
    const vc = await createVolchain({ settings: readSettings({ VOLCHAIN_CONFIG: cfg, VOLCHAIN_BRANCHES: 'no' }) });
    assert.equal(vc.config.source, cfg);
    assert.deepEqual(
      vc.storages().map((s) => s.id),
      ['from-settings'],
    );
    assert.equal(vc.keepBranches, false, 'VOLCHAIN_BRANCHES=no from the settings');
    const opened = await Volchain.open({}, { settings: readSettings({ VOLCHAIN_CONFIG: cfg }) });
    assert.equal(opened.config.source, cfg);
  });

  it('a bad value in the given settings is refused as the environment variable would be', async () => {
    assert.equal(process.env.VOLCHAIN_WIPE, undefined, 'this test runs without $VOLCHAIN_WIPE');
    await assert.rejects(
      createVolchain({ config: cfg, settings: readSettings({ VOLCHAIN_WIPE: 'later' }) }),
      (err: unknown) => err instanceof InvalidInputError && err.message.includes("VOLCHAIN_WIPE must be background or foreground, got 'later'"),
    );
  });
});
