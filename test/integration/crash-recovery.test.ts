/**
 * Fault injection at every step of every plan: the CLI is killed with SIGKILL (VOLCHAIN_CRASH_AT) just before
 * a step runs and just after it ran (before the journal records it), then `volchain repair` runs. Afterwards
 * every snapshot that should exist holds exactly its data (read back with qemu-io patterns), the operation
 * happened fully (repair finishes what was started), nothing is pending, and `qemu-img check` is clean on
 * every layer. The test prints how many crash points it covered.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { BLOCKS, VMID, cli, makeEnv, rollback, snap, verify, write, type Content, type DiskModel, type Env, type Model } from './chain-model.js';

interface Scenario {
  name: string;
  operation: string;
  disks: number;
  /** Builds the starting state; returns the model. */
  setup: (env: Env, volids: string[], model: Model) => Promise<void>;
  /** CLI arguments of the operation under test. */
  args: (volids: string[]) => string[];
  /** The model once the operation has happened fully. */
  expect: (model: Model, volids: string[]) => void;
  /** Restrict the crash to one disk (VM-wide operations). */
  crashVolume?: (volids: string[]) => string;
}

/** s1 <- s2 <- s3 <- current, each snapshot overwriting block 0 and adding a block of its own. */
async function linear3(env: Env, volids: string[], model: Model): Promise<void> {
  for (const volid of volids) {
    for (const [i, name] of ['s1', 's2', 's3'].entries()) {
      await write(env, model, volid, 0, 0x11 * (i + 1));
      await write(env, model, volid, i + 1, 0x11 * (i + 1));
      await snap(env, model, volid, name);
    }
    await write(env, model, volid, 0, 0x44);
    await write(env, model, volid, 4, 0x44);
  }
}

/** linear3, then rollback to s1 and a new branch s4: s1 has two children (s2 and s4). */
async function branched(env: Env, volids: string[], model: Model): Promise<void> {
  await linear3(env, volids, model);
  for (const volid of volids) {
    await rollback(env, model, volid, 's1');
    await write(env, model, volid, 5, 0x55);
    await snap(env, model, volid, 's4');
    await write(env, model, volid, 6, 0x66);
  }
}

const only = (model: Model): DiskModel => [...model.values()][0] as DiskModel;
const dropSnapshot = (name: string) => (model: Model) => {
  for (const d of model.values()) d.snapshots.delete(name);
};

const scenarios: Scenario[] = [
  {
    name: 'create',
    operation: 'snapshot-create',
    disks: 1,
    setup: linear3,
    args: ([v]) => ['snapshot', 'create', v as string, 's9'],
    expect: (m) => void only(m).snapshots.set('s9', [...only(m).current]),
  },
  {
    name: 'rollback to the oldest (newer kept)',
    operation: 'snapshot-rollback',
    disks: 1,
    setup: linear3,
    args: ([v]) => ['snapshot', 'rollback', v as string, 's1'],
    expect: (m) => void (only(m).current = [...(only(m).snapshots.get('s1') as Content)]),
  },
  {
    name: 'rollback with --purge-newer',
    operation: 'snapshot-rollback',
    disks: 1,
    setup: linear3,
    args: ([v]) => ['snapshot', 'rollback', v as string, 's1', '--purge-newer'],
    expect: (m) => {
      only(m).current = [...(only(m).snapshots.get('s1') as Content)];
      only(m).snapshots.delete('s2');
      only(m).snapshots.delete('s3');
    },
  },
  {
    name: 'delete first',
    operation: 'snapshot-delete',
    disks: 1,
    setup: linear3,
    args: ([v]) => ['snapshot', 'delete', v as string, 's1'],
    expect: dropSnapshot('s1'),
  },
  {
    name: 'delete middle',
    operation: 'snapshot-delete',
    disks: 1,
    setup: linear3,
    args: ([v]) => ['snapshot', 'delete', v as string, 's2'],
    expect: dropSnapshot('s2'),
  },
  {
    name: 'delete newest',
    operation: 'snapshot-delete',
    disks: 1,
    setup: linear3,
    args: ([v]) => ['snapshot', 'delete', v as string, 's3'],
    expect: dropSnapshot('s3'),
  },
  {
    name: 'delete a snapshot with two children',
    operation: 'snapshot-delete',
    disks: 1,
    setup: branched,
    args: ([v]) => ['snapshot', 'delete', v as string, 's1'],
    expect: dropSnapshot('s1'),
  },
  {
    name: 'delete a branch snapshot',
    operation: 'snapshot-delete',
    disks: 1,
    setup: branched,
    args: ([v]) => ['snapshot', 'delete', v as string, 's4'],
    expect: dropSnapshot('s4'),
  },
  {
    name: 'resize',
    operation: 'resize',
    disks: 1,
    setup: linear3,
    args: ([v]) => ['resize', v as string, '32M'],
    expect: () => undefined,
  },
  {
    name: 'free',
    operation: 'free',
    disks: 1,
    setup: linear3,
    args: ([v]) => ['free', v as string],
    expect: (m) => m.clear(),
  },
  {
    name: 'multi-disk VM snapshot (crash on the 2nd disk)',
    operation: 'snapshot-create',
    disks: 3,
    setup: linear3,
    args: () => ['vm', 'snapshot', String(VMID), 's9'],
    expect: (m) => {
      for (const d of m.values()) d.snapshots.set('s9', [...d.current]);
    },
    crashVolume: (volids) => (volids[1] as string).split('/').at(-1) as string,
  },
  {
    name: 'multi-disk VM delete of a snapshot with two children (crash on the 3rd disk)',
    operation: 'snapshot-delete',
    disks: 3,
    setup: branched,
    args: () => ['vm', 'delsnapshot', String(VMID), 's1'],
    expect: dropSnapshot('s1'),
    crashVolume: (volids) => (volids[2] as string).split('/').at(-1) as string,
  },
];

async function prepare(scenario: Scenario): Promise<{ env: Env; volids: string[]; model: Model }> {
  const env = makeEnv();
  const model: Model = new Map();
  const volids: string[] = [];
  for (let i = 0; i < scenario.disks; i++) {
    const volid = await env.vc.alloc('crash', VMID, '16M');
    volids.push(volid);
    model.set(volid, { snapshots: new Map(), current: new Array<number>(BLOCKS).fill(0) });
  }
  await scenario.setup(env, volids, model);
  return { env, volids, model };
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let covered = 0;

for (const scenario of scenarios) {
  test(`crash at every step of: ${scenario.name}`, async () => {
    // Step count from a dry run of the same operation on the same starting state.
    const probe = await prepare(scenario);
    dirs.push(probe.env.dir);
    const dry = cli(probe.env, [...scenario.args(probe.volids), '--dry-run', '--json']);
    assert.equal(dry.status, 0, dry.stderr);
    const plans = (JSON.parse(dry.stdout) as { plans: { steps: unknown[] }[] }).plans;
    const steps = Math.max(...plans.map((p) => p.steps.length));
    assert.ok(steps >= 1);

    for (let step = 1; step <= steps; step++) {
      for (const moment of ['started', 'after']) {
        const { env, volids, model } = await prepare(scenario);
        dirs.push(env.dir);
        const label = `${scenario.name}, step ${step} ${moment}`;
        const target = scenario.crashVolume ? `:${scenario.crashVolume(volids)}` : '';
        const run = cli(env, scenario.args(volids), { VOLCHAIN_CRASH_AT: `${scenario.operation}:${step}:${moment}${target}` });
        assert.equal(run.signal, 'SIGKILL', `${label}: the process was expected to die (status ${String(run.status)}: ${run.stderr})`);
        // A crashed operation blocks other writers until repaired.
        const blocked = cli(env, ['snapshot', 'create', volids[0] as string, 'blocked']);
        assert.equal(blocked.status, 7, `${label}: ${blocked.stderr}`);
        const repair = cli(env, ['repair', '--all']);
        assert.equal(repair.status, 0, `${label}: repair failed: ${repair.stderr}`);
        scenario.expect(model, volids);
        await verify(env, model, label);
        covered++;
        rmSync(env.dir, { recursive: true, force: true });
      }
    }
  });
}

test('crash points covered', () => {
  console.log(`# crash points covered: ${covered}`);
  assert.ok(covered >= scenarios.length * 2, `only ${covered} crash points ran`);
});
