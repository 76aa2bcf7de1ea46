// `npm start`: runs the agent in the foreground with a development config and its state under ./.fleetlet-dev.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const devDir = join(root, '.fleetlet-dev');
mkdirSync(devDir, { recursive: true });
const configFile = join(devDir, 'config.yaml');
writeFileSync(
  configFile,
  [
    'device:',
    '  id: dev-sandbox',
    'broker:',
    '  url: mqtt://127.0.0.1:1883',
    '  allowPlaintext: true',
    'k3s:',
    '  enabled: false',
    `stateDir: ${join(devDir, 'state')}`,
    'log:',
    '  level: debug',
    '',
  ].join('\n'),
);
const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/bin.ts'), 'agent', '--config', configFile], {
  stdio: 'inherit',
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.on('exit', (code) => process.exit(code ?? 1));
